//! The general share: how much of the general sub-pool one account may draw
//! (ADR 0011).
//!
//! The share protects other accounts under contention; it must never make a
//! lone tenant cold-start. So the [`ShareLedger`] counts *draws within a
//! recent window*, not sandboxes held for life, and the share applies only
//! while the pool is contended:
//!
//! - uncontended (no other account asked the general sub-pool for a sandbox
//!   within the window, whether it got one or found the pool drawn empty):
//!   an account may draw the whole pool;
//! - contended: an account may draw while its draws within the window stay
//!   below its share of the pool's size, or below its share of everything
//!   drawn within the window, whichever is larger. A tenant that drew the
//!   pool empty before a quiet one arrived is held back as soon as the quiet
//!   one asks, until the two have drawn in proportion.
//!
//! Asking counts, not only drawing: a quiet tenant that finds the pool empty
//! and cold-starts has still made it contended, so the pool refills for its
//! next first invokes instead of for the noisy tenant.
//!
//! Pure and clock-injected, like the rest of the capacity logic.

use crate::clock::Millis;
use crate::ids::AccountId;
use std::collections::{HashMap, VecDeque};

/// How long a draw from the general sub-pool counts against its account.
/// Long enough to span a burst and the pool's refill (tens to hundreds of
/// milliseconds), short enough that a tenant who drew heavily a while ago
/// is not penalised for it now.
pub const DEFAULT_SHARE_WINDOW_MS: u64 = 10_000;

/// One account's standing against the general sub-pool at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShareStanding {
    /// This account's draws from the general sub-pool within the window.
    pub own_draws: u32,
    /// Every account's draws within the window (this one's included).
    pub all_draws: u32,
    /// Another account asked the general sub-pool within the window: only
    /// then does the share apply.
    pub contended: bool,
}

/// Recent draws from one general sub-pool, per account.
#[derive(Debug, Clone)]
pub struct ShareLedger {
    window_ms: u64,
    /// Draw times per account, oldest first; entries older than the window
    /// are pruned as new draws arrive and by [`ShareLedger::prune`].
    draws: HashMap<AccountId, VecDeque<Millis>>,
    /// When each account last asked the general sub-pool (drawn or not).
    asked: HashMap<AccountId, Millis>,
}

impl Default for ShareLedger {
    fn default() -> Self {
        Self::new(DEFAULT_SHARE_WINDOW_MS)
    }
}

impl ShareLedger {
    pub fn new(window_ms: u64) -> Self {
        Self {
            window_ms: window_ms.max(1),
            draws: HashMap::new(),
            asked: HashMap::new(),
        }
    }

    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// Whether something that happened at `t` is outside the window at
    /// `now`.
    fn aged(&self, t: Millis, now: Millis) -> bool {
        t.0.saturating_add(self.window_ms) <= now.0
    }

    /// `account` asked the general sub-pool at `now`: a burst request that
    /// no warm or dedicated sandbox served, whether it then drew one or not
    /// (see [`crate::placement::asks_general`]).
    pub fn record_ask(&mut self, account: &AccountId, now: Millis) {
        let t = self.asked.entry(account.clone()).or_insert(now);
        *t = (*t).max(now);
    }

    /// `account` drew a sandbox (or VM) from the general sub-pool at `now`
    /// (which is also an ask).
    pub fn record_draw(&mut self, account: &AccountId, now: Millis) {
        self.record_ask(account, now);
        let window_ms = self.window_ms;
        let times = self.draws.entry(account.clone()).or_default();
        while times
            .front()
            .is_some_and(|t| t.0.saturating_add(window_ms) <= now.0)
        {
            times.pop_front();
        }
        times.push_back(now);
    }

    /// Forgets draws older than the window, and accounts with none left, so
    /// the ledger stays as small as the set of recently drawing accounts.
    pub fn prune(&mut self, now: Millis) {
        let window_ms = self.window_ms;
        let aged = |t: &Millis| t.0.saturating_add(window_ms) <= now.0;
        self.draws.retain(|_, times| {
            while times.front().is_some_and(aged) {
                times.pop_front();
            }
            !times.is_empty()
        });
        self.asked.retain(|_, t| !aged(t));
    }

    /// `account`'s standing at `now`.
    pub fn standing(&self, account: &AccountId, now: Millis) -> ShareStanding {
        let recent = |times: &VecDeque<Millis>| {
            // Sorted oldest first: everything after the first recent one is
            // recent too.
            let old = times.partition_point(|t| self.aged(*t, now));
            u32::try_from(times.len() - old).unwrap_or(u32::MAX)
        };
        let mut s = ShareStanding {
            contended: self
                .asked
                .iter()
                .any(|(a, t)| a != account && !self.aged(*t, now)),
            ..ShareStanding::default()
        };
        for (a, times) in &self.draws {
            let n = recent(times);
            s.all_draws = s.all_draws.saturating_add(n);
            if a == account {
                s.own_draws = n;
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> AccountId {
        AccountId::new(s)
    }

    #[test]
    fn draws_count_only_within_the_window() {
        let mut l = ShareLedger::new(1_000);
        l.record_draw(&a("x"), Millis(0));
        l.record_draw(&a("x"), Millis(500));
        let s = l.standing(&a("x"), Millis(900));
        assert_eq!((s.own_draws, s.all_draws, s.contended), (2, 2, false));
        assert_eq!(l.standing(&a("x"), Millis(1_200)).own_draws, 1);
        assert_eq!(l.standing(&a("x"), Millis(1_500)).own_draws, 0);
    }

    #[test]
    fn another_asker_makes_it_contended() {
        let mut l = ShareLedger::new(1_000);
        l.record_draw(&a("x"), Millis(0));
        assert!(!l.standing(&a("x"), Millis(10)).contended);
        // An account that has not drawn sees the drawer as contention.
        let y = l.standing(&a("y"), Millis(10));
        assert_eq!((y.own_draws, y.all_draws, y.contended), (0, 1, true));
        // y asks and finds nothing: x is contended without y drawing.
        l.record_ask(&a("y"), Millis(20));
        let x = l.standing(&a("x"), Millis(30));
        assert_eq!((x.own_draws, x.all_draws, x.contended), (1, 1, true));
        // Once y's ask ages out, x is alone again.
        l.record_draw(&a("x"), Millis(1_010));
        assert!(!l.standing(&a("x"), Millis(1_030)).contended);
    }

    #[test]
    fn prune_forgets_quiet_accounts() {
        let mut l = ShareLedger::new(1_000);
        l.record_draw(&a("x"), Millis(0));
        l.record_draw(&a("y"), Millis(800));
        l.record_ask(&a("z"), Millis(900));
        l.prune(Millis(1_500));
        assert_eq!((l.draws.len(), l.asked.len()), (1, 2));
        l.prune(Millis(2_000));
        assert!(l.draws.is_empty() && l.asked.is_empty());
    }
}
