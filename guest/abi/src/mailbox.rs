//! The mailbox page: fixed offsets, little-endian, one writer per section.
//!
//! ```text
//! 0x000  magic, ABI version                       VMM, at boot
//! 0x008  BootInfo: memory, regions, TSC rate      VMM, at boot
//! 0x100  Entry: command, lengths, clocks,         VMM, before every entry
//!        entropy, deadline, request id
//! 0x200  Report: status, exit code, lengths       guest, before Done
//! 0x280  FaultReport: vector, error code, RIP…    guest kernel, before Fault
//! 0x400  message text (UTF-8) for the Report      guest, before Done
//! ```
//!
//! The host decodes with [`Report::decode`] and [`FaultReport::decode`], which
//! never panic on any input (they are fuzzed) and reject anything that is not
//! a well-formed report.

use crate::layout::Region;
use crate::ABI_VERSION;

/// The mailbox is one page.
pub const MAILBOX_SIZE: usize = 4096;
/// "HMBX".
pub const MAGIC: u32 = 0x5842_4d48;

/// Byte offsets of every field.
pub mod off {
    #![allow(missing_docs)]
    pub const MAGIC: usize = 0x000;
    pub const VERSION: usize = 0x004;

    pub const MEM_SIZE: usize = 0x008;
    pub const EVENT_GPA: usize = 0x010;
    pub const EVENT_CAP: usize = 0x018;
    pub const STDOUT_GPA: usize = 0x020;
    pub const STDOUT_CAP: usize = 0x028;
    pub const STDERR_GPA: usize = 0x030;
    pub const STDERR_CAP: usize = 0x038;
    pub const HEAP_GPA: usize = 0x040;
    pub const HEAP_LEN: usize = 0x048;
    pub const TSC_KHZ: usize = 0x050;

    pub const COMMAND: usize = 0x100;
    pub const FLAGS: usize = 0x104;
    pub const MODULE_LEN: usize = 0x108;
    pub const CONFIG_LEN: usize = 0x110;
    pub const EVENT_LEN: usize = 0x118;
    pub const DEADLINE_MS: usize = 0x120;
    pub const REALTIME_NS: usize = 0x128;
    pub const MONOTONIC_NS: usize = 0x130;
    pub const REQUEST_ID_LEN: usize = 0x138;
    pub const ENTROPY: usize = 0x140;
    pub const REQUEST_ID: usize = 0x160;

    pub const STATUS: usize = 0x200;
    pub const EXIT_CODE: usize = 0x204;
    pub const STDOUT_LEN: usize = 0x208;
    pub const STDERR_LEN: usize = 0x210;
    pub const STDERR_DROPPED: usize = 0x218;
    pub const DETAIL: usize = 0x220;
    pub const MESSAGE_LEN: usize = 0x224;

    pub const FAULT_VECTOR: usize = 0x280;
    pub const FAULT_ERROR_CODE: usize = 0x288;
    pub const FAULT_RIP: usize = 0x290;
    pub const FAULT_CS: usize = 0x298;
    pub const FAULT_RFLAGS: usize = 0x2a0;
    pub const FAULT_RSP: usize = 0x2a8;
    pub const FAULT_CR2: usize = 0x2b0;

    pub const MESSAGE: usize = 0x400;
}

/// The longest report message.
pub const MESSAGE_CAP: usize = super::mailbox::MAILBOX_SIZE - off::MESSAGE;
/// Entropy handed to the guest at every entry.
pub const ENTROPY_LEN: usize = 32;
/// The longest request id.
pub const REQUEST_ID_CAP: usize = 64;

