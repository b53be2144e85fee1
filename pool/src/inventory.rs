//! The pools as data: every sandbox the node holds, indexed the way
//! placement and the pool manager ask about them.
//!
//! The supervisor owns the real sandboxes; it mirrors each state change here
//! (created, ready, drawn, released, destroyed) so that placement, budget and
//! the pool manager can stay pure. The replayer drives the same structure.
//! It also keeps the books on idle memory-time (MB·ms held by sandboxes not
//! running code), the cost side of every keep-alive and sizing policy.

use crate::clock::Millis;
use crate::ids::{AccountId, FunctionVersion, SandboxId};
use crate::placement::{Owner, PlacementDecision, PlacementRequest, PoolView, ReleaseAction};
use crate::profile::{RuntimeProfile, Warmth};
use crate::share::ShareLedger;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Which pool a sandbox is in (ARCHITECTURE.md section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PoolKind {
    /// Assigned to no account, shell- or runtime-warm.
    General,
    /// Assigned to one account before any request.
    Dedicated,
    /// Assigned to an account by placement: busy, or idle function-warm.
    Active,
}

/// The key of a sub-pool of unspecialised sandboxes: runtime-warm sandboxes
/// are per runtime and memory class; shell-warm ones serve every runtime of
/// their memory class, so they have no runtime.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WarmPoolKey {
    pub warmth: Warmth,
    pub runtime: Option<String>,
    pub memory_class_mb: u32,
}

impl WarmPoolKey {
    pub fn runtime_warm(profile: &RuntimeProfile) -> Self {
        Self {
            warmth: Warmth::Runtime,
            runtime: Some(profile.runtime_family.clone()),
            memory_class_mb: profile.memory_class_mb,
        }
    }

    pub fn shell_warm(memory_class_mb: u32) -> Self {
        Self {
            warmth: Warmth::Shell,
            runtime: None,
            memory_class_mb,
        }
    }
}

impl fmt::Display for WarmPoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.runtime {
            Some(r) => write!(f, "{}/{} {}-warm", r, self.memory_class_mb, self.warmth),
            None => write!(f, "any/{} {}-warm", self.memory_class_mb, self.warmth),
        }
    }
}

/// Where a sandbox's life is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    /// Being built; counts against the budget and towards its pool's supply.
    Starting,
    Idle {
        since: Millis,
    },
    Busy {
        since: Millis,
    },
}

/// How a sandbox came to exist (and so what it counts against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Built for the general sub-pool (a draw from it counts in the
    /// general share's window, see [`crate::share`]).
    General,
    /// Built for an account's dedicated sub-pool.
    Dedicated,
    /// Built by a cold start.
    Cold,
    /// Built function-warm by a keep-alive policy's pre-warm.
    Prewarm,
}

/// One sandbox as the capacity logic sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxRecord {
    pub id: SandboxId,
    /// The runtime booted in it; `None` for an unspecialised shell-warm one.
    pub runtime: Option<String>,
    pub memory_class_mb: u32,
    /// Its memory limit: the class until assigned, then the function's exact
    /// `MemorySize`. The budget is the sum of these.
    pub memory_mb: u32,
    pub warmth: Warmth,
    pub owner: Owner,
    pub pool: PoolKind,
    pub function: Option<FunctionVersion>,
    pub origin: Origin,
    pub state: SandboxState,
    pub created_at: Millis,
}

impl SandboxRecord {
    /// A general sandbox of `key`, idle from `now`.
    pub fn general(id: SandboxId, key: &WarmPoolKey, now: Millis) -> Self {
        Self {
            id,
            runtime: key.runtime.clone(),
            memory_class_mb: key.memory_class_mb,
            memory_mb: key.memory_class_mb,
            warmth: key.warmth,
            owner: Owner::General,
            pool: PoolKind::General,
            function: None,
            origin: Origin::General,
            state: SandboxState::Idle { since: now },
            created_at: now,
        }
    }

