//! The mailbox page, read and written only by whole-page volatile copies:
//! the VMM changes it while the guest is stopped at a doorbell, so no
//! reference into it is ever held across one.

use hearth_guest_abi::layout::MAILBOX_GPA;
use hearth_guest_abi::mailbox::MAILBOX_SIZE;

const PAGE: *mut [u8; MAILBOX_SIZE] = MAILBOX_GPA as *mut [u8; MAILBOX_SIZE];

/// A copy of the mailbox as it is now.
pub fn read() -> [u8; MAILBOX_SIZE] {
    // SAFETY: the mailbox page is guest RAM mapped for ring 3 at a fixed
    // address (the ABI's layout), page-aligned, and only this runtime and
    // the VMM (while the guest is stopped) touch it.
    unsafe { core::ptr::read_volatile(PAGE) }
}

/// Edits the mailbox: `f` gets a copy, which is written back whole.
pub fn write(f: impl FnOnce(&mut [u8; MAILBOX_SIZE])) {
    let mut page = read();
    f(&mut page);
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile(PAGE, page) }
}
