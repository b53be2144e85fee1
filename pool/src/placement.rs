//! Placement: choosing where one invocation runs (ARCHITECTURE.md section 3).
//!
//! [`place`] is the whole decision, a pure function of counts the supervisor
//! holds ([`PoolView`]), the account's [`CapacityPolicy`] and the node's
//! memory ([`BudgetView`]). The order is the architecture's:
//!
//! 1. an idle function-warm sandbox of this function version in the active pool;
//! 2. the account's dedicated sub-pool: function-warm for this version first,
//!    then any unspecialised one (runtime- or shell-warm) that fits;
//! 3. if the policy is `burst`: the general sub-pool — all of it when no other
//!    account contends or the account is within its share, only what is
//!    above the others' reserve when it is beyond (see [`crate::share`]):
//!    runtime-warm for this profile (Python and Node), then
//!    shell-warm of this memory class (usable by every runtime);
//! 4. a cold start, if the node's memory budget allows (possibly after evicting
//!    idle sandboxes);
//! 5. otherwise `wait` (bounded per-account queue, with a deadline) or reject.
//!
//! The ownership rule lives here too: a sandbox serves one account in its
//! whole life ([`Owner::assign`]), and a released sandbox either stays with
//! its account as idle function-warm or is destroyed ([`on_release`]) —
//! there is no way back to the general sub-pool.

use crate::clock::Millis;
use crate::ids::{AccountId, FunctionVersion};
use crate::policy::{CapacityMode, CapacityPolicy};
use crate::profile::RuntimeProfile;
use crate::share::ShareStanding;

/// One invocation to place.
#[derive(Debug, Clone, Copy)]
pub struct PlacementRequest<'a> {
    pub function: &'a FunctionVersion,
    pub profile: &'a RuntimeProfile,
    /// The function's exact `MemorySize` (its cgroup limit once assigned).
    pub memory_mb: u32,
    pub now: Millis,
}

impl PlacementRequest<'_> {
    pub fn account(&self) -> &AccountId {
        self.function.account()
    }
}

/// What the supervisor holds that matters to one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolView {
    /// Idle function-warm sandboxes of this exact function version in the
    /// active pool.
    pub active_idle_function_warm: u32,
    /// The account's dedicated idle sandboxes function-warm for this version.
    pub dedicated_idle_function_warm: u32,
    /// The account's dedicated idle sandboxes not yet specialised that can
    /// take this function (runtime-warm for its profile, or shell-warm of its
    /// memory class).
    pub dedicated_idle_unspecialised: u32,
    /// General idle runtime-warm sandboxes of this profile.
    pub general_idle_runtime_warm: u32,
    /// General idle shell-warm sandboxes of this memory class.
    pub general_idle_shell_warm: u32,
    /// The current targets of those two general pools (what an account
    /// beyond its share must leave part of for the others).
    pub general_runtime_target: u32,
    pub general_shell_target: u32,
    /// The general sub-pool's size (the sum of its targets), which the
    /// per-account share is a fraction of.
    pub general_pool_size: u32,
    /// This account's recent draws from the general sub-pool, and whether
    /// another account contends for it.
    pub general_share: ShareStanding,
    /// Invocations of this account already waiting.
    pub account_queue_len: u32,
}

/// The node's memory budget as placement needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetView {
    /// The budget: the most the sum of sandbox memory limits may reach.
    pub limit_mb: u64,
    /// The current sum of sandbox memory limits (idle, busy and starting).
    pub used_mb: u64,
    /// Memory the eviction planner may free: general surplus above target and
    /// idle function-warm sandboxes (never dedicated minimums).
    pub evictable_mb: u64,
}

impl BudgetView {
    pub fn free_mb(&self) -> u64 {
        self.limit_mb.saturating_sub(self.used_mb)
    }

    /// `Some(mb to evict first)` if `need_mb` can be made to fit, `None` if
    /// not even evicting everything evictable would.
    pub fn eviction_needed_for(&self, need_mb: u64) -> Option<u64> {
        let free = self.free_mb();
        if need_mb <= free {
            Some(0)
        } else if need_mb - free <= self.evictable_mb {
            Some(need_mb - free)
        } else {
            None
        }
    }
}

/// Why an invocation is refused (a 429 `TooManyRequestsException`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The account's policy is `reject` and nothing could serve it.
    PolicyReject,
    /// The account's policy is `wait` but its queue is full.
    QueueFull,
    /// The account may burst, but the node has neither general capacity for
    /// it (within its share) nor memory for a cold start.
    NodeAtCapacity,
}