/// Why a mailbox cannot be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The page is not `MAILBOX_SIZE` bytes.
    Size,
    /// The magic or the ABI version was overwritten.
    Header,
    /// A status, command or kind value that means nothing.
    Unknown(&'static str, u64),
    /// A length beyond its buffer.
    Length(&'static str, u64),
    /// The message is not UTF-8.
    Utf8,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::Size => write!(f, "the mailbox is not one page"),
            DecodeError::Header => write!(f, "the mailbox header was overwritten"),
            DecodeError::Unknown(what, v) => write!(f, "unknown {what} {v:#x}"),
            DecodeError::Length(what, v) => write!(f, "{what} of {v} bytes is out of bounds"),
            DecodeError::Utf8 => write!(f, "a string in the mailbox is not UTF-8"),
        }
    }
}

fn get_u32(p: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&p[at..at + 4]);
    u32::from_le_bytes(b)
}

fn get_u64(p: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p[at..at + 8]);
    u64::from_le_bytes(b)
}

fn put_u32(p: &mut [u8], at: usize, v: u32) {
    p[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(p: &mut [u8], at: usize, v: u64) {
    p[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn page(p: &[u8]) -> Result<&[u8; MAILBOX_SIZE], DecodeError> {
    p.try_into().map_err(|_| DecodeError::Size)
}

fn check_header(p: &[u8; MAILBOX_SIZE]) -> Result<(), DecodeError> {
    if get_u32(p, off::MAGIC) != MAGIC || get_u32(p, off::VERSION) != ABI_VERSION {
        return Err(DecodeError::Header);
    }
    Ok(())
}

/// What the VMM tells the guest once, at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// RAM size in bytes.
    pub mem_size: u64,
    /// Where the VMM writes the event.
    pub event: Region,
    /// Where the guest collects stdout.
    pub stdout: Region,
    /// Where the guest collects stderr.
    pub stderr: Region,
    /// The guest's heap.
    pub heap: Region,
    /// The TSC's rate, for the guest's clocks.
    pub tsc_khz: u64,
}

impl BootInfo {
    /// Writes the header and the boot section.
    pub fn encode(&self, p: &mut [u8; MAILBOX_SIZE]) {
        put_u32(p, off::MAGIC, MAGIC);
        put_u32(p, off::VERSION, ABI_VERSION);
        put_u64(p, off::MEM_SIZE, self.mem_size);
        for (r, a, b) in [
            (self.event, off::EVENT_GPA, off::EVENT_CAP),
            (self.stdout, off::STDOUT_GPA, off::STDOUT_CAP),
            (self.stderr, off::STDERR_GPA, off::STDERR_CAP),
            (self.heap, off::HEAP_GPA, off::HEAP_LEN),
        ] {
            put_u64(p, a, r.start);
            put_u64(p, b, r.len);
        }
        put_u64(p, off::TSC_KHZ, self.tsc_khz);
    }

    /// Reads the boot section (the guest's side).
    pub fn decode(p: &[u8]) -> Result<BootInfo, DecodeError> {
        let p = page(p)?;
        check_header(p)?;
        let r = |a, b| Region {
            start: get_u64(p, a),
            len: get_u64(p, b),
        };
        Ok(BootInfo {
            mem_size: get_u64(p, off::MEM_SIZE),
            event: r(off::EVENT_GPA, off::EVENT_CAP),
            stdout: r(off::STDOUT_GPA, off::STDOUT_CAP),
            stderr: r(off::STDERR_GPA, off::STDERR_CAP),
            heap: r(off::HEAP_GPA, off::HEAP_LEN),
            tsc_khz: get_u64(p, off::TSC_KHZ),
        })
    }
}

/// What the VMM asks of the guest at an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Command {
    /// The first entry: boot the runtime, then ring `BaseReady`.
    Boot = 1,
    /// Load the module in the module window with the config blob, run it
    /// up to its first stdin read (then ring `StdinWait`) or, with
    /// [`FLAG_EVENT_PRESENT`], straight through with the event.
    Load = 2,
    /// Answer the pending stdin read with the event.
    Invoke = 3,
}

/// With `Load`: the event is already in place; do not stop at the first
/// stdin read.
pub const FLAG_EVENT_PRESENT: u32 = 1;

/// What the VMM writes before every entry into the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// What to do.
    pub command: Command,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// The module's length in the module window (with `Load`).
    pub module_len: u64,
    /// The config blob's length (with `Load`).
    pub config_len: u64,
    /// The event's length in the event region.
    pub event_len: u64,
    /// When the invocation must be over, in Unix ms (0: none).
    pub deadline_unix_ms: u64,
    /// The host's `CLOCK_REALTIME` at entry, in ns.
    pub realtime_ns: u64,
    /// The host's `CLOCK_MONOTONIC` at entry, in ns.
    pub monotonic_ns: u64,
    /// Fresh random bytes: the guest reseeds from them at every entry, so
    /// two VMs restored from one snapshot never share random numbers.
    pub entropy: [u8; ENTROPY_LEN],
    /// The invocation's request id (ASCII, at most `REQUEST_ID_CAP`).
    pub request_id: &'a str,
}

impl<'a> Entry<'a> {
    /// Writes the entry section (the VMM's side). A request id longer than
    /// `REQUEST_ID_CAP` bytes is cut at a character boundary.
    pub fn encode(&self, p: &mut [u8; MAILBOX_SIZE]) {
        put_u32(p, off::COMMAND, self.command as u32);
        put_u32(p, off::FLAGS, self.flags);
        put_u64(p, off::MODULE_LEN, self.module_len);
        put_u64(p, off::CONFIG_LEN, self.config_len);
        put_u64(p, off::EVENT_LEN, self.event_len);
        put_u64(p, off::DEADLINE_MS, self.deadline_unix_ms);
        put_u64(p, off::REALTIME_NS, self.realtime_ns);
        put_u64(p, off::MONOTONIC_NS, self.monotonic_ns);
        p[off::ENTROPY..off::ENTROPY + ENTROPY_LEN].copy_from_slice(&self.entropy);
        let id = self.request_id.as_bytes();
        let mut n = id.len().min(REQUEST_ID_CAP);
        while !self.request_id.is_char_boundary(n) {
            n -= 1;
        }
        put_u32(p, off::REQUEST_ID_LEN, n as u32);
        p[off::REQUEST_ID..off::REQUEST_ID + n].copy_from_slice(&id[..n]);
    }

    /// Reads the entry section (the guest's side).
    pub fn decode(p: &'a [u8]) -> Result<Entry<'a>, DecodeError> {
        let p = page(p)?;
        check_header(p)?;
        let command = match get_u32(p, off::COMMAND) {
            1 => Command::Boot,
            2 => Command::Load,
            3 => Command::Invoke,
            v => return Err(DecodeError::Unknown("command", u64::from(v))),
        };
        let id_len = get_u32(p, off::REQUEST_ID_LEN) as usize;
        if id_len > REQUEST_ID_CAP {
            return Err(DecodeError::Length("request id", id_len as u64));
        }
        let request_id = core::str::from_utf8(&p[off::REQUEST_ID..off::REQUEST_ID + id_len])
            .map_err(|_| DecodeError::Utf8)?;
        let mut entropy = [0u8; ENTROPY_LEN];
        entropy.copy_from_slice(&p[off::ENTROPY..off::ENTROPY + ENTROPY_LEN]);
        Ok(Entry {
            command,
            flags: get_u32(p, off::FLAGS),
            module_len: get_u64(p, off::MODULE_LEN),
            config_len: get_u64(p, off::CONFIG_LEN),
            event_len: get_u64(p, off::EVENT_LEN),
            deadline_unix_ms: get_u64(p, off::DEADLINE_MS),
            realtime_ns: get_u64(p, off::REALTIME_NS),
            monotonic_ns: get_u64(p, off::MONOTONIC_NS),
            entropy,
            request_id,
        })
    }
}

/// How a module's run ended, as the guest reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    /// The module exited (`proc_exit`, or `_start` returned: code 0).
    Exited = 1,
    /// The module trapped; the message says how.
    Trap = 2,
    /// The module wanted more memory than the VM has.
    OutOfMemory = 3,
    /// The module wrote more than `STDOUT_CAP` to stdout.
    OutputTooLarge = 4,
    /// The module could not be loaded; `detail` is a [`LoadError`].
    LoadError = 5,
    /// The guest runtime itself failed (a bug, or a corrupted guest).
    Panic = 6,
    /// Not an end: the module waits at its first stdin read (rung with
    /// `StdinWait`). The lengths are its init's output; from the next
    /// `Invoke` on, stderr counts from zero again, so an invocation's logs
    /// never repeat the init's.
    Waiting = 7,
}

/// Why a module could not be loaded (`Report::detail` with `LoadError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum LoadError {
    /// Not a valid WebAssembly module.
    Invalid = 1,
    /// Bigger than the module window.
    TooLarge = 2,
    /// Imports something the runtime does not provide.
    MissingImport = 3,
    /// Instantiation failed (a start function trapped, a segment does not fit).
    Instantiate = 4,
    /// No `_start` export: not a WASI command.
    NoStart = 5,
    /// The config blob is malformed.
    Config = 6,
}

