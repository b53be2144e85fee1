//! The guest-physical memory map. The VMM identity-maps it (virtual =
//! physical) with page tables it builds itself.
//!
//! ```text
//! 0x0000_0000  page 0: not present, so a null pointer faults
//! 0x0000_1000  GDT and TSS                                  supervisor
//! 0x0000_2000  IDT                                          supervisor
//! 0x0000_3000  page tables (16 pages)                       supervisor
//! 0x0001_3000  kernel stack (RSP0), then double-fault stack supervisor
//! 0x0002_0000  mailbox page                                 user
//! 0x0002_1000  config blob: arguments and environment       user
//! 0x000F_F000  stack guard page: not present
//! 0x0010_0000  the guest runtime's stack (1 MiB, grows down) user
//! 0x0040_0000  the guest image (ELF), then per `Layout`:    user
//!              event, stdout, stderr, heap
//! 64 GiB       the module window (read-only), a memory slot of its own
//! 65 GiB       the files window (read-only): file images, a slot each
//! ```
//!
//! Everything below [`USER_START`] is mapped supervisor-only: ring 3, where
//! the guest runtime and the modules it runs live, cannot reach the
//! descriptor tables, the page tables or the kernel stacks.

/// Size of a page, everywhere in this ABI.
pub const PAGE_SIZE: u64 = 4096;

/// The GDT (null, kernel code, kernel data, user data, user code, TSS).
pub const GDT_GPA: u64 = 0x1000;
/// The TSS, in the GDT's page after the descriptors.
pub const TSS_GPA: u64 = 0x1800;
/// The IDT: 32 exception gates.
pub const IDT_GPA: u64 = 0x2000;
/// First page-table page (the PML4); the rest follow.
pub const PAGE_TABLES_GPA: u64 = 0x3000;
/// Page-table pages reserved. PML4, PDPT, the first 2 MiB's PT, the module
/// and files windows' PDs, and one PD per GiB of RAM.
pub const PAGE_TABLE_PAGES: u64 = 16;
/// Bottom of the kernel stack; its top is [`KERNEL_STACK_TOP`] (TSS.RSP0).
pub const KERNEL_STACK_GPA: u64 = 0x13000;
/// Where an exception from ring 3 starts its ring-0 stack.
pub const KERNEL_STACK_TOP: u64 = 0x17000;
/// Top of the double-fault stack (TSS.IST1).
pub const DOUBLE_FAULT_STACK_TOP: u64 = 0x19000;
/// First user-accessible address.
pub const USER_START: u64 = 0x20000;

/// The mailbox page shared by the guest and the VMM.
pub const MAILBOX_GPA: u64 = 0x20000;
/// The config blob (see [`crate::config`]).
pub const CONFIG_GPA: u64 = 0x21000;
/// The config blob's capacity.
pub const CONFIG_CAP: u64 = 0x40000 - CONFIG_GPA;

/// Where the guest image is linked (`--image-base`).
pub const IMAGE_BASE: u64 = 0x40_0000;

/// The entry header: the guest image's entry point is a jump over it, and
/// it lies this many bytes after the entry point. It names the ring-0
/// exception handlers, from which the VMM builds the IDT.
pub const ENTRY_HEADER_OFFSET: u64 = 16;
/// The entry header's first quadword: "HKRNVEC1".
pub const ENTRY_HEADER_MAGIC: u64 = u64::from_le_bytes(*b"HKRNVEC1");
/// Exception vectors with a handler in the entry header, after the magic.
pub const EXCEPTION_VECTORS: usize = 32;

/// The module window: the function's module, mapped read-only from its
/// content-addressed file as a memory slot of its own (never copied).
pub const MODULE_WINDOW_GPA: u64 = 0x10_0000_0000;
/// The largest module the window holds.
pub const MODULE_WINDOW_SIZE: u64 = 1 << 30;

/// The files window: read-only file images (the function's code, a
/// runtime's library, layers; see [`crate::files`]), each mapped from its
/// content-addressed file as a memory slot of its own at a
/// [`FILES_ALIGN`]-aligned offset, shared by every VM and never copied.
/// The config blob's mount table says where each lies.
pub const FILES_WINDOW_GPA: u64 = 0x10_4000_0000;
/// The files window's size.
pub const FILES_WINDOW_SIZE: u64 = 1 << 30;
/// File images start at multiples of this in the files window (the page
/// tables map it with 2 MiB pages).
pub const FILES_ALIGN: u64 = 2 << 20;

