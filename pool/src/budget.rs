//! The node's memory budget and the eviction planner.
//!
//! The budget is the sum of sandbox memory limits (cgroup limits), not
//! measured usage: a limit is a promise the node must be able to keep. Under
//! pressure idle sandboxes go in a fixed order:
//!
//! 1. general surplus — general sandboxes above their pool's target, oldest
//!    first (speculative capacity nobody asked for yet);
//! 2. idle function-warm sandboxes of the active pool, in the keep-alive
//!    policy's eviction order (lowest score first);
//! 3. dedicated sandboxes above their account's minimum, oldest first.
//!
//! Dedicated minimums (and provisioned concurrency) are never candidates.

use crate::clock::Millis;
use crate::ids::{AccountId, FunctionVersion, SandboxId};
use crate::inventory::{Inventory, PoolKind, WarmPoolKey};
use std::collections::{BTreeMap, HashMap};

/// The memory budget: the most the sum of sandbox limits may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    pub limit_mb: u64,
}

impl MemoryBudget {
    /// The default share of host RAM given to sandboxes; the rest is for the
    /// daemon, page cache and the host.
    pub const DEFAULT_HOST_FRACTION: f64 = 0.75;

    pub fn new(limit_mb: u64) -> Self {
        Self { limit_mb }
    }

    /// A fraction of host RAM (the caller reads the host's RAM; this crate
    /// does no I/O).
    pub fn from_host_ram(host_ram_mb: u64, fraction: f64) -> Self {
        let fraction = fraction.clamp(0.0, 1.0);
        // Rounded down: a budget a little under the fraction is the safe side.
        Self::new((host_ram_mb as f64 * fraction).floor() as u64)
    }

    pub fn free_mb(&self, used_mb: u64) -> u64 {
        self.limit_mb.saturating_sub(used_mb)
    }
}

/// Why a sandbox is evicted (the `reason` label of evictions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EvictionReason {
    GeneralSurplus,
    IdleFunctionWarm,
    DedicatedSurplus,
}

impl EvictionReason {
    pub fn label(self) -> &'static str {
        match self {
            EvictionReason::GeneralSurplus => "general-surplus",
            EvictionReason::IdleFunctionWarm => "idle-function-warm",
            EvictionReason::DedicatedSurplus => "dedicated-surplus",
        }
    }
}

/// An idle sandbox that may be evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: SandboxId,
    pub memory_mb: u32,
}

/// Eviction candidates, each list already in its own order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvictionCandidates {
    pub general_surplus: Vec<Candidate>,
    pub idle_function_warm: Vec<Candidate>,
    pub dedicated_surplus: Vec<Candidate>,
}

/// What protects dedicated sandboxes from eviction.
#[derive(Debug, Clone, Default)]
pub struct DedicatedFloors {
    /// Per account and memory class: the dedicated minimum.
    pub minimums: HashMap<(AccountId, u32), u32>,
    /// Per function version: provisioned concurrency.
    pub provisioned: HashMap<FunctionVersion, u32>,
}