impl LoadError {
    fn from_u32(v: u32) -> Option<LoadError> {
        Some(match v {
            1 => LoadError::Invalid,
            2 => LoadError::TooLarge,
            3 => LoadError::MissingImport,
            4 => LoadError::Instantiate,
            5 => LoadError::NoStart,
            6 => LoadError::Config,
            _ => return None,
        })
    }
}

/// What the guest reports at `Done`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report<'a> {
    /// How the run ended.
    pub status: Status,
    /// The exit code (with `Exited`).
    pub exit_code: i32,
    /// Bytes in the stdout region.
    pub stdout_len: u64,
    /// Bytes in the stderr region.
    pub stderr_len: u64,
    /// Stderr bytes that did not fit and were dropped.
    pub stderr_dropped: u64,
    /// Status-specific: a [`LoadError`] with `LoadError`, else 0.
    pub detail: u32,
    /// What went wrong, for people.
    pub message: &'a str,
}

impl<'a> Report<'a> {
    /// Writes the report (the guest's side). A message longer than
    /// `MESSAGE_CAP` is cut at a character boundary.
    pub fn encode(&self, p: &mut [u8; MAILBOX_SIZE]) {
        put_u32(p, off::STATUS, self.status as u32);
        put_u32(p, off::EXIT_CODE, self.exit_code as u32);
        put_u64(p, off::STDOUT_LEN, self.stdout_len);
        put_u64(p, off::STDERR_LEN, self.stderr_len);
        put_u64(p, off::STDERR_DROPPED, self.stderr_dropped);
        put_u32(p, off::DETAIL, self.detail);
        let mut n = self.message.len().min(MESSAGE_CAP);
        while !self.message.is_char_boundary(n) {
            n -= 1;
        }
        put_u32(p, off::MESSAGE_LEN, n as u32);
        p[off::MESSAGE..off::MESSAGE + n].copy_from_slice(&self.message.as_bytes()[..n]);
    }

