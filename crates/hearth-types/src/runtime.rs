//! Runtimes the registry knows: `python3.x`, `nodejs<N>.x`, `provided`,
//! `provided.al2`, `provided.al2023`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a function's code is started.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Runtime {
    /// `python3.<minor>`: the host's Python plus Hearth's bootstrap.
    Python { minor: u32 },
    /// `nodejs<major>.x`: the host's Node.js plus Hearth's bootstrap.
    Node { major: u32 },
    /// `provided`, `provided.al2`, `provided.al2023`: the function's own `bootstrap`.
    Provided(ProvidedFlavour),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProvidedFlavour {
    Plain,
    Al2,
    Al2023,
}

/// What kind of interpreter a runtime needs on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeFamily {
    Python,
    Node,
    Provided,
}

/// The runtimes AWS lists in its error message; Hearth accepts every
/// `python3.x` / `nodejsN.x` of the same form, but quotes AWS's list.
pub const AWS_RUNTIME_ENUM: &str = "[nodejs20.x, python3.14, provided.al2023, python3.12, python3.13, nodejs24.x, nodejs22.x, java25, python3.10, python3.11, java21, ruby3.3, ruby3.4, ruby3.2, python3.8, python3.9, java17, nodejs16.x, dotnet10, dotnet8, java11, dotnet6, nodejs18.x, provided.al2, java8.al2]";

impl Runtime {
    pub fn family(&self) -> RuntimeFamily {
        match self {
            Self::Python { .. } => RuntimeFamily::Python,
            Self::Node { .. } => RuntimeFamily::Node,
            Self::Provided(_) => RuntimeFamily::Provided,
        }
    }

    /// Parses a runtime identifier exactly as Lambda spells it (lower case).
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(minor) = s.strip_prefix("python3.") {
            return parse_num(minor).map(|minor| Self::Python { minor });
        }
        if let Some(rest) = s.strip_prefix("nodejs") {
            return rest
                .strip_suffix(".x")
                .and_then(parse_num)
                .map(|major| Self::Node { major });
        }
        match s {
            "provided" => Some(Self::Provided(ProvidedFlavour::Plain)),
            "provided.al2" => Some(Self::Provided(ProvidedFlavour::Al2)),
            "provided.al2023" => Some(Self::Provided(ProvidedFlavour::Al2023)),
            _ => None,
        }
    }

    /// The message Lambda gives for an unknown runtime.
    pub fn unknown_message(value: &str) -> String {
        format!(
            "Value {value} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: {AWS_RUNTIME_ENUM} or be a valid ARN"
        )
    }
}

fn parse_num(s: &str) -> Option<u32> {
    if s.is_empty()
        || s.len() > 3
        || !s.chars().all(|c| c.is_ascii_digit())
        || s.starts_with('0') && s.len() > 1
    {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Python { minor } => write!(f, "python3.{minor}"),
            Self::Node { major } => write!(f, "nodejs{major}.x"),
            Self::Provided(ProvidedFlavour::Plain) => f.write_str("provided"),
            Self::Provided(ProvidedFlavour::Al2) => f.write_str("provided.al2"),
            Self::Provided(ProvidedFlavour::Al2023) => f.write_str("provided.al2023"),
        }
    }
}

impl TryFrom<String> for Runtime {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| Self::unknown_message(&s))
    }
}

impl From<Runtime> for String {
    fn from(r: Runtime) -> String {
        r.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "python3.11",
            "python3.9",
            "nodejs20.x",
            "provided",
            "provided.al2",
            "provided.al2023",
        ] {
            assert_eq!(Runtime::parse(s).unwrap().to_string(), s);
        }
        for bad in [
            "PYTHON3.9",
            "python3.",
            "python2.7",
            "nodejs20",
            "java21",
            "provided.al3",
            "python3.09",
        ] {
            assert!(Runtime::parse(bad).is_none(), "{bad}");
        }
    }
}
