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
    ModuleFile::new(f).expect("read the module back")
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

/// A base snapshot and a function snapshot (layer) of `module_bytes`,
/// written into `dir`: boot → BaseReady → base snapshot → restore → load →
/// StdinWait → layer snapshot.
#[derive(Debug)]
pub struct FunctionSnapshot {
    /// The base.
    pub base: Arc<hearth_vmm::snapshot::Snapshot>,
    /// The function layer.
    pub layer: Arc<hearth_vmm::snapshot::Snapshot>,
    /// The module it maps.
    pub module: ModuleFile,
}

/// Takes the snapshots of [`FunctionSnapshot`].
pub fn function_snapshot(
    kvm: &Arc<Kvm>,
    runner: &Runner,
    module_bytes: &[u8],
    dir: &std::path::Path,
) -> FunctionSnapshot {
    use hearth_vmm::snapshot::Snapshot;
    let mut vm = booted(kvm, runner, 128);
    let base_path = dir.join("base.snap");
    vm.snapshot_base(&base_path, [0; 32])
        .expect("base snapshot");
    drop(vm);
    let base = Arc::new(Snapshot::open(&base_path).expect("open base"));
    let mut vm = Vm::restore(kvm, &base, None, None).expect("restore base");
    let m = module(module_bytes);
    let len = vm.attach_module(&m).expect("attach module");
    let loaded = runner
        .load(
            &mut vm,
            len,
            &config(&["fn.wasm"], &[]),
            None,
            secs(10),
            &mut RunStats::default(),
        )
        .expect("load");
    assert!(
        matches!(loaded, Loaded::Waiting),
        "the module stops at its first stdin read: {loaded:?}"
    );
    let layer_path = dir.join("fn.snap");
    vm.snapshot_layer(&layer_path, [0; 32])
        .expect("layer snapshot");
    let layer = Arc::new(Snapshot::open(&layer_path).expect("open layer"));
    FunctionSnapshot {
        base,
        layer,
        module: m,
    }
}

/// A VM restored from a function snapshot, waiting at the stdin read.
pub fn fork(kvm: &Arc<Kvm>, s: &FunctionSnapshot) -> Vm {
    Vm::restore(kvm, &s.base, Some(&s.layer), Some(&s.module)).expect("restore function snapshot")
}

/// A hand-made guest image: `user` (ring-3 code) at the entry point after
/// the entry header, and `handler` (ring-0 code) as every exception
/// handler. For the tests that need a guest misbehaving in ways Hearth's
/// own guest never does.
pub fn raw_image(user: &[u8], handler: &[u8]) -> GuestImage {
    use hearth_guest_abi::layout::{
        ENTRY_HEADER_MAGIC, ENTRY_HEADER_OFFSET, EXCEPTION_VECTORS, IMAGE_BASE,
    };
    let base = IMAGE_BASE;
    let header_at = ENTRY_HEADER_OFFSET as usize;
    let user_at = header_at + 8 + 8 * EXCEPTION_VECTORS;
    let handler_at = user_at + user.len();
    let mut code = vec![0x90u8; header_at]; // nops
                                            // jmp rel32 over the header to the user code.
    code[0] = 0xe9;
    code[1..5].copy_from_slice(&((user_at - 5) as i32).to_le_bytes());
    code.extend_from_slice(&ENTRY_HEADER_MAGIC.to_le_bytes());
    for _ in 0..EXCEPTION_VECTORS {
        code.extend_from_slice(&(base + handler_at as u64).to_le_bytes());
    }
    code.extend_from_slice(user);
    code.extend_from_slice(handler);
    GuestImage::new(elf(base, &code))
}