    /// Reads a report (the host's side). The caller still checks the
    /// lengths against the regions it gave the guest.
    pub fn decode(p: &'a [u8]) -> Result<Report<'a>, DecodeError> {
        let p = page(p)?;
        check_header(p)?;
        let status = match get_u32(p, off::STATUS) {
            1 => Status::Exited,
            2 => Status::Trap,
            3 => Status::OutOfMemory,
            4 => Status::OutputTooLarge,
            5 => Status::LoadError,
            6 => Status::Panic,
            7 => Status::Waiting,
            v => return Err(DecodeError::Unknown("status", u64::from(v))),
        };
        let detail = get_u32(p, off::DETAIL);
        if status == Status::LoadError && LoadError::from_u32(detail).is_none() {
            return Err(DecodeError::Unknown("load error", u64::from(detail)));
        }
        let n = get_u32(p, off::MESSAGE_LEN) as usize;
        if n > MESSAGE_CAP {
            return Err(DecodeError::Length("message", n as u64));
        }
        let message = core::str::from_utf8(&p[off::MESSAGE..off::MESSAGE + n])
            .map_err(|_| DecodeError::Utf8)?;
        Ok(Report {
            status,
            exit_code: get_u32(p, off::EXIT_CODE) as i32,
            stdout_len: get_u64(p, off::STDOUT_LEN),
            stderr_len: get_u64(p, off::STDERR_LEN),
            stderr_dropped: get_u64(p, off::STDERR_DROPPED),
            detail,
            message,
        })
    }

    /// The load error, with `LoadError`.
    pub fn load_error(&self) -> Option<LoadError> {
        if self.status == Status::LoadError {
            LoadError::from_u32(self.detail)
        } else {
            None
        }
    }

    /// Checks the lengths against the regions the VMM handed out.
    pub fn check(&self, stdout_cap: u64, stderr_cap: u64) -> Result<(), DecodeError> {
        if self.stdout_len > stdout_cap {
            return Err(DecodeError::Length("stdout", self.stdout_len));
        }
        if self.stderr_len > stderr_cap {
            return Err(DecodeError::Length("stderr", self.stderr_len));
        }
        Ok(())
    }
}

/// What the guest kernel reports at `Fault`: the CPU exception and where it
/// happened. Written by ring-0 code straight into the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultReport {
    /// The exception vector (0–31).
    pub vector: u64,
    /// The error code the CPU pushed (0 for vectors without one).
    pub error_code: u64,
    /// Where it happened.
    pub rip: u64,
    /// The code segment then; its low two bits are the ring.
    pub cs: u64,
    /// RFLAGS then.
    pub rflags: u64,
    /// The stack pointer then.
    pub rsp: u64,
    /// CR2: the faulting address of a page fault.
    pub cr2: u64,
}

