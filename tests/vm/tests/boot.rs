//! Booting Hearth's guest: its console reaches the host's log, and a module
//! echoes an event through the stdin/stdout contract, also from a thread
//! behind the vCPU seccomp filter.

use std::sync::{Mutex, OnceLock};

use hearth_vm_tests::*;
use hearth_vmm::guest::{Ended, Loaded, Runner};
use hearth_vmm::runner::VmThread;
use hearth_vmm::vm::Vm;
use hearth_vmm::RunStats;

/// Collects log lines (target, message).
struct Capture(Mutex<Vec<(String, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        if let Ok(mut v) = self.0.lock() {
            v.push((r.target().to_string(), r.args().to_string()));
        }
    }
    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static C: OnceLock<&'static Capture> = OnceLock::new();
    C.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(c).expect("one logger per test binary");
        log::set_max_level(log::LevelFilter::Info);
        c
    })
}

#[test]
fn console_output_reaches_the_host_log() {
    let Some(kvm) = kvm() else { return };
    let logs = capture();
    let runner = Runner::for_this_thread().unwrap();
    let mut stats = RunStats::default();
    let mut vm = Vm::boot(&kvm, &image(), 128).unwrap();
    runner.boot(&mut vm, secs(10), &mut stats).unwrap();
    let lines = logs.0.lock().unwrap().clone();
    assert!(
        lines.iter().any(|(t, m)| t == "hearth_vmm::console"
            && m == "hearth-guest: booted, engines wasmi 2.0.0, wasmtime 48.0.8 aot"),
        "{lines:?}"
    );
    assert!(
        stats.exits.console >= 1 && stats.exits.doorbell == 1,
        "{:?}",
        stats.exits
    );
}

#[test]
fn wat_echo() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let f = run_once(&kvm, &runner, &wat(ECHO_WAT), b"{\"hello\":1}").unwrap();
    assert_eq!(f.ended, Ended::Exited(0));
    assert_eq!(f.stdout, b"{\"hello\":1}");
    assert_eq!(f.stderr, b"echo: done\n");
    // A large event crosses whole, up to the module's 63 KiB buffer.
    let big: Vec<u8> = (0..60_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let f = run_once(&kvm, &runner, &wat(ECHO_WAT), &big).unwrap();
    assert_eq!(f.stdout, big);
}

#[test]
fn arguments_environment_and_request_id_reach_the_module() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    // Writes argv[1], then the environment's first entry, then the request
    // id, each followed by a newline.
    let m = wat(r#"(module
      (import "wasi_snapshot_preview1" "args_get" (func $args (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_get" (func $env (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (import "hearth" "request_id" (func $rid (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func $strlen (param $p i32) (result i32) (local $n i32)
        (block $d (loop $l
          (br_if $d (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
          (local.set $n (i32.add (local.get $n) (i32.const 1))) (br $l)))
        (local.get $n))
      (func $line (param $p i32) (param $n i32)
        (i32.store (i32.const 0) (local.get $p))
        (i32.store (i32.const 4) (local.get $n))
        (i32.store (i32.const 8) (i32.const 100))
        (i32.store (i32.const 12) (i32.const 1))
        (i32.store8 (i32.const 100) (i32.const 10))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 2) (i32.const 16))))
      (func (export "_start") (local $p i32)
        (i32.store (i32.const 0) (i32.const 300))
        (i32.store (i32.const 4) (i32.const 16))
        (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
        (drop (call $args (i32.const 200) (i32.const 1000)))
        (local.set $p (i32.load (i32.const 204)))
        (call $line (local.get $p) (call $strlen (local.get $p)))
        (drop (call $env (i32.const 200) (i32.const 2000)))
        (local.set $p (i32.load (i32.const 200)))
        (call $line (local.get $p) (call $strlen (local.get $p)))
        (call $line (i32.const 3000) (call $rid (i32.const 3000) (i32.const 64)))))"#);
    let mut vm = booted(&kvm, &runner, 128);
    let len = vm.attach_module(&module(&m)).unwrap();
    let cfg = config(&["fn.wasm", "--flag"], &[("GREETING", "hello")]);
    let r = runner
        .load(&mut vm, len, &cfg, None, secs(10), &mut RunStats::default())
        .unwrap();
    assert!(matches!(r, Loaded::Waiting));
    let f = runner
        .invoke(&mut vm, &invocation(b"x"), &mut RunStats::default())
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&f.stdout),
        "--flag\nGREETING=hello\ntest-request\n"
    );
}

