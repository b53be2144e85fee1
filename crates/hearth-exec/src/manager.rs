//! The pool manager: off the request path, it refills each general sub-pool
//! to the target its sizing policy forecasts (bounded by the pool's min/max
//! and the node's memory budget), keeps provisioned concurrency filled and
//! reports its status, health-checks idle pooled sandboxes, expires surplus
//! and idle ones, and publishes the pools' sizes as metrics.

use crate::instance::Origin;
use crate::invoke::representative_runtime;
use crate::placement::WarmKey;
use crate::pools::{MemoryCharge, PoolKey, ProvisionedKey};
use crate::Executor;
use hearth_pool::sizing::SizeBounds;
use hearth_runtime::api::InitializationType;
use hearth_store::VersionSelector;
use hearth_types::function::ProvisionedStatus;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Where a pooled build goes: a general sub-pool, or an account's
/// dedicated one.
enum Slot {
    General(PoolKey),
    Dedicated(String, PoolKey),
}

impl Slot {
    fn key(&self) -> &PoolKey {
        match self {
            Slot::General(k) | Slot::Dedicated(_, k) => k,
        }
    }

    /// Its builds-in-flight counter.
    fn building<'a>(&self, pools: &'a mut crate::pools::Pools) -> &'a mut u32 {
        match self {
            Slot::General(k) => pools.building.entry(k.clone()).or_default(),
            Slot::Dedicated(a, k) => pools
                .dedicated_building
                .entry((a.clone(), k.clone()))
                .or_default(),
        }
    }
}

/// What a provisioned-concurrency build made.
enum Provisioned {
    Sandbox(Box<crate::instance::Instance>),
    Vm(Box<crate::vm::VmInstance>),
}

/// How often the manager looks at the pools when nothing wakes it.
const TICK: Duration = Duration::from_millis(250);
/// Surplus general sandboxes (above target) older than this are destroyed.
const SURPLUS_TTL: Duration = Duration::from_secs(120);

pub(crate) fn spawn(exec: &Executor) {
    let exec = exec.clone();
    tokio::spawn(async move {
        loop {
            if exec.0.pools.lock().closing {
                return;
            }
            exec.tick();
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = exec.0.wake.notified() => {}
            }
        }
    });
}

impl Executor {
    /// One step of the pool manager.
    fn tick(&self) {
        {
            // Forget general-share draws and asks older than the window.
            let now = self.now();
            let mut pools = self.0.pools.lock();
            pools.share.prune(now);
            pools.vm.share.prune(now);
        }
        self.health_check();
        self.reap_idle();
        self.refill_general();
        self.fill_provisioned();
        self.fill_dedicated();
        self.prewarm();
        self.publish_sizes();
        self.vm_tick();
    }

    /// Replaces idle pooled sandboxes whose processes died.
    fn health_check(&self) {
        let dead: Vec<_> = {
            let mut guard = self.0.pools.lock();
            let pools = &mut *guard;
            let mut out = Vec::new();
            for list in pools
                .general
                .values_mut()
                .chain(pools.dedicated.values_mut())
            {
                let (gone, alive): (Vec<_>, Vec<_>) =
                    list.drain(..).partition(|u| u.logs.is_closed());
                *list = alive;
                out.extend(gone);
            }
            out
        };
        for u in dead {
            self.0.metrics.evictions.with_label_values(&["dead"]).inc();
            u.destroy();
        }
    }

