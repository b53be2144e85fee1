//! An account's capacity settings: its dedicated sub-pool (sandboxes
//! assigned to it before any request, per runtime profile) and its capacity
//! policy (what placement does when that sub-pool is short).
//!
//! # Runtime profiles
//!
//! A profile names a kind of sandbox: `RUNTIME:MEMORY`, where
//!
//! - `RUNTIME` is either a runtime exactly as Lambda spells it
//!   (`python3.12`, `nodejs20.x`, `provided.al2023`) or a runtime *family*
//!   (`python`, `nodejs`, `provided`), which matches every runtime of that
//!   family;
//! - `MEMORY` is a memory class in MB, one of [`MEMORY_CLASSES_MB`]. A
//!   function fits the smallest class at least as large as its `MemorySize`
//!   ([`memory_class`]); its sandbox's limit is then set to the exact size.
//!
//! `microvm:MEMORY` names Hearth's KVM microVMs of that memory class, which
//! any WebAssembly function of the class can take.
//!
//! Entries of a dedicated sub-pool are separate: `python:256=2` and
//! `python3.12:256=1` hold three sandboxes, the first two usable by any
//! Python runtime of that memory class, the third only by `python3.12`.
//!
//! ```
//! use hearth_types::capacity::Profile;
//! use hearth_types::runtime::Runtime;
//! let p: Profile = "python:256".parse().unwrap();
//! let py312 = Runtime::parse("python3.12").unwrap();
//! assert!(p.matches(&py312, 200));
//! assert!(!p.matches(&py312, 300));
//! assert_eq!(Profile::exact(&py312, 200).to_string(), "python3.12:256");
//! ```

use crate::error::LambdaError;
use crate::limits::MEMORY_MAX_MB;
use crate::runtime::{Runtime, RuntimeFamily};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The memory classes sandboxes are pooled by, ascending (the same as the
/// general sub-pool's). The last is Lambda's largest `MemorySize`, so every
/// function fits one.
pub const MEMORY_CLASSES_MB: &[u32] = &[
    128,
    256,
    512,
    1024,
    2048,
    3072,
    4096,
    6144,
    8192,
    MEMORY_MAX_MB,
];

/// How long a `wait` placement queues by default.
pub const DEFAULT_MAX_WAIT_MS: u32 = 1000;
/// The longest a `wait` placement may queue: Lambda's longest timeout.
pub const MAX_WAIT_MS_LIMIT: u32 = 900_000;
/// The fraction of the general sub-pool one account may hold by default.
pub const DEFAULT_GENERAL_SHARE: f64 = 0.5;
/// The most sandboxes one profile of a dedicated sub-pool may ask for.
pub const DEDICATED_MAX_PER_PROFILE: u32 = 100_000;

/// The memory class a function of `memory_mb` fits: the smallest class at
/// least as large (the largest class for anything above it).
pub fn memory_class(memory_mb: u32) -> u32 {
    MEMORY_CLASSES_MB
        .iter()
        .copied()
        .find(|c| *c >= memory_mb)
        .unwrap_or(MEMORY_MAX_MB)
}

/// A runtime family as a profile spells it.
pub fn family_name(f: RuntimeFamily) -> &'static str {
    match f {
        RuntimeFamily::Python => "python",
        RuntimeFamily::Node => "nodejs",
        RuntimeFamily::Provided => "provided",
    }
}

fn parse_family(s: &str) -> Option<RuntimeFamily> {
    Some(match s {
        "python" => RuntimeFamily::Python,
        "nodejs" => RuntimeFamily::Node,
        "provided" => RuntimeFamily::Provided,
        _ => return None,
    })
}

/// The runtime half of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProfileRuntime {
    /// Every runtime of a family (`python`, `nodejs`, `provided`).
    Family(RuntimeFamily),
    /// Exactly this runtime (`python3.12`).
    Exact(Runtime),
    /// A microVM (`microvm`), for functions whose code is a WebAssembly
    /// module (runtime `provided*`).
    MicroVm,
}

/// A runtime profile: runtime (or family) plus memory class. See the
/// module documentation for the spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Profile {
    pub runtime: ProfileRuntime,
    /// One of [`MEMORY_CLASSES_MB`].
    pub memory_class_mb: u32,
}

impl Profile {
    /// The exact profile of a function version: its runtime and the memory
    /// class its `MemorySize` fits.
    pub fn exact(runtime: &Runtime, memory_mb: u32) -> Self {
        Self {
            runtime: ProfileRuntime::Exact(runtime.clone()),
            memory_class_mb: memory_class(memory_mb),
        }
    }

    /// Whether a function of this runtime and `MemorySize` fits the profile.
    pub fn matches(&self, runtime: &Runtime, memory_mb: u32) -> bool {
        let runtime_ok = match &self.runtime {
            ProfileRuntime::Family(f) => runtime.family() == *f,
            ProfileRuntime::Exact(r) => r == runtime,
            ProfileRuntime::MicroVm => runtime.family() == RuntimeFamily::Provided,
        };
        runtime_ok && memory_class(memory_mb) == self.memory_class_mb
    }

