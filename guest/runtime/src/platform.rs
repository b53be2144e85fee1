//! `Platform` inside a microVM: clocks from the TSC anchored at every entry,
//! entropy from every entry, the event and outputs in the regions the VMM
//! named at boot, and the stdin wait as a doorbell.

use alloc::format;
use alloc::string::String;

use hearth_guest_abi::layout::Region;
use hearth_guest_abi::mailbox::{BootInfo, Command, Entry, FLAG_EVENT_PRESENT, REQUEST_ID_CAP};
use hearth_guest_abi::Doorbell;
use hearth_wasi::{OutputTooLarge, Platform};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::{heap, mailbox};

/// What the runtime keeps of an entry it acted on.
#[derive(Clone, Copy, Debug)]
pub struct Entered {
    pub module_len: u64,
    pub config_len: u64,
}

#[derive(Debug)]
pub struct VmPlatform {
    boot: BootInfo,
    /// Host clocks at the last entry, and the TSC then.
    realtime_ns: u64,
    monotonic_ns: u64,
    tsc_at_entry: u64,
    rng: ChaCha20Rng,
    event_present: bool,
    event_len: usize,
    deadline_ms: u64,
    request_id: [u8; REQUEST_ID_CAP],
    request_id_len: usize,
    stdout_len: u64,
    stderr_len: u64,
    stderr_dropped: u64,
}

/// A mutable view of guest RAM the VMM set aside.
fn region_mut(r: Region) -> &'static mut [u8] {
    // SAFETY: `r` is a region of guest RAM from `BootInfo` (event, stdout
    // or stderr), mapped for ring 3 and used for nothing else; the VMM only
    // touches it while the guest is stopped.
    unsafe { core::slice::from_raw_parts_mut(r.start as *mut u8, r.len as usize) }
}

impl VmPlatform {
    pub fn new(boot: BootInfo) -> VmPlatform {
        VmPlatform {
            boot,
            realtime_ns: 0,
            monotonic_ns: 0,
            tsc_at_entry: hearth_kernel::rdtsc(),
            rng: ChaCha20Rng::from_seed([0; 32]),
            event_present: false,
            event_len: 0,
            deadline_ms: 0,
            request_id: [0; REQUEST_ID_CAP],
            request_id_len: 0,
            stdout_len: 0,
            stderr_len: 0,
            stderr_dropped: 0,
        }
    }

    /// Reads the entry the VMM wrote, which must carry `expected`, and acts
    /// on what every entry carries: clocks, entropy, the invocation.
    pub fn enter(&mut self, expected: Command) -> Result<Entered, String> {
        let tsc = hearth_kernel::rdtsc();
        let page = mailbox::read();
        let e = Entry::decode(&page).map_err(|e| format!("bad entry: {e}"))?;
        if e.command != expected {
            return Err(format!(
                "expected a {expected:?} entry, got {:?}",
                e.command
            ));
        }
        self.tsc_at_entry = tsc;
        self.realtime_ns = e.realtime_ns;
        self.monotonic_ns = e.monotonic_ns;
        self.rng = ChaCha20Rng::from_seed(e.entropy);
        self.deadline_ms = e.deadline_unix_ms;
        let id = e.request_id.as_bytes();
        self.request_id[..id.len()].copy_from_slice(id);
        self.request_id_len = id.len();
        self.event_len = (e.event_len.min(self.boot.event.len)) as usize;
        self.event_present = e.command == Command::Load && e.flags & FLAG_EVENT_PRESENT != 0;
        Ok(Entered {
            module_len: e.module_len,
            config_len: e.config_len,
        })
    }

    /// (stdout, stderr, stderr dropped) byte counts.
    pub fn output_lengths(&self) -> (u64, u64, u64) {
        (self.stdout_len, self.stderr_len, self.stderr_dropped)
    }

    /// Nanoseconds since the last entry, from the TSC.
    fn since_entry_ns(&self) -> u64 {
        let ticks = hearth_kernel::rdtsc().wrapping_sub(self.tsc_at_entry);
        if self.boot.tsc_khz == 0 {
            return 0;
        }
        (u128::from(ticks) * 1_000_000 / u128::from(self.boot.tsc_khz)) as u64
    }
}

impl Platform for VmPlatform {
    fn realtime_ns(&mut self) -> u64 {
        self.realtime_ns + self.since_entry_ns()
    }

    fn monotonic_ns(&mut self) -> u64 {
        self.monotonic_ns + self.since_entry_ns()
    }

    fn random(&mut self, buf: &mut [u8]) {
        self.rng.fill_bytes(buf);
    }

    fn wait_event(&mut self) -> usize {
        if !self.event_present {
            // The function snapshot point: one exit, and the VMM answers
            // with the event (now, or after restoring a snapshot of this
            // very moment, in another VM).
            // What the init wrote, for the VMM to log once.
            crate::report(
                Some(self),
                hearth_guest_abi::mailbox::Status::Waiting,
                0,
                0,
                "",
            );
            hearth_kernel::ring(Doorbell::StdinWait);
            if let Err(e) = self.enter(Command::Invoke) {
                crate::finish(
                    Some(self),
                    hearth_guest_abi::mailbox::Status::Panic,
                    0,
                    0,
                    &e,
                )
            }
            // Every invocation from this snapshot point logs only its own.
            self.stderr_len = 0;
            self.stderr_dropped = 0;
        }
        self.event_len
    }

    fn read_event(&mut self, at: usize, buf: &mut [u8]) -> usize {
        let event = &region_mut(self.boot.event)[..self.event_len];
        let n = buf.len().min(event.len().saturating_sub(at));
        buf[..n].copy_from_slice(&event[at..at + n]);
        n
    }

    fn stdout(&mut self, data: &[u8]) -> Result<(), OutputTooLarge> {
        let at = self.stdout_len as usize;
        let end = at.checked_add(data.len()).ok_or(OutputTooLarge)?;
        let out = region_mut(self.boot.stdout);
        out.get_mut(at..end)
            .ok_or(OutputTooLarge)?
            .copy_from_slice(data);
        self.stdout_len = end as u64;
        Ok(())
    }

    fn stderr(&mut self, data: &[u8]) {
        let at = self.stderr_len as usize;
        let out = region_mut(self.boot.stderr);
        let n = data.len().min(out.len() - at);
        out[at..at + n].copy_from_slice(&data[..n]);
        self.stderr_len += n as u64;
        self.stderr_dropped += (data.len() - n) as u64;
    }

    fn memory_available(&self) -> usize {
        heap::available()
    }

    fn request_id(&self) -> &[u8] {
        &self.request_id[..self.request_id_len]
    }

    fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }
}
