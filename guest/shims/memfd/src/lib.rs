//! Empty on purpose: see Cargo.toml. wasmtime without `std` never names
//! anything in it.
#![no_std]
