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
//! - N forks kept alive at once: the time for all, and their memory.
//!
//! Nothing here asserts a speed.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use hearth_bench::report::{ChartSpec, Figure, Scenario, Section};
use hearth_vmm::cache::{FunctionKey, SnapshotCache};
use hearth_vmm::guest::{Ended, Invocation, Loaded, Runner};
use hearth_vmm::image::GuestImage;
use hearth_vmm::kvm::Kvm;
use hearth_vmm::snapshot::Snapshot;
use hearth_vmm::vm::{ModuleFile, ResetMode, Vm};
use hearth_vmm::{monotonic_ns, RunStats};
use hearth_wasi::{Engine, Outcome, Platform, Wasi, WasmiEngine};

use super::{check_stop, Ctx};

/// The echo module: stdin to stdout.
const ECHO_WAT: &str = r#"(module
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

const EVENT: &[u8] = br#"{"bench":true}"#;
const TIMEOUT: u64 = 10_000_000_000;

fn ns_ms(v: &[u64]) -> Vec<Duration> {
    v.iter().map(|n| Duration::from_nanos(*n)).collect()
}

fn median(v: &[u64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or(0) as f64
}

fn module_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<ModuleFile> {
    let path = dir.join(name);
    std::fs::File::create(&path)?.write_all(bytes)?;
    Ok(ModuleFile::open(&path)?)
}

/// A base snapshot and a function snapshot of `module`.
struct Snapshots {
    base: Arc<Snapshot>,
    layer: Arc<Snapshot>,
    module: ModuleFile,
}

fn snapshots(
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

fn invocation() -> Invocation<'static> {
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

fn in_process(engine: &WasmiEngine, module: &[u8]) -> Result<u64> {
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
    if o != Outcome::Exited(0) || w.platform().out != EVENT {
        return Err(anyhow!("in-process run failed: {o:?}"));
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

pub fn run(ctx: &Ctx) -> Result<Section> {
    let mut section = Section::new(
        "vm",
        "MicroVM core",
        "Hearth's own KVM VMM: VM create, fork from a function snapshot to the result, reset + re-run, the exit \
         round trip and the copy-on-write page, beside this machine's bare-KVM floor and the same module run \
         in-process with the same engine (wasmi), all in one run.",
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

        inproc.push(in_process(&engine, &echo_wasm)?);

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

    // N forks alive at once.
    // N forks alive at once, in this one process. Bounded: every KVM VM
    // registers an MMU notifier on the process, so host page-table work in
    // the process grows with the VMs it holds (measured by the last fork
    // below, against the first); pools shard VMs across processes.
    let alive = if ctx.quick { 50 } else { 200 };
    eprintln!("[vm] {alive} forks kept alive…");
    let (priv0, avail0) = (private_kib(), mem_available_kib());
    let t0 = monotonic_ns();
    let mut vms = Vec::with_capacity(alive);
    for _ in 0..alive {
        check_stop()?;
        let mut vm = Vm::restore(&kvm, &echo.base, Some(&echo.layer), Some(&echo.module))?;
        runner.invoke(&mut vm, &invocation(), &mut RunStats::default())?;
        vm.reset(ResetMode::Discard)?;
        vms.push(vm);
    }
    let all_ms = (monotonic_ns() - t0) as f64 / 1e6;
    let (priv1, avail1) = (private_kib(), mem_available_kib());
    let mut crowded = Vec::new();
    for _ in 0..5 {
        crowded.push(fork_once(&kvm, &runner, &echo)?.1);
    }
    drop(vms);

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
        .figure(Figure::new("forks-alive-ms", &format!("{alive} forks restored, run once and reset, kept alive"), all_ms, "ms"))
        .figure(Figure::new("fork-crowded", &format!("fork to result with {alive} VMs alive in the process (p50 of 5)"), median(&crowded) / 1e6, "ms")
            .with_note("against the fork scenario's p50 with none alive: KVM's per-VM MMU notifiers make every host page-table change in the process visit every VM"))
        .figure(Figure::new("forks-alive-private", "per kept-alive VM: private memory of this process", (priv1.saturating_sub(priv0)) as f64 / alive as f64, "KiB")
            .with_note("user-space pages only (the VM's copied pages and the VMM's own); KVM's kernel structures are in the MemAvailable figure"))
        .figure(Figure::new("forks-alive-memavailable", "per kept-alive VM: MemAvailable drop", (avail0.saturating_sub(avail1)) as f64 / alive as f64, "KiB"))
        .figure(Figure::new("accounting-error", "accounting: |vCPU thread CPU time - 10 ms| for a 10 ms guest busy loop (p50)", acct_err_p50, "%"))
        .figure(Figure::new("accounting-cost", "accounting: clock reads added per run", acct_cost_ns / 1000.0, "µs")
            .with_note("two CLOCK_MONOTONIC and two CLOCK_THREAD_CPUTIME_ID reads; the copied-page count is the reset's own page scan"))
        .figure(Figure::new("reset-rerun-over-in-process", "reset + re-run minus in-process (p50)", us(&reset_rerun) - us(&inproc), "µs"))
        .chart(ChartSpec::latency_cdf("vm.svg", "MicroVM: fork, reset + re-run, in-process", &["fork", "reset-rerun", "in-process", "floor-create"]));
    Ok(section)
}
