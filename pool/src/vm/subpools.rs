//! The microVM sub-pools, as data (the node's supervisor holds them under
//! one lock, so a placement decision and the draw it implies are one step):
//!
//! - **general**: VMs restored from a memory class's base snapshot and
//!   warmed, assigned to no account;
//! - **dedicated**: VMs handed to an account ahead of demand, not yet a
//!   function (`hearth capacity set --dedicated`);
//! - **provisioned**: VMs of one function version, parked at its stdin read
//!   (provisioned concurrency): dedicated and function-warm;
//! - **idle**: the active pool's VMs between invocations, function-warm.
//!
//! A VM serves one account for its whole life: what leaves the general
//! sub-pool never comes back to it.

use std::collections::HashMap;
use std::hash::Hash;

/// The sub-pools. `K` names a function version; `V` is the supervisor's VM
/// (a [`PooledVm`](super::lifecycle::PooledVm) with its budget charge and
/// owner).
#[derive(Debug)]
pub struct VmSubPools<K, V> {
    general: HashMap<u32, Vec<V>>,
    dedicated: HashMap<(String, u32), Vec<V>>,
    provisioned: HashMap<K, Vec<V>>,
    idle: HashMap<K, Vec<V>>,
    /// Builds under way, by memory class (general) and by account (dedicated).
    pub building_general: HashMap<u32, u32>,
    /// Dedicated builds under way.
    pub building_dedicated: HashMap<(String, u32), u32>,
    /// Provisioned builds under way.
    pub building_provisioned: HashMap<K, u32>,
}

impl<K, V> Default for VmSubPools<K, V> {
    fn default() -> Self {
        VmSubPools {
            general: HashMap::new(),
            dedicated: HashMap::new(),
            provisioned: HashMap::new(),
            idle: HashMap::new(),
            building_general: HashMap::new(),
            building_dedicated: HashMap::new(),
            building_provisioned: HashMap::new(),
        }
    }
}

fn take<T>(v: Option<&mut Vec<T>>) -> Option<T> {
    v.and_then(Vec::pop)
}

impl<K: Hash + Eq + Clone, V> VmSubPools<K, V> {
    /// General VMs of a memory class.
    pub fn general_idle(&self, class: u32) -> u32 {
        self.general.get(&class).map_or(0, |v| v.len() as u32)
    }

    /// Every general VM.
    pub fn general_total(&self) -> u32 {
        self.general.values().map(|v| v.len() as u32).sum()
    }

    /// Adds a general VM.
    pub fn put_general(&mut self, class: u32, vm: V) {
        self.general.entry(class).or_default().push(vm);
    }

    /// Draws a general VM (the newest: the oldest are the pool's own,
    /// which surplus expiry leaves).
    pub fn take_general(&mut self, class: u32) -> Option<V> {
        take(self.general.get_mut(&class))
    }

    /// Draws up to `n` general VMs of a class above `keep` (surplus).
    pub fn take_general_surplus(&mut self, class: u32, keep: u32) -> Vec<V> {
        let v = self.general.entry(class).or_default();
        let n = v.len().saturating_sub(keep as usize);
        v.drain(..n).collect()
    }

    /// An account's dedicated, unspecialised VMs of a class.
    pub fn dedicated_idle(&self, account: &str, class: u32) -> u32 {
        self.dedicated
            .get(&(account.to_owned(), class))
            .map_or(0, |v| v.len() as u32)
    }

    /// Adds a dedicated VM.
    pub fn put_dedicated(&mut self, account: &str, class: u32, vm: V) {
        self.dedicated
            .entry((account.to_owned(), class))
            .or_default()
            .push(vm);
    }

    /// Draws a dedicated VM.
    pub fn take_dedicated(&mut self, account: &str, class: u32) -> Option<V> {
        take(self.dedicated.get_mut(&(account.to_owned(), class)))
    }

    /// Every (account, class) with dedicated VMs, and how many.
    pub fn dedicated_counts(&self) -> Vec<((String, u32), u32)> {
        self.dedicated
            .iter()
            .map(|(k, v)| (k.clone(), v.len() as u32))
            .collect()
    }

    /// Draws dedicated VMs of (account, class) beyond `keep`.
    pub fn take_dedicated_surplus(&mut self, account: &str, class: u32, keep: u32) -> Vec<V> {
        let v = self
            .dedicated
            .entry((account.to_owned(), class))
            .or_default();
        let n = v.len().saturating_sub(keep as usize);
        v.drain(..n).collect()
    }

    /// Provisioned VMs of a function version, parked.
    pub fn provisioned_idle(&self, key: &K) -> u32 {
        self.provisioned.get(key).map_or(0, |v| v.len() as u32)
    }

    /// Adds a provisioned VM.
    pub fn put_provisioned(&mut self, key: K, vm: V) {
        self.provisioned.entry(key).or_default().push(vm);
    }

    /// Draws a provisioned VM.
    pub fn take_provisioned(&mut self, key: &K) -> Option<V> {
        take(self.provisioned.get_mut(key))
    }

