//! The microVM pools' lifecycle on real KVM: a warmed general VM becomes a
//! function (taking its snapshot the first time), serves, resets; another
//! general VM adopts the snapshot; a cold start restores it; deleting the
//! code deletes its snapshots.

use std::sync::mpsc;
use std::time::Duration;

use hearth_pool::vm::{config_blob, FunctionSpec, Prewarm, Specialised, VmHost, VmHostConfig};
use hearth_vm_tests::*;
use hearth_vmm::guest::{Ended, Invocation};
use hearth_vmm::image::GuestImage;

fn host(dir: &std::path::Path, prewarm: Prewarm) -> VmHost {
    let config = VmHostConfig {
        snapshot_dir: dir.join("snapshots"),
        workers: 2,
        prewarm,
        boot_timeout: Duration::from_secs(10),
    };
    VmHost::new(
        config,
        GuestImage::new(hearth_guest_image::ELF),
        hearth_guest_image::ENGINE,
    )
    .expect("the VM host starts")
}

fn spec(dir: &std::path::Path, code: &str, wat_src: &str) -> FunctionSpec {
    let code_dir = dir.join("code").join(code);
    std::fs::create_dir_all(&code_dir).expect("the code dir is made");
    let module_path = code_dir.join("function.wasm");
    std::fs::write(&module_path, wat(wat_src)).expect("the module is written");
    FunctionSpec {
        code_sha256_hex: code.to_owned(),
        module_path,
        config: config_blob(&["function.wasm"], &[("AWS_LAMBDA_FUNCTION_NAME", "f")])
            .expect("the config encodes"),
        files: Vec::new(),
        error_exit: None,
        init_timeout: Duration::from_secs(10),
    }
}

/// Runs `f` on one of the host's VM threads and waits for it.
fn on_vm_thread<R: Send + 'static>(
    host: &std::sync::Arc<VmHost>,
    f: impl FnOnce(&VmHost, &hearth_vmm::guest::Runner) -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    let h = host.clone();
    host.workers
        .submit(move |r| {
            let _ = tx.send(f(&h, r));
        })
        .expect("the VM thread takes the job");
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the VM thread answers")
}

fn event(e: &[u8]) -> Invocation<'_> {
    Invocation {
        event: e,
        request_id: "r",
        timeout_ns: 5_000_000_000,
    }
}

#[test]
fn general_vms_specialise_serve_reset_and_cold_start() {
    if kvm().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let host = std::sync::Arc::new(host(dir.path(), Prewarm::Rehearse));
    // Files and Hearth's own guest: on this (unfiltered) thread.
    let runner = hearth_vmm::guest::Runner::for_this_thread().unwrap();
    let base = host.ensure_base(&runner, 128).unwrap();
    let f = spec(dir.path(), "aaaa", ECHO_WAT);
    let mut prepared = host.prepare(&f, 128).unwrap();
    assert!(prepared.layer.is_none());

    // A warmed general VM: the function has no snapshot yet, so it loads.
    let (b, pr) = (base.clone(), prepared.clone());
    let (mut p, s) = on_vm_thread(&host, move |h, r| {
        let mut p = h.new_general(r, &b).unwrap();
        let s = h.specialise(r, &mut p, &pr).unwrap();
        (p, format!("{s:?}"))
    });
    assert_eq!(
        s, "NeedsSnapshot([])",
        "the echo module writes nothing at init"
    );
    host.write_function_snapshot(&mut p, &mut prepared).unwrap();
    let pr = prepared.clone();
    let outs = on_vm_thread(&host, move |h, r| {
        h.adopt(&mut p, &pr).unwrap();
        let mut outs = Vec::new();
        for ev in [&b"one"[..], b"two"] {
            let (res, stats) = h.invoke(r, &mut p, &event(ev));
            let done = res.unwrap();
            assert_eq!(done.ended, Ended::Exited(0));
            assert_eq!(stats.exits.doorbell, 1);
            outs.push(String::from_utf8(done.stdout).unwrap());
            h.reset(&mut p).unwrap();
        }
        outs
    });
    assert_eq!(outs, ["one", "two"]);

    // Once it has a snapshot: another general VM adopts it, and a cold start
    // restores it directly.
    let prepared = host.prepare(&f, 128).unwrap();
    assert!(prepared.layer.is_some(), "the snapshot is found again");
    let (b, pr) = (base.clone(), prepared.clone());
    let outs = on_vm_thread(&host, move |h, r| {
        let mut q = h.new_general(r, &b).unwrap();
        let s = h.specialise(r, &mut q, &pr).unwrap();
        let (res, _) = h.invoke(r, &mut q, &event(b"three"));
        let (mut c, cs) = h.cold(r, &pr).unwrap();
        let (res2, _) = h.invoke(r, &mut c, &event(b"four"));
        vec![
            format!("{s:?}"),
            String::from_utf8(res.unwrap().stdout).unwrap(),
            format!("{cs:?}"),
            String::from_utf8(res2.unwrap().stdout).unwrap(),
        ]
    });
    assert_eq!(outs, ["Ready", "three", "Ready", "four"]);

    // The function's snapshot goes with its code.
    let fn_files = || {
        std::fs::read_dir(dir.path().join("snapshots"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("fn-aaaa-")
            })
            .count()
    };
    assert_eq!(fn_files(), 1);
    assert_eq!(host.store.delete_code(&f.code_sha256_hex), 1);
    assert_eq!(fn_files(), 0);
}

#[test]
fn a_module_that_fails_its_init_or_ignores_stdin() {
    if kvm().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let host = std::sync::Arc::new(host(dir.path(), Prewarm::None));
    let runner = hearth_vmm::guest::Runner::for_this_thread().unwrap();
    let base = host.ensure_base(&runner, 128).unwrap();
    let trap = host
        .prepare(
            &spec(
                dir.path(),
                "bbbb",
                r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#,
            ),
            128,
        )
        .unwrap();
    let quiet = host
        .prepare(
            &spec(
                dir.path(),
                "cccc",
                r#"(module (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
                    (memory (export "memory") 1) (data (i32.const 100) "hi")
                    (func (export "_start")
                      (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 2))
                      (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
            ),
            128,
        )
        .unwrap();
    let got = on_vm_thread(&host, move |h, r| {
        let mut p = h.new_general(r, &base).unwrap();
        let a = h.specialise(r, &mut p, &trap).unwrap();
        let mut q = h.new_general(r, &base).unwrap();
        let b = h.specialise(r, &mut q, &quiet).unwrap();
        (
            format!("{a:?}"),
            match b {
                Specialised::EndedEarly(f) => String::from_utf8(f.stdout).unwrap(),
                other => format!("{other:?}"),
            },
        )
    });
    assert!(
        got.0.starts_with("Failed(\"Runtime.Trap\"") && got.0.contains("unreachable"),
        "{}",
        got.0
    );
    assert_eq!(got.1, "hi");
}
