//! An invocation trace: functions and their invocations in time order.

use crate::profile::memory_class_for;
use std::fmt;

/// Trigger groups of the Azure Functions 2019 trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    Http,
    Timer,
    Event,
    Queue,
    Storage,
    Orchestration,
    Others,
}

impl Trigger {
    pub fn parse(s: &str) -> Self {
        match s.trim().to_ascii_lowercase().as_str() {
            "http" => Trigger::Http,
            "timer" => Trigger::Timer,
            "event" => Trigger::Event,
            "queue" => Trigger::Queue,
            "storage" => Trigger::Storage,
            "orchestration" => Trigger::Orchestration,
            _ => Trigger::Others,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Trigger::Http => "http",
            Trigger::Timer => "timer",
            Trigger::Event => "event",
            Trigger::Queue => "queue",
            Trigger::Storage => "storage",
            Trigger::Orchestration => "orchestration",
            Trigger::Others => "others",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A function in a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceFunction {
    /// The tenant (Azure: `HashOwner`).
    pub owner: String,
    /// The application (Azure: `HashApp`).
    pub app: String,
    /// The function within the application (Azure: `HashFunction`).
    pub name: String,
    pub trigger: Trigger,
    /// A Lambda runtime identifier.
    pub runtime: String,
    /// The function's `MemorySize`.
    pub memory_mb: u32,
    /// What a cold start of it costs beyond booting a sandbox: loading its
    /// code and running its init.
    pub init_ms: u64,
}

impl TraceFunction {
    pub fn memory_class_mb(&self) -> u32 {
        memory_class_for(self.memory_mb).unwrap_or(10_240)
    }
}

/// One invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TraceInvocation {
    /// Milliseconds from the start of the trace.
    pub start_ms: u64,
    /// Index into [`Trace::functions`].
    pub function: u32,
    /// Execution time, without any cold start.
    pub duration_ms: u64,
}

/// A trace: functions, and invocations sorted by start time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    pub functions: Vec<TraceFunction>,
    pub invocations: Vec<TraceInvocation>,
}

impl Trace {
    /// Sorts invocations by (start, function, duration): a total order, so
    /// equal inputs give equal traces.
    pub fn sort(&mut self) {
        self.invocations.sort_unstable();
    }

    pub fn len(&self) -> usize {
        self.invocations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.invocations.is_empty()
    }

    /// From the first invocation's start to the last one's end.
    pub fn span_ms(&self) -> u64 {
        let first = self.invocations.first().map_or(0, |i| i.start_ms);
        let last = self
            .invocations
            .iter()
            .map(|i| i.start_ms + i.duration_ms)
            .max()
            .unwrap_or(0);
        last.saturating_sub(first)
    }

    /// Invocations per function, indexed like [`Trace::functions`].
    pub fn counts(&self) -> Vec<u64> {
        let mut c = vec![0u64; self.functions.len()];
        for i in &self.invocations {
            if let Some(n) = c.get_mut(i.function as usize) {
                *n += 1;
            }
        }
        c
    }
}
