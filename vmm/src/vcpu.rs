//! The one vCPU: its state (get, set, serialise), and the run loop that
//! enters the guest until an exit the VMM must act on, with a deadline.
//!
//! The deadline is a per-thread POSIX timer that sends the kick signal to
//! the thread in `KVM_RUN`; the signal's handler sets `immediate_exit`, so
//! the kick is never lost between the deadline check and the entry.

pub mod x86_64;

use kvm_bindings::{
    kvm_debugregs, kvm_msr_entry, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, Msrs,
};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};
use zerocopy::{FromBytes, IntoBytes};

use crate::accounting::{ExitKind, RunStats};
use crate::sys::{self, KickGuard, ThreadTimer};

/// Why a vCPU operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// A KVM ioctl on the vCPU failed.
    #[error("{0}: {1}")]
    Kvm(&'static str, #[source] std::io::Error),
    /// Saved vCPU state has the wrong size.
    #[error("saved vCPU state is {0} bytes, expected {1}")]
    StateSize(usize, usize),
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VcpuError {
    move |e| VcpuError::Kvm(what, std::io::Error::from_raw_os_error(e.errno()))
}

/// The MSRs a guest's ring 0 can set (the syscall and segment-base MSRs,
/// the sysenter MSRs, PAT, TSC_AUX): kept in snapshots and restored at every
/// reset, so that nothing a compromised guest kernel sets outlives an
/// invocation. (EFER is in the sregs.)
pub const SAVED_MSRS: [u32; 11] = [
    0xc000_0100, // FS_BASE
    0xc000_0101, // GS_BASE
    0xc000_0102, // KERNEL_GS_BASE
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // SFMASK
    0xc000_0103, // TSC_AUX
    0x0000_0174, // SYSENTER_CS
    0x0000_0175, // SYSENTER_ESP
    0x0000_0176, // SYSENTER_EIP
];

/// Everything of the vCPU a snapshot keeps and a reset restores: the
/// registers, the FPU/SSE state, pending exception and interrupt state,
/// debug registers, and the MSRs a guest kernel can change ([`SAVED_MSRS`]).
/// The guest has no interrupt controller.
#[derive(Debug, Default)]
pub struct VcpuState {
    /// General registers.
    pub regs: kvm_regs,
    /// Segment, control and descriptor-table registers.
    pub sregs: kvm_sregs,
    /// FPU/SSE state (the legacy 4 KiB XSAVE area).
    pub xsave: kvm_xsave,
    /// Extended control registers.
    pub xcrs: kvm_xcrs,
    /// Pending exceptions, interrupt shadow, NMI state.
    pub events: kvm_vcpu_events,
    /// Debug registers.
    pub debugregs: kvm_debugregs,
    /// The values of [`SAVED_MSRS`], in that order.
    pub msrs: [u64; SAVED_MSRS.len()],
}

impl Clone for VcpuState {
    fn clone(&self) -> VcpuState {
        // `kvm_xsave` ends in a flexible array (unused here), so it is not
        // `Clone`; its fixed region is all there is.
        VcpuState {
            regs: self.regs,
            sregs: self.sregs,
            xsave: kvm_xsave {
                region: self.xsave.region,
                ..Default::default()
            },
            xcrs: self.xcrs,
            events: self.events,
            debugregs: self.debugregs,
            msrs: self.msrs,
        }
    }
}

impl VcpuState {
    /// Serialised size.
    pub const SIZE: usize = std::mem::size_of::<kvm_regs>()
        + std::mem::size_of::<kvm_sregs>()
        + std::mem::size_of::<kvm_xsave>()
        + std::mem::size_of::<kvm_xcrs>()
        + std::mem::size_of::<kvm_vcpu_events>()
        + std::mem::size_of::<kvm_debugregs>()
        + 8 * SAVED_MSRS.len();

    /// The state as bytes (the structs' own layouts, back to back, then
    /// the MSR values little-endian).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::SIZE);
        out.extend_from_slice(self.regs.as_bytes());
        out.extend_from_slice(self.sregs.as_bytes());
        out.extend_from_slice(self.xsave.as_bytes());
        out.extend_from_slice(self.xcrs.as_bytes());
        out.extend_from_slice(self.events.as_bytes());
        out.extend_from_slice(self.debugregs.as_bytes());
        for v in self.msrs {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// The state from `to_bytes`' output.
    pub fn from_bytes(b: &[u8]) -> Result<VcpuState, VcpuError> {
        let size = || VcpuError::StateSize(b.len(), Self::SIZE);
        if b.len() != Self::SIZE {
            return Err(size());
        }
        let (regs, rest) = kvm_regs::read_from_prefix(b).map_err(|_| size())?;
        let (sregs, rest) = kvm_sregs::read_from_prefix(rest).map_err(|_| size())?;
        let (xsave, rest) = kvm_xsave::read_from_prefix(rest).map_err(|_| size())?;
        let (xcrs, rest) = kvm_xcrs::read_from_prefix(rest).map_err(|_| size())?;
        let (events, rest) = kvm_vcpu_events::read_from_prefix(rest).map_err(|_| size())?;
        let (debugregs, rest) = kvm_debugregs::read_from_prefix(rest).map_err(|_| size())?;
        let mut msrs = [0u64; SAVED_MSRS.len()];
        for (m, chunk) in msrs.iter_mut().zip(rest.chunks_exact(8)) {
            let mut a = [0u8; 8];
            a.copy_from_slice(chunk);
            *m = u64::from_le_bytes(a);
        }
        Ok(VcpuState {
            regs,
            sregs,
            xsave,
            xcrs,
            events,
            debugregs,
            msrs,
        })
    }
}

/// What ended a run of the guest.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The guest wrote this 32-bit value to the doorbell port.
    Doorbell(u32),
    /// The deadline passed.
    Timeout,
    /// A port other than the console and doorbell (`write` says which way).
    UnknownPort {
        /// The port.
        port: u16,
        /// Whether it was an `out`.
        write: bool,
    },
    /// An access to guest-physical memory with no RAM or module behind it.
    OutsideMemory {
        /// The address.
        gpa: u64,
        /// Whether it was a write.
        write: bool,
    },
    /// `hlt`: only ring 0 can execute it, and the guest kernel never does.
    Halt,
    /// A triple fault (KVM reports a shutdown).
    Shutdown,
    /// KVM could not enter the guest, or reported an internal error.
    Failed(String),
}

/// Console output: bytes collected into lines for the host's log.
#[derive(Debug, Default)]
pub struct Console {
    line: Vec<u8>,
    /// Bytes taken this run (the rest are dropped).
    taken: usize,
}

/// The most console output a run may send to the host's log.
const CONSOLE_LIMIT: usize = 64 * 1024;

impl Console {
    fn write(&mut self, data: &[u8], sink: &mut dyn FnMut(&str)) {
        let room = CONSOLE_LIMIT.saturating_sub(self.taken);
        self.taken += data.len().min(room);
        for &b in &data[..data.len().min(room)] {
            if b == b'\n' {
                sink(&String::from_utf8_lossy(&self.line));
                self.line.clear();
            } else if self.line.len() < 1024 {
                self.line.push(b);
            }
        }
    }

    /// Starts a new run's budget.
    pub fn new_run(&mut self) {
        self.taken = 0;
    }
}

/// The vCPU.
#[derive(Debug)]
pub struct Vcpu {
    pub(crate) fd: VcpuFd,
}

impl Vcpu {
    pub(crate) fn new(fd: VcpuFd) -> Vcpu {
        Vcpu { fd }
    }

    /// Reads the whole state.
    pub fn state(&self) -> Result<VcpuState, VcpuError> {
        let entries: Vec<kvm_msr_entry> = SAVED_MSRS
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries)
            .map_err(|_| VcpuError::Kvm("KVM_GET_MSRS", std::io::Error::other("MSR list")))?;
        let n = self.fd.get_msrs(&mut msrs).map_err(kvm("KVM_GET_MSRS"))?;
        if n != SAVED_MSRS.len() {
            return Err(VcpuError::Kvm(
                "KVM_GET_MSRS",
                std::io::Error::other(format!("read {n} of {} MSRs", SAVED_MSRS.len())),
            ));
        }
        let mut values = [0u64; SAVED_MSRS.len()];
        for (v, e) in values.iter_mut().zip(msrs.as_slice()) {
            *v = e.data;
        }
        Ok(VcpuState {
            regs: self.fd.get_regs().map_err(kvm("KVM_GET_REGS"))?,
            sregs: self.fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?,
            xsave: self.fd.get_xsave().map_err(kvm("KVM_GET_XSAVE"))?,
            xcrs: self.fd.get_xcrs().map_err(kvm("KVM_GET_XCRS"))?,
            events: self
                .fd
                .get_vcpu_events()
                .map_err(kvm("KVM_GET_VCPU_EVENTS"))?,
            debugregs: self.fd.get_debug_regs().map_err(kvm("KVM_GET_DEBUGREGS"))?,
            msrs: values,
        })
    }

    /// Writes the whole state.
    pub fn set_state(&self, s: &VcpuState) -> Result<(), VcpuError> {
        self.fd.set_sregs(&s.sregs).map_err(kvm("KVM_SET_SREGS"))?;
        self.fd.set_regs(&s.regs).map_err(kvm("KVM_SET_REGS"))?;
        self.fd.set_xcrs(&s.xcrs).map_err(kvm("KVM_SET_XCRS"))?;
        #[allow(unsafe_code)]
        // SAFETY: Hearth never enables dynamically-sized XSTATE features
        // (AMX) for its VMs, so the kernel reads at most the 4 KiB
        // `kvm_xsave` it is given.
        unsafe { self.fd.set_xsave(&s.xsave) }.map_err(kvm("KVM_SET_XSAVE"))?;
        self.fd
            .set_vcpu_events(&s.events)
            .map_err(kvm("KVM_SET_VCPU_EVENTS"))?;
        self.fd
            .set_debug_regs(&s.debugregs)
            .map_err(kvm("KVM_SET_DEBUGREGS"))?;
        self.set_msrs(&s.msrs)?;
        Ok(())
    }

    /// Writes the whole state for the next `KVM_RUN`: the FPU, XCRs, debug
    /// registers and MSRs by ioctl now, and (with `sync_regs`) the
    /// registers, special registers and events through `kvm_run`, which KVM
    /// applies on entry, saving three ioctls.
    pub fn set_state_for_next_run(
        &mut self,
        s: &VcpuState,
        sync_regs: bool,
    ) -> Result<(), VcpuError> {
        if !sync_regs {
            return self.set_state(s);
        }
        self.fd.set_xcrs(&s.xcrs).map_err(kvm("KVM_SET_XCRS"))?;
        #[allow(unsafe_code)]
        // SAFETY: as in `set_state`: no dynamically-sized XSTATE features.
        unsafe { self.fd.set_xsave(&s.xsave) }.map_err(kvm("KVM_SET_XSAVE"))?;
        self.fd
            .set_debug_regs(&s.debugregs)
            .map_err(kvm("KVM_SET_DEBUGREGS"))?;
        self.set_msrs(&s.msrs)?;
        let sync = self.fd.sync_regs_mut();
        sync.regs = s.regs;
        sync.sregs = s.sregs;
        sync.events = s.events;
        self.fd.set_sync_dirty_reg(SyncReg::Register);
        self.fd.set_sync_dirty_reg(SyncReg::SystemRegister);
        self.fd.set_sync_dirty_reg(SyncReg::VcpuEvents);
        Ok(())
    }

    fn set_msrs(&self, values: &[u64; SAVED_MSRS.len()]) -> Result<(), VcpuError> {
        let entries: Vec<kvm_msr_entry> = SAVED_MSRS
            .iter()
            .zip(values)
            .map(|(&index, &data)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let msrs = Msrs::from_entries(&entries)
            .map_err(|_| VcpuError::Kvm("KVM_SET_MSRS", std::io::Error::other("MSR list")))?;
        let n = self.fd.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
        if n != SAVED_MSRS.len() {
            return Err(VcpuError::Kvm(
                "KVM_SET_MSRS",
                std::io::Error::other(format!("set {n} of {} MSRs", SAVED_MSRS.len())),
            ));
        }
        Ok(())
    }

    /// Lets KVM finish an exit it is in the middle of (an `out`), so that
    /// the state read next is the state after the instruction: one
    /// `KVM_RUN` with `immediate_exit` set, which returns at once.
    pub fn complete_pending_exit(&mut self) -> Result<(), VcpuError> {
        self.fd.set_kvm_immediate_exit(1);
        let r = match self.fd.run() {
            Err(e) if e.errno() == libc::EINTR => Ok(()),
            Ok(_) => Ok(()),
            Err(e) => Err(kvm("KVM_RUN (completing an exit)")(e)),
        };
        self.fd.set_kvm_immediate_exit(0);
        r
    }

    /// Runs the guest until it rings the doorbell, fails, or `deadline_ns`
    /// (`CLOCK_MONOTONIC`) passes. Console output goes to `log`. Counts
    /// exits, wall time and this thread's CPU time into `stats`.
    pub fn run(
        &mut self,
        deadline_ns: u64,
        timer: &ThreadTimer,
        console: &mut Console,
        stats: &mut RunStats,
    ) -> Result<Stop, VcpuError> {
        let wall0 = sys::monotonic_ns();
        let cpu0 = sys::thread_cpu_ns();
        let kick = KickGuard::new(std::ptr::addr_of_mut!(self.fd.get_kvm_run().immediate_exit));
        timer
            .arm_at(deadline_ns.max(1))
            .map_err(|e| VcpuError::Kvm("timer_settime", e))?;
        let stop = self.run_loop(deadline_ns, console, stats);
        let _ = timer.arm_at(0);
        drop(kick);
        self.fd.set_kvm_immediate_exit(0);
        stats.run_wall_ns += sys::monotonic_ns() - wall0;
        stats.run_cpu_ns += sys::thread_cpu_ns() - cpu0;
        stop
    }

    fn run_loop(
        &mut self,
        deadline_ns: u64,
        console: &mut Console,
        stats: &mut RunStats,
    ) -> Result<Stop, VcpuError> {
        use hearth_guest_abi::ports::{CONSOLE_PORT, DOORBELL_PORT};
        loop {
            if sys::monotonic_ns() >= deadline_ns {
                return Ok(Stop::Timeout);
            }
            let exit = match self.fd.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    stats.count(ExitKind::Kick);
                    self.fd.set_kvm_immediate_exit(0);
                    continue;
                }
                Err(e) => return Err(kvm("KVM_RUN")(e)),
            };
            match exit {
                VcpuExit::IoOut(CONSOLE_PORT, data) => {
                    stats.count(ExitKind::Console);
                    console.write(
                        data,
                        &mut |line| log::info!(target: "hearth_vmm::console", "{line}"),
                    );
                }
                VcpuExit::IoOut(DOORBELL_PORT, data) => {
                    stats.count(ExitKind::Doorbell);
                    let mut v = [0u8; 4];
                    let n = data.len().min(4);
                    v[..n].copy_from_slice(&data[..n]);
                    if data.len() != 4 {
                        return Ok(Stop::UnknownPort {
                            port: DOORBELL_PORT,
                            write: true,
                        });
                    }
                    return Ok(Stop::Doorbell(u32::from_le_bytes(v)));
                }
                VcpuExit::IoOut(port, _) => {
                    stats.count(ExitKind::Io);
                    return Ok(Stop::UnknownPort { port, write: true });
                }
                VcpuExit::IoIn(port, _) => {
                    stats.count(ExitKind::Io);
                    return Ok(Stop::UnknownPort { port, write: false });
                }
                VcpuExit::MmioRead(gpa, _) => {
                    stats.count(ExitKind::Mmio);
                    return Ok(Stop::OutsideMemory { gpa, write: false });
                }
                VcpuExit::MmioWrite(gpa, _) => {
                    stats.count(ExitKind::Mmio);
                    return Ok(Stop::OutsideMemory { gpa, write: true });
                }
                VcpuExit::Hlt => {
                    stats.count(ExitKind::Halt);
                    return Ok(Stop::Halt);
                }
                VcpuExit::Shutdown => {
                    stats.count(ExitKind::Shutdown);
                    return Ok(Stop::Shutdown);
                }
                VcpuExit::Intr => {
                    stats.count(ExitKind::Kick);
                }
                VcpuExit::FailEntry(reason, cpu) => {
                    stats.count(ExitKind::Other);
                    return Ok(Stop::Failed(format!(
                        "KVM could not enter the guest (reason {reason:#x}, cpu {cpu})"
                    )));
                }
                other => {
                    stats.count(ExitKind::Other);
                    return Ok(Stop::Failed(format!("unexpected exit {other:?}")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_checks_size() {
        let mut s = VcpuState::default();
        s.regs.rip = 0x1234;
        s.sregs.cr3 = 0x3000;
        s.xsave.region[7] = 9;
        s.xcrs.nr_xcrs = 1;
        s.debugregs.dr7 = 0x400;
        s.msrs[4] = 0xdead_beef;
        let b = s.to_bytes();
        assert_eq!(b.len(), VcpuState::SIZE);
        let t = VcpuState::from_bytes(&b).unwrap();
        assert_eq!(
            (t.regs.rip, t.sregs.cr3, t.xsave.region[7], t.xcrs.nr_xcrs),
            (0x1234, 0x3000, 9, 1)
        );
        assert_eq!((t.debugregs.dr7, t.msrs[4]), (0x400, 0xdead_beef));
        assert!(VcpuState::from_bytes(&b[1..]).is_err());
    }

    #[test]
    fn console_makes_lines_and_caps_output() {
        let mut c = Console::default();
        let mut lines = Vec::new();
        c.write(b"hello\nwor", &mut |l| lines.push(l.to_string()));
        c.write(b"ld\n", &mut |l| lines.push(l.to_string()));
        assert_eq!(lines, ["hello", "world"]);
        c.write(&vec![b'x'; CONSOLE_LIMIT * 2], &mut |_| {});
        assert_eq!(c.taken, CONSOLE_LIMIT);
    }
}