    fn refill_general(&self) {
        if self.0.cannot_isolate.is_some() {
            return;
        }
        let now = self.now();
        let mut total = 0;
        for g in &self.0.config.general_pools {
            let target = {
                let mut sizers = self.0.sizers.lock();
                let Some(s) = sizers.get_mut(&g.key) else {
                    continue;
                };
                let t = s.target(now, SizeBounds::new(g.min, g.max));
                if let Some(sample) = s.last_interval() {
                    self.0
                        .metrics
                        .pool_forecast
                        .with_label_values(&[&g.key.label()])
                        .set(sample.forecast);
                }
                t
            };
            self.0
                .metrics
                .pool_target
                .with_label_values(&[&g.key.label()])
                .set(i64::from(target));
            self.0
                .pools
                .lock()
                .general_targets
                .insert(g.key.clone(), target);
            total += target;
            let (have, surplus) = {
                let mut pools = self.0.pools.lock();
                let idle = pools.general_idle(&g.key);
                let building = pools.building.get(&g.key).copied().unwrap_or(0);
                // Surplus above the target expires after a while.
                let mut surplus = Vec::new();
                if idle > target {
                    if let Some(list) = pools.general.get_mut(&g.key) {
                        let extra = (idle - target) as usize;
                        let mut i = 0;
                        while surplus.len() < extra && i < list.len() {
                            if list[i].created.elapsed() >= SURPLUS_TTL {
                                surplus.push(list.remove(i));
                            } else {
                                i += 1;
                            }
                        }
                    }
                }
                (idle + building, surplus)
            };
            for u in surplus {
                self.0
                    .metrics
                    .evictions
                    .with_label_values(&["general-surplus"])
                    .inc();
                u.destroy();
            }
            for _ in have..target {
                if !self.spawn_pooled_build(Slot::General(g.key.clone())) {
                    break;
                }
            }
        }
        self.0.pools.lock().general_target_total = total;
    }

    /// Starts building one pooled sandbox for `slot` in the background, its
    /// memory charged now; false if the memory budget has no room for it.
    fn spawn_pooled_build(&self, slot: Slot) -> bool {
        let key = slot.key().clone();
        let mb = u64::from(key.memory_class_mb);
        if self.0.memory_used.load(Ordering::Relaxed) + mb > self.0.config.memory_budget_mb {
            return false;
        }
        let charge = MemoryCharge::new(&self.0.memory_used, mb);
        *slot.building(&mut self.0.pools.lock()) += 1;
        let me = self.clone();
        tokio::spawn(async move {
            let built = me.build_unspecialised(key.clone(), charge).await;
            let mut pools = me.0.pools.lock();
            let building = slot.building(&mut pools);
            *building = building.saturating_sub(1);
            match built {
                Ok(u) if pools.closing => {
                    drop(pools);
                    u.destroy();
                }
                Ok(u) => {
                    me.0.metrics
                        .init_seconds
                        .with_label_values(&[&format!("build-{}", key.warmth().label())])
                        .observe(u.build.as_secs_f64());
                    match slot {
                        Slot::General(k) => pools.general.entry(k).or_default().push(u),
                        Slot::Dedicated(a, k) => pools.dedicated.entry((a, k)).or_default().push(u),
                    }
                    drop(pools);
                    me.0.released.notify_waiters();
                }
                Err(e) => {
                    tracing::warn!(pool = %key.label(), error = %e, "could not build a pooled sandbox")
                }
            }
        });
        true
    }

    /// Keeps each account's dedicated sub-pool at the size its capacity
    /// settings ask for (dedicated minimums are never evicted; a shrunk
    /// setting destroys the surplus).
    fn fill_dedicated(&self) {
        if self.0.cannot_isolate.is_some() {
            return;
        }
        let targets: Vec<((String, PoolKey), u32)> = self
            .0
            .dedicated
            .lock()
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        let surplus: Vec<_> = {
            let mut pools = self.0.pools.lock();
            let mut out = Vec::new();
            let keys: Vec<_> = pools.dedicated.keys().cloned().collect();
            for k in keys {
                let want = targets.iter().find(|(t, _)| *t == k).map_or(0, |(_, n)| *n) as usize;
                if let Some(list) = pools.dedicated.get_mut(&k) {
                    while list.len() > want {
                        if let Some(u) = list.pop() {
                            out.push(u);
                        }
                    }
                }
            }
            out
        };
        for u in surplus {
            self.0
                .metrics
                .evictions
                .with_label_values(&["dedicated-shrunk"])
                .inc();
            u.destroy();
        }
        for ((account, key), n) in targets {
            let have = {
                let pools = self.0.pools.lock();
                pools.dedicated_idle(&account, &key)
                    + pools
                        .dedicated_building
                        .get(&(account.clone(), key.clone()))
                        .copied()
                        .unwrap_or(0)
            };
            for _ in have..n {
                if !self.spawn_pooled_build(Slot::Dedicated(account.clone(), key.clone())) {
                    break;
                }
            }
        }
    }