    /// A dedicated sandbox for `account`: unspecialised of `key`, or
    /// function-warm for `function` (provisioned concurrency).
    pub fn dedicated(
        id: SandboxId,
        account: AccountId,
        key: &WarmPoolKey,
        function: Option<(FunctionVersion, u32)>,
        now: Millis,
    ) -> Self {
        let (warmth, function, memory_mb, runtime) = match function {
            Some((f, memory_mb)) => (Warmth::Function, Some(f), memory_mb, key.runtime.clone()),
            None => (key.warmth, None, key.memory_class_mb, key.runtime.clone()),
        };
        Self {
            id,
            runtime,
            memory_class_mb: key.memory_class_mb,
            memory_mb,
            warmth,
            owner: Owner::Account(account),
            pool: PoolKind::Dedicated,
            function,
            origin: Origin::Dedicated,
            state: SandboxState::Idle { since: now },
            created_at: now,
        }
    }

    /// A cold-started sandbox, busy with its first invocation from `now`.
    pub fn cold(id: SandboxId, req: &PlacementRequest<'_>) -> Self {
        Self::function_warm(id, req, Origin::Cold, SandboxState::Busy { since: req.now })
    }

    /// A function-warm sandbox built ahead of a predicted invocation, idle
    /// from `now`.
    pub fn prewarmed(id: SandboxId, req: &PlacementRequest<'_>) -> Self {
        Self::function_warm(
            id,
            req,
            Origin::Prewarm,
            SandboxState::Idle { since: req.now },
        )
    }

    fn function_warm(
        id: SandboxId,
        req: &PlacementRequest<'_>,
        origin: Origin,
        state: SandboxState,
    ) -> Self {
        Self {
            id,
            runtime: Some(req.profile.runtime_family.clone()),
            memory_class_mb: req.profile.memory_class_mb,
            memory_mb: req.memory_mb,
            warmth: Warmth::Function,
            owner: Owner::Account(req.account().clone()),
            pool: PoolKind::Active,
            function: Some(req.function.clone()),
            origin,
            state,
            created_at: req.now,
        }
    }

    /// The same record, still being built.
    #[must_use]
    pub fn starting(mut self) -> Self {
        self.state = SandboxState::Starting;
        self
    }

    /// The sub-pool key of an unspecialised sandbox.
    pub fn warm_pool_key(&self) -> Option<WarmPoolKey> {
        match self.warmth {
            Warmth::Function => None,
            Warmth::Runtime => Some(WarmPoolKey {
                warmth: Warmth::Runtime,
                runtime: self.runtime.clone(),
                memory_class_mb: self.memory_class_mb,
            }),
            Warmth::Shell => Some(WarmPoolKey::shell_warm(self.memory_class_mb)),
        }
    }

    pub fn account(&self) -> Option<&AccountId> {
        match &self.owner {
            Owner::General => None,
            Owner::Account(a) => Some(a),
        }
    }

    pub fn is_idle(&self) -> bool {
        matches!(self.state, SandboxState::Idle { .. })
    }
}

/// Memory held by sandboxes not running code, in MB·ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdleMemoryTime {
    /// Idle function-warm sandboxes (active and dedicated pools).
    pub function_warm_mb_ms: u128,
    /// Idle shell- and runtime-warm sandboxes (general and dedicated).
    pub unspecialised_mb_ms: u128,
}

impl IdleMemoryTime {
    pub fn total_mb_ms(&self) -> u128 {
        self.function_warm_mb_ms + self.unspecialised_mb_ms
    }

    /// GB·s, the unit the literature reports.
    pub fn total_gb_s(&self) -> f64 {
        mb_ms_to_gb_s(self.total_mb_ms())
    }
}

pub(crate) fn mb_ms_to_gb_s(mb_ms: u128) -> f64 {
    mb_ms as f64 / 1024.0 / 1000.0
}

