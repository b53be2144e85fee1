//! Hearth's guest kernel: the least a ring-3 runtime needs beneath it.
//!
//! On this machine's KVM (PVM, nested) a guest's ring 0 is emulated at about
//! 0.6 µs per instruction while ring 3 runs at native speed, so the kernel
//! does nothing on the invocation path. The VMM builds the whole CPU state
//! itself (long mode, GDT, IDT, TSS, page tables) and enters the image's
//! entry point directly in ring 3, with the TSS's I/O bitmap granting the
//! console and doorbell ports. What is left here:
//!
//! - **`_start`**, the ring-3 entry: a jump over the *entry header*, then
//!   the stack set-up and a call to the runtime's `hearth_guest_main`.
//! - **The entry header** ([`layout::ENTRY_HEADER_MAGIC`] and 32 handler
//!   addresses), from which the VMM fills the IDT: no symbol lookup, no
//!   fixed addresses beyond the header's offset.
//! - **Exception reporting** in ring 0: every CPU exception lands in one
//!   handler that copies the vector, error code, RIP, CS, RFLAGS, RSP and
//!   CR2 into the mailbox's fault section and rings
//!   [`hearth_guest_abi::Doorbell::Fault`]: one exit, and the VMM ends the
//!   run with a typed error. A fault inside the handler becomes a double
//!   fault on its own stack (IST1); a fault there is a triple fault, which
//!   KVM reports as a shutdown.
//!
//! The handlers run from the image's pages, which ring 3 can write: the
//! kernel/user split inside the guest is not a security boundary (the
//! guest as a whole is untrusted; KVM is the boundary). It exists so that
//! a fault is reported, not so that the runtime is protected from itself.
#![no_std]

use core::arch::global_asm;
use hearth_guest_abi::{layout, mailbox, ports, Doorbell};

/// The address of the mailbox page as a pointer, for the runtime.
pub const MAILBOX: u64 = layout::MAILBOX_GPA;

// The entry point and the entry header. The VMM reads the header at
// `entry + ENTRY_HEADER_OFFSET`, so the jump must fit in those bytes and
// the header must start exactly there: `.balign 16` on both sides.
global_asm!(
    ".section .text.hearth_entry, \"ax\"",
    ".balign 16",
    ".global _start",
    "_start:",
    "    jmp 2f",
    ".balign 16",
    "    .quad {magic}",
    "    .quad hearth_exc_0, hearth_exc_1, hearth_exc_2, hearth_exc_3",
    "    .quad hearth_exc_4, hearth_exc_5, hearth_exc_6, hearth_exc_7",
    "    .quad hearth_exc_8, hearth_exc_9, hearth_exc_10, hearth_exc_11",
    "    .quad hearth_exc_12, hearth_exc_13, hearth_exc_14, hearth_exc_15",
    "    .quad hearth_exc_16, hearth_exc_17, hearth_exc_18, hearth_exc_19",
    "    .quad hearth_exc_20, hearth_exc_21, hearth_exc_22, hearth_exc_23",
    "    .quad hearth_exc_24, hearth_exc_25, hearth_exc_26, hearth_exc_27",
    "    .quad hearth_exc_28, hearth_exc_29, hearth_exc_30, hearth_exc_31",
    "2:",
    "    mov rsp, {stack_top}",
    "    xor ebp, ebp",
    "    call hearth_guest_main",
    "    ud2",
    magic = const layout::ENTRY_HEADER_MAGIC,
    stack_top = const layout::STACK_TOP,
);

// One stub per vector: push a zero where the CPU pushes no error code, push
// the vector, go to the common handler.
macro_rules! stub {
    ($n:literal) => {
        global_asm!(concat!(
            ".section .text.hearth_kernel, \"ax\"\n",
            "hearth_exc_",
            $n,
            ":\n",
            "    push 0\n",
            "    push ",
            $n,
            "\n",
            "    jmp hearth_exc_common\n",
        ));
    };
    ($n:literal, error_code) => {
        global_asm!(concat!(
            ".section .text.hearth_kernel, \"ax\"\n",
            "hearth_exc_",
            $n,
            ":\n",
            "    push ",
            $n,
            "\n",
            "    jmp hearth_exc_common\n",
        ));
    };
}

