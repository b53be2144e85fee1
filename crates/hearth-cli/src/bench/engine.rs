//! Section `engine`: how fast a handler's own code runs under each of the
//! guest's engines, against the same code compiled natively, in one run.
//!
//! The handler is a compute kernel (fill 1 MiB with xorshift, FNV-1a over
//! it 8 times, a sum of square roots): ~10 M loop iterations of integer
//! and float work, the same arithmetic in WAT and in Rust, so every run's
//! checksum must match the native one (a wrong engine cannot look fast).
//! Measured, interleaved trial by trial:
//! - native: the Rust kernel in this process;
//! - in-process: the module under wasmi, and compiled by wasmtime +
//!   Cranelift (`hearth_wasi::aot`), without a VM;
//! - in a microVM: a VM restored from each engine's function snapshot,
//!   invoked and reset in place (the warm path), to the result.
//!
//! The ratio to native is the figure issue 12 asks for (an interpreter
//! more than 5× slower than native calls for the ahead-of-time engine).
//! Nothing here asserts a speed.

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use hearth_bench::report::{Figure, Scenario, Section};
use hearth_vmm::cache::SnapshotCache;
use hearth_vmm::guest::{Ended, Runner};
use hearth_vmm::image::GuestImage;
use hearth_vmm::kvm::Kvm;
use hearth_vmm::snapshot::Snapshot;
use hearth_vmm::vm::{ResetMode, Vm};
use hearth_vmm::{monotonic_ns, RunStats};
use hearth_wasi::{AotEngine, WasmiEngine};

use super::vm::{in_process, invocation, module_file, ns_ms, snapshots, TIMEOUT};
use super::{check_stop, Ctx};

const WORDS: usize = 131_072;
const ROUNDS: usize = 8;

/// The kernel in WAT: reads the event, writes the 8-byte checksum.
const KERNEL_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 18)
  (func $kernel (result i64)
    (local $x i64) (local $i i32) (local $r i32) (local $h i64) (local $f f64)
    (local.set $x (i64.const 0x9E3779B97F4A7C15))
    (loop $fill
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
      (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
      (i64.store offset=65536 (i32.shl (local.get $i) (i32.const 3)) (local.get $x))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 131072))))
    (local.set $h (i64.const 0xcbf29ce484222325))
    (loop $round
      (local.set $i (i32.const 0))
      (loop $hash
        (local.set $h (i64.mul
          (i64.xor (local.get $h) (i64.load offset=65536 (i32.shl (local.get $i) (i32.const 3))))
          (i64.const 0x100000001b3)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $hash (i32.lt_u (local.get $i) (i32.const 131072))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br_if $round (i32.lt_u (local.get $r) (i32.const 8))))
    (local.set $i (i32.const 0))
    (loop $sum
      (local.set $f (f64.add (local.get $f) (f64.sqrt (f64.convert_i64_u
        (i64.shr_u (i64.load offset=65536 (i32.shl (local.get $i) (i32.const 3))) (i64.const 11))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $sum (i32.lt_u (local.get $i) (i32.const 131072))))
    (i64.xor (local.get $h) (i64.reinterpret_f64 (local.get $f))))
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 1024))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i64.store (i32.const 2048) (call $kernel))
    (i32.store (i32.const 0) (i32.const 2048))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// The same kernel, natively.
fn native_kernel(mem: &mut [u64]) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for w in mem.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *w = x;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for _ in 0..ROUNDS {
        for w in mem.iter() {
            h = (h ^ *w).wrapping_mul(0x100_0000_01b3);
        }
    }
    let mut f = 0f64;
    for w in mem.iter() {
        f += ((*w >> 11) as f64).sqrt();
    }
    h ^ f.to_bits()
}

fn in_vm(runner: &Runner, vm: &mut Vm, want: &[u8], what: &str) -> Result<u64> {
    let t0 = monotonic_ns();
    let f = runner.invoke(vm, &invocation(), &mut RunStats::default())?;
    let t = monotonic_ns() - t0;
    if f.ended != Ended::Exited(0) || f.stdout != want {
        return Err(anyhow!(
            "{what} in a VM: {:?}, checksum {:?} (native {want:?})",
            f.ended,
            f.stdout
        ));
    }
    vm.reset(ResetMode::Restore)?;
    Ok(t)
}

