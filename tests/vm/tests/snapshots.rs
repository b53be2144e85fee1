//! Snapshot isolation: VMs restored from one function snapshot share its
//! pages but never each other's writes; a reset brings back the snapshot's
//! state exactly; every restore and reset gets fresh entropy; the snapshot
//! files never change.

use hearth_vm_tests::*;
use hearth_vmm::guest::{Ended, Runner};
use hearth_vmm::vm::{ResetMode, Vm};
use hearth_vmm::RunStats;

/// Reads up to 8 event bytes; writes to stdout the 8-byte marker at 4096
/// as it was, then the run counter (incremented) as one ASCII digit, then
/// 16 bytes from `random_get`; finally stores the event over the marker.
const STATEFUL: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $count (mut i32) (i32.const 0))
  (data (i32.const 4096) "initial!")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 2048))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (memory.copy (i32.const 3000) (i32.const 4096) (i32.const 8))
    (i32.store8 (i32.const 3008) (i32.add (i32.const 48) (global.get $count)))
    (drop (call $random (i32.const 3009) (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 3000))
    (i32.store (i32.const 4) (i32.const 25))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
    (memory.copy (i32.const 4096) (i32.const 2048) (i32.load (i32.const 8)))))"#;

struct Out {
    marker: Vec<u8>,
    count: u8,
    random: Vec<u8>,
}

fn invoke(runner: &Runner, vm: &mut Vm, event: &[u8]) -> Out {
    let f = runner
        .invoke(vm, &invocation(event), &mut RunStats::default())
        .expect("invoke");
    assert_eq!(f.ended, Ended::Exited(0));
    assert_eq!(f.stdout.len(), 25, "{:?}", f.stdout);
    Out {
        marker: f.stdout[..8].to_vec(),
        count: f.stdout[8],
        random: f.stdout[9..].to_vec(),
    }
}

fn file_digest(p: &std::path::Path) -> [u8; 32] {
    sha256(&std::fs::read(p).expect("the snapshot file is readable"))
}

#[test]
fn forks_of_one_snapshot_do_not_see_each_other() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = function_snapshot(&kvm, &runner, &wat(STATEFUL), dir.path());
    let before = (file_digest(s.base.path()), file_digest(s.layer.path()));

    let mut a = fork(&kvm, &s);
    let mut b = fork(&kvm, &s);
    let oa = invoke(&runner, &mut a, b"AAAAAAAA");
    let ob = invoke(&runner, &mut b, b"BBBBBBBB");
    assert_eq!(oa.marker, b"initial!");
    assert_eq!(ob.marker, b"initial!", "B must not see A's write");
    assert_eq!((oa.count, ob.count), (b'1', b'1'));
    assert!(a.copied_pages().unwrap() > 0, "A copied the pages it wrote");

    // A third fork, while A and B live, sees neither.
    let mut c = fork(&kvm, &s);
    assert_eq!(invoke(&runner, &mut c, b"CCCCCCCC").marker, b"initial!");
    drop((a, b, c));

    // The snapshot files are byte for byte what they were, and still verify.
    assert_eq!(
        (file_digest(s.base.path()), file_digest(s.layer.path())),
        before
    );
    hearth_vmm::snapshot::Snapshot::open(s.layer.path()).expect("the layer still verifies");
    hearth_vmm::snapshot::Snapshot::open(s.base.path()).expect("the base still verifies");
}

#[test]
fn a_reset_brings_back_the_snapshot_state() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = function_snapshot(&kvm, &runner, &wat(STATEFUL), dir.path());
    let mut vm = fork(&kvm, &s);
    // Both ways of resetting, alternately: rewriting the copied pages with
    // the snapshot's content, and dropping them.
    for i in 0..6u8 {
        let ev = [b'a' + i; 8];
        let o = invoke(&runner, &mut vm, &ev);
        assert_eq!(
            o.count, b'1',
            "the counter is 1 on every run after a reset (run {i})"
        );
        assert_eq!(
            o.marker, b"initial!",
            "run {i} sees the snapshot's marker, not the last run's"
        );
        let mode = if i % 2 == 0 {
            ResetMode::Restore
        } else {
            ResetMode::Discard
        };
        let reset = vm.reset(mode).unwrap();
        assert!(reset.pages > 0 && reset.ns > 0);
    }
    // Without a reset the state carries on, as in any process.
    let o1 = invoke(&runner, &mut vm, b"xxxxxxxx");
    let f = runner.invoke(&mut vm, &invocation(b"yyyyyyyy"), &mut RunStats::default());
    // The module has exited: a second invoke without a reset is refused
    // before the guest runs.
    assert!(
        matches!(
            f,
            Err(hearth_vmm::guest::GuestError::Phase {
                actual: hearth_vmm::vm::Phase::Done,
                ..
            })
        ),
        "{f:?}"
    );
    assert_eq!(o1.count, b'1');
}

