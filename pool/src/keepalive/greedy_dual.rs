//! Greedy-Dual keep-alive from Fuerst and Sharma, "FaasCache: Keeping
//! Serverless Computing Alive with Greedy-Dual Caching" (ASPLOS 2021).
//!
//! Warm sandboxes are a cache. Each has priority
//! `clock + frequency × cost / size`, where cost is its cold-start penalty
//! (the function's init time), size its memory and frequency its invocation
//! count. Nothing expires: every sandbox is kept while memory allows, and
//! under pressure the lowest priority goes first and `clock` rises to that
//! priority, so sandboxes that have not been used since age relative to
//! those used after.
//!
//! As the paper describes (and POLICIES.md words it), clock and frequency
//! are per sandbox: a sandbox's priority is computed when it is last used,
//! with the clock of that moment and the number of invocations it has
//! served. (The FaasCache simulator instead sums the frequency of all of a
//! function's sandboxes and gives every clone the new priority; with many
//! concurrent sandboxes of one busy function that keeps its stale scale-out
//! copies forever, so the per-sandbox reading is used here.)

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

#[derive(Debug, Clone)]
struct Tracked {
    /// Invocations this sandbox has served.
    frequency: u64,
    /// `Some` while idle.
    idle: Option<(Priority, Millis)>,
}

/// The Greedy-Dual keep-alive policy.
#[derive(Debug, Clone, Default)]
pub struct GreedyDual {
    clock: f64,
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

    fn leave_idle(&mut self, id: SandboxId) {
        if let Some(t) = self.sandboxes.get_mut(&id) {
            if let Some((p, since)) = t.idle.take() {
                self.order.remove(&(p, since, id));
            }
        }
    }

    fn set_idle(&mut self, sandbox: IdleSandbox<'_>, now: Millis, served: u64) {
        self.leave_idle(sandbox.id);
        let t = match self.sandboxes.entry(sandbox.id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Tracked {
                frequency: 0,
                idle: None,
            }),
        };
        t.frequency += served;
        let size = f64::from(sandbox.memory_mb.max(1));
        let priority =
            Priority(self.clock + t.frequency as f64 * sandbox.init_cost_ms as f64 / size);
        t.idle = Some((priority, now));
        self.order.insert((priority, now, sandbox.id));
    }
}

impl KeepAlivePolicy for GreedyDual {
    fn name(&self) -> String {
        "greedy-dual".to_owned()
    }

    fn on_invocation(&mut self, _function: &FunctionVersion, _now: Millis) {}

    /// The sandbox served one more invocation: its priority is recomputed
    /// with the current clock.
    fn on_idle(&mut self, sandbox: IdleSandbox<'_>, now: Millis) {
        self.set_idle(sandbox, now, 1);
    }

    /// Built ahead of demand, it has served nothing yet.
    fn on_prewarmed(&mut self, sandbox: IdleSandbox<'_>, now: Millis) {
        self.set_idle(sandbox, now, 0);
    }

    fn on_busy(&mut self, id: SandboxId, _now: Millis) {
        self.leave_idle(id);
    }

    fn on_removed(&mut self, id: SandboxId, cause: RemovalCause, _now: Millis) {
        let priority = self.priority(id);
        self.leave_idle(id);
        self.sandboxes.remove(&id);
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

    fn idle(id: u64, f: &FunctionVersion, mb: u32, cost: u64) -> IdleSandbox<'_> {
        IdleSandbox {
            id: SandboxId(id),
            function: f,
            memory_mb: mb,
            init_cost_ms: cost,
        }
    }

    /// Serves `n` invocations with sandbox `id`.
    fn serve(p: &mut GreedyDual, s: IdleSandbox<'_>, n: u64, t: Millis) {
        for _ in 0..n {
            p.on_invocation(s.function, t);
            p.on_busy(s.id, t);
            p.on_idle(s, t);
        }
    }

    #[test]
    fn priority_is_clock_plus_frequency_times_cost_over_size() {
        let (f, g) = (func("f"), func("g"));
        let mut p = GreedyDual::new();
        serve(&mut p, idle(1, &f, 256, 512), 3, Millis(10));
        assert_eq!(p.priority(SandboxId(1)), Some(3.0 * 512.0 / 256.0));
        serve(&mut p, idle(2, &g, 128, 128), 1, Millis(20));
        assert_eq!(p.priority(SandboxId(2)), Some(1.0));
        assert_eq!(
            p.eviction_order(Millis(30)),
            vec![SandboxId(2), SandboxId(1)]
        );
        assert!(
            p.expired(Millis(u64::MAX)).is_empty(),
            "nothing expires by time"
        );
        assert_eq!(p.next_wakeup(), None);
    }

    #[test]
    fn eviction_raises_the_clock_so_old_entries_age() {
        let (f, g, h) = (func("f"), func("g"), func("h"));
        let mut p = GreedyDual::new();
        serve(&mut p, idle(1, &f, 100, 100), 1, Millis(0)); // priority 1
        serve(&mut p, idle(2, &g, 100, 150), 1, Millis(0)); // priority 1.5
                                                            // Memory pressure: the lowest priority goes, the clock takes its value.
        let victim = p.eviction_order(Millis(1))[0];
        assert_eq!(victim, SandboxId(1));
        p.on_removed(victim, RemovalCause::Evicted, Millis(1));
        assert_eq!(p.clock(), 1.0);
        // A sandbox used now starts from the clock: 1 + 1 × 100/100 = 2, and
        // outranks g's, used before the clock moved.
        serve(&mut p, idle(3, &h, 100, 100), 1, Millis(2));
        assert_eq!(p.priority(SandboxId(3)), Some(2.0));
        assert_eq!(
            p.eviction_order(Millis(3)),
            vec![SandboxId(2), SandboxId(3)]
        );
        // Removal for other reasons does not move the clock.
        p.on_removed(SandboxId(2), RemovalCause::Died, Millis(3));
        assert_eq!(p.clock(), 1.0);
    }

    #[test]
    fn each_sandbox_keeps_its_own_clock_and_frequency() {
        let f = func("f");
        let mut p = GreedyDual::new();
        serve(&mut p, idle(1, &f, 100, 100), 5, Millis(1));
        serve(&mut p, idle(2, &f, 100, 100), 1, Millis(2));
        assert_eq!(p.priority(SandboxId(1)), Some(5.0));
        assert_eq!(p.priority(SandboxId(2)), Some(1.0));
        // A stale scale-out copy goes before the busy one.
        assert_eq!(p.eviction_order(Millis(3))[0], SandboxId(2));
        // A pre-warmed sandbox has served nothing: priority = clock.
        p.on_prewarmed(idle(3, &f, 100, 100), Millis(4));
        assert_eq!(p.priority(SandboxId(3)), Some(0.0));
    }
}
