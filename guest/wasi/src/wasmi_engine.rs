//! The first [`Engine`]: wasmi, an interpreter that builds `no_std`.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use wasmi::errors::HostError;
use wasmi::ResourceLimiter;
use wasmi::{Caller, CompilationMode, Config, Extern, ExternType, Linker, Module, Store, ValType};
use wasmi_core::LimiterError;

use crate::engine::{Engine, LoadFailure, LoadFailureKind, Outcome};
use crate::imports::{self, Ty};
use crate::wasi::Abort;
use crate::NO_HOST_TOOLS;
use crate::{Platform, Wasi};

/// wasmi, configured for snapshots: every function is compiled when the
/// module loads (eager), so the compiled code is part of the function
/// snapshot and an invocation compiles nothing.
#[derive(Debug)]
pub struct WasmiEngine {
    engine: wasmi::Engine,
}

impl Default for WasmiEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl WasmiEngine {
    /// The engine with Hearth's configuration.
    pub fn new() -> WasmiEngine {
        let mut config = Config::default();
        config.compilation_mode(CompilationMode::Eager);
        WasmiEngine {
            engine: wasmi::Engine::new(&config),
        }
    }
}

/// Stdout went past its limit: ends the run.
#[derive(Debug)]
struct OutputTooLargeTrap;

impl core::fmt::Display for OutputTooLargeTrap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("stdout exceeded the response size limit")
    }
}

impl HostError for OutputTooLargeTrap {}

fn abort(a: Abort) -> wasmi::Error {
    match a {
        Abort::Exit(code) => wasmi::Error::i32_exit(code),
        Abort::OutputTooLarge => wasmi::Error::host(OutputTooLargeTrap),
    }
}

/// Runs a WASI call against the caller's exported `memory`.
fn with_memory<P: Platform>(
    caller: &mut Caller<'_, Wasi<P>>,
    f: impl FnOnce(&mut Wasi<P>, &mut [u8]) -> Result<i32, Abort>,
) -> Result<i32, wasmi::Error> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Err(wasmi::Error::new(
            "the module exports no memory named \"memory\"",
        ));
    };
    let (mem, wasi) = memory.data_and_store_mut(caller);
    f(wasi, mem).map_err(abort)
}

