//! The snapshot cache: the base snapshot of each memory class, the function
//! snapshots, and the modules they map.
//!
//! ```text
//! <dir>/base-<image>-<cpu>-<MiB>m.snap      a booted guest at BaseReady
//! <dir>/fn-<code sha256>-<key>.snap          a function at its first stdin read
//! <dir>/code-<code sha256>.img               a code package as a file image
//! ```
//!
//! A function snapshot's key ([`FunctionKey`]) covers the module's SHA-256,
//! the guest image (which includes the engine), the engine's version, the
//! config the module is loaded with (its arguments and environment), the
//! memory class and the base. Every file is verified when first opened
//! (length and CRC32C); one that fails, or that does not fit this host, is
//! deleted and taken again. Files are named by the function's code package
//! so that they go with the last version that uses the code
//! ([`SnapshotStore::delete_code`], [`SnapshotStore::sweep`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use hearth_vmm::cache::FunctionKey;
use hearth_vmm::snapshot::Snapshot;
use hearth_vmm::vm::ModuleFile;

use super::VmPoolError;

/// The cache, shared by every VM of a node.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    bases: Mutex<HashMap<u32, Arc<Snapshot>>>,
    functions: Mutex<HashMap<[u8; 32], Arc<Snapshot>>>,
    modules: Mutex<HashMap<PathBuf, ModuleFile>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SnapshotStore {
    /// The cache in `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<SnapshotStore, VmPoolError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| VmPoolError::Io(format!("creating {}", dir.display()), e))?;
        Ok(SnapshotStore {
            dir: dir.to_path_buf(),
            bases: Mutex::default(),
            functions: Mutex::default(),
            modules: Mutex::default(),
        })
    }

    /// Where the files live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of a memory class's base snapshot.
    pub fn base_path(&self, image_id: &[u8; 32], cpu: &[u8; 32], mem_mib: u32) -> PathBuf {
        self.dir.join(format!(
            "base-{}-{}-{mem_mib}m.snap",
            &hex::encode(image_id)[..16],
            &hex::encode(cpu)[..8]
        ))
    }

    /// The base of a memory class, if it is open.
    pub fn base(&self, mem_mib: u32) -> Option<Arc<Snapshot>> {
        lock(&self.bases).get(&mem_mib).cloned()
    }

    /// Records the base of a memory class.
    pub fn set_base(&self, mem_mib: u32, base: Arc<Snapshot>) {
        lock(&self.bases).insert(mem_mib, base);
    }

    /// The path of a function snapshot.
    pub fn function_path(&self, code_sha256_hex: &str, key: &[u8; 32]) -> PathBuf {
        self.dir
            .join(format!("fn-{code_sha256_hex}-{}.snap", hex::encode(key)))
    }

    /// The function snapshot with `key`, from memory or from its file
    /// (verified, and deleted if it fails); `None` if there is none yet.
    pub fn function(&self, code_sha256_hex: &str, key: &[u8; 32]) -> Option<Arc<Snapshot>> {
        if let Some(s) = lock(&self.functions).get(key) {
            return Some(s.clone());
        }
        let path = self.function_path(code_sha256_hex, key);
        if !path.exists() {
            return None;
        }
        match Snapshot::open(&path) {
            Ok(s) => {
                let s = Arc::new(s);
                lock(&self.functions).insert(*key, s.clone());
                Some(s)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding a function snapshot");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// The function snapshot with `key` if it is open (no file is read).
    pub fn cached_function(&self, key: &[u8; 32]) -> Option<Arc<Snapshot>> {
        lock(&self.functions).get(key).cloned()
    }

    /// Records a function snapshot just written to its path.
    pub fn insert_function(&self, key: [u8; 32], snapshot: Arc<Snapshot>) {
        lock(&self.functions).insert(key, snapshot);
    }

    /// Forgets and deletes a function snapshot that does not fit (another
    /// base, another host).
    pub fn discard_function(&self, code_sha256_hex: &str, key: &[u8; 32]) {
        lock(&self.functions).remove(key);
        let _ = std::fs::remove_file(self.function_path(code_sha256_hex, key));
    }

    /// The file image of a code package's unpacked tree (`/var/task` of a
    /// function whose runtime reads its code through the guest's
    /// filesystem), made the first time and then shared by every VM of
    /// every function with that code.
    pub fn code_image(&self, code_sha256_hex: &str, tree: &Path) -> Result<PathBuf, VmPoolError> {
        let path = self.dir.join(format!("code-{code_sha256_hex}.img"));
        if path.exists() {
            return Ok(path);
        }
        let mut b = hearth_vmm::files::ImageBuilder::new();
        b.tree("", tree)
            .map_err(|e| VmPoolError::Guest(format!("imaging {}: {e}", tree.display())))?;
        // Two threads may make the same image at once: each writes its own
        // temporary file, and the last rename wins with the same bytes.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tmp = self.dir.join(format!(
            ".code-{code_sha256_hex}.img.tmp{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let written = (|| {
            let f = std::fs::File::create(&tmp)?;
            let mut w = std::io::BufWriter::new(f);
            b.write(&mut w).map_err(std::io::Error::other)?;
            w.into_inner()
                .map_err(std::io::IntoInnerError::into_error)?
                .sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(VmPoolError::Io(format!("writing {}", path.display()), e));
        }
        Ok(path)
    }

    /// Deletes every function snapshot (and the code image) of a code
    /// package (its last version is gone). Returns how many files went.
    pub fn delete_code(&self, code_sha256_hex: &str) -> usize {
        let prefix = format!("fn-{code_sha256_hex}-");
        let image = format!("code-{code_sha256_hex}.img");
        let mut gone = 0;
        let mut functions = lock(&self.functions);
        functions.retain(|_, s| {
            !s.path()
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        });
        drop(functions);
        lock(&self.modules).retain(|p, _| !p.to_string_lossy().contains(code_sha256_hex));
        if let Ok(dir) = std::fs::read_dir(&self.dir) {
            for entry in dir.flatten() {
                let name = entry.file_name();
                if name
                    .to_str()
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".snap") || n == image)
                    && std::fs::remove_file(entry.path()).is_ok()
                {
                    gone += 1;
                }
            }
        }
        gone
    }

    /// Deletes the function snapshots of every code package `referenced`
    /// says is no longer used, and leftover temporary files. Returns how
    /// many files went.
    pub fn sweep(&self, referenced: impl Fn(&str) -> bool) -> usize {
        let mut unused = Vec::new();
        if let Ok(dir) = std::fs::read_dir(&self.dir) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.contains(".tmp") {
                    let _ = std::fs::remove_file(entry.path());
                } else if let Some(rest) = name
                    .strip_prefix("fn-")
                    .or_else(|| name.strip_prefix("code-"))
                {
                    let sha = rest.split(['-', '.']).next().unwrap_or("");
                    // The warm-up module's snapshot is Hearth's own.
                    if sha != "warmup"
                        && !referenced(sha)
                        && !unused.iter().any(|u: &String| u == sha)
                    {
                        unused.push(sha.to_owned());
                    }
                }
            }
        }
        unused.iter().map(|sha| self.delete_code(sha)).sum()
    }

    /// The module at `path` (a file of the content-addressed code store),
    /// opened once and hashed once.
    pub fn module(&self, path: &Path) -> Result<ModuleFile, VmPoolError> {
        if let Some(m) = lock(&self.modules).get(path) {
            return Ok(m.clone());
        }
        let m = ModuleFile::open(path)
            .map_err(|e| VmPoolError::Io(format!("reading {}", path.display()), e))?;
        lock(&self.modules).insert(path.to_path_buf(), m.clone());
        Ok(m)
    }
}

