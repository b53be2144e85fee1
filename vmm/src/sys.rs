//! The VMM's raw system calls, in one place: mappings, `madvise`, the
//! `PAGEMAP_SCAN` ioctl, per-thread timers and the vCPU kick signal. Every
//! other module is safe Rust over these and the rust-vmm crates.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::ptr::NonNull;
use std::sync::OnceLock;

/// A page.
pub const PAGE: usize = 4096;

/// An anonymous or file mapping that is unmapped when dropped.
#[derive(Debug)]
pub struct Mapping {
    addr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; the raw pointer
// is never aliased by safe code outside the methods below.
unsafe impl Send for Mapping {}
// SAFETY: as above; shared access only reads the address and length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// A private anonymous read-write mapping that reserves no swap: reads
    /// of untouched pages see the shared zero page.
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping at an address the kernel picks; no
        // existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        Self::from_raw(p, len)
    }

    /// A mapping of `len` bytes of `file` from `offset`.
    pub fn file(
        file: &File,
        offset: u64,
        len: usize,
        writable: bool,
        shared: bool,
    ) -> io::Result<Mapping> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        let flags = if shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE | libc::MAP_NORESERVE
        };
        // SAFETY: a fresh mapping at an address the kernel picks.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                flags,
                file.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        Self::from_raw(p, len)
    }

    fn from_raw(p: *mut libc::c_void, len: usize) -> io::Result<Mapping> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let addr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { addr, len })
    }

    /// Replaces `[at, at + len)` of this mapping with a private
    /// (copy-on-write) read-write view of `file` from `offset`.
    pub fn overlay_private(
        &self,
        at: usize,
        len: usize,
        file: &File,
        offset: u64,
    ) -> io::Result<()> {
        if at.checked_add(len).is_none_or(|end| end > self.len)
            || !at.is_multiple_of(PAGE)
            || !len.is_multiple_of(PAGE)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "overlay outside the mapping",
            ));
        }
        // SAFETY: the target range lies inside this mapping (checked above),
        // which this value owns; MAP_FIXED replaces only those pages.
        let p = unsafe {
            libc::mmap(
                self.addr.as_ptr().add(at).cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_NORESERVE,
                file.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Drops the private copies of `[at, at + len)`: file-backed pages read
    /// their file again, anonymous ones read zero.
    pub fn discard(&self, at: usize, len: usize) -> io::Result<()> {
        if at.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "discard outside the mapping",
            ));
        }
        // SAFETY: the range lies inside this mapping (checked above).
        let r =
            unsafe { libc::madvise(self.addr.as_ptr().add(at).cast(), len, libc::MADV_DONTNEED) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Asks the kernel to fault `[at, at + len)` in for writing now
    /// (`MADV_POPULATE_WRITE`), as a pool does before a request arrives.
    pub fn populate_write(&self, at: usize, len: usize) -> io::Result<()> {
        if at.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "populate outside the mapping",
            ));
        }
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        // SAFETY: the range lies inside this mapping (checked above).
        let r =
            unsafe { libc::madvise(self.addr.as_ptr().add(at).cast(), len, MADV_POPULATE_WRITE) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Keeps transparent huge pages out of the mapping: a guest page is
    /// copied on write 4 KiB at a time, not 2 MiB (with THP on, one write
    /// could copy 512 pages).
    pub fn no_huge_pages(&self) -> io::Result<()> {
        // SAFETY: the range is exactly this mapping.
        let r =
            unsafe { libc::madvise(self.addr.as_ptr().cast(), self.len, libc::MADV_NOHUGEPAGE) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Faults `[at, at + len)` in for reading now (`MADV_POPULATE_READ`):
    /// the host page tables then point at the snapshot's page-cache pages,
    /// without copying them.
    pub fn populate_read(&self, at: usize, len: usize) -> io::Result<()> {
        if at.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "populate outside the mapping",
            ));
        }
        const MADV_POPULATE_READ: libc::c_int = 22;
        // SAFETY: the range lies inside this mapping (checked above).
        let r =
            unsafe { libc::madvise(self.addr.as_ptr().add(at).cast(), len, MADV_POPULATE_READ) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The mapping's start, for the KVM memory slot and vm-memory.
    pub fn as_ptr(&self) -> *mut u8 {
        self.addr.as_ptr()
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: this value owns the mapping; nothing refers to it after
        // drop (the KVM slot and vm-memory views are dropped first by their
        // owners, see `Vm`'s field order).
        unsafe {
            libc::munmap(self.addr.as_ptr().cast(), self.len);
        }
    }
}

/// A whole file mapped read-only, readable as a byte slice.
#[derive(Debug)]
pub struct FileView {
    map: Mapping,
    len: usize,
}

impl FileView {
    /// Maps all of `file` read-only (an empty file is not mapped).
    pub fn new(file: &File) -> io::Result<FileView> {
        let len = file.metadata()?.len() as usize;
        let map = Mapping::file(file, 0, len.max(1), false, false)?;
        Ok(FileView { map, len })
    }

    /// The file's bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is a live, read-only, private view of `len`
        // bytes of a file that Hearth never writes in place or truncates
        // (snapshots are replaced by rename, which leaves this mapping on
        // the old inode); nothing can write through it.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.len) }
    }
}

