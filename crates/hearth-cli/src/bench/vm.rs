//! Section `vm`: Hearth's microVM core, beside this machine's physical floor
//! measured in the same run (a bare kvm-ioctls create/enter/exit loop with
//! no Hearth code, [`hearth_vmm::floor`]) and beside the same module run
//! in-process with the same engine (no isolation).
//!
//! Scenarios, interleaved trial by trial where they are compared:
//! - VM create: `Vm::boot` of the guest image to its first entry, and on
//!   to `BaseReady` (the base snapshot point); the floor's create;
//! - fork: a new VM restored from a function snapshot, to the echo
//!   module's result, and its restore part alone;
//! - reset + re-run: the same VM reset to the function snapshot and
//!   invoked again, against the module run in-process;
//! - the exit round trip: Hearth's `Vm::run` to a doorbell and back,
//!   against the floor's bare `KVM_RUN`;
//! - the cost of a page copied on write, from forks that write 256 fresh
//!   pages against forks that write none;
//! - N forks kept alive at once (50 quick, 1,000 full; stopped early, saying
//!   why, past 120 s, under 2 GiB MemAvailable, near the open-file limit or
//!   on a failed fork): the time for all, and their memory.
//!
//! The microVM pools (`hearth_pool::vm::VmHost`, driven here as the node
//! drives it, guest steps on its seccomp'd VM threads):
//! - specialising a warmed general VM: with no function snapshot yet (load,
//!   write the snapshot, adopt it) and with one (`adopt_layer`), against
//!   the fork's restore;
//! - idle VMs kept at once, general (prewarm rehearse) and function-warm
//!   (after an invocation and its reset): private pages, the memory budget's
//!   charge, the kernel's memory (MemAvailable's drop minus private memory,
//!   and the kernel's own counters), and how many fit in 24 GiB.
//!
//! And through the Lambda API, on a node of this binary: a WebAssembly
//! function's warm invoke (`vm-warm`) against a Python function's warm
//! invoke in a process sandbox on the same node, and a fresh WebAssembly
//! function's first invoke from the general VM pool (`vm-general`, no
//! snapshot yet) against a fresh Python function's from the general
//! runtime-warm pool, alternating trial by trial.
//!
//! Nothing here asserts a speed.

use std::io::Write;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use hearth_bench::report::{ChartSpec, Figure, Scenario, Section};
use hearth_pool::vm::{
    config_blob, FunctionSpec, PooledVm, Prepared, Prewarm, Specialised, VmHost, VmHostConfig,
};
use hearth_vmm::cache::{FunctionKey, SnapshotCache};
use hearth_vmm::guest::{Ended, Invocation, Loaded, Runner};
use hearth_vmm::image::GuestImage;
use hearth_vmm::kvm::Kvm;
use hearth_vmm::snapshot::Snapshot;
use hearth_vmm::vm::{ModuleFile, ResetMode, Vm};
use hearth_vmm::{monotonic_ns, RunStats};
use hearth_wasi::{Engine, Outcome, Platform, Wasi, WasmiEngine};

use super::http::{init_duration, timed_invoke, Conn, Signer};
use super::node::{zip_b64, Node};
use super::{check_stop, thin, Ctx, HANDLER};

/// The echo module: stdin to stdout.
pub(super) const ECHO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start") (local $total i32) (local $n i32)
    (block $eof (loop $more
      (i32.store (i32.const 0) (i32.add (i32.const 1024) (local.get $total)))
      (i32.store (i32.const 4) (i32.sub (i32.const 64512) (local.get $total)))
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $n (i32.load (i32.const 8)))
      (br_if $eof (i32.eqz (local.get $n)))
      (local.set $total (i32.add (local.get $total) (local.get $n)))
      (br $more)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (local.get $total))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// Reads the event, then writes one byte into each of `pages` pages of
/// linear memory that nothing touched before the snapshot.
fn writer_wat(pages: u32) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 300)
  (func (export "_start") (local $i i32)
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.const {pages})))
      (i32.store8 (i32.add (i32.const 65536) (i32.mul (local.get $i) (i32.const 4096))) (i32.const 1))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))))"#
    )
}

/// Reads the event, then spins until the guest's monotonic clock says
/// `ms` milliseconds have passed.
fn busy_wat(ms: u64) -> String {
    format!(
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
        ns = ms * 1_000_000
    )
}

pub(super) const EVENT: &[u8] = br#"{"bench":true}"#;
pub(super) const TIMEOUT: u64 = 10_000_000_000;

pub(super) fn ns_ms(v: &[u64]) -> Vec<Duration> {
    v.iter().map(|n| Duration::from_nanos(*n)).collect()
}

pub(super) fn median(v: &[u64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or(0) as f64
}

pub(super) fn module_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<ModuleFile> {
    let path = dir.join(name);
    std::fs::File::create(&path)?.write_all(bytes)?;
    Ok(ModuleFile::open(&path)?)
}

/// A base snapshot and a function snapshot of `module`.
pub(super) struct Snapshots {
    pub(super) base: Arc<Snapshot>,
    pub(super) layer: Arc<Snapshot>,
    pub(super) module: ModuleFile,
}

pub(super) fn snapshots(
    kvm: &Arc<Kvm>,
    runner: &Runner,
    cache: &SnapshotCache,
    base: &Arc<Snapshot>,
    module: ModuleFile,
) -> Result<Snapshots> {
    let mut vm = Vm::restore(kvm, base, None, None)?;
    let len = vm.attach_module(&module)?;
    let cfg = config()?;
    match runner.load(&mut vm, len, &cfg, None, TIMEOUT, &mut RunStats::default())? {
        Loaded::Waiting => {}
        Loaded::Finished(f) => {
            return Err(anyhow!(
                "the module ended before reading stdin: {:?}",
                f.ended
            ))
        }
    }
    let key = FunctionKey {
        module_sha256: module.sha256,
        image_id: base.header.image_id,
        engine: hearth_guest_image::ENGINE,
        config: &cfg,
        mem_mib: base.header.mem_size >> 20,
        base_id: base.header.id,
        files: &[],
    }
    .digest();
    let path = cache.function_path(&key);
    vm.snapshot_layer(&path, key)?;
    Ok(Snapshots {
        base: base.clone(),
        layer: Arc::new(Snapshot::open(&path)?),
        module,
    })
}

fn config() -> Result<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let n = hearth_guest_abi::config::encode(&["fn.wasm"], &[], &mut buf)
        .map_err(|e| anyhow!("{e}"))?;
    buf.truncate(n);
    Ok(buf)
}

pub(super) fn invocation() -> Invocation<'static> {
    Invocation {
        event: EVENT,
        request_id: "bench",
        timeout_ns: TIMEOUT,
    }
}

/// Restores a VM from `s` and runs it to its result; returns (restore ns,
/// total ns).
fn fork_once(kvm: &Arc<Kvm>, runner: &Runner, s: &Snapshots) -> Result<(u64, u64, Vm)> {
    let t0 = monotonic_ns();
    let mut vm = Vm::restore(kvm, &s.base, Some(&s.layer), Some(&s.module))?;
    let t1 = monotonic_ns();
    let f = runner.invoke(&mut vm, &invocation(), &mut RunStats::default())?;
    let t2 = monotonic_ns();
    if f.ended != Ended::Exited(0) {
        return Err(anyhow!("the module failed: {:?}", f.ended));
    }
    Ok((t1 - t0, t2 - t0, vm))
}

