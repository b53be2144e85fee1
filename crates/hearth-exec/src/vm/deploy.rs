//! A microVM function's snapshot taken when it is deployed (ADR 0019).
//!
//! Without it, the first invocation of a new or changed function pays for
//! its module's load in the VM it draws (a general VM loads the module to
//! its first stdin read and the function snapshot is written there): 4–8 ms
//! for a WebAssembly echo, 0.4 s for a Python function, on this host. The
//! activation of a version (`hearth-api`, before `State` turns `Active` or
//! `LastUpdateStatus` `Successful`) now does that work once, in a VM of its
//! own that is destroyed afterwards, so that the first invocation adopts the
//! snapshot like any later one. It is an optimisation only: where it cannot
//! be done (no room in the memory budget, no microVMs on the node, an init
//! that fails or ends early) nothing is recorded, and the first invocation
//! loads the module and reports what happens, as before.
//!
//! An invocation that finds the snapshot being taken waits for it instead of
//! loading the module a second time ([`Executor::vm_prepared_or_wait`]). The
//! init's output is kept for the first invocation that adopts the snapshot,
//! so that its log shows it once, as if its VM had run the init.

use super::invoke::on_vm;
use super::{running_mb, VmSide};
use crate::pools::MemoryCharge;
use crate::Executor;
use hearth_pool::vm::{Prepared, Specialised};
use hearth_types::function::VersionRecord;
use hearth_types::LambdaError;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What the deploy-time step did, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployPrep {
    /// The version runs in process sandboxes, or the node runs no microVMs.
    Nothing,
    /// Its function snapshot already existed (same code and configuration).
    Existed,
    /// Its function snapshot was taken.
    Taken,
    /// Not now (no room in the memory budget): its first invocation loads it.
    Deferred,
    /// Its init did not reach the first stdin read: its first invocation
    /// runs it again and reports how it ends.
    InitFailed,
}

/// Removes a snapshot flight from its side's table and wakes its waiters,
/// however the step that took it ends.
struct Flight {
    side: Arc<VmSide>,
    key: super::PreparedKey,
    done: tokio::sync::watch::Sender<bool>,
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.side.flights.lock().remove(&self.key);
        self.done.send_replace(true);
    }
}

impl Executor {
    /// Takes a microVM version's function snapshot ahead of its first
    /// invocation (see the module's documentation). Returns what it did; an
    /// error is Hearth's own (the caller logs it and activates the version
    /// all the same).
    pub async fn prepare_first_invoke(
        &self,
        version: &VersionRecord,
    ) -> Result<DeployPrep, LambdaError> {
        let Some(code) = self.vm_code(version).await? else {
            return Ok(DeployPrep::Nothing);
        };
        let Ok(side) = self.vm_side(&code) else {
            return Ok(DeployPrep::Nothing);
        };
        // One at a time: a Python load holds a VM thread for a while, and
        // invocations share those threads.
        let _turn = side
            .deploying
            .acquire()
            .await
            .map_err(|_| LambdaError::service("the node is shutting down"))?;
        let (pk, prepared) = self.vm_prepared(&side, version, &code).await?;
        if prepared.layer.is_some() {
            return Ok(DeployPrep::Existed);
        }
        let class = (prepared.base.header.mem_size >> 20) as u32;
        let mb = running_mb(class);
        if self.0.memory_used.load(Ordering::Relaxed) + mb > self.0.config.memory_budget_mb {
            return Ok(DeployPrep::Deferred);
        }
        let charge = MemoryCharge::new(&self.0.memory_used, mb);
        let (done, waiting) = tokio::sync::watch::channel(false);
        side.flights.lock().insert(pk.clone(), waiting);
        let _flight = Flight {
            side: side.clone(),
            key: pk.clone(),
            done,
        };
        let p = prepared.clone();
        let (vm, outcome) = on_vm(&side.host, move |h, r| h.cold(r, &p))
            .await?
            .map_err(|e| LambdaError::service(format!("cannot restore a microVM: {e}")))?;
        let host = side.host.clone();
        let taken = tokio::task::spawn_blocking(move || {
            let mut vm = vm;
            let mut prepared = prepared;
            let r = match outcome {
                Specialised::NeedsSnapshot(init_output) => {
                    match host.store.cached_function(&prepared.key) {
                        // An invocation took it meanwhile.
                        Some(layer) => {
                            prepared.layer = Some(layer);
                            Ok((DeployPrep::Existed, prepared, Vec::new()))
                        }
                        None => host
                            .write_function_snapshot(&mut vm, &mut prepared)
                            .map(|()| (DeployPrep::Taken, prepared, init_output)),
                    }
                }
                Specialised::Ready => Ok((DeployPrep::Existed, prepared, Vec::new())),
                Specialised::EndedEarly(_)
                | Specialised::InitError(_)
                | Specialised::Failed(..) => Ok((DeployPrep::InitFailed, prepared, Vec::new())),
            };
            // Closing KVM's descriptors frees the VM's memory; its charge
            // goes after it.
            drop(vm);
            drop(charge);
            r
        })
        .await
        .map_err(|e| LambdaError::service(format!("worker failed: {e}")))?
        .map_err(|e| LambdaError::service(format!("cannot take the function snapshot: {e}")))?;
        let (what, prepared, init_output) = taken;
        if what != DeployPrep::InitFailed {
            side.prepared.lock().insert(pk.clone(), prepared);
        }
        if what == DeployPrep::Taken {
            let mut outputs = side.init_outputs.lock();
            if outputs.len() >= 10_000 {
                outputs.clear();
            }
            outputs.insert(pk, init_output);
        }
        Ok(what)
    }

    /// [`Self::vm_prepared`], but if the function snapshot is being taken
    /// at deploy time, waits for it (rather than load the module again)
    /// and returns the function with its snapshot.
    pub(crate) async fn vm_prepared_or_wait(
        &self,
        side: &Arc<VmSide>,
        version: &VersionRecord,
        code: &super::VmCode,
    ) -> Result<(super::PreparedKey, Prepared), LambdaError> {
        let (pk, prepared) = self.vm_prepared(side, version, code).await?;
        if prepared.layer.is_some() {
            return Ok((pk, prepared));
        }
        let flight = side.flights.lock().get(&pk).cloned();
        let Some(mut done) = flight else {
            return Ok((pk, prepared));
        };
        // An error means the step ended without saying so: same as done.
        let _ = done.wait_for(|d| *d).await;
        let now = side.prepared.lock().get(&pk).cloned();
        Ok((pk, now.unwrap_or(prepared)))
    }
}
