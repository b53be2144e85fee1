//! Every kind of bad input ends as a typed error, with the VM discarded and
//! this (host) process healthy: each test ends by running a good module.

use hearth_guest_abi::layout;
use hearth_guest_abi::mailbox::LoadError;
use hearth_guest_abi::Doorbell;
use hearth_vm_tests::*;
use hearth_vmm::guest::{Ended, GuestError, Invocation, Runner};
use hearth_vmm::snapshot::{Snapshot, SnapshotError};
use hearth_vmm::vm::{Vm, VmError};
use hearth_vmm::RunStats;

fn still_healthy(kvm: &std::sync::Arc<hearth_vmm::kvm::Kvm>, runner: &Runner) {
    let f = run_once(kvm, runner, &wat(ECHO_WAT), b"ok").expect("a good module still runs");
    assert_eq!(f.stdout, b"ok");
}

fn load_error(r: Result<hearth_vmm::guest::Finished, GuestError>) -> (LoadError, String) {
    match r.expect("the guest reports it").ended {
        Ended::LoadError { kind, message } => (kind, message),
        other => panic!("expected a load error, got {other:?}"),
    }
}

#[test]
fn invalid_wasm() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let (kind, msg) = load_error(run_once(&kvm, &runner, b"\0asm\x01\0\0\0\x01\xff\xff", b""));
    assert_eq!(kind, LoadError::Invalid, "{msg}");
    let (kind, _) = load_error(run_once(&kvm, &runner, b"this is not wasm", b""));
    assert_eq!(kind, LoadError::Invalid);
    let (kind, msg) = load_error(run_once(&kvm, &runner, &wat("(module (memory 1))"), b""));
    assert_eq!(kind, LoadError::NoStart, "{msg}");
    still_healthy(&kvm, &runner);
}

#[test]
fn missing_import_is_named_at_load() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let m = wat(r#"(module
        (import "wasi_snapshot_preview1" "fd_renumber" (func (param i32 i32) (result i32)))
        (memory (export "memory") 1) (func (export "_start")))"#);
    let (kind, msg) = load_error(run_once(&kvm, &runner, &m, b""));
    assert_eq!(kind, LoadError::MissingImport);
    assert!(msg.contains("wasi_snapshot_preview1.fd_renumber"), "{msg}");
    still_healthy(&kvm, &runner);
}

#[test]
fn module_too_large_for_the_window() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let f = tempfile::tempfile().unwrap();
    f.set_len(layout::MODULE_WINDOW_SIZE + 1).unwrap(); // sparse: no disk used
    let m = hearth_vmm::vm::ModuleFile {
        file: std::sync::Arc::new(f),
        sha256: [0; 32],
        len: layout::MODULE_WINDOW_SIZE + 1,
    };
    let mut vm = booted(&kvm, &runner, 128);
    assert!(matches!(
        vm.attach_module(&m),
        Err(VmError::ModuleTooLarge(_))
    ));
    still_healthy(&kvm, &runner);
}

#[test]
fn trap() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let m = wat(r#"(module (memory (export "memory") 1)
        (func (export "_start") (drop (i32.div_u (i32.const 1) (i32.const 0)))))"#);
    let f = run_once(&kvm, &runner, &m, b"").unwrap();
    assert!(
        matches!(&f.ended, Ended::Trap(m) if m.contains("divi")),
        "{:?}",
        f.ended
    );
    still_healthy(&kvm, &runner);
}

#[test]
fn infinite_loop_times_out() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let m = wat(r#"(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))"#);
    let mut vm = booted(&kvm, &runner, 128);
    let len = vm.attach_module(&module(&m)).unwrap();
    let inv = Invocation {
        event: b"",
        request_id: "r",
        timeout_ns: 300_000_000,
    };
    let mut stats = RunStats::default();
    let t0 = hearth_vmm::monotonic_ns();
    let r = runner.load(&mut vm, len, &config(&[], &[]), Some(&inv), 0, &mut stats);
    let took = hearth_vmm::monotonic_ns() - t0;
    assert!(matches!(r, Err(GuestError::Timeout)), "{r:?}");
    // The kick ended it: not long after the deadline (a loose bound).
    assert!(took < 5_000_000_000, "took {took} ns");
    assert!(stats.exits.kick >= 1, "{:?}", stats.exits);
    drop(vm);
    still_healthy(&kvm, &runner);
}

#[test]
fn memory_grow_beyond_the_vm_is_out_of_memory() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    // 128 MiB VM; grow by 200 MiB (3200 pages).
    let m = wat(r#"(module (memory (export "memory") 1)
        (func (export "_start") (drop (memory.grow (i32.const 3200)))))"#);
    let f = run_once(&kvm, &runner, &m, b"").unwrap();
    assert_eq!(f.ended, Ended::OutOfMemory);
    // An initial memory beyond the VM is the same, at instantiation.
    let f = run_once(
        &kvm,
        &runner,
        &wat(r#"(module (memory (export "memory") 4000) (func (export "_start")))"#),
        b"",
    )
    .unwrap();
    assert_eq!(f.ended, Ended::OutOfMemory);
    still_healthy(&kvm, &runner);
}