/// `Platform` for the in-process baseline: plain buffers.
struct Buffers {
    out: Vec<u8>,
    rng: u64,
}

impl Platform for Buffers {
    fn realtime_ns(&mut self) -> u64 {
        hearth_vmm::monotonic_ns()
    }
    fn monotonic_ns(&mut self) -> u64 {
        hearth_vmm::monotonic_ns()
    }
    fn random(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.rng = self.rng.wrapping_mul(6364136223846793005).wrapping_add(1);
            *b = (self.rng >> 33) as u8;
        }
    }
    fn wait_event(&mut self) -> usize {
        EVENT.len()
    }
    fn read_event(&mut self, at: usize, buf: &mut [u8]) -> usize {
        let n = buf.len().min(EVENT.len().saturating_sub(at));
        buf[..n].copy_from_slice(&EVENT[at..at + n]);
        n
    }
    fn stdout(&mut self, data: &[u8]) -> Result<(), hearth_wasi::OutputTooLarge> {
        self.out.extend_from_slice(data);
        Ok(())
    }
    fn stderr(&mut self, _: &[u8]) {}
    fn memory_available(&self) -> usize {
        1 << 30
    }
}

/// Runs `module` in this process under `engine` (no VM) and returns how
/// long it took, checking that it wrote `want` to stdout.
pub(super) fn in_process(engine: &impl Engine, module: &[u8], want: &[u8]) -> Result<u64> {
    let t0 = monotonic_ns();
    let (o, w) = engine.run(
        module,
        Wasi::new(
            Buffers {
                out: Vec::new(),
                rng: 1,
            },
            &[b"fn.wasm\0"],
            &[],
        ),
    );
    let t = monotonic_ns() - t0;
    if o != Outcome::Exited(0) || w.platform().out != want {
        return Err(anyhow!(
            "{} in-process: {o:?}, stdout {:?} (expected {want:?})",
            engine.id(),
            w.platform().out
        ));
    }
    Ok(t)
}

/// The doorbell-loop image for Hearth's exit round trip.
fn doorbell_loop_image() -> GuestImage {
    use hearth_guest_abi::layout::{ENTRY_HEADER_MAGIC, ENTRY_HEADER_OFFSET, IMAGE_BASE};
    let mut code = vec![0x90u8; ENTRY_HEADER_OFFSET as usize];
    let user_at = ENTRY_HEADER_OFFSET as usize + 8 + 8 * 32;
    code[0] = 0xe9;
    code[1..5].copy_from_slice(&((user_at - 5) as i32).to_le_bytes());
    code.extend_from_slice(&ENTRY_HEADER_MAGIC.to_le_bytes());
    for _ in 0..32 {
        code.extend_from_slice(&(IMAGE_BASE + user_at as u64).to_le_bytes());
    }
    // mov dx, DOORBELL; mov eax, StdinWait; out dx, eax; jmp back to the out.
    code.extend_from_slice(&[0x66, 0xba]);
    code.extend_from_slice(&hearth_guest_abi::ports::DOORBELL_PORT.to_le_bytes());
    code.push(0xb8);
    code.extend_from_slice(&(hearth_guest_abi::Doorbell::StdinWait as u32).to_le_bytes());
    code.extend_from_slice(&[0xef, 0xeb, 0xfd]);
    GuestImage::new(elf(IMAGE_BASE, &code))
}

