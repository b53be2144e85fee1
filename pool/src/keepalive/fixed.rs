//! Fixed TTL: keep an idle sandbox for a fixed time after its last
//! invocation ended. The baseline every other policy must beat.

use super::{IdleSandbox, KeepAlivePolicy, PrewarmRequest, RemovalCause};
use crate::clock::{Millis, MS_PER_MINUTE, MS_PER_SECOND};
use crate::ids::{FunctionVersion, SandboxId};
use std::collections::{BTreeSet, HashMap};

/// Keeps each idle sandbox for `ttl_ms`; under pressure the least recently
/// used goes first.
#[derive(Debug, Clone)]
pub struct FixedTtl {
    ttl_ms: u64,
    deadline: HashMap<SandboxId, Millis>,
    by_deadline: BTreeSet<(Millis, SandboxId)>,
}

impl FixedTtl {
    pub fn new(ttl_ms: u64) -> Self {
        Self {
            ttl_ms,
            deadline: HashMap::new(),
            by_deadline: BTreeSet::new(),
        }
    }

    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    fn forget(&mut self, id: SandboxId) {
        if let Some(d) = self.deadline.remove(&id) {
            self.by_deadline.remove(&(d, id));
        }
    }
}

impl KeepAlivePolicy for FixedTtl {
    fn name(&self) -> String {
        if self.ttl_ms.is_multiple_of(MS_PER_MINUTE) {
            format!("fixed-ttl-{}m", self.ttl_ms / MS_PER_MINUTE)
        } else {
            format!("fixed-ttl-{}s", self.ttl_ms / MS_PER_SECOND)
        }
    }

    fn on_invocation(&mut self, _function: &FunctionVersion, _now: Millis) {}

    fn on_idle(&mut self, sandbox: IdleSandbox<'_>, now: Millis) {
        self.forget(sandbox.id);
        let d = now.plus(self.ttl_ms);
        self.deadline.insert(sandbox.id, d);
        self.by_deadline.insert((d, sandbox.id));
    }

    fn on_busy(&mut self, id: SandboxId, _now: Millis) {
        self.forget(id);
    }

    fn on_removed(&mut self, id: SandboxId, _cause: RemovalCause, _now: Millis) {
        self.forget(id);
    }

    /// Expires at exactly `idle_since + ttl`: kept while `now` is earlier.
    fn expired(&mut self, now: Millis) -> Vec<SandboxId> {
        let mut out = Vec::new();
        while let Some(&(d, id)) = self.by_deadline.first() {
            if d > now {
                break;
            }
            self.by_deadline.pop_first();
            self.deadline.remove(&id);
            out.push(id);
        }
        out
    }

    fn prewarm_due(&mut self, _now: Millis) -> Vec<PrewarmRequest> {
        Vec::new()
    }

    /// Least recently used first (the earliest deadline is the longest idle).
    fn eviction_order(&self, _now: Millis) -> Vec<SandboxId> {
        self.by_deadline.iter().map(|(_, id)| *id).collect()
    }

    fn next_wakeup(&self) -> Option<Millis> {
        self.by_deadline.first().map(|(d, _)| *d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AccountId;

    fn idle(id: u64, f: &FunctionVersion) -> IdleSandbox<'_> {
        IdleSandbox {
            id: SandboxId(id),
            function: f,
            memory_mb: 128,
            init_cost_ms: 100,
        }
    }

    #[test]
    fn expires_exactly_at_the_ttl() {
        let f = FunctionVersion::new(AccountId::new("a"), "f", "1");
        let mut p = FixedTtl::new(10 * MS_PER_MINUTE);
        p.on_idle(idle(1, &f), Millis(1_000));
        assert_eq!(p.next_wakeup(), Some(Millis(601_000)));
        assert!(p.expired(Millis(600_999)).is_empty(), "kept one ms before");
        assert_eq!(p.expired(Millis(601_000)), vec![SandboxId(1)]);
        assert!(p.expired(Millis(10_000_000)).is_empty(), "expired once");
        assert_eq!(p.next_wakeup(), None);
    }

    #[test]
    fn reuse_restarts_the_clock_and_busy_sandboxes_never_expire() {
        let f = FunctionVersion::new(AccountId::new("a"), "f", "1");
        let mut p = FixedTtl::new(1_000);
        p.on_idle(idle(1, &f), Millis(0));
        p.on_busy(SandboxId(1), Millis(900));
        assert!(p.expired(Millis(5_000)).is_empty());
        p.on_idle(idle(1, &f), Millis(5_000));
        assert!(p.expired(Millis(5_999)).is_empty());
        assert_eq!(p.expired(Millis(6_000)), vec![SandboxId(1)]);
    }

    #[test]
    fn evicts_least_recently_used_first() {
        let f = FunctionVersion::new(AccountId::new("a"), "f", "1");
        let mut p = FixedTtl::new(1_000);
        p.on_idle(idle(2, &f), Millis(50));
        p.on_idle(idle(1, &f), Millis(10));
        p.on_idle(idle(3, &f), Millis(30));
        assert_eq!(
            p.eviction_order(Millis(60)),
            vec![SandboxId(1), SandboxId(3), SandboxId(2)]
        );
        p.on_removed(SandboxId(3), RemovalCause::Evicted, Millis(60));
        assert_eq!(
            p.eviction_order(Millis(60)),
            vec![SandboxId(1), SandboxId(2)]
        );
        assert!(p.prewarm_due(Millis(1_000_000)).is_empty());
    }
}
