//! The pool manager: off the request path, it keeps every pool at its target
//! and the node inside its memory budget.
//!
//! [`PoolManager::step`] is one deterministic pass over the inventory. It
//! returns [`PoolAction`]s for the supervisor to carry out, in this order:
//!
//! 1. replace dead idle sandboxes reported by health checks (a dead idle
//!    function-warm one is only dropped: its keep-alive decides, not the
//!    manager);
//! 2. expire what the keep-alive policy says has expired;
//! 3. expire general sandboxes unused for the sizer's TTL above its floor;
//! 4. evict (general surplus, then idle function-warm by keep-alive score,
//!    then dedicated surplus) while the budget is exceeded;
//! 5. provision dedicated minimums and provisioned concurrency (evicting
//!    for them if need be: they are promises);
//! 6. pre-warm what the keep-alive policy asks for, if it fits;
//! 7. refill each general pool up to its target, as far as the budget allows.
//!
//! Placement goes through [`PoolManager::place`] so that the sizers see
//! every draw and every cold start.

use crate::budget::{
    plan_evictions, DedicatedFloors, EvictionCandidates, EvictionPlan, EvictionReason, MemoryBudget,
};
use crate::clock::Millis;
use crate::ids::{AccountId, FunctionVersion, SandboxId};
use crate::inventory::{Inventory, PoolKind, WarmPoolKey};
use crate::keepalive::{KeepAlivePolicy, RemovalCause};
use crate::placement::{place, BudgetView, PlacementDecision, PlacementRequest};
use crate::policy::{CapacityMode, CapacityPolicy};
use crate::profile::RuntimeProfile;
use crate::sizing::{ForecastSample, PoolSizer, SizeBounds, SizerConfig};
use std::collections::{BTreeMap, HashSet};

/// One general pool: its key and bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneralPoolSpec {
    pub key: WarmPoolKey,
    pub min: u32,
    pub max: u32,
}

impl GeneralPoolSpec {
    pub fn runtime_warm(profile: &RuntimeProfile, min: u32, max: u32) -> Self {
        Self {
            key: WarmPoolKey::runtime_warm(profile),
            min,
            max,
        }
    }

    pub fn shell_warm(memory_class_mb: u32, min: u32, max: u32) -> Self {
        Self {
            key: WarmPoolKey::shell_warm(memory_class_mb),
            min,
            max,
        }
    }

    /// Defaults for a fresh node: runtime-warm 128 MB pools (min 2, max 32)
    /// for each given Python or Node runtime, and a shell-warm 128 MB pool
    /// (min 1, max 8) for everything else.
    pub fn defaults_for(runtimes: &[&str]) -> Vec<Self> {
        let mut pools: Vec<Self> = runtimes
            .iter()
            .map(|r| RuntimeProfile::new(*r, 128))
            .filter(RuntimeProfile::supports_runtime_warm)
            .map(|p| Self::runtime_warm(&p, 2, 32))
            .collect();
        pools.push(Self::shell_warm(128, 1, 8));
        pools
    }
}

/// Provisioned concurrency for one function version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedConcurrency {
    pub function: FunctionVersion,
    pub profile: RuntimeProfile,
    pub memory_mb: u32,
    pub count: u32,
}

/// The manager's configuration.
#[derive(Debug, Clone, Default)]
pub struct ManagerConfig {
    pub general: Vec<GeneralPoolSpec>,
    pub sizer: SizerConfig,
}

/// Why a sandbox is destroyed without memory pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireReason {
    /// Its keep-alive ran out.
    KeepAlive,
    /// A general sandbox unused for its pool's TTL, above the pool's floor.
    UnusedGeneral,
    /// Found dead while idle function-warm.
    Dead,
}

