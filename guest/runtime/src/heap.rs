//! The heap: talc over the region the VMM gives in `BootInfo`. Everything
//! the engine allocates, the module's linear memory included, lives here.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, Ordering};

use hearth_guest_abi::layout::Region;
use talc::source::Manual;
use talc::TalcLock;

/// The allocator, with a flag raised when it runs dry so that the panic
/// that follows is reported as out-of-memory.
struct Heap {
    talc: TalcLock<spinning_top::RawSpinlock, Manual>,
    exhausted: AtomicBool,
}

#[global_allocator]
static HEAP: Heap = Heap {
    talc: TalcLock::new(Manual),
    exhausted: AtomicBool::new(false),
};

// SAFETY: every method forwards to talc's `GlobalAlloc`, which upholds the
// contract; a null result is passed through unchanged.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.talc.alloc(layout) };
        if p.is_null() {
            self.exhausted.store(true, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.talc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.talc.realloc(ptr, layout, new_size) };
        if p.is_null() {
            self.exhausted.store(true, Ordering::Relaxed);
        }
        p
    }
}

/// Hands the heap region to the allocator. Called once, before anything
/// allocates.
pub fn init(region: Region) {
    // SAFETY: the region is guest RAM the VMM reserved for the heap
    // (`BootInfo`), disjoint from the image, stack, mailbox and I/O
    // regions, and nothing else uses it.
    let claimed = unsafe {
        HEAP.talc
            .lock()
            .claim(region.start as *mut u8, region.len as usize)
    };
    if claimed.is_none() {
        hearth_kernel::console(b"hearth-guest: the heap region is too small\n");
    }
}

/// Heap bytes free now.
pub fn available() -> usize {
    HEAP.talc.lock().counters().available_bytes
}

/// Whether an allocation has failed.
pub fn exhausted() -> bool {
    HEAP.exhausted.load(Ordering::Relaxed)
}
