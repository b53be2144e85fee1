//! Per-account capacity policy: what happens when the account's dedicated
//! sub-pool is short.

use crate::profile::RuntimeProfile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The default share of the general sub-pool one account may hold, so that
/// one tenant's burst cannot starve the others.
pub const DEFAULT_GENERAL_SHARE: f64 = 0.5;

/// What placement does once the account's dedicated sub-pool is exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum CapacityMode {
    /// Use the general sub-pool (up to the account's share), then a cold
    /// start; when the node has no room either, reject.
    Burst,
    /// Skip the general sub-pool; cold start if the node has room, else wait
    /// in a bounded per-account queue until a sandbox frees or
    /// `max_wait_ms` passes.
    Wait {
        max_wait_ms: u64,
        max_queue_len: u32,
    },
    /// Skip the general sub-pool; cold start if the node has room, else 429.
    Reject,
}

/// An account's dedicated sub-pool for one profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedicatedCapacity {
    /// Sandboxes held for the account before any request; never evicted.
    pub min: u32,
    /// Upper bound of the account's dedicated sandboxes of this profile.
    pub max: u32,
}

/// An account's capacity policy (`hearth capacity set ACCOUNT ...`).
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityPolicy {
    pub mode: CapacityMode,
    /// Fraction of the general sub-pool's size this account may hold at once.
    pub general_share: f64,
    pub dedicated: BTreeMap<RuntimeProfile, DedicatedCapacity>,
}

impl Default for CapacityPolicy {
    fn default() -> Self {
        Self {
            mode: CapacityMode::Burst,
            general_share: DEFAULT_GENERAL_SHARE,
            dedicated: BTreeMap::new(),
        }
    }
}

/// Why a capacity policy is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("the general share must be between 0 and 1, not {0}")]
    ShareOutOfRange(f64),
    #[error("the dedicated minimum for {profile} ({min}) exceeds its maximum ({max})")]
    MinAboveMax {
        profile: RuntimeProfile,
        min: u32,
        max: u32,
    },
    #[error("a wait policy needs a positive maximum wait and queue length")]
    EmptyWait,
}

impl CapacityPolicy {
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !(0.0..=1.0).contains(&self.general_share) {
            return Err(PolicyError::ShareOutOfRange(self.general_share));
        }
        for (profile, d) in &self.dedicated {
            if d.min > d.max {
                return Err(PolicyError::MinAboveMax {
                    profile: profile.clone(),
                    min: d.min,
                    max: d.max,
                });
            }
        }
        if let CapacityMode::Wait {
            max_wait_ms,
            max_queue_len,
        } = self.mode
        {
            if max_wait_ms == 0 || max_queue_len == 0 {
                return Err(PolicyError::EmptyWait);
            }
        }
        Ok(())
    }

    /// How many general sandboxes this account may hold when the general
    /// sub-pool's size is `general_pool_size`: `ceil(share × size)`, so a
    /// positive share of a non-empty pool always allows at least one.
    pub fn general_share_limit(&self, general_pool_size: u32) -> u32 {
        let share = self.general_share.clamp(0.0, 1.0);
        let limit = (share * f64::from(general_pool_size)).ceil();
        // `limit` is within [0, general_pool_size], so the cast is exact.
        limit as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_burst_with_half_the_general_pool() {
        let p = CapacityPolicy::default();
        assert_eq!(p.mode, CapacityMode::Burst);
        assert_eq!(p.general_share_limit(10), 5);
        assert_eq!(p.general_share_limit(1), 1);
        assert_eq!(p.general_share_limit(0), 0);
        assert_eq!(p.general_share_limit(7), 4);
    }

    #[test]
    fn validation() {
        let mut p = CapacityPolicy {
            general_share: 1.5,
            ..CapacityPolicy::default()
        };
        assert_eq!(p.validate(), Err(PolicyError::ShareOutOfRange(1.5)));
        p.general_share = 0.25;
        p.dedicated.insert(
            RuntimeProfile::new("python3.11", 128),
            DedicatedCapacity { min: 3, max: 2 },
        );
        assert!(matches!(p.validate(), Err(PolicyError::MinAboveMax { .. })));
        p.dedicated.clear();
        p.mode = CapacityMode::Wait {
            max_wait_ms: 0,
            max_queue_len: 4,
        };
        assert_eq!(p.validate(), Err(PolicyError::EmptyWait));
        p.mode = CapacityMode::Reject;
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn mode_serialises_as_tagged() {
        let m: CapacityMode =
            serde_json::from_str(r#"{"mode":"wait","max_wait_ms":500,"max_queue_len":8}"#).unwrap();
        assert_eq!(
            m,
            CapacityMode::Wait {
                max_wait_ms: 500,
                max_queue_len: 8
            }
        );
    }
}