    /// Keeps every provisioned-concurrency configuration at its requested
    /// number of function-warm sandboxes, and reports its status.
    fn fill_provisioned(&self) {
        if self.0.cannot_isolate.is_some() {
            return;
        }
        let configs: Vec<(ProvisionedKey, u32)> = self
            .0
            .provisioned
            .lock()
            .iter()
            .map(|(k, t)| (k.clone(), t.requested))
            .collect();
        // Configurations that went away: destroy their idle sandboxes and VMs.
        let gone = {
            let mut pools = self.0.pools.lock();
            let keys: Vec<_> = pools
                .provisioned_idle
                .keys()
                .filter(|k| !configs.iter().any(|(c, _)| c == *k))
                .cloned()
                .collect();
            let mut out = Vec::new();
            for k in keys {
                out.extend(pools.provisioned_idle.remove(&k).unwrap_or_default());
                pools.provisioned_owned.remove(&k);
            }
            let vms = pools.vm.sub.take_provisioned_where(|_, v| match &v.origin {
                Origin::Provisioned(k) => !configs.iter().any(|(c, _)| c == k),
                Origin::Active => false,
            });
            for v in &vms {
                if let Origin::Provisioned(k) = &v.origin {
                    pools.provisioned_owned.remove(k);
                }
            }
            (out, vms)
        };
        let (gone, gone_vms) = gone;
        for i in gone {
            i.destroy();
        }
        for v in gone_vms {
            drop(v.destroy());
        }
        for (key, requested) in configs {
            let (owned, building) = {
                let pools = self.0.pools.lock();
                (
                    pools.provisioned_owned.get(&key).copied().unwrap_or(0),
                    pools.provisioned_building.get(&key).copied().unwrap_or(0),
                )
            };
            if owned + building > requested {
                let extra = {
                    let mut pools = self.0.pools.lock();
                    let n = (owned + building - requested) as usize;
                    let list = pools.provisioned_idle.entry(key.clone()).or_default();
                    let take: Vec<_> = list.drain(..n.min(list.len())).collect();
                    let mut left = n - take.len();
                    let vms = pools.vm.sub.take_provisioned_where(|_, v| {
                        let pick = left > 0 && v.origin == Origin::Provisioned(key.clone());
                        if pick {
                            left -= 1;
                        }
                        pick
                    });
                    let taken = (take.len() + vms.len()) as u32;
                    if let Some(o) = pools.provisioned_owned.get_mut(&key) {
                        *o = o.saturating_sub(taken);
                    }
                    (take, vms)
                };
                let (extra, extra_vms) = extra;
                for i in extra {
                    i.destroy();
                }
                for v in extra_vms {
                    drop(v.destroy());
                }
            }
            for _ in (owned + building)..requested {
                *self
                    .0
                    .pools
                    .lock()
                    .provisioned_building
                    .entry(key.clone())
                    .or_default() += 1;
                let me = self.clone();
                let key = key.clone();
                tokio::spawn(async move { me.provision_one(key).await });
            }
        }
    }