impl FaultReport {
    /// Reads a fault report (the host's side).
    pub fn decode(p: &[u8]) -> Result<FaultReport, DecodeError> {
        let p = page(p)?;
        check_header(p)?;
        let vector = get_u64(p, off::FAULT_VECTOR);
        if vector > 31 {
            return Err(DecodeError::Unknown("exception vector", vector));
        }
        Ok(FaultReport {
            vector,
            error_code: get_u64(p, off::FAULT_ERROR_CODE),
            rip: get_u64(p, off::FAULT_RIP),
            cs: get_u64(p, off::FAULT_CS),
            rflags: get_u64(p, off::FAULT_RFLAGS),
            rsp: get_u64(p, off::FAULT_RSP),
            cr2: get_u64(p, off::FAULT_CR2),
        })
    }

    /// The ring the exception came from.
    pub fn ring(&self) -> u8 {
        (self.cs & 3) as u8
    }

    /// The exception's mnemonic (`#PF`, `#GP`, …).
    pub fn name(&self) -> &'static str {
        const NAMES: [&str; 32] = [
            "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP",
            "#SS", "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "#22", "#23",
            "#24", "#25", "#26", "#27", "#HV", "#VC", "#SX", "#31",
        ];
        NAMES.get(self.vector as usize).copied().unwrap_or("#??")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot_page() -> [u8; MAILBOX_SIZE] {
        let mut p = [0u8; MAILBOX_SIZE];
        let r = |s| Region {
            start: s,
            len: 4096,
        };
        BootInfo {
            mem_size: 128 << 20,
            event: r(0x100000),
            stdout: r(0x200000),
            stderr: r(0x300000),
            heap: r(0x400000),
            tsc_khz: 2_000_000,
        }
        .encode(&mut p);
        p
    }

