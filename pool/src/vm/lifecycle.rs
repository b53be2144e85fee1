//! Restore, specialise, invoke, reset: what happens to a pooled VM, in
//! order.
//!
//! 1. **General**: a VM restored from its memory class's base snapshot,
//!    then warmed ([`Prewarm`]) so that its runtime's pages are mapped before
//!    any request.
//! 2. **Specialise**: the function's module file is mapped read-only as the
//!    VM's module window; if the function has a snapshot, the VM adopts it
//!    in place (its pages written over the base, the vCPU state set); if
//!    not, the guest loads the module up to its first stdin read, and the
//!    function snapshot is taken there, the first time.
//! 3. **Invoke** with the event; 4. **reset** to the function snapshot (its
//!    copied pages rewritten, the vCPU state set again), ready for the next.
//!
//! A **cold start** is a new VM restored straight from the function snapshot
//! when there is one, or a new general VM specialised when there is not.
//!
//! Two kinds of step, on two kinds of thread:
//! - steps that **enter the guest** (and restore VMs from snapshot files
//!   already open) take a `Runner` and run on the seccomp'd VM threads
//!   ([`Workers`](super::Workers)): they open no file;
//! - steps that **open or write files** (a module, a snapshot) run where
//!   files may be opened: [`VmHost::prepare`], [`VmHost::write_function_snapshot`],
//!   and the base and warm-up snapshots ([`VmHost::ensure_base`]), whose
//!   guest is Hearth's own.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_vmm::guest::{Ended, Finished, GuestError, Invocation, Loaded, Runner};
use hearth_vmm::snapshot::{Snapshot, SnapshotError};
use hearth_vmm::vm::{ModuleFile, Phase, ResetMode, Vm, VmError};
use hearth_vmm::RunStats;

use super::snapshots::function_key;
use super::{VmHost, VmPoolError};

/// How general VMs are warmed while they wait in the pool (measured; see
/// `hearth bench --only vm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Prewarm {
    /// Nothing: the first invocation faults in every page it touches.
    None,
    /// The snapshot's pages mapped into the host's page tables
    /// (`MADV_POPULATE_READ`): no copies, but KVM still faults on each
    /// page's first touch.
    Populate,
    /// A built-in warm-up module adopted, run once and reverted: the guest
    /// runtime's pages are then mapped in KVM, and a function adopted later
    /// faults only on its own pages.
    Rehearse,
}

/// A VM held by a pool.
#[derive(Debug)]
pub struct PooledVm {
    /// Node-unique id.
    pub id: u64,
    /// The VM.
    pub vm: Vm,
    /// Its memory class (MiB).
    pub memory_class_mb: u32,
    /// When it was made.
    pub created: Instant,
    /// The function snapshot it is at (after specialisation).
    pub function: Option<[u8; 32]>,
    /// Private pages it held at its last reset.
    pub private_pages: u64,
}

/// What a function is, to a VM.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The code package's SHA-256 (hex): snapshots are filed under it.
    pub code_sha256_hex: String,
    /// The module file in the code store.
    pub module_path: PathBuf,
    /// The config blob: arguments, environment, and the mount table of
    /// `files` ([`super::config_blob_with_mounts`]).
    pub config: Vec<u8>,
    /// File images mapped read-only into the VM's files window, in the
    /// order of the config blob's mount table (a runtime's library, the
    /// function's code).
    pub files: Vec<PathBuf>,
    /// An exit status that means "stdout is Lambda's error object": the
    /// runtime reported the function's (or its init's) failure itself
    /// (Hearth's Python bootstrap: [`super::python::FUNCTION_ERROR_EXIT`]).
    pub error_exit: Option<i32>,
    /// How long the module's initialisation may take.
    pub init_timeout: Duration,
}

/// A function made ready for VM threads: its module open, its base, and its
/// snapshot if it has one yet.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The function.
    pub spec: FunctionSpec,
    /// Its module, open.
    pub module: ModuleFile,
    /// Its file images, open.
    pub files: Vec<ModuleFile>,
    /// The base of its memory class.
    pub base: Arc<Snapshot>,
    /// Its function snapshot's key.
    pub key: [u8; 32],
    /// Its function snapshot, if taken.
    pub layer: Option<Arc<Snapshot>>,
}

