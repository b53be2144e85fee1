//! The long-mode CPU state the VMM builds for a guest, so that the guest's
//! first instruction already runs in 64-bit ring 3: the GDT and TSS, the
//! IDT pointing at the kernel's exception handlers, identity page tables,
//! and the segment and control registers.
//!
//! Nothing of this runs in the guest's ring 0, which PVM emulates at about
//! 0.6 µs per instruction: building it here costs the VMM microseconds.

use hearth_guest_abi::layout::{self, PAGE_SIZE};
use hearth_guest_abi::ports::{CONSOLE_PORT, DOORBELL_PORT};
use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Why the CPU state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The image's entry point is not followed by an entry header.
    #[error(
        "the guest image has no entry header at its entry point + {}",
        layout::ENTRY_HEADER_OFFSET
    )]
    NoEntryHeader,
    /// A handler address in the header lies outside guest RAM.
    #[error("exception handler {0} points outside guest RAM")]
    BadHandler(usize),
    /// RAM is larger than the page tables reserved for it.
    #[error("guest RAM of {0} bytes needs more page tables than are reserved")]
    TooMuchRam(u64),
    /// Writing the tables into guest memory failed.
    #[error("writing the boot tables into guest memory: {0}")]
    Memory(String),
}

const KERNEL_CS: u16 = 0x08;
const USER_DS: u16 = 0x18 | 3;
const USER_CS: u16 = 0x20 | 3;
const TSS_SEL: u16 = 0x28;

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const HUGE: u64 = 1 << 7;

const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;

fn write(mem: &GuestMemoryMmap, gpa: u64, bytes: &[u8]) -> Result<(), BootError> {
    mem.write_slice(bytes, GuestAddress(gpa))
        .map_err(|e| BootError::Memory(e.to_string()))
}

/// Reads the entry header and returns the 32 exception handler addresses.
pub fn read_entry_header(
    mem: &GuestMemoryMmap,
    entry: u64,
    mem_size: u64,
) -> Result<[u64; 32], BootError> {
    let mut raw = [0u8; 8 * (1 + layout::EXCEPTION_VECTORS)];
    mem.read_slice(&mut raw, GuestAddress(entry + layout::ENTRY_HEADER_OFFSET))
        .map_err(|_| BootError::NoEntryHeader)?;
    let q = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    if q(0) != layout::ENTRY_HEADER_MAGIC {
        return Err(BootError::NoEntryHeader);
    }
    let mut handlers = [0u64; 32];
    for (i, h) in handlers.iter_mut().enumerate() {
        *h = q(i + 1);
        if *h >= mem_size {
            return Err(BootError::BadHandler(i));
        }
    }
    Ok(handlers)
}

/// Writes the GDT, TSS, IDT and page tables for `mem_size` bytes of RAM.
pub fn write_tables(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    handlers: &[u64; 32],
) -> Result<(), BootError> {
    // GDT: null, kernel code, kernel data, user data, user code, TSS (16).
    let tss_lo = (TSS_LEN - 1)
        | ((layout::TSS_GPA & 0xff_ffff) << 16)
        | (0x89 << 40)
        | (((layout::TSS_GPA >> 24) & 0xff) << 56);
    let tss_hi = layout::TSS_GPA >> 32;
    let gdt: [u64; 7] = [
        0,
        0x00af_9a00_0000_ffff,
        0x00cf_9200_0000_ffff,
        0x00cf_f200_0000_ffff,
        0x00af_fa00_0000_ffff,
        tss_lo,
        tss_hi,
    ];
    let gdt_bytes: Vec<u8> = gdt.iter().flat_map(|d| d.to_le_bytes()).collect();
    write(mem, layout::GDT_GPA, &gdt_bytes)?;

    write(mem, layout::TSS_GPA, &tss())?;

    // IDT: 32 interrupt gates into ring 0; NMI, #DF and #MC on IST1.
    let mut idt = Vec::with_capacity(32 * 16);
    for (v, &h) in handlers.iter().enumerate() {
        let ist: u64 = if matches!(v, 2 | 8 | 18) { 1 } else { 0 };
        let lo = (h & 0xffff)
            | (u64::from(KERNEL_CS) << 16)
            | (ist << 32)
            | (0x8e << 40)
            | (((h >> 16) & 0xffff) << 48);
        idt.extend_from_slice(&lo.to_le_bytes());
        idt.extend_from_slice(&(h >> 32).to_le_bytes());
    }
    write(mem, layout::IDT_GPA, &idt)?;

    write_page_tables(mem, mem_size)
}

