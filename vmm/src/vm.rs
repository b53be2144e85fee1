//! One microVM: KVM VM, RAM, the module window, one vCPU. Created by
//! booting a guest image or by restoring a snapshot; run with a deadline;
//! snapshotted; reset to its snapshot in place.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use hearth_guest_abi::layout::{self, Layout};
use hearth_guest_abi::mailbox::{BootInfo, MAILBOX_SIZE};
use hearth_guest_abi::ABI_VERSION;
use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_READONLY};
use kvm_ioctls::VmFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::accounting::RunStats;
use crate::image::{GuestImage, ImageError};
use crate::kvm::Kvm;
use crate::memory::{GuestRam, MemoryError, ModuleMapping};
use crate::snapshot::{self, Header, Kind, Snapshot, SnapshotError};
use crate::sys::{self, Pagemap, ThreadTimer, PAGE};
use crate::vcpu::{x86_64, Console, Stop, Vcpu, VcpuError};

/// Why a VM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A KVM ioctl on the VM failed.
    #[error("{0}: {1}")]
    Kvm(&'static str, #[source] std::io::Error),
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The vCPU.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// The guest image.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Building the boot state.
    #[error(transparent)]
    Boot(#[from] x86_64::BootError),
    /// A snapshot.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The memory size.
    #[error("a VM's memory must be a whole number of MiB from {} to {} MiB, and leave room for the image", layout::MIN_MEMORY_MIB, layout::MAX_MEMORY_MIB)]
    MemorySize,
    /// The module is larger than the module window.
    #[error("the module is {0} bytes; the most a VM maps is {max}", max = layout::MODULE_WINDOW_SIZE)]
    ModuleTooLarge(u64),
    /// An operation that needs another kind of VM.
    #[error("{0}")]
    Unsupported(&'static str),
    /// Reading or writing guest memory.
    #[error("guest memory access at {0:#x}: {1}")]
    GuestMemory(u64, String),
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |e| VmError::Kvm(what, std::io::Error::from_raw_os_error(e.errno()))
}

/// The process-wide pagemap handle (opened before a thread's seccomp
/// filter, which forbids opening files).
pub(crate) fn pagemap() -> Result<&'static Pagemap, MemoryError> {
    static PAGEMAP: OnceLock<Pagemap> = OnceLock::new();
    if let Some(p) = PAGEMAP.get() {
        return Ok(p);
    }
    let p = Pagemap::open().map_err(MemoryError::Scan)?;
    Ok(PAGEMAP.get_or_init(|| p))
}

/// Where a VM came from, which decides what it can be snapshotted as and
/// what a reset returns it to.
#[derive(Debug)]
enum Origin {
    Booted,
    Restored {
        base: Arc<Snapshot>,
        layer: Option<Arc<Snapshot>>,
    },
}

/// Where a VM stands in Hearth's guest protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Booted, never entered.
    Fresh,
    /// At `BaseReady`: waits for a module (`Load`).
    Base,
    /// At `StdinWait`: a module waits for its event (`Invoke`).
    Stdin,
    /// The module ended; only a reset (or discarding the VM) follows.
    Done,
    /// A step failed; the VM must be discarded.
    Broken,
}

/// How a reset treats the pages a VM copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetMode {
    /// Rewrite them with the snapshot's content and keep them: the VM stays
    /// warm (no faults on its next run), and keeps that memory.
    Restore,
    /// Drop them: the memory is freed, and the next run faults them in.
    Discard,
}

/// What a reset did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reset {
    /// Pages rewritten or dropped.
    pub pages: u64,
    /// How long it took, ns.
    pub ns: u64,
}

/// The module a VM maps, and its identity for snapshots.
#[derive(Clone, Debug)]
pub struct ModuleFile {
    /// The file (content-addressed in Hearth's code store).
    pub file: Arc<File>,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// Its length in bytes, read when it was opened (a VM thread, behind
    /// its seccomp filter, cannot `stat` files).
    pub len: u64,
}

impl ModuleFile {
    /// A module from an open file: reads it once, from its start, for its
    /// SHA-256 and length.
    pub fn new(mut file: File) -> std::io::Result<ModuleFile> {
        use sha2::Digest;
        use std::io::Seek;
        let mut h = sha2::Sha256::new();
        file.rewind()?;
        let len = std::io::copy(&mut file, &mut h)?;
        Ok(ModuleFile {
            file: Arc::new(file),
            sha256: h.finalize().into(),
            len,
        })
    }