/// The key of a function snapshot, as [`FunctionKey`] digests it: the
/// file images' SHA-256s are part of it, so a snapshot is only ever adopted
/// with the images its guest mounted.
pub fn function_key(
    module: &ModuleFile,
    files: &[ModuleFile],
    base: &Snapshot,
    engine: &str,
    config: &[u8],
) -> [u8; 32] {
    let files: Vec<[u8; 32]> = files.iter().map(|f| f.sha256).collect();
    FunctionKey {
        module_sha256: module.sha256,
        image_id: base.header.image_id,
        engine,
        config,
        mem_mib: base.header.mem_size >> 20,
        base_id: base.header.id,
        files: &files,
    }
    .digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_and_sweep_by_code_package() {
        let d = tempfile::tempdir().unwrap();
        let s = SnapshotStore::open(d.path()).unwrap();
        for (sha, key) in [("aa", [1u8; 32]), ("aa", [2; 32]), ("bb", [3; 32])] {
            std::fs::write(s.function_path(sha, &key), b"x").unwrap();
        }
        let tree = tempfile::tempdir().unwrap();
        std::fs::write(tree.path().join("app.py"), b"def h(e, c): return e\n").unwrap();
        let img = s.code_image("aa", tree.path()).unwrap();
        assert_eq!(s.code_image("aa", tree.path()).unwrap(), img, "made once");
        std::fs::copy(&img, d.path().join("code-cc.img")).unwrap();
        std::fs::write(d.path().join(".fn-x.snap.tmp123"), b"partial").unwrap();
        std::fs::write(s.base_path(&[0; 32], &[0; 32], 128), b"base").unwrap();
        assert_eq!(s.delete_code("aa"), 3, "two snapshots and the code image");
        assert!(!img.exists());
        assert_eq!(s.sweep(|sha| sha == "bb"), 1, "cc's image is unreferenced");
        assert_eq!(s.sweep(|_| false), 1);
        let left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left.len(), 1, "only the base is left: {left:?}");
        assert!(left[0].starts_with("base-"));
    }

    #[test]
    fn a_corrupt_function_snapshot_is_discarded() {
        let d = tempfile::tempdir().unwrap();
        let s = SnapshotStore::open(d.path()).unwrap();
        let p = s.function_path("cc", &[9; 32]);
        std::fs::write(&p, vec![0u8; 8192]).unwrap();
        assert!(s.function("cc", &[9; 32]).is_none());
        assert!(!p.exists());
    }
}