fn elf(vaddr: u64, code: &[u8]) -> Vec<u8> {
    let mut e = vec![0u8; 0x78];
    e[0..4].copy_from_slice(b"\x7fELF");
    (e[4], e[5], e[6]) = (2, 1, 1);
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
    e[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes());
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

/// Private (anonymous + copied) memory of this process, KiB.
fn private_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

fn mem_available_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Descriptors this process has open.
fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// This process's soft limit on open files.
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let mut section = Section::new(
        "vm",
        "MicroVM core",
        "Hearth's own KVM VMM: VM create, fork from a function snapshot to the result, reset + re-run, the exit \
         round trip and the copy-on-write page, beside this machine's bare-KVM floor and the same module run \
         in-process with the same engine (wasmi), all in one run. The microVM pools: specialising a warmed \
         general VM with and without the function snapshot, idle VMs' memory and how many fit in 24 GiB; and \
         through the Lambda API on a node, a WebAssembly function's warm and first invokes against a Python \
         function's in a process sandbox on the same node.",
    );
    let kvm = match Kvm::open() {
        Ok(k) => k,
        Err(e) => return Ok(section.skipped("vm", &e.to_string())),
    };
    let runner = Runner::for_this_thread()?;
    let n = if ctx.quick { 30 } else { 300 };
    let dir = ctx.dir.join("vm");
    std::fs::create_dir_all(&dir)?;
    let cache = SnapshotCache::new(&dir.join("snapshots"))?;
    let image = GuestImage::new(hearth_guest_image::ELF);

    // VM create, and the floor's, interleaved.
    eprintln!("[vm] create and boot ({n} each)…");
    let (mut create, mut boot, mut floor_create, mut floor_first, mut floor_exits) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let exits_per_floor = if ctx.quick { 200 } else { 1000 };
    for _ in 0..n {
        check_stop()?;
        let t0 = monotonic_ns();
        let mut vm = Vm::boot(&kvm, &image, 128)?;
        let t1 = monotonic_ns();
        runner.boot(&mut vm, TIMEOUT, &mut RunStats::default())?;
        let t2 = monotonic_ns();
        create.push(t1 - t0);
        boot.push(t2 - t0);
        drop(vm);
        let f = hearth_vmm::floor::measure(&kvm, exits_per_floor)
            .map_err(|e| anyhow!("the floor: {e}"))?;
        floor_create.push(f.create_ns);
        floor_first.push(f.create_ns + f.first_run_ns);
        floor_exits.extend(f.exit_round_trips_ns);
    }

    // Snapshots: one base, function layers for the echo and the writers.
    let mut vm = Vm::boot(&kvm, &image, 128)?;
    runner.boot(&mut vm, TIMEOUT, &mut RunStats::default())?;
    let base_path = cache.base_path(&image.id(), &kvm.cpu_signature(), 128);
    vm.snapshot_base(&base_path, [0; 32])?;
    drop(vm);
    let base = Arc::new(Snapshot::open(&base_path)?);
    let echo_wasm = wat::parse_str(ECHO_WAT).context("echo WAT")?;
    let echo = snapshots(
        &kvm,
        &runner,
        &cache,
        &base,
        module_file(&dir, "echo.wasm", &echo_wasm)?,
    )?;
    let w0 = snapshots(
        &kvm,
        &runner,
        &cache,
        &base,
        module_file(&dir, "w0.wasm", &wat::parse_str(writer_wat(0))?)?,
    )?;
    let w256 = snapshots(
        &kvm,
        &runner,
        &cache,
        &base,
        module_file(&dir, "w256.wasm", &wat::parse_str(writer_wat(256))?)?,
    )?;

    // Fork to result; reset + re-run; in-process; exit round trip; CoW.
    eprintln!("[vm] fork, reset + re-run, in-process, exits, copy-on-write ({n} each)…");
    let engine = WasmiEngine::new();
    let (mut fork_total, mut fork_restore, mut reset_rerun, mut reset_only, mut inproc) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut rerun_only = Vec::new();
    let (mut cow0, mut cow256, mut cow_pages, mut fork_cow) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut exit_trips = Vec::new();
    let mut loop_vm = Vm::boot(&kvm, &doorbell_loop_image(), 64)?;
    let mut warm = fork_once(&kvm, &runner, &echo)?.2;
    warm.copied_pages()?;
    for _ in 0..n {
        check_stop()?;
        let (r, t, mut vm) = fork_once(&kvm, &runner, &echo)?;
        fork_restore.push(r);
        fork_total.push(t);
        fork_cow.push(vm.copied_pages()?);
        drop(vm);

        let t0 = monotonic_ns();
        warm.reset(ResetMode::Restore)?;
        let t1 = monotonic_ns();
        let f = runner.invoke(&mut warm, &invocation(), &mut RunStats::default())?;
        let t2 = monotonic_ns();
        if f.stdout != EVENT {
            return Err(anyhow!("reset + re-run answered {:?}", f.stdout));
        }
        warm.copied_pages()?;
        reset_only.push(t1 - t0);
        reset_rerun.push(t2 - t0);
        rerun_only.push(t2 - t1);

        inproc.push(in_process(&engine, &echo_wasm, EVENT)?);

        let (_, t_0, _) = fork_once(&kvm, &runner, &w0)?;
        let (_, t_256, mut vm) = fork_once(&kvm, &runner, &w256)?;
        cow_pages.push(vm.copied_pages()?);
        cow0.push(t_0);
        cow256.push(t_256);
        drop(vm);

        for _ in 0..20 {
            let t0 = monotonic_ns();
            let mut stats = RunStats::default();
            runner.run_raw(&mut loop_vm, TIMEOUT, &mut stats)?;
            exit_trips.push(monotonic_ns() - t0);
        }
    }

    // Accounting: a 10 ms guest busy loop against the vCPU thread's CPU
    // time; and what the accounting's clock reads cost per invocation.
    eprintln!("[vm] accounting…");
    let busy = snapshots(
        &kvm,
        &runner,
        &cache,
        &base,
        module_file(&dir, "busy.wasm", &wat::parse_str(busy_wat(10))?)?,
    )?;
    let mut busy_vm = fork_once(&kvm, &runner, &busy)?.2;
    let mut acct_err = Vec::new();
    for _ in 0..(n / 3).max(10) {
        check_stop()?;
        busy_vm.reset(ResetMode::Restore)?;
        let mut stats = RunStats::default();
        runner.invoke(&mut busy_vm, &invocation(), &mut stats)?;
        acct_err.push((stats.run_cpu_ns as f64 - 10e6).abs() / 10e6 * 100.0);
    }
    drop(busy_vm);
    let reads = 100_000u64;
    let t0 = monotonic_ns();
    let mut sink = 0u64;
    for _ in 0..reads {
        sink = sink
            .wrapping_add(monotonic_ns())
            .wrapping_add(hearth_vmm::thread_cpu_ns());
    }
    // Two of each per run (before and after).
    let acct_cost_ns = (monotonic_ns() - t0) as f64 / reads as f64 * 2.0;
    std::hint::black_box(sink);
    acct_err.sort_by(f64::total_cmp);
    let acct_err_p50 = acct_err.get(acct_err.len() / 2).copied().unwrap_or(0.0);

    // N forks alive at once, in this one process. Bounded in count, time,
    // memory and open files: every KVM VM registers an MMU notifier on the
    // process, so host page-table work in the process grows with the VMs it
    // holds (measured by the last fork below, against the first); pools
    // shard VMs across processes.
    let want = if ctx.quick { 50 } else { 1000 };
    let alive_budget = Duration::from_secs(if ctx.quick { 20 } else { 120 });
    const MEM_FLOOR_KIB: u64 = 2 << 20;
    eprintln!("[vm] {want} forks kept alive…");
    settle(ctx);
    let fds0 = open_fds();
    let mark_every = if ctx.quick { 10 } else { 50 };
    let (mut marks, mut marking_ns) = (MemRounds::default(), 0);
    let fd_limit = open_files_limit();
    let started = Instant::now();
    let t0 = monotonic_ns();
    let mut vms = Vec::with_capacity(want);
    let mut stopped = None;
    for i in 0..want {
        check_stop()?;
        if started.elapsed() > alive_budget {
            stopped = Some(format!(
                "the {} s time budget passed",
                alive_budget.as_secs()
            ));
            break;
        }
        if i % mark_every == 0 {
            let t = monotonic_ns();
            marks.mark(i);
            marking_ns += monotonic_ns() - t;
        }
        if i % 25 == 0 {
            if mem_available_kib() < MEM_FLOOR_KIB {
                stopped = Some("MemAvailable fell under 2 GiB".to_owned());
                break;
            }
            if let (Some(limit), Some(now), Some(before), true) =
                (fd_limit, open_fds(), fds0, i > 0)
            {
                let per_vm = now.saturating_sub(before).div_ceil(i as u64);
                if now + 25 * per_vm + 64 > limit {
                    stopped = Some(format!("the open-file limit ({limit}) was near"));
                    break;
                }
            }
        }
        if i > 0 && i % 100 == 0 {
            eprintln!(
                "[vm] {i} forks alive after {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        // A fork that fails with this many VMs alive (e.g. runs past its
        // deadline on a loaded host) ends the loop: that is the finding.
        let fork = || -> Result<Vm> {
            let mut vm = Vm::restore(&kvm, &echo.base, Some(&echo.layer), Some(&echo.module))?;
            runner.invoke(&mut vm, &invocation(), &mut RunStats::default())?;
            vm.reset(ResetMode::Discard)?;
            Ok(vm)
        };
        match fork() {
            Ok(vm) => vms.push(vm),
            Err(e) => {
                stopped = Some(format!("fork {} failed: {e:#}", i + 1));
                break;
            }
        }
    }
    let alive = vms.len();
    let all_ms = (monotonic_ns() - t0 - marking_ns) as f64 / 1e6;
    if marks.marks.last().is_some_and(|(n, _)| *n < alive) {
        marks.mark(alive);
    }
    let mut crowded = Vec::new();
    for _ in 0..5 {
        match fork_once(&kvm, &runner, &echo) {
            Ok((_, t, _)) => crowded.push(t),
            Err(e) => {
                eprintln!("[vm] a fork with {alive} VMs alive failed: {e:#}");
                break;
            }
        }
    }
    drop(vms);
    let (alive_private, alive_avail, alive_counters) = marks.per_vm();
    let alive_note = match &stopped {
        None => format!("all {alive} of {want} fit"),
        Some(why) => format!("stopped early at {alive} of {want}: {why}"),
    };
    if let Some(why) = &stopped {
        eprintln!("[vm] forks kept alive: stopped at {alive} of {want}: {why}");
    }

    // The pools, through VmHost: specialising, and idle VMs' memory.
    eprintln!("[vm] pools: specialise, idle VM memory…");
    let pool = pool_direct(ctx, &dir, &runner).context("the microVM pools")?;

    // Through the Lambda API, on a node of this binary.
    eprintln!("[vm] pools through the Lambda API (a node)…");
    let api = pool_api(ctx).context("the microVM pools through the Lambda API")?;

    let us = |v: &[u64]| median(v) / 1000.0;
    section = section
        .scenario(Scenario::from_durations("floor-create", "floor: bare KVM VM create (VM, slot, vCPU, CPUID, regs)", &ns_ms(&floor_create)))
        .scenario(Scenario::from_durations("vm-create", "VM create: Vm::boot to the first entry", &ns_ms(&create)).with_baseline("floor-create"))
        .scenario(Scenario::from_durations("floor-first-run", "floor: create + first entry to the first exit", &ns_ms(&floor_first)))
        .scenario(Scenario::from_durations("vm-boot", "VM create + guest boot to BaseReady", &ns_ms(&boot)).with_baseline("floor-first-run"))
        .scenario(Scenario::from_durations("floor-exit", "floor: one exit round trip (bare KVM_RUN)", &ns_ms(&floor_exits)))
        .scenario(Scenario::from_durations("vm-exit", "exit round trip: Vm::run to a doorbell and back", &ns_ms(&exit_trips)).with_baseline("floor-exit"))
        .scenario(Scenario::from_durations("in-process", "the echo module in-process (compile, instantiate, run; no isolation)", &ns_ms(&inproc)))
        .scenario(Scenario::from_durations("fork-restore", "fork: restore from the function snapshot (no pool)", &ns_ms(&fork_restore)).with_baseline("floor-create"))
        .scenario(Scenario::from_durations("fork", "fork: restore + run to the result (no pool)", &ns_ms(&fork_total)).with_baseline("in-process"))
        .scenario(Scenario::from_durations("reset", "reset to the function snapshot", &ns_ms(&reset_only)))
        .scenario(Scenario::from_durations("reset-rerun", "reset + re-run to the result", &ns_ms(&reset_rerun)).with_baseline("in-process"))
        .figure(Figure::new("cow-page", "cost of one page first written after a fork", (median(&cow256) - median(&cow0)) / 1000.0 / 256.0, "µs")
            .with_note(&format!("forks writing 256 fresh pages against forks writing none (pages copied: {} vs the echo's {})", median(&cow_pages), median(&fork_cow))))
        .figure(Figure::new("fork-pages", "pages copied on write by a forked echo", median(&fork_cow), "pages"))
        .figure(Figure::new("forks-alive-count", "forks kept alive at once in one process", alive as f64, "VMs").with_note(&alive_note))
        .figure(Figure::new("forks-alive-ms", &format!("{alive} forks restored, run once and reset (copies dropped), kept alive"), all_ms, "ms").with_note(&alive_note));
    if !crowded.is_empty() {
        section = section.figure(Figure::new("fork-crowded", &format!("fork to result with {alive} VMs alive in the process (p50 of {})", crowded.len()), median(&crowded) / 1e6, "ms")
            .with_note("against the fork scenario's p50 with none alive: KVM's per-VM MMU notifiers make every host page-table change in the process visit every VM"));
    }
    section = section
        .figure(Figure::new("forks-alive-private", "per kept-alive VM: private memory of this process", alive_private, "KiB")
            .with_note("user-space pages only (the VM's copied pages and the VMM's own); KVM's kernel structures are in the MemAvailable figure"))
        .figure(Figure::new("forks-alive-memavailable", "per kept-alive VM: MemAvailable drop", alive_avail, "KiB")
            .with_note(&format!("memory per kept-alive VM: the median over {} intervals of {mark_every} VMs (other activity on the host moves system-wide figures)", marks.intervals())))
        .figure(Figure::new("forks-alive-kernel", "per kept-alive VM: kernel memory (MemAvailable drop - private)", (alive_avail - alive_private).max(0.0), "KiB")
            .with_note(&format!("the kernel's own counters (slab, vmalloc, page tables, KVM page tables, kernel stacks) grew {alive_counters:.0} KiB per VM")))
        .figure(Figure::new("accounting-error", "accounting: |vCPU thread CPU time - 10 ms| for a 10 ms guest busy loop (p50)", acct_err_p50, "%"))
        .figure(Figure::new("accounting-cost", "accounting: clock reads added per run", acct_cost_ns / 1000.0, "µs")
            .with_note("two CLOCK_MONOTONIC and two CLOCK_THREAD_CPUTIME_ID reads; the copied-page count is the reset's own page scan"))
        .figure(Figure::new("reset-rerun-over-in-process", "reset + re-run minus in-process (p50)", us(&reset_rerun) - us(&inproc), "µs"))
        .chart(ChartSpec::latency_cdf("vm.svg", "MicroVM: fork, reset + re-run, in-process", &["fork", "reset-rerun", "in-process", "floor-create"]));
    Ok(pool_results(
        section,
        &pool,
        &api,
        &Medians {
            in_process_ms: median(&inproc) / 1e6,
            rerun_ms: median(&rerun_only) / 1e6,
        },
    ))
}

/// The core figures the pool and API results are compared with, ms.
struct Medians {
    in_process_ms: f64,
    /// A warm VM's run alone (after its reset): what the pool's warm
    /// invoke does on the VM, its reset being off the response path.
    rerun_ms: f64,
}

/// Adds the pool and Lambda API scenarios and figures.
fn pool_results(
    section: Section,
    pool: &PoolMeasured,
    api: &ApiMeasured,
    core: &Medians,
) -> Section {
    let p50_ms = |v: &[Duration]| {
        hearth_bench::report::Summary::of(
            &v.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>(),
        )
        .p50
    };
    let kib_24g = 24.0 * 1024.0 * 1024.0;
    let fit = |id: &str, what: &str, m: &IdleVms| {
        let per_vm = m.charge_kib() + m.kernel_for_fit();
        Figure::new(id, &format!("{what} that fit in 24 GiB"), (kib_24g / per_vm.max(1.0)).floor(), "VMs").with_note(&format!(
            "24 GiB / (budget charge {:.0} KiB + measured kernel memory {:.0} KiB, the larger of the two kernel figures) = 25165824 KiB / {per_vm:.0} KiB; the charge already includes an estimated {} KiB of KVM overhead, so by the node's memory budget alone (24 GiB / charge) {:.0} fit",
            m.charge_kib(),
            m.kernel_for_fit(),
            hearth_exec::vm::KVM_OVERHEAD_KIB,
            (kib_24g / m.charge_kib().max(1.0)).floor()
        ))
    };
    let idle = |section: Section, id: &str, what: &str, m: &IdleVms| {
        section
            .figure(
                Figure::new(
                    &format!("{id}-pages"),
                    &format!("{what}: private guest pages"),
                    m.pages,
                    "pages",
                )
                .with_note(&format!(
                    "median over {} VMs kept at once, as the pool records them; memory per VM below: the median of the readings' intervals (other activity on the host moves system-wide figures)",
                    m.count
                )),
            )
            .figure(Figure::new(
                &format!("{id}-charge"),
                &format!(
                    "{what}: memory budget charge (pages × 4 KiB + {} KiB)",
                    hearth_exec::vm::KVM_OVERHEAD_KIB
                ),
                m.charge_kib(),
                "KiB",
            ))
            .figure(Figure::new(
                &format!("{id}-private"),
                &format!("{what}: private memory of this process per VM"),
                m.private_kib,
                "KiB",
            ))
            .figure(
                Figure::new(
                    &format!("{id}-kernel"),
                    &format!("{what}: kernel memory per VM (MemAvailable drop - private)"),
                    m.kernel_kib(),
                    "KiB",
                )
                .with_note(&format!(
                    "MemAvailable fell {:.0} KiB per VM (the median of {} intervals, {} VMs kept); it also moves with the pages the kernel keeps per CPU after VMs are freed (noisy in a quick run), the counters below do not",
                    m.avail_kib, m.intervals, m.count
                )),
            )
            .figure(Figure::new(
                &format!("{id}-kernel-counters"),
                &format!("{what}: kernel counters per VM (slab, vmalloc, page tables, KVM page tables, kernel stacks)"),
                m.counters_kib,
                "KiB",
            ))
    };
    let mut section = section
        .scenario(Scenario::from_durations("pool-load", "pool: specialise a general VM, no function snapshot yet (load, write the snapshot, adopt it)", &ns_ms(&pool.load)).with_baseline("pool-adopt"))
        .scenario(Scenario::from_durations("pool-load-only", "  of which the load to the first stdin read", &ns_ms(&pool.load_only)))
        .scenario(Scenario::from_durations("pool-adopt", "pool: specialise a warmed general VM from the function snapshot (adopt_layer)", &ns_ms(&pool.adopt)).with_baseline("fork-restore"))
        .scenario(Scenario::from_durations("pool-adopt-run", "pool: adopt + run to the result", &ns_ms(&pool.adopt_run)).with_baseline("fork"))
        .scenario(Scenario::from_durations("api-sandbox-warm", "Lambda API: warm invoke, Python process sandbox (warm)", &thin(&api.sandbox_warm)))
        .scenario(Scenario::from_durations("api-vm-warm", "Lambda API: warm invoke, WebAssembly microVM (vm-warm)", &thin(&api.vm_warm)).with_baseline("api-sandbox-warm"))
        .scenario(Scenario::from_durations("api-sandbox-first", "Lambda API: first invoke of a fresh Python function, general runtime-warm sandbox", &api.sandbox_first))
        .scenario(Scenario::from_durations("api-vm-first", "Lambda API: first invoke of a fresh WebAssembly function, general VM, its snapshot taken at deploy (vm-general)", &api.vm_first).with_baseline("api-sandbox-first"));
    if api.vm_first_init.len() == api.vm_first.len() {
        section = section.scenario(Scenario::from_durations(
            "api-vm-first-init",
            "  of which Init Duration (REPORT)",
            &api.vm_first_init,
        ));
    }
    section = section
        .scenario(Scenario::from_durations("api-sandbox-deploy", "Lambda API: CreateFunction to Active, Python (process sandbox)", &api.sandbox_deploy))
        .scenario(Scenario::from_durations("api-vm-deploy", "Lambda API: CreateFunction to Active, WebAssembly (microVM: code image and function snapshot)", &api.vm_deploy).with_baseline("api-sandbox-deploy"));
    let vm_warm = p50_ms(&api.vm_warm);
    let not_warm = |n: usize, of: usize, placement: &str| {
        if n == 0 {
            format!("all {of} served {placement}")
        } else {
            format!("{n} of {of} not served {placement}")
        }
    };
    section = section
        .figure(Figure::new("api-vm-warm-over-run", "Lambda API around a warm VM's run: vm-warm p50 - the VM's run alone (p50)", vm_warm - core.rerun_ms, "ms")
            .with_note(&format!("HTTP, SigV4, placement, the VM thread hop and the answer; the reset is off the response path; {}", not_warm(api.vm_not_warm, api.vm_warm.len(), "vm-warm"))))
        .figure(Figure::new("api-vm-warm-exits", "guest exits per warm VM invocation through the Lambda API", api.vm_exits_per_warm, "exits")
            .with_note("the node's hearth_vm_exits_total over the warm loop; one is the invocation's own (the guest's answer)"))
        .figure(Figure::new("api-vm-warm-vs-in-process", "Lambda API vm-warm p50 - the echo run in-process (p50)", vm_warm - core.in_process_ms, "ms")
            .with_note("in-process compiles and instantiates the module on every run, without isolation or HTTP"))
        .figure(Figure::new("api-vm-warm-vs-sandbox", "Lambda API warm p50: microVM - Python process sandbox", vm_warm - p50_ms(&api.sandbox_warm), "ms")
            .with_note(&not_warm(api.sandbox_not_warm, api.sandbox_warm.len(), "warm")));
    section = idle(
        section,
        "idle-general",
        "idle general VM (prewarm rehearse)",
        &pool.general,
    );
    section = idle(
        section,
        "idle-warm",
        "idle function-warm VM (after invoke + reset)",
        &pool.warm,
    );
    section
        .figure(fit("fit-24g-vm-general", "idle general VMs", &pool.general))
        .figure(fit("fit-24g-vm-warm", "idle function-warm VMs", &pool.warm))
        .chart(ChartSpec::latency_cdf(
            "vm-api.svg",
            "MicroVM pools through the Lambda API",
            &[
                "api-vm-warm",
                "api-sandbox-warm",
                "api-vm-first",
                "api-sandbox-first",
            ],
        ))
}

// ---------------------------------------------------------------------------
// The microVM pools, driven directly through `hearth_pool::vm::VmHost`.

/// Runs `f` on one of the host's (seccomp'd) VM threads, as the node does,
/// and waits for it (bounded).
fn on_vm<R: Send + 'static>(
    host: &Arc<VmHost>,
    f: impl FnOnce(&VmHost, &Runner) -> R + Send + 'static,
) -> Result<R> {
    let (tx, rx) = mpsc::channel();
    let h = host.clone();
    host.workers
        .submit(move |r| {
            let _ = tx.send(f(&h, r));
        })
        .map_err(|e| anyhow!("cannot reach a VM thread: {e}"))?;
    rx.recv_timeout(Duration::from_secs(120))
        .map_err(|e| anyhow!("a VM thread did not answer: {e}"))
}

/// The echo module, made distinct by `salt` (an unused global), so that
/// each trial's function has code of its own and no snapshot yet.
fn echo_variant(salt: usize) -> Result<Vec<u8>> {
    let memory = r#"(memory (export "memory") 2)"#;
    let wat_src = ECHO_WAT.replacen(
        memory,
        &format!("{memory} (global i32 (i32.const {salt}))"),
        1,
    );
    wat::parse_str(wat_src).context("echo WAT")
}

/// Checks a pooled invocation echoed the event.
fn echoed(
    r: std::result::Result<hearth_vmm::guest::Finished, hearth_vmm::guest::GuestError>,
) -> Result<()> {
    let f = r?;
    if f.ended != Ended::Exited(0) || f.stdout != EVENT {
        return Err(anyhow!(
            "the pooled echo answered {:?} ({:?})",
            String::from_utf8_lossy(&f.stdout),
            f.ended
        ));
    }
    Ok(())
}

/// Memory as the kept-VM method reads it, KiB.
#[derive(Debug, Clone, Copy)]
struct MemSnap {
    /// This process's private memory.
    private: u64,
    /// MemAvailable.
    available: u64,
    /// The kernel's own counters that KVM VMs grow: slab, vmalloc, page
    /// tables, KVM's page tables, kernel stacks.
    kernel: u64,
}

impl MemSnap {
    fn read() -> Self {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Self {
            private: private_kib(),
            available: field("MemAvailable"),
            kernel: [
                "SUnreclaim",
                "SReclaimable",
                "VmallocUsed",
                "PageTables",
                "SecPageTables",
                "KernelStack",
            ]
            .iter()
            .map(|f| field(f))
            .sum(),
        }
    }

    /// What `n` VMs made between `self` and `after` hold each:
    /// (private, MemAvailable drop, kernel counters), KiB.
    fn per_vm(&self, after: &Self, n: usize) -> (f64, f64, f64) {
        let n = n.max(1) as f64;
        (
            after.private.saturating_sub(self.private) as f64 / n,
            self.available.saturating_sub(after.available) as f64 / n,
            after.kernel.saturating_sub(self.kernel) as f64 / n,
        )
    }
}

/// Readings taken every few VMs while VMs are being made (none freed):
/// per-VM memory is the median of the intervals' figures, so that memory
/// moved by something else during one interval (another process, the
/// kernel's reclaim) does not decide it.
#[derive(Debug, Default)]
struct MemRounds {
    /// (VMs made so far, the reading then).
    marks: Vec<(usize, MemSnap)>,
}

impl MemRounds {
    fn mark(&mut self, vms: usize) {
        self.marks.push((vms, MemSnap::read()));
    }

    /// (private, MemAvailable drop, kernel counters) per VM, KiB: the
    /// medians over the intervals.
    fn per_vm(&self) -> (f64, f64, f64) {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for w in self.marks.windows(2) {
            let n = w[1].0.saturating_sub(w[0].0);
            if n > 0 {
                let (x, y, z) = w[0].1.per_vm(&w[1].1, n);
                a.push(x);
                b.push(y);
                c.push(z);
            }
        }
        (median_f64(a), median_f64(b), median_f64(c))
    }

    fn intervals(&self) -> usize {
        self.marks.len().saturating_sub(1)
    }
}

fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Waits, at most 5 s, until MemAvailable has held still for 1.1 s (not in
/// a quick run). Memory freed by VMs just dropped reaches it over a second
/// or two (the kernel's per-CPU page lists drain on its statistics tick),
/// and VMs made meanwhile reuse those pages without MemAvailable moving.
fn settle(ctx: &Ctx) {
    if ctx.quick {
        return;
    }
    let (quiet, deadline) = (
        Duration::from_millis(1100),
        Instant::now() + Duration::from_secs(5),
    );
    let (mut last, mut since) = (mem_available_kib(), Instant::now());
    while Instant::now() < deadline && since.elapsed() < quiet {
        std::thread::sleep(Duration::from_millis(50));
        let now = mem_available_kib();
        if now.abs_diff(last) > 256 {
            (last, since) = (now, Instant::now());
        }
    }
}

/// Idle pooled VMs of one kind, kept at once.
#[derive(Debug, Default)]
struct IdleVms {
    count: usize,
    /// Memory readings' intervals (see [`MemRounds`]).
    intervals: usize,
    /// Private guest pages each holds (median), as the pool records them.
    pages: f64,
    /// This process's private memory, KiB per VM.
    private_kib: f64,
    /// MemAvailable's drop, KiB per VM.
    avail_kib: f64,
    /// The kernel's counters' growth, KiB per VM.
    counters_kib: f64,
}

impl IdleVms {
    fn new(vms: &[PooledVm], rounds: &MemRounds) -> Self {
        let pages: Vec<u64> = vms.iter().map(|p| p.private_pages).collect();
        let (private_kib, avail_kib, counters_kib) = rounds.per_vm();
        Self {
            count: vms.len(),
            intervals: rounds.intervals(),
            pages: median(&pages),
            private_kib,
            avail_kib,
            counters_kib,
        }
    }

    /// The memory budget's charge: pages × 4 KiB + KVM's estimated part.
    fn charge_kib(&self) -> f64 {
        self.pages * 4.0 + hearth_exec::vm::KVM_OVERHEAD_KIB as f64
    }

    /// What the kernel holds beyond this process's private pages, KiB per
    /// VM, by the kept-VM method: MemAvailable's drop minus private memory.
    fn kernel_kib(&self) -> f64 {
        (self.avail_kib - self.private_kib).max(0.0)
    }

    /// The kernel memory the fit is computed with: the larger of the two
    /// measurements (MemAvailable also moves with the kernel's page caches).
    fn kernel_for_fit(&self) -> f64 {
        self.kernel_kib().max(self.counters_kib)
    }
}

/// What the pool part measured.
#[derive(Debug, Default)]
struct PoolMeasured {
    /// Specialise with no function snapshot yet: load to the first stdin
    /// read + write the snapshot + adopt it, ns.
    load: Vec<u64>,
    /// Of which the load alone, ns.
    load_only: Vec<u64>,
    /// Specialise when the snapshot exists (`adopt_layer`), ns.
    adopt: Vec<u64>,
    /// Adopt + run to the result, ns.
    adopt_run: Vec<u64>,
    general: IdleVms,
    warm: IdleVms,
}

/// A function of `module` in `dir`, as the node makes one.
fn pool_spec(dir: &Path, code: &str, module: &[u8]) -> Result<FunctionSpec> {
    let code_dir = dir.join(code);
    std::fs::create_dir_all(&code_dir)?;
    let module_path = code_dir.join("function.wasm");
    std::fs::write(&module_path, module)?;
    Ok(FunctionSpec {
        code_sha256_hex: code.to_owned(),
        module_path,
        config: config_blob(&["function.wasm"], &[("AWS_LAMBDA_FUNCTION_NAME", code)])?,
        files: Vec::new(),
        error_exit: None,
        init_timeout: Duration::from_secs(10),
    })
}

/// A fresh function's first specialisation, as the node does it: a warmed
/// general VM loads the module to its first stdin read (VM thread), the
/// function snapshot is written (here: it writes a file), and the VM adopts
/// it (VM thread). Returns (load ns, load + write + adopt ns).
fn first_specialise(
    host: &Arc<VmHost>,
    base: &Arc<hearth_vmm::snapshot::Snapshot>,
    prepared: &mut Prepared,
) -> Result<(u64, u64)> {
    let (b, pr) = (base.clone(), prepared.clone());
    let (mut p, load_ns) = on_vm(host, move |h, r| -> Result<(PooledVm, u64)> {
        let mut p = h.new_general(r, &b)?;
        let t0 = monotonic_ns();
        match h.specialise(r, &mut p, &pr)? {
            Specialised::NeedsSnapshot(_) => {}
            other => return Err(anyhow!("specialising a fresh function: {other:?}")),
        }
        Ok((p, monotonic_ns() - t0))
    })??;
    let t0 = monotonic_ns();
    host.write_function_snapshot(&mut p, prepared)?;
    let write_ns = monotonic_ns() - t0;
    let pr = prepared.clone();
    let adopt_ns = on_vm(host, move |h, r| -> Result<u64> {
        let t0 = monotonic_ns();
        h.adopt(&mut p, &pr)?;
        let t = monotonic_ns() - t0;
        echoed(h.invoke(r, &mut p, &invocation()).0)?;
        Ok(t)
    })??;
    Ok((load_ns, load_ns + write_ns + adopt_ns))
}

fn pool_direct(ctx: &Ctx, dir: &Path, runner: &Runner) -> Result<PoolMeasured> {
    let (loads, adopts, kept): (usize, usize, usize) = if ctx.quick {
        (5, 30, 50)
    } else {
        (30, 300, 200)
    };
    // Bounds besides the counts.
    let budget = Duration::from_secs(if ctx.quick { 20 } else { 60 });
    let host = Arc::new(VmHost::new(
        VmHostConfig {
            snapshot_dir: dir.join("pool-snapshots"),
            workers: 2,
            prewarm: Prewarm::Rehearse,
            boot_timeout: Duration::from_secs(30),
        },
        GuestImage::new(hearth_guest_image::ELF),
        hearth_guest_image::ENGINE,
    )?);
    // The base and the warm-up snapshot: files and Hearth's own guest, on
    // this (unfiltered) thread.
    let base = host.ensure_base(runner, 128)?;
    let code = dir.join("pool-code");
    let mut m = PoolMeasured::default();

    // Fresh functions: specialise with no snapshot yet.
    let started = Instant::now();
    for i in 0..loads {
        check_stop()?;
        if started.elapsed() > budget {
            break;
        }
        let spec = pool_spec(&code, &format!("load{i}"), &echo_variant(i + 1)?)?;
        let mut prepared = host.prepare(&spec, 128)?;
        let (load, total) = first_specialise(&host, &base, &mut prepared)?;
        m.load_only.push(load);
        m.load.push(total);
    }

    // The echo, whose snapshot then exists: a warmed general VM adopts it.
    let echo = pool_spec(&code, "echo", &wat::parse_str(ECHO_WAT)?)?;
    let mut prepared = host.prepare(&echo, 128)?;
    first_specialise(&host, &base, &mut prepared)?;
    let prepared = host.prepare(&echo, 128)?;
    if prepared.layer.is_none() {
        return Err(anyhow!("the echo's function snapshot was not found again"));
    }
    let started = Instant::now();
    for _ in 0..adopts {
        check_stop()?;
        if started.elapsed() > budget {
            break;
        }
        let (b, pr) = (base.clone(), prepared.clone());
        let (adopt, run) = on_vm(&host, move |h, r| -> Result<(u64, u64)> {
            let mut p = h.new_general(r, &b)?;
            let t0 = monotonic_ns();
            match h.specialise(r, &mut p, &pr)? {
                Specialised::Ready => {}
                other => return Err(anyhow!("adopting the echo's snapshot: {other:?}")),
            }
            let t1 = monotonic_ns();
            let (res, _) = h.invoke(r, &mut p, &invocation());
            let t2 = monotonic_ns();
            echoed(res)?;
            Ok((t1 - t0, t2 - t0))
        })??;
        m.adopt.push(adopt);
        m.adopt_run.push(run);
    }

    // Idle VMs kept at once: general (warmed by rehearsal), then
    // function-warm (the echo, after an invocation and its reset), the
    // general ones still held so that nothing is freed between readings.
    settle(ctx);
    let rounds = 5;
    let per_round = kept.div_ceil(rounds);
    let deadline = Instant::now() + budget;
    let (mut general, mut g) = (Vec::with_capacity(kept), MemRounds::default());
    g.mark(0);
    for _ in 0..rounds {
        check_stop()?;
        if Instant::now() > deadline {
            break;
        }
        let b = base.clone();
        general.extend(on_vm(&host, move |h, r| -> Result<Vec<PooledVm>> {
            let mut v = Vec::with_capacity(per_round);
            for _ in 0..per_round {
                v.push(h.new_general(r, &b)?);
            }
            Ok(v)
        })??);
        g.mark(general.len());
    }
    let (mut warm, mut w) = (Vec::with_capacity(kept), MemRounds::default());
    w.mark(0);
    for _ in 0..rounds {
        check_stop()?;
        if Instant::now() > deadline {
            break;
        }
        let (b, pr) = (base.clone(), prepared.clone());
        warm.extend(on_vm(&host, move |h, r| -> Result<Vec<PooledVm>> {
            let mut v = Vec::with_capacity(per_round);
            for _ in 0..per_round {
                let mut p = h.new_general(r, &b)?;
                match h.specialise(r, &mut p, &pr)? {
                    Specialised::Ready => {}
                    other => return Err(anyhow!("adopting the echo's snapshot: {other:?}")),
                }
                echoed(h.invoke(r, &mut p, &invocation()).0)?;
                h.reset(&mut p)?;
                v.push(p);
            }
            Ok(v)
        })??);
        w.mark(warm.len());
    }
    m.general = IdleVms::new(&general, &g);
    m.warm = IdleVms::new(&warm, &w);
    for (what, v) in [("general", &general), ("function-warm", &warm)] {
        if v.len() < kept {
            eprintln!(
                "[vm] kept {} idle {what} VMs of {kept} (time bound)",
                v.len()
            );
        }
    }
    drop((general, warm));
    Ok(m)
}

// ---------------------------------------------------------------------------
// The microVM pools behind the Lambda API, on a node of this binary.

/// The API part's node: one runtime-warm Python pool (the process-sandbox
/// baseline) and one general VM pool, both small and fixed.
const API_NODE_CONFIG: &str = "[capacity]\n\
general = [ { profile = \"python:128\", min = 2, max = 2 } ]\n\
[microvm]\n\
prewarm = \"rehearse\"\n\
general = [ { memory_class_mb = 128, min = 2, max = 2 } ]\n";
/// How long a node's pools may take to refill between first invokes.
const REFILL: Duration = Duration::from_secs(30);

/// What the API part measured.
#[derive(Debug, Default)]
struct ApiMeasured {
    vm_warm: Vec<Duration>,
    sandbox_warm: Vec<Duration>,
    /// Warm-loop invocations not served by a function-warm VM or sandbox.
    vm_not_warm: usize,
    sandbox_not_warm: usize,
    vm_first: Vec<Duration>,
    vm_first_init: Vec<Duration>,
    sandbox_first: Vec<Duration>,
    /// CreateFunction to `Active` (polled every 2 ms): a microVM function's
    /// includes its function snapshot (ADR 0019).
    vm_deploy: Vec<Duration>,
    sandbox_deploy: Vec<Duration>,
    /// Guest exits per warm VM invocation (the node's `hearth_vm_exits_total`).
    vm_exits_per_warm: f64,
}

/// A zip holding `function.wasm`, base64-encoded for CreateFunction.
fn wasm_zip_b64(wasm: &[u8]) -> Result<String> {
    use base64::Engine as _;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("function.wasm", zip::write::SimpleFileOptions::default())?;
    w.write_all(wasm)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(w.finish()?.into_inner()))
}

/// Creates a WebAssembly function (`provided.al2023`, handler
/// `function.wasm`) and waits until it is Active.
pub(super) fn create_wasm_function(node: &Node, name: &str, wasm: &[u8]) -> Result<()> {
    node.client.call(
        "POST",
        "/2015-03-31/functions",
        Some(&serde_json::json!({
            "FunctionName": name, "Runtime": "provided.al2023", "Handler": "function.wasm",
            "Role": "arn:aws:iam::000000000000:role/bench", "Code": {"ZipFile": wasm_zip_b64(wasm)?},
        })),
    )?;
    node.wait_active(name)
}

/// Waits (bounded) until every general VM pool holds its minimum of idle
/// VMs, and every general sandbox pool too.
fn wait_all_pools_full(node: &Node) -> Result<()> {
    let deadline = Instant::now() + REFILL;
    while Instant::now() < deadline {
        check_stop()?;
        let p = node.client.call("GET", "/hearth/v1/pools", None)?;
        let vm = &p["MicroVm"];
        if vm["Available"] == false {
            return Err(anyhow!(
                "the node runs no microVMs: {}",
                vm["Reason"].as_str().unwrap_or("no reason given")
            ));
        }
        let full = |pools: &serde_json::Value| {
            pools
                .as_array()
                .is_some_and(|g| g.iter().all(|e| e["Idle"].as_u64() >= e["Min"].as_u64()))
        };
        if full(&vm["General"]) && full(&p["General"]) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(anyhow!(
        "the node's general pools did not fill in {REFILL:?}"
    ))
}

/// One signed invocation of `name` on `conn` (signed before the clock
/// starts); returns the latency, the placement and the log tail if asked.
fn api_invoke(
    conn: &mut Conn,
    signer: &Signer,
    name: &str,
    tail: bool,
) -> Result<(Duration, String, String)> {
    let path = format!("/2015-03-31/functions/{name}/invocations");
    let extra: &[(&str, &str)] = if tail {
        &[("x-amz-log-type", "Tail")]
    } else {
        &[]
    };
    let request = signer.request("POST", &path, extra, EVENT)?;
    let r = timed_invoke(conn, &request, name)?;
    Ok((r.took, r.placement, r.log))
}

/// Invokes `name` until it is served by a function-warm instance
/// (`placement`), at most 20 times.
fn warm_up(conn: &mut Conn, signer: &Signer, name: &str, placement: &str) -> Result<()> {
    for _ in 0..20 {
        if api_invoke(conn, signer, name, false)?.1 == placement {
            return Ok(());
        }
    }
    Err(anyhow!(
        "{name} was still not served {placement} after 20 invocations"
    ))
}

/// A fresh function's first invocation, on a connection opened before the
/// clock starts; it must be served from `placement`. Deletes the function.
fn first_invoke(
    node: &Node,
    signer: &Signer,
    name: &str,
    placement: &str,
) -> Result<(Duration, Option<Duration>)> {
    let mut conn = Conn::connect(node.addr)?;
    let (took, got, log) = api_invoke(&mut conn, signer, name, true)?;
    node.delete_function(name)?;
    if got != placement {
        return Err(anyhow!("{name}: expected placement {placement}, got {got}"));
    }
    Ok((took, init_duration(&log)))
}

fn pool_api(ctx: &Ctx) -> Result<ApiMeasured> {
    let (warm_n, first_n) = if ctx.quick { (100, 3) } else { (2000, 20) };
    let budget = Duration::from_secs(if ctx.quick { 15 } else { 90 });
    let node = Node::start(&ctx.dir, "vm-pools", API_NODE_CONFIG)?;
    wait_all_pools_full(&node)?;
    let signer = Signer::new(node.addr, "test", "test", "us-east-1");
    let mut m = ApiMeasured::default();

    // Warm invokes, the VM and the process sandbox alternating.
    let (vm_fn, py_fn) = ("bench-vm-echo", "bench-vm-python");
    create_wasm_function(&node, vm_fn, &wat::parse_str(ECHO_WAT)?)?;
    node.create_function(py_fn, &zip_b64(HANDLER)?)?;
    let mut conn = Conn::connect(node.addr)?;
    warm_up(&mut conn, &signer, vm_fn, "vm-warm")?;
    warm_up(&mut conn, &signer, py_fn, "warm")?;
    let exits_before = node.metric_sum("hearth_vm_exits_total", "")?;
    let started = Instant::now();
    for i in 0..warm_n {
        check_stop()?;
        if started.elapsed() > budget {
            break;
        }
        for vm in [i % 2 == 0, i % 2 != 0] {
            let name = if vm { vm_fn } else { py_fn };
            let (took, placement, _) = api_invoke(&mut conn, &signer, name, false)?;
            if vm {
                m.vm_warm.push(took);
                m.vm_not_warm += usize::from(placement != "vm-warm");
            } else {
                m.sandbox_warm.push(took);
                m.sandbox_not_warm += usize::from(placement != "warm");
            }
        }
    }
    drop(conn);
    m.vm_exits_per_warm = (node.metric_sum("hearth_vm_exits_total", "")? - exits_before)
        / m.vm_warm.len().max(1) as f64;
    node.delete_function(vm_fn)?;
    node.delete_function(py_fn)?;

    // First invokes of fresh functions from the general pools, the VM and
    // the process sandbox alternating; each function new, its code too.
    let py_zip = zip_b64(HANDLER)?;
    let started = Instant::now();
    for i in 0..first_n {
        check_stop()?;
        if started.elapsed() > budget {
            break;
        }
        for vm in [i % 2 == 0, i % 2 != 0] {
            wait_all_pools_full(&node)?;
            if vm {
                let name = format!("bench-vm-first-{i}");
                let t = Instant::now();
                create_wasm_function(&node, &name, &echo_variant(1000 + i)?)?;
                m.vm_deploy.push(t.elapsed());
                let (took, init) = first_invoke(&node, &signer, &name, "vm-general")?;
                m.vm_first.push(took);
                m.vm_first_init.extend(init);
            } else {
                let name = format!("bench-vm-python-first-{i}");
                let t = Instant::now();
                node.create_function(&name, &py_zip)?;
                m.sandbox_deploy.push(t.elapsed());
                m.sandbox_first
                    .push(first_invoke(&node, &signer, &name, "general-runtime")?.0);
            }
        }
    }
    Ok(m)
}