    /// The module at `path`.
    pub fn open(path: &Path) -> std::io::Result<ModuleFile> {
        ModuleFile::new(File::open(path)?)
    }
}

/// Where file images of these lengths lie in the files window, in order:
/// (guest-physical address, length) each, or `None` if they do not fit.
/// [`Vm::attach_files`] maps them there; the config blob's mount table is
/// made from the same answer.
pub fn place_files(lens: &[u64]) -> Option<Vec<(u64, u64)>> {
    let page = layout::PAGE_SIZE;
    let end = layout::FILES_WINDOW_GPA + layout::FILES_WINDOW_SIZE;
    let mut at = layout::FILES_WINDOW_GPA;
    let mut placed = Vec::with_capacity(lens.len());
    for len in lens {
        let mapped = len.max(&1).div_ceil(page) * page;
        let next = at.checked_add(mapped).filter(|e| *e <= end)?;
        placed.push((at, *len));
        at = next.next_multiple_of(layout::FILES_ALIGN);
    }
    Some(placed)
}

/// The largest function layer (pages) [`Vm::adopt_layer`] copies into a
/// VM; a larger one is mapped from its file. Copying costs every reset a
/// rewrite of the layer's pages (~0.3 µs each); mapping costs the first run
/// a fault on each page it touches (~20 µs each on PVM). 1 MiB keeps a
/// reset's extra rewriting under ~0.1 ms.
pub const ADOPT_COPY_MAX_PAGES: u64 = 256;

/// A microVM. Field order is drop order: the vCPU and the KVM VM go before
/// the memory they map.
#[derive(Debug)]
pub struct Vm {
    vcpu: Vcpu,
    vm: VmFd,
    module: Option<(ModuleMapping, [u8; 32])>,
    /// File images in the files window: each mapping and its address.
    files: Vec<(ModuleMapping, u64)>,
    ram: GuestRam,
    kvm: Arc<Kvm>,
    layout: Layout,
    image_id: [u8; 32],
    image_end: u64,
    origin: Origin,
    console: Console,
    /// Private pages found by the last scan, valid until the next run.
    scanned: Option<Vec<(u64, u64)>>,
    /// How long `boot` or `restore` took, ns.
    setup_ns: u64,
    /// Where the guest stands.
    phase: Phase,
    /// Whether the last run stopped somewhere other than a doorbell ring,
    /// so KVM may hold an instruction half done.
    mid_instruction: bool,
}

/// The most runs a snapshot written here holds: each is one mapping in
/// every VM restored from it, and a process may hold at most
/// `vm.max_map_count` (65,530 by default) mappings. Runs farther apart are
/// merged, storing the pages between them.
const MAX_RUNS_PER_SNAPSHOT: usize = 32;

const RAM_SLOT: u32 = 0;
const MODULE_SLOT: u32 = 1;
/// File images take slots from here on.
const FILES_SLOT_BASE: u32 = 2;
/// The most file images a VM maps (a runtime, the code, five layers, and
/// room to spare).
pub const MAX_FILE_IMAGES: usize = 16;

impl Vm {
    fn create(kvm: &Arc<Kvm>, ram: &GuestRam) -> Result<(VmFd, Vcpu), VmError> {
        let vm = kvm.fd.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        if kvm.slot_zap_quirk {
            // Without this, removing the module window's slot would throw
            // away every shadow page table of the VM, and a pooled VM would
            // lose all its warmth when it changes function.
            let cap = kvm_bindings::kvm_enable_cap {
                cap: kvm_bindings::KVM_CAP_DISABLE_QUIRKS2,
                args: [u64::from(kvm_bindings::KVM_X86_QUIRK_SLOT_ZAP_ALL), 0, 0, 0],
                ..Default::default()
            };
            vm.enable_cap(&cap)
                .map_err(kvm_err("KVM_CAP_DISABLE_QUIRKS2"))?;
        }
        let region = kvm_userspace_memory_region {
            slot: RAM_SLOT,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: ram.size(),
            userspace_addr: ram.host_addr(),
        };
        #[allow(unsafe_code)]
        // SAFETY: the region is `ram`'s live mapping of exactly
        // `memory_size` bytes; `Vm` keeps `ram` alive until after the VM fd
        // is closed (field order), so KVM never sees a dangling mapping.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        let fd = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
        fd.set_cpuid2(&kvm.cpuid)
            .map_err(kvm_err("KVM_SET_CPUID2"))?;
        Ok((vm, Vcpu::new(fd)))
    }