    /// What a malformed profile name is told.
    pub fn malformed_message(input: &str) -> String {
        let classes: Vec<String> = MEMORY_CLASSES_MB.iter().map(u32::to_string).collect();
        format!(
            "Profile '{input}' is invalid: write RUNTIME:MEMORY, where RUNTIME is a runtime (python3.12, nodejs20.x, provided.al2023) or a runtime family (python, nodejs, provided), or microvm, and MEMORY a memory class in MB ({}).",
            classes.join(", ")
        )
    }
}

impl FromStr for Profile {
    type Err = LambdaError;

    fn from_str(s: &str) -> Result<Self, LambdaError> {
        let bad = || LambdaError::invalid(Self::malformed_message(s));
        let (runtime, memory) = s.split_once(':').ok_or_else(bad)?;
        let runtime = match parse_family(runtime) {
            Some(f) => ProfileRuntime::Family(f),
            None if runtime == "microvm" => ProfileRuntime::MicroVm,
            None => ProfileRuntime::Exact(Runtime::parse(runtime).ok_or_else(bad)?),
        };
        // Digits only: `u32::from_str` would also take a leading `+`.
        if memory.is_empty() || memory.len() > 5 || !memory.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let memory_class_mb: u32 = memory.parse().map_err(|_| bad())?;
        if !MEMORY_CLASSES_MB.contains(&memory_class_mb) || memory.starts_with('0') {
            return Err(bad());
        }
        Ok(Self {
            runtime,
            memory_class_mb,
        })
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.runtime {
            ProfileRuntime::Family(fam) => write!(f, "{}:", family_name(*fam))?,
            ProfileRuntime::Exact(r) => write!(f, "{r}:")?,
            ProfileRuntime::MicroVm => f.write_str("microvm:")?,
        }
        write!(f, "{}", self.memory_class_mb)
    }
}

/// What placement does for an account whose dedicated sub-pool is short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CapacityMode {
    /// Draw from the general sub-pool (within the account's general share).
    #[default]
    Burst,
    /// Queue, up to `max_wait_ms`, for one of the account's sandboxes to free.
    Wait,
    /// Refuse at once with 429.
    Reject,
}

impl CapacityMode {
    /// `burst`, `wait`, `reject`: how the admin API and the CLI spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Burst => "burst",
            Self::Wait => "wait",
            Self::Reject => "reject",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "burst" => Self::Burst,
            "wait" => Self::Wait,
            "reject" => Self::Reject,
            _ => return None,
        })
    }
}

impl fmt::Display for CapacityMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One account's capacity settings. Accounts never configured have
/// [`AccountCapacity::defaults`]: no dedicated sub-pool, `burst`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountCapacity {
    pub account_id: String,
    /// Profile (as written by the admin, a well-formed [`Profile`]) → the
    /// number of sandboxes the account's dedicated sub-pool holds for it.
    pub dedicated: BTreeMap<String, u32>,
    pub policy: CapacityMode,
    /// How long a `wait` placement queues before answering 429.
    pub max_wait_ms: u32,
    /// The fraction of the general sub-pool this account may hold at once,
    /// in (0, 1].
    pub general_share: f64,
}

impl AccountCapacity {
    /// The settings of an account nobody configured.
    pub fn defaults(account_id: impl Into<String>) -> Self {
        Self {
            account_id: account_id.into(),
            dedicated: BTreeMap::new(),
            policy: CapacityMode::Burst,
            max_wait_ms: DEFAULT_MAX_WAIT_MS,
            general_share: DEFAULT_GENERAL_SHARE,
        }
    }

    /// The dedicated sub-pool as parsed profiles.
    pub fn dedicated_profiles(&self) -> Result<Vec<(Profile, u32)>, LambdaError> {
        self.dedicated
            .iter()
            .map(|(p, n)| Ok((p.parse::<Profile>()?, *n)))
            .collect()
    }

    /// Checks every field; the message names the first one at fault.
    pub fn validate(&self) -> Result<(), LambdaError> {
        for (profile, n) in &self.dedicated {
            profile.parse::<Profile>()?;
            if *n > DEDICATED_MAX_PER_PROFILE {
                return Err(dedicated_count_message(profile, &n.to_string()));
            }
        }
        if self.max_wait_ms > MAX_WAIT_MS_LIMIT {
            return Err(LambdaError::invalid(format!(
                "MaxWaitMs {} is out of range: it must be between 0 and {MAX_WAIT_MS_LIMIT}.",
                self.max_wait_ms
            )));
        }
        if !(self.general_share > 0.0 && self.general_share <= 1.0) {
            return Err(LambdaError::invalid(format!(
                "GeneralShare {} is out of range: it must be greater than 0 and at most 1.",
                self.general_share
            )));
        }
        Ok(())
    }
}

