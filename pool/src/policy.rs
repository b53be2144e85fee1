//! Per-account capacity policy: what happens when the account's dedicated
//! sub-pool is short.

use crate::profile::RuntimeProfile;
use crate::share::ShareStanding;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The default share of the general sub-pool one account may draw while
/// another account contends for it, so that one tenant's burst cannot starve
/// the others (see [`crate::share`]).
pub const DEFAULT_GENERAL_SHARE: f64 = 0.5;

/// What placement does once the account's dedicated sub-pool is exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum CapacityMode {
    /// Use the general sub-pool (within the account's share when another
    /// account contends for it), then a cold
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
    /// Fraction of the general sub-pool this account may draw within the
    /// share window while another account contends for it.
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

    /// `ceil(share × n)`: a positive share of a positive count is at least
    /// one.
    fn share_of(&self, n: u32) -> u32 {
        let share = self.general_share.clamp(0.0, 1.0);
        // Within [0, n], so the cast is exact.
        (share * f64::from(n)).ceil() as u32
    }

    /// How many draws within the share window this account is guaranteed
    /// under contention when the general sub-pool's size is
    /// `general_pool_size`: `ceil(share × size)`.
    pub fn general_share_limit(&self, general_pool_size: u32) -> u32 {
        self.share_of(general_pool_size)
    }

    /// Whether this account is within its general share. Uncontended,
    /// always. Contended, while its draws within the window are below
    /// `ceil(share × size)` or below its share of everything drawn in the
    /// window counting this draw, whichever allows more.
    pub fn within_general_share(&self, standing: &ShareStanding, general_pool_size: u32) -> bool {
        if !standing.contended {
            return true;
        }
        let of_drawn = self.share_of(standing.all_draws.saturating_add(1));
        standing.own_draws < self.general_share_limit(general_pool_size).max(of_drawn)
    }

    /// How many idle sandboxes of a general pool whose target is `target`
    /// an account beyond its share must leave for the others:
    /// `ceil((1 − share) × target)`, at least one while the share is below
    /// one. Beyond its share an account still draws what the pool holds
    /// above this (the pool is not left idle while it cold-starts), but the
    /// last ones stay for the tenants within theirs.
    pub fn general_reserve(&self, target: u32) -> u32 {
        let share = self.general_share.clamp(0.0, 1.0);
        if share >= 1.0 || target == 0 {
            return 0;
        }
        // Within [0, target], so the cast is exact.
        (((1.0 - share) * f64::from(target)).ceil() as u32).max(1)
    }

    /// How many of a general pool's `idle` sandboxes (target `target`) this
    /// account may draw from, given whether it is within its share.
    pub fn general_drawable(&self, within_share: bool, idle: u32, target: u32) -> u32 {
        if within_share {
            idle
        } else {
            idle.saturating_sub(self.general_reserve(target))
        }
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
    fn the_share_applies_only_under_contention() {
        let p = CapacityPolicy::default();
        let lone = ShareStanding {
            own_draws: 40,
            all_draws: 40,
            contended: false,
        };
        assert!(p.within_general_share(&lone, 4));
        let noisy = ShareStanding {
            contended: true,
            ..lone
        };
        assert!(!p.within_general_share(&noisy, 4));
        // Guaranteed ceil(share × size) draws per window under contention.
        let mut s = ShareStanding {
            own_draws: 1,
            all_draws: 1,
            contended: true,
        };
        assert!(p.within_general_share(&s, 4));
        s.own_draws = 2;
        s.all_draws = 2;
        assert!(!p.within_general_share(&s, 4));
        // ...or its share of what is drawn: 5 of 12 drawn, the 13th is
        // within half.
        s.own_draws = 5;
        s.all_draws = 12;
        assert!(p.within_general_share(&s, 4));
        s.own_draws = 7;
        assert!(!p.within_general_share(&s, 4));
        // A quiet tenant's first draw is always allowed.
        let quiet = ShareStanding {
            own_draws: 0,
            all_draws: 30,
            contended: true,
        };
        assert!(p.within_general_share(&quiet, 4));
        let all = CapacityPolicy {
            general_share: 1.0,
            ..p
        };
        assert!(all.within_general_share(&noisy, 4));
    }

    #[test]
    fn beyond_its_share_an_account_leaves_a_reserve() {
        let p = CapacityPolicy::default();
        assert_eq!(
            (
                p.general_reserve(0),
                p.general_reserve(1),
                p.general_reserve(2),
                p.general_reserve(5)
            ),
            (0, 1, 1, 3)
        );
        assert_eq!(p.general_drawable(true, 2, 2), 2);
        assert_eq!(p.general_drawable(false, 2, 2), 1);
        assert_eq!(p.general_drawable(false, 1, 2), 0);
        let all = CapacityPolicy {
            general_share: 1.0,
            ..p
        };
        assert_eq!(all.general_drawable(false, 1, 2), 1);
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