    fn map_module(&mut self, module: &ModuleFile) -> Result<(), VmError> {
        if self.module.is_some() {
            return Err(VmError::Unsupported("the VM already maps a module"));
        }
        let m = ModuleMapping::new(&module.file, module.len)?;
        if m.len() > layout::MODULE_WINDOW_SIZE {
            return Err(VmError::ModuleTooLarge(m.len()));
        }
        let region = kvm_userspace_memory_region {
            slot: MODULE_SLOT,
            flags: if self.kvm.readonly_mem {
                KVM_MEM_READONLY
            } else {
                0
            },
            guest_phys_addr: layout::MODULE_WINDOW_GPA,
            memory_size: m.mapped_len(),
            userspace_addr: m.host_addr(),
        };
        #[allow(unsafe_code)]
        // SAFETY: the region is the module mapping of exactly
        // `memory_size` bytes, kept alive in `self.module` until after the
        // VM fd is closed (field order).
        unsafe { self.vm.set_user_memory_region(region) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        self.module = Some((m, module.sha256));
        Ok(())
    }

    /// Boots `image` in a new VM with `mem_mib` MiB of RAM. The guest is
    /// ready to enter at its entry point with a `Boot` entry to write.
    pub fn boot(kvm: &Arc<Kvm>, image: &GuestImage, mem_mib: u64) -> Result<Vm, VmError> {
        let t0 = sys::monotonic_ns();
        if !(layout::MIN_MEMORY_MIB..=layout::MAX_MEMORY_MIB).contains(&mem_mib) {
            return Err(VmError::MemorySize);
        }
        let size = mem_mib << 20;
        let ram = GuestRam::fresh(size)?;
        let loaded = image.load(ram.memory(), size)?;
        let layout = Layout::new(size, loaded.end).map_err(|_| VmError::MemorySize)?;
        let handlers = x86_64::read_entry_header(ram.memory(), loaded.entry, size)?;
        x86_64::write_tables(ram.memory(), size, &handlers)?;
        let (vm, vcpu) = Self::create(kvm, &ram)?;
        let sregs = vcpu.fd.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        vcpu.fd
            .set_sregs(&x86_64::boot_sregs(sregs))
            .map_err(kvm_err("KVM_SET_SREGS"))?;
        vcpu.fd
            .set_regs(&x86_64::boot_regs(loaded.entry))
            .map_err(kvm_err("KVM_SET_REGS"))?;
        let tsc_khz = vcpu.fd.get_tsc_khz().map(u64::from).unwrap_or(0);
        let mut this = Vm {
            vcpu,
            vm,
            module: None,
            files: Vec::new(),
            ram,
            kvm: kvm.clone(),
            layout,
            image_id: image.id(),
            image_end: loaded.end,
            origin: Origin::Booted,
            console: Console::default(),
            scanned: None,
            setup_ns: 0,
            phase: Phase::Fresh,
            mid_instruction: false,
        };
        let boot = BootInfo {
            mem_size: size,
            event: layout.event,
            stdout: layout.stdout,
            stderr: layout.stderr,
            heap: layout.heap,
            tsc_khz,
        };
        this.edit_mailbox(|p| boot.encode(p))?;
        this.setup_ns = sys::monotonic_ns() - t0;
        Ok(this)
    }

    /// Restores a VM from `base`, and `layer` over it if given, mapping
    /// `module` (which must be the layer's) into the module window. The
    /// vCPU resumes where the snapshot was taken.
    pub fn restore(
        kvm: &Arc<Kvm>,
        base: &Arc<Snapshot>,
        layer: Option<&Arc<Snapshot>>,
        module: Option<&ModuleFile>,
    ) -> Result<Vm, VmError> {
        let t0 = sys::monotonic_ns();
        let b = &base.header;
        let mismatch = |s: String| VmError::Snapshot(SnapshotError::Mismatch(s));
        if b.kind != Kind::Base {
            return Err(mismatch("the base snapshot is a layer".into()));
        }
        if b.cpu_signature != kvm.cpu_signature() {
            return Err(mismatch("it was taken on a host with another CPU".into()));
        }
        if b.abi_version != ABI_VERSION {
            return Err(mismatch(format!(
                "it was taken with guest ABI {}, this VMM speaks {ABI_VERSION}",
                b.abi_version
            )));
        }
        let mut files: Vec<(&File, &[crate::memory::FileRun])> = vec![(base.file(), &base.runs)];
        if let Some(l) = layer {
            let h = &l.header;
            if h.kind != Kind::Layer
                || h.parent_id != b.id
                || h.mem_size != b.mem_size
                || h.image_id != b.image_id
            {
                return Err(mismatch("the layer is not over this base".into()));
            }
            match module {
                Some(m) if m.sha256 == h.module_sha256 => {}
                _ => {
                    return Err(mismatch(
                        "the layer needs the module it was taken with".into(),
                    ))
                }
            }
            files.push((l.file(), &l.runs));
        }
        // Checked before anything is mapped: the header's sizes are data.
        let layout = Layout::new(b.mem_size, b.image_end).map_err(|_| VmError::MemorySize)?;
        let ram = GuestRam::restored(b.mem_size, &files)?;
        let image_end = b.image_end;
        let (vm, vcpu) = Self::create(kvm, &ram)?;
        let state = layer.map_or(&base.vcpu, |l| &l.vcpu);
        vcpu.set_state(state)?;
        let mut this = Vm {
            vcpu,
            vm,
            module: None,
            files: Vec::new(),
            ram,
            kvm: kvm.clone(),
            layout,
            image_id: b.image_id,
            image_end,
            origin: Origin::Restored {
                base: base.clone(),
                layer: layer.cloned(),
            },
            console: Console::default(),
            scanned: None,
            setup_ns: 0,
            mid_instruction: false,
            phase: if layer.is_some() {
                Phase::Stdin
            } else {
                Phase::Base
            },
        };
        if let Some(m) = module {
            this.map_module(m)?;
        }
        this.setup_ns = sys::monotonic_ns() - t0;
        Ok(this)
    }

    /// Maps file images into the files window, one memory slot each, in
    /// order at [`layout::FILES_ALIGN`]-aligned offsets, and returns where
    /// each lies (address, length): what the config blob's mount table
    /// tells the guest. The same images in the same order always land at
    /// the same addresses, so a VM restored from a function snapshot maps
    /// them where the snapshot's guest expects them.
    pub fn attach_files(&mut self, images: &[&ModuleFile]) -> Result<Vec<(u64, u64)>, VmError> {
        if !self.files.is_empty() {
            return Err(VmError::Unsupported("the VM already maps file images"));
        }
        if images.len() > MAX_FILE_IMAGES {
            return Err(VmError::Unsupported("more file images than a VM maps"));
        }
        let placed = place_files(&images.iter().map(|i| i.len).collect::<Vec<_>>()).ok_or(
            VmError::Unsupported("the file images do not fit the files window"),
        )?;
        for (i, (img, (at, _))) in images.iter().zip(&placed).enumerate() {
            let m = ModuleMapping::new(&img.file, img.len)?;
            let region = kvm_userspace_memory_region {
                slot: FILES_SLOT_BASE + i as u32,
                flags: if self.kvm.readonly_mem {
                    KVM_MEM_READONLY
                } else {
                    0
                },
                guest_phys_addr: *at,
                memory_size: m.mapped_len(),
                userspace_addr: m.host_addr(),
            };
            #[allow(unsafe_code)]
            // SAFETY: the region is the image's mapping of exactly
            // `memory_size` bytes, kept alive in `self.files` until the slot
            // is deleted or the VM fd is closed (field order).
            unsafe { self.vm.set_user_memory_region(region) }
                .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
            self.files.push((m, *at));
        }
        Ok(placed)
    }

    /// Removes the file images' slots.
    fn detach_files(&mut self) -> Result<(), VmError> {
        for (i, (m, at)) in self.files.iter().enumerate() {
            let region = kvm_userspace_memory_region {
                slot: FILES_SLOT_BASE + i as u32,
                flags: 0,
                guest_phys_addr: *at,
                memory_size: 0,
                userspace_addr: m.host_addr(),
            };
            #[allow(unsafe_code)]
            // SAFETY: as in `detach_module`: a zero-sized region deletes the
            // slot before the mapping is dropped.
            unsafe { self.vm.set_user_memory_region(region) }
                .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        }
        self.files.clear();
        Ok(())
    }

    /// Maps `module` into the module window (before a `Load` entry).
    pub fn attach_module(&mut self, module: &ModuleFile) -> Result<u64, VmError> {
        self.map_module(module)?;
        Ok(self.module.as_ref().map_or(0, |(m, _)| m.len()))
    }

    /// How long creating this VM (`boot` or `restore`) took, ns.
    pub fn setup_ns(&self) -> u64 {
        self.setup_ns
    }

    /// Where the guest stands in the protocol.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Records where the guest stands (the protocol's driver does this).
    pub fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
    }

