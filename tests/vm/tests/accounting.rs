//! The accounting's CPU time agrees with a guest busy loop of known length.
//!
//! The module spins until the guest's monotonic clock (the TSC, anchored to
//! the host's clock at entry) says 50 ms have passed. The vCPU thread's CPU
//! time across KVM_RUN must then be 50 ms within 20% + 2 ms: a loose bound
//! (this machine's scheduling is noisy), stated here. A round in which the
//! host preempted the vCPU thread spins less CPU than 50 ms (the guest's
//! clock runs on meanwhile), so the bound must hold in at least one of five
//! rounds, and no round may count more CPU than wall time. Speed is not
//! asserted.

use hearth_vm_tests::*;
use hearth_vmm::guest::{Ended, Runner};
use hearth_vmm::RunStats;

const BUSY_MS: u64 = 50;

#[test]
fn cpu_time_of_a_busy_loop() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let m = wat(&format!(
        r#"(module
      (import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i64 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func $t (result i64) (drop (call $now (i32.const 1) (i64.const 1) (i32.const 0))) (i64.load (i32.const 0)))
      (func (export "_start") (local $start i64)
        (i32.store (i32.const 16) (i32.const 64))
        (i32.store (i32.const 20) (i32.const 8))
        (drop (call $read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
        (local.set $start (call $t))
        (loop $spin (br_if $spin (i64.lt_u (i64.sub (call $t) (local.get $start)) (i64.const {ns}))))))"#,
        ns = BUSY_MS * 1_000_000
    ));
    let dir = tempfile::tempdir().unwrap();
    let s = function_snapshot(&kvm, &runner, &m, dir.path());
    let mut vm = fork(&kvm, &s);
    let want = BUSY_MS as f64 * 1e6;
    let mut within = Vec::new();
    for round in 0..5 {
        let mut stats = RunStats::default();
        let f = runner
            .invoke(&mut vm, &invocation(b"go"), &mut stats)
            .unwrap();
        assert_eq!(f.ended, Ended::Exited(0));
        let (cpu, wall) = (stats.run_cpu_ns as f64, stats.run_wall_ns as f64);
        eprintln!(
            "round {round}: cpu {:.3} ms, wall {:.3} ms",
            cpu / 1e6,
            wall / 1e6
        );
        within.push((cpu - want).abs() <= want * 0.2 + 2e6);
        assert!(cpu <= wall * 1.05 + 1e6, "cpu {cpu} > wall {wall}");
        assert!(wall >= want * 0.95, "wall {wall} for a {want} ns loop");
        assert_eq!(stats.exits.doorbell, 1);
        vm.reset(hearth_vmm::vm::ResetMode::Restore).unwrap();
    }
    assert!(
        within.iter().any(|w| *w),
        "no round's CPU time was within 20% + 2 ms of the {want} ns loop: {within:?}"
    );
}