#[test]
fn output_beyond_6_mb() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    // Writes 64 KiB 100 times (6.25 MiB).
    let m = wat(r#"(module
        (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 2)
        (func (export "_start") (local $i i32)
          (i32.store (i32.const 0) (i32.const 65536))
          (i32.store (i32.const 4) (i32.const 65536))
          (loop $l
            (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $l (i32.lt_u (local.get $i) (i32.const 100))))))"#);
    let f = run_once(&kvm, &runner, &m, b"").unwrap();
    assert_eq!(f.ended, Ended::OutputTooLarge);
    assert!(f.stdout.is_empty());
    still_healthy(&kvm, &runner);
}

#[test]
fn event_too_large_is_refused_before_the_guest_sees_it() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = function_snapshot(&kvm, &runner, &wat(ECHO_WAT), dir.path());
    let mut vm = fork(&kvm, &s);
    let big = vec![b'x'; layout::EVENT_CAP as usize + 1];
    let r = runner.invoke(&mut vm, &invocation(&big), &mut RunStats::default());
    assert!(matches!(r, Err(GuestError::EventTooLarge(_))), "{r:?}");
    still_healthy(&kvm, &runner);
}

#[test]
fn corrupt_or_truncated_snapshots_are_never_mapped() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = function_snapshot(&kvm, &runner, &wat(ECHO_WAT), dir.path());
    let path = s.layer.path().to_path_buf();
    let good = std::fs::read(&path).unwrap();
    // A flipped bit in the page data.
    let mut bad = good.clone();
    let at = good.len() - 100;
    bad[at] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        Snapshot::open(&path),
        Err(SnapshotError::Checksum { .. })
    ));
    // A flipped bit in the vCPU state.
    let mut bad = good.clone();
    bad[300] ^= 0x80;
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        Snapshot::open(&path),
        Err(SnapshotError::Checksum { .. })
    ));
    // Truncated.
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    assert!(matches!(
        Snapshot::open(&path),
        Err(SnapshotError::Truncated(..))
    ));
    // A layer over another base is refused at restore.
    std::fs::write(&path, &good).unwrap();
    let other = tempfile::tempdir().unwrap();
    let t = function_snapshot(
        &kvm,
        &runner,
        &wat(&ECHO_WAT.replace("echo: done", "echo: DONE")),
        other.path(),
    );
    let r = Vm::restore(&kvm, &t.base, Some(&s.layer), Some(&s.module));
    assert!(
        matches!(r, Err(VmError::Snapshot(SnapshotError::Mismatch(_)))),
        "{r:?}"
    );
    // ... and so is a layer without its module.
    let r = Vm::restore(&kvm, &s.base, Some(&s.layer), Some(&t.module));
    assert!(
        matches!(r, Err(VmError::Snapshot(SnapshotError::Mismatch(_)))),
        "{r:?}"
    );
    still_healthy(&kvm, &runner);
}

fn run_raw(user: &[u8], handler: &[u8]) -> Result<(), GuestError> {
    let kvm = kvm().expect("checked by the caller");
    let runner = Runner::for_this_thread().expect("the thread runner starts");
    let mut vm = Vm::boot(&kvm, &raw_image(user, handler), 64).expect("the raw image boots");
    let r = runner.boot(&mut vm, secs(5), &mut RunStats::default());
    drop(vm);
    still_healthy(&kvm, &runner);
    r
}