    /// The VM's memory layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Bounds-checked access to guest RAM.
    pub fn memory(&self) -> &GuestMemoryMmap {
        self.ram.memory()
    }

    /// The guest image's id.
    pub fn image_id(&self) -> [u8; 32] {
        self.image_id
    }

    /// Whether the VM was restored from a snapshot (and can be reset).
    pub fn is_restored(&self) -> bool {
        self.ram.is_restored()
    }

    /// The snapshot a reset returns to: (base, layer).
    pub fn snapshot_origin(&self) -> Option<(&Arc<Snapshot>, Option<&Arc<Snapshot>>)> {
        match &self.origin {
            Origin::Booted => None,
            Origin::Restored { base, layer } => Some((base, layer.as_ref())),
        }
    }

    /// A copy of the mailbox page.
    pub fn read_mailbox(&self) -> Result<[u8; MAILBOX_SIZE], VmError> {
        let mut p = [0u8; MAILBOX_SIZE];
        self.memory()
            .read_slice(&mut p, GuestAddress(layout::MAILBOX_GPA))
            .map_err(|e| VmError::GuestMemory(layout::MAILBOX_GPA, e.to_string()))?;
        Ok(p)
    }

    /// Edits the mailbox page.
    pub fn edit_mailbox(&mut self, f: impl FnOnce(&mut [u8; MAILBOX_SIZE])) -> Result<(), VmError> {
        self.scanned = None;
        let mut p = self.read_mailbox()?;
        f(&mut p);
        self.memory()
            .write_slice(&p, GuestAddress(layout::MAILBOX_GPA))
            .map_err(|e| VmError::GuestMemory(layout::MAILBOX_GPA, e.to_string()))
    }