/// The TSS's fixed part.
const TSS_FIXED: usize = 104;
/// The I/O permission bitmap covers ports up to the doorbell's last byte,
/// then the terminating byte the CPU requires.
const IO_BITMAP_LEN: usize = (DOORBELL_PORT as usize + 4) / 8 + 1 + 1;
const TSS_LEN: u64 = (TSS_FIXED + IO_BITMAP_LEN) as u64;

/// The TSS: RSP0 for exceptions from ring 3, IST1 for the double fault,
/// and an I/O permission bitmap that lets ring 3 use exactly the console
/// port and the doorbell's four bytes. (The bitmap, not `IOPL=3`: PVM does
/// not honour IOPL for ring 3, and the bitmap grants two ports, not all.)
fn tss() -> Vec<u8> {
    let mut tss = vec![0u8; TSS_FIXED];
    tss[4..12].copy_from_slice(&layout::KERNEL_STACK_TOP.to_le_bytes());
    tss[36..44].copy_from_slice(&layout::DOUBLE_FAULT_STACK_TOP.to_le_bytes());
    tss[102..104].copy_from_slice(&(TSS_FIXED as u16).to_le_bytes());
    let mut bitmap = vec![0xffu8; IO_BITMAP_LEN];
    let allow =
        |bitmap: &mut Vec<u8>, port: u16| bitmap[usize::from(port) / 8] &= !(1 << (port % 8));
    allow(&mut bitmap, CONSOLE_PORT);
    for p in DOORBELL_PORT..DOORBELL_PORT + 4 {
        allow(&mut bitmap, p);
    }
    tss.extend_from_slice(&bitmap);
    tss
}