fn median_ms(v: &[u64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or(0) as f64 / 1e6
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let mut section = Section::new(
        "engine",
        "Guest engines: a handler's own code",
        "A compute kernel (~10 M iterations of integer and float work, the same arithmetic in WAT and Rust, \
         checksums compared) run natively, in-process under wasmi and under wasmtime's ahead-of-time code, and \
         in a microVM under each engine (warm: restored from the function snapshot, invoked and reset), \
         interleaved in one run. The ratio to native is what decides whether the interpreter is fast enough.",
    );
    let n = if ctx.quick { 5 } else { 20 };
    let wasm = wat::parse_str(KERNEL_WAT).context("kernel WAT")?;
    let t0 = monotonic_ns();
    let compiled = hearth_wasi::aot::precompile(&wasm).map_err(|e| anyhow!("{e}"))?;
    let compile_ns = monotonic_ns() - t0;
    let mut mem = vec![0u64; WORDS];
    let want = native_kernel(&mut mem).to_le_bytes().to_vec();
    let wasmi = WasmiEngine::new();
    let aot = AotEngine::new().map_err(|e| anyhow!("{e}"))?;

    let vms = match Kvm::open() {
        Ok(kvm) => {
            let runner = Runner::for_this_thread()?;
            let dir = ctx.dir.join("engine");
            std::fs::create_dir_all(&dir)?;
            let cache = SnapshotCache::new(&dir.join("snapshots"))?;
            let image = GuestImage::new(hearth_guest_image::ELF);
            let mut vm = Vm::boot(&kvm, &image, 128)?;
            runner.boot(&mut vm, TIMEOUT, &mut RunStats::default())?;
            let base_path = cache.base_path(&image.id(), &kvm.cpu_signature(), 128);
            vm.snapshot_base(&base_path, [0; 32])?;
            drop(vm);
            let base = Arc::new(Snapshot::open(&base_path)?);
            let si = snapshots(
                &kvm,
                &runner,
                &cache,
                &base,
                module_file(&dir, "kernel.wasm", &wasm)?,
            )?;
            let sa = snapshots(
                &kvm,
                &runner,
                &cache,
                &base,
                module_file(&dir, "kernel.cwasm", &compiled)?,
            )?;
            let vi = Vm::restore(&kvm, &si.base, Some(&si.layer), Some(&si.module))?;
            let va = Vm::restore(&kvm, &sa.base, Some(&sa.layer), Some(&sa.module))?;
            Some((runner, vi, va))
        }
        Err(e) => {
            section = section.skipped("engine-vm", &format!("no microVM rows: {e}"));
            None
        }
    };
    let mut vms = vms;

    eprintln!("[engine] kernel natively, in-process and in microVMs ({n} each)…");
    let (mut native, mut ip_wasmi, mut ip_aot, mut vm_wasmi, mut vm_aot) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        check_stop()?;
        let t0 = monotonic_ns();
        let sum = native_kernel(std::hint::black_box(&mut mem));
        native.push(monotonic_ns() - t0);
        if sum.to_le_bytes()[..] != want[..] {
            return Err(anyhow!("the native kernel is not deterministic"));
        }
        ip_wasmi.push(in_process(&wasmi, &wasm, &want)?);
        ip_aot.push(in_process(&aot, &compiled, &want)?);
        if let Some((runner, vi, va)) = vms.as_mut() {
            vm_wasmi.push(in_vm(runner, vi, &want, "wasmi")?);
            vm_aot.push(in_vm(runner, va, &want, "aot")?);
        }
    }
    let base = median_ms(&native);
    let ratio = |v: &[u64]| median_ms(v) / base;
    section = section
        .scenario(Scenario::from_durations(
            "native",
            "kernel, native Rust",
            &ns_ms(&native),
        ))
        .scenario(
            Scenario::from_durations(
                "inprocess-wasmi",
                "kernel, in-process, wasmi",
                &ns_ms(&ip_wasmi),
            )
            .with_baseline("native"),
        )
        .scenario(
            Scenario::from_durations(
                "inprocess-aot",
                "kernel, in-process, wasmtime AOT",
                &ns_ms(&ip_aot),
            )
            .with_baseline("native"),
        )
        .figure(
            Figure::new(
                "wasmi-vs-native",
                "wasmi, in-process ÷ native",
                ratio(&ip_wasmi),
                "×",
            )
            .with_note("issue 12: above 5× calls for an ahead-of-time engine"),
        )
        .figure(Figure::new(
            "aot-vs-native",
            "wasmtime AOT, in-process ÷ native",
            ratio(&ip_aot),
            "×",
        ))
        .figure(Figure::new(
            "aot-compile",
            "compiling the kernel module (Cranelift, on the host)",
            compile_ns as f64 / 1e6,
            "ms",
        ));
    if vms.is_some() {
        section = section
            .scenario(
                Scenario::from_durations(
                    "vm-wasmi",
                    "kernel, microVM warm, wasmi",
                    &ns_ms(&vm_wasmi),
                )
                .with_baseline("inprocess-wasmi"),
            )
            .scenario(
                Scenario::from_durations(
                    "vm-aot",
                    "kernel, microVM warm, wasmtime AOT",
                    &ns_ms(&vm_aot),
                )
                .with_baseline("inprocess-aot"),
            )
            .figure(Figure::new(
                "vm-aot-vs-native",
                "wasmtime AOT in a microVM ÷ native",
                ratio(&vm_aot),
                "×",
            ))
            .figure(Figure::new(
                "vm-wasmi-vs-native",
                "wasmi in a microVM ÷ native",
                ratio(&vm_wasmi),
                "×",
            ));
    }
    Ok(section)
}