#[test]
fn garbage_in_the_mailbox() {
    if kvm().is_none() {
        return;
    }
    // Fill the report section with 0xAB and ring Done: no status decodes.
    let mut user = asm::fill(layout::MAILBOX_GPA + 0x200, 0x100, 0xab);
    user.extend(asm::ring(Doorbell::Done));
    user.extend(asm::SPIN);
    let kvm = kvm().unwrap();
    let runner = Runner::for_this_thread().unwrap();
    let mut vm = Vm::boot(&kvm, &raw_image(&user, &asm::HLT), 64).unwrap();
    let len = vm.attach_module(&module(b"x")).unwrap();
    // The raw guest rings Done at once: the report it leaves is garbage.
    // (It never boots; the test steps it straight to loading.)
    vm.set_phase(hearth_vmm::vm::Phase::Base);
    let r = runner.load(
        &mut vm,
        len,
        &config(&[], &[]),
        Some(&invocation(b"")),
        secs(5),
        &mut RunStats::default(),
    );
    assert!(matches!(r, Err(GuestError::Mailbox(_))), "{r:?}");
    drop(vm);
    // A whole page of garbage, header included.
    let mut user = asm::fill(layout::MAILBOX_GPA, 4096, 0x5a);
    user.extend(asm::ring(Doorbell::Fault));
    user.extend(asm::SPIN);
    let r = run_raw(&user, &asm::HLT);
    assert!(matches!(r, Err(GuestError::Mailbox(_))), "{r:?}");
    // A doorbell value that means nothing.
    let mut user = asm::ring(Doorbell::Done);
    user[5..9].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    user.extend(asm::SPIN);
    let r = run_raw(&user, &asm::HLT);
    assert!(
        matches!(
            r,
            Err(GuestError::Doorbell {
                got: 0xdead_beef,
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn halt_in_ring_0() {
    if kvm().is_none() {
        return;
    }
    // ud2 in ring 3 → #UD → the handler, in ring 0, halts.
    let r = run_raw(&asm::UD2, &asm::HLT);
    assert!(matches!(r, Err(GuestError::Halted)), "{r:?}");
}

#[test]
fn triple_fault_in_ring_0() {
    if kvm().is_none() {
        return;
    }
    let r = run_raw(&asm::UD2, &asm::triple_fault());
    assert!(matches!(r, Err(GuestError::TripleFault)), "{r:?}");
}

/// Boots Hearth's own image with its entry point overwritten by `code`, so
/// that the real kernel's ring-0 handler has to report what `code` does.
fn patched_entry(code: &[u8]) -> Result<(), GuestError> {
    let kvm = kvm().expect("checked by the caller");
    let runner = Runner::for_this_thread().expect("the thread runner starts");
    let elf = hearth_guest_image::ELF;
    let entry = u64::from_le_bytes(
        elf[0x18..0x20]
            .try_into()
            .expect("the ELF header has an entry point"),
    );
    let mut vm = Vm::boot(&kvm, &image(), 64).expect("the image boots");
    vm.write_guest(entry, code)
        .expect("the code fits in guest memory");
    let r = runner.boot(&mut vm, secs(5), &mut RunStats::default());
    drop(vm);
    still_healthy(&kvm, &runner);
    r
}

#[test]
fn ring_3_faults_are_reported_by_the_kernel() {
    if kvm().is_none() {
        return;
    }
    match patched_entry(&asm::UD2) {
        Err(GuestError::Fault {
            report,
            stack_overflow: false,
        }) => {
            assert_eq!((report.name(), report.ring()), ("#UD", 3));
        }
        other => panic!("{other:?}"),
    }
    // A privileged instruction in ring 3 is a #GP.
    match patched_entry(&asm::HLT) {
        Err(GuestError::Fault { report, .. }) => assert_eq!(report.name(), "#GP"),
        other => panic!("{other:?}"),
    }
    // A push onto the guard page below the stack: a stack overflow.
    let mut code = vec![0x48, 0xbc]; // mov rsp, imm64
    code.extend_from_slice(&layout::STACK_GPA.to_le_bytes());
    code.push(0x50); // push rax
    match patched_entry(&code) {
        Err(GuestError::Fault {
            report,
            stack_overflow: true,
        }) => {
            assert_eq!(report.name(), "#PF");
            assert_eq!(report.cr2, layout::STACK_GPA - 8);
        }
        other => panic!("{other:?}"),
    }
    // Writing the page tables from ring 3 is a #PF: they are supervisor-only.
    match patched_entry(&asm::fill(layout::PAGE_TABLES_GPA, 8, 0)) {
        Err(GuestError::Fault { report, .. }) => {
            assert_eq!(
                (report.name(), report.cr2),
                ("#PF", layout::PAGE_TABLES_GPA)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn accesses_outside_memory_and_unknown_ports() {
    if kvm().is_none() {
        return;
    }
    // The module window is mapped in the page tables but has no memory
    // slot without a module: KVM reports an MMIO access.
    let mut user = asm::load(layout::MODULE_WINDOW_GPA + 0x1000);
    user.extend(asm::SPIN);
    let r = run_raw(&user, &asm::HLT);
    assert!(
        matches!(r, Err(GuestError::OutsideMemory { gpa, write: false }) if gpa == layout::MODULE_WINDOW_GPA + 0x1000),
        "{r:?}"
    );
    // A port outside the I/O bitmap is a #GP in the guest (the handler
    // here halts); a port inside it but unknown cannot exist (the bitmap
    // grants only the two).
    let mut user = asm::out8(0x80);
    user.extend(asm::SPIN);
    let r = run_raw(&user, &asm::HLT);
    assert!(matches!(r, Err(GuestError::Halted)), "{r:?}");
    // An out to the doorbell that is not 32 bits wide.
    let mut user = asm::out8(hearth_guest_abi::ports::DOORBELL_PORT);
    user.extend(asm::SPIN);
    let r = run_raw(&user, &asm::HLT);
    assert!(matches!(r, Err(GuestError::UnknownPort { .. })), "{r:?}");
}