/// What the supervisor should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolAction {
    /// Destroy this dead sandbox and build one of the same kind and owner.
    Replace {
        id: SandboxId,
    },
    Expire {
        id: SandboxId,
        reason: ExpireReason,
    },
    Evict {
        id: SandboxId,
        reason: EvictionReason,
    },
    /// Build `count` dedicated sandboxes for `account`: unspecialised of
    /// `key`, or function-warm for `function` (with its memory).
    Provision {
        account: AccountId,
        key: WarmPoolKey,
        function: Option<(FunctionVersion, u32)>,
        count: u32,
    },
    /// Build a function-warm sandbox for `function` ahead of its next
    /// invocation, and report it with `on_prewarmed`.
    Prewarm {
        function: FunctionVersion,
        memory_mb: u32,
        init_cost_ms: u64,
    },
    /// Build `count` general sandboxes of `key`.
    Refill {
        key: WarmPoolKey,
        count: u32,
    },
}

/// Everything a step looks at besides the manager's own state.
#[derive(Debug, Clone, Copy)]
pub struct StepInputs<'a> {
    pub now: Millis,
    pub inventory: &'a Inventory,
    pub budget: MemoryBudget,
    /// Idle sandboxes health checks found dead.
    pub dead: &'a [SandboxId],
    pub accounts: &'a BTreeMap<AccountId, CapacityPolicy>,
    pub provisioned: &'a [ProvisionedConcurrency],
}

/// A general pool's state, for metrics and `hearth pools`.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolTarget {
    pub key: WarmPoolKey,
    pub min: u32,
    pub max: u32,
    pub target: u32,
    pub supply: u32,
    pub sizer: String,
    /// The last closed interval's forecast beside the actual demand.
    pub last_interval: Option<ForecastSample>,
}

/// The pool manager.
#[derive(Debug)]
pub struct PoolManager {
    specs: Vec<GeneralPoolSpec>,
    sizers: Vec<Box<dyn PoolSizer>>,
    targets: Vec<u32>,
}

impl PoolManager {
    pub fn new(cfg: &ManagerConfig, now: Millis) -> Self {
        Self {
            sizers: cfg.general.iter().map(|_| cfg.sizer.build(now)).collect(),
            targets: cfg.general.iter().map(|s| s.min).collect(),
            specs: cfg.general.clone(),
        }
    }

    /// The general sub-pool's size, which per-account shares are a fraction
    /// of: the sum of the pools' current targets.
    pub fn general_pool_size(&self) -> u32 {
        self.targets.iter().copied().fold(0u32, u32::saturating_add)
    }

    /// Current targets by pool key.
    pub fn general_targets(&self) -> BTreeMap<WarmPoolKey, u32> {
        self.specs
            .iter()
            .zip(&self.targets)
            .map(|(s, t)| (s.key.clone(), *t))
            .collect()
    }

    /// Every general pool's target, supply and forecast.
    pub fn pool_targets(&self, inventory: &Inventory) -> Vec<PoolTarget> {
        self.specs
            .iter()
            .zip(&self.targets)
            .zip(&self.sizers)
            .map(|((spec, target), sizer)| PoolTarget {
                key: spec.key.clone(),
                min: spec.min,
                max: spec.max,
                target: *target,
                supply: inventory.general_supply(&spec.key),
                sizer: sizer.name(),
                last_interval: sizer.last_interval(),
            })
            .collect()
    }

    fn spec_index(&self, key: &WarmPoolKey) -> Option<usize> {
        self.specs.iter().position(|s| &s.key == key)
    }

    /// The pool that would have served `profile`: its runtime-warm pool if
    /// there is one, else the shell-warm pool of its memory class.
    fn serving_pool(&self, profile: &RuntimeProfile) -> Option<usize> {
        let runtime = profile
            .supports_runtime_warm()
            .then(|| self.spec_index(&WarmPoolKey::runtime_warm(profile)))
            .flatten();
        runtime.or_else(|| self.spec_index(&WarmPoolKey::shell_warm(profile.memory_class_mb)))
    }

