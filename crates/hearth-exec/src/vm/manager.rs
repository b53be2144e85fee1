//! The pool manager's VM side: base snapshots per memory class, the
//! general VM pools refilled to their sizing policy's target, dedicated VMs
//! per account, function-warm VMs built ahead of requests (provisioned
//! concurrency, keep-alive pre-warm), surplus expiry, and function
//! snapshots deleted with the last version that uses their code.

use super::invoke::on_vm;
use super::{measured_mb, running_mb, VmInstance, VmSide};
use crate::instance::Origin;
use crate::placement::WarmKey;
use crate::pools::MemoryCharge;
use crate::Executor;
use hearth_pool::sizing::SizeBounds;
use hearth_pool::vm::Usage;
use hearth_types::function::VersionRecord;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Surplus general VMs (above target) older than this are destroyed.
const SURPLUS_TTL: Duration = Duration::from_secs(120);

/// Where a pooled VM build goes.
#[derive(Clone)]
enum Slot {
    General(u32),
    Dedicated(String, u32),
}

impl Slot {
    fn class(&self) -> u32 {
        match self {
            Slot::General(c) | Slot::Dedicated(_, c) => *c,
        }
    }
}

impl Executor {
    /// One step of the VM side of the pool manager.
    pub(crate) fn vm_tick(&self) {
        let Ok(side) = self.0.vm.clone() else {
            return;
        };
        self.vm_ensure_bases(&side);
        self.vm_refill_general(&side);
        self.vm_fill_dedicated(&side);
        self.vm_publish(&side);
    }

    /// The memory classes the VM pools use.
    fn vm_classes(&self, side: &VmSide) -> Vec<u32> {
        let mut classes: Vec<u32> = side.general.iter().map(|g| g.memory_class_mb).collect();
        classes.extend(side.dedicated.lock().keys().map(|(_, c)| *c));
        classes.sort_unstable();
        classes.dedup();
        classes
    }

