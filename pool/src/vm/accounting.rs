//! What one invocation on a microVM cost, phase by phase, in microseconds:
//! the figures of the `HEARTH_USAGE` log line, the `X-Hearth-Usage`
//! header, the per-phase histograms and the usage totals.

use serde::Serialize;

/// One invocation's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Time spent waiting for capacity in the account's queue.
    pub queue_wait_us: f64,
    /// Restoring a new VM from a snapshot (a cold start), if any.
    pub restore_us: f64,
    /// Specialising a pooled VM to the function (adopting its snapshot, or
    /// loading it up to its first stdin read), if any.
    pub specialise_us: f64,
    /// Resetting the VM after the previous invocation, if it was reset on
    /// this invocation's path (0 when the reset happened off it).
    pub reset_us: f64,
    /// Guest wall time across `KVM_RUN`.
    pub guest_wall_us: f64,
    /// The vCPU thread's CPU time across `KVM_RUN` (guest and VMM).
    pub guest_cpu_us: f64,
    /// Exits from the guest.
    pub exits: u32,
    /// Pages copied on write.
    pub cow_pages: u64,
    /// The function's memory size, MB (for GB-µs).
    pub memory_mb: u32,
}

impl Usage {
    /// The `HEARTH_USAGE` log line (after Lambda's `REPORT` line).
    pub fn log_line(&self, request_id: &str) -> String {
        format!(
            "HEARTH_USAGE RequestId: {request_id}\tQueue: {:.1} us\tRestore: {:.1} us\tSpecialise: {:.1} us\tReset: {:.1} us\tGuest: {:.1} us\tGuest CPU: {:.1} us\tExits: {}\tCoW Pages: {}\t",
            self.queue_wait_us,
            self.restore_us,
            self.specialise_us,
            self.reset_us,
            self.guest_wall_us,
            self.guest_cpu_us,
            self.exits,
            self.cow_pages
        )
    }

    /// The `X-Hearth-Usage` header value: `key=value` pairs (µs, counts).
    pub fn header(&self) -> String {
        format!(
            "queue={:.1};restore={:.1};specialise={:.1};reset={:.1};guest={:.1};cpu={:.1};exits={};cow={}",
            self.queue_wait_us,
            self.restore_us,
            self.specialise_us,
            self.reset_us,
            self.guest_wall_us,
            self.guest_cpu_us,
            self.exits,
            self.cow_pages
        )
    }

    /// GB-µs of guest CPU time at the function's memory size.
    pub fn gb_us(&self) -> f64 {
        self.guest_cpu_us * f64::from(self.memory_mb) / 1024.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_header() {
        let u = Usage {
            guest_wall_us: 120.26,
            guest_cpu_us: 100.0,
            exits: 1,
            cow_pages: 19,
            memory_mb: 128,
            ..Usage::default()
        };
        assert!(u
            .log_line("r1")
            .starts_with("HEARTH_USAGE RequestId: r1\tQueue: 0.0 us\t"));
        assert!(u.log_line("r1").contains("\tGuest: 120.3 us\t"));
        assert_eq!(
            u.header(),
            "queue=0.0;restore=0.0;specialise=0.0;reset=0.0;guest=120.3;cpu=100.0;exits=1;cow=19"
        );
        assert_eq!(u.gb_us(), 12.5);
    }
}