    /// Copies `len` bytes at `gpa` out of guest RAM.
    pub fn read_guest(&self, gpa: u64, len: u64) -> Result<Vec<u8>, VmError> {
        let mut v = vec![0u8; len as usize];
        self.memory()
            .read_slice(&mut v, GuestAddress(gpa))
            .map_err(|e| VmError::GuestMemory(gpa, e.to_string()))?;
        Ok(v)
    }

    /// Writes `bytes` into guest RAM at `gpa`.
    pub fn write_guest(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), VmError> {
        self.scanned = None;
        self.memory()
            .write_slice(bytes, GuestAddress(gpa))
            .map_err(|e| VmError::GuestMemory(gpa, e.to_string()))
    }

    /// Runs the guest until it stops (see [`Stop`]) or `deadline_ns`
    /// (`CLOCK_MONOTONIC`) passes. `timer` must belong to this thread.
    pub fn run(
        &mut self,
        deadline_ns: u64,
        timer: &ThreadTimer,
        stats: &mut RunStats,
    ) -> Result<Stop, VmError> {
        self.scanned = None;
        self.console.new_run();
        self.mid_instruction = true;
        let stop = self
            .vcpu
            .run(deadline_ns, timer, &mut self.console, stats)?;
        // A doorbell `out` leaves KVM a completion that only skips the `out`
        // if RIP has not moved since (Linux checks the linear RIP), so a
        // state set afterwards is safe. Any other stop may leave an emulated
        // access half done.
        self.mid_instruction = !matches!(stop, Stop::Doorbell(_));
        Ok(stop)
    }

    /// The pages this VM copied on write since it was restored or reset
    /// (0 for a booted VM, whose RAM is not copy-on-write). The scan is
    /// kept for the next reset.
    pub fn copied_pages(&mut self) -> Result<u64, VmError> {
        if !self.ram.is_restored() {
            return Ok(0);
        }
        let runs = match self.scanned.take() {
            Some(r) => r,
            None => self.ram.private_pages(pagemap()?)?,
        };
        let n = runs.iter().map(|r| r.1 / PAGE as u64).sum();
        self.scanned = Some(runs);
        Ok(n)
    }