#[test]
fn a_vm_runs_on_a_thread_behind_the_seccomp_filter() {
    let Some(kvm) = kvm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let runner = Runner::for_this_thread().unwrap();
    let s = function_snapshot(&kvm, &runner, &wat(ECHO_WAT), dir.path());
    let vm = fork(&kvm, &s);
    let thread = VmThread::spawn("hearth-vm-test", true).unwrap();
    // Invoke, reset, invoke again, all under the filter.
    let (vm, outs) = thread
        .call(move |r| {
            let mut vm = vm;
            let mut outs = Vec::new();
            for ev in [&b"one"[..], b"two"] {
                let f = r
                    .invoke(&mut vm, &invocation(ev), &mut RunStats::default())
                    .map(|f| f.stdout);
                outs.push(f.map_err(|e| e.to_string()));
                vm.copied_pages().unwrap();
                vm.reset(hearth_vmm::vm::ResetMode::Restore).unwrap();
            }
            (vm, outs)
        })
        .unwrap();
    assert_eq!(outs, vec![Ok(b"one".to_vec()), Ok(b"two".to_vec())]);
    // The thread cannot open files.
    let opened = thread
        .call(|_| std::fs::File::open("/etc/hostname").map_err(|e| e.kind()))
        .unwrap();
    assert_eq!(opened.err(), Some(std::io::ErrorKind::PermissionDenied));
    drop(vm);
}

#[test]
fn the_inits_stderr_is_reported_once_not_by_every_invocation() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    // Writes "init\n" to stderr, reads stdin (the snapshot point), then
    // writes "run\n" to stderr.
    let m = wat(r#"(module
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "init\n")
      (data (i32.const 200) "run\n")
      (func $err (param $p i32) (param $n i32)
        (i32.store (i32.const 0) (local.get $p))
        (i32.store (i32.const 4) (local.get $n))
        (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8))))
      (func (export "_start")
        (call $err (i32.const 100) (i32.const 5))
        (i32.store (i32.const 16) (i32.const 1000))
        (i32.store (i32.const 20) (i32.const 64))
        (drop (call $read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
        (call $err (i32.const 200) (i32.const 4))))"#);
    let mut vm = booted(&kvm, &runner, 128);
    let len = vm.attach_module(&module(&m)).unwrap();
    let cfg = config(&["fn.wasm"], &[]);
    let r = runner
        .load(&mut vm, len, &cfg, None, secs(10), &mut RunStats::default())
        .unwrap();
    assert!(matches!(r, Loaded::Waiting));
    assert_eq!(Runner::init_output(&vm).unwrap(), b"init\n");
    let f = runner
        .invoke(&mut vm, &invocation(b"x"), &mut RunStats::default())
        .unwrap();
    assert_eq!(f.stderr, b"run\n", "{}", String::from_utf8_lossy(&f.stderr));
    // From the function snapshot: every invocation logs only its own.
    let dir = tempfile::tempdir().unwrap();
    let s = function_snapshot(&kvm, &runner, &m, dir.path());
    let mut vm = fork(&kvm, &s);
    for _ in 0..2 {
        let f = runner
            .invoke(&mut vm, &invocation(b"x"), &mut RunStats::default())
            .unwrap();
        assert_eq!(f.stderr, b"run\n", "{}", String::from_utf8_lossy(&f.stderr));
        vm.reset(hearth_vmm::vm::ResetMode::Restore).unwrap();
    }
}
