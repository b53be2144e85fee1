//! The ahead-of-time [`Engine`]: wasmtime's runtime, loading machine code
//! that the host compiled with Cranelift at deploy time.
//!
//! Why: the interpreter (wasmi) runs a handler many times slower than
//! native code, and it does not implement WebAssembly's exception-handling
//! proposal, which CPython built for WASI needs. wasmtime's runtime builds
//! `no_std`, so the guest carries the runtime without the compiler; the
//! host compiles each module once (feature `compile`), stores the result
//! keyed by [`AOT_ENGINE_ID`](crate::AOT_ENGINE_ID), and a VM maps it
//! read-only into its module window. [`config`] is the one
//! configuration both sides use: wasmtime refuses code compiled with any
//! other.
//!
//! In the guest there is no virtual memory to manage: linear memories are
//! plain heap allocations with explicit bounds checks (no guard pages, no
//! signal handlers), and the code needs no publishing step because the
//! module window is already mapped executable ([`PreMapped`]).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use wasmtime::{Caller, Config, Extern, ExternType, Linker, Module, Store, ValType};

use crate::engine::{Engine, LoadFailure, LoadFailureKind, Outcome};
use crate::imports::{self, Ty};
use crate::wasi::Abort;
use crate::NO_HOST_TOOLS;
use crate::{Platform, Wasi};

/// The first bytes of a module compiled by the host: an ELF object.
pub const AOT_MAGIC: &[u8; 4] = b"\x7fELF";

/// The largest wasm stack a module gets. Compiled code runs on the guest
/// runtime's own 1 MiB stack; this leaves the rest to the runtime and the
/// WASI calls. wasmtime checks it in every function's prologue, so an
/// overflow is a trap, never a fault.
const MAX_WASM_STACK: usize = 640 * 1024;

/// Instruction-set extensions the compiled code may use: the x86-64-v2
/// level without AVX. The guest does not enable XSAVE (CR4.OSXSAVE is
/// off), so AVX would fault; SSE up to 4.2 and POPCNT need no OS support.
#[cfg(feature = "compile")]
const ISA_FLAGS: &[&str] = &[
    "has_sse3",
    "has_ssse3",
    "has_sse41",
    "has_sse42",
    "has_popcnt",
];

/// The configuration the host compiles with and the guest loads with.
///
/// Every setting here is part of what wasmtime checks when it loads
/// compiled code (its "tunables"): memories are heap allocations with
/// explicit bounds checks, since the guest has no signal handlers and no
/// virtual memory to reserve.
pub fn config() -> Config {
    let mut c = Config::new();
    c.signals_based_traps(false)
        .memory_reservation(0)
        .memory_guard_size(0)
        .memory_reservation_for_growth(0)
        .memory_init_cow(false)
        .gc_heap_reservation(0)
        .gc_heap_guard_size(0)
        .gc_heap_reservation_for_growth(0)
        .wasm_exceptions(true)
        .collector(wasmtime::Collector::DeferredReferenceCounting)
        .max_wasm_stack(MAX_WASM_STACK)
        .wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable);
    #[cfg(feature = "compile")]
    {
        // An explicit target: no flags inferred from the compiling machine.
        if let Err(e) = c.target("x86_64-unknown-linux-gnu") {
            unreachable!("wasmtime knows x86_64-unknown-linux-gnu: {e}");
        }
        for flag in ISA_FLAGS {
            // SAFETY: each flag names an extension that every x86-64-v2 CPU
            // has and that the guest may use without OS support (above).
            unsafe {
                c.cranelift_flag_enable(flag);
            }
        }
    }
    c
}

/// Compiles `wasm` for the guest: the bytes the module window will hold.
#[cfg(feature = "compile")]
pub fn precompile(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let engine = wasmtime::Engine::new(&config()).map_err(|e| format!("{e:#}"))?;
    engine.precompile_module(wasm).map_err(|e| format!("{e:#}"))
}

/// Code that is already executable where it lies: the module window is
/// mapped read-only and executable by the VMM, so publishing changes
/// nothing (and must not write: the window is read-only).
#[derive(Debug)]
pub struct PreMapped;

impl wasmtime::CustomCodeMemory for PreMapped {
    fn required_alignment(&self) -> usize {
        4096
    }

    fn publish_executable(&self, _ptr: *const u8, _len: usize) -> wasmtime::Result<()> {
        Ok(())
    }

    fn unpublish_executable(&self, _ptr: *const u8, _len: usize) -> wasmtime::Result<()> {
        Ok(())
    }
}