    /// Opens (or takes, by booting the guest once) the base snapshot of
    /// each memory class the pools use, off the async threads.
    fn vm_ensure_bases(&self, side: &Arc<VmSide>) {
        for class in self.vm_classes(side) {
            {
                let mut bases = side.bases.lock();
                if bases.contains_key(&class) {
                    continue;
                }
                bases.insert(class, None);
            }
            let side = side.clone();
            let me = self.clone();
            tokio::spawn(async move {
                let host = side.host.clone();
                let started = Instant::now();
                let r = tokio::task::spawn_blocking(move || {
                    let runner =
                        hearth_vmm::guest::Runner::for_this_thread().map_err(|e| e.to_string())?;
                    host.ensure_base(&runner, class)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                match &r {
                    Ok(()) => tracing::info!(
                        class,
                        ms = started.elapsed().as_millis() as u64,
                        "microVM base snapshot ready"
                    ),
                    Err(e) => {
                        tracing::error!(class, error = %e, "cannot make the microVM base snapshot")
                    }
                }
                side.bases.lock().insert(class, Some(r));
                me.0.wake.notify_one();
            });
        }
    }

    fn base_ready(side: &VmSide, class: u32) -> bool {
        matches!(side.bases.lock().get(&class), Some(Some(Ok(()))))
    }

    fn vm_refill_general(&self, side: &Arc<VmSide>) {
        let now = self.now();
        let mut total = 0;
        for g in &side.general {
            let class = g.memory_class_mb;
            let target = {
                let mut sizers = side.sizers.lock();
                let Some(s) = sizers.get_mut(&class) else {
                    continue;
                };
                s.target(now, SizeBounds::new(g.min, g.max))
            };
            let label = format!("microvm:{class}");
            self.0
                .metrics
                .pool_target
                .with_label_values(&[&label])
                .set(i64::from(target));
            total += target;
            let (have, surplus) = {
                let mut pools = self.0.pools.lock();
                pools.vm.general_targets.insert(class, target);
                let idle = pools.vm.sub.general_idle(class);
                let building = pools
                    .vm
                    .sub
                    .building_general
                    .get(&class)
                    .copied()
                    .unwrap_or(0);
                let mut surplus = Vec::new();
                if idle > target {
                    let old: Vec<bool> = pools
                        .vm
                        .sub
                        .general_iter()
                        .filter(|(c, _)| *c == class)
                        .flat_map(|(_, l)| l.iter().map(|v| v.vm.created.elapsed() >= SURPLUS_TTL))
                        .collect();
                    // The oldest go first; only those past the TTL.
                    let expired = old.iter().take_while(|o| **o).count() as u32;
                    let n = (idle - target).min(expired);
                    if n > 0 {
                        surplus = pools.vm.sub.take_general_surplus(class, idle - n);
                    }
                }
                (idle + building, surplus)
            };
            for v in surplus {
                self.0
                    .metrics
                    .evictions
                    .with_label_values(&["general-surplus"])
                    .inc();
                drop(v.destroy());
            }
            if !Self::base_ready(side, class) {
                continue;
            }
            for _ in have..target {
                if !self.spawn_vm_build(side, Slot::General(class)) {
                    break;
                }
            }
        }
        self.0.pools.lock().vm.general_target_total = total;
    }

    /// Keeps each account's dedicated VM sub-pool at its configured size.
    fn vm_fill_dedicated(&self, side: &Arc<VmSide>) {
        let targets: Vec<((String, u32), u32)> = side
            .dedicated
            .lock()
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        let surplus: Vec<VmInstance> = {
            let mut pools = self.0.pools.lock();
            let have: Vec<((String, u32), u32)> = pools
                .vm
                .sub
                .dedicated_iter()
                .map(|(k, l)| (k.clone(), l.len() as u32))
                .collect();
            let mut out = Vec::new();
            for ((account, class), n) in have {
                let want = targets
                    .iter()
                    .find(|((a, c), _)| *a == account && *c == class)
                    .map_or(0, |(_, n)| *n);
                if n > want {
                    out.extend(pools.vm.sub.take_dedicated_surplus(&account, class, want));
                }
            }
            out
        };
        for v in surplus {
            self.0
                .metrics
                .evictions
                .with_label_values(&["dedicated-shrunk"])
                .inc();
            drop(v.destroy());
        }
        for ((account, class), n) in targets {
            if !Self::base_ready(side, class) {
                continue;
            }
            let have = {
                let pools = self.0.pools.lock();
                pools.vm.sub.dedicated_idle(&account, class)
                    + pools
                        .vm
                        .sub
                        .building_dedicated
                        .get(&(account.clone(), class))
                        .copied()
                        .unwrap_or(0)
            };
            for _ in have..n {
                if !self.spawn_vm_build(side, Slot::Dedicated(account.clone(), class)) {
                    break;
                }
            }
        }
    }

    /// Starts restoring one pooled VM (warmed as configured) in the
    /// background, charged its class until it is measured; false if the
    /// memory budget has no room.
    fn spawn_vm_build(&self, side: &Arc<VmSide>, slot: Slot) -> bool {
        let class = slot.class();
        // Charged, while it is made, what the last pooled VM of its class
        // held once made (its class, the first time).
        let mb = side
            .pooled_mb
            .lock()
            .get(&class)
            .copied()
            .unwrap_or_else(|| running_mb(class));
        if self.0.memory_used.load(Ordering::Relaxed) + mb > self.0.config.memory_budget_mb {
            return false;
        }
        let Some(base) = side.host.store.base(class) else {
            return false;
        };
        let charge = MemoryCharge::new(&self.0.memory_used, mb);
        {
            let mut pools = self.0.pools.lock();
            let sub = &mut pools.vm.sub;
            match &slot {
                Slot::General(c) => *sub.building_general.entry(*c).or_default() += 1,
                Slot::Dedicated(a, c) => {
                    *sub.building_dedicated.entry((a.clone(), *c)).or_default() += 1
                }
            }
        }
        let me = self.clone();
        let side = side.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let built = on_vm(&side.host, move |h, r| h.new_general(r, &base)).await;
            let mut pools = me.0.pools.lock();
            let sub = &mut pools.vm.sub;
            match &slot {
                Slot::General(c) => {
                    if let Some(n) = sub.building_general.get_mut(c) {
                        *n = n.saturating_sub(1);
                    }
                }
                Slot::Dedicated(a, c) => {
                    if let Some(n) = sub.building_dedicated.get_mut(&(a.clone(), *c)) {
                        *n = n.saturating_sub(1);
                    }
                }
            }
            let vm = match built {
                Ok(Ok(vm)) => vm,
                Ok(Err(e)) => {
                    tracing::warn!(class, error = %e, "could not restore a pooled microVM");
                    return;
                }
                Err(e) => {
                    tracing::warn!(class, error = %e.message, "could not restore a pooled microVM");
                    return;
                }
            };
            me.0.metrics
                .init_seconds
                .with_label_values(&["build-microvm"])
                .observe(started.elapsed().as_secs_f64());
            let mut charge = charge;
            let held = measured_mb(vm.private_pages);
            charge.set(held);
            side.pooled_mb.lock().insert(class, held);
            let mut v = VmInstance {
                sid: me.next_sid(),
                vm,
                charge,
                account: None,
                key: None,
                generation: 0,
                origin: Origin::Active,
                init_duration: None,
                init_output: Vec::new(),
                log_stream: String::new(),
                init_cost_ms: 0,
                memory_mb: class,
                last_used: Instant::now(),
            };
            if pools.closing {
                drop(pools);
                drop(v.destroy());
                return;
            }
            match slot {
                Slot::General(c) => pools.vm.sub.put_general(c, v),
                Slot::Dedicated(a, c) => {
                    pools.vm.assign(v.vm.id, &a);
                    v.account = Some(a.clone());
                    pools.vm.sub.put_dedicated(&a, c, v);
                }
            }
            drop(pools);
            me.0.released.notify_waiters();
        });
        true
    }