fn write_page_tables(mem: &GuestMemoryMmap, mem_size: u64) -> Result<(), BootError> {
    let ram_gib = mem_size.div_ceil(GIB);
    // PML4, PDPT, the low PT, the module and files windows' PDs, one PD
    // per GiB.
    let needed = 5 + ram_gib;
    if needed > layout::PAGE_TABLE_PAGES {
        return Err(BootError::TooMuchRam(mem_size));
    }
    let table = |i: u64| layout::PAGE_TABLES_GPA + i * PAGE_SIZE;
    let (pml4, pdpt, pt_low, pd_module, pd_files) =
        (table(0), table(1), table(2), table(3), table(4));
    let pd_ram = |g: u64| table(5 + g);

    let mut page = vec![0u64; 512];
    let flush = |gpa: u64, entries: &[u64]| -> Result<(), BootError> {
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
        write(mem, gpa, &bytes)
    };

    page[0] = pdpt | PRESENT | WRITABLE | USER;
    flush(pml4, &page)?;

    page.fill(0);
    for g in 0..ram_gib {
        page[g as usize] = pd_ram(g) | PRESENT | WRITABLE | USER;
    }
    page[(layout::MODULE_WINDOW_GPA / GIB) as usize] = pd_module | PRESENT | WRITABLE | USER;
    page[(layout::FILES_WINDOW_GPA / GIB) as usize] = pd_files | PRESENT | WRITABLE | USER;
    flush(pdpt, &page)?;

    // The first 2 MiB in 4 KiB pages: page 0 and the stack guard absent,
    // the tables and kernel stacks supervisor-only.
    page.fill(0);
    for (i, e) in page.iter_mut().enumerate() {
        let addr = i as u64 * PAGE_SIZE;
        *e = if addr == 0 || addr == layout::STACK_GUARD_GPA {
            0
        } else if addr < layout::USER_START {
            addr | PRESENT | WRITABLE
        } else {
            addr | PRESENT | WRITABLE | USER
        };
    }
    flush(pt_low, &page)?;

    // The module window, read-only, in 2 MiB pages.
    page.fill(0);
    for (i, e) in page
        .iter_mut()
        .enumerate()
        .take((layout::MODULE_WINDOW_SIZE / MIB2) as usize)
    {
        *e = (layout::MODULE_WINDOW_GPA + i as u64 * MIB2) | PRESENT | USER | HUGE;
    }
    flush(pd_module, &page)?;

    // The files window, read-only too.
    page.fill(0);
    for (i, e) in page
        .iter_mut()
        .enumerate()
        .take((layout::FILES_WINDOW_SIZE / MIB2) as usize)
    {
        *e = (layout::FILES_WINDOW_GPA + i as u64 * MIB2) | PRESENT | USER | HUGE;
    }
    flush(pd_files, &page)?;

    // RAM above 2 MiB in 2 MiB pages.
    for g in 0..ram_gib {
        page.fill(0);
        for (i, e) in page.iter_mut().enumerate() {
            let addr = g * GIB + i as u64 * MIB2;
            if addr >= mem_size {
                break;
            }
            *e = if addr == 0 {
                pt_low | PRESENT | WRITABLE | USER
            } else {
                addr | PRESENT | WRITABLE | USER | HUGE
            };
        }
        flush(pd_ram(g), &page)?;
    }
    Ok(())
}

fn segment(selector: u16, code: bool, dpl: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0xb } else { 0x3 },
        present: 1,
        dpl,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// The special registers: long mode with paging, SSE enabled, ring-3
/// segments, the task register and descriptor tables.
pub fn boot_sregs(mut s: kvm_sregs) -> kvm_sregs {
    const CR0_PE: u64 = 1;
    const CR0_MP: u64 = 1 << 1;
    const CR0_ET: u64 = 1 << 4;
    const CR0_NE: u64 = 1 << 5;
    const CR0_WP: u64 = 1 << 16;
    const CR0_PG: u64 = 1 << 31;
    const CR4_PAE: u64 = 1 << 5;
    const CR4_OSFXSR: u64 = 1 << 9;
    const CR4_OSXMMEXCPT: u64 = 1 << 10;
    const EFER_LME: u64 = 1 << 8;
    const EFER_LMA: u64 = 1 << 10;

    s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    s.cr3 = layout::PAGE_TABLES_GPA;
    s.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    s.efer = EFER_LME | EFER_LMA;
    s.cs = segment(USER_CS, true, 3);
    let data = segment(USER_DS, false, 3);
    (s.ds, s.es, s.fs, s.gs, s.ss) = (data, data, data, data, data);
    s.tr = kvm_segment {
        base: layout::TSS_GPA,
        limit: (TSS_LEN - 1) as u32,
        selector: TSS_SEL,
        type_: 0xb,
        present: 1,
        ..Default::default()
    };
    s.ldt = kvm_segment {
        unusable: 1,
        ..Default::default()
    };
    s.gdt.base = layout::GDT_GPA;
    s.gdt.limit = 7 * 8 - 1;
    s.idt.base = layout::IDT_GPA;
    s.idt.limit = 32 * 16 - 1;
    s
}

