//! Per-run accounting, kept in nanoseconds and reported in microseconds:
//! wall time and the vCPU thread's CPU time across `KVM_RUN`, exits by
//! kind, pages copied on write, and the restore/reset phases.

use serde::Serialize;

/// The kinds of exit counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// The doorbell port.
    Doorbell,
    /// The console port.
    Console,
    /// Any other port.
    Io,
    /// An access outside memory.
    Mmio,
    /// `hlt`.
    Halt,
    /// A triple fault.
    Shutdown,
    /// A kick (deadline timer or another signal).
    Kick,
    /// Anything else.
    Other,
}

/// Exits by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Exits {
    /// Doorbell rings.
    pub doorbell: u32,
    /// Console writes.
    pub console: u32,
    /// Other port I/O.
    pub io: u32,
    /// Accesses outside memory.
    pub mmio: u32,
    /// Halts.
    pub halt: u32,
    /// Shutdowns (triple faults).
    pub shutdown: u32,
    /// Kicks.
    pub kick: u32,
    /// Others.
    pub other: u32,
}

impl Exits {
    /// All exits.
    pub fn total(&self) -> u32 {
        self.doorbell
            + self.console
            + self.io
            + self.mmio
            + self.halt
            + self.shutdown
            + self.kick
            + self.other
    }
}

/// What one run (or one invocation, with its restore or reset) cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Wall time inside the run loop, ns.
    pub run_wall_ns: u64,
    /// The vCPU thread's CPU time inside the run loop, ns (guest and VMM).
    pub run_cpu_ns: u64,
    /// Exits by kind.
    pub exits: Exits,
    /// Pages the guest (or the VMM on its behalf) copied on write.
    pub cow_pages: u64,
    /// Time to create the VM from a snapshot, ns (0 if not restored).
    pub restore_ns: u64,
    /// Time to reset the VM to its snapshot, ns (0 if not reset).
    pub reset_ns: u64,
    /// Time to boot a fresh VM up to its first entry, ns.
    pub create_ns: u64,
}

impl RunStats {
    /// Counts one exit.
    pub fn count(&mut self, kind: ExitKind) {
        let e = &mut self.exits;
        match kind {
            ExitKind::Doorbell => e.doorbell += 1,
            ExitKind::Console => e.console += 1,
            ExitKind::Io => e.io += 1,
            ExitKind::Mmio => e.mmio += 1,
            ExitKind::Halt => e.halt += 1,
            ExitKind::Shutdown => e.shutdown += 1,
            ExitKind::Kick => e.kick += 1,
            ExitKind::Other => e.other += 1,
        }
    }

    /// Adds another run's figures to these.
    pub fn add(&mut self, o: &RunStats) {
        self.run_wall_ns += o.run_wall_ns;
        self.run_cpu_ns += o.run_cpu_ns;
        let (a, b) = (&mut self.exits, &o.exits);
        a.doorbell += b.doorbell;
        a.console += b.console;
        a.io += b.io;
        a.mmio += b.mmio;
        a.halt += b.halt;
        a.shutdown += b.shutdown;
        a.kick += b.kick;
        a.other += b.other;
        self.cow_pages += o.cow_pages;
        self.restore_ns += o.restore_ns;
        self.reset_ns += o.reset_ns;
        self.create_ns += o.create_ns;
    }

    /// The figures in microseconds, for reports.
    pub fn micros(&self) -> Micros {
        let us = |ns: u64| ns as f64 / 1000.0;
        Micros {
            run_wall_us: us(self.run_wall_ns),
            run_cpu_us: us(self.run_cpu_ns),
            exits: self.exits,
            exits_total: self.exits.total(),
            cow_pages: self.cow_pages,
            restore_us: us(self.restore_ns),
            reset_us: us(self.reset_ns),
            create_us: us(self.create_ns),
        }
    }
}

/// [`RunStats`] in microseconds (to 1 ns, shown with three decimals).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Micros {
    /// Wall time in the guest, µs.
    pub run_wall_us: f64,
    /// vCPU thread CPU time, µs.
    pub run_cpu_us: f64,
    /// Exits by kind.
    pub exits: Exits,
    /// All exits.
    pub exits_total: u32,
    /// Pages copied on write.
    pub cow_pages: u64,
    /// Restore time, µs.
    pub restore_us: f64,
    /// Reset time, µs.
    pub reset_us: f64,
    /// Boot-to-first-entry time of a fresh VM, µs.
    pub create_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_and_convert() {
        let mut a = RunStats::default();
        a.count(ExitKind::Doorbell);
        a.count(ExitKind::Console);
        a.run_wall_ns = 1500;
        let mut b = a;
        b.add(&a);
        assert_eq!(b.exits.total(), 4);
        assert_eq!(b.micros().run_wall_us, 3.0);
    }
}
