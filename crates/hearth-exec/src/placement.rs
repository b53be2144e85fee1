//! Where an invocation runs (the simple form: reuse an idle function-warm
//! sandbox of the same version, else start one cold). The capacity issue
//! replaces this with warm pools; the decision stays in this one function.

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

/// The outcome of placement.
#[derive(Debug)]
pub enum Placement {
    /// An idle function-warm sandbox of this version.
    Warm(Box<Instance>),
    /// Nothing warm: start a sandbox.
    Cold,
}

impl IdlePool {
    /// The one placement decision: the most recently used idle sandbox of
    /// this key (its caches are warmest), else a cold start.
    pub fn place(&mut self, key: &WarmKey) -> Placement {
        let Some(list) = self.by_key.get_mut(key) else {
            return Placement::Cold;
        };
        let found = list.pop();
        if list.is_empty() {
            self.by_key.remove(key);
        }
        found.map_or(Placement::Cold, |i| Placement::Warm(Box::new(i)))
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
