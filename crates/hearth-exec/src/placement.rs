//! The active pool's idle function-warm sandboxes, keyed by what they are
//! warm for. The placement decision itself is
//! `hearth_pool::placement::place`; this is the store it draws from.

use crate::instance::Instance;
use std::collections::HashMap;

/// Identifies what a function-warm sandbox is warm *for*: one account's
/// function version at one revision. A sandbox is only ever reused for the
/// same key, so it never serves another account or a changed function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WarmKey {
    pub account_id: String,
    pub function_name: String,
    pub version: String,
    pub revision_id: String,
}

/// Idle function-warm sandboxes by key, most recently used last.
#[derive(Debug, Default)]
pub struct IdlePool {
    by_key: HashMap<WarmKey, Vec<Instance>>,
}

impl IdlePool {
    /// The most recently used idle sandbox warm for `key` (its caches are
    /// warmest), if any.
    pub fn take(&mut self, key: &WarmKey) -> Option<Instance> {
        let list = self.by_key.get_mut(key)?;
        let found = list.pop();
        if list.is_empty() {
            self.by_key.remove(key);
        }
        found
    }

    /// Idle sandboxes warm for `key`.
    pub fn count(&self, key: &WarmKey) -> u32 {
        self.by_key.get(key).map_or(0, |v| v.len() as u32)
    }

    /// Idle sandboxes warm for any version of one account's function.
    pub fn count_function(&self, account_id: &str, function_name: &str) -> u32 {
        self.by_key
            .iter()
            .filter(|(k, _)| k.account_id == account_id && k.function_name == function_name)
            .map(|(_, v)| v.len() as u32)
            .sum()
    }

    /// Memory limits of every idle sandbox, MiB (what eviction could free).
    pub fn memory_mb(&self) -> u64 {
        self.by_key
            .values()
            .flatten()
            .map(|i| u64::from(i.memory_mb))
            .sum()
    }

    /// Removes idle sandboxes in the keep-alive policy's eviction `order`
    /// (then least recently used for any it does not know) until `need_mb`
    /// is freed, or nothing is left.
    pub fn evict_in_order(
        &mut self,
        order: &[hearth_pool::ids::SandboxId],
        need_mb: u64,
    ) -> Vec<Instance> {
        let mut out = Vec::new();
        let mut freed = 0u64;
        for sid in order {
            if freed >= need_mb {
                return out;
            }
            if let Some(i) = self.take_sid(*sid) {
                freed += u64::from(i.memory_mb);
                out.push(i);
            }
        }
        if freed < need_mb {
            out.extend(self.evict_lru(need_mb - freed));
        }
        out
    }

    /// Removes the idle sandbox with this keep-alive id, if it is here.
    pub fn take_sid(&mut self, sid: hearth_pool::ids::SandboxId) -> Option<Instance> {
        let key = self
            .by_key
            .iter()
            .find(|(_, l)| l.iter().any(|i| i.sid == sid))
            .map(|(k, _)| k.clone())?;
        let list = self.by_key.get_mut(&key)?;
        let pos = list.iter().position(|i| i.sid == sid)?;
        let i = list.remove(pos);
        if list.is_empty() {
            self.by_key.remove(&key);
        }
        Some(i)
    }

    /// Removes idle sandboxes, least recently used first, until `need_mb`
    /// is freed (or nothing is left).
    pub fn evict_lru(&mut self, need_mb: u64) -> Vec<Instance> {
        let mut all: Vec<(std::time::Instant, WarmKey, usize)> = Vec::new();
        for (k, list) in &self.by_key {
            for (i, inst) in list.iter().enumerate() {
                all.push((inst.last_used, k.clone(), i));
            }
        }
        all.sort_by_key(|(t, _, _)| *t);
        let mut freed = 0u64;
        let mut chosen: Vec<(WarmKey, std::time::Instant)> = Vec::new();
        for (t, k, _) in all {
            if freed >= need_mb {
                break;
            }
            if let Some(inst) = self
                .by_key
                .get(&k)
                .and_then(|l| l.iter().find(|i| i.last_used == t))
            {
                freed += u64::from(inst.memory_mb);
                chosen.push((k, t));
            }
        }
        let mut out = Vec::new();
        for (k, t) in chosen {
            if let Some(list) = self.by_key.get_mut(&k) {
                if let Some(pos) = list.iter().position(|i| i.last_used == t) {
                    out.push(list.remove(pos));
                }
                if list.is_empty() {
                    self.by_key.remove(&k);
                }
            }
        }
        out
    }

    pub fn put(&mut self, instance: Instance) {
        self.by_key
            .entry(instance.key.clone())
            .or_default()
            .push(instance);
    }

    /// Removes and returns every idle sandbox that matches `pred`.
    pub fn take_where(&mut self, mut pred: impl FnMut(&Instance) -> bool) -> Vec<Instance> {
        let mut out = Vec::new();
        self.by_key.retain(|_, list| {
            let (take, keep): (Vec<_>, Vec<_>) = list.drain(..).partition(|i| pred(i));
            out.extend(take);
            *list = keep;
            !list.is_empty()
        });
        out
    }

    pub fn len(&self) -> usize {
        self.by_key.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}
