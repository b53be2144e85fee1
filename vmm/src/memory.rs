//! Guest RAM and the module window.
//!
//! RAM is one host mapping at guest-physical 0, seen by the VMM only
//! through vm-memory's bounds-checked `GuestMemoryMmap`. It comes in two
//! kinds:
//!
//! - **fresh** (a booted VM): a memfd, mapped shared. Its data extents are
//!   what a base snapshot writes.
//! - **restored** (a VM from a snapshot): an anonymous private mapping (zero
//!   pages) with each of the snapshot's page runs mapped over it
//!   `MAP_PRIVATE` from the snapshot file, then the runs of a function
//!   layer over those. Every VM restored from one snapshot shares its pages
//!   through the page cache until it writes one; a write copies that page
//!   into the VM alone.
//!
//! The pages a restored VM copied are found with `PAGEMAP_SCAN` (present,
//! private, not the zero page): that count is the "pages copied on write"
//! figure, the content of a function layer, and what a reset drops with
//! `madvise(MADV_DONTNEED)`.

use std::fs::File;

use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

use crate::sys::{self, Mapping, Pagemap, PAGE};

/// Why guest memory could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// A host mapping failed.
    #[error("mapping guest memory: {0}")]
    Map(#[source] std::io::Error),
    /// vm-memory refused the region.
    #[error("describing guest memory: {0}")]
    Region(String),
    /// Reading the page tables of this process failed.
    #[error("scanning guest pages: {0}")]
    Scan(#[source] std::io::Error),
}

/// One run of pages to map from a snapshot file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRun {
    /// Guest-physical address (page-aligned).
    pub gpa: u64,
    /// Length in bytes (whole pages).
    pub len: u64,
    /// Offset in the file (page-aligned).
    pub file_offset: u64,
}

#[derive(Debug)]
enum Backing {
    Memfd(File),
    Restored,
}

/// A VM's RAM. Field order matters: the vm-memory view drops before the
/// mapping it points into.
#[derive(Debug)]
pub struct GuestRam {
    mem: GuestMemoryMmap,
    map: Mapping,
    backing: Backing,
}

fn view(map: &Mapping, flags: i32) -> Result<GuestMemoryMmap, MemoryError> {
    #[allow(unsafe_code)]
    // SAFETY: `map` is a live read-write mapping of exactly `map.len()`
    // bytes that outlives the view (field order in `GuestRam`); vm-memory
    // does not unmap a raw region.
    let region = unsafe {
        MmapRegion::build_raw(
            map.as_ptr(),
            map.len(),
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
        )
    }
    .map_err(|e| MemoryError::Region(e.to_string()))?;
    let region = GuestRegionMmap::new(region, GuestAddress(0)).ok_or_else(|| {
        MemoryError::Region("the RAM region does not fit the address space".into())
    })?;
    GuestMemoryMmap::from_regions(vec![region]).map_err(|e| MemoryError::Region(e.to_string()))
}

impl GuestRam {
    /// Zeroed RAM of `size` bytes in a memfd (for booting).
    pub fn fresh(size: u64) -> Result<GuestRam, MemoryError> {
        let file = sys::memfd("hearth-vm-ram", size).map_err(MemoryError::Map)?;
        let map = Mapping::file(&file, 0, size as usize, true, true).map_err(MemoryError::Map)?;
        map.no_huge_pages().map_err(MemoryError::Map)?;
        let mem = view(&map, libc::MAP_SHARED)?;
        Ok(GuestRam {
            mem,
            map,
            backing: Backing::Memfd(file),
        })
    }

    /// RAM of `size` bytes restored from snapshot files: zero everywhere,
    /// then each file's runs mapped copy-on-write over it, in order (a
    /// function layer after its base).
    pub fn restored(size: u64, layers: &[(&File, &[FileRun])]) -> Result<GuestRam, MemoryError> {
        let map = Mapping::anonymous(size as usize).map_err(MemoryError::Map)?;
        for (file, runs) in layers {
            for r in runs.iter() {
                map.overlay_private(r.gpa as usize, r.len as usize, file, r.file_offset)
                    .map_err(MemoryError::Map)?;
            }
        }
        let mem = view(&map, libc::MAP_PRIVATE)?;
        Ok(GuestRam {
            mem,
            map,
            backing: Backing::Restored,
        })
    }