/// Whether this CPU has `feature` (a Cranelift flag's name for it), by
/// CPUID; AVX-class features count only when the OS enabled their state.
pub fn cpu_has(feature: &str) -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::__cpuid_count;
        let (l1, l7) = (__cpuid_count(1, 0), __cpuid_count(7, 0));
        let osxsave = l1.ecx & (1 << 27) != 0;
        let bit = |r: u32, b: u32| r & (1 << b) != 0;
        Some(match feature {
            "sse3" => bit(l1.ecx, 0),
            "ssse3" => bit(l1.ecx, 9),
            "sse4.1" => bit(l1.ecx, 19),
            "sse4.2" => bit(l1.ecx, 20),
            "popcnt" => bit(l1.ecx, 23),
            "fma" => osxsave && bit(l1.ecx, 12),
            "avx" => osxsave && bit(l1.ecx, 28),
            "avx2" => osxsave && bit(l7.ebx, 5),
            "bmi1" => bit(l7.ebx, 3),
            "bmi2" => bit(l7.ebx, 8),
            "lzcnt" => bit(__cpuid_count(0x8000_0001, 0).ecx, 5),
            "cmpxchg16b" => bit(l1.ecx, 13),
            "avx512bitalg" | "avx512dq" | "avx512f" | "avx512vl" | "avx512vbmi" => false,
            _ => return None,
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = feature;
        None
    }
}

/// wasmtime with [`config`], loading code the host compiled.
pub struct AotEngine {
    engine: wasmtime::Engine,
}

impl core::fmt::Debug for AotEngine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("AotEngine")
    }
}

impl AotEngine {
    /// The engine, configured to load code in place (in the guest) or from
    /// a copy (on the host, for the in-process baseline).
    pub fn new() -> Result<AotEngine, String> {
        #[cfg_attr(feature = "std", allow(unused_mut))]
        let mut c = config();
        #[cfg(not(feature = "std"))]
        {
            // SAFETY: `cpu_has` answers from CPUID, which is what the code
            // will run on.
            unsafe {
                c.detect_host_feature(cpu_has);
            }
            c.with_custom_code_memory(Some(alloc::sync::Arc::new(PreMapped)));
        }
        let engine = wasmtime::Engine::new(&c).map_err(|e| format!("{e:#}"))?;
        Ok(AotEngine { engine })
    }

    fn load(&self, bytes: &[u8]) -> Result<Module, LoadFailure> {
        let invalid = |message: String| LoadFailure {
            kind: LoadFailureKind::Invalid,
            message,
        };
        if wasmtime::Engine::detect_precompiled(bytes) != Some(wasmtime::Precompiled::Module) {
            return Err(invalid("not a module compiled for this engine".to_string()));
        }
        #[cfg(not(feature = "std"))]
        // SAFETY: the bytes are the module window, which the host filled
        // with `precompile`'s output for this engine id and never changes
        // while the VM lives; `PreMapped` writes nothing to them.
        let module =
            unsafe { Module::deserialize_raw(&self.engine, core::ptr::NonNull::from(bytes)) };
        #[cfg(feature = "std")]
        // SAFETY: the bytes are `precompile`'s output (the caller's
        // contract, as for the guest).
        let module = unsafe { Module::deserialize(&self.engine, bytes) };
        module.map_err(|e| invalid(format!("the compiled module does not load: {e:#}")))
    }
}

/// Why a host call ended the run.
#[derive(Debug)]
enum Ended {
    Exit(i32),
    OutputTooLarge,
}

impl core::fmt::Display for Ended {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Ended::Exit(code) => write!(f, "exit with status {code}"),
            Ended::OutputTooLarge => f.write_str("stdout exceeded the response size limit"),
        }
    }
}

impl core::error::Error for Ended {}

fn abort(a: Abort) -> wasmtime::Error {
    wasmtime::Error::new(match a {
        Abort::Exit(code) => Ended::Exit(code),
        Abort::OutputTooLarge => Ended::OutputTooLarge,
    })
}

fn with_memory<P: Platform>(
    caller: &mut Caller<'_, Wasi<P>>,
    f: impl FnOnce(&mut Wasi<P>, &mut [u8]) -> Result<i32, Abort>,
) -> wasmtime::Result<i32> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Err(wasmtime::Error::msg(
            "the module exports no memory named \"memory\"",
        ));
    };
    let (mem, wasi) = memory.data_and_store_mut(caller);
    f(wasi, mem).map_err(abort)
}

impl<P: Platform> wasmtime::ResourceLimiter for Wasi<P> {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        if self.may_grow(current, desired) {
            Ok(true)
        } else {
            // A trap, as with wasmi: the function is ended
            // (Runtime.OutOfMemory), not handed a failure it may not check.
            Err(wasmtime::Error::msg("out of memory"))
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|m| desired <= m) && desired <= 10_000_000)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        100
    }

    fn memories(&self) -> usize {
        1
    }
}

fn ty_of(t: &ValType) -> Option<Ty> {
    match t {
        ValType::I32 => Some(Ty::I32),
        ValType::I64 => Some(Ty::I64),
        _ => None,
    }
}

fn check_imports(module: &Module) -> Result<(), LoadFailure> {
    for import in module.imports() {
        let func = match import.ty() {
            ExternType::Func(ty) => Some((
                ty.params().map(|t| ty_of(&t)).collect::<Option<Vec<Ty>>>(),
                ty.results().map(|t| ty_of(&t)).collect::<Option<Vec<Ty>>>(),
                ty.to_string(),
            )),
            _ => None,
        };
        imports::check(import.module(), import.name(), func)?;
    }
    Ok(())
}