    #[test]
    fn boot_info_round_trips() {
        let p = boot_page();
        let b = BootInfo::decode(&p).unwrap();
        assert_eq!(b.mem_size, 128 << 20);
        assert_eq!(b.stdout.start, 0x200000);
        assert_eq!(b.tsc_khz, 2_000_000);
    }

    #[test]
    fn entry_round_trips_and_cuts_long_ids() {
        let mut p = boot_page();
        let long = "x".repeat(100);
        let e = Entry {
            command: Command::Invoke,
            flags: FLAG_EVENT_PRESENT,
            module_len: 1,
            config_len: 2,
            event_len: 3,
            deadline_unix_ms: 4,
            realtime_ns: 5,
            monotonic_ns: 6,
            entropy: [7; ENTROPY_LEN],
            request_id: &long,
        };
        e.encode(&mut p);
        let d = Entry::decode(&p).unwrap();
        assert_eq!(d.command, Command::Invoke);
        assert_eq!(d.request_id.len(), REQUEST_ID_CAP);
        // A multi-byte character across the cut is dropped whole.
        let accented = "é".repeat(40);
        Entry {
            request_id: &accented,
            ..e
        }
        .encode(&mut p);
        let d = Entry::decode(&p).unwrap();
        assert_eq!(d.request_id, "é".repeat(32));
        assert_eq!(d.entropy, [7; ENTROPY_LEN]);
        assert_eq!((d.module_len, d.config_len, d.event_len), (1, 2, 3));
    }

    #[test]
    fn report_round_trips_and_cuts_at_char_boundary() {
        let mut p = boot_page();
        let msg = "é".repeat(MESSAGE_CAP);
        Report {
            status: Status::Trap,
            exit_code: -1,
            stdout_len: 1,
            stderr_len: 2,
            stderr_dropped: 3,
            detail: 0,
            message: &msg,
        }
        .encode(&mut p);
        let r = Report::decode(&p).unwrap();
        assert_eq!(r.status, Status::Trap);
        assert_eq!(r.exit_code, -1);
        assert!(r.message.len() <= MESSAGE_CAP && r.message.chars().all(|c| c == 'é'));
        assert_eq!(r.check(1, 2), Ok(()));
        assert_eq!(r.check(0, 2), Err(DecodeError::Length("stdout", 1)));
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(Report::decode(&[0u8; 10]), Err(DecodeError::Size));
        assert_eq!(
            Report::decode(&[0u8; MAILBOX_SIZE]),
            Err(DecodeError::Header)
        );
        let mut p = boot_page();
        put_u32(&mut p, off::STATUS, 99);
        assert_eq!(Report::decode(&p), Err(DecodeError::Unknown("status", 99)));
        put_u32(&mut p, off::STATUS, Status::LoadError as u32);
        put_u32(&mut p, off::DETAIL, 42);
        assert!(Report::decode(&p).is_err());
        put_u32(&mut p, off::STATUS, Status::Exited as u32);
        put_u32(&mut p, off::MESSAGE_LEN, 5000);
        assert_eq!(
            Report::decode(&p),
            Err(DecodeError::Length("message", 5000))
        );
        put_u32(&mut p, off::MESSAGE_LEN, 2);
        p[off::MESSAGE] = 0xff;
        p[off::MESSAGE + 1] = 0xfe;
        assert_eq!(Report::decode(&p), Err(DecodeError::Utf8));
        put_u64(&mut p, off::FAULT_VECTOR, 32);
        assert!(FaultReport::decode(&p).is_err());
    }

    #[test]
    fn fault_names() {
        let mut p = boot_page();
        put_u64(&mut p, off::FAULT_VECTOR, 14);
        put_u64(&mut p, off::FAULT_CS, 0x23);
        let f = FaultReport::decode(&p).unwrap();
        assert_eq!((f.name(), f.ring()), ("#PF", 3));
    }
}