/// A memfd of `len` bytes (zero-filled, backed by the page cache only).
pub fn memfd(name: &str, len: u64) -> io::Result<File> {
    let cname =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a fresh file descriptor from a valid C string.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(len)?;
    Ok(file)
}

// PAGEMAP_SCAN (Linux 6.7): walks a range of this process's page tables and
// returns the runs of pages in given categories. Not in the libc crate yet.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

const PAGE_IS_FILE: u64 = 1 << 2;
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_SWAPPED: u64 = 1 << 4;
const PAGE_IS_PFNZERO: u64 = 1 << 5;
/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: libc::c_ulong =
    (3 << 30) | ((std::mem::size_of::<PmScanArg>() as libc::c_ulong) << 16) | (0x66 << 8) | 16;

/// The process's pagemap, opened once.
pub struct Pagemap(File);

impl std::fmt::Debug for Pagemap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pagemap")
    }
}

impl Pagemap {
    /// Opens `/proc/self/pagemap`.
    pub fn open() -> io::Result<Pagemap> {
        Ok(Pagemap(File::open("/proc/self/pagemap")?))
    }

    /// The pages of `[addr, addr + len)` present in this process's page
    /// tables (read or written), as (offset, len) runs relative to `addr`.
    pub fn present_pages(
        &self,
        addr: *const u8,
        len: usize,
        out: &mut Vec<(usize, usize)>,
    ) -> io::Result<()> {
        self.scan(addr, len, 0, PAGE_IS_PRESENT, 0, out)
    }

    /// The pages of `[addr, addr + len)` that this process wrote since they
    /// were mapped or last discarded: present, private (anonymous), and not
    /// the shared zero page. For a copy-on-write mapping of a snapshot,
    /// exactly the pages copied on write. Appends `(offset, len)` runs
    /// relative to `addr` to `out`.
    pub fn private_pages(
        &self,
        addr: *const u8,
        len: usize,
        out: &mut Vec<(usize, usize)>,
    ) -> io::Result<()> {
        // Present or swapped out (a written page may be on swap, or a
        // migration entry, when the scan runs), and neither a file page nor
        // the zero page.
        self.scan(
            addr,
            len,
            PAGE_IS_FILE | PAGE_IS_PFNZERO,
            PAGE_IS_FILE | PAGE_IS_PFNZERO,
            PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            out,
        )
    }