macro_rules! wasi_fn {
    ($linker:ident, $name:literal, |$w:ident, $m:ident $(, $a:ident: $t:ty)*| $body:expr) => {
        $linker
            .func_wrap(imports::WASI, $name, |mut caller: Caller<'_, Wasi<P>>, $($a: $t),*| {
                with_memory(&mut caller, |$w, $m| $body)
            })
            .map_err(|e| e.to_string())?;
    };
}

fn link<P: Platform>(linker: &mut Linker<Wasi<P>>) -> Result<(), String> {
    crate::bindings::wasi_bindings!(wasi_fn, linker);
    linker
        .func_wrap(
            imports::WASI,
            "proc_exit",
            |_: Caller<'_, Wasi<P>>, code: i32| -> wasmtime::Result<()> {
                Err(abort(Abort::Exit(code)))
            },
        )
        .map_err(|e| e.to_string())?;
    linker
        .func_wrap(
            imports::WASI,
            "sched_yield",
            |_: Caller<'_, Wasi<P>>| -> i32 { 0 },
        )
        .map_err(|e| e.to_string())?;
    linker
        .func_wrap(
            imports::HEARTH,
            "request_id",
            |mut caller: Caller<'_, Wasi<P>>, buf: u32, len: u32| {
                with_memory(&mut caller, |w, m| w.request_id(m, buf, len))
            },
        )
        .map_err(|e| e.to_string())?;
    linker
        .func_wrap(
            imports::HOST_TOOLS,
            "call",
            |_: Caller<'_, Wasi<P>>, _: i32, _: i32, _: i32, _: i32| -> i32 { NO_HOST_TOOLS },
        )
        .map_err(|e| e.to_string())?;
    linker
        .func_wrap(
            imports::HEARTH,
            "deadline_ms",
            |caller: Caller<'_, Wasi<P>>| -> i64 { caller.data().platform.deadline_ms() as i64 },
        )
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn outcome_of<P: Platform>(err: &wasmtime::Error, wasi: &Wasi<P>) -> Outcome {
    match err.downcast_ref::<Ended>() {
        Some(Ended::Exit(code)) => return Outcome::Exited(*code),
        Some(Ended::OutputTooLarge) => return Outcome::OutputTooLarge,
        None => {}
    }
    if wasi.oom {
        return Outcome::OutOfMemory;
    }
    Outcome::Trap(format!("{err:#}"))
}

impl Engine for AotEngine {
    fn id(&self) -> &'static str {
        crate::AOT_ENGINE_ID
    }

    fn run<P: Platform>(&self, bytes: &[u8], wasi: Wasi<P>) -> (Outcome, Wasi<P>) {
        let load = |kind, message: String| Outcome::Load(LoadFailure { kind, message });
        let module = match self.load(bytes) {
            Ok(m) => m,
            Err(f) => return (Outcome::Load(f), wasi),
        };
        if let Err(f) = check_imports(&module) {
            return (Outcome::Load(f), wasi);
        }
        let mut store = Store::new(&self.engine, wasi);
        store.limiter(|w| w as &mut dyn wasmtime::ResourceLimiter);
        let mut linker = Linker::<Wasi<P>>::new(&self.engine);
        if let Err(e) = link(&mut linker) {
            return (
                Outcome::Trap(format!("linking WASI failed: {e}")),
                store.into_data(),
            );
        }
        let instance = match linker.instantiate(&mut store, &module) {
            Ok(i) => i,
            Err(e) => {
                let outcome = match outcome_of(&e, store.data()) {
                    Outcome::Trap(_) => load(
                        LoadFailureKind::Instantiate,
                        format!("instantiating the module failed: {e:#}"),
                    ),
                    other => other,
                };
                return (outcome, store.into_data());
            }
        };
        // A command runs `_start`; a reactor (CPython's WASI build is one)
        // runs `_initialize`, then `run() -> i32`, whose result is the exit
        // status.
        let outcome = if let Ok(start) = instance.get_typed_func::<(), ()>(&mut store, "_start") {
            match start.call(&mut store, ()) {
                Ok(()) => Outcome::Exited(0),
                Err(e) => outcome_of(&e, store.data()),
            }
        } else if let Ok(run) = instance.get_typed_func::<(), i32>(&mut store, "run") {
            let init = instance
                .get_typed_func::<(), ()>(&mut store, "_initialize")
                .ok();
            match init.map_or(Ok(()), |f| f.call(&mut store, ())) {
                Err(e) => outcome_of(&e, store.data()),
                Ok(()) => match run.call(&mut store, ()) {
                    Ok(code) => Outcome::Exited(code),
                    Err(e) => outcome_of(&e, store.data()),
                },
            }
        } else {
            let msg = "the module exports neither `_start() -> ()` (a WASI command) nor \
                       `run() -> i32` (a reactor)"
                .to_string();
            load(LoadFailureKind::NoStart, msg)
        };
        (outcome, store.into_data())
    }
}