impl EvictionCandidates {
    /// Gathers candidates from the inventory. `general_targets` gives each
    /// general pool's target (pools without one have no surplus protection:
    /// target 0); `keepalive_order` is the keep-alive policy's eviction order
    /// of idle function-warm sandboxes.
    pub fn gather(
        inventory: &Inventory,
        general_targets: &BTreeMap<WarmPoolKey, u32>,
        keepalive_order: &[SandboxId],
        floors: &DedicatedFloors,
    ) -> Self {
        let mut general_surplus = Vec::new();
        let mut general_keys: Vec<WarmPoolKey> = inventory
            .iter()
            .filter(|r| r.pool == PoolKind::General && r.is_idle())
            .filter_map(|r| r.warm_pool_key())
            .collect();
        general_keys.sort();
        general_keys.dedup();
        for key in general_keys {
            let target = general_targets.get(&key).copied().unwrap_or(0);
            let supply = inventory.general_supply(&key);
            let surplus = supply.saturating_sub(target) as usize;
            general_surplus.extend(
                inventory
                    .general_idle(&key)
                    .into_iter()
                    .take(surplus)
                    .filter_map(|id| candidate(inventory, id)),
            );
        }

        let idle_function_warm = keepalive_order
            .iter()
            .filter(|id| {
                inventory
                    .get(**id)
                    .is_some_and(|r| r.pool == PoolKind::Active && r.is_idle())
            })
            .filter_map(|id| candidate(inventory, *id))
            .collect();

        // Dedicated: oldest idle first, only while the account stays above
        // its minimum (and each provisioned function above its count).
        let mut idle_dedicated: Vec<(Millis, SandboxId)> = inventory
            .iter()
            .filter(|r| r.pool == PoolKind::Dedicated)
            .filter_map(|r| inventory.idle_since(r.id).map(|s| (s, r.id)))
            .collect();
        idle_dedicated.sort();
        let mut alive: HashMap<(AccountId, u32), u32> = HashMap::new();
        let mut provisioned_alive: HashMap<FunctionVersion, u32> = HashMap::new();
        let mut dedicated_surplus = Vec::new();
        for (_, id) in idle_dedicated {
            let Some(rec) = inventory.get(id) else {
                continue;
            };
            let Some(account) = rec.account() else {
                continue;
            };
            let key = (account.clone(), rec.memory_class_mb);
            let left = alive
                .entry(key.clone())
                .or_insert_with(|| inventory.dedicated_alive(account, rec.memory_class_mb));
            let floor = floors.minimums.get(&key).copied().unwrap_or(0);
            if *left <= floor {
                continue;
            }
            if let Some(f) = &rec.function {
                let p_left = provisioned_alive
                    .entry(f.clone())
                    .or_insert_with(|| inventory.dedicated_for_function(f));
                if *p_left <= floors.provisioned.get(f).copied().unwrap_or(0) {
                    continue;
                }
                *p_left -= 1;
            }
            *left -= 1;
            dedicated_surplus.push(Candidate {
                id,
                memory_mb: rec.memory_mb,
            });
        }
        Self {
            general_surplus,
            idle_function_warm,
            dedicated_surplus,
        }
    }

    pub fn total_mb(&self) -> u64 {
        self.general_surplus
            .iter()
            .chain(&self.idle_function_warm)
            .chain(&self.dedicated_surplus)
            .map(|c| u64::from(c.memory_mb))
            .sum()
    }
}

fn candidate(inventory: &Inventory, id: SandboxId) -> Option<Candidate> {
    inventory.get(id).map(|r| Candidate {
        id,
        memory_mb: r.memory_mb,
    })
}

/// One planned eviction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eviction {
    pub id: SandboxId,
    pub memory_mb: u32,
    pub reason: EvictionReason,
}

/// The planner's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvictionPlan {
    pub evictions: Vec<Eviction>,
    pub freed_mb: u64,
    /// What could not be freed (zero when the need is met).
    pub shortfall_mb: u64,
}