/// A minimal static ELF64 with one loadable segment holding `code` at
/// `vaddr`, entered at `vaddr`.
pub fn elf(vaddr: u64, code: &[u8]) -> Vec<u8> {
    let mut e = vec![0u8; 0x78];
    e[0..4].copy_from_slice(b"\x7fELF");
    e[4] = 2;
    e[5] = 1;
    e[6] = 1;
    e[0x10..0x12].copy_from_slice(&2u16.to_le_bytes());
    e[0x12..0x14].copy_from_slice(&62u16.to_le_bytes());
    e[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
    e[0x18..0x20].copy_from_slice(&vaddr.to_le_bytes());
    e[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
    e[0x34..0x36].copy_from_slice(&0x40u16.to_le_bytes());
    e[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
    e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
    let ph = 0x40;
    e[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
    e[ph + 4..ph + 8].copy_from_slice(&7u32.to_le_bytes());
    e[ph + 8..ph + 0x10].copy_from_slice(&0x1000u64.to_le_bytes());
    e[ph + 0x10..ph + 0x18].copy_from_slice(&vaddr.to_le_bytes());
    e[ph + 0x18..ph + 0x20].copy_from_slice(&vaddr.to_le_bytes());
    e[ph + 0x20..ph + 0x28].copy_from_slice(&(code.len() as u64).to_le_bytes());
    e[ph + 0x28..ph + 0x30].copy_from_slice(&(code.len() as u64).to_le_bytes());
    e[ph + 0x30..ph + 0x38].copy_from_slice(&0x1000u64.to_le_bytes());
    e.resize(0x1000, 0);
    e.extend_from_slice(code);
    e
}

/// x86-64 machine code for the raw images.
pub mod asm {
    use hearth_guest_abi::{ports::DOORBELL_PORT, Doorbell};

    /// `mov dx, DOORBELL_PORT; mov eax, why; out dx, eax`.
    pub fn ring(why: Doorbell) -> Vec<u8> {
        let mut c = vec![0x66, 0xba];
        c.extend_from_slice(&DOORBELL_PORT.to_le_bytes());
        c.push(0xb8);
        c.extend_from_slice(&(why as u32).to_le_bytes());
        c.push(0xef);
        c
    }

    /// `jmp $` (spin forever).
    pub const SPIN: [u8; 2] = [0xeb, 0xfe];
    /// `hlt`.
    pub const HLT: [u8; 1] = [0xf4];
    /// `ud2`.
    pub const UD2: [u8; 2] = [0x0f, 0x0b];

    /// Fills `len` bytes at `addr` with `byte`: `mov rdi, addr; mov rcx,
    /// len; mov al, byte; rep stosb`.
    pub fn fill(addr: u64, len: u64, byte: u8) -> Vec<u8> {
        let mut c = vec![0x48, 0xbf];
        c.extend_from_slice(&addr.to_le_bytes());
        c.extend_from_slice(&[0x48, 0xb9]);
        c.extend_from_slice(&len.to_le_bytes());
        c.extend_from_slice(&[0xb0, byte, 0xf3, 0xaa]);
        c
    }

    /// Reads a byte at `addr`: `mov rax, addr; mov al, [rax]`.
    pub fn load(addr: u64) -> Vec<u8> {
        let mut c = vec![0x48, 0xb8];
        c.extend_from_slice(&addr.to_le_bytes());
        c.extend_from_slice(&[0x8a, 0x00]);
        c
    }

    /// `out dx, al` to `port`.
    pub fn out8(port: u16) -> Vec<u8> {
        let mut c = vec![0x66, 0xba];
        c.extend_from_slice(&port.to_le_bytes());
        c.push(0xee);
        c
    }

    /// Ring 0: load an empty IDT, then `ud2`: the #UD finds no gate, nor
    /// does the #GP or the #DF that follow: a triple fault.
    pub fn triple_fault() -> Vec<u8> {
        // lidt [rip + 2]; jmp over the 10-byte descriptor; ud2
        let mut c = vec![0x0f, 0x01, 0x1d, 0x02, 0x00, 0x00, 0x00, 0xeb, 0x0a];
        c.extend_from_slice(&[0u8; 10]);
        c.extend_from_slice(&UD2);
        c
    }
}
