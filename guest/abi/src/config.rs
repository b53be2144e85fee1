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

/// A file image mounted in the guest's filesystem: where it lies in the
/// files window, and the guest path it appears at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mount<'a> {
    /// The absolute guest path (`/var/task`).
    pub path: &'a str,
    /// Guest-physical address of the image.
    pub gpa: u64,
    /// The image's length.
    pub len: u64,
}

/// The mount table's magic, after the strings.
const MOUNTS_MAGIC: &[u8; 4] = b"MNT1";

/// [`encode`], then the mount table (omitted when there are no mounts, so a
/// blob without them is byte-for-byte what `encode` writes).
pub fn encode_with_mounts(
    args: &[&str],
    env: &[(&str, &str)],
    mounts: &[Mount<'_>],
    out: &mut [u8],
) -> Result<usize, ConfigError> {
    let mut at = encode(args, env, out)?;
    if mounts.is_empty() {
        return Ok(at);
    }
    let mut put = |bytes: &[u8], out: &mut [u8]| -> Result<(), ConfigError> {
        let end = at.checked_add(bytes.len()).ok_or(ConfigError::TooLarge)?;
        out.get_mut(at..end)
            .ok_or(ConfigError::TooLarge)?
            .copy_from_slice(bytes);
        at = end;
        Ok(())
    };
    put(MOUNTS_MAGIC, out)?;
    put(&(mounts.len() as u32).to_le_bytes(), out)?;
    for m in mounts {
        if !m.path.starts_with('/') || m.path.contains('\0') || m.path.len() > 4096 {
            return Err(ConfigError::BadString);
        }
        put(&m.gpa.to_le_bytes(), out)?;
        put(&m.len.to_le_bytes(), out)?;
        put(&(m.path.len() as u32).to_le_bytes(), out)?;
        put(m.path.as_bytes(), out)?;
    }
    Ok(at)
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
    /// The mount table after the strings (empty: none).
    mounts: &'a [u8],
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
        let rest = &blob[8..];
        let want = argc.checked_add(envc).ok_or(ConfigError::Malformed)?;
        // The strings end at their `want`-th NUL; a mount table may follow.
        let end = if want == 0 {
            0
        } else {
            rest.iter()
                .enumerate()
                .filter(|(_, b)| **b == 0)
                .nth(want - 1)
                .map(|(i, _)| i + 1)
                .ok_or(ConfigError::Malformed)?
        };
        let (strings, mounts) = rest.split_at(end);
        if !mounts.is_empty() && !mounts.starts_with(MOUNTS_MAGIC) {
            return Err(ConfigError::Malformed);
        }
        let c = Config {
            mounts,
            argc,
            envc,
            strings,
        };
        // Every mount must read whole, name an absolute path, and the table
        // must end with its last mount.
        let mut n = 0usize;
        let mut end = if mounts.is_empty() { 0 } else { 8 };
        for m in c.mounts() {
            let m = m?;
            if !m.path.starts_with('/') || m.path.contains('\0') {
                return Err(ConfigError::Malformed);
            }
            end += 20 + m.path.len();
            n += 1;
        }
        if c.mount_count() != Some(n) || end != mounts.len() {
            return Err(ConfigError::Malformed);
        }
        Ok(c)
    }

    fn mount_count(&self) -> Option<usize> {
        if self.mounts.is_empty() {
            return Some(0);
        }
        Some(u32::from_le_bytes(self.mounts.get(4..8)?.try_into().ok()?) as usize)
    }

    /// The mounts, in order.
    pub fn mounts(&self) -> impl Iterator<Item = Result<Mount<'a>, ConfigError>> + 'a {
        let table = self.mounts;
        let count = self.mount_count().unwrap_or(0);
        let mut at = 8usize;
        let mut failed = false;
        (0..count).map_while(move |_| {
            if failed {
                return None;
            }
            let r = (|| {
                let u64_at = |a: usize| -> Option<u64> {
                    Some(u64::from_le_bytes(table.get(a..a + 8)?.try_into().ok()?))
                };
                let gpa = u64_at(at)?;
                let len = u64_at(at + 8)?;
                let plen =
                    u32::from_le_bytes(table.get(at + 16..at + 20)?.try_into().ok()?) as usize;
                let path = core::str::from_utf8(table.get(at + 20..at + 20 + plen)?).ok()?;
                at += 20 + plen;
                Some(Mount { path, gpa, len })
            })();
            if r.is_none() {
                failed = true;
            }
            Some(r.ok_or(ConfigError::Malformed))
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
    fn mounts_round_trip() {
        let mut buf = [0u8; 256];
        let mounts = [
            Mount {
                path: "/var/task",
                gpa: 1 << 36,
                len: 100,
            },
            Mount {
                path: "/usr/local/lib",
                gpa: (1 << 36) + (2 << 20),
                len: 7,
            },
        ];
        let n = encode_with_mounts(&["python"], &[("A", "1")], &mounts, &mut buf).unwrap();
        let c = Config::decode(&buf[..n]).unwrap();
        assert!(c.mounts().map(|m| m.unwrap()).eq(mounts.iter().copied()));
        let args: [&[u8]; 1] = [b"python\0"];
        assert!(c.args().eq(args.iter().copied()));
        // No mounts: exactly `encode`'s bytes.
        let mut plain = [0u8; 64];
        let p = encode(&["x"], &[], &mut plain).unwrap();
        let q = encode_with_mounts(&["x"], &[], &[], &mut buf).unwrap();
        assert_eq!(&plain[..p], &buf[..q]);
        // A cut table is refused.
        let n = encode_with_mounts(&["python"], &[], &mounts, &mut buf).unwrap();
        assert_eq!(
            Config::decode(&buf[..n - 3]).err(),
            Some(ConfigError::Malformed)
        );
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