/// Why a record could not be drawn or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("sandbox {0} is already in the inventory")]
    Duplicate(SandboxId),
    #[error("sandbox {0} is not in the inventory")]
    Unknown(SandboxId),
    #[error("no idle sandbox matches a `{0}` placement (the view was stale)")]
    NothingToTake(&'static str),
    #[error("a `{0}` placement does not draw a sandbox")]
    NotADraw(&'static str),
    #[error(transparent)]
    CrossAccount(#[from] crate::placement::CrossAccountError),
}

/// Every sandbox on the node, indexed for placement and the pool manager.
#[derive(Debug, Default)]
pub struct Inventory {
    records: BTreeMap<SandboxId, SandboxRecord>,
    /// Idle function-warm sandboxes by function version, most recently used
    /// last (its caches are warmest).
    active_idle: HashMap<FunctionVersion, Vec<SandboxId>>,
    dedicated_idle_fw: HashMap<FunctionVersion, Vec<SandboxId>>,
    /// Idle unspecialised sandboxes: general ones, and each account's
    /// dedicated ones.
    general_idle: HashMap<WarmPoolKey, Vec<SandboxId>>,
    dedicated_idle: HashMap<AccountId, HashMap<WarmPoolKey, Vec<SandboxId>>>,
    general_starting: HashMap<WarmPoolKey, u32>,
    /// Recent draws from the general sub-pool, for the general share.
    share: ShareLedger,
    dedicated_alive: HashMap<(AccountId, u32), u32>,
    dedicated_for_function: HashMap<FunctionVersion, u32>,
    used_mb: u64,
    idle: IdleMemoryTime,
    next_id: u64,
}

impl Inventory {
    pub fn new() -> Self {
        Self::default()
    }

    /// `account` asked the general sub-pool at `now` and drew nothing from
    /// it (see [`crate::placement::asks_general`]); a draw through
    /// [`Inventory::take`] records itself.
    pub fn note_general_ask(&mut self, account: &AccountId, now: Millis) {
        self.share.record_ask(account, now);
    }

    /// An empty inventory whose general share counts draws within
    /// `window_ms` (default [`crate::share::DEFAULT_SHARE_WINDOW_MS`]).
    pub fn with_share_window(window_ms: u64) -> Self {
        Self {
            share: ShareLedger::new(window_ms),
            ..Self::default()
        }
    }

    /// A fresh id, for callers (like the replayer) that do not number
    /// sandboxes themselves.
    pub fn allocate_id(&mut self) -> SandboxId {
        self.next_id += 1;
        SandboxId(self.next_id)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn get(&self, id: SandboxId) -> Option<&SandboxRecord> {
        self.records.get(&id)
    }

    /// Every record, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &SandboxRecord> {
        self.records.values()
    }

    /// The sum of sandbox memory limits.
    pub fn used_mb(&self) -> u64 {
        self.used_mb
    }

    pub fn insert(&mut self, record: SandboxRecord) -> Result<(), InventoryError> {
        if self.records.contains_key(&record.id) {
            return Err(InventoryError::Duplicate(record.id));
        }
        self.next_id = self.next_id.max(record.id.0);
        self.used_mb += u64::from(record.memory_mb);
        if record.pool == PoolKind::Dedicated {
            if let Some(a) = record.account() {
                *self
                    .dedicated_alive
                    .entry((a.clone(), record.memory_class_mb))
                    .or_default() += 1;
            }
            if let Some(f) = &record.function {
                *self.dedicated_for_function.entry(f.clone()).or_default() += 1;
            }
        }
        match record.state {
            SandboxState::Idle { .. } => self.index_idle(&record),
            SandboxState::Starting => {
                if record.pool == PoolKind::General {
                    if let Some(k) = record.warm_pool_key() {
                        *self.general_starting.entry(k).or_default() += 1;
                    }
                }
            }
            SandboxState::Busy { .. } => {}
        }
        self.records.insert(record.id, record);
        Ok(())
    }

    /// A starting sandbox finished building and is idle from `now`.
    pub fn mark_ready(&mut self, id: SandboxId, now: Millis) -> Result<(), InventoryError> {
        let mut rec = self
            .records
            .remove(&id)
            .ok_or(InventoryError::Unknown(id))?;
        if rec.state == SandboxState::Starting {
            rec.state = SandboxState::Idle { since: now };
            if rec.pool == PoolKind::General {
                if let Some(k) = rec.warm_pool_key() {
                    decrement(&mut self.general_starting, &k);
                }
            }
            self.index_idle(&rec);
        }
        self.records.insert(id, rec);
        Ok(())
    }

    /// Removes a sandbox (destroyed, expired, evicted, dead).
    pub fn remove(&mut self, id: SandboxId, now: Millis) -> Option<SandboxRecord> {
        let rec = self.records.remove(&id)?;
        match rec.state {
            SandboxState::Idle { since } => {
                self.unindex_idle(&rec);
                self.account_idle(&rec, since, now);
            }
            SandboxState::Starting => {
                if rec.pool == PoolKind::General {
                    if let Some(k) = rec.warm_pool_key() {
                        decrement(&mut self.general_starting, &k);
                    }
                }
            }
            SandboxState::Busy { .. } => {}
        }
        self.used_mb -= u64::from(rec.memory_mb);
        if rec.pool == PoolKind::Dedicated {
            if let Some(a) = rec.account() {
                decrement(&mut self.dedicated_alive, &(a.clone(), rec.memory_class_mb));
            }
            if let Some(f) = &rec.function {
                decrement(&mut self.dedicated_for_function, f);
            }
        }
        Some(rec)
    }

    /// The counts placement needs for `req`.
    pub fn view(
        &self,
        req: &PlacementRequest<'_>,
        general_targets: &BTreeMap<WarmPoolKey, u32>,
        account_queue_len: u32,
    ) -> PoolView {
        let account = req.account();
        let runtime_key = req
            .profile
            .supports_runtime_warm()
            .then(|| WarmPoolKey::runtime_warm(req.profile));
        let shell_key = WarmPoolKey::shell_warm(req.profile.memory_class_mb);
        let count = |m: &HashMap<WarmPoolKey, Vec<SandboxId>>, k: &WarmPoolKey| {
            m.get(k).map_or(0, |v| len_u32(v))
        };
        let dedicated_unspecialised = self.dedicated_idle.get(account).map_or(0, |m| {
            runtime_key.as_ref().map_or(0, |k| count(m, k)) + count(m, &shell_key)
        });
        PoolView {
            active_idle_function_warm: self.active_idle.get(req.function).map_or(0, |v| len_u32(v)),
            dedicated_idle_function_warm: self
                .dedicated_idle_fw
                .get(req.function)
                .map_or(0, |v| len_u32(v)),
            dedicated_idle_unspecialised: dedicated_unspecialised,
            general_idle_runtime_warm: runtime_key
                .as_ref()
                .map_or(0, |k| count(&self.general_idle, k)),
            general_idle_shell_warm: count(&self.general_idle, &shell_key),
            general_runtime_target: runtime_key
                .as_ref()
                .and_then(|k| general_targets.get(k))
                .copied()
                .unwrap_or(0),
            general_shell_target: general_targets.get(&shell_key).copied().unwrap_or(0),
            general_pool_size: general_targets
                .values()
                .fold(0u32, |a, t| a.saturating_add(*t)),
            general_share: self.share.standing(account, req.now),
            account_queue_len,
        }
    }

    /// Draws the sandbox a placement decided on and marks it busy, assigned
    /// to the request's account and function. Returns its id.
    pub fn take(
        &mut self,
        decision: &PlacementDecision,
        req: &PlacementRequest<'_>,
    ) -> Result<SandboxId, InventoryError> {
        let account = req.account();
        let id = match decision {
            PlacementDecision::Warm => last(self.active_idle.get(req.function)),
            PlacementDecision::Dedicated {
                function_warm: true,
            } => last(self.dedicated_idle_fw.get(req.function)),
            PlacementDecision::Dedicated {
                function_warm: false,
            } => self.dedicated_idle.get(account).and_then(|m| {
                let runtime = req
                    .profile
                    .supports_runtime_warm()
                    .then(|| WarmPoolKey::runtime_warm(req.profile))
                    .and_then(|k| last(m.get(&k)));
                runtime
                    .or_else(|| last(m.get(&WarmPoolKey::shell_warm(req.profile.memory_class_mb))))
            }),
            PlacementDecision::GeneralRuntime => last(
                self.general_idle
                    .get(&WarmPoolKey::runtime_warm(req.profile)),
            ),
            PlacementDecision::GeneralShell => last(
                self.general_idle
                    .get(&WarmPoolKey::shell_warm(req.profile.memory_class_mb)),
            ),
            other => return Err(InventoryError::NotADraw(other.source())),
        }
        .ok_or(InventoryError::NothingToTake(decision.source()))?;
        let mut rec = self
            .records
            .remove(&id)
            .ok_or(InventoryError::Unknown(id))?;
        // The indexes only hold sandboxes this account may use; checking
        // again keeps the one rule that must never break out of reach of an
        // indexing bug.
        let new_owner = match rec.owner.assign(account) {
            Ok(o) => o,
            Err(e) => {
                self.records.insert(id, rec);
                return Err(e.into());
            }
        };
        if let SandboxState::Idle { since } = rec.state {
            self.unindex_idle(&rec);
            self.account_idle(&rec, since, req.now);
        }
        rec.owner = new_owner;
        rec.state = SandboxState::Busy { since: req.now };
        if rec.warmth != Warmth::Function {
            // Specialised now: its cgroup limit becomes the exact MemorySize.
            rec.warmth = Warmth::Function;
            rec.function = Some(req.function.clone());
            rec.runtime = Some(req.profile.runtime_family.clone());
            self.used_mb = self.used_mb - u64::from(rec.memory_mb) + u64::from(req.memory_mb);
            rec.memory_mb = req.memory_mb;
            if rec.pool == PoolKind::General {
                rec.pool = PoolKind::Active;
                self.share.prune(req.now);
                self.share.record_draw(account, req.now);
            } else if rec.pool == PoolKind::Dedicated {
                *self
                    .dedicated_for_function
                    .entry(req.function.clone())
                    .or_default() += 1;
            }
        }
        self.records.insert(id, rec);
        Ok(id)
    }

    /// Marks an idle sandbox busy without placement (e.g. a health probe).
    pub fn mark_busy(&mut self, id: SandboxId, now: Millis) -> Result<(), InventoryError> {
        let mut rec = self
            .records
            .remove(&id)
            .ok_or(InventoryError::Unknown(id))?;
        if let SandboxState::Idle { since } = rec.state {
            self.unindex_idle(&rec);
            self.account_idle(&rec, since, now);
        }
        rec.state = SandboxState::Busy { since: now };
        self.records.insert(id, rec);
        Ok(())
    }

    /// Applies the release rule's outcome: idle function-warm with the same
    /// owner, or gone. Returns the removed record when destroyed.
    pub fn release(
        &mut self,
        id: SandboxId,
        action: ReleaseAction,
        now: Millis,
    ) -> Result<Option<SandboxRecord>, InventoryError> {
        match action {
            ReleaseAction::Destroy(_) => Ok(self.remove(id, now)),
            ReleaseAction::KeepIdleFunctionWarm => {
                let mut rec = self
                    .records
                    .remove(&id)
                    .ok_or(InventoryError::Unknown(id))?;
                if !rec.is_idle() {
                    rec.state = SandboxState::Idle { since: now };
                    self.index_idle(&rec);
                }
                self.records.insert(id, rec);
                Ok(None)
            }
        }
    }

    /// Idle general sandboxes of `key`, oldest first.
    pub fn general_idle(&self, key: &WarmPoolKey) -> Vec<SandboxId> {
        let mut ids = self.general_idle.get(key).cloned().unwrap_or_default();
        ids.sort_by_key(|id| (self.idle_since(*id), *id));
        ids
    }

    /// Idle plus starting general sandboxes of `key`: what the pool can
    /// serve soon.
    pub fn general_supply(&self, key: &WarmPoolKey) -> u32 {
        self.general_idle.get(key).map_or(0, |v| len_u32(v))
            + self.general_starting.get(key).copied().unwrap_or(0)
    }

    /// Dedicated sandboxes (any state) of `account` in a memory class.
    pub fn dedicated_alive(&self, account: &AccountId, memory_class_mb: u32) -> u32 {
        self.dedicated_alive
            .get(&(account.clone(), memory_class_mb))
            .copied()
            .unwrap_or(0)
    }

    /// Dedicated function-warm sandboxes (any state) for `function`.
    pub fn dedicated_for_function(&self, function: &FunctionVersion) -> u32 {
        self.dedicated_for_function
            .get(function)
            .copied()
            .unwrap_or(0)
    }

    /// Idle function-warm sandboxes of `function` in the active pool.
    pub fn active_idle(&self, function: &FunctionVersion) -> u32 {
        self.active_idle.get(function).map_or(0, |v| len_u32(v))
    }

    pub fn idle_since(&self, id: SandboxId) -> Option<Millis> {
        match self.records.get(&id)?.state {
            SandboxState::Idle { since } => Some(since),
            _ => None,
        }
    }

    /// Idle memory-time so far, including sandboxes idle right now.
    pub fn idle_memory_time(&self, now: Millis) -> IdleMemoryTime {
        let mut t = self.idle;
        for rec in self.records.values() {
            if let SandboxState::Idle { since } = rec.state {
                add_idle(&mut t, rec, since, now);
            }
        }
        t
    }

    fn account_idle(&mut self, rec: &SandboxRecord, since: Millis, now: Millis) {
        add_idle(&mut self.idle, rec, since, now);
    }

    fn index_idle(&mut self, rec: &SandboxRecord) {
        if let Some(list) = self.idle_list(rec) {
            list.push(rec.id);
        }
    }

    fn unindex_idle(&mut self, rec: &SandboxRecord) {
        let id = rec.id;
        // Empty lists are dropped so the maps do not grow with every
        // function ever seen.
        match (rec.pool, &rec.function) {
            (PoolKind::Active, Some(f)) => remove_id(&mut self.active_idle, f, id),
            (PoolKind::Dedicated, Some(f)) => remove_id(&mut self.dedicated_idle_fw, f, id),
            (PoolKind::General, _) => {
                if let Some(k) = rec.warm_pool_key() {
                    remove_id(&mut self.general_idle, &k, id);
                }
            }
            (PoolKind::Dedicated, None) => {
                if let (Some(a), Some(k)) = (rec.account(), rec.warm_pool_key()) {
                    if let Some(m) = self.dedicated_idle.get_mut(a) {
                        remove_id(m, &k, id);
                        if m.is_empty() {
                            self.dedicated_idle.remove(a);
                        }
                    }
                }
            }
            (PoolKind::Active, None) => {}
        }
    }

    fn idle_list(&mut self, rec: &SandboxRecord) -> Option<&mut Vec<SandboxId>> {
        match (rec.pool, &rec.function) {
            (PoolKind::Active, Some(f)) => Some(self.active_idle.entry(f.clone()).or_default()),
            (PoolKind::Dedicated, Some(f)) => {
                Some(self.dedicated_idle_fw.entry(f.clone()).or_default())
            }
            (PoolKind::General, _) => {
                Some(self.general_idle.entry(rec.warm_pool_key()?).or_default())
            }
            (PoolKind::Dedicated, None) => Some(
                self.dedicated_idle
                    .entry(rec.account()?.clone())
                    .or_default()
                    .entry(rec.warm_pool_key()?)
                    .or_default(),
            ),
            (PoolKind::Active, None) => None,
        }
    }
}

fn add_idle(t: &mut IdleMemoryTime, rec: &SandboxRecord, since: Millis, now: Millis) {
    let mb_ms = u128::from(rec.memory_mb) * u128::from(now.since(since));
    if rec.warmth == Warmth::Function {
        t.function_warm_mb_ms += mb_ms;
    } else {
        t.unspecialised_mb_ms += mb_ms;
    }
}

fn last(list: Option<&Vec<SandboxId>>) -> Option<SandboxId> {
    list.and_then(|v| v.last().copied())
}

fn len_u32(v: &[SandboxId]) -> u32 {
    u32::try_from(v.len()).unwrap_or(u32::MAX)
}

fn decrement<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u32>, k: &K) {
    if let Some(n) = m.get_mut(k) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            m.remove(k);
        }
    }
}