    /// Appends the runs of pages of `[addr, addr + len)` whose categories,
    /// flipped by `inverted`, have every bit of `mask` and (if non-zero) one
    /// of `anyof`.
    fn scan(
        &self,
        addr: *const u8,
        len: usize,
        inverted: u64,
        mask: u64,
        anyof: u64,
        out: &mut Vec<(usize, usize)>,
    ) -> io::Result<()> {
        let mut regions = [PageRegion::default(); 256];
        let base = addr as u64;
        let end = base + len as u64;
        let mut start = base;
        while start < end {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                start,
                end,
                vec: regions.as_mut_ptr() as u64,
                vec_len: regions.len() as u64,
                category_inverted: inverted,
                category_mask: mask,
                category_anyof_mask: anyof,
                return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                ..PmScanArg::default()
            };
            // SAFETY: `arg` is a valid pm_scan_arg whose `vec` points at
            // `regions`, which has room for `vec_len` entries; the kernel
            // writes at most that many and updates `walk_end`.
            let n = unsafe { libc::ioctl(self.0.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            for r in &regions[..n as usize] {
                out.push(((r.start - base) as usize, (r.end - r.start) as usize));
            }
            if arg.walk_end <= start {
                break;
            }
            start = arg.walk_end;
        }
        Ok(())
    }
}

// The vCPU kick: a real-time signal whose handler sets `immediate_exit` in
// the vCPU's `kvm_run`, so a `KVM_RUN` in progress returns with EINTR and
// one about to start returns at once. The handler finds the `kvm_run` of the
// thread it interrupts through a thread-local pointer.
thread_local! {
    static KICK_TARGET: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

/// The kick signal.
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // `try_with`: a signal during thread teardown finds no target.
    let _ = KICK_TARGET.try_with(|t| {
        let p = t.get();
        if !p.is_null() {
            // SAFETY: the pointer is set by `KickGuard` to the
            // `immediate_exit` byte of the kvm_run mapping of the vCPU this
            // thread is running, and cleared before that mapping can go.
            unsafe { std::ptr::write_volatile(p, 1) };
        }
    });
}

/// Installs the kick handler (once per process; a failure is reported to
/// every caller, since a kick without the handler would kill the process).
pub fn install_kick_handler() -> io::Result<()> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
                .map_err(|e| e.errno())
        })
        .map_err(io::Error::from_raw_os_error)
}

/// While alive, a kick of this thread sets `immediate_exit` at `target`.
#[derive(Debug)]
pub struct KickGuard(());

impl KickGuard {
    /// Points this thread's kick at the `immediate_exit` byte `target`.
    pub fn new(target: *mut u8) -> KickGuard {
        KICK_TARGET.with(|t| t.set(target));
        KickGuard(())
    }
}

impl Drop for KickGuard {
    fn drop(&mut self) {
        KICK_TARGET.with(|t| t.set(std::ptr::null_mut()));
    }
}

/// A one-shot timer that sends the kick signal to the thread that created
/// it. Neither `Send` nor `Sync` (the raw `timer_t` makes it so): armed from
/// another thread it would kick the wrong one, and a deadline would pass
/// unnoticed.
#[derive(Debug)]
pub struct ThreadTimer {
    id: libc::timer_t,
}

impl ThreadTimer {
    /// A timer on `CLOCK_MONOTONIC` that signals the calling thread.
    pub fn for_this_thread() -> io::Result<ThreadTimer> {
        // SAFETY: zero is a valid bit pattern for sigevent.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = kick_signal();
        // SAFETY: gettid has no preconditions.
        sev.sigev_notify_thread_id = unsafe { libc::syscall(libc::SYS_gettid) } as libc::c_int;
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: valid pointers to a sigevent and a timer id.
        let r = unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ThreadTimer { id })
    }

    /// Fires once at the absolute monotonic time `at_ns` (0 disarms).
    pub fn arm_at(&self, at_ns: u64) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (at_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: a valid timer id and itimerspec.
        let r = unsafe {
            libc::timer_settime(self.id, libc::TIMER_ABSTIME, &spec, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for ThreadTimer {
    fn drop(&mut self) {
        // SAFETY: the id came from timer_create and is deleted once.
        unsafe {
            libc::timer_delete(self.id);
        }
    }
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and timespec pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `CLOCK_MONOTONIC`, ns.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_REALTIME`, ns.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// The calling thread's CPU time, ns (guest time on a vCPU thread counts).
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}