    /// Draws every provisioned VM of keys `keep` rejects, and those beyond
    /// `target(key)` of the others.
    pub fn take_provisioned_surplus(&mut self, target: impl Fn(&K) -> Option<u32>) -> Vec<V> {
        let mut out = Vec::new();
        for (k, v) in &mut self.provisioned {
            let keep = target(k).unwrap_or(0) as usize;
            if v.len() > keep {
                out.extend(v.drain(keep..));
            }
        }
        self.provisioned.retain(|_, v| !v.is_empty());
        out
    }

    /// Every provisioned key, and how many are parked.
    pub fn provisioned_counts(&self) -> Vec<(K, u32)> {
        self.provisioned
            .iter()
            .map(|(k, v)| (k.clone(), v.len() as u32))
            .collect()
    }

    /// Idle function-warm VMs of a function version.
    pub fn idle(&self, key: &K) -> u32 {
        self.idle.get(key).map_or(0, |v| v.len() as u32)
    }

    /// Returns a VM to the active pool's idle list.
    pub fn put_idle(&mut self, key: K, vm: V) {
        self.idle.entry(key).or_default().push(vm);
    }

    /// Draws an idle VM of a function version (the most recently used).
    pub fn take_idle(&mut self, key: &K) -> Option<V> {
        let v = self.idle.get_mut(key)?;
        let vm = v.pop();
        if v.is_empty() {
            self.idle.remove(key);
        }
        vm
    }

    /// Removes the idle VMs `expired` picks (keep-alive, a retired version).
    pub fn take_idle_where(&mut self, mut expired: impl FnMut(&K, &V) -> bool) -> Vec<V> {
        let mut out = Vec::new();
        for (k, v) in &mut self.idle {
            let mut i = 0;
            while i < v.len() {
                if expired(k, &v[i]) {
                    out.push(v.swap_remove(i));
                } else {
                    i += 1;
                }
            }
        }
        self.idle.retain(|_, v| !v.is_empty());
        out
    }

    /// Every idle VM.
    pub fn idle_iter(&self) -> impl Iterator<Item = &V> {
        self.idle.values().flatten()
    }

    /// Every general VM, by memory class (oldest first).
    pub fn general_iter(&self) -> impl Iterator<Item = (u32, &Vec<V>)> {
        self.general.iter().map(|(k, v)| (*k, v))
    }

    /// Every dedicated VM, by (account, memory class).
    pub fn dedicated_iter(&self) -> impl Iterator<Item = (&(String, u32), &Vec<V>)> {
        self.dedicated.iter()
    }

    /// Every provisioned VM, by function version.
    pub fn provisioned_iter(&self) -> impl Iterator<Item = (&K, &Vec<V>)> {
        self.provisioned.iter()
    }

    /// Removes the provisioned VMs `pick` chooses.
    pub fn take_provisioned_where(&mut self, mut pick: impl FnMut(&K, &V) -> bool) -> Vec<V> {
        let mut out = Vec::new();
        for (k, v) in &mut self.provisioned {
            let mut i = 0;
            while i < v.len() {
                if pick(k, &v[i]) {
                    out.push(v.swap_remove(i));
                } else {
                    i += 1;
                }
            }
        }
        self.provisioned.retain(|_, v| !v.is_empty());
        out
    }

    /// Every idle VM.
    pub fn idle_total(&self) -> u32 {
        self.idle.values().map(|v| v.len() as u32).sum()
    }

    /// Every VM held, of every sub-pool (for shutdown).
    pub fn drain_all(&mut self) -> Vec<V> {
        let mut out = Vec::new();
        for (_, v) in self.general.drain() {
            out.extend(v);
        }
        for (_, v) in self.dedicated.drain() {
            out.extend(v);
        }
        for (_, v) in self.provisioned.drain() {
            out.extend(v);
        }
        for (_, v) in self.idle.drain() {
            out.extend(v);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_and_surplus() {
        let mut p: VmSubPools<&str, u32> = VmSubPools::default();
        for i in 0..3 {
            p.put_general(128, i);
        }
        assert_eq!(p.general_idle(128), 3);
        assert_eq!(p.take_general_surplus(128, 1).len(), 2);
        assert_eq!(p.take_general(128), Some(2), "surplus drops the oldest");
        assert_eq!(p.take_general(128), None);
        p.put_idle("f:1", 7);
        p.put_idle("f:1", 8);
        assert_eq!(p.take_idle(&"f:1"), Some(8));
        assert_eq!(p.take_idle_where(|_, v| *v == 7), vec![7]);
        assert_eq!(p.idle_total(), 0);
        p.put_provisioned("f:2", 1);
        p.put_provisioned("f:2", 2);
        assert_eq!(p.take_provisioned_surplus(|_| Some(1)).len(), 1);
        assert_eq!(p.provisioned_idle(&"f:2"), 1);
        p.put_dedicated("a", 128, 5);
        assert_eq!(p.dedicated_idle("a", 128), 1);
        assert_eq!(p.drain_all().len(), 2);
    }
}