impl<P: Platform> ResourceLimiter for Wasi<P> {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        if self.may_grow(current, desired) {
            Ok(true)
        } else {
            // A trap, not -1: like Lambda, a function that outgrows its
            // memory is ended (Runtime.OutOfMemory), not handed a failure
            // it may never check.
            Err(LimiterError::ResourceLimiterDeniedAllocation)
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
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

fn show(types: &[ValType]) -> String {
    let names: alloc::vec::Vec<String> = types
        .iter()
        .map(|t| format!("{t:?}").to_lowercase())
        .collect();
    format!("({})", names.join(", "))
}

/// Checks every import against what is provided, naming the first one that
/// is not (wasmi would say so too, but not in these words).
fn check_imports(module: &Module) -> Result<(), LoadFailure> {
    for import in module.imports() {
        let func = match import.ty() {
            ExternType::Func(ty) => Some((
                ty.params().iter().map(ty_of).collect::<Option<Vec<Ty>>>(),
                ty.results().iter().map(ty_of).collect::<Option<Vec<Ty>>>(),
                format!("{} -> {}", show(ty.params()), show(ty.results())),
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
            |_: Caller<'_, Wasi<P>>, code: i32| -> Result<(), wasmi::Error> {
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

/// Says how a run that returned `err` ended.
fn outcome_of<P: Platform>(err: &wasmi::Error, wasi: &Wasi<P>) -> Outcome {
    if let Some(code) = err.i32_exit_status() {
        return Outcome::Exited(code);
    }
    if err.downcast_ref::<OutputTooLargeTrap>().is_some() {
        return Outcome::OutputTooLarge;
    }
    if wasi.oom {
        return Outcome::OutOfMemory;
    }
    Outcome::Trap(format!("{err}"))
}

impl Engine for WasmiEngine {
    fn id(&self) -> &'static str {
        crate::WASMI_ENGINE_ID
    }

    fn run<P: Platform>(&self, bytes: &[u8], wasi: Wasi<P>) -> (Outcome, Wasi<P>) {
        let load = |kind, message: String| Outcome::Load(LoadFailure { kind, message });
        let module = match Module::new(&self.engine, bytes) {
            Ok(m) => m,
            Err(e) => {
                return (
                    load(
                        LoadFailureKind::Invalid,
                        format!("not a valid WebAssembly module: {e}"),
                    ),
                    wasi,
                )
            }
        };
        if let Err(f) = check_imports(&module) {
            return (Outcome::Load(f), wasi);
        }
        let mut store = Store::new(&self.engine, wasi);
        store.limiter(|w| w as &mut dyn ResourceLimiter);
        let mut linker = Linker::<Wasi<P>>::new(&self.engine);
        if let Err(e) = link(&mut linker) {
            return (
                Outcome::Trap(format!("linking WASI failed: {e}")),
                store.into_data(),
            );
        }
        let instance = match linker.instantiate_and_start(&mut store, &module) {
            Ok(i) => i,
            Err(e) => {
                let outcome = match outcome_of(&e, store.data()) {
                    Outcome::Trap(_) => load(
                        LoadFailureKind::Instantiate,
                        format!("instantiating the module failed: {e}"),
                    ),
                    other => other,
                };
                return (outcome, store.into_data());
            }
        };
        let start = match instance.get_typed_func::<(), ()>(&store, "_start") {
            Ok(f) => f,
            Err(_) => {
                let msg =
                    "the module exports no `_start() -> ()` function: it is not a WASI command"
                        .to_string();
                return (load(LoadFailureKind::NoStart, msg), store.into_data());
            }
        };
        let outcome = match start.call(&mut store, ()) {
            Ok(()) => Outcome::Exited(0),
            Err(e) => outcome_of(&e, store.data()),
        };
        (outcome, store.into_data())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OutputTooLarge;
    use alloc::vec::Vec;

    #[derive(Default)]
    struct Host {
        event: Vec<u8>,
        out: Vec<u8>,
        err: Vec<u8>,
        avail: usize,
    }

    impl Platform for Host {
        fn realtime_ns(&mut self) -> u64 {
            0
        }
        fn monotonic_ns(&mut self) -> u64 {
            0
        }
        fn random(&mut self, buf: &mut [u8]) {
            buf.fill(1);
        }
        fn wait_event(&mut self) -> usize {
            self.event.len()
        }
        fn read_event(&mut self, at: usize, buf: &mut [u8]) -> usize {
            let n = buf.len().min(self.event.len().saturating_sub(at));
            buf[..n].copy_from_slice(&self.event[at..at + n]);
            n
        }
        fn stdout(&mut self, data: &[u8]) -> Result<(), OutputTooLarge> {
            if self.out.len() + data.len() > 64 {
                return Err(OutputTooLarge);
            }
            self.out.extend_from_slice(data);
            Ok(())
        }
        fn stderr(&mut self, data: &[u8]) {
            self.err.extend_from_slice(data);
        }
        fn memory_available(&self) -> usize {
            self.avail
        }
    }

    fn run(wat: &str, event: &[u8]) -> (Outcome, Host) {
        let module = ::wat::parse_str(wat).expect("wat");
        let host = Host {
            event: event.to_vec(),
            avail: 64 << 20,
            ..Host::default()
        };
        let (o, w) = WasmiEngine::new().run(&module, Wasi::new(host, &[b"m\0"], &[]));
        (o, w.platform)
    }

    const ECHO: &str = r#"(module
        (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "_start")
          (local $n i32)
          (i32.store (i32.const 0) (i32.const 100))
          (i32.store (i32.const 4) (i32.const 1000))
          (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
          (i32.store (i32.const 4) (i32.load (i32.const 8)))
          (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

    #[test]
    fn echo() {
        let (o, h) = run(ECHO, b"{\"a\":1}");
        assert_eq!(o, Outcome::Exited(0));
        assert_eq!(h.out, b"{\"a\":1}");
    }

    #[test]
    fn missing_import_is_named() {
        let (o, _) = run(
            r#"(module (import "wasi_snapshot_preview1" "fd_renumber" (func (param i32)))
                (func (export "_start")))"#,
            b"",
        );
        let Outcome::Load(f) = o else { panic!("{o:?}") };
        assert_eq!(f.kind, LoadFailureKind::MissingImport);
        assert!(
            f.message.contains("wasi_snapshot_preview1.fd_renumber"),
            "{}",
            f.message
        );
    }

    #[test]
    fn wrong_signature_is_named() {
        let (o, _) = run(
            r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32)))
                (func (export "_start")))"#,
            b"",
        );
        let Outcome::Load(f) = o else { panic!("{o:?}") };
        assert!(
            f.message.contains("fd_write as (i32) -> ()"),
            "{}",
            f.message
        );
    }

    #[test]
    fn invalid_and_no_start() {
        let (o, _) = WasmiEngine::new().run(
            b"\0asm\x01\0\0\0garbage",
            Wasi::new(Host::default(), &[], &[]),
        );
        assert!(
            matches!(
                o,
                Outcome::Load(LoadFailure {
                    kind: LoadFailureKind::Invalid,
                    ..
                })
            ),
            "{o:?}"
        );
        let (o, _) = run("(module)", b"");
        assert!(
            matches!(
                o,
                Outcome::Load(LoadFailure {
                    kind: LoadFailureKind::NoStart,
                    ..
                })
            ),
            "{o:?}"
        );
    }

    #[test]
    fn trap_exit_oom_and_overflow() {
        let (o, _) = run(r#"(module (func (export "_start") unreachable))"#, b"");
        assert!(
            matches!(o, Outcome::Trap(ref m) if m.contains("unreachable")),
            "{o:?}"
        );
        let (o, _) = run(
            r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $e (param i32)))
                (func (export "_start") (call $e (i32.const 7))))"#,
            b"",
        );
        assert_eq!(o, Outcome::Exited(7));
        let (o, _) = run(
            r#"(module (memory 1) (func (export "_start") (drop (memory.grow (i32.const 2000)))))"#,
            b"",
        );
        assert_eq!(o, Outcome::OutOfMemory);
        let (o, h) = run(ECHO, &[b'x'; 100]);
        assert_eq!((o, h.out.len()), (Outcome::OutputTooLarge, 0));
    }
}