fn remove_id<K: std::hash::Hash + Eq>(m: &mut HashMap<K, Vec<SandboxId>>, k: &K, id: SandboxId) {
    if let Some(v) = m.get_mut(k) {
        if let Some(pos) = v.iter().rposition(|x| *x == id) {
            v.remove(pos);
        }
        if v.is_empty() {
            m.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::{on_release, place, BudgetView, ReleaseContext};
    use crate::policy::CapacityPolicy;
    use crate::share::ShareStanding;

    fn python() -> RuntimeProfile {
        RuntimeProfile::new("python3.11", 256)
    }

    fn roomy() -> BudgetView {
        BudgetView {
            limit_mb: 100_000,
            used_mb: 0,
            evictable_mb: 0,
        }
    }

    #[test]
    fn general_sandbox_becomes_the_accounts_and_never_comes_back() {
        let mut inv = Inventory::new();
        let key = WarmPoolKey::runtime_warm(&python());
        let id = inv.allocate_id();
        inv.insert(SandboxRecord::general(id, &key, Millis(0)))
            .unwrap();
        assert_eq!(inv.used_mb(), 256);

        let a = FunctionVersion::new(AccountId::new("a"), "f", "1");
        let b = FunctionVersion::new(AccountId::new("b"), "f", "1");
        let p = python();
        let req_a = PlacementRequest {
            function: &a,
            profile: &p,
            memory_mb: 200,
            now: Millis(1_000),
        };
        let view = inv.view(&req_a, &BTreeMap::from([(key.clone(), 2)]), 0);
        assert_eq!(view.general_idle_runtime_warm, 1);
        let d = place(&req_a, &view, &CapacityPolicy::default(), &roomy());
        assert_eq!(d, PlacementDecision::GeneralRuntime);
        assert_eq!(inv.take(&d, &req_a).unwrap(), id);
        assert_eq!(inv.used_mb(), 200, "limit set to the exact MemorySize");
        let drawn = inv.view(&req_a, &BTreeMap::new(), 0).general_share;
        assert_eq!((drawn.own_draws, drawn.contended), (1, false));
        assert_eq!(inv.general_supply(&key), 0);

        let action = on_release(&ReleaseContext {
            healthy: true,
            function_current: true,
            still_needed: true,
        });
        inv.release(id, action, Millis(2_000)).unwrap();
        let rec = inv.get(id).unwrap();
        assert_eq!(rec.pool, PoolKind::Active);
        assert_eq!(rec.owner, Owner::Account(AccountId::new("a")));
        assert_eq!(
            inv.general_supply(&key),
            0,
            "not back in the general sub-pool"
        );

        // Account b sees nothing of a's sandbox, even for a function of the
        // same name and version.
        let req_b = PlacementRequest {
            function: &b,
            ..req_a
        };
        let vb = inv.view(&req_b, &BTreeMap::from([(key.clone(), 2)]), 0);
        assert_eq!(
            vb,
            PoolView {
                general_pool_size: 2,
                general_runtime_target: 2,
                // a's draw makes the general sub-pool contended for b.
                general_share: ShareStanding {
                    own_draws: 0,
                    all_draws: 1,
                    contended: true,
                },
                ..PoolView::default()
            }
        );
        assert!(inv.take(&PlacementDecision::Warm, &req_b).is_err());
        // Account a finds it warm.
        assert_eq!(
            inv.view(&req_a, &BTreeMap::from([(key.clone(), 2)]), 0)
                .active_idle_function_warm,
            1
        );
        assert_eq!(inv.take(&PlacementDecision::Warm, &req_a).unwrap(), id);
    }

    #[test]
    fn dedicated_function_warm_first_then_unspecialised() {
        let mut inv = Inventory::new();
        let acct = AccountId::new("a");
        let f = FunctionVersion::new(acct.clone(), "f", "1");
        let p = python();
        let key = WarmPoolKey::runtime_warm(&p);
        inv.insert(SandboxRecord::dedicated(
            SandboxId(1),
            acct.clone(),
            &key,
            None,
            Millis(0),
        ))
        .unwrap();
        inv.insert(SandboxRecord::dedicated(
            SandboxId(2),
            acct.clone(),
            &key,
            Some((f.clone(), 256)),
            Millis(0),
        ))
        .unwrap();
        let req = PlacementRequest {
            function: &f,
            profile: &p,
            memory_mb: 256,
            now: Millis(5),
        };
        let v = inv.view(&req, &BTreeMap::new(), 0);
        assert_eq!(v.dedicated_idle_function_warm, 1);
        assert_eq!(v.dedicated_idle_unspecialised, 1);
        let d = place(&req, &v, &CapacityPolicy::default(), &roomy());
        assert_eq!(inv.take(&d, &req).unwrap(), SandboxId(2));
        let d = place(
            &req,
            &inv.view(&req, &BTreeMap::new(), 0),
            &CapacityPolicy::default(),
            &roomy(),
        );
        assert_eq!(
            d,
            PlacementDecision::Dedicated {
                function_warm: false
            }
        );
        assert_eq!(inv.take(&d, &req).unwrap(), SandboxId(1));
        assert_eq!(inv.get(SandboxId(1)).unwrap().pool, PoolKind::Dedicated);
        assert_eq!(inv.dedicated_for_function(&f), 2);
        assert_eq!(inv.dedicated_alive(&acct, 256), 2);
        // Another account's request sees none of them.
        let other = FunctionVersion::new(AccountId::new("b"), "f", "1");
        let req_b = PlacementRequest {
            function: &other,
            ..req
        };
        inv.release(SandboxId(1), ReleaseAction::KeepIdleFunctionWarm, Millis(9))
            .unwrap();
        assert_eq!(inv.view(&req_b, &BTreeMap::new(), 0), PoolView::default());
    }

    #[test]
    fn idle_memory_time_is_accounted() {
        let mut inv = Inventory::new();
        let key = WarmPoolKey::shell_warm(128);
        inv.insert(SandboxRecord::general(SandboxId(1), &key, Millis(0)))
            .unwrap();
        assert_eq!(
            inv.idle_memory_time(Millis(1_000)).unspecialised_mb_ms,
            128 * 1_000
        );
        inv.remove(SandboxId(1), Millis(2_000));
        let t = inv.idle_memory_time(Millis(5_000));
        assert_eq!(t.unspecialised_mb_ms, 128 * 2_000);
        assert_eq!(t.function_warm_mb_ms, 0);
        assert_eq!(inv.used_mb(), 0);
    }

    #[test]
    fn starting_sandboxes_count_as_supply_and_budget() {
        let mut inv = Inventory::new();
        let key = WarmPoolKey::shell_warm(512);
        inv.insert(SandboxRecord::general(SandboxId(3), &key, Millis(0)).starting())
            .unwrap();
        assert_eq!(inv.general_supply(&key), 1);
        assert_eq!(inv.used_mb(), 512);
        assert!(inv.general_idle(&key).is_empty());
        inv.mark_ready(SandboxId(3), Millis(10)).unwrap();
        assert_eq!(inv.general_idle(&key), vec![SandboxId(3)]);
        assert_eq!(inv.general_supply(&key), 1);
        assert_eq!(
            inv.insert(SandboxRecord::general(SandboxId(3), &key, Millis(0))),
            Err(InventoryError::Duplicate(SandboxId(3)))
        );
    }
}