    /// Turns a VM restored from a base snapshot into one at a function
    /// snapshot over that base, in place: maps the layer's module (unless
    /// it is already mapped), puts the layer's pages in — copied, for a
    /// layer of at most [`ADOPT_COPY_MAX_PAGES`]; else mapped from the
    /// layer's file copy-on-write (as a VM restored from the layer has
    /// them), after dropping every page it held a copy of (they read the
    /// base again) — and resets it (the vCPU gets the layer's state). From then on a reset
    /// returns it to the layer. This is how a pooled VM becomes
    /// function-warm without a new KVM VM, and how a VM that just took a
    /// function snapshot adopts it. Returns the layer's pages.
    pub fn adopt_layer(
        &mut self,
        layer: &Arc<Snapshot>,
        module: &ModuleFile,
    ) -> Result<u64, VmError> {
        let base = match &self.origin {
            Origin::Restored { base, layer: None } => base.clone(),
            _ => {
                return Err(VmError::Unsupported(
                    "only a VM restored from a base snapshot adopts a layer",
                ))
            }
        };
        let h = &layer.header;
        if h.kind != Kind::Layer
            || h.parent_id != base.header.id
            || module.sha256 != h.module_sha256
        {
            return Err(VmError::Snapshot(SnapshotError::Mismatch(
                "the layer is not over this VM's base, or not of this module".into(),
            )));
        }
        match &self.module {
            None => self.map_module(module)?,
            Some((_, sha)) if *sha == module.sha256 => {}
            Some(_) => return Err(VmError::Unsupported("the VM maps another module")),
        }
        let pages: u64 = layer.runs.iter().map(|r| r.len / PAGE as u64).sum();
        if pages <= ADOPT_COPY_MAX_PAGES {
            // A small layer is copied in: its pages are private at once, so
            // the first run faults on none of them, and a reset rewrites at
            // most this many pages.
            for r in &layer.runs {
                let mut a = r.gpa;
                while a < r.gpa + r.len {
                    if let Some(p) = layer.page(a) {
                        self.memory()
                            .write_slice(p, GuestAddress(a))
                            .map_err(|e| VmError::GuestMemory(a, e.to_string()))?;
                    }
                    a += PAGE as u64;
                }
            }
        } else {
            // A large layer is mapped from its file, copy-on-write, as a VM
            // restored from it has it: shared until written. (Copied in,
            // every page would be private and every reset would rewrite the
            // whole layer: 21 MB for a Python function, ~4 ms per
            // invocation.) What the VM copied before (its warm-up, its own
            // init) goes back to the base, for the same reason: from here on
            // it holds a copy only of what its invocations write.
            let copied = match self.scanned.take() {
                Some(r) => r,
                None => self.ram.private_pages(pagemap()?)?,
            };
            self.ram.discard(&copied)?;
            self.ram.overlay(layer.file(), &layer.runs)?;
        }
        let written = pages;
        self.scanned = None;
        self.origin = Origin::Restored {
            base,
            layer: Some(layer.clone()),
        };
        self.reset(ResetMode::Restore)?;
        Ok(written)
    }

    /// Takes a VM that adopted a layer back to its base snapshot: the
    /// module window is unmapped, the layer forgotten, and a reset gives
    /// every page it copied the base's content and the vCPU the base's
    /// state. What the run touched stays mapped (warm), so a pool can warm
    /// a VM with one function and later hand it to another.
    pub fn revert_to_base(&mut self) -> Result<(), VmError> {
        let base = match &self.origin {
            Origin::Restored { base, .. } => base.clone(),
            Origin::Booted => return Err(VmError::Unsupported("a booted VM has no base snapshot")),
        };
        self.detach_module()?;
        self.detach_files()?;
        self.origin = Origin::Restored { base, layer: None };
        self.reset(ResetMode::Restore)?;
        Ok(())
    }

    /// Removes the module window's memory slot and unmaps the module.
    fn detach_module(&mut self) -> Result<(), VmError> {
        if let Some((m, _)) = &self.module {
            let region = kvm_userspace_memory_region {
                slot: MODULE_SLOT,
                flags: 0,
                guest_phys_addr: layout::MODULE_WINDOW_GPA,
                memory_size: 0,
                userspace_addr: m.host_addr(),
            };
            #[allow(unsafe_code)]
            // SAFETY: a zero-sized region deletes the slot; KVM stops using
            // the module mapping before the call returns, so dropping the
            // mapping afterwards is safe.
            unsafe { self.vm.set_user_memory_region(region) }
                .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        }
        self.module = None;
        Ok(())
    }