/// Chooses idle sandboxes to free at least `need_mb`, in the budget's
/// order, stopping as soon as the need is met.
pub fn plan_evictions(candidates: &EvictionCandidates, need_mb: u64) -> EvictionPlan {
    let mut plan = EvictionPlan::default();
    let ordered = candidates
        .general_surplus
        .iter()
        .map(|c| (c, EvictionReason::GeneralSurplus))
        .chain(
            candidates
                .idle_function_warm
                .iter()
                .map(|c| (c, EvictionReason::IdleFunctionWarm)),
        )
        .chain(
            candidates
                .dedicated_surplus
                .iter()
                .map(|c| (c, EvictionReason::DedicatedSurplus)),
        );
    for (c, reason) in ordered {
        if plan.freed_mb >= need_mb {
            break;
        }
        plan.freed_mb += u64::from(c.memory_mb);
        plan.evictions.push(Eviction {
            id: c.id,
            memory_mb: c.memory_mb,
            reason,
        });
    }
    plan.shortfall_mb = need_mb.saturating_sub(plan.freed_mb);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::SandboxRecord;
    use crate::placement::PlacementRequest;
    use crate::profile::RuntimeProfile;

    fn c(id: u64, mb: u32) -> Candidate {
        Candidate {
            id: SandboxId(id),
            memory_mb: mb,
        }
    }

    #[test]
    fn evicts_in_order_and_stops_when_enough() {
        let cands = EvictionCandidates {
            general_surplus: vec![c(1, 128), c(2, 128)],
            idle_function_warm: vec![c(3, 512), c(4, 256)],
            dedicated_surplus: vec![c(5, 1024)],
        };
        let plan = plan_evictions(&cands, 300);
        let ids: Vec<u64> = plan.evictions.iter().map(|e| e.id.0).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(plan.freed_mb, 768);
        assert_eq!(plan.shortfall_mb, 0);
        assert_eq!(plan.evictions[0].reason, EvictionReason::GeneralSurplus);
        assert_eq!(plan.evictions[2].reason, EvictionReason::IdleFunctionWarm);

        let plan = plan_evictions(&cands, 10_000);
        assert_eq!(plan.evictions.len(), 5);
        assert_eq!(plan.evictions[4].reason, EvictionReason::DedicatedSurplus);
        assert_eq!(plan.shortfall_mb, 10_000 - 2_048);
        assert!(plan_evictions(&cands, 0).evictions.is_empty());
    }

    #[test]
    fn budget_from_host_ram() {
        assert_eq!(MemoryBudget::from_host_ram(24_576, 0.75).limit_mb, 18_432);
        assert_eq!(MemoryBudget::new(100).free_mb(120), 0);
    }

    #[test]
    fn gathering_protects_targets_and_dedicated_minimums() {
        let mut inv = Inventory::new();
        let p = RuntimeProfile::new("python3.11", 128);
        let key = WarmPoolKey::runtime_warm(&p);
        // Three general sandboxes, target 1: the two oldest are surplus.
        for (id, t) in [(1, 10), (2, 20), (3, 30)] {
            inv.insert(SandboxRecord::general(SandboxId(id), &key, Millis(t)))
                .unwrap();
        }
        // An idle function-warm sandbox in the active pool.
        let acct = AccountId::new("a");
        let f = FunctionVersion::new(acct.clone(), "f", "1");
        let req = PlacementRequest {
            function: &f,
            profile: &p,
            memory_mb: 128,
            now: Millis(0),
        };
        inv.insert(SandboxRecord::prewarmed(SandboxId(4), &req))
            .unwrap();
        // Two dedicated sandboxes with minimum 1, and one provisioned
        // function-warm sandbox with provisioned concurrency 1.
        inv.insert(SandboxRecord::dedicated(
            SandboxId(5),
            acct.clone(),
            &key,
            None,
            Millis(1),
        ))
        .unwrap();
        inv.insert(SandboxRecord::dedicated(
            SandboxId(6),
            acct.clone(),
            &key,
            None,
            Millis(2),
        ))
        .unwrap();
        let g = FunctionVersion::new(acct.clone(), "g", "7");
        inv.insert(SandboxRecord::dedicated(
            SandboxId(7),
            acct.clone(),
            &key,
            Some((g.clone(), 128)),
            Millis(0),
        ))
        .unwrap();

        let targets = BTreeMap::from([(key.clone(), 1)]);
        let mut floors = DedicatedFloors::default();
        floors.minimums.insert((acct.clone(), 128), 2);
        floors.provisioned.insert(g, 1);
        let cands = EvictionCandidates::gather(&inv, &targets, &[SandboxId(4)], &floors);
        assert_eq!(cands.general_surplus, vec![c(1, 128), c(2, 128)]);
        assert_eq!(cands.idle_function_warm, vec![c(4, 128)]);
        // Three dedicated alive, minimum two: one may go, but the provisioned
        // one is protected, so the oldest unspecialised one is the candidate.
        assert_eq!(cands.dedicated_surplus, vec![c(5, 128)]);

        // Even asked for everything, the planner never reaches a dedicated
        // minimum or a provisioned sandbox.
        let plan = plan_evictions(&cands, u64::MAX);
        let ids: Vec<SandboxId> = plan.evictions.iter().map(|e| e.id).collect();
        assert!(!ids.contains(&SandboxId(6)) && !ids.contains(&SandboxId(7)));
        assert!(!ids.contains(&SandboxId(3)), "general target kept");

        floors.minimums.insert((acct, 128), 3);
        let cands = EvictionCandidates::gather(&inv, &targets, &[], &floors);
        assert!(cands.dedicated_surplus.is_empty());
        assert_eq!(cands.total_mb(), 256);
    }
}
