//! Builds the sandbox launcher (`hearth-sandbox`'s `hearth-sandbox-init`
//! binary) and embeds it.
//!
//! Every cold start execs the launcher. Re-exec'ing the daemon's own binary
//! costs about 1.4 ms more than a small one on these hosts: the kernel maps
//! a 250 MB position-independent executable and the dynamic loader applies
//! its 41,000 relative relocations, copying some 150 pages on write. The
//! launcher alone has a few hundred.
//!
//! As `kernels/image` does for the guest, this script runs `cargo build
//! --release` (with a clean environment, so the outer build's flags and
//! wrappers do not leak in) into a target directory of its own beside the
//! outer one, then embeds the binary and its SHA-256. A rebuild with no
//! launcher change takes about a second.
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
        .unwrap_or_else(|| out.join("launcher-target"));
    let launcher_target = target_root.join("launcher");
    for path in [
        "crates/hearth-sandbox",
        "crates/hearth-types",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
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
    // Small: no debug info (the daemon's own binary keeps it).
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    // Statically linked (glibc's static-pie): no dynamic loader, no
    // libc.so/libgcc_s to map and bind at each exec. `perf stat -r 300` of
    // the launcher's exec to its exit: 0.63 → 0.44 ms of CPU, 86 → 52 page
    // faults. The launcher uses nothing of glibc that needs dlopen (no NSS).
    // glibc's `libc.a` comes with `libc6-dev`, the package whose `crt1.o`
    // every Rust link on Debian already needs: no new install step.
    // The flags reach only the target's artifacts because the target is
    // named (build scripts and proc macros stay dynamic, as they must).
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static");
    cmd.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "hearth-sandbox",
        "--bin",
        "hearth-sandbox-init",
    ])
    .arg("--manifest-path")
    .arg(root.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&launcher_target)
    .arg("--target")
    .arg(&target);
    let status = cmd
        .status()
        .expect("running cargo for the sandbox launcher");
    assert!(
        status.success(),
        "building the sandbox launcher (hearth-sandbox's hearth-sandbox-init) failed: {status}"
    );

    let bin_path = launcher_target
        .join(&target)
        .join("release/hearth-sandbox-init");
    let bin = std::fs::read(&bin_path).expect("reading the built launcher");
    let id = hex::encode(Sha256::digest(&bin));
    let embedded = out.join("hearth-sandbox-init");
    std::fs::write(&embedded, &bin).expect("writing the launcher into OUT_DIR");
    std::fs::write(
        out.join("launcher.rs"),
        format!(
            "/// The launcher, an ELF executable for this host.\npub const BINARY: &[u8] = include_bytes!({:?});\n\
             /// SHA-256 of [`BINARY`], hex.\npub const ID: &str = {:?};\n",
            embedded.display().to_string(),
            id
        ),
    )
    .expect("writing launcher.rs");
}
