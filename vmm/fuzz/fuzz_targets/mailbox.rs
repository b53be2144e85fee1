//! The mailbox decoder: whatever the guest leaves in the page, decoding
//! returns a value or an error, never panics, and a decoded report's
//! lengths pass `check` only when they fit the regions.
#![no_main]

use hearth_guest_abi::config::Config;
use hearth_guest_abi::mailbox::{BootInfo, Entry, FaultReport, Report, MAILBOX_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut page = [0u8; MAILBOX_SIZE];
    let n = data.len().min(MAILBOX_SIZE);
    page[..n].copy_from_slice(&data[..n]);
    if let Ok(r) = Report::decode(&page) {
        let _ = r.load_error();
        if r.check(6 << 20, 1 << 20).is_ok() {
            assert!(r.stdout_len <= 6 << 20 && r.stderr_len <= 1 << 20);
        }
        assert!(r.message.len() <= hearth_guest_abi::mailbox::MESSAGE_CAP);
    }
    if let Ok(f) = FaultReport::decode(&page) {
        assert!(f.vector < 32);
        let _ = (f.name(), f.ring());
    }
    let _ = Entry::decode(&page);
    let _ = BootInfo::decode(&page);
    let _ = Report::decode(data);
    if let Ok(c) = Config::decode(data) {
        assert_eq!(c.args().count() + c.env().count(), c.argc + c.envc);
    }
});