/// The stack's guard page: not present, so an overflow faults. It lies in
/// the first 2 MiB, which the VMM maps with 4 KiB pages.
pub const STACK_GUARD_GPA: u64 = 0xF_F000;
/// Bottom of the guest runtime's stack.
pub const STACK_GPA: u64 = 0x10_0000;
/// Top of the guest runtime's stack (the initial RSP).
pub const STACK_TOP: u64 = 0x20_0000;
/// The part mapped with 4 KiB pages (the rest uses 2 MiB pages).
pub const SMALL_PAGES_END: u64 = 0x20_0000;
/// The event's capacity: Lambda's 6 MB synchronous payload limit.
pub const EVENT_CAP: u64 = 6 * 1024 * 1024;
/// Stdout's capacity: Lambda's 6 MB response limit. More is an error.
pub const STDOUT_CAP: u64 = 6 * 1024 * 1024;
/// Stderr's capacity per invocation. More is dropped and counted.
pub const STDERR_CAP: u64 = 1024 * 1024;
/// The least heap a VM gets.
pub const MIN_HEAP: u64 = 16 * 1024 * 1024;

/// Smallest VM memory, in MiB.
pub const MIN_MEMORY_MIB: u64 = 64;
/// Largest VM memory, in MiB (Lambda's limit; the page tables are sized
/// for 11 GiB).
pub const MAX_MEMORY_MIB: u64 = 10240;

/// A range of guest-physical memory, `[start, start + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Region {
    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.start + self.len
    }

    /// Whether `[addr, addr + len)` lies inside this region.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= self.start && addr.checked_add(len).is_some_and(|e| e <= self.end())
    }
}

/// Where the per-VM regions go, computed by the VMM from the memory size and
/// the end of the loaded image, and handed to the guest in `BootInfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Total guest RAM in bytes (RAM starts at 0).
    pub mem_size: u64,
    /// The event, written by the VMM before an invocation.
    pub event: Region,
    /// What the module writes to stdout.
    pub stdout: Region,
    /// What the module writes to stderr.
    pub stderr: Region,
    /// The guest runtime's heap: the engine, the module's linear memory.
    pub heap: Region,
}

/// Why a layout cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The memory size is outside `MIN_MEMORY_MIB..=MAX_MEMORY_MIB` or not
    /// a whole number of MiB.
    MemorySize,
    /// The image ends below its base or too high to leave room.
    Image,
}

const fn align_up(v: u64) -> u64 {
    (v + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

impl Layout {
    /// The layout of a VM with `mem_size` bytes of RAM whose image ends at
    /// `image_end`.
    pub fn new(mem_size: u64, image_end: u64) -> Result<Layout, LayoutError> {
        let mib = mem_size / (1024 * 1024);
        if !mem_size.is_multiple_of(1024 * 1024)
            || !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib)
        {
            return Err(LayoutError::MemorySize);
        }
        // The image must leave room for the regions and the least heap;
        // checked first, so nothing below can overflow.
        if image_end < IMAGE_BASE || image_end > mem_size {
            return Err(LayoutError::Image);
        }
        let event = Region {
            start: align_up(image_end),
            len: EVENT_CAP,
        };
        let stdout = Region {
            start: event.end(),
            len: STDOUT_CAP,
        };
        let stderr = Region {
            start: stdout.end(),
            len: STDERR_CAP,
        };
        let heap_start = stderr.end();
        if heap_start.saturating_add(MIN_HEAP) > mem_size {
            return Err(LayoutError::Image);
        }
        let heap = Region {
            start: heap_start,
            len: mem_size - heap_start,
        };
        Ok(Layout {
            mem_size,
            event,
            stdout,
            stderr,
            heap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_ordered_and_disjoint() {
        let l = Layout::new(128 << 20, IMAGE_BASE + 0x12345).unwrap();
        assert_eq!(l.event.start % PAGE_SIZE, 0);
        assert!(l.event.start >= IMAGE_BASE + 0x12345);
        assert_eq!(l.stdout.start, l.event.end());
        assert_eq!(l.stderr.start, l.stdout.end());
        assert_eq!(l.heap.start, l.stderr.end());
        assert_eq!(l.heap.end(), 128 << 20);
    }

    #[test]
    fn memory_size_is_checked() {
        assert_eq!(
            Layout::new(32 << 20, IMAGE_BASE),
            Err(LayoutError::MemorySize)
        );
        assert_eq!(
            Layout::new((128 << 20) + 1, IMAGE_BASE),
            Err(LayoutError::MemorySize)
        );
        assert_eq!(
            Layout::new(20480 << 20, IMAGE_BASE),
            Err(LayoutError::MemorySize)
        );
        assert_eq!(Layout::new(64 << 20, 60 << 20), Err(LayoutError::Image));
        assert_eq!(Layout::new(128 << 20, 0), Err(LayoutError::Image));
        assert_eq!(Layout::new(128 << 20, u64::MAX), Err(LayoutError::Image));
        assert_eq!(
            Layout::new(128 << 20, u64::MAX - 4095),
            Err(LayoutError::Image)
        );
    }

    #[test]
    fn region_contains_is_overflow_safe() {
        let r = Region {
            start: 0x1000,
            len: 0x1000,
        };
        assert!(r.contains(0x1000, 0x1000));
        assert!(!r.contains(0x1000, 0x1001));
        assert!(!r.contains(u64::MAX, 2));
        assert!(!r.contains(0xfff, 1));
    }
}