impl RejectReason {
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::PolicyReject => "policy-reject",
            RejectReason::QueueFull => "queue-full",
            RejectReason::NodeAtCapacity => "node-at-capacity",
        }
    }
}

/// Where an invocation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementDecision {
    /// An idle function-warm sandbox of this version in the active pool.
    Warm,
    /// The account's dedicated sub-pool.
    Dedicated { function_warm: bool },
    /// A general runtime-warm sandbox, specialised to the function.
    GeneralRuntime,
    /// A general shell-warm sandbox, specialised to the function.
    GeneralShell,
    /// A new sandbox. `evict_mb` must be freed first (see
    /// [`crate::budget::plan_evictions`]); zero when it fits already.
    Cold { evict_mb: u64 },
    /// Wait for a sandbox until `deadline`.
    Queue { deadline: Millis },
    /// Refuse with 429.
    Reject { reason: RejectReason },
}

impl PlacementDecision {
    /// The `X-Hearth-Placement` header value.
    pub fn source(&self) -> &'static str {
        match self {
            PlacementDecision::Warm => "warm",
            PlacementDecision::Dedicated { .. } => "dedicated",
            PlacementDecision::GeneralRuntime => "general-runtime",
            PlacementDecision::GeneralShell => "general-shell",
            PlacementDecision::Cold { .. } => "cold",
            PlacementDecision::Queue { .. } => "queued",
            PlacementDecision::Reject { .. } => "rejected",
        }
    }

    /// The `source` label of `hearth_placements_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            PlacementDecision::GeneralRuntime => "general_runtime",
            PlacementDecision::GeneralShell => "general_shell",
            other => other.source(),
        }
    }

    /// Whether the invocation pays a full cold start.
    pub fn is_cold(&self) -> bool {
        matches!(self, PlacementDecision::Cold { .. })
    }

    /// Whether it drew from the general sub-pool.
    pub fn is_general(&self) -> bool {
        matches!(
            self,
            PlacementDecision::GeneralRuntime | PlacementDecision::GeneralShell
        )
    }
}

/// The placement decision, in the order of ARCHITECTURE.md section 3.
pub fn place(
    req: &PlacementRequest<'_>,
    view: &PoolView,
    policy: &CapacityPolicy,
    budget: &BudgetView,
) -> PlacementDecision {
    if view.active_idle_function_warm > 0 {
        return PlacementDecision::Warm;
    }
    if view.dedicated_idle_function_warm > 0 {
        return PlacementDecision::Dedicated {
            function_warm: true,
        };
    }
    if view.dedicated_idle_unspecialised > 0 {
        return PlacementDecision::Dedicated {
            function_warm: false,
        };
    }
    if policy.mode == CapacityMode::Burst {
        let within = policy.within_general_share(&view.general_share, view.general_pool_size);
        let runtime = policy.general_drawable(
            within,
            view.general_idle_runtime_warm,
            view.general_runtime_target,
        );
        if req.profile.supports_runtime_warm() && runtime > 0 {
            return PlacementDecision::GeneralRuntime;
        }
        if policy.general_drawable(
            within,
            view.general_idle_shell_warm,
            view.general_shell_target,
        ) > 0
        {
            return PlacementDecision::GeneralShell;
        }
    }
    if let Some(evict_mb) = budget.eviction_needed_for(u64::from(req.memory_mb)) {
        return PlacementDecision::Cold { evict_mb };
    }
    match policy.mode {
        CapacityMode::Burst => PlacementDecision::Reject {
            reason: RejectReason::NodeAtCapacity,
        },
        CapacityMode::Reject => PlacementDecision::Reject {
            reason: RejectReason::PolicyReject,
        },
        CapacityMode::Wait {
            max_wait_ms,
            max_queue_len,
        } => {
            if view.account_queue_len < max_queue_len {
                PlacementDecision::Queue {
                    deadline: req.now.plus(max_wait_ms),
                }
            } else {
                PlacementDecision::Reject {
                    reason: RejectReason::QueueFull,
                }
            }
        }
    }
}

/// Whether a request placed as `decision` under `mode` asked the general
/// sub-pool, and so contends for it (see [`crate::share`]): a burst
/// account's request that neither a warm nor a dedicated sandbox served,
/// whether it then drew a general sandbox or not.
pub fn asks_general(decision: &PlacementDecision, mode: CapacityMode) -> bool {
    mode == CapacityMode::Burst
        && !matches!(
            decision,
            PlacementDecision::Warm | PlacementDecision::Dedicated { .. }
        )
}

