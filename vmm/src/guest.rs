//! Hearth's guest protocol on top of a [`Vm`]: boot to the base snapshot
//! point, load a module to its first stdin read (the function snapshot
//! point), invoke it with an event, and read what it reported.
//!
//! Each step writes one mailbox entry and runs the guest until it rings the
//! doorbell: one exit per step. Anything else that stops the guest (a CPU
//! fault, a timeout, a port or address it has no business with, a mailbox
//! that does not decode) is a [`GuestError`], after which the VM must be
//! discarded.

use hearth_guest_abi::layout;
use hearth_guest_abi::mailbox::{
    Command, DecodeError, Entry, FaultReport, LoadError, Report, Status, ENTROPY_LEN,
    FLAG_EVENT_PRESENT,
};
use hearth_guest_abi::Doorbell;

use crate::accounting::RunStats;
use crate::sys::{self, ThreadTimer};
use crate::vcpu::Stop;
use crate::vm::{Phase, Vm, VmError};

/// Why a guest step failed. The VM is unusable afterwards.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The deadline passed.
    #[error("the guest ran past its deadline")]
    Timeout,
    /// The guest's kernel reported a CPU exception.
    #[error("guest {} in ring {} at rip {:#x} (error code {:#x}, cr2 {:#x}){}", .report.name(), .report.ring(), .report.rip, .report.error_code, .report.cr2, if *.stack_overflow { ": stack overflow" } else { "" })]
    Fault {
        /// What the kernel reported.
        report: FaultReport,
        /// Whether it was a page fault on the stack's guard page.
        stack_overflow: bool,
    },
    /// A triple fault: the guest could not even report its fault.
    #[error("the guest triple-faulted (shut down)")]
    TripleFault,
    /// The guest executed `hlt` in ring 0.
    #[error("the guest halted")]
    Halted,
    /// The guest used an I/O port that does not exist.
    #[error("the guest accessed I/O port {port:#x} ({})", if *.write { "out" } else { "in" })]
    UnknownPort {
        /// The port.
        port: u16,
        /// Whether it was an `out`.
        write: bool,
    },
    /// The guest accessed guest-physical memory with nothing behind it.
    #[error("the guest {} {gpa:#x}, outside its memory", if *.write { "wrote" } else { "read" })]
    OutsideMemory {
        /// The address.
        gpa: u64,
        /// Whether it was a write.
        write: bool,
    },
    /// The guest rang the doorbell with a value that means nothing, or at
    /// the wrong moment.
    #[error("the guest rang the doorbell with {got:#x} when {expected} was expected")]
    Doorbell {
        /// What it rang.
        got: u32,
        /// What the protocol expected.
        expected: &'static str,
    },
    /// The mailbox did not decode.
    #[error("the guest's mailbox is malformed: {0}")]
    Mailbox(DecodeError),
    /// KVM failed to run the guest.
    #[error("{0}")]
    Failed(String),
    /// The event is larger than the event region.
    #[error("the event is {0} bytes; the limit is {limit}", limit = layout::EVENT_CAP)]
    EventTooLarge(usize),
    /// The VM is not where the step needs it (a second invoke without a
    /// reset, a load into a VM that already has a module, …).
    #[error("the VM is at {actual:?}; this step needs {expected:?}")]
    Phase {
        /// Where it must be.
        expected: Phase,
        /// Where it is.
        actual: Phase,
    },
    /// A VMM operation failed.
    #[error(transparent)]
    Vm(#[from] VmError),
}

/// How the module's run ended, as the guest reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code (0: success).
    Exited(i32),
    /// It trapped.
    Trap(String),
    /// It needed more memory than the VM has.
    OutOfMemory,
    /// It wrote more than 6 MB to stdout.
    OutputTooLarge,
    /// It could not be loaded.
    LoadError {
        /// Why.
        kind: LoadError,
        /// For people.
        message: String,
    },
    /// The guest runtime failed.
    GuestPanic(String),
}