    /// Builds a function-warm VM ahead of any request (provisioned
    /// concurrency, or the keep-alive policy's pre-warm): restored from the
    /// function snapshot when there is one. Its invocations report no Init
    /// Duration.
    pub(crate) async fn build_vm_function_warm(
        &self,
        v: &VersionRecord,
        code: &super::VmCode,
        origin: Origin,
    ) -> Result<VmInstance, String> {
        let side = self.vm_side(code).map_err(|e| e.message)?;
        let class = hearth_pool::profile::memory_class_for(v.config.memory_size)
            .unwrap_or(v.config.memory_size);
        let mb = running_mb(class);
        if self.0.memory_used.load(Ordering::Relaxed) + mb > self.0.config.memory_budget_mb {
            return Err("the memory budget has no room for it".to_owned());
        }
        let charge = MemoryCharge::new(&self.0.memory_used, mb);
        let key = WarmKey {
            account_id: v.account_id.clone(),
            function_name: v.function_name.clone(),
            version: v.version.clone(),
            revision_id: v.revision_id.clone(),
        };
        let mut usage = Usage::default();
        let inst = self
            .cold_vm(&side, charge, v, &key, code, origin, &mut usage)
            .await
            .map_err(|f| match f {
                super::invoke::VmStartFailed::Init { message, .. } => message,
                super::invoke::VmStartFailed::EndedEarly { .. } => {
                    "the module ends before it reads its event".to_owned()
                }
                super::invoke::VmStartFailed::Reported { finished, .. } => {
                    format!(
                        "the function's init failed: {}",
                        String::from_utf8_lossy(&finished.stdout)
                    )
                }
                super::invoke::VmStartFailed::Error(e) => e.message,
            })?;
        // Parked at its stdin read: charged what it holds.
        let (mut inst, pages) = on_vm(&side.host, move |_, _| {
            let mut inst = inst;
            let pages = inst.vm.vm.copied_pages().unwrap_or(0);
            (inst, pages)
        })
        .await
        .map_err(|e| e.message)?;
        inst.vm.private_pages = pages;
        inst.charge.set(measured_mb(pages));
        inst.init_duration = None;
        inst.init_output.clear();
        Ok(inst)
    }

