//! Shared helpers for the microVM integration tests: KVM (or a clear skip
//! where there is none), the real guest image, modules as files, and the
//! usual boot → load → invoke sequences.

use std::io::Write;
use std::sync::Arc;

use hearth_vmm::guest::{Finished, GuestError, Invocation, Loaded, Runner};
use hearth_vmm::image::GuestImage;
use hearth_vmm::kvm::{Kvm, KvmError};
use hearth_vmm::vm::{ModuleFile, Vm};
use hearth_vmm::RunStats;

/// KVM, or `None` with the reason printed when this host has no usable
/// `/dev/kvm` (tests then return early; CI has KVM and runs them all).
pub fn kvm() -> Option<Arc<Kvm>> {
    match Kvm::open() {
        Ok(k) => Some(k),
        Err(e @ (KvmError::Missing | KvmError::Denied)) => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("KVM is present but unusable: {e}"),
    }
}

/// Hearth's guest image.
pub fn image() -> GuestImage {
    GuestImage::new(hearth_guest_image::ELF)
}

/// A module written to a temporary file (kept open; the path is gone).
pub fn module(bytes: &[u8]) -> ModuleFile {
    let mut f = tempfile::tempfile().expect("tempfile");
    f.write_all(bytes).expect("write module");
    let sha256 = sha256(bytes);
    ModuleFile {
        file: Arc::new(f),
        sha256,
    }
}

/// SHA-256 of `b`.
pub fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// A WAT module compiled to bytes.
pub fn wat(src: &str) -> Vec<u8> {
    wat::parse_str(src).expect("valid WAT")
}

/// A config blob with `args` and `env`.
pub fn config(args: &[&str], env: &[(&str, &str)]) -> Vec<u8> {
    let mut buf = vec![0u8; hearth_guest_abi::layout::CONFIG_CAP as usize];
    let n = hearth_guest_abi::config::encode(args, env, &mut buf).expect("config fits");
    buf.truncate(n);
    buf
}

/// Seconds, as the runner's nanosecond timeouts.
pub const fn secs(s: u64) -> u64 {
    s * 1_000_000_000
}

/// An invocation with a fixed request id.
pub fn invocation(event: &[u8]) -> Invocation<'_> {
    Invocation {
        event,
        request_id: "test-request",
        timeout_ns: secs(10),
    }
}

/// Boots a fresh VM with `mem_mib` of memory to its base snapshot point.
pub fn booted(kvm: &Arc<Kvm>, runner: &Runner, mem_mib: u64) -> Vm {
    let mut vm = Vm::boot(kvm, &image(), mem_mib).expect("boot");
    runner
        .boot(&mut vm, secs(10), &mut RunStats::default())
        .expect("guest boots to BaseReady");
    vm
}

/// Boots, loads `module`, and runs it with `event` straight through.
pub fn run_once(
    kvm: &Arc<Kvm>,
    runner: &Runner,
    module_bytes: &[u8],
    event: &[u8],
) -> Result<Finished, GuestError> {
    let mut vm = booted(kvm, runner, 128);
    let m = module(module_bytes);
    let len = vm.attach_module(&m)?;
    let inv = invocation(event);
    match runner.load(
        &mut vm,
        len,
        &config(&["fn.wasm"], &[]),
        Some(&inv),
        secs(10),
        &mut RunStats::default(),
    )? {
        Loaded::Finished(f) => Ok(f),
        Loaded::Waiting => panic!("a load with an event runs to the end"),
    }
}

/// The classic echo module: reads stdin to its end, writes it to stdout,
/// logs a line to stderr.
pub const ECHO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 64) "echo: done\n")
  (func (export "_start")
    (local $total i32) (local $n i32)
    ;; iovec at 0: buf = 1024 + total, len = 65536 - total
    (block $eof
      (loop $more
        (i32.store (i32.const 0) (i32.add (i32.const 1024) (local.get $total)))
        (i32.store (i32.const 4) (i32.sub (i32.const 64512) (local.get $total)))
        (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $total (i32.add (local.get $total) (local.get $n)))
        (br $more)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (local.get $total))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 11))
    (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
