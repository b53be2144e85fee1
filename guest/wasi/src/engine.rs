//! The engine trait: load a module, run its `_start`, say how it ended.

use alloc::string::String;

use crate::{Platform, Wasi};

/// How a module's run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this status (`_start` returning is status 0).
    Exited(i32),
    /// It trapped (unreachable, out-of-bounds access, division by zero,
    /// call-stack exhaustion, …); the message says which and where.
    Trap(String),
    /// It asked for more memory than the VM has.
    OutOfMemory,
    /// It wrote more to stdout than the response limit.
    OutputTooLarge,
    /// It could not be loaded.
    Load(LoadFailure),
}

/// Why a module could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadFailure {
    /// The kind, as the mailbox reports it.
    pub kind: LoadFailureKind,
    /// For people: what and, for an import, which one.
    pub message: String,
}

/// The kinds of load failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadFailureKind {
    /// Not valid WebAssembly.
    Invalid,
    /// Imports something that is not provided, or with another signature.
    MissingImport,
    /// Instantiation failed (a segment does not fit, a start function
    /// trapped).
    Instantiate,
    /// No `_start` function export.
    NoStart,
}

/// A WebAssembly engine that runs WASI commands.
pub trait Engine {
    /// The engine and its version, as snapshots are keyed on it
    /// (`"wasmi 2.0.0"`).
    fn id(&self) -> &'static str;

    /// Loads `module` (validates, compiles, links the provided imports,
    /// instantiates) and runs `_start` to its end. The module's first read
    /// of stdin calls [`Platform::wait_event`]. Returns how it ended and the
    /// context, whose platform holds what it wrote.
    fn run<P: Platform>(&self, module: &[u8], wasi: Wasi<P>) -> (Outcome, Wasi<P>);
}