/// The general registers at the entry point: the ring-3 stack, IOPL=0
/// (the TSS bitmap grants the two ports), interrupts off.
pub fn boot_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rsp: layout::STACK_TOP,
        rflags: 0x2,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram(size: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)]).unwrap()
    }

    fn entry(mem: &GuestMemoryMmap, gpa: u64, handlers: &[u64]) -> Result<(), BootError> {
        let mut h = layout::ENTRY_HEADER_MAGIC.to_le_bytes().to_vec();
        for a in handlers {
            h.extend_from_slice(&a.to_le_bytes());
        }
        write(mem, gpa + layout::ENTRY_HEADER_OFFSET, &h)
    }

    #[test]
    fn entry_header_is_checked() {
        let mem = ram(64 << 20);
        assert!(matches!(
            read_entry_header(&mem, 0x400000, 64 << 20),
            Err(BootError::NoEntryHeader)
        ));
        entry(&mem, 0x400000, &[0x400100; 32]).unwrap();
        assert_eq!(
            read_entry_header(&mem, 0x400000, 64 << 20).unwrap(),
            [0x400100; 32]
        );
        entry(&mem, 0x400000, &[1 << 40; 32]).unwrap();
        assert!(matches!(
            read_entry_header(&mem, 0x400000, 64 << 20),
            Err(BootError::BadHandler(0))
        ));
    }

    #[test]
    fn page_tables_map_ram_and_protect_the_low_pages() {
        let size = 128 << 20;
        let mem = ram(size);
        write_tables(&mem, size, &[0x400100; 32]).unwrap();
        let q = |gpa: u64| mem.read_obj::<u64>(GuestAddress(gpa)).unwrap();
        let pt = |i: u64| layout::PAGE_TABLES_GPA + i * PAGE_SIZE;
        assert_eq!(q(pt(0)) & !0xfff, pt(1));
        // Low PT: page 0 absent, GDT supervisor, mailbox user, guard absent.
        assert_eq!(q(pt(2)), 0);
        assert_eq!(q(pt(2) + 8) & USER, 0);
        assert_ne!(q(pt(2) + 8 * (layout::MAILBOX_GPA / PAGE_SIZE)) & USER, 0);
        assert_eq!(q(pt(2) + 8 * (layout::STACK_GUARD_GPA / PAGE_SIZE)), 0);
        // 2 MiB pages up to the end of RAM, nothing beyond.
        assert_eq!(q(pt(5) + 8), MIB2 | PRESENT | WRITABLE | USER | HUGE);
        assert_eq!(q(pt(5) + 8 * 63) & !0xfff, 63 * MIB2);
        assert_eq!(q(pt(5) + 8 * 64), 0);
        // The module and files windows are read-only, and where the
        // layout says.
        assert_eq!(q(pt(3)) & WRITABLE, 0);
        assert_eq!(q(pt(4)) & WRITABLE, 0);
        assert_eq!(q(pt(4)) & !0xfff, layout::FILES_WINDOW_GPA);
        let pdpt = |gpa: u64| q(pt(1) + 8 * (gpa / GIB)) & !0xfff;
        assert_eq!(pdpt(layout::MODULE_WINDOW_GPA), pt(3));
        assert_eq!(pdpt(layout::FILES_WINDOW_GPA), pt(4));
        assert!(matches!(
            write_tables(&mem, 12 * GIB, &[0; 32]),
            Err(BootError::TooMuchRam(_))
        ));
    }

    #[test]
    fn io_bitmap_grants_exactly_the_two_ports() {
        let t = tss();
        assert!(layout::TSS_GPA + t.len() as u64 <= layout::IDT_GPA);
        let allowed = |port: usize| t[TSS_FIXED + port / 8] & (1 << (port % 8)) == 0;
        let granted: Vec<usize> = (0..(IO_BITMAP_LEN - 1) * 8)
            .filter(|p| allowed(*p))
            .collect();
        let d = DOORBELL_PORT as usize;
        assert_eq!(granted, vec![CONSOLE_PORT as usize, d, d + 1, d + 2, d + 3]);
        assert_eq!(*t.last().unwrap(), 0xff);
    }
}