/// Who a sandbox belongs to. It starts in the general sub-pool (no one) or
/// dedicated to an account, and once an account has it, it is that
/// account's until it is destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    General,
    Account(AccountId),
}

/// A sandbox was asked to serve an account other than its owner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sandbox belongs to account {owner} and can never serve account {requested}")]
pub struct CrossAccountError {
    pub owner: AccountId,
    pub requested: AccountId,
}

impl Owner {
    pub fn can_serve(&self, account: &AccountId) -> bool {
        match self {
            Owner::General => true,
            Owner::Account(owner) => owner == account,
        }
    }

    /// The owner after serving `account`: a general sandbox becomes the
    /// account's; an account's sandbox stays its own; anything else is the
    /// one thing placement must never do.
    pub fn assign(&self, account: &AccountId) -> Result<Owner, CrossAccountError> {
        match self {
            Owner::General => Ok(Owner::Account(account.clone())),
            Owner::Account(owner) if owner == account => Ok(self.clone()),
            Owner::Account(owner) => Err(CrossAccountError {
                owner: owner.clone(),
                requested: account.clone(),
            }),
        }
    }
}

/// What the supervisor knows when an invocation finishes with a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseContext {
    /// The runtime answered and the sandbox is alive (no timeout, no crash).
    pub healthy: bool,
    /// The sandbox's function version still exists and is unchanged.
    pub function_current: bool,
    /// The account still wants it (not being torn down, not over its limits).
    pub still_needed: bool,
}

/// Why a released sandbox is destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestroyReason {
    Unhealthy,
    FunctionChanged,
    NoLongerNeeded,
}

/// What happens to a sandbox after an invocation. There is deliberately no
/// "return to the general sub-pool": a sandbox never serves a second account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseAction {
    /// Back to its pool (active or dedicated) as idle function-warm, still
    /// owned by the same account.
    KeepIdleFunctionWarm,
    Destroy(DestroyReason),
}