    /// Tells the sizers about a placement: a general draw is demand on its
    /// pool; a cold start of a bursting account is demand the pool missed.
    pub fn record_placement(
        &mut self,
        req: &PlacementRequest<'_>,
        decision: &PlacementDecision,
        mode: CapacityMode,
    ) {
        let pool = match decision {
            PlacementDecision::GeneralRuntime => {
                self.spec_index(&WarmPoolKey::runtime_warm(req.profile))
            }
            PlacementDecision::GeneralShell => {
                self.spec_index(&WarmPoolKey::shell_warm(req.profile.memory_class_mb))
            }
            PlacementDecision::Cold { .. } if mode == CapacityMode::Burst => {
                self.serving_pool(req.profile)
            }
            _ => None,
        };
        if let Some(i) = pool {
            if decision.is_cold() {
                self.sizers[i].record_cold_start(req.now);
            } else {
                self.sizers[i].record_draw(req.now);
            }
        }
    }

    /// Places one invocation (see [`crate::placement::place`]) against the
    /// inventory, and records the outcome for sizing. Evictable memory is
    /// only gathered when a cold start does not fit as it is.
    #[allow(clippy::too_many_arguments)]
    pub fn place(
        &mut self,
        req: &PlacementRequest<'_>,
        inventory: &Inventory,
        policy: &CapacityPolicy,
        budget: MemoryBudget,
        keepalive: &dyn KeepAlivePolicy,
        floors: &DedicatedFloors,
        account_queue_len: u32,
    ) -> PlacementDecision {
        let view = inventory.view(req, &self.general_targets(), account_queue_len);
        let mut bv = BudgetView {
            limit_mb: budget.limit_mb,
            used_mb: inventory.used_mb(),
            evictable_mb: 0,
        };
        let mut decision = place(req, &view, policy, &bv);
        if matches!(
            decision,
            PlacementDecision::Queue { .. } | PlacementDecision::Reject { .. }
        ) {
            bv.evictable_mb = self
                .candidates(inventory, keepalive, floors, req.now)
                .total_mb();
            decision = place(req, &view, policy, &bv);
        }
        self.record_placement(req, &decision, policy.mode);
        decision
    }

    fn candidates(
        &self,
        inventory: &Inventory,
        keepalive: &dyn KeepAlivePolicy,
        floors: &DedicatedFloors,
        now: Millis,
    ) -> EvictionCandidates {
        EvictionCandidates::gather(
            inventory,
            &self.general_targets(),
            &keepalive.eviction_order(now),
            floors,
        )
    }

    /// Plans evictions freeing `need_mb` (e.g. for a `Cold { evict_mb }`
    /// placement) and tells the keep-alive policy about them. The caller
    /// destroys the sandboxes.
    pub fn evict_for(
        &self,
        need_mb: u64,
        inventory: &Inventory,
        keepalive: &mut dyn KeepAlivePolicy,
        floors: &DedicatedFloors,
        now: Millis,
    ) -> EvictionPlan {
        let plan = plan_evictions(
            &self.candidates(inventory, &*keepalive, floors, now),
            need_mb,
        );
        for e in &plan.evictions {
            keepalive.on_removed(e.id, RemovalCause::Evicted, now);
        }
        plan
    }