    /// Maps a snapshot file's runs copy-on-write over restored RAM, in
    /// place (a pooled VM adopting a function layer): their pages read the
    /// file again, shared through the page cache, whatever the VM held
    /// there before. KVM's MMU notifier drops its mappings of the replaced
    /// pages.
    pub fn overlay(&self, file: &File, runs: &[FileRun]) -> Result<(), MemoryError> {
        if !self.is_restored() {
            return Err(MemoryError::Map(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "only restored RAM takes an overlay",
            )));
        }
        for r in runs {
            self.map
                .overlay_private(r.gpa as usize, r.len as usize, file, r.file_offset)
                .map_err(MemoryError::Map)?;
        }
        Ok(())
    }

    /// The bounds-checked view the VMM reads and writes through.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// RAM size in bytes.
    pub fn size(&self) -> u64 {
        self.map.len() as u64
    }

    /// The host address of guest-physical 0, for the KVM memory slot.
    pub(crate) fn host_addr(&self) -> u64 {
        self.map.as_ptr() as u64
    }

    /// The memfd of a fresh VM.
    pub(crate) fn memfd(&self) -> Option<&File> {
        match &self.backing {
            Backing::Memfd(f) => Some(f),
            Backing::Restored => None,
        }
    }

    /// Whether this RAM was restored from a snapshot.
    pub fn is_restored(&self) -> bool {
        matches!(self.backing, Backing::Restored)
    }

    /// The runs of pages this VM has written since it was restored or last
    /// reset, as (guest-physical address, length).
    pub fn private_pages(&self, pagemap: &Pagemap) -> Result<Vec<(u64, u64)>, MemoryError> {
        let mut runs = Vec::new();
        pagemap
            .private_pages(self.map.as_ptr(), self.map.len(), &mut runs)
            .map_err(MemoryError::Scan)?;
        Ok(runs
            .into_iter()
            .map(|(a, l)| (a as u64, l as u64))
            .collect())
    }

    /// The runs of pages present in the host page tables (read or
    /// written): after a run, the pages the guest touched.
    pub fn present_pages(&self, pagemap: &Pagemap) -> Result<Vec<(u64, u64)>, MemoryError> {
        let mut runs = Vec::new();
        pagemap
            .present_pages(self.map.as_ptr(), self.map.len(), &mut runs)
            .map_err(MemoryError::Scan)?;
        Ok(runs
            .into_iter()
            .map(|(a, l)| (a as u64, l as u64))
            .collect())
    }

    /// Drops the private copies of these runs: they read the snapshot again.
    pub fn discard(&self, runs: &[(u64, u64)]) -> Result<(), MemoryError> {
        for &(gpa, len) in runs {
            self.map
                .discard(gpa as usize, len as usize)
                .map_err(MemoryError::Map)?;
        }
        Ok(())
    }

    /// Maps `[gpa, gpa + len)` into the host page tables now, read-only
    /// (no copy): KVM then finds the pages without a host fault, and
    /// prefetches neighbours when the guest faults on one.
    pub fn populate_read(&self, gpa: u64, len: u64) -> Result<(), MemoryError> {
        self.map
            .populate_read(gpa as usize, len as usize)
            .map_err(MemoryError::Map)
    }

    /// Faults `[gpa, gpa + len)` in for writing now, so that the guest's
    /// first writes there cost no copy-on-write exit.
    pub fn prefault(&self, gpa: u64, len: u64) -> Result<(), MemoryError> {
        let start = gpa as usize & !(PAGE - 1);
        let end = gpa
            .checked_add(len)
            .ok_or_else(|| MemoryError::Map(std::io::ErrorKind::InvalidInput.into()))?
            as usize;
        self.map
            .populate_write(start, end.div_ceil(PAGE) * PAGE - start)
            .map_err(MemoryError::Map)
    }
}

/// The module window's backing: the module file, mapped read-only.
#[derive(Debug)]
pub struct ModuleMapping {
    map: Mapping,
    len: u64,
}

impl ModuleMapping {
    /// Maps `len` bytes of `file` (rounded up to pages) read-only.
    pub fn new(file: &File, len: u64) -> Result<ModuleMapping, MemoryError> {
        let pages = len.max(1).div_ceil(PAGE as u64) * PAGE as u64;
        let map = Mapping::file(file, 0, pages as usize, false, false).map_err(MemoryError::Map)?;
        Ok(ModuleMapping { map, len })
    }

    /// The module's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the module is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn host_addr(&self) -> u64 {
        self.map.as_ptr() as u64
    }

    pub(crate) fn mapped_len(&self) -> u64 {
        self.map.len() as u64
    }
}