#[test]
fn every_restore_and_reset_gets_fresh_entropy() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = function_snapshot(&kvm, &runner, &wat(STATEFUL), dir.path());
    let mut a = fork(&kvm, &s);
    let mut b = fork(&kvm, &s);
    let ra = invoke(&runner, &mut a, b"a").random;
    let rb = invoke(&runner, &mut b, b"b").random;
    assert_ne!(
        ra, rb,
        "two forks of one snapshot drew the same random bytes"
    );
    a.reset(hearth_vmm::vm::ResetMode::Restore).unwrap();
    let ra2 = invoke(&runner, &mut a, b"a").random;
    assert_ne!(ra, ra2, "a reset VM drew the same random bytes again");
    assert!(ra.iter().any(|x| *x != 0));
}

#[test]
fn a_reset_after_a_stop_mid_instruction_restarts_from_the_snapshot() {
    use hearth_guest_abi::{layout, Doorbell};
    use hearth_vmm::snapshot::Snapshot;
    use std::sync::Arc;
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    // Rings BaseReady (the snapshot point), then reads outside memory: KVM
    // stops with the read half done. If a reset let KVM finish it, the
    // guest would go on to ring Done.
    let mut user = asm::ring(Doorbell::BaseReady);
    user.extend(asm::load(layout::MODULE_WINDOW_GPA + 0x1000));
    user.extend(asm::ring(Doorbell::Done));
    user.extend(asm::SPIN);
    let mut vm = Vm::boot(&kvm, &raw_image(&user, &asm::HLT), 64).unwrap();
    runner
        .boot(&mut vm, secs(5), &mut RunStats::default())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raw.snap");
    vm.snapshot_base(&path, [0; 32]).unwrap();
    let base = Arc::new(Snapshot::open(&path).unwrap());
    let mut vm = Vm::restore(&kvm, &base, None, None).unwrap();
    for round in 0..3 {
        let stop = runner.run_raw(&mut vm, secs(5), &mut RunStats::default());
        assert!(
            matches!(
                stop,
                Ok(hearth_vmm::vcpu::Stop::OutsideMemory { write: false, .. })
            ),
            "round {round}: {stop:?}"
        );
        vm.reset(ResetMode::Restore).unwrap();
    }
}

#[test]
fn a_timed_out_vm_is_reset_and_serves_again() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    // Spins forever on an event starting with 'x'; echoes anything else.
    let m = wat(r#"(module
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 100))
        (i32.store (i32.const 4) (i32.const 16))
        (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (if (i32.eq (i32.load8_u (i32.const 100)) (i32.const 120)) (then (loop (br 0))))
        (i32.store (i32.const 4) (i32.load (i32.const 8)))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#);
    let dir = tempfile::tempdir().unwrap();
    let s = function_snapshot(&kvm, &runner, &m, dir.path());
    let mut vm = fork(&kvm, &s);
    let inv = hearth_vmm::guest::Invocation {
        event: b"x",
        request_id: "r",
        timeout_ns: 200_000_000,
    };
    let r = runner.invoke(&mut vm, &inv, &mut RunStats::default());
    assert!(
        matches!(r, Err(hearth_vmm::guest::GuestError::Timeout)),
        "{r:?}"
    );
    vm.reset(ResetMode::Restore).unwrap();
    let f = runner
        .invoke(&mut vm, &invocation(b"ok"), &mut RunStats::default())
        .unwrap();
    assert_eq!(f.stdout, b"ok");
}

#[test]
fn a_base_vm_adopts_a_function_snapshot_in_place() {
    use hearth_vmm::snapshot::Snapshot;
    use std::sync::Arc;
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = function_snapshot(&kvm, &runner, &wat(STATEFUL), dir.path());

    // A pooled VM (restored from the base, never loaded) becomes the
    // function without a new KVM VM.
    let mut vm = Vm::restore(&kvm, &s.base, None, None).unwrap();
    let written = vm.adopt_layer(&s.layer, &s.module).unwrap();
    assert!(written > 0);
    for ev in [&b"11111111"[..], b"22222222"] {
        let o = invoke(&runner, &mut vm, ev);
        assert_eq!((o.marker.as_slice(), o.count), (&b"initial!"[..], b'1'));
        vm.reset(ResetMode::Restore).unwrap();
    }

    // A VM that just took a function snapshot adopts its own, and a reset
    // then returns it to that snapshot (not to the base).
    let mut vm = Vm::restore(&kvm, &s.base, None, None).unwrap();
    let len = vm.attach_module(&s.module).unwrap();
    runner
        .load(
            &mut vm,
            len,
            &config(&["fn.wasm"], &[]),
            None,
            secs(10),
            &mut RunStats::default(),
        )
        .unwrap();
    let path = dir.path().join("again.snap");
    vm.snapshot_layer(&path, [0; 32]).unwrap();
    let again = Arc::new(Snapshot::open(&path).unwrap());
    vm.adopt_layer(&again, &s.module).unwrap();
    for _ in 0..2 {
        let o = invoke(&runner, &mut vm, b"xxxxxxxx");
        assert_eq!((o.marker.as_slice(), o.count), (&b"initial!"[..], b'1'));
        vm.reset(ResetMode::Restore).unwrap();
    }

    // A layer of another module is refused.
    let mut vm = Vm::restore(&kvm, &s.base, None, None).unwrap();
    let other = module(b"\0asm\x01\0\0\0");
    assert!(vm.adopt_layer(&s.layer, &other).is_err());
}