/// How specialising went.
#[derive(Debug)]
pub enum Specialised {
    /// The VM is at the function's stdin read.
    Ready,
    /// The function had no snapshot: the VM is at its first stdin read, to
    /// be snapshotted ([`VmHost::write_function_snapshot`]) and then to
    /// adopt that snapshot ([`VmHost::adopt`]). Carries what the init wrote
    /// to stderr (for the first invocation's log).
    NeedsSnapshot(Vec<u8>),
    /// The module ended before reading stdin (it ignores events): this is
    /// its whole run, and the VM cannot be reused.
    EndedEarly(Finished),
    /// The module's initialisation failed (it could not be loaded, trapped,
    /// exited, ran out of memory or time): Lambda's `errorType` for it, and
    /// why.
    Failed(&'static str, String),
    /// The runtime reported its init's failure itself: it exited with the
    /// spec's `error_exit`, Lambda's error object on stdout.
    InitError(Finished),
}

impl VmHost {
    fn next_id(&self) -> u64 {
        self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn pooled(&self, vm: Vm, mem_mib: u32, function: Option<[u8; 32]>) -> PooledVm {
        PooledVm {
            id: self.next_id(),
            vm,
            memory_class_mb: mem_mib,
            created: Instant::now(),
            function,
            private_pages: 0,
        }
    }

    /// [files; Hearth's guest only] Makes sure the base snapshot of a
    /// memory class (and, with [`Prewarm::Rehearse`], the warm-up
    /// module's snapshot over it) exists and is open: opened and verified
    /// from its file, or taken now by booting the guest. `runner` must be
    /// of a thread that may open files.
    pub fn ensure_base(&self, runner: &Runner, mem_mib: u32) -> Result<Arc<Snapshot>, VmPoolError> {
        let _taking = self
            .taking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let base = match self.store.base(mem_mib) {
            Some(b) => b,
            None => {
                let b = self.open_or_take_base(runner, mem_mib)?;
                self.store.set_base(mem_mib, b.clone());
                b
            }
        };
        if self.config.prewarm == Prewarm::Rehearse && self.warmup_layer(&base).is_none() {
            self.take_warmup(runner, &base)?;
        }
        Ok(base)
    }

    fn open_or_take_base(
        &self,
        runner: &Runner,
        mem_mib: u32,
    ) -> Result<Arc<Snapshot>, VmPoolError> {
        let path = self
            .store
            .base_path(&self.image.id(), &self.kvm.cpu_signature(), mem_mib);
        if path.exists() {
            match Snapshot::open(&path) {
                Ok(s) => return Ok(Arc::new(s)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "retaking a base snapshot");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let mut vm = Vm::boot(&self.kvm, &self.image, u64::from(mem_mib))?;
        runner.boot(
            &mut vm,
            self.config.boot_timeout.as_nanos() as u64,
            &mut RunStats::default(),
        )?;
        vm.snapshot_base(&path, [0; 32])?;
        drop(vm);
        Ok(Arc::new(Snapshot::open(&path)?))
    }

    fn warmup_config() -> Result<Vec<u8>, VmPoolError> {
        super::config_blob(&["warmup.wasm"], &[])
    }

    /// The warm-up module's snapshot over `base` and its module, if open.
    fn warmup_layer(&self, base: &Arc<Snapshot>) -> Option<(Arc<Snapshot>, ModuleFile)> {
        let module = self
            .warmup
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        let config = Self::warmup_config().ok()?;
        let key = function_key(&module, &[], base, self.engine, &config);
        self.store.cached_function(&key).map(|l| (l, module))
    }

    fn take_warmup(&self, runner: &Runner, base: &Arc<Snapshot>) -> Result<(), VmPoolError> {
        let path = self.store.dir().join("warmup.wasm");
        let bytes = super::warmup_module();
        if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            let tmp = self.store.dir().join(".warmup.wasm.tmp");
            std::fs::write(&tmp, &bytes)
                .map_err(|e| VmPoolError::Io("writing the warm-up module".into(), e))?;
            std::fs::rename(&tmp, &path)
                .map_err(|e| VmPoolError::Io("writing the warm-up module".into(), e))?;
        }
        let module = self.store.module(&path)?;
        *self
            .warmup
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(module.clone());
        let config = Self::warmup_config()?;
        let key = function_key(&module, &[], base, self.engine, &config);
        if self.store.function("warmup", &key).is_some() {
            return Ok(());
        }
        let mut vm = Vm::restore(&self.kvm, base, None, None)?;
        let len = vm.attach_module(&module)?;
        match runner.load(
            &mut vm,
            len,
            &config,
            None,
            10_000_000_000,
            &mut RunStats::default(),
        )? {
            Loaded::Waiting => {}
            Loaded::Finished(f) => {
                return Err(VmPoolError::Guest(format!(
                    "the warm-up module ended: {:?}",
                    f.ended
                )))
            }
        }
        let path = self.store.function_path("warmup", &key);
        vm.snapshot_layer(&path, key)?;
        self.store
            .insert_function(key, Arc::new(Snapshot::open(&path)?));
        Ok(())
    }

    /// [files] Opens `spec`'s module and looks up its snapshot. The memory
    /// class's base must have been ensured.
    pub fn prepare(&self, spec: &FunctionSpec, mem_mib: u32) -> Result<Prepared, VmPoolError> {
        let base = self
            .store
            .base(mem_mib)
            .ok_or_else(|| VmPoolError::Guest(format!("no base snapshot for {mem_mib} MiB yet")))?;
        let module = self.store.module(&spec.module_path)?;
        let files = spec
            .files
            .iter()
            .map(|f| self.store.module(f))
            .collect::<Result<Vec<_>, _>>()?;
        let key = function_key(&module, &files, &base, self.engine, &spec.config);
        let layer = self.store.function(&spec.code_sha256_hex, &key);
        Ok(Prepared {
            spec: spec.clone(),
            module,
            files,
            base,
            key,
            layer,
        })
    }

    /// [files] Writes the function snapshot of a VM that stopped at the
    /// function's first stdin read ([`Specialised::NeedsSnapshot`]), opens
    /// it, and records it in `prepared`.
    pub fn write_function_snapshot(
        &self,
        p: &mut PooledVm,
        prepared: &mut Prepared,
    ) -> Result<(), VmPoolError> {
        let path = self
            .store
            .function_path(&prepared.spec.code_sha256_hex, &prepared.key);
        p.vm.snapshot_layer(&path, prepared.key)?;
        let layer = Arc::new(Snapshot::open(&path)?);
        self.store.insert_function(prepared.key, layer.clone());
        prepared.layer = Some(layer);
        Ok(())
    }

    /// [VM thread] A new general VM of a memory class, warmed as configured.
    pub fn new_general(
        &self,
        runner: &Runner,
        base: &Arc<Snapshot>,
    ) -> Result<PooledVm, VmPoolError> {
        let mut vm = Vm::restore(&self.kvm, base, None, None)?;
        match self.config.prewarm {
            Prewarm::None => {}
            Prewarm::Populate => vm.populate_snapshot()?,
            Prewarm::Rehearse => {
                if let Some((layer, module)) = self.warmup_layer(base) {
                    vm.adopt_layer(&layer, &module)?;
                    let inv = Invocation {
                        event: b"{}",
                        request_id: "warm-up",
                        timeout_ns: 5_000_000_000,
                    };
                    runner.invoke(&mut vm, &inv, &mut RunStats::default())?;
                    vm.revert_to_base()?;
                }
            }
        }
        let mut p = self.pooled(vm, (base.header.mem_size >> 20) as u32, None);
        p.private_pages = p.vm.copied_pages()?;
        Ok(p)
    }

    /// [VM thread] Turns a general (or dedicated) VM into the prepared
    /// function: adopts its snapshot, or loads it up to its first stdin
    /// read when it has none yet.
    pub fn specialise(
        &self,
        runner: &Runner,
        p: &mut PooledVm,
        f: &Prepared,
    ) -> Result<Specialised, VmPoolError> {
        // A pooled VM maps no file images (a general VM was reverted to
        // its base); the function's go where its snapshot's guest mounted
        // them (same images, same order, same addresses).
        p.vm.attach_files(&f.files.iter().collect::<Vec<_>>())?;
        if let Some(layer) = &f.layer {
            match p.vm.adopt_layer(layer, &f.module) {
                Ok(_) => {
                    p.function = Some(f.key);
                    return Ok(Specialised::Ready);
                }
                Err(VmError::Snapshot(SnapshotError::Mismatch(why))) => {
                    return Ok(Specialised::Failed(
                        "Runtime.Unknown",
                        format!("the function snapshot does not fit: {why}"),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let len = p.vm.attach_module(&f.module)?;
        let timeout = f.spec.init_timeout.as_nanos() as u64;
        match runner.load(
            &mut p.vm,
            len,
            &f.spec.config,
            None,
            timeout,
            &mut RunStats::default(),
        ) {
            Ok(Loaded::Waiting) => Ok(Specialised::NeedsSnapshot(
                Runner::init_output(&p.vm).map_err(VmPoolError::from)?,
            )),
            Ok(Loaded::Finished(done)) => Ok(match done.ended {
                Ended::Exited(0) | Ended::OutputTooLarge => Specialised::EndedEarly(done),
                Ended::Exited(c) if Some(c) == f.spec.error_exit => Specialised::InitError(done),
                ref other => {
                    let (kind, why) = describe(other);
                    Specialised::Failed(kind, why)
                }
            }),
            Err(GuestError::Timeout) => Ok(Specialised::Failed(
                "Sandbox.Timedout",
                format!(
                    "the module's initialisation ran past {:.2} seconds",
                    f.spec.init_timeout.as_secs_f64()
                ),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// [VM thread] After its snapshot was written, the VM that took it
    /// adopts it, so that resets return it there.
    pub fn adopt(&self, p: &mut PooledVm, f: &Prepared) -> Result<(), VmPoolError> {
        let layer = f
            .layer
            .as_ref()
            .ok_or_else(|| VmPoolError::Guest("the function snapshot was not taken".into()))?;
        p.vm.adopt_layer(layer, &f.module)?;
        p.function = Some(f.key);
        Ok(())
    }

    /// [VM thread] A cold start: a new VM restored straight from the
    /// function snapshot, or a new (unwarmed) general VM specialised.
    pub fn cold(
        &self,
        runner: &Runner,
        f: &Prepared,
    ) -> Result<(PooledVm, Specialised), VmPoolError> {
        let mem = (f.base.header.mem_size >> 20) as u32;
        if let Some(layer) = &f.layer {
            match Vm::restore(&self.kvm, &f.base, Some(layer), Some(&f.module)) {
                Ok(mut vm) => {
                    vm.attach_files(&f.files.iter().collect::<Vec<_>>())?;
                    return Ok((self.pooled(vm, mem, Some(f.key)), Specialised::Ready));
                }
                Err(VmError::Snapshot(SnapshotError::Mismatch(why))) => {
                    return Ok((
                        self.pooled(Vm::restore(&self.kvm, &f.base, None, None)?, mem, None),
                        Specialised::Failed(
                            "Runtime.Unknown",
                            format!("the function snapshot does not fit: {why}"),
                        ),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut p = self.pooled(Vm::restore(&self.kvm, &f.base, None, None)?, mem, None);
        let s = self.specialise(runner, &mut p, f)?;
        Ok((p, s))
    }

    /// [VM thread] Runs one invocation on a VM at its stdin read. Returns
    /// the outcome (a `GuestError` is a timeout or a broken guest) and its
    /// figures, pages copied on write included.
    pub fn invoke(
        &self,
        runner: &Runner,
        p: &mut PooledVm,
        inv: &Invocation<'_>,
    ) -> (Result<Finished, GuestError>, RunStats) {
        let mut stats = RunStats::default();
        let r = runner.invoke(&mut p.vm, inv, &mut stats);
        stats.cow_pages = p.vm.copied_pages().unwrap_or(0);
        (r, stats)
    }

    /// [VM thread] Resets a VM to its function snapshot after an invocation
    /// (after a timeout or a guest fault too). Returns how long it took.
    pub fn reset(&self, p: &mut PooledVm) -> Result<Duration, VmPoolError> {
        let r = p.vm.reset(ResetMode::Restore)?;
        p.private_pages = r.pages;
        Ok(Duration::from_nanos(r.ns))
    }

    /// Whether a VM is at a function's stdin read (ready to invoke).
    pub fn is_ready(p: &PooledVm) -> bool {
        p.vm.phase() == Phase::Stdin
    }
}

/// A failed init, for the function's log and error body: Lambda's
/// `errorType` and why.
pub fn describe(e: &Ended) -> (&'static str, String) {
    match e {
        Ended::Exited(code) => (
            "Runtime.ExitError",
            format!("Runtime exited with error: exit status {code}"),
        ),
        Ended::Trap(m) => ("Runtime.Trap", format!("WebAssembly trap: {m}")),
        Ended::OutOfMemory => (
            "Runtime.OutOfMemory",
            "the module needs more memory than the function has".into(),
        ),
        Ended::OutputTooLarge => (
            "Function.ResponseSizeTooLarge",
            "the module wrote more than 6 MB to stdout".into(),
        ),
        Ended::LoadError { kind, message } => (
            "Runtime.InvalidEntrypoint",
            format!("the module could not be loaded ({kind:?}): {message}"),
        ),
        Ended::GuestPanic(m) => (
            "Runtime.ExitError",
            format!("the guest runtime failed: {m}"),
        ),
    }
}
