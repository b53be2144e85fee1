//! Builds the microVM guest image and embeds it.
//!
//! The guest (`guest/runtime` linked with `kernels/hearth-kernel`) is a
//! freestanding ELF built with the host target: no `wasm32`/`x86_64-none`
//! targets or `rust-src` are installed on these machines, and none can be
//! downloaded. It has its own Cargo workspace (`guest/Cargo.toml`) so that
//! `panic = "abort"` and its link flags never touch the host crates.
//!
//! This script runs `cargo build --release` on that workspace (with a clean
//! environment, so the outer build's flags do not leak in), into a target
//! directory of its own beside the outer one (incremental: a rebuild with no
//! guest change takes about a second), then embeds the ELF and its SHA-256
//! (the image id that snapshots are keyed on).
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest
        .join("../..")
        .canonicalize()
        .expect("the repository root");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_root = out
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out.join("guest-target"));
    let guest_target = target_root.join("guest");
    for dir in [
        "guest/abi",
        "guest/wasi",
        "guest/runtime",
        "guest/Cargo.toml",
        "guest/Cargo.lock",
        "kernels/hearth-kernel",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed=build.rs");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.env_clear();
    for keep in [
        "PATH",
        "HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "TMPDIR",
        "CARGO_NET_OFFLINE",
    ] {
        if let Ok(v) = std::env::var(keep) {
            cmd.env(keep, v);
        }
    }
    // Static code at the image base: the ELF loader does no relocation.
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "-Crelocation-model=static");
    cmd.args([
        "build",
        "--release",
        "--locked",
        "--target",
        "x86_64-unknown-linux-gnu",
        "-p",
        "hearth-guest",
    ])
    .arg("--manifest-path")
    .arg(root.join("guest/Cargo.toml"))
    .arg("--target-dir")
    .arg(&guest_target);
    let status = cmd.status().expect("running cargo for the guest image");
    assert!(
        status.success(),
        "building the microVM guest image (guest/) failed: {status}"
    );

    let elf_path = guest_target.join("x86_64-unknown-linux-gnu/release/hearth-guest");
    let elf = std::fs::read(&elf_path).expect("reading the built guest image");
    let id = hex::encode(Sha256::digest(&elf));
    let embedded = out.join("hearth-guest.elf");
    std::fs::write(&embedded, &elf).expect("writing the guest image into OUT_DIR");
    std::fs::write(
        out.join("image.rs"),
        format!(
            "/// The guest image: an ELF for `linux-loader`.\npub const ELF: &[u8] = include_bytes!({:?});\n\
             /// SHA-256 of [`ELF`], hex: the image id snapshots are keyed on.\npub const ID: &str = {:?};\n",
            embedded.display().to_string(),
            id
        ),
    )
    .expect("writing image.rs");
}