    /// Deletes the function snapshots of code no version uses any more
    /// (after a function or version is deleted or its code replaced).
    pub(crate) fn vm_sweep_snapshots(&self) {
        let Ok(side) = self.0.vm.clone() else {
            return;
        };
        let registry = self.0.registry.clone();
        tokio::task::spawn_blocking(move || {
            let referenced: HashSet<String> = match registry.referenced_code() {
                Ok(r) => r.into_iter().collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the code in use");
                    return;
                }
            };
            side.prepared
                .lock()
                .retain(|(sha, _, _), _| referenced.contains(sha));
            // Merged-layer images (`code-opt<key>.img`) are shared across
            // functions and not tracked per digest: they stay.
            let gone = side
                .host
                .store
                .sweep(|sha| sha.starts_with("opt") || referenced.contains(sha));
            if gone > 0 {
                tracing::info!(gone, "deleted function snapshots no version uses");
            }
        });
    }

    fn vm_publish(&self, side: &VmSide) {
        let m = &self.0.metrics;
        let pools = self.0.pools.lock();
        for g in &side.general {
            m.pool_size
                .with_label_values(&[
                    "general",
                    &format!("microvm:{}", g.memory_class_mb),
                    "microvm",
                    "",
                ])
                .set(i64::from(pools.vm.sub.general_idle(g.memory_class_mb)));
        }
        m.pool_size
            .with_label_values(&["active", "microvm", "function", ""])
            .set(i64::from(pools.vm.sub.idle_total()));
        for ((account, class), list) in pools.vm.sub.dedicated_iter() {
            m.pool_size
                .with_label_values(&["dedicated", &format!("microvm:{class}"), "microvm", account])
                .set(list.len() as i64);
        }
        for (k, list) in pools.vm.sub.provisioned_iter() {
            m.pool_size
                .with_label_values(&[
                    "dedicated",
                    &k.function_name,
                    "microvm-function",
                    &k.account_id,
                ])
                .set(list.len() as i64);
        }
    }

    /// The VM pools for `GET /hearth/v1/pools`.
    pub(crate) fn vm_pools_snapshot(&self) -> serde_json::Value {
        use serde_json::json;
        let side = match &self.0.vm {
            Ok(s) => s.clone(),
            Err(why) => return json!({"Available": false, "Reason": why}),
        };
        let pools = self.0.pools.lock();
        let general: Vec<_> = side
            .general
            .iter()
            .map(|g| {
                let c = g.memory_class_mb;
                json!({
                    "Profile": format!("microvm:{c}"),
                    "Idle": pools.vm.sub.general_idle(c),
                    "Building": pools.vm.sub.building_general.get(&c).copied().unwrap_or(0),
                    "Target": pools.vm.general_targets.get(&c).copied().unwrap_or(0),
                    "Min": g.min,
                    "Max": g.max,
                    "IdleMemoryMb": pools.vm.sub.general_iter()
                        .filter(|(k, _)| *k == c)
                        .flat_map(|(_, l)| l.iter().map(|v| v.charge.mb()))
                        .sum::<u64>(),
                })
            })
            .collect();
        let dedicated: Vec<_> = side
            .dedicated
            .lock()
            .iter()
            .map(|((account, class), n)| {
                json!({
                    "AccountId": account,
                    "Profile": format!("microvm:{class}"),
                    "Target": n,
                    "Idle": pools.vm.sub.dedicated_idle(account, *class),
                })
            })
            .collect();
        let provisioned: Vec<_> = pools
            .vm
            .sub
            .provisioned_iter()
            .map(|(k, l)| {
                json!({
                    "AccountId": k.account_id,
                    "FunctionName": k.function_name,
                    "Version": k.version,
                    "Idle": l.len(),
                })
            })
            .collect();
        let idle: Vec<_> = pools
            .vm
            .sub
            .idle_iter()
            .map(|v| {
                json!({
                    "VmId": v.vm.id,
                    "AccountId": v.account,
                    "FunctionName": v.key.as_ref().map(|k| k.function_name.clone()),
                    "MemoryMb": v.charge.mb(),
                    "PrivatePages": v.vm.private_pages,
                })
            })
            .collect();
        let assignments: Vec<_> = pools
            .vm
            .assignments
            .iter()
            .map(|(id, a)| json!({"VmId": id, "AccountId": a}))
            .collect();
        json!({
            "Available": true,
            "Engine": side.host.engine,
            "Prewarm": side.host.config.prewarm,
            "General": general,
            "Dedicated": dedicated,
            "Provisioned": provisioned,
            "ActiveIdle": idle,
            "Resetting": pools.vm.resetting.values().sum::<u32>(),
            "Assignments": assignments,
        })
    }
}
