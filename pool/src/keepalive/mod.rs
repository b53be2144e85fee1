//! Keep-alive policies: how long an idle function-warm sandbox is kept, when
//! one is pre-warmed, and which goes first under memory pressure.
//!
//! A policy is a plain struct fed events and asked for decisions, so the
//! supervisor and the replayer drive the same code. The caller tells it:
//!
//! - [`KeepAlivePolicy::on_invocation`] when an invocation of a function arrives;
//! - [`KeepAlivePolicy::on_idle`] when a sandbox finishes and becomes idle
//!   function-warm in the active pool ([`KeepAlivePolicy::on_prewarmed`] when
//!   it was built by a pre-warm);
//! - [`KeepAlivePolicy::on_busy`] when an idle sandbox is drawn;
//! - [`KeepAlivePolicy::on_removed`] when a sandbox goes for any other reason
//!   (evicted, died, function deleted).
//!
//! and asks it [`KeepAlivePolicy::expired`] (destroy these now),
//! [`KeepAlivePolicy::prewarm_due`] (build these now),
//! [`KeepAlivePolicy::eviction_order`] (lowest score first) and
//! [`KeepAlivePolicy::next_wakeup`] (when to ask again).
//!
//! Policies are selected by [`KeepAliveConfig`].

mod fixed;
mod greedy_dual;
mod hybrid;

pub use fixed::FixedTtl;
pub use greedy_dual::GreedyDual;
pub use hybrid::{HybridHistogram, HybridHistogramConfig, IdlePattern, Windows};

use crate::clock::{Millis, MS_PER_MINUTE};
use crate::ids::{FunctionVersion, SandboxId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// An idle function-warm sandbox as a keep-alive policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct IdleSandbox<'a> {
    pub id: SandboxId,
    pub function: &'a FunctionVersion,
    pub memory_mb: u32,
    /// What a cold start of this function costs (its init time), for
    /// cost-aware policies.
    pub init_cost_ms: u64,
}

/// Why a sandbox left a policy's care other than by expiring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalCause {
    /// Chosen by the eviction planner under memory pressure.
    Evicted,
    /// Found dead by a health check.
    Died,
    /// Its function version changed or was deleted.
    Retired,
}

/// A function to pre-warm and the memory it will take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrewarmRequest {
    pub function: FunctionVersion,
    pub memory_mb: u32,
    pub init_cost_ms: u64,
}

/// A keep-alive policy. Object-safe: the pool manager holds a
/// `Box<dyn KeepAlivePolicy>` chosen by configuration.
pub trait KeepAlivePolicy: fmt::Debug + Send {
    /// A short name for reports (`fixed-ttl-10m`, `hybrid-histogram`, ...).
    fn name(&self) -> String;

    /// An invocation of `function` arrived (before placement).
    fn on_invocation(&mut self, function: &FunctionVersion, now: Millis);

    /// A sandbox finished an invocation and is idle function-warm.
    fn on_idle(&mut self, sandbox: IdleSandbox<'_>, now: Millis);

    /// A sandbox built by [`Self::prewarm_due`] is ready and idle.
    fn on_prewarmed(&mut self, sandbox: IdleSandbox<'_>, now: Millis) {
        self.on_idle(sandbox, now);
    }

    /// An idle sandbox was drawn for an invocation.
    fn on_busy(&mut self, id: SandboxId, now: Millis);

    /// A sandbox was removed for a reason other than [`Self::expired`].
    fn on_removed(&mut self, id: SandboxId, cause: RemovalCause, now: Millis);

    /// Idle sandboxes whose keep-alive has run out at `now`; the policy
    /// forgets them, the caller destroys them.
    fn expired(&mut self, now: Millis) -> Vec<SandboxId>;

    /// Functions to pre-warm at `now` (each is asked for once).
    fn prewarm_due(&mut self, now: Millis) -> Vec<PrewarmRequest>;

    /// Idle sandboxes the policy tracks, the first to evict first.
    fn eviction_order(&self, now: Millis) -> Vec<SandboxId>;

    /// The earliest time [`Self::expired`] or [`Self::prewarm_due`] would
    /// return something, if any.
    fn next_wakeup(&self) -> Option<Millis>;
}

/// The default fixed keep-alive: 10 minutes (AWS Lambda as observed, and
/// OpenWhisk's default).
pub const DEFAULT_TTL_MS: u64 = 10 * MS_PER_MINUTE;

/// Which keep-alive policy to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "kebab-case")]
pub enum KeepAliveConfig {
    FixedTtl { ttl_ms: u64 },
    HybridHistogram(HybridHistogramConfig),
    GreedyDual,
}

impl Default for KeepAliveConfig {
    fn default() -> Self {
        KeepAliveConfig::FixedTtl {
            ttl_ms: DEFAULT_TTL_MS,
        }
    }
}

impl KeepAliveConfig {
    pub fn build(&self) -> Box<dyn KeepAlivePolicy> {
        match self {
            KeepAliveConfig::FixedTtl { ttl_ms } => Box::new(FixedTtl::new(*ttl_ms)),
            KeepAliveConfig::HybridHistogram(c) => Box::new(HybridHistogram::new(c.clone())),
            KeepAliveConfig::GreedyDual => Box::new(GreedyDual::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_selects_a_policy() {
        let c: KeepAliveConfig =
            serde_json::from_str(r#"{"policy":"fixed-ttl","ttl_ms":60000}"#).unwrap();
        assert_eq!(c.build().name(), "fixed-ttl-1m");
        let c: KeepAliveConfig = serde_json::from_str(r#"{"policy":"greedy-dual"}"#).unwrap();
        assert_eq!(c.build().name(), "greedy-dual");
        let c: KeepAliveConfig =
            serde_json::from_str(r#"{"policy":"hybrid-histogram","cv_threshold":3.0}"#).unwrap();
        assert_eq!(c.build().name(), "hybrid-histogram");
        assert_eq!(KeepAliveConfig::default().build().name(), "fixed-ttl-10m");
    }
}
