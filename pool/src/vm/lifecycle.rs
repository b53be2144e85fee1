//! Restore, specialise, invoke, reset: what happens to a pooled VM, in
//! order. Every step here enters the guest, so it runs on a VM thread (the
//! `Runner` argument), never on an async thread.
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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_vmm::guest::{Ended, Finished, GuestError, Invocation, Loaded, Runner};
use hearth_vmm::snapshot::{Snapshot, SnapshotError};
use hearth_vmm::vm::{ModuleFile, ResetMode, Vm, VmError};
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
    /// The config blob: arguments and environment.
    pub config: Vec<u8>,
    /// How long the module's initialisation may take.
    pub init_timeout: Duration,
}

/// How specialising went.
#[derive(Debug)]
pub enum Specialised {
    /// The VM is at the function's stdin read. `took_snapshot` if this was
    /// the function's first time.
    Ready {
        /// Whether the function snapshot was taken now.
        took_snapshot: bool,
    },
    /// The module ended before reading stdin (it ignores events): this is
    /// its whole run, and the VM cannot be reused.
    EndedEarly(Finished),
    /// The module's init failed in the guest (it could not be loaded, it
    /// trapped, it timed out).
    Failed(String),
}

impl VmHost {
    fn next_id(&self) -> u64 {
        self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// The base snapshot of a memory class: opened (and verified) from its
    /// file, or taken now by booting the guest.
    pub fn base(&self, runner: &Runner, mem_mib: u32) -> Result<Arc<Snapshot>, VmPoolError> {
        if let Some(b) = self.store.base(mem_mib) {
            return Ok(b);
        }
        let path = self
            .store
            .base_path(&self.image.id(), &self.kvm.cpu_signature(), mem_mib);
        if path.exists() {
            match Snapshot::open(&path) {
                Ok(s) => {
                    let s = Arc::new(s);
                    self.store.set_base(mem_mib, s.clone());
                    return Ok(s);
                }
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
        let s = Arc::new(Snapshot::open(&path)?);
        self.store.set_base(mem_mib, s.clone());
        Ok(s)
    }

    /// A new general VM of a memory class, warmed as configured.
    pub fn new_general(&self, runner: &Runner, mem_mib: u32) -> Result<PooledVm, VmPoolError> {
        let base = self.base(runner, mem_mib)?;
        let mut vm = Vm::restore(&self.kvm, &base, None, None)?;
        match self.config.prewarm {
            Prewarm::None => {}
            Prewarm::Populate => vm.populate_snapshot()?,
            Prewarm::Rehearse => {
                let (layer, module) = self.warmup(runner, &base)?;
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
        Ok(PooledVm {
            id: self.next_id(),
            vm,
            memory_class_mb: mem_mib,
            created: Instant::now(),
            function: None,
            private_pages: 0,
        })
    }

    /// The warm-up module's function snapshot over `base` (taken once).
    fn warmup(
        &self,
        runner: &Runner,
        base: &Arc<Snapshot>,
    ) -> Result<(Arc<Snapshot>, ModuleFile), VmPoolError> {
        let path = self.store.dir().join("warmup.wasm");
        if !path.exists() {
            let tmp = self.store.dir().join(".warmup.wasm.tmp");
            std::fs::write(&tmp, super::warmup_module())
                .map_err(|e| VmPoolError::Io("writing the warm-up module".into(), e))?;
            std::fs::rename(&tmp, &path)
                .map_err(|e| VmPoolError::Io("writing the warm-up module".into(), e))?;
        }
        let module = self.store.module(&path)?;
        let config = super::config_blob(&["warmup.wasm"], &[])?;
        let key = function_key(&module, base, self.engine, &config);
        let code = "warmup";
        if let Some(layer) = self.store.function(code, &key) {
            return Ok((layer, module));
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
        let path = self.store.function_path(code, &key);
        vm.snapshot_layer(&path, key)?;
        let layer = Arc::new(Snapshot::open(&path)?);
        self.store.insert_function(key, layer.clone());
        Ok((layer, module))
    }

    /// Turns a general (or dedicated) VM into `f`, at its stdin read.
    pub fn specialise(
        &self,
        runner: &Runner,
        p: &mut PooledVm,
        f: &FunctionSpec,
    ) -> Result<Specialised, VmPoolError> {
        let base = self.base(runner, p.memory_class_mb)?;
        let module = self.store.module(&f.module_path)?;
        let key = function_key(&module, &base, self.engine, &f.config);
        if let Some(layer) = self.store.function(&f.code_sha256_hex, &key) {
            match p.vm.adopt_layer(&layer, &module) {
                Ok(_) => {
                    p.function = Some(key);
                    return Ok(Specialised::Ready {
                        took_snapshot: false,
                    });
                }
                Err(VmError::Snapshot(SnapshotError::Mismatch(why))) => {
                    tracing::warn!(%why, "discarding a function snapshot that does not fit");
                    self.store.discard_function(&f.code_sha256_hex, &key);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let len = p.vm.attach_module(&module)?;
        let loaded = runner.load(
            &mut p.vm,
            len,
            &f.config,
            None,
            f.init_timeout.as_nanos() as u64,
            &mut RunStats::default(),
        );
        match loaded {
            Ok(Loaded::Waiting) => {}
            Ok(Loaded::Finished(done)) => {
                return Ok(match done.ended {
                    Ended::Exited(_) | Ended::OutputTooLarge => Specialised::EndedEarly(done),
                    ref other => Specialised::Failed(describe(other)),
                })
            }
            Err(GuestError::Timeout) => {
                return Ok(Specialised::Failed(format!(
                    "the module's initialisation ran past {:.2} seconds",
                    f.init_timeout.as_secs_f64()
                )))
            }
            Err(e) => return Err(e.into()),
        }
        let path = self.store.function_path(&f.code_sha256_hex, &key);
        p.vm.snapshot_layer(&path, key)?;
        let layer = Arc::new(Snapshot::open(&path)?);
        self.store.insert_function(key, layer.clone());
        p.vm.adopt_layer(&layer, &module)?;
        p.function = Some(key);
        Ok(Specialised::Ready {
            took_snapshot: true,
        })
    }

    /// A cold start: a new VM restored straight from `f`'s function
    /// snapshot, or a new general VM specialised.
    pub fn cold(
        &self,
        runner: &Runner,
        mem_mib: u32,
        f: &FunctionSpec,
    ) -> Result<(PooledVm, Specialised), VmPoolError> {
        let base = self.base(runner, mem_mib)?;
        let module = self.store.module(&f.module_path)?;
        let key = function_key(&module, &base, self.engine, &f.config);
        if let Some(layer) = self.store.function(&f.code_sha256_hex, &key) {
            match Vm::restore(&self.kvm, &base, Some(&layer), Some(&module)) {
                Ok(vm) => {
                    let p = PooledVm {
                        id: self.next_id(),
                        vm,
                        memory_class_mb: mem_mib,
                        created: Instant::now(),
                        function: Some(key),
                        private_pages: 0,
                    };
                    return Ok((
                        p,
                        Specialised::Ready {
                            took_snapshot: false,
                        },
                    ));
                }
                Err(VmError::Snapshot(SnapshotError::Mismatch(_))) => {
                    self.store.discard_function(&f.code_sha256_hex, &key);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let vm = Vm::restore(&self.kvm, &base, None, None)?;
        let mut p = PooledVm {
            id: self.next_id(),
            vm,
            memory_class_mb: mem_mib,
            created: Instant::now(),
            function: None,
            private_pages: 0,
        };
        let s = self.specialise(runner, &mut p, f)?;
        Ok((p, s))
    }

    /// Runs one invocation on a VM at its stdin read. Returns the outcome
    /// (a `GuestError` is a timeout or a broken guest) and its figures,
    /// pages copied on write included.
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

    /// Resets a VM to its function snapshot after an invocation (after a
    /// timeout or a guest fault too). Returns how long it took.
    pub fn reset(&self, p: &mut PooledVm) -> Result<Duration, VmPoolError> {
        let r = p.vm.reset(ResetMode::Restore)?;
        p.private_pages = r.pages;
        Ok(Duration::from_nanos(r.ns))
    }
}

/// A failed init, for the function's log and error body.
fn describe(e: &Ended) -> String {
    match e {
        Ended::Exited(code) => {
            format!("the module exited with status {code} during its initialisation")
        }
        Ended::Trap(m) => format!("the module trapped during its initialisation: {m}"),
        Ended::OutOfMemory => "the module needs more memory than the function has".into(),
        Ended::OutputTooLarge => "the module wrote more than 6 MB to stdout".into(),
        Ended::LoadError { kind, message } => {
            format!("the module could not be loaded ({kind:?}): {message}")
        }
        Ended::GuestPanic(m) => format!("the guest failed: {m}"),
    }
}
