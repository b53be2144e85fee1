//! Greedy-Dual keep-alive from Fuerst and Sharma, "FaasCache: Keeping
//! Serverless Computing Alive with Greedy-Dual Caching" (ASPLOS 2021).
//!
//! Warm sandboxes are a cache. Each has priority
//! `clock + frequency × cost / size`, where cost is the function's cold-start
//! penalty (its init time), size its memory and frequency its invocation
//! count. Nothing expires: every sandbox is kept while memory allows, and
//! under pressure the lowest priority goes first and `clock` rises to that
//! priority, so sandboxes that have not been used since age relative to new
//! ones.
//!
//! As in the FaasCache simulator, a function's frequency counts its
//! invocations while it has sandboxes alive (it restarts from zero once the
//! last one is evicted), and a new priority is given to all of a function's
//! idle sandboxes whenever one of them returns.

use super::{IdleSandbox, KeepAlivePolicy, PrewarmRequest, RemovalCause};
use crate::clock::Millis;
use crate::ids::{FunctionVersion, SandboxId};
use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

/// A priority, ordered totally (priorities are finite and non-negative).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Priority(f64);

impl Eq for Priority {}

impl PartialOrd for Priority {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Priority {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[derive(Debug, Clone, Default)]
struct FunctionState {
    frequency: u64,
    /// Sandboxes alive that the policy has seen (idle or drawn again).
    alive: u32,
    idle: Vec<SandboxId>,
}

#[derive(Debug, Clone)]
struct Tracked {
    function: FunctionVersion,
    /// `Some` while idle.
    idle: Option<(Priority, Millis)>,
}

/// The Greedy-Dual keep-alive policy.
#[derive(Debug, Clone, Default)]
pub struct GreedyDual {
    clock: f64,
    functions: HashMap<FunctionVersion, FunctionState>,
    sandboxes: HashMap<SandboxId, Tracked>,
    /// Idle sandboxes by (priority, idle since, id): the first is evicted first.
    order: BTreeSet<(Priority, Millis, SandboxId)>,
}

impl GreedyDual {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current clock (the priority of the last eviction).
    pub fn clock(&self) -> f64 {
        self.clock
    }

    /// The priority of an idle sandbox.
    pub fn priority(&self, id: SandboxId) -> Option<f64> {
        self.sandboxes.get(&id)?.idle.map(|(p, _)| p.0)
    }

    fn set_idle(&mut self, id: SandboxId, priority: Priority, since: Millis) {
        if let Some(t) = self.sandboxes.get_mut(&id) {
            if let Some(old) = t.idle.replace((priority, since)) {
                self.order.remove(&(old.0, old.1, id));
            }
            self.order.insert((priority, since, id));
        }
    }

    fn leave_idle(&mut self, id: SandboxId) {
        let Some(t) = self.sandboxes.get_mut(&id) else {
            return;
        };
        if let Some((p, since)) = t.idle.take() {
            self.order.remove(&(p, since, id));
            if let Some(fs) = self.functions.get_mut(&t.function) {
                fs.idle.retain(|x| *x != id);
            }
        }
    }

    fn drop_sandbox(&mut self, id: SandboxId) -> Option<f64> {
        let priority = self.sandboxes.get(&id)?.idle.map(|(p, _)| p.0);
        self.leave_idle(id);
        let t = self.sandboxes.remove(&id)?;
        if let Some(fs) = self.functions.get_mut(&t.function) {
            fs.alive = fs.alive.saturating_sub(1);
            if fs.alive == 0 {
                self.functions.remove(&t.function);
            }
        }
        priority
    }
}

impl KeepAlivePolicy for GreedyDual {
    fn name(&self) -> String {
        "greedy-dual".to_owned()
    }

    fn on_invocation(&mut self, function: &FunctionVersion, _now: Millis) {
        self.functions
            .entry(function.clone())
            .or_default()
            .frequency += 1;
    }

    fn on_idle(&mut self, sandbox: IdleSandbox<'_>, now: Millis) {
        if let Entry::Vacant(slot) = self.sandboxes.entry(sandbox.id) {
            slot.insert(Tracked {
                function: sandbox.function.clone(),
                idle: None,
            });
            self.functions
                .entry(sandbox.function.clone())
                .or_default()
                .alive += 1;
        }
        let fs = self.functions.entry(sandbox.function.clone()).or_default();
        let frequency = fs.frequency.max(1) as f64;
        let size = f64::from(sandbox.memory_mb.max(1));
        let priority = Priority(self.clock + frequency * sandbox.init_cost_ms as f64 / size);
        if !fs.idle.contains(&sandbox.id) {
            fs.idle.push(sandbox.id);
        }
        // Every idle sandbox of the function takes the new priority.
        let clones: Vec<SandboxId> = fs.idle.clone();
        for id in clones {
            let since = if id == sandbox.id {
                now
            } else {
                self.sandboxes
                    .get(&id)
                    .and_then(|t| t.idle.map(|(_, s)| s))
                    .unwrap_or(now)
            };
            self.set_idle(id, priority, since);
        }
    }

