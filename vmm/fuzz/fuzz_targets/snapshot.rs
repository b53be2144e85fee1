//! The snapshot reader: any file content is refused with an error or
//! accepted with an index that is in order, inside memory and inside the
//! data; never a panic.
#![no_main]

use hearth_vmm::snapshot::{check_bytes, decode_prefix};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = decode_prefix(data) {
        let mut end = 0;
        for r in &p.runs {
            assert!(r.gpa >= end && r.gpa + r.len <= p.header.mem_size);
            assert!(r.file_offset >= p.data_offset);
            end = r.gpa + r.len;
        }
    }
    let _ = check_bytes(data);
});
