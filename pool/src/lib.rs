//! Hearth's pools: the capacity logic (placement, the pool manager,
//! keep-alive and sizing policies; pure and clock-injected) and, in [`vm`],
//! the microVM sub-pools.
//!
//! Outside [`vm`], nothing here starts a process, opens a socket or sleeps. The sandbox
//! supervisor (`hearth-exec`) owns the real sandboxes and mirrors each of
//! their state changes into an [`Inventory`](inventory::Inventory); every
//! decision is a function of that inventory, a policy, and a `now` read from
//! an injected [`Clock`](clock::Clock). The same code therefore runs in the
//! daemon, in unit tests with a [`ManualClock`](clock::ManualClock), and in
//! the [`replay`] simulator, which plays a day of invocations in
//! milliseconds.
//!
//! # Concepts (ARCHITECTURE.md section 1)
//!
//! - A sandbox's [`Warmth`](profile::Warmth): shell-warm, runtime-warm,
//!   function-warm.
//! - The **general sub-pool** holds shell- and runtime-warm sandboxes of no
//!   account, keyed by [`RuntimeProfile`](profile::RuntimeProfile) (runtime +
//!   memory class, [`memory_class_for`](profile::memory_class_for)); the
//!   **dedicated sub-pool** holds sandboxes assigned to one account ahead of
//!   demand (minimums from its [`CapacityPolicy`](policy::CapacityPolicy),
//!   provisioned concurrency); the **active pool** holds what placement gave
//!   an account: busy, or idle function-warm.
//! - A sandbox belongs to at most one account in its whole life
//!   ([`Owner::assign`](placement::Owner::assign)); a released sandbox is
//!   kept idle function-warm for the same account or destroyed, never
//!   returned to the general sub-pool ([`on_release`](placement::on_release)).
//!
//! # Modules
//!
//! - [`placement`]: [`place`](placement::place), the one decision of
//!   ARCHITECTURE.md section 3 — warm → dedicated → general (burst, within the
//!   account's share while another account contends) → cold (if the budget
//!   allows) → queue or reject.
//! - [`share`]: the general share's ledger — draws within a recent window,
//!   enforced only under contention (ADR 0011).
//! - [`inventory`]: the pools as data, idle memory-time accounting.
//! - [`budget`]: the memory budget and the eviction planner (general surplus,
//!   then idle function-warm by keep-alive score; dedicated minimums never).
//! - [`keepalive`]: [`KeepAlivePolicy`](keepalive::KeepAlivePolicy) with fixed
//!   TTL, the hybrid histogram (Shahrad et al.) and Greedy-Dual (FaasCache).
//! - [`sizing`]: general pool targets — Hearth's forecaster (Holt-Winters:
//!   level, trend, time of day), a plain EWMA, OpenWhisk's reactive prewarm.
//! - [`manager`]: [`PoolManager::step`](manager::PoolManager::step), returning
//!   refill / evict / expire / pre-warm / provision / replace actions.
//! - [`replay`]: trace-driven simulation, a seedable synthetic trace shaped
//!   like Azure Functions 2019, and a reader for that trace's files.
//! - [`vm`]: the microVM sub-pools (general, dedicated, provisioned, idle),
//!   the snapshot cache, restore/specialise/reset, the VM threads, and
//!   per-phase accounting.
//!
//! # Example: one invocation, as the supervisor drives it
//!
//! ```
//! use hearth_pool::budget::{DedicatedFloors, MemoryBudget};
//! use hearth_pool::clock::{Clock, ManualClock, Millis};
//! use hearth_pool::ids::{AccountId, FunctionVersion};
//! use hearth_pool::inventory::{Inventory, SandboxRecord};
//! use hearth_pool::keepalive::{IdleSandbox, KeepAliveConfig};
//! use hearth_pool::manager::{GeneralPoolSpec, ManagerConfig, PoolAction, PoolManager, StepInputs};
//! use hearth_pool::placement::{on_release, PlacementDecision, PlacementRequest, ReleaseContext};
//! use hearth_pool::policy::CapacityPolicy;
//! use hearth_pool::profile::RuntimeProfile;
//! use std::collections::BTreeMap;
//!
//! let clock = ManualClock::new(Millis(0));
//! let python = RuntimeProfile::for_function("python3.12", 128).unwrap();
//! let mut manager = PoolManager::new(
//!     &ManagerConfig { general: GeneralPoolSpec::defaults_for(&["python3.12"]), ..Default::default() },
//!     clock.now(),
//! );
//! let mut keepalive = KeepAliveConfig::default().build(); // fixed 10-minute TTL
//! let mut inventory = Inventory::new();
//! let budget = MemoryBudget::from_host_ram(24 * 1024, MemoryBudget::DEFAULT_HOST_FRACTION);
//! let accounts = BTreeMap::new();
//!
//! // The pool manager fills the general sub-pool; the supervisor builds
//! // what it asks for and records it.
//! let step = StepInputs { now: clock.now(), inventory: &inventory, budget, dead: &[], accounts: &accounts, provisioned: &[] };
//! for action in manager.step(&step, &mut *keepalive) {
//!     if let PoolAction::Refill { key, count } = action {
//!         for _ in 0..count {
//!             let id = inventory.allocate_id();
//!             inventory.insert(SandboxRecord::general(id, &key, clock.now())).unwrap();
//!         }
//!     }
//! }
//!
//! // A first invocation of a just-created function is served runtime-warm.
//! let function = FunctionVersion::new(AccountId::new("000000000000"), "hello", "1");
//! let req = PlacementRequest { function: &function, profile: &python, memory_mb: 128, now: clock.advance(5) };
//! keepalive.on_invocation(&function, req.now);
//! let policy = CapacityPolicy::default();
//! let decision = manager.place(&req, &inventory, &policy, budget, &*keepalive, &DedicatedFloors::default(), 0);
//! assert_eq!(decision, PlacementDecision::GeneralRuntime);
//! assert_eq!(decision.source(), "general-runtime");
//! let id = inventory.take(&decision, &req).unwrap();
//!
//! // It finishes and stays with the account, idle function-warm.
//! let action = on_release(&ReleaseContext { healthy: true, function_current: true, still_needed: true });
//! inventory.release(id, action, clock.advance(30)).unwrap();
//! keepalive.on_idle(IdleSandbox { id, function: &function, memory_mb: 128, init_cost_ms: 20 }, clock.now());
//!
//! // The second invocation is warm.
//! let req = PlacementRequest { now: clock.advance(1_000), ..req };
//! let decision = manager.place(&req, &inventory, &policy, budget, &*keepalive, &DedicatedFloors::default(), 0);
//! assert_eq!(decision, PlacementDecision::Warm);
//! ```
//!
//! # Example: replaying policies over a trace
//!
//! ```
//! use hearth_pool::keepalive::KeepAliveConfig;
//! use hearth_pool::replay::{replay, synthetic_trace, ReplayConfig, SyntheticConfig};
//!
//! let trace = synthetic_trace(&SyntheticConfig { functions: 20, duration_ms: 3_600_000, rate_log10_max: 3.0, ..Default::default() });
//! let fixed = replay(&trace, &ReplayConfig::keepalive_only(KeepAliveConfig::default()));
//! let cache = replay(&trace, &ReplayConfig { memory_limit_mb: 4_096, ..ReplayConfig::keepalive_only(KeepAliveConfig::GreedyDual) });
//! assert_eq!(fixed.invocations, cache.invocations);
//! println!("{}: {:.2}% cold, {:.0} GB·s idle", fixed.keepalive, fixed.cold_start_pct, fixed.idle_gb_s);
//! ```
//!
//! # Published parameters, and where this departs from them
//!
//! - Fixed TTL: 10 minutes by default (AWS Lambda as observed, OpenWhisk).
//! - Hybrid histogram (Shahrad et al., USENIX ATC 2020): 1-minute bins over
//!   4 hours, head 5th / tail 99th percentile, 10% margins, CV threshold 2,
//!   out-of-bounds threshold ½ with a 15% margin around the forecast. The
//!   paper's ARIMA forecast is replaced by AR(1); margins are applied at both
//!   ends of the head–tail interval; several sandboxes per function are
//!   handled by learning from the sandbox an invocation reuses (or would have
//!   reused). See [`keepalive::HybridHistogram`].
//! - Greedy-Dual (Fuerst and Sharma, ASPLOS 2021): `clock + frequency × cost
//!   / size` with per-sandbox clock and frequency (the paper's text; its
//!   simulator shares them across a function's sandboxes).
//! - OpenWhisk reactive prewarm: initialCount 2, minCount 1, maxCount 4, ttl
//!   2 minutes, threshold 1, increment 1 (its shipped `runtimes.json`),
//!   matched on memory class instead of exact memory.

pub mod budget;
pub mod clock;
pub mod events;
pub mod ids;
pub mod inventory;
pub mod keepalive;
pub mod manager;
pub mod placement;
pub mod policy;
pub mod profile;
pub mod replay;
mod rng;
pub mod share;
pub mod sizing;
pub mod vm;