/// A finished run: how it ended, its outputs, its cost.
#[derive(Clone, Debug)]
pub struct Finished {
    /// How it ended.
    pub ended: Ended,
    /// What it wrote to stdout.
    pub stdout: Vec<u8>,
    /// What it wrote to stderr (up to 1 MiB).
    pub stderr: Vec<u8>,
    /// Stderr bytes beyond the limit, dropped.
    pub stderr_dropped: u64,
}

/// What a `Load` came to.
#[derive(Clone, Debug)]
pub enum Loaded {
    /// The module reads stdin: it waits at the function snapshot point.
    Waiting,
    /// The module ended (it never read stdin, or the event was given).
    Finished(Finished),
}

/// One invocation's inputs.
#[derive(Clone, Copy, Debug)]
pub struct Invocation<'a> {
    /// The event: the module's stdin.
    pub event: &'a [u8],
    /// The request id the module can ask for.
    pub request_id: &'a str,
    /// How long it may run, ns.
    pub timeout_ns: u64,
}

/// Runs guest steps on the calling thread (which owns the deadline timer).
#[derive(Debug)]
pub struct Runner {
    timer: ThreadTimer,
}

impl Runner {
    /// A runner for this thread: installs the kick handler (once per
    /// process) and creates this thread's deadline timer.
    pub fn for_this_thread() -> Result<Runner, VmError> {
        sys::install_kick_handler()
            .map_err(|e| VmError::Kvm("installing the vCPU kick handler", e))?;
        let timer = ThreadTimer::for_this_thread().map_err(|e| VmError::Kvm("timer_create", e))?;
        Ok(Runner { timer })
    }

    fn enter(
        &self,
        vm: &mut Vm,
        command: Command,
        flags: u32,
        lens: (u64, u64, u64),
        inv: Option<&Invocation<'_>>,
    ) -> Result<(), GuestError> {
        let realtime = sys::realtime_ns();
        let deadline_ms = inv.map_or(0, |i| realtime.saturating_add(i.timeout_ns) / 1_000_000);
        let entropy: [u8; ENTROPY_LEN] = rand::random();
        let entry = Entry {
            command,
            flags,
            module_len: lens.0,
            config_len: lens.1,
            event_len: lens.2,
            deadline_unix_ms: deadline_ms,
            realtime_ns: realtime,
            // The guest's monotonic clock is anchored to the host's wall
            // clock, not to CLOCK_MONOTONIC: a function snapshot outlives
            // host reboots, after which CLOCK_MONOTONIC starts again below
            // what the module saw during its init.
            monotonic_ns: realtime,
            entropy,
            request_id: inv.map_or("", |i| i.request_id),
        };
        vm.edit_mailbox(|p| entry.encode(p))?;
        Ok(())
    }

    /// Runs until a doorbell ring, turning every other stop into an error.
    fn run_to_doorbell(
        &self,
        vm: &mut Vm,
        deadline_ns: u64,
        stats: &mut RunStats,
    ) -> Result<Doorbell, GuestError> {
        let stop = vm.run(deadline_ns, &self.timer, stats)?;
        match stop {
            Stop::Doorbell(v) => match Doorbell::from_u32(v) {
                Some(Doorbell::Fault) => {
                    let page = vm.read_mailbox()?;
                    let report = FaultReport::decode(&page).map_err(GuestError::Mailbox)?;
                    let stack_overflow = report.vector == 14
                        && report.cr2 >= layout::STACK_GUARD_GPA
                        && report.cr2 < layout::STACK_GUARD_GPA + layout::PAGE_SIZE;
                    Err(GuestError::Fault {
                        report,
                        stack_overflow,
                    })
                }
                Some(d) => Ok(d),
                None => Err(GuestError::Doorbell {
                    got: v,
                    expected: "a known doorbell value",
                }),
            },
            Stop::Timeout => Err(GuestError::Timeout),
            Stop::UnknownPort { port, write } => Err(GuestError::UnknownPort { port, write }),
            Stop::OutsideMemory { gpa, write } => Err(GuestError::OutsideMemory { gpa, write }),
            Stop::Halt => Err(GuestError::Halted),
            Stop::Shutdown => Err(GuestError::TripleFault),
            Stop::Failed(s) => Err(GuestError::Failed(s)),
        }
    }