    /// The pages present in the host page tables, read or written: after a
    /// run of a freshly restored VM, its working set.
    pub fn touched_pages(&self) -> Result<Vec<(u64, u64)>, VmError> {
        Ok(self.ram.present_pages(pagemap()?)?)
    }

    /// Brings a restored VM back to its snapshot in place and restores the
    /// vCPU state. Every page the VM holds a private copy of is either
    /// rewritten with the snapshot's content ([`ResetMode::Restore`]: the
    /// copy stays mapped, in the host and in KVM, so the next run takes no
    /// fault on it) or dropped ([`ResetMode::Discard`]: the memory is
    /// freed and the page reads the snapshot again, at the cost of a fault
    /// when next touched). Pages below the user area (descriptor and page
    /// tables, which KVM shadows) are always dropped.
    pub fn reset(&mut self, mode: ResetMode) -> Result<Reset, VmError> {
        let t0 = sys::monotonic_ns();
        let (base, layer) = match &self.origin {
            Origin::Booted => {
                return Err(VmError::Unsupported(
                    "a booted VM has no snapshot to reset to",
                ))
            }
            Origin::Restored { base, layer } => (base.clone(), layer.clone()),
        };
        let runs = match self.scanned.take() {
            Some(r) => r,
            None => self.ram.private_pages(pagemap()?)?,
        };
        self.phase = Phase::Broken;
        let zero = [0u8; PAGE];
        let mut dropped = Vec::new();
        for &(gpa, len) in &runs {
            if mode == ResetMode::Discard {
                dropped.push((gpa, len));
                continue;
            }
            let mut a = gpa;
            while a < gpa + len {
                if a < layout::USER_START {
                    dropped.push((a, PAGE as u64));
                } else {
                    let src = layer
                        .as_ref()
                        .and_then(|l| l.page(a))
                        .or_else(|| base.page(a))
                        .unwrap_or(&zero);
                    self.memory()
                        .write_slice(src, GuestAddress(a))
                        .map_err(|e| VmError::GuestMemory(a, e.to_string()))?;
                }
                a += PAGE as u64;
            }
        }
        self.ram.discard(&dropped)?;
        let state = layer.as_ref().map_or(&base.vcpu, |l| &l.vcpu);
        // An exit KVM is in the middle of (an emulated access) would
        // otherwise be completed after the state is set, moving the restored
        // vCPU past an instruction.
        if self.mid_instruction {
            self.vcpu.complete_pending_exit()?;
            self.mid_instruction = false;
        }
        self.vcpu
            .set_state_for_next_run(state, self.kvm.sync_regs)?;
        self.phase = if layer.is_some() {
            Phase::Stdin
        } else {
            Phase::Base
        };
        Ok(Reset {
            pages: runs.iter().map(|r| r.1 / PAGE as u64).sum(),
            ns: sys::monotonic_ns() - t0,
        })
    }

    /// Maps every page of the VM's snapshot into the host page tables
    /// (read-only, no copy), so the guest's first touches cost KVM no host
    /// fault.
    pub fn populate_snapshot(&self) -> Result<(), VmError> {
        if let Origin::Restored { base, layer } = &self.origin {
            for r in base
                .runs
                .iter()
                .chain(layer.iter().flat_map(|l| l.runs.iter()))
            {
                self.ram.populate_read(r.gpa, r.len)?;
            }
        }
        Ok(())
    }

    /// Prefaults guest pages for writing (a pooled VM's working set).
    pub fn prefault(&mut self, gpa: u64, len: u64) -> Result<(), VmError> {
        self.scanned = None;
        Ok(self.ram.prefault(gpa, len)?)
    }