/// The release rule.
pub fn on_release(ctx: &ReleaseContext) -> ReleaseAction {
    if !ctx.healthy {
        ReleaseAction::Destroy(DestroyReason::Unhealthy)
    } else if !ctx.function_current {
        ReleaseAction::Destroy(DestroyReason::FunctionChanged)
    } else if !ctx.still_needed {
        ReleaseAction::Destroy(DestroyReason::NoLongerNeeded)
    } else {
        ReleaseAction::KeepIdleFunctionWarm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::DedicatedCapacity;

    fn fixture() -> (FunctionVersion, RuntimeProfile) {
        (
            FunctionVersion::new(AccountId::new("a"), "f", "1"),
            RuntimeProfile::new("python3.11", 256),
        )
    }

    fn budget_roomy() -> BudgetView {
        BudgetView {
            limit_mb: 10_000,
            used_mb: 0,
            evictable_mb: 0,
        }
    }

    fn budget_full() -> BudgetView {
        BudgetView {
            limit_mb: 1_000,
            used_mb: 1_000,
            evictable_mb: 0,
        }
    }

    fn everything() -> PoolView {
        PoolView {
            active_idle_function_warm: 1,
            dedicated_idle_function_warm: 1,
            dedicated_idle_unspecialised: 1,
            general_idle_runtime_warm: 1,
            general_idle_shell_warm: 1,
            general_runtime_target: 0,
            general_shell_target: 0,
            general_pool_size: 10,
            general_share: ShareStanding::default(),
            account_queue_len: 0,
        }
    }

    fn wait_policy() -> CapacityPolicy {
        CapacityPolicy {
            mode: CapacityMode::Wait {
                max_wait_ms: 250,
                max_queue_len: 2,
            },
            ..CapacityPolicy::default()
        }
    }

    fn reject_policy() -> CapacityPolicy {
        CapacityPolicy {
            mode: CapacityMode::Reject,
            ..CapacityPolicy::default()
        }
    }

    /// Walks the order by removing one source at a time.
    #[test]
    fn follows_the_architecture_order_under_burst() {
        let (f, p) = fixture();
        let req = PlacementRequest {
            function: &f,
            profile: &p,
            memory_mb: 200,
            now: Millis(1_000),
        };
        let burst = CapacityPolicy::default();
        let mut v = everything();
        let b = budget_roomy();
        assert_eq!(place(&req, &v, &burst, &b), PlacementDecision::Warm);
        v.active_idle_function_warm = 0;
        assert_eq!(
            place(&req, &v, &burst, &b),
            PlacementDecision::Dedicated {
                function_warm: true
            }
        );
        v.dedicated_idle_function_warm = 0;
        assert_eq!(
            place(&req, &v, &burst, &b),
            PlacementDecision::Dedicated {
                function_warm: false
            }
        );
        v.dedicated_idle_unspecialised = 0;
        assert_eq!(
            place(&req, &v, &burst, &b),
            PlacementDecision::GeneralRuntime
        );
        v.general_idle_runtime_warm = 0;
        assert_eq!(place(&req, &v, &burst, &b), PlacementDecision::GeneralShell);
        v.general_idle_shell_warm = 0;
        assert_eq!(
            place(&req, &v, &burst, &b),
            PlacementDecision::Cold { evict_mb: 0 }
        );
        assert_eq!(
            place(&req, &v, &burst, &budget_full()),
            PlacementDecision::Reject {
                reason: RejectReason::NodeAtCapacity
            }
        );
    }

    #[test]
    fn wait_and_reject_skip_the_general_sub_pool_but_keep_dedicated() {
        let (f, p) = fixture();
        let req = PlacementRequest {
            function: &f,
            profile: &p,
            memory_mb: 200,
            now: Millis(1_000),
        };
        let mut v = everything();
        v.active_idle_function_warm = 0;
        for policy in [wait_policy(), reject_policy()] {
            assert_eq!(
                place(&req, &v, &policy, &budget_roomy()),
                PlacementDecision::Dedicated {
                    function_warm: true
                }
            );
            let mut no_dedicated = v;
            no_dedicated.dedicated_idle_function_warm = 0;
            no_dedicated.dedicated_idle_unspecialised = 0;
            // General capacity is there, but the policy does not burst.
            assert_eq!(
                place(&req, &no_dedicated, &policy, &budget_roomy()),
                PlacementDecision::Cold { evict_mb: 0 }
            );
        }
    }

    #[test]
    fn budget_refused_cold_start_queues_or_rejects() {
        let (f, p) = fixture();
        let req = PlacementRequest {
            function: &f,
            profile: &p,
            memory_mb: 200,
            now: Millis(1_000),
        };
        let mut v = PoolView::default();
        assert_eq!(
            place(&req, &v, &wait_policy(), &budget_full()),
            PlacementDecision::Queue {
                deadline: Millis(1_250)
            }
        );
        v.account_queue_len = 2;
        assert_eq!(
            place(&req, &v, &wait_policy(), &budget_full()),
            PlacementDecision::Reject {
                reason: RejectReason::QueueFull
            }
        );
        assert_eq!(
            place(&req, &v, &reject_policy(), &budget_full()),
            PlacementDecision::Reject {
                reason: RejectReason::PolicyReject
            }
        );
    }

    #[test]
    fn cold_start_may_need_evictions_first() {
        let (f, p) = fixture();
        let req = PlacementRequest {
            function: &f,
            profile: &p,
            memory_mb: 300,
            now: Millis(0),
        };
        let b = BudgetView {
            limit_mb: 1_000,
            used_mb: 900,
            evictable_mb: 256,
        };
        assert_eq!(
            place(&req, &PoolView::default(), &CapacityPolicy::default(), &b),
            PlacementDecision::Cold { evict_mb: 200 }
        );
        let b = BudgetView {
            evictable_mb: 199,
            ..b
        };
        assert!(matches!(
            place(&req, &PoolView::default(), &CapacityPolicy::default(), &b),
            PlacementDecision::Reject { .. }
        ));
    }

    #[test]
    fn general_share_caps_one_tenant_only_under_contention() {
        let (f, p) = fixture();
        let req = PlacementRequest {
            function: &f,
            profile: &p,
            memory_mb: 200,
            now: Millis(0),
        };
        let standing = |own_draws, contended| ShareStanding {
            own_draws,
            all_draws: own_draws,
            contended,
        };
        let v = PoolView {
            general_idle_runtime_warm: 4,
            general_runtime_target: 8,
            general_pool_size: 10,
            general_share: standing(4, true),
            ..PoolView::default()
        };
        let burst = CapacityPolicy::default();
        // Within its share (4 of ceil(0.5 × 10) = 5): all of the pool.
        assert_eq!(
            place(&req, &v, &burst, &budget_roomy()),
            PlacementDecision::GeneralRuntime
        );
        // Beyond it, under contention: the last ceil(0.5 × 8) = 4 idle stay
        // for the others.
        let at_share = PoolView {
            general_share: standing(5, true),
            ..v
        };
        assert_eq!(
            place(&req, &at_share, &burst, &budget_roomy()),
            PlacementDecision::Cold { evict_mb: 0 }
        );
        // ...but what the pool holds above that reserve is still drawn.
        let fuller = PoolView {
            general_idle_runtime_warm: 5,
            ..at_share
        };
        assert_eq!(
            place(&req, &fuller, &burst, &budget_roomy()),
            PlacementDecision::GeneralRuntime
        );
        // Alone on the node, the same account draws the whole pool.
        let alone = PoolView {
            general_share: standing(40, false),
            general_idle_runtime_warm: 1,
            ..v
        };
        assert_eq!(
            place(&req, &alone, &burst, &budget_roomy()),
            PlacementDecision::GeneralRuntime
        );
        let generous = CapacityPolicy {
            general_share: 1.0,
            ..CapacityPolicy::default()
        };
        assert_eq!(
            place(&req, &at_share, &generous, &budget_roomy()),
            PlacementDecision::GeneralRuntime
        );
    }

    #[test]
    fn provided_runtimes_use_shell_warm_only() {
        let f = FunctionVersion::new(AccountId::new("a"), "rust-fn", "1");
        let p = RuntimeProfile::new("provided", 128);
        let req = PlacementRequest {
            function: &f,
            profile: &p,
            memory_mb: 128,
            now: Millis(0),
        };
        let v = PoolView {
            general_idle_runtime_warm: 3,
            general_idle_shell_warm: 1,
            general_pool_size: 4,
            ..PoolView::default()
        };
        assert_eq!(
            place(&req, &v, &CapacityPolicy::default(), &budget_roomy()),
            PlacementDecision::GeneralShell
        );
    }

    #[test]
    fn dedicated_policy_entries_do_not_change_the_order() {
        // A policy with dedicated minimums places exactly like one without:
        // the dedicated counts come from the view.
        let (f, p) = fixture();
        let req = PlacementRequest {
            function: &f,
            profile: &p,
            memory_mb: 200,
            now: Millis(0),
        };
        let mut policy = CapacityPolicy::default();
        policy
            .dedicated
            .insert(p.clone(), DedicatedCapacity { min: 2, max: 4 });
        assert_eq!(
            place(&req, &everything(), &policy, &budget_roomy()),
            PlacementDecision::Warm
        );
    }

    #[test]
    fn labels() {
        let all = [
            (PlacementDecision::Warm, "warm", "warm"),
            (
                PlacementDecision::Dedicated {
                    function_warm: false,
                },
                "dedicated",
                "dedicated",
            ),
            (
                PlacementDecision::GeneralRuntime,
                "general-runtime",
                "general_runtime",
            ),
            (
                PlacementDecision::GeneralShell,
                "general-shell",
                "general_shell",
            ),
            (PlacementDecision::Cold { evict_mb: 0 }, "cold", "cold"),
            (
                PlacementDecision::Queue {
                    deadline: Millis(0),
                },
                "queued",
                "queued",
            ),
            (
                PlacementDecision::Reject {
                    reason: RejectReason::QueueFull,
                },
                "rejected",
                "rejected",
            ),
        ];
        for (d, header, metric) in all {
            assert_eq!(d.source(), header);
            assert_eq!(d.metric_label(), metric);
        }
    }

    #[test]
    fn a_sandbox_never_serves_a_second_account() {
        let a = AccountId::new("a");
        let b = AccountId::new("b");
        let general = Owner::General;
        assert!(general.can_serve(&a) && general.can_serve(&b));
        let owned = general.assign(&a).unwrap();
        assert_eq!(owned, Owner::Account(a.clone()));
        assert!(owned.can_serve(&a));
        assert!(!owned.can_serve(&b));
        assert_eq!(owned.assign(&a).unwrap(), owned);
        assert_eq!(
            owned.assign(&b),
            Err(CrossAccountError {
                owner: a,
                requested: b
            })
        );
    }

    #[test]
    fn release_keeps_or_destroys_never_returns_to_general() {
        for healthy in [false, true] {
            for function_current in [false, true] {
                for still_needed in [false, true] {
                    let action = on_release(&ReleaseContext {
                        healthy,
                        function_current,
                        still_needed,
                    });
                    let keep = healthy && function_current && still_needed;
                    assert_eq!(action == ReleaseAction::KeepIdleFunctionWarm, keep);
                }
            }
        }
        assert_eq!(
            on_release(&ReleaseContext {
                healthy: false,
                function_current: true,
                still_needed: true
            }),
            ReleaseAction::Destroy(DestroyReason::Unhealthy)
        );
    }
}