    /// Runs the guest once, outside the protocol, until it stops for any
    /// reason (for benchmarks and hand-made guests).
    pub fn run_raw(
        &self,
        vm: &mut Vm,
        timeout_ns: u64,
        stats: &mut RunStats,
    ) -> Result<Stop, GuestError> {
        Ok(vm.run(
            sys::monotonic_ns().saturating_add(timeout_ns),
            &self.timer,
            stats,
        )?)
    }

    fn expect(got: Doorbell, want: Doorbell, name: &'static str) -> Result<(), GuestError> {
        if got == want {
            Ok(())
        } else {
            Err(GuestError::Doorbell {
                got: got as u32,
                expected: name,
            })
        }
    }

    fn require(vm: &Vm, expected: Phase) -> Result<(), GuestError> {
        if vm.phase() == expected {
            Ok(())
        } else {
            Err(GuestError::Phase {
                expected,
                actual: vm.phase(),
            })
        }
    }

    /// Runs `step` and records the phase it leads to: `Broken` if it fails.
    fn step<T>(
        vm: &mut Vm,
        step: impl FnOnce(&mut Vm) -> Result<(T, Phase), GuestError>,
    ) -> Result<T, GuestError> {
        match step(vm) {
            Ok((t, phase)) => {
                vm.set_phase(phase);
                Ok(t)
            }
            Err(e) => {
                vm.set_phase(Phase::Broken);
                Err(e)
            }
        }
    }

    /// Boots a fresh VM to `BaseReady`: the base snapshot point.
    pub fn boot(
        &self,
        vm: &mut Vm,
        timeout_ns: u64,
        stats: &mut RunStats,
    ) -> Result<(), GuestError> {
        Self::require(vm, Phase::Fresh)?;
        Self::step(vm, |vm| {
            self.enter(vm, Command::Boot, 0, (0, 0, 0), None)?;
            let d =
                self.run_to_doorbell(vm, sys::monotonic_ns().saturating_add(timeout_ns), stats)?;
            Self::expect(d, Doorbell::BaseReady, "BaseReady")?;
            Ok(((), Phase::Base))
        })
    }

    /// Loads the module the VM maps (`module_len` bytes) with `config` (a
    /// blob from `hearth_guest_abi::config::encode`). With `event`, the
    /// module runs straight through with it; without, it stops at its
    /// first stdin read (`Loaded::Waiting`), ready for a function snapshot
    /// and `invoke`.
    pub fn load(
        &self,
        vm: &mut Vm,
        module_len: u64,
        config: &[u8],
        event: Option<&Invocation<'_>>,
        timeout_ns: u64,
        stats: &mut RunStats,
    ) -> Result<Loaded, GuestError> {
        if config.len() as u64 > layout::CONFIG_CAP {
            return Err(GuestError::Failed(
                "the config blob is larger than its region".into(),
            ));
        }
        if let Some(inv) = event {
            Self::check_event(inv.event)?;
        }
        Self::require(vm, Phase::Base)?;
        Self::step(vm, |vm| {
            vm.write_guest(layout::CONFIG_GPA, config)?;
            let (flags, event_len) = match event {
                Some(inv) => {
                    self.write_event(vm, inv.event)?;
                    (FLAG_EVENT_PRESENT, inv.event.len() as u64)
                }
                None => (0, 0),
            };
            self.enter(
                vm,
                Command::Load,
                flags,
                (module_len, config.len() as u64, event_len),
                event,
            )?;
            let timeout = event.map_or(timeout_ns, |i| i.timeout_ns.max(timeout_ns));
            match self.run_to_doorbell(vm, sys::monotonic_ns().saturating_add(timeout), stats)? {
                Doorbell::StdinWait if event.is_none() => Ok((Loaded::Waiting, Phase::Stdin)),
                Doorbell::Done => Ok((Loaded::Finished(self.finished(vm)?), Phase::Done)),
                d => Err(GuestError::Doorbell {
                    got: d as u32,
                    expected: "StdinWait or Done",
                }),
            }
        })
    }

