//! The guest's only two devices: a console port and the mailbox doorbell.
//!
//! The guest runs in ring 3; the TSS's I/O permission bitmap grants it
//! exactly these two ports (PVM ignores `IOPL` for ring 3, and a bitmap
//! grants less anyway), so it reaches them with plain `out` instructions. Every `out` is an exit to the VMM (about 55 µs on a
//! nested PVM host, 1–2 µs on bare metal), so the console is for boot and
//! diagnostics only; an invocation's output and logs cross in the mailbox,
//! with one doorbell ring at the end.

/// Bytes written here (`out`, or `rep outsb` for a whole buffer in one exit)
/// go to the host's log, a line at a time.
pub const CONSOLE_PORT: u16 = 0x3f8;

/// A 32-bit `out` here hands control to the VMM; the value says why.
pub const DOORBELL_PORT: u16 = 0x600;

/// Why the guest rang the doorbell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Doorbell {
    /// The runtime has booted and waits for a module: the **base snapshot**
    /// point. The VMM answers with an `Entry` whose command is `Load`.
    BaseReady = 0x4842_0001,
    /// The module is instantiated, its initialisation has run, and it made
    /// its first read of stdin: the **function snapshot** point. The VMM
    /// answers with an `Entry` whose command is `Invoke`.
    StdinWait = 0x4842_0002,
    /// The module ended (exit, trap, error): the `Report` is filled in.
    Done = 0x4842_0003,
    /// The guest kernel caught a CPU exception: the `FaultReport` is filled.
    Fault = 0x4842_0004,
}

impl Doorbell {
    /// The doorbell for a value the guest wrote, if it is one.
    pub fn from_u32(v: u32) -> Option<Doorbell> {
        Some(match v {
            0x4842_0001 => Doorbell::BaseReady,
            0x4842_0002 => Doorbell::StdinWait,
            0x4842_0003 => Doorbell::Done,
            0x4842_0004 => Doorbell::Fault,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doorbells_round_trip() {
        for d in [
            Doorbell::BaseReady,
            Doorbell::StdinWait,
            Doorbell::Done,
            Doorbell::Fault,
        ] {
            assert_eq!(Doorbell::from_u32(d as u32), Some(d));
        }
        assert_eq!(Doorbell::from_u32(0), None);
        assert_eq!(Doorbell::from_u32(1), None);
    }
}