    /// One pass of the pool manager (see the module docs for the order).
    pub fn step(
        &mut self,
        input: &StepInputs<'_>,
        keepalive: &mut dyn KeepAlivePolicy,
    ) -> Vec<PoolAction> {
        let now = input.now;
        let inv = input.inventory;
        let mut actions = Vec::new();
        let mut gone: HashSet<SandboxId> = HashSet::new();
        let mut used = inv.used_mb();

        // 1. Dead idle sandboxes.
        let mut dead: Vec<SandboxId> = input.dead.to_vec();
        dead.sort();
        dead.dedup();
        for id in dead {
            let Some(rec) = inv.get(id) else { continue };
            if rec.pool == PoolKind::Active {
                keepalive.on_removed(id, RemovalCause::Died, now);
                used -= u64::from(rec.memory_mb);
                gone.insert(id);
                actions.push(PoolAction::Expire {
                    id,
                    reason: ExpireReason::Dead,
                });
            } else {
                actions.push(PoolAction::Replace { id });
            }
        }

        // 2. Keep-alive expiry.
        for id in keepalive.expired(now) {
            let Some(rec) = inv.get(id) else { continue };
            if !rec.is_idle() || !gone.insert(id) {
                continue;
            }
            used -= u64::from(rec.memory_mb);
            actions.push(PoolAction::Expire {
                id,
                reason: ExpireReason::KeepAlive,
            });
        }

        // Targets, bounded by what the budget could hold.
        let free = input.budget.free_mb(used);
        for (i, spec) in self.specs.iter().enumerate() {
            let supply = inv.general_supply(&spec.key);
            let class = u64::from(spec.key.memory_class_mb.max(1));
            let cap = u64::from(supply) + free / class;
            let bounds = SizeBounds {
                min: spec.min,
                max: spec.max,
                budget_cap: u32::try_from(cap).unwrap_or(u32::MAX),
            };
            self.targets[i] = self.sizers[i].target(now, bounds);
        }

        // 3. Unused general sandboxes above the sizer's floor.
        for (i, spec) in self.specs.iter().enumerate() {
            let (ttl, floor) = self.sizers[i].unused_expiry(self.targets[i], spec.min);
            let supply = inv.general_supply(&spec.key);
            let surplus = supply.saturating_sub(floor) as usize;
            for id in inv.general_idle(&spec.key).into_iter().take(surplus) {
                let Some(since) = inv.idle_since(id) else {
                    continue;
                };
                if now.since(since) < ttl || !gone.insert(id) {
                    continue;
                }
                used -= u64::from(spec.key.memory_class_mb);
                actions.push(PoolAction::Expire {
                    id,
                    reason: ExpireReason::UnusedGeneral,
                });
            }
        }

        let floors = DedicatedFloors::from_policies(input.accounts, input.provisioned);

        // 4. Over budget (e.g. after the limit was lowered).
        if used > input.budget.limit_mb {
            let need = used - input.budget.limit_mb;
            used -= self.evict_into(need, inv, keepalive, &floors, now, &mut gone, &mut actions);
        }

        // 5. Dedicated minimums and provisioned concurrency.
        for (account, policy) in input.accounts {
            for (profile, cap) in &policy.dedicated {
                let alive = inv.dedicated_alive(account, profile.memory_class_mb);
                let need = cap.min.saturating_sub(alive);
                if need == 0 {
                    continue;
                }
                let key = if profile.supports_runtime_warm() {
                    WarmPoolKey::runtime_warm(profile)
                } else {
                    WarmPoolKey::shell_warm(profile.memory_class_mb)
                };
                let each = u64::from(profile.memory_class_mb);
                let count = self.make_room(
                    need,
                    each,
                    input.budget,
                    &mut used,
                    inv,
                    keepalive,
                    &floors,
                    now,
                    &mut gone,
                    &mut actions,
                );
                if count > 0 {
                    actions.push(PoolAction::Provision {
                        account: account.clone(),
                        key,
                        function: None,
                        count,
                    });
                }
            }
        }
        for pc in input.provisioned {
            let need = pc
                .count
                .saturating_sub(inv.dedicated_for_function(&pc.function));
            if need == 0 {
                continue;
            }
            let key = if pc.profile.supports_runtime_warm() {
                WarmPoolKey::runtime_warm(&pc.profile)
            } else {
                WarmPoolKey::shell_warm(pc.profile.memory_class_mb)
            };
            let each = u64::from(pc.memory_mb);
            let count = self.make_room(
                need,
                each,
                input.budget,
                &mut used,
                inv,
                keepalive,
                &floors,
                now,
                &mut gone,
                &mut actions,
            );
            if count > 0 {
                actions.push(PoolAction::Provision {
                    account: pc.function.account().clone(),
                    key,
                    function: Some((pc.function.clone(), pc.memory_mb)),
                    count,
                });
            }
        }

        // 6. Pre-warms, only into free memory.
        for req in keepalive.prewarm_due(now) {
            let mb = u64::from(req.memory_mb);
            if input.budget.free_mb(used) >= mb {
                used += mb;
                actions.push(PoolAction::Prewarm {
                    function: req.function,
                    memory_mb: req.memory_mb,
                    init_cost_ms: req.init_cost_ms,
                });
            }
        }

        // 7. Refills.
        for (i, spec) in self.specs.iter().enumerate() {
            let supply = inv.general_supply(&spec.key);
            let want = self.targets[i].saturating_sub(supply);
            let class = u64::from(spec.key.memory_class_mb.max(1));
            let fits = input.budget.free_mb(used) / class;
            let count = u32::try_from(u64::from(want).min(fits)).unwrap_or(0);
            if count > 0 {
                used += u64::from(count) * class;
                actions.push(PoolAction::Refill {
                    key: spec.key.clone(),
                    count,
                });
            }
        }
        actions
    }