#[test]
fn a_vm_reverts_to_its_base_and_adopts_another_function() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stateful = function_snapshot(&kvm, &runner, &wat(STATEFUL), dir.path());
    // The echo's layer over the same base.
    let mut vm = Vm::restore(&kvm, &stateful.base, None, None).unwrap();
    let echo = module(&wat(ECHO_WAT));
    let len = vm.attach_module(&echo).unwrap();
    runner
        .load(
            &mut vm,
            len,
            &config(&["fn.wasm"], &[]),
            None,
            secs(10),
            &mut RunStats::default(),
        )
        .unwrap();
    let path = dir.path().join("echo.snap");
    vm.snapshot_layer(&path, [0; 32]).unwrap();
    let echo_layer = std::sync::Arc::new(hearth_vmm::snapshot::Snapshot::open(&path).unwrap());
    drop(vm);

    // One VM: warmed with the echo, back to the base, then the stateful
    // module, which must find its own initial state.
    let mut vm = Vm::restore(&kvm, &stateful.base, None, None).unwrap();
    vm.adopt_layer(&echo_layer, &echo).unwrap();
    let f = runner
        .invoke(&mut vm, &invocation(b"warm"), &mut RunStats::default())
        .unwrap();
    assert_eq!(f.stdout, b"warm");
    vm.revert_to_base().unwrap();
    vm.adopt_layer(&stateful.layer, &stateful.module).unwrap();
    let o = invoke(&runner, &mut vm, b"yyyyyyyy");
    assert_eq!((o.marker.as_slice(), o.count), (&b"initial!"[..], b'1'));
}

/// Writes 2 MiB at init (a layer past `ADOPT_COPY_MAX_PAGES`), then reads
/// stdin and answers with the first byte of that memory.
const BIG_INIT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 64)
  (func (export "_start")
    (memory.fill (i32.const 65536) (i32.const 90) (i32.const 2097152))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 65536))
    (i32.store (i32.const 4) (i32.const 1))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

#[test]
fn a_large_layer_is_mapped_not_copied_so_resets_stay_small() {
    use hearth_vmm::snapshot::Snapshot;
    use std::sync::Arc;
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = function_snapshot(&kvm, &runner, &wat(BIG_INIT), dir.path());
    let pages: u64 = s.layer.runs.iter().map(|r| r.len / 4096).sum();
    assert!(pages > hearth_vmm::vm::ADOPT_COPY_MAX_PAGES, "{pages}");

    // The VM that took a snapshot adopts it: what its init copied goes
    // back to the base and the layer is mapped from its file, so it holds
    // no copy, and a reset rewrites only what an invocation writes.
    let mut vm = Vm::restore(&kvm, &s.base, None, None).unwrap();
    let len = vm.attach_module(&s.module).unwrap();
    runner
        .load(
            &mut vm,
            len,
            &config(&["fn.wasm"], &[]),
            None,
            secs(10),
            &mut RunStats::default(),
        )
        .unwrap();
    assert!(
        vm.copied_pages().unwrap() > pages / 2,
        "the init copied its writes"
    );
    let path = dir.path().join("again.snap");
    vm.snapshot_layer(&path, [0; 32]).unwrap();
    let again = Arc::new(Snapshot::open(&path).unwrap());
    vm.adopt_layer(&again, &s.module).unwrap();
    assert_eq!(vm.copied_pages().unwrap(), 0);
    let mut copied = Vec::new();
    for _ in 0..3 {
        let f = runner
            .invoke(&mut vm, &invocation(b"x"), &mut RunStats::default())
            .unwrap();
        assert_eq!(f.stdout, b"Z", "the init's memory, from the layer");
        copied.push(vm.reset(ResetMode::Restore).unwrap().pages);
    }
    assert!(
        copied.iter().all(|c| *c > 0 && *c < 64),
        "{copied:?} of a {pages}-page layer"
    );
}