/// The message for a dedicated count out of range (`shown` as given).
pub fn dedicated_count_message(profile: &str, shown: &str) -> LambdaError {
    LambdaError::invalid(format!(
        "Dedicated count {shown} for profile '{profile}' is out of range: it must be between 0 and {DEDICATED_MAX_PER_PROFILE}."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn rt(s: &str) -> Runtime {
        Runtime::parse(s).expect("a known runtime")
    }

    #[test]
    fn memory_classes_round_up() {
        assert_eq!(memory_class(128), 128);
        assert_eq!(memory_class(129), 256);
        assert_eq!(memory_class(1024), 1024);
        assert_eq!(memory_class(3008), 3072);
        assert_eq!(memory_class(3073), 4096);
        assert_eq!(memory_class(8193), 10240);
        assert_eq!(memory_class(10240), 10240);
        assert_eq!(memory_class(1), 128);
    }

    #[test]
    fn profiles_parse_and_print() {
        for s in [
            "python:128",
            "nodejs:256",
            "provided:10240",
            "python3.11:256",
            "nodejs20.x:1024",
            "provided.al2023:512",
        ] {
            let p: Profile = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(p.to_string(), s);
        }
        let p: Profile = "python:256".parse().expect("well-formed");
        assert_eq!(p.runtime, ProfileRuntime::Family(RuntimeFamily::Python));
        assert_eq!(p.memory_class_mb, 256);
        let vm: Profile = "microvm:128".parse().unwrap();
        assert_eq!(vm.runtime, ProfileRuntime::MicroVm);
        assert_eq!(vm.to_string(), "microvm:128");
        for bad in [
            "",
            "python",
            "python:",
            ":256",
            "python:300",
            "python:0256",
            "python:+256",
            "python:256:1",
            "ruby:256",
            "python2.7:256",
            "Python:256",
            "node:256",
            "python3.11:99999999999",
        ] {
            let e = bad.parse::<Profile>().expect_err(bad);
            assert_eq!(e.kind, ErrorKind::InvalidParameterValue);
            assert!(e.message.contains(&format!("'{bad}'")), "{}", e.message);
        }
    }

    #[test]
    fn profiles_match_family_or_exact_runtime_and_class() {
        let fam: Profile = "python:256".parse().expect("well-formed");
        let exact: Profile = "python3.11:256".parse().expect("well-formed");
        assert!(fam.matches(&rt("python3.11"), 256));
        assert!(fam.matches(&rt("python3.12"), 129));
        assert!(!fam.matches(&rt("python3.12"), 128));
        assert!(!fam.matches(&rt("nodejs20.x"), 256));
        assert!(exact.matches(&rt("python3.11"), 200));
        assert!(!exact.matches(&rt("python3.12"), 200));
        assert_eq!(
            Profile::exact(&rt("nodejs20.x"), 1000).to_string(),
            "nodejs20.x:1024"
        );
    }

    #[test]
    fn capacity_modes() {
        for m in [
            CapacityMode::Burst,
            CapacityMode::Wait,
            CapacityMode::Reject,
        ] {
            assert_eq!(CapacityMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(CapacityMode::default(), CapacityMode::Burst);
        assert_eq!(CapacityMode::parse("Burst"), None);
    }

    #[test]
    fn defaults_and_validation() {
        let d = AccountCapacity::defaults("000000000000");
        assert!(d.dedicated.is_empty());
        assert_eq!(d.policy, CapacityMode::Burst);
        assert_eq!(d.max_wait_ms, 1000);
        assert_eq!(d.general_share, 0.5);
        d.validate().expect("defaults are valid");

        let mut c = d.clone();
        c.dedicated.insert("python:256".into(), 3);
        c.dedicated.insert("nodejs20.x:128".into(), 0);
        c.general_share = 1.0;
        c.max_wait_ms = MAX_WAIT_MS_LIMIT;
        c.validate().expect("valid");
        assert_eq!(c.dedicated_profiles().expect("valid").len(), 2);

        let invalid = |f: &dyn Fn(&mut AccountCapacity)| {
            let mut c = d.clone();
            f(&mut c);
            c.validate().expect_err("invalid").message
        };
        assert!(invalid(&|c| c.general_share = 0.0).starts_with("GeneralShare 0 is out of range"));
        assert!(invalid(&|c| c.general_share = 1.5).contains("at most 1"));
        assert!(invalid(&|c| c.general_share = f64::NAN).contains("out of range"));
        assert!(invalid(&|c| c.max_wait_ms = MAX_WAIT_MS_LIMIT + 1).starts_with("MaxWaitMs"));
        assert!(invalid(&|c| {
            c.dedicated.insert("python:300".into(), 1);
        })
        .starts_with("Profile 'python:300' is invalid"));
        assert!(invalid(&|c| {
            c.dedicated
                .insert("python:256".into(), DEDICATED_MAX_PER_PROFILE + 1);
        })
        .starts_with("Dedicated count"));
    }
}