    /// Evicts at least `need_mb` (as far as candidates allow), skipping
    /// sandboxes already leaving; returns the memory freed.
    #[allow(clippy::too_many_arguments)]
    fn evict_into(
        &self,
        need_mb: u64,
        inv: &Inventory,
        keepalive: &mut dyn KeepAlivePolicy,
        floors: &DedicatedFloors,
        now: Millis,
        gone: &mut HashSet<SandboxId>,
        actions: &mut Vec<PoolAction>,
    ) -> u64 {
        let mut cands = self.candidates(inv, &*keepalive, floors, now);
        for list in [
            &mut cands.general_surplus,
            &mut cands.idle_function_warm,
            &mut cands.dedicated_surplus,
        ] {
            list.retain(|c| !gone.contains(&c.id));
        }
        let plan = plan_evictions(&cands, need_mb);
        for e in &plan.evictions {
            gone.insert(e.id);
            keepalive.on_removed(e.id, RemovalCause::Evicted, now);
            actions.push(PoolAction::Evict {
                id: e.id,
                reason: e.reason,
            });
        }
        plan.freed_mb
    }

    /// How many of `need` sandboxes of `each_mb` can be built, evicting for
    /// the shortfall; updates `used`.
    #[allow(clippy::too_many_arguments)]
    fn make_room(
        &self,
        need: u32,
        each_mb: u64,
        budget: MemoryBudget,
        used: &mut u64,
        inv: &Inventory,
        keepalive: &mut dyn KeepAlivePolicy,
        floors: &DedicatedFloors,
        now: Millis,
        gone: &mut HashSet<SandboxId>,
        actions: &mut Vec<PoolAction>,
    ) -> u32 {
        let want_mb = u64::from(need) * each_mb;
        let free = budget.free_mb(*used);
        if free < want_mb {
            let freed = self.evict_into(want_mb - free, inv, keepalive, floors, now, gone, actions);
            *used -= freed.min(*used);
        }
        let fits = budget.free_mb(*used) / each_mb.max(1);
        let count = u32::try_from(u64::from(need).min(fits)).unwrap_or(0);
        *used += u64::from(count) * each_mb;
        count
    }
}