    /// Builds one function-warm sandbox for a provisioned configuration.
    async fn provision_one(&self, key: ProvisionedKey) {
        let reg = self.0.registry.clone();
        let k = key.clone();
        let version = tokio::task::spawn_blocking(move || {
            reg.get_version(
                &k.account_id,
                &k.function_name,
                &VersionSelector::from_qualifier(Some(&k.qualifier)),
            )
        })
        .await;
        let result = match version {
            Ok(Ok(v)) => match self.vm_code(&v).await {
                Ok(Some(code)) => self
                    .build_vm_function_warm(&v, &code, Origin::Provisioned(key.clone()))
                    .await
                    .map(|v| Provisioned::Vm(Box::new(v))),
                Ok(None) => self
                    .provision_version(&key, &v)
                    .await
                    .map(|i| Provisioned::Sandbox(Box::new(i))),
                Err(e) => Err(e.message),
            },
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let (allocated, ready) = {
            let mut pools = self.0.pools.lock();
            if let Some(n) = pools.provisioned_building.get_mut(&key) {
                *n = n.saturating_sub(1);
            }
            match result {
                Ok(Provisioned::Sandbox(instance)) if pools.closing => {
                    instance.destroy();
                }
                Ok(Provisioned::Vm(v)) if pools.closing => {
                    drop(v.destroy());
                }
                Ok(Provisioned::Vm(v)) => {
                    let me = self.clone();
                    let k = key.clone();
                    tokio::spawn(async move { me.prime_resolved(&k).await });
                    *pools.provisioned_owned.entry(key.clone()).or_default() += 1;
                    if let Some(warm) = v.key.clone() {
                        pools.vm.sub.put_provisioned(warm, *v);
                    }
                }
                Ok(Provisioned::Sandbox(instance)) => {
                    // The first invocation on provisioned capacity should
                    // find the invoke path's view of the registry ready too.
                    let me = self.clone();
                    let k = key.clone();
                    tokio::spawn(async move { me.prime_resolved(&k).await });
                    *pools.provisioned_owned.entry(key.clone()).or_default() += 1;
                    pools
                        .provisioned_idle
                        .entry(key.clone())
                        .or_default()
                        .push(*instance);
                }
                Err(ref e) => {
                    tracing::warn!(function = %key.function_name, error = %e, "provisioning failed")
                }
            }
            let owned = pools.provisioned_owned.get(&key).copied().unwrap_or(0);
            let requested = self
                .0
                .provisioned
                .lock()
                .get(&key)
                .map_or(0, |t| t.requested);
            (owned, owned >= requested && requested > 0)
        };
        self.0.released.notify_waiters();
        let reg = self.0.registry.clone();
        let status = if ready {
            ProvisionedStatus::Ready
        } else {
            ProvisionedStatus::InProgress
        };
        let _ = tokio::task::spawn_blocking(move || {
            reg.set_provisioned_status(
                &key.account_id,
                &key.function_name,
                &key.qualifier,
                allocated,
                status,
                None,
            )
        })
        .await;
    }

    async fn provision_version(
        &self,
        key: &ProvisionedKey,
        v: &hearth_types::function::VersionRecord,
    ) -> Result<crate::instance::Instance, String> {
        self.build_function_warm(
            v,
            Origin::Provisioned(key.clone()),
            InitializationType::ProvisionedConcurrency,
        )
        .await
    }

    /// Builds a function-warm sandbox ahead of any request (provisioned
    /// concurrency, or a keep-alive policy's pre-warm): pooled warmth first,
    /// then specialised. Its invocations report no Init Duration.
    async fn build_function_warm(
        &self,
        v: &hearth_types::function::VersionRecord,
        origin: Origin,
        init_type: InitializationType,
    ) -> Result<crate::instance::Instance, String> {
        let class = hearth_pool::profile::memory_class_for(v.config.memory_size)
            .unwrap_or(v.config.memory_size);
        let family = crate::pools::family_of(&v.config.runtime);
        let pool = if representative_runtime(family).is_some() {
            PoolKey {
                family: family.to_owned(),
                memory_class_mb: class,
            }
        } else {
            PoolKey {
                family: crate::pools::SHELL.to_owned(),
                memory_class_mb: class,
            }
        };
        let charge = MemoryCharge::new(&self.0.memory_used, u64::from(class));
        let u = self.build_unspecialised(pool, charge).await?;
        let warm = WarmKey {
            account_id: v.account_id.clone(),
            function_name: v.function_name.clone(),
            version: v.version.clone(),
            revision_id: v.revision_id.clone(),
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        self.specialise(u, v, warm, init_type, origin, &request_id)
            .await
            .map(|mut i| {
                // Provisioned sandboxes are initialised before any request: the
                // invocations they serve report no Init Duration.
                i.init_duration = None;
                i
            })
            .map_err(|_| "the sandbox failed to initialise".to_owned())
    }

    /// Builds the function-warm sandboxes the keep-alive policy asks for
    /// (the hybrid histogram's pre-warm window), within the memory budget.
    fn prewarm(&self) {
        if self.0.cannot_isolate.is_some() {
            return;
        }
        let due = self.0.keepalive.lock().prewarm_due(self.now());
        for req in due {
            let mb = u64::from(req.memory_mb);
            if self.0.memory_used.load(Ordering::Relaxed) + mb > self.0.config.memory_budget_mb {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                let f = &req.function;
                let (account, name, version) = (
                    f.account().as_str().to_owned(),
                    f.name().to_owned(),
                    f.version().to_owned(),
                );
                let reg = me.0.registry.clone();
                let record = tokio::task::spawn_blocking(move || {
                    reg.get_version(
                        &account,
                        &name,
                        &VersionSelector::from_qualifier(Some(&version)),
                    )
                })
                .await;
                let Ok(Ok(v)) = record else { return };
                if let Ok(Some(code)) = me.vm_code(&v).await {
                    match me.build_vm_function_warm(&v, &code, Origin::Active).await {
                        Ok(vm) => {
                            let Some(key) = vm.key.clone() else { return };
                            let fv = crate::invoke::function_version(&key);
                            me.0.keepalive.lock().on_prewarmed(
                                hearth_pool::keepalive::IdleSandbox {
                                    id: vm.sid,
                                    function: &fv,
                                    memory_mb: vm.memory_mb,
                                    init_cost_ms: vm.init_cost_ms,
                                },
                                me.now(),
                            );
                            me.0.metrics
                                .placements
                                .with_label_values(&["prewarm"])
                                .inc();
                            me.0.pools.lock().vm.sub.put_idle(key, vm);
                            me.0.released.notify_waiters();
                        }
                        Err(e) => {
                            tracing::debug!(function = %f.name(), error = %e, "pre-warm failed")
                        }
                    }
                    return;
                }
                match me
                    .build_function_warm(&v, Origin::Active, InitializationType::OnDemand)
                    .await
                {
                    Ok(i) => {
                        let fv = crate::invoke::function_version(&i.key);
                        me.0.keepalive.lock().on_prewarmed(
                            hearth_pool::keepalive::IdleSandbox {
                                id: i.sid,
                                function: &fv,
                                memory_mb: i.memory_mb,
                                init_cost_ms: i.init_cost_ms,
                            },
                            me.now(),
                        );
                        me.0.metrics
                            .placements
                            .with_label_values(&["prewarm"])
                            .inc();
                        me.0.pools.lock().idle.put(i);
                        me.0.released.notify_waiters();
                    }
                    Err(e) => tracing::debug!(function = %f.name(), error = %e, "pre-warm failed"),
                }
            });
        }
    }

    fn publish_sizes(&self) {
        let m = &self.0.metrics;
        let pools = self.0.pools.lock();
        // Pools come and go (a deleted provisioned config, a shrunk
        // dedicated pool): start from no label sets each time.
        m.pool_size.reset();
        for g in &self.0.config.general_pools {
            m.pool_size
                .with_label_values(&["general", &g.key.label(), g.key.warmth().label(), ""])
                .set(i64::from(pools.general_idle(&g.key)));
        }
        m.pool_size
            .with_label_values(&["active", "", "function", ""])
            .set(pools.idle.len() as i64);
        for (k, list) in &pools.provisioned_idle {
            m.pool_size
                .with_label_values(&["dedicated", &k.function_name, "function", &k.account_id])
                .set(list.len() as i64);
        }
        // Every configured dedicated sub-pool, empty ones included.
        let dedicated: Vec<(String, PoolKey)> = self.0.dedicated.lock().keys().cloned().collect();
        for (account, key) in dedicated {
            m.pool_size
                .with_label_values(&["dedicated", &key.label(), key.warmth().label(), &account])
                .set(i64::from(pools.dedicated_idle(&account, &key)));
        }
        for (account, n) in &pools.queued {
            m.queue_depth
                .with_label_values(&[account])
                .set(i64::from(*n));
        }
    }
}
