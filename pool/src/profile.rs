//! Runtime profiles (runtime + memory class) and warmth.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The memory classes general sandboxes are built in, in MB. A function fits
/// the smallest class at least as large as its `MemorySize`; its cgroup limit
/// is set to the exact `MemorySize` when a sandbox is assigned to it.
pub const MEMORY_CLASSES_MB: [u32; 10] = [128, 256, 512, 1024, 2048, 3072, 4096, 6144, 8192, 10240];

/// The smallest memory class holding `memory_mb`, or `None` above the largest
/// (10 240 MB, Lambda's maximum `MemorySize`).
pub fn memory_class_for(memory_mb: u32) -> Option<u32> {
    MEMORY_CLASSES_MB.iter().copied().find(|c| *c >= memory_mb)
}

/// How much of a start is already done (ARCHITECTURE.md, "warmth").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Warmth {
    /// Sandbox built, an init process waiting. Usable by every runtime.
    Shell,
    /// Language runtime booted with Hearth's bootstrap, waiting for code
    /// (Python and Node only).
    Runtime,
    /// A function version's code loaded and its init run.
    Function,
}

impl Warmth {
    pub fn label(self) -> &'static str {
        match self {
            Warmth::Shell => "shell",
            Warmth::Runtime => "runtime",
            Warmth::Function => "function",
        }
    }
}

impl fmt::Display for Warmth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What a general sub-pool is keyed by: the runtime a sandbox can boot and
/// the memory class it is built for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RuntimeProfile {
    /// A Lambda runtime identifier (`python3.11`, `nodejs20.x`), or
    /// `provided` for every `provided.*` runtime (they bring their own
    /// bootstrap, so only shell warmth applies).
    pub runtime_family: String,
    pub memory_class_mb: u32,
}

impl RuntimeProfile {
    /// A profile from its parts; `memory_class_mb` should be one of
    /// [`MEMORY_CLASSES_MB`].
    pub fn new(runtime_family: impl Into<String>, memory_class_mb: u32) -> Self {
        Self {
            runtime_family: runtime_family.into(),
            memory_class_mb,
        }
    }

    /// The profile a function with this runtime and `MemorySize` runs in, or
    /// `None` if the memory is above every class.
    pub fn for_function(runtime: &str, memory_mb: u32) -> Option<Self> {
        let family = if runtime.starts_with("provided") {
            "provided"
        } else {
            runtime
        };
        Some(Self::new(family, memory_class_for(memory_mb)?))
    }

    /// Whether a runtime-warm sandbox exists for this runtime: Hearth boots
    /// Python and Node ahead of time, and microVMs (`microvm`) with their
    /// WebAssembly engine; `provided` functions exec their own bootstrap in
    /// a shell-warm sandbox.
    pub fn supports_runtime_warm(&self) -> bool {
        self.runtime_family.starts_with("python")
            || self.runtime_family.starts_with("nodejs")
            || self.runtime_family == "microvm"
    }
}

impl fmt::Display for RuntimeProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.runtime_family, self.memory_class_mb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_class_is_smallest_class_at_least_memory_size() {
        assert_eq!(memory_class_for(128), Some(128));
        assert_eq!(memory_class_for(1), Some(128));
        assert_eq!(memory_class_for(129), Some(256));
        assert_eq!(memory_class_for(1536), Some(2048));
        assert_eq!(memory_class_for(10240), Some(10240));
        assert_eq!(memory_class_for(10241), None);
    }

    #[test]
    fn profiles_for_functions() {
        let p = RuntimeProfile::for_function("python3.11", 200).unwrap();
        assert_eq!(p.to_string(), "python3.11/256");
        assert!(p.supports_runtime_warm());
        let p = RuntimeProfile::for_function("provided.al2023", 128).unwrap();
        assert_eq!(p.runtime_family, "provided");
        assert!(!p.supports_runtime_warm());
        assert!(RuntimeProfile::for_function("nodejs20.x", 512)
            .unwrap()
            .supports_runtime_warm());
    }

    #[test]
    fn warmth_orders_by_how_much_is_done() {
        assert!(Warmth::Shell < Warmth::Runtime && Warmth::Runtime < Warmth::Function);
        assert_eq!(
            serde_json::to_string(&Warmth::Runtime).unwrap(),
            "\"runtime\""
        );
    }
}
