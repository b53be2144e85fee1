//! Where snapshots live on disk, and what they are keyed on.
//!
//! ```text
//! <dir>/base-<image id>-<cpu>-<MiB>m.snap  a booted guest at BaseReady
//! <dir>/fn-<function key>.snap              a function layer over that base
//! ```
//!
//! A function key is the SHA-256 of everything the snapshot depends on: the
//! module's SHA-256, the guest image id (which covers the guest kernel, the
//! runtime and the engine built into it), the engine's version, the config
//! blob (arguments and environment, which the module's init may read), the
//! memory size, and the base's id. Change any and the key changes; an old
//! file is then simply not found.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::snapshot::{Snapshot, SnapshotError};

/// A directory of snapshot files.
#[derive(Clone, Debug)]
pub struct SnapshotCache {
    dir: PathBuf,
}

/// What a function snapshot is keyed on.
#[derive(Clone, Copy, Debug)]
pub struct FunctionKey<'a> {
    /// SHA-256 of the module.
    pub module_sha256: [u8; 32],
    /// The guest image id.
    pub image_id: [u8; 32],
    /// The engine and its version (`"wasmi 2.0.0"`).
    pub engine: &'a str,
    /// The config blob the module is loaded with.
    pub config: &'a [u8],
    /// VM memory, MiB.
    pub mem_mib: u64,
    /// The base snapshot's id.
    pub base_id: [u8; 16],
    /// SHA-256 of each file image mounted, in mount order (their places
    /// are in the config's mount table).
    pub files: &'a [[u8; 32]],
}

impl FunctionKey<'_> {
    /// The key's digest.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"hearth-function-snapshot-v1\0");
        h.update(self.module_sha256);
        h.update(self.image_id);
        h.update((self.engine.len() as u64).to_le_bytes());
        h.update(self.engine.as_bytes());
        h.update((self.config.len() as u64).to_le_bytes());
        h.update(self.config);
        h.update(self.mem_mib.to_le_bytes());
        h.update(self.base_id);
        // Keys without file images stay what they were.
        if !self.files.is_empty() {
            h.update(b"files\0");
            for f in self.files {
                h.update(f);
            }
        }
        h.finalize().into()
    }
}

impl SnapshotCache {
    /// The cache in `dir`, created if missing.
    pub fn new(dir: &Path) -> std::io::Result<SnapshotCache> {
        std::fs::create_dir_all(dir)?;
        Ok(SnapshotCache {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the base snapshot of `image_id` with `mem_mib` MiB, taken on a
    /// CPU with `cpu_signature`, lives.
    pub fn base_path(
        &self,
        image_id: &[u8; 32],
        cpu_signature: &[u8; 32],
        mem_mib: u64,
    ) -> PathBuf {
        self.dir.join(format!(
            "base-{}-{}-{mem_mib}m.snap",
            &hex::encode(image_id)[..16],
            &hex::encode(cpu_signature)[..8]
        ))
    }

    /// Where the function snapshot with `key` lives.
    pub fn function_path(&self, key: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("fn-{}.snap", hex::encode(key)))
    }

    /// Opens and verifies the snapshot at `path`: `Ok(None)` if there is
    /// none. A file that fails verification is an error (the caller decides
    /// whether to remove it and take a new one).
    pub fn open(path: &Path) -> Result<Option<Arc<Snapshot>>, SnapshotError> {
        if !path.exists() {
            return Ok(None);
        }
        Snapshot::open(path).map(|s| Some(Arc::new(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(config: &[u8]) -> FunctionKey<'_> {
        FunctionKey {
            module_sha256: [1; 32],
            image_id: [2; 32],
            engine: "wasmi 2.0.0",
            config,
            mem_mib: 128,
            base_id: [3; 16],
            files: &[],
        }
    }

    #[test]
    fn keys_change_with_every_input() {
        let a = key(b"cfg").digest();
        assert_eq!(a, key(b"cfg").digest());
        assert_ne!(a, key(b"cfh").digest());
        assert_ne!(
            a,
            FunctionKey {
                mem_mib: 256,
                ..key(b"cfg")
            }
            .digest()
        );
        assert_ne!(
            a,
            FunctionKey {
                engine: "wasmi 2.0.1",
                ..key(b"cfg")
            }
            .digest()
        );
        assert_ne!(
            a,
            FunctionKey {
                files: &[[5; 32]],
                ..key(b"cfg")
            }
            .digest()
        );
        assert_ne!(
            a,
            FunctionKey {
                base_id: [4; 16],
                ..key(b"cfg")
            }
            .digest()
        );
    }

    #[test]
    fn paths_and_missing_files() {
        let d = tempfile::tempdir().unwrap();
        let c = SnapshotCache::new(&d.path().join("snaps")).unwrap();
        let p = c.base_path(&[0xab; 32], &[0xcd; 32], 128);
        assert!(p.ends_with("base-abababababababab-cdcdcdcd-128m.snap"));
        assert!(SnapshotCache::open(&p).unwrap().is_none());
        assert!(c
            .function_path(&[0; 32])
            .to_string_lossy()
            .contains("fn-0000"));
    }
}
