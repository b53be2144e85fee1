//! The ahead-of-time engine on real KVM: modules compiled on the host with
//! wasmtime + Cranelift (`hearth_wasi::aot::precompile`), run by the guest's
//! no_std wasmtime from the read-only module window. The same modules and
//! expectations as the interpreter's tests, plus what only this engine
//! does: WebAssembly exceptions and reactor modules.

use hearth_vm_tests::*;
use hearth_vmm::guest::{Ended, GuestError, Runner};
use hearth_vmm::vm::ResetMode;
use hearth_vmm::RunStats;

fn aot(wat_src: &str) -> Vec<u8> {
    let code = hearth_wasi::aot::precompile(&wat(wat_src)).expect("compiles");
    assert_eq!(&code[..4], hearth_wasi::aot::AOT_MAGIC);
    code
}

#[test]
fn echo_runs_compiled() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let m = aot(ECHO_WAT);
    let f = run_once(&kvm, &runner, &m, b"{\"hello\":1}").unwrap();
    assert_eq!(f.ended, Ended::Exited(0));
    assert_eq!(f.stdout, b"{\"hello\":1}");
    assert_eq!(f.stderr, b"echo: done\n");
    let big: Vec<u8> = (0..60_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    assert_eq!(run_once(&kvm, &runner, &m, &big).unwrap().stdout, big);
}

#[test]
fn traps_exits_memory_and_output_limits() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let f = run_once(
        &kvm,
        &runner,
        &aot(r#"(module (func (export "_start") unreachable))"#),
        b"",
    )
    .unwrap();
    let Ended::Trap(msg) = &f.ended else {
        panic!("{:?}", f.ended)
    };
    assert!(msg.contains("unreachable"), "{msg}");
    let exit7 = aot(r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $e (param i32)))
        (func (export "_start") (call $e (i32.const 7))))"#);
    assert_eq!(
        run_once(&kvm, &runner, &exit7, b"").unwrap().ended,
        Ended::Exited(7)
    );
    let grow = aot(r#"(module (memory (export "memory") 1)
        (func (export "_start") (drop (memory.grow (i32.const 3200)))))"#);
    assert_eq!(
        run_once(&kvm, &runner, &grow, b"").unwrap().ended,
        Ended::OutOfMemory
    );
    let flood = aot(r#"(module
        (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 2)
        (func (export "_start") (local $i i32)
          (i32.store (i32.const 0) (i32.const 65536))
          (i32.store (i32.const 4) (i32.const 65536))
          (loop $l
            (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $l (i32.lt_u (local.get $i) (i32.const 100))))))"#);
    let f = run_once(&kvm, &runner, &flood, b"").unwrap();
    assert_eq!(f.ended, Ended::OutputTooLarge);
    // Unbounded recursion is wasmtime's stack-limit trap, not a fault.
    let deep = aot(r#"(module (func $f (export "_start") (call $f)))"#);
    let f = run_once(&kvm, &runner, &deep, b"").unwrap();
    let Ended::Trap(msg) = &f.ended else {
        panic!("{:?}", f.ended)
    };
    assert!(msg.contains("stack"), "{msg}");
}

#[test]
fn a_compiled_infinite_loop_times_out() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let m = module(&aot(
        r#"(module (func (export "_start") (loop $l (br $l))))"#,
    ));
    let mut vm = booted(&kvm, &runner, 128);
    let len = vm.attach_module(&m).unwrap();
    let inv = hearth_vmm::guest::Invocation {
        event: b"",
        request_id: "r",
        timeout_ns: secs(1),
    };
    let r = runner.load(
        &mut vm,
        len,
        &config(&["fn.wasm"], &[]),
        Some(&inv),
        secs(1),
        &mut RunStats::default(),
    );
    assert!(matches!(r, Err(GuestError::Timeout)), "{r:?}");
}

#[test]
fn exceptions_are_thrown_and_caught() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    // Throws 41 from a nested call, catches it, exits with 41 + 1; an
    // uncaught throw is a trap.
    let m = aot(r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (tag $e (param i32))
        (func $thrower (param i32) (throw $e (local.get 0)))
        (func (export "_start")
          (block $h (result i32)
            (try_table (catch $e $h) (call $thrower (i32.const 41)))
            (i32.const 0))
          (i32.const 1) (i32.add) (call $exit)))"#);
    assert_eq!(
        run_once(&kvm, &runner, &m, b"").unwrap().ended,
        Ended::Exited(42)
    );
    let m = aot(r#"(module (tag $e) (func (export "_start") (throw $e)))"#);
    let f = run_once(&kvm, &runner, &m, b"").unwrap();
    assert!(matches!(f.ended, Ended::Trap(_)), "{:?}", f.ended);
}

#[test]
fn a_reactor_runs_initialize_then_run() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    // `_initialize` sets a global that `run` returns as the exit status.
    let m = aot(r#"(module
        (global $g (mut i32) (i32.const 0))
        (func (export "_initialize") (global.set $g (i32.const 5)))
        (func (export "run") (result i32) (global.get $g)))"#);
    assert_eq!(
        run_once(&kvm, &runner, &m, b"").unwrap().ended,
        Ended::Exited(5)
    );
}

#[test]
fn a_compiled_function_snapshot_forks_and_resets() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = function_snapshot(&kvm, &runner, &aot(ECHO_WAT), dir.path());
    let mut vm = fork(&kvm, &s);
    for event in [&b"first"[..], b"second, longer", b"3"] {
        let f = runner
            .invoke(&mut vm, &invocation(event), &mut RunStats::default())
            .unwrap();
        assert_eq!((f.ended, f.stdout.as_slice()), (Ended::Exited(0), event));
        vm.reset(ResetMode::Restore).unwrap();
    }
    // A loaded module never ran its handler before the snapshot.
    let mut other = fork(&kvm, &s);
    let f = runner
        .invoke(&mut other, &invocation(b"other"), &mut RunStats::default())
        .unwrap();
    assert_eq!(f.stdout, b"other");
}
