//! The config blob: a module's arguments and environment, written by the VMM
//! into the config region before `Load`.
//!
//! ```text
//! u32 argc, u32 envc, then argc + envc NUL-terminated strings
//! (arguments first, then KEY=VALUE environment entries)
//! ```
//!
//! The strings are kept NUL-terminated because that is how WASI's
//! `args_get`/`environ_get` hand them to the module.

/// Why a config blob cannot be written or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// It does not fit in the region.
    TooLarge,
    /// A string holds a NUL byte, or a key holds `=` or is empty.
    BadString,
    /// The blob is not well formed.
    Malformed,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConfigError::TooLarge => "arguments and environment do not fit the config region",
            ConfigError::BadString => {
                "an argument or environment entry holds a NUL byte or a bad key"
            }
            ConfigError::Malformed => "the config blob is malformed",
        })
    }
}

/// Writes `args` and `env` into `out`; returns the blob's length.
pub fn encode(args: &[&str], env: &[(&str, &str)], out: &mut [u8]) -> Result<usize, ConfigError> {
    let mut at = 8usize;
    let mut push = |parts: &[&str], out: &mut [u8]| -> Result<(), ConfigError> {
        for part in parts {
            if part.as_bytes().contains(&0) {
                return Err(ConfigError::BadString);
            }
            let end = at.checked_add(part.len()).ok_or(ConfigError::TooLarge)?;
            out.get_mut(at..end)
                .ok_or(ConfigError::TooLarge)?
                .copy_from_slice(part.as_bytes());
            at = end;
        }
        *out.get_mut(at).ok_or(ConfigError::TooLarge)? = 0;
        at += 1;
        Ok(())
    };
    if out.len() < 8 {
        return Err(ConfigError::TooLarge);
    }
    for a in args {
        push(&[a], out)?;
    }
    for (k, v) in env {
        if k.is_empty() || k.contains('=') {
            return Err(ConfigError::BadString);
        }
        push(&[k, "=", v], out)?;
    }
    out[0..4].copy_from_slice(&(args.len() as u32).to_le_bytes());
    out[4..8].copy_from_slice(&(env.len() as u32).to_le_bytes());
    Ok(at)
}

/// A decoded blob: the NUL-terminated strings, in order.
#[derive(Clone, Copy, Debug)]
pub struct Config<'a> {
    /// Number of arguments.
    pub argc: usize,
    /// Number of environment entries.
    pub envc: usize,
    /// The strings: arguments, then environment, each NUL-terminated.
    pub strings: &'a [u8],
}

impl<'a> Config<'a> {
    /// Checks and reads a blob.
    pub fn decode(blob: &'a [u8]) -> Result<Config<'a>, ConfigError> {
        if blob.len() < 8 {
            return Err(ConfigError::Malformed);
        }
        let argc = u32::from_le_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
        let envc = u32::from_le_bytes([blob[4], blob[5], blob[6], blob[7]]) as usize;
        let strings = &blob[8..];
        let nuls = strings.iter().filter(|b| **b == 0).count();
        if Some(nuls) != argc.checked_add(envc) || strings.last().is_some_and(|b| *b != 0) {
            return Err(ConfigError::Malformed);
        }
        Ok(Config {
            argc,
            envc,
            strings,
        })
    }

    /// The arguments, each with its NUL.
    pub fn args(&self) -> impl Iterator<Item = &'a [u8]> {
        self.strings.split_inclusive(|b| *b == 0).take(self.argc)
    }

    /// The environment entries (`KEY=VALUE`), each with its NUL.
    pub fn env(&self) -> impl Iterator<Item = &'a [u8]> {
        self.strings.split_inclusive(|b| *b == 0).skip(self.argc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = [0u8; 256];
        let n = encode(&["fn.wasm", "-v"], &[("A", "1"), ("EMPTY", "")], &mut buf).unwrap();
        let c = Config::decode(&buf[..n]).unwrap();
        let args: [&[u8]; 2] = [b"fn.wasm\0", b"-v\0"];
        assert!(c.args().eq(args.iter().copied()));
        let env: [&[u8]; 2] = [b"A=1\0", b"EMPTY=\0"];
        assert!(c.env().eq(env.iter().copied()));
    }

    #[test]
    fn empty_blob() {
        let mut buf = [0u8; 8];
        let n = encode(&[], &[], &mut buf).unwrap();
        let c = Config::decode(&buf[..n]).unwrap();
        assert_eq!((c.argc, c.envc, c.args().count()), (0, 0, 0));
    }

    #[test]
    fn refusals() {
        let mut buf = [0u8; 16];
        assert_eq!(
            encode(&["a\0b"], &[], &mut buf),
            Err(ConfigError::BadString)
        );
        assert_eq!(
            encode(&[], &[("A=B", "c")], &mut buf),
            Err(ConfigError::BadString)
        );
        assert_eq!(
            encode(&["0123456789"], &[], &mut buf),
            Err(ConfigError::TooLarge)
        );
        assert_eq!(
            Config::decode(b"\x01\0\0\0\0\0\0\0abc").err(),
            Some(ConfigError::Malformed)
        );
        assert_eq!(
            Config::decode(b"\x02\0\0\0\0\0\0\0a\0").err(),
            Some(ConfigError::Malformed)
        );
        assert_eq!(
            Config::decode(b"\x01\0\0").err(),
            Some(ConfigError::Malformed)
        );
    }
}