    /// Writes a base snapshot of a booted VM stopped at a doorbell: every
    /// non-zero page and the vCPU state. `key` is recorded as given.
    pub fn snapshot_base(&mut self, path: &Path, key: [u8; 32]) -> Result<(), VmError> {
        if self.phase != Phase::Base {
            return Err(VmError::Unsupported(
                "a base snapshot is taken at BaseReady",
            ));
        }
        if !matches!(self.origin, Origin::Booted) || self.module.is_some() {
            return Err(VmError::Unsupported(
                "a base snapshot is taken of a booted VM before it loads a module",
            ));
        }
        self.vcpu.complete_pending_exit()?;
        let state = self.vcpu.state()?;
        let memfd = self
            .ram
            .memfd()
            .ok_or(VmError::Unsupported("a booted VM's RAM is a memfd"))?;
        let pages = nonzero_pages(memfd, self.ram.memory(), self.ram.size())?;
        let runs = snapshot::coalesce(&pages, 8, MAX_RUNS_PER_SNAPSHOT);
        let header = Header {
            kind: Kind::Base,
            abi_version: ABI_VERSION,
            mem_size: self.ram.size(),
            id: rand::random(),
            parent_id: [0; 16],
            image_id: self.image_id,
            cpu_signature: self.kvm.cpu_signature(),
            module_sha256: [0; 32],
            module_len: 0,
            key,
            image_end: self.image_end,
        };
        let mem = self.ram.memory();
        snapshot::write(path, &header, &state, &runs, |gpa, buf| {
            mem.read_slice(buf, GuestAddress(gpa))
                .map_err(|e| e.to_string())
        })?;
        Ok(())
    }

    /// Writes a function snapshot (a layer over the VM's base) of a VM
    /// restored from a base, stopped at a doorbell: the pages that differ
    /// from the base, the vCPU state, and the module's identity.
    pub fn snapshot_layer(&mut self, path: &Path, key: [u8; 32]) -> Result<(), VmError> {
        if self.phase != Phase::Stdin {
            return Err(VmError::Unsupported(
                "a function snapshot is taken at the module's first stdin read",
            ));
        }
        let base = match &self.origin {
            Origin::Restored { base, layer: None } => base.clone(),
            _ => {
                return Err(VmError::Unsupported(
                    "a layer is taken of a VM restored from a base snapshot",
                ))
            }
        };
        let (module_len, module_sha256) = self
            .module
            .as_ref()
            .map_or((0, [0; 32]), |(m, sha)| (m.len(), *sha));
        self.vcpu.complete_pending_exit()?;
        let state = self.vcpu.state()?;
        let written = self.ram.private_pages(pagemap()?)?;
        // Keep only pages that differ from the base.
        let mut pages = Vec::new();
        let (mut mine, mut theirs) = (vec![0u8; PAGE], vec![0u8; PAGE]);
        for (gpa, len) in written {
            let mut a = gpa;
            while a < gpa + len {
                self.memory()
                    .read_slice(&mut mine, GuestAddress(a))
                    .map_err(|e| VmError::GuestMemory(a, e.to_string()))?;
                base.read_page(a, &mut theirs)?;
                if mine != theirs {
                    pages.push(a);
                }
                a += PAGE as u64;
            }
        }
        let runs = snapshot::coalesce(&pages, 4, MAX_RUNS_PER_SNAPSHOT);
        let header = Header {
            kind: Kind::Layer,
            abi_version: ABI_VERSION,
            mem_size: self.ram.size(),
            id: rand::random(),
            parent_id: base.header.id,
            image_id: self.image_id,
            cpu_signature: self.kvm.cpu_signature(),
            module_sha256,
            module_len,
            key,
            image_end: self.image_end,
        };
        let mem = self.ram.memory();
        snapshot::write(path, &header, &state, &runs, |gpa, buf| {
            mem.read_slice(buf, GuestAddress(gpa))
                .map_err(|e| e.to_string())
        })?;
        Ok(())
    }
}

/// The non-zero pages of a booted VM's RAM, found through the memfd's
/// data extents (untouched ranges are holes and are skipped unread).
fn nonzero_pages(memfd: &File, mem: &GuestMemoryMmap, size: u64) -> Result<Vec<u64>, VmError> {
    use std::os::fd::AsRawFd;
    let mut pages = Vec::new();
    let mut buf = vec![0u8; PAGE];
    let mut at: i64 = 0;
    let fd = memfd.as_raw_fd();
    while (at as u64) < size {
        #[allow(unsafe_code)]
        // SAFETY: lseek on a descriptor this VM owns; no memory is touched.
        let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: no data past `at`.
        }
        #[allow(unsafe_code)]
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { size as i64 } else { hole };
        let mut a = (data as u64) & !(PAGE as u64 - 1);
        while a < end as u64 && a < size {
            mem.read_slice(&mut buf, GuestAddress(a))
                .map_err(|e| VmError::GuestMemory(a, e.to_string()))?;
            if buf.iter().any(|b| *b != 0) {
                pages.push(a);
            }
            a += PAGE as u64;
        }
        at = end;
    }
    Ok(pages)
}
