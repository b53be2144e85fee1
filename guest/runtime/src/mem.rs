//! `memcpy` and friends. There is no libc in the guest, and the prebuilt
//! `compiler_builtins` of the host target does not export them, so the
//! guest supplies its own: `rep movsb`/`rep stosb`, which are fast on
//! every CPU with ERMS and cannot be turned back into a call to themselves
//! by the optimiser (a plain loop can).

use core::arch::asm;

/// # Safety
/// The C contract: `dst` and `src` valid for `n` bytes, not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges; `rep movsb` touches
    // exactly them.
    unsafe {
        asm!("rep movsb", inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") n => _,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// The C contract: `dst` and `src` valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // No harmful overlap: a forward copy is right.
        // SAFETY: as for `memcpy`; a forward copy is correct when `dst`
        // does not start inside `[src, src + n)`.
        unsafe { memcpy(dst, src, n) }
    } else {
        // `dst` starts inside the source: copy backwards (direction flag
        // set for the copy, cleared again as the ABI requires).
        // SAFETY: the caller guarantees both ranges; the backward copy
        // touches exactly them, starting from their last bytes.
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
                 inout("rcx") n => _, options(nostack));
        }
        dst
    }
}

/// # Safety
/// The C contract: `dst` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range; `rep stosb` writes exactly it.
    unsafe {
        asm!("rep stosb", inout("rdi") dst => _, inout("rcx") n => _, in("al") c as u8,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// The C contract: `a` and `b` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: `i < n` and the caller guarantees `n` readable bytes.
        let (x, y) = unsafe {
            (
                core::ptr::read_volatile(a.add(i)),
                core::ptr::read_volatile(b.add(i)),
            )
        };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// The C contract: `a` and `b` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as `memcmp`.
    unsafe { memcmp(a, b, n) }
}

/// The prebuilt `compiler_builtins` refers to this symbol even with
/// `panic = "abort"`; nothing ever calls it.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// The prebuilt `core` and `alloc` were compiled with unwinding and refer
/// to this; with `panic = "abort"` no unwind ever starts, so reaching it is
/// a bug: trap.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    // SAFETY: `ud2` raises #UD, which the kernel reports to the VMM.
    unsafe { asm!("ud2", options(noreturn)) }
}
