//! Writes seed inputs for the fuzz targets (`scripts/fuzz`): a well-formed
//! snapshot file and well-formed mailbox pages, so the fuzzers start past
//! the magic numbers and checksums.
//!
//! usage: cargo run -p hearth-vmm --example fuzz_seeds -- CORPUS_DIR

use hearth_guest_abi::layout::{Layout, IMAGE_BASE};
use hearth_guest_abi::mailbox::{BootInfo, Command, Entry, Report, Status, MAILBOX_SIZE};
use hearth_vmm::snapshot::{self, Header, Kind};
use hearth_vmm::vcpu::VcpuState;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: fuzz_seeds CORPUS_DIR")?,
    );
    let (snap_dir, mb_dir) = (dir.join("snapshot"), dir.join("mailbox"));
    std::fs::create_dir_all(&snap_dir)?;
    std::fs::create_dir_all(&mb_dir)?;

    let header = Header {
        kind: Kind::Layer,
        abi_version: hearth_guest_abi::ABI_VERSION,
        mem_size: 64 << 20,
        id: [1; 16],
        parent_id: [2; 16],
        image_id: [3; 32],
        cpu_signature: [4; 32],
        module_sha256: [5; 32],
        module_len: 100,
        key: [6; 32],
        image_end: IMAGE_BASE + 0x1000,
    };
    snapshot::write(
        &snap_dir.join("seed-two-runs"),
        &header,
        &VcpuState::default(),
        &[(0x1000, 0x1000), (0x20000, 0x2000)],
        |a, b| {
            b.fill((a >> 12) as u8);
            Ok(())
        },
    )?;

    let l = Layout::new(128 << 20, IMAGE_BASE + 0x10_0000).map_err(|e| format!("{e:?}"))?;
    let mut page = [0u8; MAILBOX_SIZE];
    BootInfo {
        mem_size: l.mem_size,
        event: l.event,
        stdout: l.stdout,
        stderr: l.stderr,
        heap: l.heap,
        tsc_khz: 1,
    }
    .encode(&mut page);
    Entry {
        command: Command::Invoke,
        flags: 0,
        module_len: 1,
        config_len: 8,
        event_len: 2,
        deadline_unix_ms: 3,
        realtime_ns: 4,
        monotonic_ns: 5,
        entropy: [7; 32],
        request_id: "r-1",
    }
    .encode(&mut page);
    Report {
        status: Status::Trap,
        exit_code: 0,
        stdout_len: 10,
        stderr_len: 3,
        stderr_dropped: 0,
        detail: 0,
        message: "unreachable",
    }
    .encode(&mut page);
    std::fs::write(mb_dir.join("seed-report"), page)?;
    Ok(())
}