    fn on_busy(&mut self, id: SandboxId, _now: Millis) {
        self.leave_idle(id);
    }

    fn on_removed(&mut self, id: SandboxId, cause: RemovalCause, _now: Millis) {
        let priority = self.drop_sandbox(id);
        if cause == RemovalCause::Evicted {
            if let Some(p) = priority {
                self.clock = self.clock.max(p);
            }
        }
    }

    /// Greedy-Dual never expires by time.
    fn expired(&mut self, _now: Millis) -> Vec<SandboxId> {
        Vec::new()
    }

    fn prewarm_due(&mut self, _now: Millis) -> Vec<PrewarmRequest> {
        Vec::new()
    }

    /// Lowest priority first; among equals, the longest idle.
    fn eviction_order(&self, _now: Millis) -> Vec<SandboxId> {
        self.order.iter().map(|(_, _, id)| *id).collect()
    }

    fn next_wakeup(&self) -> Option<Millis> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AccountId;

    fn func(name: &str) -> FunctionVersion {
        FunctionVersion::new(AccountId::new("a"), name, "1")
    }

    fn idle<'a>(id: u64, f: &'a FunctionVersion, mb: u32, cost: u64) -> IdleSandbox<'a> {
        IdleSandbox {
            id: SandboxId(id),
            function: f,
            memory_mb: mb,
            init_cost_ms: cost,
        }
    }

    #[test]
    fn priority_is_clock_plus_frequency_times_cost_over_size() {
        let (f, g) = (func("f"), func("g"));
        let mut p = GreedyDual::new();
        for _ in 0..3 {
            p.on_invocation(&f, Millis(0));
        }
        p.on_idle(idle(1, &f, 256, 512), Millis(10));
        assert_eq!(p.priority(SandboxId(1)), Some(3.0 * 512.0 / 256.0));
        p.on_invocation(&g, Millis(0));
        p.on_idle(idle(2, &g, 128, 128), Millis(20));
        assert_eq!(p.priority(SandboxId(2)), Some(1.0));
        assert_eq!(
            p.eviction_order(Millis(30)),
            vec![SandboxId(2), SandboxId(1)]
        );
        assert!(
            p.expired(Millis(u64::MAX)).is_empty(),
            "nothing expires by time"
        );
    }

    #[test]
    fn eviction_raises_the_clock_so_old_entries_age() {
        let (f, g, h) = (func("f"), func("g"), func("h"));
        let mut p = GreedyDual::new();
        p.on_invocation(&f, Millis(0));
        p.on_idle(idle(1, &f, 100, 100), Millis(0)); // priority 1
        p.on_invocation(&g, Millis(0));
        p.on_idle(idle(2, &g, 100, 500), Millis(0)); // priority 5
                                                     // Memory pressure: the lowest priority goes, the clock takes its value.
        let victim = p.eviction_order(Millis(1))[0];
        assert_eq!(victim, SandboxId(1));
        p.on_removed(victim, RemovalCause::Evicted, Millis(1));
        assert_eq!(p.clock(), 1.0);
        // A new sandbox now starts from the clock: 1 + 1 × 100/100 = 2.
        p.on_invocation(&h, Millis(2));
        p.on_idle(idle(3, &h, 100, 100), Millis(2));
        assert_eq!(p.priority(SandboxId(3)), Some(2.0));
        // Removal for other reasons does not move the clock.
        p.on_removed(SandboxId(2), RemovalCause::Died, Millis(3));
        assert_eq!(p.clock(), 1.0);
        // After f lost its last sandbox, its frequency restarts.
        p.on_invocation(&f, Millis(4));
        p.on_idle(idle(4, &f, 100, 100), Millis(4));
        assert_eq!(p.priority(SandboxId(4)), Some(2.0));
    }

    #[test]
    fn reuse_refreshes_every_idle_clone() {
        let f = func("f");
        let mut p = GreedyDual::new();
        p.on_invocation(&f, Millis(0));
        p.on_invocation(&f, Millis(0));
        p.on_idle(idle(1, &f, 100, 100), Millis(1));
        p.on_idle(idle(2, &f, 100, 100), Millis(2));
        assert_eq!(p.priority(SandboxId(1)), Some(2.0));
        p.on_busy(SandboxId(2), Millis(3));
        p.on_invocation(&f, Millis(3));
        p.on_idle(idle(2, &f, 100, 100), Millis(4));
        assert_eq!(p.priority(SandboxId(1)), Some(3.0));
        assert_eq!(p.priority(SandboxId(2)), Some(3.0));
        // Equal priorities: the longer idle goes first.
        assert_eq!(
            p.eviction_order(Millis(5)),
            vec![SandboxId(1), SandboxId(2)]
        );
    }
}