impl DedicatedFloors {
    /// The floors implied by account policies and provisioned concurrency.
    pub fn from_policies(
        accounts: &BTreeMap<AccountId, CapacityPolicy>,
        provisioned: &[ProvisionedConcurrency],
    ) -> Self {
        let mut floors = DedicatedFloors::default();
        for (account, policy) in accounts {
            for (profile, cap) in &policy.dedicated {
                *floors
                    .minimums
                    .entry((account.clone(), profile.memory_class_mb))
                    .or_default() += cap.min;
            }
        }
        for pc in provisioned {
            *floors.provisioned.entry(pc.function.clone()).or_default() += pc.count;
        }
        floors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::SandboxRecord;
    use crate::keepalive::{FixedTtl, IdleSandbox};
    use crate::policy::DedicatedCapacity;
    use crate::sizing::ForecastConfig;

    fn python() -> RuntimeProfile {
        RuntimeProfile::new("python3.11", 128)
    }

    fn manager(sizer: SizerConfig, min: u32, max: u32) -> PoolManager {
        PoolManager::new(
            &ManagerConfig {
                general: vec![GeneralPoolSpec::runtime_warm(&python(), min, max)],
                sizer,
            },
            Millis(0),
        )
    }

    fn inputs<'a>(
        now: Millis,
        inv: &'a Inventory,
        limit_mb: u64,
        accounts: &'a BTreeMap<AccountId, CapacityPolicy>,
    ) -> StepInputs<'a> {
        StepInputs {
            now,
            inventory: inv,
            budget: MemoryBudget::new(limit_mb),
            dead: &[],
            accounts,
            provisioned: &[],
        }
    }

    /// Carries out refills and expirations the way a supervisor would.
    fn apply(inv: &mut Inventory, actions: &[PoolAction], now: Millis) {
        for a in actions {
            match a {
                PoolAction::Refill { key, count } => {
                    for _ in 0..*count {
                        let id = inv.allocate_id();
                        inv.insert(SandboxRecord::general(id, key, now)).unwrap();
                    }
                }
                PoolAction::Expire { id, .. } | PoolAction::Evict { id, .. } => {
                    inv.remove(*id, now);
                }
                _ => {}
            }
        }
    }

    fn refills(actions: &[PoolAction]) -> u32 {
        actions
            .iter()
            .map(|a| match a {
                PoolAction::Refill { count, .. } => *count,
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn fills_to_the_minimum_then_refills_what_placement_draws() {
        let mut m = manager(SizerConfig::Fixed, 3, 10);
        let mut inv = Inventory::new();
        let mut ka = FixedTtl::new(600_000);
        let accounts = BTreeMap::new();
        let a = m.step(&inputs(Millis(0), &inv, 10_000, &accounts), &mut ka);
        assert_eq!(
            a,
            vec![PoolAction::Refill {
                key: WarmPoolKey::runtime_warm(&python()),
                count: 3
            }]
        );
        apply(&mut inv, &a, Millis(0));
        // Nothing more to do at target.
        assert!(m
            .step(&inputs(Millis(1), &inv, 10_000, &accounts), &mut ka)
            .is_empty());

        // Two draws.
        let f = FunctionVersion::new(AccountId::new("a"), "f", "1");
        let p = python();
        let policy = CapacityPolicy {
            general_share: 1.0,
            ..CapacityPolicy::default()
        };
        for t in [10, 20] {
            let req = PlacementRequest {
                function: &f,
                profile: &p,
                memory_mb: 128,
                now: Millis(t),
            };
            let d = m.place(
                &req,
                &inv,
                &policy,
                MemoryBudget::new(10_000),
                &ka,
                &DedicatedFloors::default(),
                0,
            );
            assert_eq!(d, PlacementDecision::GeneralRuntime);
            inv.take(&d, &req).unwrap();
        }
        let a = m.step(&inputs(Millis(30), &inv, 10_000, &accounts), &mut ka);
        assert_eq!(refills(&a), 2);
    }

    #[test]
    fn no_refill_beyond_max_or_budget() {
        let busy = SizerConfig::Forecast(ForecastConfig::default());
        let mut m = manager(busy, 0, 5);
        let mut inv = Inventory::new();
        let mut ka = FixedTtl::new(600_000);
        let accounts = BTreeMap::new();
        let f = FunctionVersion::new(AccountId::new("a"), "f", "1");
        let p = python();
        // Heavy demand: 50 cold starts a minute for 5 minutes.
        for i in 0..250u64 {
            let req = PlacementRequest {
                function: &f,
                profile: &p,
                memory_mb: 128,
                now: Millis(i * 1_200),
            };
            m.record_placement(
                &req,
                &PlacementDecision::Cold { evict_mb: 0 },
                CapacityMode::Burst,
            );
        }
        let now = Millis(300_000);
        let a = m.step(&inputs(now, &inv, 100_000, &accounts), &mut ka);
        assert_eq!(refills(&a), 5, "capped at max");
        apply(&mut inv, &a, now);
        assert_eq!(m.pool_targets(&inv)[0].target, 5);

        let mut m2 = manager(SizerConfig::Forecast(ForecastConfig::default()), 0, 100);
        m2.targets = m.targets.clone();
        for i in 0..250u64 {
            let req = PlacementRequest {
                function: &f,
                profile: &p,
                memory_mb: 128,
                now: Millis(i * 1_200),
            };
            m2.record_placement(
                &req,
                &PlacementDecision::Cold { evict_mb: 0 },
                CapacityMode::Burst,
            );
        }
        let empty = Inventory::new();
        // 3 × 128 MB fit in a 400 MB budget.
        let a = m2.step(&inputs(now, &empty, 400, &accounts), &mut ka);
        assert_eq!(refills(&a), 3, "capped by the budget");
        assert_eq!(m2.pool_targets(&empty)[0].target, 3);
    }

    #[test]
    fn dead_sandboxes_are_replaced() {
        let mut m = manager(SizerConfig::Fixed, 2, 2);
        let mut inv = Inventory::new();
        let mut ka = FixedTtl::new(600_000);
        let accounts = BTreeMap::new();
        let a = m.step(&inputs(Millis(0), &inv, 10_000, &accounts), &mut ka);
        apply(&mut inv, &a, Millis(0));
        let victim = inv.iter().next().unwrap().id;
        // An idle function-warm one that died is dropped, not rebuilt.
        let f = FunctionVersion::new(AccountId::new("a"), "f", "1");
        let p = python();
        let req = PlacementRequest {
            function: &f,
            profile: &p,
            memory_mb: 128,
            now: Millis(5),
        };
        inv.insert(SandboxRecord::prewarmed(SandboxId(99), &req))
            .unwrap();
        let dead = [victim, SandboxId(99), SandboxId(12345)];
        let step = StepInputs {
            dead: &dead,
            ..inputs(Millis(10), &inv, 10_000, &accounts)
        };
        let a = m.step(&step, &mut ka);
        assert_eq!(
            a,
            vec![
                PoolAction::Replace { id: victim },
                PoolAction::Expire {
                    id: SandboxId(99),
                    reason: ExpireReason::Dead
                }
            ]
        );
    }

    #[test]
    fn keepalive_expiry_and_unused_general_expiry() {
        let mut m = manager(SizerConfig::Fixed, 1, 4);
        let mut inv = Inventory::new();
        let mut ka = FixedTtl::new(1_000);
        let accounts = BTreeMap::new();
        let key = WarmPoolKey::runtime_warm(&python());
        for id in 1..=3 {
            inv.insert(SandboxRecord::general(SandboxId(id), &key, Millis(0)))
                .unwrap();
        }
        let f = FunctionVersion::new(AccountId::new("a"), "f", "1");
        let p = python();
        let req = PlacementRequest {
            function: &f,
            profile: &p,
            memory_mb: 128,
            now: Millis(0),
        };
        inv.insert(SandboxRecord::prewarmed(SandboxId(10), &req))
            .unwrap();
        ka.on_idle(
            IdleSandbox {
                id: SandboxId(10),
                function: &f,
                memory_mb: 128,
                init_cost_ms: 0,
            },
            Millis(0),
        );
        // At 1 s the function-warm one expires; the general surplus (target
        // 1) is not yet unused for its 2-minute TTL.
        let a = m.step(&inputs(Millis(1_000), &inv, 10_000, &accounts), &mut ka);
        assert_eq!(
            a,
            vec![PoolAction::Expire {
                id: SandboxId(10),
                reason: ExpireReason::KeepAlive
            }]
        );
        let a = m.step(&inputs(Millis(120_000), &inv, 10_000, &accounts), &mut ka);
        let expired: Vec<SandboxId> = a
            .iter()
            .filter_map(|x| match x {
                PoolAction::Expire {
                    id,
                    reason: ExpireReason::UnusedGeneral,
                } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(expired, vec![SandboxId(1), SandboxId(2)]);
    }

    #[test]
    fn over_budget_evicts_and_minimums_are_provisioned() {
        let mut m = manager(SizerConfig::Fixed, 0, 4);
        let mut inv = Inventory::new();
        let mut ka = FixedTtl::new(600_000);
        let key = WarmPoolKey::runtime_warm(&python());
        for id in 1..=4 {
            inv.insert(SandboxRecord::general(SandboxId(id), &key, Millis(id)))
                .unwrap();
        }
        let acct = AccountId::new("tenant");
        let mut policy = CapacityPolicy::default();
        policy
            .dedicated
            .insert(python(), DedicatedCapacity { min: 2, max: 4 });
        let accounts = BTreeMap::from([(acct.clone(), policy)]);
        // Budget of 4 sandboxes: the dedicated minimum of 2 displaces two
        // general surplus sandboxes (target 0), oldest first.
        let a = m.step(&inputs(Millis(10), &inv, 512, &accounts), &mut ka);
        assert_eq!(
            a,
            vec![
                PoolAction::Evict {
                    id: SandboxId(1),
                    reason: EvictionReason::GeneralSurplus
                },
                PoolAction::Evict {
                    id: SandboxId(2),
                    reason: EvictionReason::GeneralSurplus
                },
                PoolAction::Provision {
                    account: acct.clone(),
                    key: key.clone(),
                    function: None,
                    count: 2
                },
            ]
        );
        // Once provisioned, a smaller budget never evicts them.
        apply(&mut inv, &a, Millis(10));
        for id in [20, 21] {
            inv.insert(SandboxRecord::dedicated(
                SandboxId(id),
                acct.clone(),
                &key,
                None,
                Millis(10),
            ))
            .unwrap();
        }
        let a = m.step(&inputs(Millis(20), &inv, 128, &accounts), &mut ka);
        let evicted: Vec<SandboxId> = a
            .iter()
            .filter_map(|x| match x {
                PoolAction::Evict { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(evicted, vec![SandboxId(3), SandboxId(4)]);
    }

    #[test]
    fn provisioned_concurrency_is_built_function_warm() {
        let mut m = manager(SizerConfig::Fixed, 0, 0);
        let inv = Inventory::new();
        let mut ka = FixedTtl::new(600_000);
        let accounts = BTreeMap::new();
        let f = FunctionVersion::new(AccountId::new("a"), "f", "3");
        let pcs = [ProvisionedConcurrency {
            function: f.clone(),
            profile: python(),
            memory_mb: 100,
            count: 3,
        }];
        let step = StepInputs {
            provisioned: &pcs,
            ..inputs(Millis(0), &inv, 250, &accounts)
        };
        let a = m.step(&step, &mut ka);
        assert_eq!(
            a,
            vec![PoolAction::Provision {
                account: AccountId::new("a"),
                key: WarmPoolKey::runtime_warm(&python()),
                function: Some((f, 100)),
                count: 2
            }],
            "as many as the budget holds"
        );
    }

    #[test]
    fn steps_are_deterministic() {
        let run = || {
            let mut m = manager(SizerConfig::Forecast(ForecastConfig::default()), 1, 8);
            let mut inv = Inventory::new();
            let mut ka = FixedTtl::new(60_000);
            let accounts = BTreeMap::new();
            let mut log = Vec::new();
            for t in (0..600_000u64).step_by(7_000) {
                let a = m.step(&inputs(Millis(t), &inv, 2_000, &accounts), &mut ka);
                apply(&mut inv, &a, Millis(t));
                log.push(a);
            }
            log
        };
        assert_eq!(run(), run());
    }
}
