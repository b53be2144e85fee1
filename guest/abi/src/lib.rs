//! The ABI between Hearth's VMM and the code inside its microVMs.
//!
//! Both sides compile this one crate (the VMM for the host, the guest
//! freestanding), so they cannot disagree about where things are or what a
//! byte means:
//!
//! - [`layout`]: the guest-physical memory map. Guest-virtual equals
//!   guest-physical (identity paging built by the VMM).
//! - [`ports`]: the two I/O ports, the console and the doorbell, and what a
//!   doorbell value means ([`Doorbell`]).
//! - [`mailbox`]: the one shared page. The VMM writes [`mailbox::BootInfo`]
//!   once and an [`mailbox::Entry`] before every entry; the guest writes a
//!   [`mailbox::Report`] before ringing [`Doorbell::Done`], and its kernel
//!   writes a [`mailbox::FaultReport`] before [`Doorbell::Fault`].
//! - [`config`]: the blob of arguments and environment variables.
//!
//! Everything is little-endian at fixed offsets and decoded with bounds
//! checks: the host treats every byte the guest wrote as hostile.
//!
//! ```
//! use hearth_guest_abi::layout::{Layout, IMAGE_BASE};
//! use hearth_guest_abi::mailbox::{BootInfo, Report, Status, MAILBOX_SIZE};
//! let l = Layout::new(128 << 20, IMAGE_BASE + 0x10_0000).unwrap();
//! let mut page = [0u8; MAILBOX_SIZE];
//! BootInfo { mem_size: l.mem_size, event: l.event, stdout: l.stdout, stderr: l.stderr,
//!            heap: l.heap, tsc_khz: 2_000_000 }.encode(&mut page);
//! Report { status: Status::Exited, exit_code: 0, stdout_len: 5, stderr_len: 0,
//!          stderr_dropped: 0, detail: 0, message: "" }.encode(&mut page);
//! let got = Report::decode(&page).unwrap();
//! assert_eq!(got.stdout_len, 5);
//! got.check(l.stdout.len, l.stderr.len).unwrap();
//! ```
#![no_std]
#![forbid(unsafe_code)]

pub mod config;
pub mod files;
pub mod layout;
pub mod mailbox;
pub mod ports;

pub use ports::Doorbell;

/// Bumped whenever any layout, offset or meaning in this crate changes. A
/// snapshot records it, so a snapshot of an older guest is never restored
/// by a newer VMM.
pub const ABI_VERSION: u32 = 1;
