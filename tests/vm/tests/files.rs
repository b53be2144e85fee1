//! The guest's filesystem on real KVM: file images mapped read-only into
//! the files window, mounted where the config's mount table says, read by
//! a module through WASI; `/tmp` writable and dropped by a reset.

use hearth_guest_abi::mailbox::LoadError;
use hearth_vm_tests::*;
use hearth_vmm::files::ImageBuilder;
use hearth_vmm::guest::{Ended, Loaded, Runner};
use hearth_vmm::snapshot::Snapshot;
use hearth_vmm::vm::{place_files, ModuleFile, ResetMode, Vm};
use hearth_vmm::RunStats;
use std::sync::Arc;

/// Reads the event; writes the shipped `/task/data.txt`, then "LEAK" if
/// `/tmp/x` already exists, then creates `/tmp/x` holding the event and
/// writes what a new descriptor reads back from it.
const FILES_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "task/data.txt")
  (data (i32.const 200) "tmp/x")
  (data (i32.const 300) "LEAK")
  (func $out (param $p i32) (param $n i32)
    (i32.store (i32.const 0) (local.get $p))
    (i32.store (i32.const 4) (local.get $n))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start") (local $fd i32) (local $n i32)
    (i32.store (i32.const 0) (i32.const 4096))
    (i32.store (i32.const 4) (i32.const 1024))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (local.set $n (i32.load (i32.const 8)))
    (if (i32.eqz (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 13)
                   (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 12)))
      (then
        (local.set $fd (i32.load (i32.const 12)))
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store (i32.const 4) (i32.const 1024))
        (drop (call $read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 16)))
        (call $out (i32.const 1024) (i32.load (i32.const 16)))))
    (if (i32.eqz (call $open (i32.const 3) (i32.const 0) (i32.const 200) (i32.const 5)
                   (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 12)))
      (then (call $out (i32.const 300) (i32.const 4))))
    (if (i32.eqz (call $open (i32.const 3) (i32.const 0) (i32.const 200) (i32.const 5)
                   (i32.const 1) (i64.const 66) (i64.const 0) (i32.const 0) (i32.const 12)))
      (then
        (local.set $fd (i32.load (i32.const 12)))
        (i32.store (i32.const 0) (i32.const 4096))
        (i32.store (i32.const 4) (local.get $n))
        (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 16)))))
    ;; and read it back through a new descriptor: the write is real.
    (if (i32.eqz (call $open (i32.const 3) (i32.const 0) (i32.const 200) (i32.const 5)
                   (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 12)))
      (then
        (local.set $fd (i32.load (i32.const 12)))
        (i32.store (i32.const 0) (i32.const 2048))
        (i32.store (i32.const 4) (i32.const 1024))
        (drop (call $read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 16)))
        (call $out (i32.const 2048) (i32.load (i32.const 16)))))))"#;

fn image(files: &[(&str, &[u8])]) -> ModuleFile {
    let mut b = ImageBuilder::new();
    for (p, d) in files {
        b.file_bytes(p, 0o644, d.to_vec())
            .expect("the file image takes the file");
    }
    let mut out = Vec::new();
    b.write(&mut out).expect("the file image is written");
    module(&out)
}

fn config_with(mounts: &[(&str, &ModuleFile)]) -> Vec<u8> {
    let placed = place_files(&mounts.iter().map(|(_, f)| f.len).collect::<Vec<_>>())
        .expect("the files fit in the window");
    let table: Vec<hearth_guest_abi::config::Mount<'_>> = mounts
        .iter()
        .zip(placed)
        .map(|((path, _), (gpa, len))| hearth_guest_abi::config::Mount { path, gpa, len })
        .collect();
    let mut buf = vec![0u8; 4096];
    let n = hearth_guest_abi::config::encode_with_mounts(&["fn.wasm"], &[], &table, &mut buf)
        .expect("the config encodes");
    buf.truncate(n);
    buf
}

#[test]
fn mounted_files_are_read_and_tmp_is_dropped_by_a_reset() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let task = image(&[("data.txt", b"shipped\n")]);
    let cfg = config_with(&[("/task", &task)]);
    // Base, then the function snapshot at the stdin read, with the image.
    let mut vm = booted(&kvm, &runner, 128);
    vm.snapshot_base(&dir.path().join("base.snap"), [0; 32])
        .unwrap();
    drop(vm);
    let base = Arc::new(Snapshot::open(&dir.path().join("base.snap")).unwrap());
    let m = module(&wat(FILES_WAT));
    let mut vm = Vm::restore(&kvm, &base, None, None).unwrap();
    let len = vm.attach_module(&m).unwrap();
    vm.attach_files(&[&task]).unwrap();
    let r = runner
        .load(&mut vm, len, &cfg, None, secs(10), &mut RunStats::default())
        .unwrap();
    assert!(matches!(r, Loaded::Waiting), "{r:?}");
    vm.snapshot_layer(&dir.path().join("fn.snap"), [0; 32])
        .unwrap();
    drop(vm);
    let layer = Arc::new(Snapshot::open(&dir.path().join("fn.snap")).unwrap());
    let mut vm = Vm::restore(&kvm, &base, Some(&layer), Some(&m)).unwrap();
    vm.attach_files(&[&task]).unwrap();
    for event in [&b"one"[..], b"two"] {
        let f = runner
            .invoke(&mut vm, &invocation(event), &mut RunStats::default())
            .unwrap();
        assert_eq!(f.ended, Ended::Exited(0));
        // The shipped file, no trace of the last invocation's /tmp, and
        // this invocation's /tmp file read back.
        let want = [&b"shipped\n"[..], event].concat();
        assert_eq!(f.stdout, want, "{:?}", String::from_utf8_lossy(&f.stdout));
        vm.reset(ResetMode::Restore).unwrap();
    }
}

#[test]
fn a_bad_mount_table_or_image_is_a_load_error() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let m = module(&wat(FILES_WAT));
    // An image that is not one.
    let junk = module(b"not a file image at all");
    let mut vm = booted(&kvm, &runner, 128);
    let len = vm.attach_module(&m).unwrap();
    vm.attach_files(&[&junk]).unwrap();
    let cfg = config_with(&[("/task", &junk)]);
    let r = runner.load(&mut vm, len, &cfg, None, secs(10), &mut RunStats::default());
    let Ok(Loaded::Finished(f)) = r else {
        panic!("{r:?}")
    };
    let Ended::LoadError { kind, message } = f.ended else {
        panic!("{:?}", f.ended)
    };
    assert_eq!(kind, LoadError::Config);
    assert!(message.contains("malformed file image"), "{message}");
}
