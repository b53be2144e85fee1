//! Per-sandbox uids: `uid_base + n`, never one that a live sandbox holds.

use std::collections::HashSet;

/// How many uids the allocator cycles through above its base.
const SPAN: u32 = 1 << 20;

#[derive(Debug)]
pub(crate) struct UidAllocator {
    base: u32,
    span: u32,
    next: u32,
    live: HashSet<u32>,
}

impl UidAllocator {
    pub(crate) fn new(base: u32) -> UidAllocator {
        // Stay below the "no uid" value (u32::MAX) and the 16-bit overflow
        // uid's neighbourhood is skipped in `alloc`.
        let span = SPAN.min(u32::MAX - 1 - base.min(u32::MAX - 2));
        UidAllocator {
            base,
            span: span.max(1),
            next: 0,
            live: HashSet::new(),
        }
    }

    /// A uid no live sandbox has, or `None` when all are taken.
    pub(crate) fn alloc(&mut self) -> Option<u32> {
        for _ in 0..self.span {
            let uid = self.base.checked_add(self.next)?;
            self.next = (self.next + 1) % self.span;
            if uid == 0 || uid == 65_534 || self.live.contains(&uid) {
                continue;
            }
            self.live.insert(uid);
            return Some(uid);
        }
        None
    }

    pub(crate) fn release(&mut self, uid: u32) {
        self.live.remove(&uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_unique_among_live_sandboxes_and_reused_after_release() {
        let mut a = UidAllocator::new(200_000);
        let x = a.alloc().unwrap();
        let y = a.alloc().unwrap();
        assert_eq!((x, y), (200_000, 200_001));
        a.release(x);
        // Not immediately reused: the counter moves on.
        assert_eq!(a.alloc(), Some(200_002));
    }

    #[test]
    fn a_full_range_is_refused_and_wraps_around_live_ones() {
        let mut a = UidAllocator::new(200_000);
        a.span = 3;
        let got: Vec<u32> = (0..3).map(|_| a.alloc().unwrap()).collect();
        assert_eq!(got, [200_000, 200_001, 200_002]);
        assert_eq!(a.alloc(), None);
        a.release(200_001);
        assert_eq!(a.alloc(), Some(200_001));
    }

    #[test]
    fn never_root_or_nobody() {
        let mut a = UidAllocator::new(65_533);
        assert_eq!(a.alloc(), Some(65_533));
        assert_eq!(a.alloc(), Some(65_535));
        let mut z = UidAllocator::new(0);
        assert_eq!(z.alloc(), Some(1));
    }
}