stub!(0);
stub!(1);
stub!(2);
stub!(3);
stub!(4);
stub!(5);
stub!(6);
stub!(7);
stub!(8, error_code);
stub!(9);
stub!(10, error_code);
stub!(11, error_code);
stub!(12, error_code);
stub!(13, error_code);
stub!(14, error_code);
stub!(15);
stub!(16);
stub!(17, error_code);
stub!(18);
stub!(19);
stub!(20);
stub!(21, error_code);
stub!(22);
stub!(23);
stub!(24);
stub!(25);
stub!(26);
stub!(27);
stub!(28);
stub!(29, error_code);
stub!(30, error_code);
stub!(31);

// The common handler, in ring 0. Stack: vector, error code, then the CPU's
// frame (RIP, CS, RFLAGS, RSP, SS). Copies it into the mailbox's fault
// section and rings the doorbell; if the VMM ever resumes it, it rings
// again. About 20 instructions: cheap even emulated.
global_asm!(
    ".section .text.hearth_kernel, \"ax\"",
    "hearth_exc_common:",
    "    mov rax, [rsp]",
    "    mov qword ptr [{vector}], rax",
    "    mov rax, [rsp + 8]",
    "    mov qword ptr [{error}], rax",
    "    mov rax, [rsp + 16]",
    "    mov qword ptr [{rip}], rax",
    "    mov rax, [rsp + 24]",
    "    mov qword ptr [{cs}], rax",
    "    mov rax, [rsp + 32]",
    "    mov qword ptr [{rflags}], rax",
    "    mov rax, [rsp + 40]",
    "    mov qword ptr [{rsp_}], rax",
    "    mov rax, cr2",
    "    mov qword ptr [{cr2}], rax",
    "    mov dx, {port}",
    "    mov eax, {fault}",
    "3:",
    "    out dx, eax",
    "    jmp 3b",
    vector = const layout::MAILBOX_GPA + mailbox::off::FAULT_VECTOR as u64,
    error = const layout::MAILBOX_GPA + mailbox::off::FAULT_ERROR_CODE as u64,
    rip = const layout::MAILBOX_GPA + mailbox::off::FAULT_RIP as u64,
    cs = const layout::MAILBOX_GPA + mailbox::off::FAULT_CS as u64,
    rflags = const layout::MAILBOX_GPA + mailbox::off::FAULT_RFLAGS as u64,
    rsp_ = const layout::MAILBOX_GPA + mailbox::off::FAULT_RSP as u64,
    cr2 = const layout::MAILBOX_GPA + mailbox::off::FAULT_CR2 as u64,
    port = const ports::DOORBELL_PORT,
    fault = const Doorbell::Fault as u32,
);

/// Rings the doorbell with `why` and returns when the VMM resumes the guest.
/// One exit.
#[inline(always)]
pub fn ring(why: Doorbell) {
    // SAFETY: `out` to the doorbell port transfers control to the VMM,
    // which reads and writes the mailbox and resumes at the next
    // instruction. The asm is not `nomem`: the compiler must finish every
    // mailbox write before it and reload after it.
    unsafe {
        core::arch::asm!(
            "out dx, eax",
            in("dx") ports::DOORBELL_PORT,
            in("eax") why as u32,
            options(nostack, preserves_flags)
        );
    }
}

/// Writes `bytes` to the console port in one exit (`rep outsb`).
pub fn console(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    // SAFETY: `rep outsb` reads `rcx` bytes from `rsi`, which point into the
    // live slice `bytes`; it writes no memory.
    unsafe {
        core::arch::asm!(
            "rep outsb",
            in("dx") ports::CONSOLE_PORT,
            inout("rsi") bytes.as_ptr() => _,
            inout("rcx") bytes.len() => _,
            options(nostack, preserves_flags, readonly)
        );
    }
}

/// The TSC, readable from ring 3 (the VMM leaves `CR4.TSD` clear).
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` reads a counter into edx:eax; nothing else.
    unsafe { core::arch::x86_64::_rdtsc() }
}