    fn check_event(event: &[u8]) -> Result<(), GuestError> {
        if event.len() as u64 > layout::EVENT_CAP {
            return Err(GuestError::EventTooLarge(event.len()));
        }
        Ok(())
    }

    fn write_event(&self, vm: &mut Vm, event: &[u8]) -> Result<(), GuestError> {
        Self::check_event(event)?;
        let at = vm.layout().event.start;
        vm.write_guest(at, event)?;
        Ok(())
    }

    /// Invokes a VM waiting at its stdin read (loaded, restored from a
    /// function snapshot, or reset to one) with an event, to the end.
    pub fn invoke(
        &self,
        vm: &mut Vm,
        inv: &Invocation<'_>,
        stats: &mut RunStats,
    ) -> Result<Finished, GuestError> {
        Self::check_event(inv.event)?;
        Self::require(vm, Phase::Stdin)?;
        Self::step(vm, |vm| {
            self.write_event(vm, inv.event)?;
            self.enter(
                vm,
                Command::Invoke,
                0,
                (0, 0, inv.event.len() as u64),
                Some(inv),
            )?;
            let d = self.run_to_doorbell(
                vm,
                sys::monotonic_ns().saturating_add(inv.timeout_ns),
                stats,
            )?;
            Self::expect(d, Doorbell::Done, "Done")?;
            Ok((self.finished(vm)?, Phase::Done))
        })
    }

    /// What a module wrote to stderr during its init, read from a VM that
    /// a `Load` left waiting at its first stdin read ([`Loaded::Waiting`]):
    /// it belongs to the first invocation's log only (every invocation
    /// from the snapshot point reports just its own stderr).
    pub fn init_output(vm: &Vm) -> Result<Vec<u8>, GuestError> {
        Self::require(vm, Phase::Stdin)?;
        let page = vm.read_mailbox()?;
        let r = Report::decode(&page).map_err(GuestError::Mailbox)?;
        if r.status != Status::Waiting {
            return Err(GuestError::Mailbox(DecodeError::Unknown(
                "status at StdinWait",
                r.status as u64,
            )));
        }
        let l = vm.layout();
        r.check(l.stdout.len, l.stderr.len)
            .map_err(GuestError::Mailbox)?;
        Ok(vm.read_guest(l.stderr.start, r.stderr_len)?)
    }

    /// Reads the report of a guest that rang `Done`.
    fn finished(&self, vm: &Vm) -> Result<Finished, GuestError> {
        let page = vm.read_mailbox()?;
        let r = Report::decode(&page).map_err(GuestError::Mailbox)?;
        let l = vm.layout();
        r.check(l.stdout.len, l.stderr.len)
            .map_err(GuestError::Mailbox)?;
        let ended = match r.status {
            Status::Exited => Ended::Exited(r.exit_code),
            Status::Trap => Ended::Trap(r.message.to_string()),
            Status::OutOfMemory => Ended::OutOfMemory,
            Status::OutputTooLarge => Ended::OutputTooLarge,
            Status::LoadError => Ended::LoadError {
                kind: r
                    .load_error()
                    .ok_or(GuestError::Mailbox(DecodeError::Unknown("load error", 0)))?,
                message: r.message.to_string(),
            },
            Status::Panic => Ended::GuestPanic(r.message.to_string()),
            Status::Waiting => {
                return Err(GuestError::Mailbox(DecodeError::Unknown(
                    "status at Done",
                    Status::Waiting as u64,
                )))
            }
        };
        let stdout = if r.status == Status::OutputTooLarge {
            Vec::new()
        } else {
            vm.read_guest(l.stdout.start, r.stdout_len)?
        };
        Ok(Finished {
            ended,
            stdout,
            stderr: vm.read_guest(l.stderr.start, r.stderr_len)?,
            stderr_dropped: r.stderr_dropped,
        })
    }
}
