//! The content-addressed code store.
//!
//! A function's code arrives as a zip. [`CodeStore::stage`] checks it,
//! unpacks it, and keeps two things under the store's root, both named by
//! the lower-case hex SHA-256 of the zip's bytes:
//!
//! ```text
//! <root>/blobs/<sha256>.zip   the zip exactly as uploaded (GetFunction, re-unpacking)
//! <root>/unpacked/<sha256>/   its files, which sandboxes mount read-only at /var/task
//! <root>/opt/<key>/           the merged layers of a function (CodeStore::opt_dir)
//! <root>/tmp/                 work in progress; emptied by CodeStore::open
//! ```
//!
//! A function with layers sees them merged, in order, read-only at `/opt`.
//! [`CodeStore::opt_dir`] builds that tree once per ordered list of layer
//! digests (hard links into the layers' unpacked trees: no copy) and keys
//! it by the SHA-256 of the list, so every sandbox of every function with
//! the same layers shares it. A single layer needs no merge: its unpacked
//! tree is the `/opt`.
//!
//! Staging writes everything into `tmp/` first and renames it into place:
//! the blob first, then the unpacked tree, each followed by an fsync of the
//! directory that received it. The caller commits the registry row that names
//! the digest only after `stage` returns, so a crash leaves either no row (and
//! at worst an unreferenced blob that [`CodeStore::gc`] removes at the next
//! start) or a row whose blob and tree are both durable.
//!
//! Zips are hostile input. Unpacking counts the bytes it actually writes
//! (declared sizes are only used to refuse early, and must match), refuses
//! names that are absolute or climb out with `..`, refuses device files, lets
//! symlinks exist only if they resolve inside the tree, and never writes
//! through a symlink an earlier entry created.
//!
//! Every method does blocking file I/O; async callers run it on a blocking
//! thread.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use hearth_types::function::CodeRef;
use hearth_types::runtime::Runtime;
use hearth_types::{ErrorKind, LambdaError};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use zip::ZipArchive;

/// AWS's text for an upload that is not a readable zip.
const NOT_A_ZIP_MESSAGE: &str =
    "Could not unzip uploaded file. Please check your file, then try to upload again.";

/// Symlinks followed while resolving one path, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINK_HOPS: u32 = 40;
/// Longest symlink target accepted (Linux's `PATH_MAX`).
const MAX_SYMLINK_TARGET: u64 = 4096;
/// Longest file-name component Linux file systems accept.
const MAX_NAME_COMPONENT: usize = 255;
/// Longest entry name quoted back in an error message.
const MAX_SHOWN_NAME: usize = 200;

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

const FILE_MODE: u32 = 0o644;
const EXECUTABLE_MODE: u32 = 0o755;
const DIR_MODE: u32 = 0o755;

/// Why code could not be stored, found or accepted.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// The zip itself is over the upload limit.
    #[error("Zipped size must be smaller than {max} bytes")]
    ZipTooLarge { size: u64, max: u64 },
    /// Unpacking would write more than the unzipped limit.
    #[error("Unzipped size must be smaller than {max} bytes")]
    UnzippedTooLarge { max: u64 },
    #[error("The zip has {count} entries, but code may have at most {max} files, directories and symlinks")]
    TooManyEntries { count: usize, max: usize },
    /// Not a zip, corrupt, encrypted, or compressed with a method Hearth
    /// cannot read. `detail` is for logs; clients get AWS's text.
    #[error("{NOT_A_ZIP_MESSAGE} ({detail})")]
    NotAZip { detail: String },
    /// An entry's name or content is not something Hearth will write.
    #[error("The zip entry '{name}' {why}")]
    UnsafeEntry { name: String, why: &'static str },
    #[error("The zip entry '{name}' is a symlink to '{target}', which points outside the code")]
    SymlinkEscapes { name: String, target: String },
    #[error("The zip entry '{name}' is a symlink that never resolves (a loop, or a chain of more than {MAX_SYMLINK_HOPS} symlinks)")]
    SymlinkLoop { name: String },
    #[error("The zip entry '{name}' would be written through the symlink '{link}'; entries may not be placed inside a symlinked directory")]
    ThroughSymlink { name: String, link: String },
    #[error("The zip entry '{name}' is inside '{parent}', which is a file, not a directory")]
    ParentNotDirectory { name: String, parent: String },
    #[error("The zip contains '{name}' more than once")]
    DuplicateEntry { name: String },
    #[error("The zip entry '{name}' is a device, FIFO or socket; code may contain only regular files, directories and symlinks")]
    SpecialFile { name: String },
    /// The handler string cannot name anything for this runtime.
    #[error("The handler '{handler}' {why}")]
    InvalidHandler { handler: String, why: String },
    /// The handler is well formed but its module/file is not in the code.
    #[error("The handler '{handler}' refers to {what} '{name}', but the code has no {expected}")]
    HandlerNotFound {
        handler: String,
        what: &'static str,
        name: String,
        expected: String,
    },
    #[error(
        "Runtime {runtime} needs an executable file named 'bootstrap' at the root of the code, or a WebAssembly module named by the handler"
    )]
    MissingBootstrap { runtime: String },
    #[error("Runtime {runtime} needs an executable file named 'bootstrap' at the root of the code, but 'bootstrap' {problem}")]
    BootstrapNotExecutable {
        runtime: String,
        problem: &'static str,
    },
    /// A digest handed to the store is malformed (a bug in the caller).
    #[error("'{0}' is not a code digest (64 lower-case hex characters)")]
    BadDigest(String),
    /// Code the registry names is not in the store.
    #[error("The code {what} for {sha256_hex} is missing from the code store")]
    Missing {
        sha256_hex: String,
        what: &'static str,
    },
    /// A stored blob no longer hashes to its name.
    #[error("The code blob {sha256_hex} is corrupt: its content hashes to {actual}")]
    Corrupt { sha256_hex: String, actual: String },
    #[error("Code store: could not {op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
}

impl From<CodeError> for LambdaError {
    fn from(e: CodeError) -> Self {
        match e {
            CodeError::ZipTooLarge { .. } => {
                LambdaError::new(ErrorKind::RequestEntityTooLarge, e.to_string())
            }
            CodeError::NotAZip { .. } => LambdaError::invalid(NOT_A_ZIP_MESSAGE),
            CodeError::BadDigest(_)
            | CodeError::Missing { .. }
            | CodeError::Corrupt { .. }
            | CodeError::Io { .. } => LambdaError::service(e.to_string()),
            CodeError::UnzippedTooLarge { .. }
            | CodeError::TooManyEntries { .. }
            | CodeError::UnsafeEntry { .. }
            | CodeError::SymlinkEscapes { .. }
            | CodeError::SymlinkLoop { .. }
            | CodeError::ThroughSymlink { .. }
            | CodeError::ParentNotDirectory { .. }
            | CodeError::DuplicateEntry { .. }
            | CodeError::SpecialFile { .. }
            | CodeError::InvalidHandler { .. }
            | CodeError::HandlerNotFound { .. }
            | CodeError::MissingBootstrap { .. }
            | CodeError::BootstrapNotExecutable { .. } => LambdaError::invalid(e.to_string()),
        }
    }
}

/// Code that is durably in the store; its row may now be committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedCode {
    pub code: CodeRef,
}

/// The hard limits `stage` enforces. Lambda's values in production; tests
/// lower them so that they need not write 250 MB.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_zip_bytes: u64,
    pub(crate) max_unzipped_bytes: u64,
    pub(crate) max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_zip_bytes: hearth_types::limits::ZIP_MAX_BYTES,
            max_unzipped_bytes: hearth_types::limits::UNZIPPED_MAX_BYTES,
            max_entries: hearth_types::limits::ZIP_MAX_ENTRIES,
        }
    }
}

/// Code zips and their unpacked trees, stored by SHA-256 under one directory.
#[derive(Debug, Clone)]
pub struct CodeStore {
    blobs: PathBuf,
    unpacked: PathBuf,
    opt: PathBuf,
    tmp: PathBuf,
    limits: Limits,
}

impl CodeStore {
    /// Opens (creating if needed) the store at `root` and empties `root/tmp`,
    /// which holds only the leftovers of an interrupted stage.
    pub fn open(root: &Path) -> Result<Self, CodeError> {
        Self::with_limits(root, Limits::default())
    }

    pub(crate) fn with_limits(root: &Path, limits: Limits) -> Result<Self, CodeError> {
        let store = Self {
            blobs: root.join("blobs"),
            unpacked: root.join("unpacked"),
            opt: root.join("opt"),
            tmp: root.join("tmp"),
            limits,
        };
        for dir in [&store.blobs, &store.unpacked, &store.opt, &store.tmp] {
            fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
        }
        let leftovers =
            fs::read_dir(&store.tmp).map_err(io_err(format!("list {}", store.tmp.display())))?;
        for entry in leftovers {
            let entry = entry.map_err(io_err(format!("list {}", store.tmp.display())))?;
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let removed = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(io_err(format!("remove leftover {}", path.display())))?;
            tracing::debug!(path = %path.display(), "removed a leftover of an interrupted stage");
        }
        Ok(store)
    }

    /// Checks, unpacks and durably stores a code zip, and returns what the
    /// registry row should record. Storing the same bytes again is cheap and
    /// returns the same [`CodeRef`]. On error nothing is left behind.
    pub fn stage(&self, zip: &[u8]) -> Result<StagedCode, CodeError> {
        self.stage_checked(zip, None)
    }

    /// [`stage`](Self::stage), checking first that `handler` names
    /// something in the code for `runtime` (see
    /// [`check_entrypoint`](Self::check_entrypoint)). The check runs on the
    /// unpacked tree *before* the blob is written, so a refused upload leaves
    /// nothing behind.
    pub fn stage_for(
        &self,
        zip: &[u8],
        runtime: &Runtime,
        handler: &str,
    ) -> Result<StagedCode, CodeError> {
        self.stage_checked(zip, Some((runtime, handler)))
    }

    fn stage_checked(
        &self,
        zip: &[u8],
        entrypoint: Option<(&Runtime, &str)>,
    ) -> Result<StagedCode, CodeError> {
        let size = zip.len() as u64;
        if size > self.limits.max_zip_bytes {
            return Err(CodeError::ZipTooLarge {
                size,
                max: self.limits.max_zip_bytes,
            });
        }
        let sha256_hex = hex::encode(Sha256::digest(zip));
        let blob = self.blob_path(&sha256_hex);
        let tree = self.unpacked_dir(&sha256_hex);

        if is_real_dir(&tree) && is_real_file(&blob) {
            if let Some((runtime, handler)) = entrypoint {
                check_entrypoint_in(&tree, runtime, handler)?;
            }
            // Sizes of a stored zip were checked against the bytes written
            // when it was first staged, so the declared ones are exact.
            let mut archive = open_archive(zip)?;
            let unzipped_size = declared_file_bytes(&mut archive)?;
            return Ok(StagedCode {
                code: CodeRef {
                    sha256_hex,
                    size,
                    unzipped_size,
                },
            });
        }

        let (unpacked, unzipped_size) = self.unpack(zip)?;
        if let Some((runtime, handler)) = entrypoint {
            check_entrypoint_in(unpacked.path(), runtime, handler)?;
        }
        self.write_blob(&sha256_hex, zip)?;
        self.install_tree(&sha256_hex, unpacked)?;
        tracing::info!(sha256 = %sha256_hex, size, unzipped_size, "staged code");
        Ok(StagedCode {
            code: CodeRef {
                sha256_hex,
                size,
                unzipped_size,
            },
        })
    }

    /// Checks that `handler` names something that exists in the code for
    /// `runtime`:
    ///
    /// - Python, `path.to.module.function`: `path/to/module.py`,
    ///   `path/to/module/__init__.py`, `path/to/module.pyc` or an extension
    ///   module `path/to/module.*.so`;
    /// - Node.js, `path/to/file.function`: `path/to/file.js`, `.mjs` or `.cjs`;
    /// - provided: an executable regular file `bootstrap` at the root.
    ///
    /// In each case the last `.` separates the function's name. Symlinks
    /// inside the tree are followed; one that leads outside counts as absent.
    pub fn check_entrypoint(
        &self,
        sha256_hex: &str,
        runtime: &Runtime,
        handler: &str,
    ) -> Result<(), CodeError> {
        check_digest(sha256_hex)?;
        let root = self.unpacked_dir(sha256_hex);
        if !is_real_dir(&root) {
            return Err(CodeError::Missing {
                sha256_hex: sha256_hex.to_owned(),
                what: "unpacked tree",
            });
        }
        check_entrypoint_in(&root, runtime, handler)
    }

    /// The WebAssembly module of a `provided*` function's code, if it is one
    /// ([`wasm_module_in`]): such a function runs in a microVM.
    pub fn wasm_module(
        &self,
        sha256_hex: &str,
        runtime: &Runtime,
        handler: &str,
    ) -> Result<Option<PathBuf>, CodeError> {
        check_digest(sha256_hex)?;
        wasm_module_in(&self.unpacked_dir(sha256_hex), runtime, handler)
    }

    /// Where the unpacked tree of `sha256_hex` lives. The digest is not
    /// validated here; pass only digests the store produced.
    pub fn unpacked_dir(&self, sha256_hex: &str) -> PathBuf {
        self.unpacked.join(sha256_hex)
    }

    /// Where the zip of `sha256_hex` lives. The digest is not validated here;
    /// pass only digests the store produced.
    pub fn blob_path(&self, sha256_hex: &str) -> PathBuf {
        self.blobs.join(format!("{sha256_hex}.zip"))
    }

    /// The stored zip, checked against its digest.
    pub fn read_zip(&self, sha256_hex: &str) -> Result<Vec<u8>, CodeError> {
        check_digest(sha256_hex)?;
        let path = self.blob_path(sha256_hex);
        let bytes = fs::read(&path).map_err(|e| self.blob_error(sha256_hex, &path, e))?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != sha256_hex {
            return Err(CodeError::Corrupt {
                sha256_hex: sha256_hex.to_owned(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Re-hashes the blob of `sha256_hex` and checks that its unpacked tree
    /// exists. Errors if either is missing or the blob's digest differs.
    pub fn verify(&self, sha256_hex: &str) -> Result<(), CodeError> {
        check_digest(sha256_hex)?;
        let path = self.blob_path(sha256_hex);
        let mut file = File::open(&path).map_err(|e| self.blob_error(sha256_hex, &path, e))?;
        let mut hasher = Sha256::new();
        io::copy(&mut file, &mut hasher).map_err(io_err(format!("read {}", path.display())))?;
        let actual = hex::encode(hasher.finalize());
        if actual != sha256_hex {
            return Err(CodeError::Corrupt {
                sha256_hex: sha256_hex.to_owned(),
                actual,
            });
        }
        if !is_real_dir(&self.unpacked_dir(sha256_hex)) {
            return Err(CodeError::Missing {
                sha256_hex: sha256_hex.to_owned(),
                what: "unpacked tree",
            });
        }
        Ok(())
    }

    /// Re-creates the unpacked tree of `sha256_hex` from its (verified) blob
    /// if the tree is missing.
    pub fn ensure_unpacked(&self, sha256_hex: &str) -> Result<(), CodeError> {
        check_digest(sha256_hex)?;
        if is_real_dir(&self.unpacked_dir(sha256_hex)) {
            return Ok(());
        }
        let zip = self.read_zip(sha256_hex)?;
        let (unpacked, _) = self.unpack(&zip)?;
        self.install_tree(sha256_hex, unpacked)?;
        tracing::info!(sha256 = %sha256_hex, "re-unpacked code from its blob");
        Ok(())
    }

    /// Removes every blob and unpacked tree whose digest is not in
    /// `referenced`, and returns how many digests it removed.
    ///
    /// Call it only at start-up, before the node serves requests: a `stage`
    /// running concurrently has written its blob and tree before the row that
    /// references them commits, so `gc` would see them as garbage. Files whose
    /// names are not digests are left alone (and logged).
    pub fn gc(&self, referenced: &HashSet<String>) -> Result<usize, CodeError> {
        let mut removed = HashSet::new();
        for (dir, suffix) in [(&self.blobs, ".zip"), (&self.unpacked, "")] {
            let entries = fs::read_dir(dir).map_err(io_err(format!("list {}", dir.display())))?;
            for entry in entries {
                let entry = entry.map_err(io_err(format!("list {}", dir.display())))?;
                let name = entry.file_name();
                let digest = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(suffix))
                    .filter(|d| is_sha256_hex(d));
                let Some(digest) = digest else {
                    tracing::warn!(path = %entry.path().display(), "not a code digest; gc leaves it alone");
                    continue;
                };
                if referenced.contains(digest) {
                    continue;
                }
                let path = entry.path();
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                let result = if is_dir {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                result.map_err(io_err(format!("remove {}", path.display())))?;
                removed.insert(digest.to_owned());
            }
            sync_dir(dir)?;
        }
        if !removed.is_empty() {
            tracing::info!(count = removed.len(), "removed unreferenced code");
        }
        // Merged layer trees are derived from unpacked ones and remade on
        // demand: none is in use at start-up, so all of them go.
        let merged =
            fs::read_dir(&self.opt).map_err(io_err(format!("list {}", self.opt.display())))?;
        for entry in merged {
            let entry = entry.map_err(io_err(format!("list {}", self.opt.display())))?;
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(io_err(format!("remove {}", path.display())))?;
        }
        Ok(removed.len())
    }

    /// The directory to show read-only at `/opt` for a function whose layers
    /// have the code digests `layers`, in order: `None` without layers; the
    /// layer's own unpacked tree for one; otherwise a tree merging them
    /// (a later layer's file replaces an earlier one's at the same path, as
    /// Lambda extracts layers in order), made the first time and then
    /// shared. Re-unpacks a layer whose tree is missing.
    pub fn opt_dir(&self, layers: &[&str]) -> Result<Option<PathBuf>, CodeError> {
        for sha in layers {
            self.ensure_unpacked(sha)?;
        }
        match layers {
            [] => return Ok(None),
            [one] => return Ok(Some(self.unpacked_dir(one))),
            _ => {}
        }
        let dest = self.opt.join(opt_key(layers));
        if is_real_dir(&dest) {
            return Ok(Some(dest));
        }
        let merged = tempfile::Builder::new()
            .prefix("opt-")
            .tempdir_in(&self.tmp)
            .map_err(io_err(format!(
                "create a directory in {}",
                self.tmp.display()
            )))?;
        set_mode(merged.path(), DIR_MODE)?;
        for sha in layers {
            merge_tree(&self.unpacked_dir(sha), merged.path())?;
        }
        match fs::rename(merged.path(), &dest) {
            Ok(()) => {
                let _moved = merged.keep();
            }
            // Another thread merged the same layers first: the trees are equal.
            Err(_) if is_real_dir(&dest) => drop(merged),
            Err(e) => {
                return Err(CodeError::Io {
                    op: format!("rename a merged layer tree to {}", dest.display()),
                    source: e,
                })
            }
        }
        tracing::info!(layers = layers.len(), dir = %dest.display(), "merged layers");
        Ok(Some(dest))
    }

    fn blob_error(&self, sha256_hex: &str, path: &Path, e: io::Error) -> CodeError {
        if e.kind() == io::ErrorKind::NotFound {
            CodeError::Missing {
                sha256_hex: sha256_hex.to_owned(),
                what: "blob",
            }
        } else {
            CodeError::Io {
                op: format!("read {}", path.display()),
                source: e,
            }
        }
    }

    /// Unpacks `zip` into a fresh directory under `tmp/`, which is removed
    /// again if anything fails. Returns it and the bytes of file content.
    fn unpack(&self, zip: &[u8]) -> Result<(TempDir, u64), CodeError> {
        let limits = self.limits;
        let mut archive = open_archive(zip)?;
        let count = archive.len();
        if count > limits.max_entries {
            return Err(CodeError::TooManyEntries {
                count,
                max: limits.max_entries,
            });
        }
        // Refuse early on the declared sizes; the real guard is the count of
        // bytes written below, which the declared sizes must match.
        if declared_file_bytes(&mut archive)? > limits.max_unzipped_bytes {
            return Err(CodeError::UnzippedTooLarge {
                max: limits.max_unzipped_bytes,
            });
        }

        let dir = tempfile::Builder::new()
            .prefix("unpack-")
            .tempdir_in(&self.tmp)
            .map_err(io_err(format!(
                "create a directory in {}",
                self.tmp.display()
            )))?;
        set_mode(dir.path(), DIR_MODE)?;
        let mut tree = TreeWriter {
            root: dir.path(),
            max_bytes: limits.max_unzipped_bytes,
            written: 0,
            dirs: Vec::new(),
            links: Vec::new(),
        };
        for index in 0..count {
            let mut entry = archive.by_index(index).map_err(not_a_zip)?;
            let name = entry.name().to_owned();
            let shown = printable(&name);
            let parts = entry_parts(&shown, &name, entry.name_raw())?;
            let kind = entry_kind(&shown, &name, entry.unix_mode())?;
            if entry.enclosed_name().is_none() {
                // Our own checks above should have caught anything the zip
                // crate considers unsafe; refuse if they disagree.
                return Err(CodeError::UnsafeEntry {
                    name: shown,
                    why: "does not name a path inside the code",
                });
            }
            if parts.is_empty() {
                if kind == EntryKind::Dir {
                    continue; // "./" or "/"-only names mean the root itself
                }
                return Err(CodeError::UnsafeEntry {
                    name: shown,
                    why: "has an empty file name",
                });
            }
            match kind {
                EntryKind::Dir => tree.ensure_dirs(&shown, &parts, true)?,
                EntryKind::File { executable } => {
                    let declared = entry.size();
                    tree.write_file(&shown, &parts, executable, &mut entry, declared)?;
                }
                EntryKind::Symlink => {
                    let target = read_symlink_target(&shown, &mut entry)?;
                    tree.write_symlink(&shown, &parts, target)?;
                }
            }
        }
        tree.check_symlinks()?;
        tree.sync()?;
        let written = tree.written;
        Ok((dir, written))
    }

    /// Writes the blob: a temporary file in `tmp/`, fsynced, renamed into
    /// `blobs/`, and the rename made durable.
    fn write_blob(&self, sha256_hex: &str, zip: &[u8]) -> Result<(), CodeError> {
        let path = self.blob_path(sha256_hex);
        let mut file = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.tmp)
            .map_err(io_err(format!("create a file in {}", self.tmp.display())))?;
        let op = format!("write {}", file.path().display());
        file.write_all(zip).map_err(io_err(op.clone()))?;
        file.as_file().sync_all().map_err(io_err(op))?;
        file.persist(&path).map_err(|e| CodeError::Io {
            op: format!("rename a blob to {}", path.display()),
            source: e.error,
        })?;
        sync_dir(&self.blobs)
    }

    /// Renames an unpacked tree into `unpacked/`. If a concurrent stage of
    /// the same bytes got there first, ours is discarded: the trees are equal.
    fn install_tree(&self, sha256_hex: &str, unpacked: TempDir) -> Result<(), CodeError> {
        let dest = self.unpacked_dir(sha256_hex);
        match fs::rename(unpacked.path(), &dest) {
            Ok(()) => {
                // The directory now lives at `dest`; nothing is left to clean up.
                let _moved = unpacked.keep();
            }
            Err(_) if is_real_dir(&dest) => drop(unpacked),
            Err(e) => {
                return Err(CodeError::Io {
                    op: format!("rename an unpacked tree to {}", dest.display()),
                    source: e,
                })
            }
        }
        sync_dir(&self.unpacked)
    }
}

/// The name of the merged tree of `layers`: the SHA-256 of their ordered
/// digests (order matters: a later layer wins).
pub fn opt_key(layers: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(b"hearth-opt-v1");
    for sha in layers {
        h.update(b"\n");
        h.update(sha.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Merges the tree `from` into `into`: directories merge, anything else
/// replaces what is at its path (a file or symlink replacing a directory
/// removes the directory, and a directory replacing a file or symlink
/// removes it, so nothing is ever written through a symlink). Files are
/// hard links to `from`'s, copied where linking fails.
fn merge_tree(from: &Path, into: &Path) -> Result<(), CodeError> {
    let entries = fs::read_dir(from).map_err(io_err(format!("list {}", from.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_err(format!("list {}", from.display())))?;
        let src = entry.path();
        let dst = into.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(io_err(format!("stat {}", src.display())))?;
        let existing = fs::symlink_metadata(&dst).ok();
        let existing_dir = existing.as_ref().is_some_and(|m| m.is_dir());
        if kind.is_dir() {
            if !existing_dir {
                if existing.is_some() {
                    fs::remove_file(&dst).map_err(io_err(format!("remove {}", dst.display())))?;
                }
                fs::create_dir(&dst).map_err(io_err(format!("create {}", dst.display())))?;
                set_mode(&dst, DIR_MODE)?;
            }
            merge_tree(&src, &dst)?;
            continue;
        }
        if existing_dir {
            fs::remove_dir_all(&dst).map_err(io_err(format!("remove {}", dst.display())))?;
        } else if existing.is_some() {
            fs::remove_file(&dst).map_err(io_err(format!("remove {}", dst.display())))?;
        }
        if kind.is_symlink() {
            let target =
                fs::read_link(&src).map_err(io_err(format!("read link {}", src.display())))?;
            symlink(&target, &dst).map_err(io_err(format!("symlink {}", dst.display())))?;
        } else if kind.is_file() && fs::hard_link(&src, &dst).is_err() {
            fs::copy(&src, &dst).map_err(io_err(format!("copy {}", src.display())))?;
        }
    }
    Ok(())
}

/// What an entry will become on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    File { executable: bool },
    Dir,
    Symlink,
}

/// Classifies an entry by its unix mode, or by its name when the zip has no
/// unix mode (a trailing `/` is a directory).
fn entry_kind(shown: &str, name: &str, mode: Option<u32>) -> Result<EntryKind, CodeError> {
    let trailing_slash = name.ends_with('/');
    let executable = mode.is_some_and(|m| m & 0o111 != 0);
    match mode.map(|m| m & S_IFMT) {
        None | Some(0) | Some(S_IFREG) if trailing_slash => Ok(EntryKind::Dir),
        None | Some(0) | Some(S_IFREG) => Ok(EntryKind::File { executable }),
        Some(S_IFDIR) => Ok(EntryKind::Dir),
        Some(S_IFLNK) if trailing_slash => Err(CodeError::UnsafeEntry {
            name: shown.to_owned(),
            why: "is a symlink whose name ends in '/'",
        }),
        Some(S_IFLNK) => Ok(EntryKind::Symlink),
        Some(_) => Err(CodeError::SpecialFile {
            name: shown.to_owned(),
        }),
    }
}

/// Splits an entry name into its path components, refusing anything that
/// could land outside the root. Empty and `.` components are dropped.
fn entry_parts(shown: &str, name: &str, raw: &[u8]) -> Result<Vec<String>, CodeError> {
    let refuse = |why| {
        Err(CodeError::UnsafeEntry {
            name: shown.to_owned(),
            why,
        })
    };
    if raw.contains(&0) || name.contains('\0') {
        return refuse("contains a NUL character");
    }
    if name.contains('\\') {
        return refuse("contains a backslash; zip entry names must separate directories with '/'");
    }
    if name.starts_with('/') {
        return refuse("has an absolute path; entries must be relative to the root of the code");
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return refuse("has a '..' component; entries must stay inside the code");
            }
            p if p.len() > MAX_NAME_COMPONENT => {
                return refuse("has a path component longer than 255 bytes");
            }
            p => parts.push(p.to_owned()),
        }
    }
    Ok(parts)
}

/// Reads a symlink entry's target, refusing empty, NUL-containing, overlong
/// and absolute ones. Relative targets are checked once the tree is complete.
fn read_symlink_target(shown: &str, entry: &mut impl Read) -> Result<PathBuf, CodeError> {
    let mut target = Vec::new();
    entry
        .take(MAX_SYMLINK_TARGET + 1)
        .read_to_end(&mut target)
        .map_err(|e| CodeError::NotAZip {
            detail: format!("reading the entry '{shown}': {e}"),
        })?;
    let refuse = |why| {
        Err(CodeError::UnsafeEntry {
            name: shown.to_owned(),
            why,
        })
    };
    if target.len() as u64 > MAX_SYMLINK_TARGET {
        return refuse("is a symlink with a target longer than 4096 bytes");
    }
    if target.is_empty() || target.contains(&0) {
        return refuse("is a symlink with an empty target or one containing NUL");
    }
    let target = PathBuf::from(OsStr::from_bytes(&target));
    if target.has_root() {
        return Err(CodeError::SymlinkEscapes {
            name: shown.to_owned(),
            target: printable(&target.to_string_lossy()),
        });
    }
    Ok(target)
}

/// Writes entries below `root`, a directory only this stage writes to.
struct TreeWriter<'a> {
    root: &'a Path,
    max_bytes: u64,
    /// Bytes of file content written so far.
    written: u64,
    /// Directories created, to fsync at the end.
    dirs: Vec<PathBuf>,
    /// Symlinks created (path components, target), checked at the end.
    links: Vec<(Vec<String>, PathBuf)>,
}

impl TreeWriter<'_> {
    fn path_of(&self, parts: &[String]) -> PathBuf {
        let mut path = self.root.to_path_buf();
        path.extend(parts);
        path
    }

    /// Makes every directory in `parts` exist as a real directory, refusing
    /// to pass through a symlink or a file. With `entry_is_dir`, the last
    /// part is the entry itself.
    fn ensure_dirs(
        &mut self,
        shown: &str,
        parts: &[String],
        entry_is_dir: bool,
    ) -> Result<(), CodeError> {
        let mut path = self.root.to_path_buf();
        for (i, part) in parts.iter().enumerate() {
            path.push(part);
            let is_entry = entry_is_dir && i + 1 == parts.len();
            let so_far = || parts[..=i].join("/");
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) if is_entry => {
                    return Err(CodeError::DuplicateEntry {
                        name: shown.to_owned(),
                    })
                }
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(CodeError::ThroughSymlink {
                        name: shown.to_owned(),
                        link: printable(&so_far()),
                    })
                }
                Ok(_) => {
                    return Err(CodeError::ParentNotDirectory {
                        name: shown.to_owned(),
                        parent: printable(&so_far()),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&path)
                        .map_err(io_err(format!("create directory {}", path.display())))?;
                    set_mode(&path, DIR_MODE)?;
                    self.dirs.push(path.clone());
                }
                Err(e) => {
                    return Err(CodeError::Io {
                        op: format!("inspect {}", path.display()),
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }

    /// Creates a new regular file (never opening an existing path, so never
    /// following a symlink) and copies the entry into it, counting bytes.
    fn write_file(
        &mut self,
        shown: &str,
        parts: &[String],
        executable: bool,
        entry: &mut impl Read,
        declared: u64,
    ) -> Result<(), CodeError> {
        self.ensure_dirs(shown, &parts[..parts.len() - 1], false)?;
        let path = self.path_of(parts);
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(CodeError::DuplicateEntry {
                    name: shown.to_owned(),
                })
            }
            Err(e) => {
                return Err(CodeError::Io {
                    op: format!("create {}", path.display()),
                    source: e,
                })
            }
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut in_entry: u64 = 0;
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(CodeError::NotAZip {
                        detail: format!("reading the entry '{shown}': {e}"),
                    })
                }
            };
            let n64 = n as u64;
            if self.written.saturating_add(n64) > self.max_bytes {
                return Err(CodeError::UnzippedTooLarge {
                    max: self.max_bytes,
                });
            }
            file.write_all(&buf[..n])
                .map_err(io_err(format!("write {}", path.display())))?;
            self.written += n64;
            in_entry += n64;
        }
        if in_entry != declared {
            return Err(CodeError::NotAZip {
                detail: format!(
                    "the entry '{shown}' holds {in_entry} bytes but declares {declared}"
                ),
            });
        }
        let mode = if executable {
            EXECUTABLE_MODE
        } else {
            FILE_MODE
        };
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("set the mode of {}", path.display())))?;
        file.sync_all()
            .map_err(io_err(format!("fsync {}", path.display())))
    }

    fn write_symlink(
        &mut self,
        shown: &str,
        parts: &[String],
        target: PathBuf,
    ) -> Result<(), CodeError> {
        self.ensure_dirs(shown, &parts[..parts.len() - 1], false)?;
        let path = self.path_of(parts);
        match symlink(&target, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(CodeError::DuplicateEntry {
                    name: shown.to_owned(),
                })
            }
            Err(e) => {
                return Err(CodeError::Io {
                    op: format!("create symlink {}", path.display()),
                    source: e,
                })
            }
        }
        self.links.push((parts.to_vec(), target));
        Ok(())
    }

    /// With every entry in place, resolves each symlink the way the kernel
    /// would (following symlinks it meets) and refuses any that leaves the
    /// root. Done at the end because a later entry can change what an
    /// earlier symlink's target passes through.
    fn check_symlinks(&self) -> Result<(), CodeError> {
        for (parts, target) in &self.links {
            let parent: Vec<OsString> = parts[..parts.len() - 1]
                .iter()
                .map(OsString::from)
                .collect();
            let shown_name = printable(&parts.join("/"));
            let mut hops = 0;
            match resolve_inside(self.root, parent, target, &mut hops) {
                Ok(_) => {}
                Err(Unresolved::Escapes) => {
                    return Err(CodeError::SymlinkEscapes {
                        name: shown_name,
                        target: printable(&target.to_string_lossy()),
                    })
                }
                Err(Unresolved::Loop) => return Err(CodeError::SymlinkLoop { name: shown_name }),
                Err(Unresolved::Io(e)) => {
                    return Err(CodeError::Io {
                        op: format!("resolve the symlink {shown_name}"),
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }

    /// Makes the new directories' entries durable (files were fsynced as
    /// they were written).
    fn sync(&self) -> Result<(), CodeError> {
        for dir in self.dirs.iter().rev() {
            sync_dir(dir)?;
        }
        sync_dir(self.root)
    }
}

/// Why a path could not be resolved inside a tree.
#[derive(Debug)]
enum Unresolved {
    Escapes,
    Loop,
    Io(io::Error),
}

/// Resolves `target` relative to the directory `at` (components below
/// `root`), following symlinks found in the tree as the kernel would, and
/// returns the components of the result. Every prefix of the result is a
/// real directory or does not exist, so opening `root` joined with it
/// follows no symlink. Leaving `root` at any step is an error.
fn resolve_inside(
    root: &Path,
    mut at: Vec<OsString>,
    target: &Path,
    hops: &mut u32,
) -> Result<Vec<OsString>, Unresolved> {
    for component in target.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return Err(Unresolved::Escapes),
            Component::CurDir => {}
            Component::ParentDir => {
                if at.pop().is_none() {
                    return Err(Unresolved::Escapes);
                }
            }
            Component::Normal(name) => {
                at.push(name.to_os_string());
                let mut path = root.to_path_buf();
                path.extend(&at);
                match fs::symlink_metadata(&path) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        *hops += 1;
                        if *hops > MAX_SYMLINK_HOPS {
                            return Err(Unresolved::Loop);
                        }
                        let link = fs::read_link(&path).map_err(Unresolved::Io)?;
                        at.pop();
                        at = resolve_inside(root, at, &link, hops)?;
                    }
                    Ok(_) => {}
                    // Nothing there (or a file in the way): the kernel would
                    // fail; resolving on lexically is at least as strict.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                        ) => {}
                    Err(e) => return Err(Unresolved::Io(e)),
                }
            }
        }
    }
    Ok(at)
}

/// What `rel` (components below `root`) is once symlinks inside the tree are
/// followed; `None` if it is absent or leads outside the tree.
fn lookup(root: &Path, rel: &[&str]) -> Result<Option<fs::Metadata>, CodeError> {
    let target: PathBuf = rel.iter().collect();
    Ok(resolve_entry(root, &target)?.map(|(_, meta)| meta))
}

/// The path and metadata of `target` inside `root`, symlinks inside the tree
/// followed; `None` if it is absent or leads outside the tree.
fn resolve_entry(root: &Path, target: &Path) -> Result<Option<(PathBuf, fs::Metadata)>, CodeError> {
    let mut hops = 0;
    let resolved = match resolve_inside(root, Vec::new(), target, &mut hops) {
        Ok(resolved) => resolved,
        Err(Unresolved::Escapes | Unresolved::Loop) => return Ok(None),
        Err(Unresolved::Io(e)) => {
            return Err(CodeError::Io {
                op: format!("look up {} in {}", target.display(), root.display()),
                source: e,
            })
        }
    };
    let mut path = root.to_path_buf();
    path.extend(&resolved);
    match fs::symlink_metadata(&path) {
        Ok(meta) => Ok(Some((path, meta))),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(CodeError::Io {
            op: format!("inspect {}", path.display()),
            source: e,
        }),
    }
}

fn is_regular_file_in(root: &Path, rel: &[&str]) -> Result<bool, CodeError> {
    Ok(lookup(root, rel)?.is_some_and(|m| m.is_file()))
}

/// Splits a handler at its last `.` into (module or file, function).
fn check_entrypoint_in(root: &Path, runtime: &Runtime, handler: &str) -> Result<(), CodeError> {
    match runtime {
        Runtime::Python { .. } => check_python_handler(root, handler),
        Runtime::Node { .. } => check_node_handler(root, handler),
        Runtime::Provided(_) => check_bootstrap(root, runtime, handler),
    }
}

fn split_handler<'h>(handler: &'h str, example: &str) -> Result<(&'h str, &'h str), CodeError> {
    match handler.rsplit_once('.') {
        Some((module, function))
            if !module.is_empty() && !function.is_empty() && !handler.contains('\0') =>
        {
            Ok((module, function))
        }
        _ => Err(CodeError::InvalidHandler {
            handler: printable(handler),
            why: format!(
                "is not of the form {example}: the last '.' separates the function's name"
            ),
        }),
    }
}

fn check_python_handler(root: &Path, handler: &str) -> Result<(), CodeError> {
    let (module, _function) = split_handler(
        handler,
        "'module.function' (e.g. 'lambda_function.lambda_handler')",
    )?;
    // awslambdaric imports `module` with '/' read as '.'.
    let parts: Vec<&str> = module.split(['.', '/']).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(CodeError::InvalidHandler {
            handler: printable(handler),
            why: format!(
                "names the module '{}', which has an empty part",
                printable(module)
            ),
        });
    }
    let Some((last, package)) = parts.split_last() else {
        return Err(CodeError::InvalidHandler {
            handler: printable(handler),
            why: "has no module name".to_owned(),
        });
    };
    let rel = parts.join("/");
    let with_suffix = |suffix: &str| {
        let mut p: Vec<String> = package.iter().map(|s| (*s).to_owned()).collect();
        p.push(format!("{last}{suffix}"));
        p
    };
    for suffix in [".py", ".pyc"] {
        let file = with_suffix(suffix);
        let file: Vec<&str> = file.iter().map(String::as_str).collect();
        if is_regular_file_in(root, &file)? {
            return Ok(());
        }
    }
    let mut init = parts.clone();
    init.push("__init__.py");
    if is_regular_file_in(root, &init)? || has_extension_module(root, package, last)? {
        return Ok(());
    }
    Err(CodeError::HandlerNotFound {
        handler: printable(handler),
        what: "module",
        name: printable(&parts.join(".")),
        expected: printable(&format!("{rel}.py (or {rel}/__init__.py)")),
    })
}

/// Whether `package/` holds a compiled extension `last.so` or `last.*.so`.
fn has_extension_module(root: &Path, package: &[&str], last: &str) -> Result<bool, CodeError> {
    let target: PathBuf = package.iter().collect();
    let mut hops = 0;
    let resolved = match resolve_inside(root, Vec::new(), &target, &mut hops) {
        Ok(resolved) => resolved,
        Err(Unresolved::Escapes | Unresolved::Loop) => return Ok(false),
        Err(Unresolved::Io(e)) => {
            return Err(CodeError::Io {
                op: format!("look up {} in {}", target.display(), root.display()),
                source: e,
            })
        }
    };
    // No prefix of `resolved` is a symlink, so listing it stays in the tree.
    let mut dir = root.to_path_buf();
    dir.extend(&resolved);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(false)
        }
        Err(e) => {
            return Err(CodeError::Io {
                op: format!("list {}", dir.display()),
                source: e,
            })
        }
    };
    let prefix = format!("{last}.");
    for entry in entries {
        let entry = entry.map_err(io_err(format!("list {}", dir.display())))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(&prefix) && name.ends_with(".so") {
            let mut rel = package.to_vec();
            rel.push(name);
            if is_regular_file_in(root, &rel)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn check_node_handler(root: &Path, handler: &str) -> Result<(), CodeError> {
    // As AWS's Node runtime reads it: the module is everything up to the
    // first '.' after the last '/', so `index.a.b` is file `index`, function `a.b`.
    let base_start = handler.rfind('/').map_or(0, |i| i + 1);
    let file = match handler[base_start..].find('.') {
        Some(dot) if dot > 0 && base_start + dot + 1 < handler.len() && !handler.contains('\0') => {
            &handler[..base_start + dot]
        }
        _ => {
            return Err(CodeError::InvalidHandler {
                handler: printable(handler),
                why: "is not of the form 'file.function' (e.g. 'index.handler'): the first '.' after the last '/' separates the function's name".to_owned(),
            })
        }
    };
    let parts: Vec<&str> = file
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if file.starts_with('/') || parts.is_empty() || parts.contains(&"..") {
        return Err(CodeError::InvalidHandler {
            handler: printable(handler),
            why: format!(
                "names the file '{}', which is not a relative path inside the code",
                printable(file)
            ),
        });
    }
    let rel = parts.join("/");
    for ext in ["js", "mjs", "cjs"] {
        let mut candidate: Vec<String> = parts.iter().map(|s| (*s).to_owned()).collect();
        if let Some(last) = candidate.last_mut() {
            last.push('.');
            last.push_str(ext);
        }
        let candidate: Vec<&str> = candidate.iter().map(String::as_str).collect();
        if is_regular_file_in(root, &candidate)? {
            return Ok(());
        }
    }
    Err(CodeError::HandlerNotFound {
        handler: printable(handler),
        what: "file",
        name: printable(&rel),
        expected: printable(&format!("{rel}.js, {rel}.mjs or {rel}.cjs")),
    })
}

/// The file at `rel` (a `/`-separated path) inside `root`, resolved without
/// leaving it, if it is a regular file.
fn regular_file_in(root: &Path, rel: &str) -> Result<Option<PathBuf>, CodeError> {
    if rel.is_empty() || rel.contains('\0') {
        return Ok(None);
    }
    let target: PathBuf = rel.split('/').filter(|p| !p.is_empty()).collect();
    Ok(resolve_entry(root, &target)?
        .filter(|(_, meta)| meta.is_file())
        .map(|(path, _)| path))
}

/// Whether the file at `path` starts with WebAssembly's magic number.
fn is_wasm(path: &Path) -> Result<bool, CodeError> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut f = File::open(path).map_err(|e| CodeError::Io {
        op: format!("open {}", path.display()),
        source: e,
    })?;
    match f.read_exact(&mut magic) {
        Ok(()) => Ok(&magic == b"\0asm"),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(CodeError::Io {
            op: format!("read {}", path.display()),
            source: e,
        }),
    }
}

/// The WebAssembly module of a `provided*` function, if its code is one:
/// the file the handler names (e.g. `function.wasm`), or a `bootstrap`
/// whose bytes are Wasm. Such a function runs in a microVM.
pub fn wasm_module_in(
    root: &Path,
    runtime: &Runtime,
    handler: &str,
) -> Result<Option<PathBuf>, CodeError> {
    if !matches!(runtime, Runtime::Provided(_)) {
        return Ok(None);
    }
    for rel in [handler, "bootstrap"] {
        if let Some(path) = regular_file_in(root, rel)? {
            if is_wasm(&path)? {
                return Ok(Some(path));
            }
        }
    }
    Ok(None)
}

fn check_bootstrap(root: &Path, runtime: &Runtime, handler: &str) -> Result<(), CodeError> {
    if wasm_module_in(root, runtime, handler)?.is_some() {
        return Ok(());
    }
    let runtime_name = runtime.to_string();
    match lookup(root, &["bootstrap"])? {
        None => Err(CodeError::MissingBootstrap {
            runtime: runtime_name,
        }),
        Some(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Ok(()),
        Some(meta) if meta.is_file() => Err(CodeError::BootstrapNotExecutable {
            runtime: runtime_name,
            problem: "is not executable (set its x bit, e.g. chmod 755 bootstrap, before zipping)",
        }),
        Some(_) => Err(CodeError::BootstrapNotExecutable {
            runtime: runtime_name,
            problem: "is not a regular file",
        }),
    }
}

fn open_archive(zip: &[u8]) -> Result<ZipArchive<Cursor<&[u8]>>, CodeError> {
    ZipArchive::new(Cursor::new(zip)).map_err(not_a_zip)
}

/// Total declared size of the regular files in `archive`.
fn declared_file_bytes(archive: &mut ZipArchive<Cursor<&[u8]>>) -> Result<u64, CodeError> {
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index).map_err(not_a_zip)?;
        let kind = entry_kind("", entry.name(), entry.unix_mode());
        if let Ok(EntryKind::File { .. }) = kind {
            total = total.saturating_add(entry.size());
        }
    }
    Ok(total)
}

fn not_a_zip(e: zip::result::ZipError) -> CodeError {
    CodeError::NotAZip {
        detail: e.to_string(),
    }
}

fn io_err(op: String) -> impl FnOnce(io::Error) -> CodeError {
    move |source| CodeError::Io { op, source }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), CodeError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_err(format!("set the mode of {}", path.display())))
}

/// Makes a directory's entries (creations, renames, removals) durable.
fn sync_dir(dir: &Path) -> Result<(), CodeError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("fsync directory {}", dir.display())))
}

fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

fn is_real_file(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_digest(sha256_hex: &str) -> Result<(), CodeError> {
    if is_sha256_hex(sha256_hex) {
        Ok(())
    } else {
        Err(CodeError::BadDigest(printable(sha256_hex)))
    }
}

/// An untrusted name as it may appear in a message: control characters
/// escaped, length bounded.
fn printable(name: &str) -> String {
    let escaped: String = name.escape_debug().collect();
    if escaped.chars().count() > MAX_SHOWN_NAME {
        let cut: String = escaped.chars().take(MAX_SHOWN_NAME).collect();
        format!("{cut}…")
    } else {
        escaped
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use hearth_types::runtime::ProvidedFlavour;
    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipWriter};

    enum Entry<'a> {
        File(&'a str, &'a [u8], u32),
        Dir(&'a str),
        Link(&'a str, &'a str),
    }
    use Entry::{Dir, File as F, Link};

    fn zip_of(entries: &[Entry<'_>]) -> Vec<u8> {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
        for e in entries {
            match e {
                F(name, data, mode) => {
                    w.start_file(*name, opts.unix_permissions(*mode)).unwrap();
                    w.write_all(data).unwrap();
                }
                Dir(name) => w.add_directory(*name, opts).unwrap(),
                Link(name, target) => w.add_symlink(*name, *target, opts).unwrap(),
            }
        }
        w.finish().unwrap().into_inner()
    }

    fn position(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    }

    /// Offset of the (first) central directory header.
    fn central(zip: &[u8]) -> usize {
        position(zip, b"PK\x01\x02")
    }

    fn store_with(limits: Limits) -> (TempDir, CodeStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::with_limits(&dir.path().join("code"), limits).unwrap();
        (dir, store)
    }

    fn store() -> (TempDir, CodeStore) {
        store_with(Limits::default())
    }

    /// Every path under the store's root, not following symlinks.
    fn listing(store: &CodeStore) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                out.push(path.strip_prefix(base).unwrap().display().to_string());
                let meta = fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    walk(&path, base, out);
                }
            }
        }
        let base = store.tmp.parent().unwrap();
        let mut out = Vec::new();
        walk(base, base, &mut out);
        out.sort();
        out
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Stages `zip`, expects an error, and checks nothing was left behind.
    fn stage_fails(store: &CodeStore, zip: &[u8]) -> CodeError {
        let before = listing(store);
        let err = store.stage(zip).unwrap_err();
        assert_eq!(
            listing(store),
            before,
            "a failed stage left something behind"
        );
        err
    }

    #[test]
    fn stages_nested_dirs_and_executable_bits() {
        let (_dir, store) = store();
        let zip = zip_of(&[
            F("app.py", b"def handler(e, c): return 1\n", 0o644),
            F("lib/pkg/deep/mod.py", b"x = 1\n", 0o600),
            F("bin/tool", b"#!/bin/sh\necho hi\n", 0o700),
            Dir("empty/"),
            Dir("./"),
            F("./dot/a.txt", b"a", 0o644),
            F("twice//slashed", b"", 0o644),
        ]);
        let staged = store.stage(&zip).unwrap();
        let code = &staged.code;
        assert_eq!(code.sha256_hex, hex::encode(Sha256::digest(&zip)));
        assert_eq!(code.size, zip.len() as u64);
        assert_eq!(code.unzipped_size, 28 + 6 + 18 + 1);

        let root = store.unpacked_dir(&code.sha256_hex);
        assert_eq!(
            fs::read(root.join("lib/pkg/deep/mod.py")).unwrap(),
            b"x = 1\n"
        );
        assert_eq!(mode_of(&root.join("app.py")), 0o644);
        assert_eq!(mode_of(&root.join("lib/pkg/deep/mod.py")), 0o644);
        assert_eq!(mode_of(&root.join("bin/tool")), 0o755);
        assert_eq!(mode_of(&root.join("lib/pkg")), 0o755);
        assert_eq!(mode_of(&root), 0o755);
        assert!(is_real_dir(&root.join("empty")));
        assert_eq!(fs::read(root.join("dot/a.txt")).unwrap(), b"a");
        assert_eq!(fs::read(store.blob_path(&code.sha256_hex)).unwrap(), zip);
        assert_eq!(fs::read_dir(&store.tmp).unwrap().count(), 0);
        store.verify(&code.sha256_hex).unwrap();
        assert_eq!(store.read_zip(&code.sha256_hex).unwrap(), zip);
    }

    #[test]
    fn restaging_the_same_bytes_is_idempotent() {
        let (_dir, store) = store();
        let zip = zip_of(&[F("index.js", b"exports.handler = 1", 0o644)]);
        let first = store.stage(&zip).unwrap();
        let before = listing(&store);
        let second = store.stage(&zip).unwrap();
        assert_eq!(first, second);
        assert_eq!(listing(&store), before);

        // A missing tree is rebuilt by a re-stage, as by ensure_unpacked.
        let hex = first.code.sha256_hex.clone();
        fs::remove_dir_all(store.unpacked_dir(&hex)).unwrap();
        assert_eq!(store.stage(&zip).unwrap(), first);
        assert_eq!(listing(&store), before);
        fs::remove_dir_all(store.unpacked_dir(&hex)).unwrap();
        store.ensure_unpacked(&hex).unwrap();
        assert_eq!(listing(&store), before);
        store.ensure_unpacked(&hex).unwrap();
    }

    #[test]
    fn refuses_what_is_not_a_zip() {
        let (_dir, store) = store();
        for bytes in [&b"hello, world"[..], b"", b"PK\x03\x04garbage"] {
            let err = stage_fails(&store, bytes);
            assert!(matches!(err, CodeError::NotAZip { .. }), "{err}");
            let lambda = LambdaError::from(err);
            assert_eq!(lambda.kind, ErrorKind::InvalidParameterValue);
            assert_eq!(
                lambda.message,
                "Could not unzip uploaded file. Please check your file, then try to upload again."
            );
        }
        // A corrupted payload (bad CRC) is refused the same way.
        let mut zip = zip_of(&[F("a.txt", &[b'z'; 1000], 0o644)]);
        let crc = 14;
        zip[crc] ^= 0xff;
        let c = central(&zip) + 16;
        zip[c] ^= 0xff;
        let err = stage_fails(&store, &zip);
        assert!(matches!(err, CodeError::NotAZip { .. }), "{err}");
    }

    #[test]
    fn refuses_a_zip_over_the_upload_limit() {
        let (_dir, store) = store_with(Limits {
            max_zip_bytes: 100,
            ..Limits::default()
        });
        let zip = zip_of(&[F("a.txt", &[7u8; 4096], 0o644)]);
        let zip = [zip.clone(), vec![0u8; 200]].concat();
        let lambda = LambdaError::from(stage_fails(&store, &zip));
        assert_eq!(lambda.kind, ErrorKind::RequestEntityTooLarge);
        assert_eq!(lambda.message, "Zipped size must be smaller than 100 bytes");
        let default = CodeError::ZipTooLarge {
            size: 0,
            max: hearth_types::limits::ZIP_MAX_BYTES,
        };
        assert_eq!(
            default.to_string(),
            "Zipped size must be smaller than 52428800 bytes"
        );
    }

    #[test]
    fn refuses_unsafe_names() {
        let (_dir, store) = store();
        for name in ["../x", "a/../../x", "a/..", "/etc/x", "a\\b", "..\\x"] {
            let zip = zip_of(&[F("ok.txt", b"ok", 0o644), F(name, b"bad", 0o644)]);
            let err = stage_fails(&store, &zip);
            assert!(
                matches!(err, CodeError::UnsafeEntry { .. }),
                "{name}: {err}"
            );
            assert_eq!(
                LambdaError::from(err).kind,
                ErrorKind::InvalidParameterValue
            );
        }
        let err = stage_fails(&store, &zip_of(&[F("../x", b"", 0o644)]));
        assert_eq!(
            err.to_string(),
            "The zip entry '../x' has a '..' component; entries must stay inside the code"
        );
        let err = stage_fails(&store, &zip_of(&[F("/etc/x", b"", 0o644)]));
        assert_eq!(
            err.to_string(),
            "The zip entry '/etc/x' has an absolute path; entries must be relative to the root of the code"
        );
    }

    #[test]
    fn refuses_symlinks_that_point_out() {
        let (_dir, store) = store();
        let cases: &[&[Entry<'_>]] = &[
            &[Link("link", "/etc/passwd")],
            &[Link("up", "..")],
            &[Link("a/b/up", "../../..")],
            &[Link("sneaky", "sub/../../x")],
            // Lexically `sub/m -> l2/../..` stays inside, but `sub/l2` is
            // the root, so the kernel would resolve it to the root's parent.
            &[Dir("sub/"), Link("sub/m", "l2/../.."), Link("sub/l2", "..")],
        ];
        for entries in cases {
            let err = stage_fails(&store, &zip_of(entries));
            assert!(matches!(err, CodeError::SymlinkEscapes { .. }), "{err}");
        }
        let err = stage_fails(&store, &zip_of(&[Link("link", "/etc/passwd")]));
        assert_eq!(
            err.to_string(),
            "The zip entry 'link' is a symlink to '/etc/passwd', which points outside the code"
        );
        let err = stage_fails(&store, &zip_of(&[Link("a", "b"), Link("b", "a")]));
        assert!(matches!(err, CodeError::SymlinkLoop { .. }), "{err}");
    }

    #[test]
    fn keeps_symlinks_that_stay_inside() {
        let (_dir, store) = store();
        let zip = zip_of(&[
            F("lib/real.py", b"x", 0o644),
            Link("lib/alias.py", "real.py"),
            Link("top", "lib/../lib"),
            Link("dangling", "not/there"),
        ]);
        let hex = store.stage(&zip).unwrap().code.sha256_hex;
        let root = store.unpacked_dir(&hex);
        assert_eq!(
            fs::read_link(root.join("lib/alias.py")).unwrap(),
            Path::new("real.py")
        );
        assert_eq!(fs::read(root.join("top/alias.py")).unwrap(), b"x");
    }

    #[test]
    fn never_writes_through_a_symlink() {
        let (_dir, store) = store();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().to_str().unwrap().to_owned();

        let zip = zip_of(&[Link("link", &target), F("link/pwned", b"x", 0o644)]);
        let err = stage_fails(&store, &zip);
        assert!(matches!(err, CodeError::SymlinkEscapes { .. }), "{err}");
        assert!(!outside.path().join("pwned").exists());

        // Even a symlink that stays inside may not be written through.
        for entries in [
            &[Link("d", "."), F("d/x", b"x", 0o644)][..],
            &[Dir("real/"), Link("d", "real"), F("d/x", b"x", 0o644)],
            &[Link("d", "real"), Dir("d/")],
            // The zip crate keeps one entry per exact name, but names that
            // differ only by "./" or "//" reach the same path.
            &[F("x", b"1", 0o644), Link("l", "x"), F("./l", b"2", 0o644)],
            &[Link("l", "x"), F("x", b"1", 0o644), F("l//", b"2", 0o644)],
        ] {
            let err = stage_fails(&store, &zip_of(entries));
            assert!(
                matches!(
                    err,
                    CodeError::ThroughSymlink { .. } | CodeError::DuplicateEntry { .. }
                ),
                "{err}"
            );
        }
        let err = stage_fails(&store, &zip_of(&[Link("d", "."), F("d/x", b"x", 0o644)]));
        assert_eq!(
            err.to_string(),
            "The zip entry 'd/x' would be written through the symlink 'd'; entries may not be placed inside a symlinked directory"
        );
    }

    #[test]
    fn refuses_duplicates_files_under_files_and_special_files() {
        let (_dir, store) = store();
        let err = stage_fails(
            &store,
            &zip_of(&[F("a.txt", b"1", 0o644), F("./a.txt", b"2", 0o644)]),
        );
        assert!(matches!(err, CodeError::DuplicateEntry { .. }), "{err}");
        let err = stage_fails(
            &store,
            &zip_of(&[F("a", b"1", 0o644), F("a/b", b"2", 0o644)]),
        );
        assert!(matches!(err, CodeError::ParentNotDirectory { .. }), "{err}");

        // A character device: the type bits live in the central directory's
        // external attributes, which ZipWriter will not set.
        let mut zip = zip_of(&[F("dev", b"", 0o644)]);
        let attrs = central(&zip) + 38;
        zip[attrs..attrs + 4].copy_from_slice(&(0o020_644u32 << 16).to_le_bytes());
        let err = stage_fails(&store, &zip);
        assert!(matches!(err, CodeError::SpecialFile { .. }), "{err}");
    }

    /// A 1 MiB entry whose headers claim it is 100 bytes.
    fn lying_bomb() -> Vec<u8> {
        let mut zip = zip_of(&[F("bomb", &vec![0u8; 1 << 20], 0o644)]);
        let small = 100u32.to_le_bytes();
        zip[22..26].copy_from_slice(&small);
        let c = central(&zip) + 24;
        zip[c..c + 4].copy_from_slice(&small);
        zip
    }

    #[test]
    fn stops_a_zip_bomb_while_writing() {
        let (_dir, store) = store_with(Limits {
            max_unzipped_bytes: 64 * 1024,
            ..Limits::default()
        });
        let err = stage_fails(&store, &lying_bomb());
        assert!(matches!(err, CodeError::UnzippedTooLarge { .. }), "{err}");
        assert_eq!(
            LambdaError::from(err).message,
            "Unzipped size must be smaller than 65536 bytes"
        );

        // An honest entry over the limit is refused before anything is written.
        let honest = zip_of(&[F("big", &vec![0u8; 1 << 20], 0o644)]);
        let err = stage_fails(&store, &honest);
        assert!(matches!(err, CodeError::UnzippedTooLarge { .. }), "{err}");

        // The real limit's text.
        let err = CodeError::UnzippedTooLarge {
            max: hearth_types::limits::UNZIPPED_MAX_BYTES,
        };
        assert_eq!(
            err.to_string(),
            "Unzipped size must be smaller than 262144000 bytes"
        );
    }

    #[test]
    fn refuses_a_size_that_lies_even_under_the_limit() {
        let (_dir, store) = store();
        let err = stage_fails(&store, &lying_bomb());
        assert!(matches!(err, CodeError::NotAZip { .. }), "{err}");
    }

    #[test]
    fn refuses_too_many_entries() {
        let (_dir, store) = store_with(Limits {
            max_entries: 3,
            ..Limits::default()
        });
        let ok = zip_of(&[F("a", b"", 0o644), F("b", b"", 0o644), Dir("c/")]);
        store.stage(&ok).unwrap();
        let zip = zip_of(&[
            F("a", b"", 0o644),
            F("b", b"", 0o644),
            F("c", b"", 0o644),
            F("d", b"", 0o644),
        ]);
        let err = stage_fails(&store, &zip);
        assert_eq!(
            err.to_string(),
            "The zip has 4 entries, but code may have at most 3 files, directories and symlinks"
        );
        assert_eq!(
            LambdaError::from(err).kind,
            ErrorKind::InvalidParameterValue
        );
    }

    fn staged(store: &CodeStore, entries: &[Entry<'_>]) -> String {
        store.stage(&zip_of(entries)).unwrap().code.sha256_hex
    }

    const PY: Runtime = Runtime::Python { minor: 12 };
    const NODE: Runtime = Runtime::Node { major: 20 };
    const AL2023: Runtime = Runtime::Provided(ProvidedFlavour::Al2023);

    #[test]
    fn python_entrypoints() {
        let (_dir, store) = store();
        let hex = staged(
            &store,
            &[
                F("app.py", b"", 0o644),
                F("pkg/__init__.py", b"", 0o644),
                F("pkg/sub/mod.py", b"", 0o644),
                F("compiled.pyc", b"", 0o644),
                F("ext/fast.cpython-312-x86_64-linux-gnu.so", b"", 0o755),
                F("real/target.py", b"", 0o644),
                Link("linked.py", "real/target.py"),
                Dir("notafile.py/"),
            ],
        );
        for ok in [
            "app.handler",
            "pkg.handler",
            "pkg.sub.mod.handler",
            "pkg/sub/mod.handler",
            "compiled.handler",
            "ext.fast.handler",
            "linked.handler",
        ] {
            store.check_entrypoint(&hex, &PY, ok).unwrap();
        }
        let err = store
            .check_entrypoint(&hex, &PY, "missing.handler")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "The handler 'missing.handler' refers to module 'missing', but the code has no missing.py (or missing/__init__.py)"
        );
        let err = store
            .check_entrypoint(&hex, &PY, "pkg.nope.handler")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "The handler 'pkg.nope.handler' refers to module 'pkg.nope', but the code has no pkg/nope.py (or pkg/nope/__init__.py)"
        );
        for bad in ["app", "app.", ".handler", "a..b.handler"] {
            let err = store.check_entrypoint(&hex, &PY, bad).unwrap_err();
            assert!(
                matches!(err, CodeError::InvalidHandler { .. }),
                "{bad}: {err}"
            );
            assert_eq!(
                LambdaError::from(err).kind,
                ErrorKind::InvalidParameterValue
            );
        }
        let err = store.check_entrypoint(&hex, &PY, "notafile.handler");
        assert!(matches!(err, Err(CodeError::HandlerNotFound { .. })));
    }

    #[test]
    fn node_entrypoints() {
        let (_dir, store) = store();
        let hex = staged(
            &store,
            &[
                F("index.mjs", b"", 0o644),
                F("src/app.cjs", b"", 0o644),
                F("lib/main.js", b"", 0o644),
                F("my.js", b"", 0o644),
            ],
        );
        for ok in [
            "index.handler",
            "src/app.handler",
            "./lib/main.run",
            "my.nested.handler",
        ] {
            store.check_entrypoint(&hex, &NODE, ok).unwrap();
        }
        let err = store
            .check_entrypoint(&hex, &NODE, "src/missing.handler")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "The handler 'src/missing.handler' refers to file 'src/missing', but the code has no src/missing.js, src/missing.mjs or src/missing.cjs"
        );
        for bad in ["index", "../index.handler", "/index.handler"] {
            let err = store.check_entrypoint(&hex, &NODE, bad).unwrap_err();
            assert!(
                matches!(err, CodeError::InvalidHandler { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn provided_needs_an_executable_bootstrap() {
        let (_dir, store) = store();
        let good = staged(&store, &[F("bootstrap", b"#!/bin/sh\n", 0o755)]);
        store.check_entrypoint(&good, &AL2023, "ignored").unwrap();

        let linked = staged(
            &store,
            &[
                F("bin/server", b"\x7fELF", 0o755),
                Link("bootstrap", "bin/server"),
            ],
        );
        store.check_entrypoint(&linked, &AL2023, "x").unwrap();

        let not_exec = staged(&store, &[F("bootstrap", b"#!/bin/sh\n", 0o644)]);
        let err = store.check_entrypoint(&not_exec, &AL2023, "x").unwrap_err();
        assert!(
            matches!(err, CodeError::BootstrapNotExecutable { .. }),
            "{err}"
        );
        assert!(err
            .to_string()
            .starts_with("Runtime provided.al2023 needs an executable file named 'bootstrap' at the root of the code, but 'bootstrap' is not executable"));

        let missing = staged(&store, &[F("main", b"", 0o755)]);
        let err = store.check_entrypoint(&missing, &AL2023, "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Runtime provided.al2023 needs an executable file named 'bootstrap' at the root of the code, or a WebAssembly module named by the handler"
        );

        // A WebAssembly module: named by the handler, or as the bootstrap
        // (executable or not). It runs in a microVM.
        let wasm = staged(&store, &[F("function.wasm", b"\0asm\x01\0\0\0", 0o644)]);
        store
            .check_entrypoint(&wasm, &AL2023, "function.wasm")
            .unwrap();
        assert!(store
            .wasm_module(&wasm, &AL2023, "function.wasm")
            .unwrap()
            .is_some_and(|p| p.ends_with("function.wasm")));
        assert!(store
            .check_entrypoint(&wasm, &AL2023, "other.wasm")
            .is_err());
        let boot = staged(&store, &[F("bootstrap", b"\0asm\x01\0\0\0", 0o644)]);
        store.check_entrypoint(&boot, &AL2023, "x").unwrap();
        assert!(store
            .wasm_module(&boot, &AL2023, "x")
            .unwrap()
            .is_some_and(|p| p.ends_with("bootstrap")));
        // A native bootstrap is not Wasm; nor is a handler path escaping the tree.
        let native = staged(&store, &[F("bootstrap", b"#!/bin/sh\n", 0o755)]);
        assert_eq!(
            store.wasm_module(&native, &AL2023, "bootstrap").unwrap(),
            None
        );
        assert_eq!(
            store
                .wasm_module(&wasm, &AL2023, "../function.wasm")
                .unwrap(),
            None
        );

        let dir = staged(&store, &[F("bootstrap/x", b"", 0o755)]);
        let err = store.check_entrypoint(&dir, &AL2023, "x").unwrap_err();
        assert!(
            matches!(err, CodeError::BootstrapNotExecutable { .. }),
            "{err}"
        );

        // A symlink pointing out of the tree is never followed: put one
        // there by hand, as stage itself would refuse it.
        let outside = tempfile::tempdir().unwrap();
        let exe = outside.path().join("exe");
        fs::write(&exe, b"#!/bin/sh\n").unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        let root = store.unpacked_dir(&missing);
        symlink(&exe, root.join("bootstrap")).unwrap();
        let err = store.check_entrypoint(&missing, &AL2023, "x").unwrap_err();
        assert!(matches!(err, CodeError::MissingBootstrap { .. }), "{err}");
    }

    #[test]
    fn entrypoint_of_unknown_code() {
        let (_dir, store) = store();
        let err = store
            .check_entrypoint(&"0".repeat(64), &PY, "app.handler")
            .unwrap_err();
        assert!(matches!(err, CodeError::Missing { .. }), "{err}");
        assert_eq!(LambdaError::from(err).kind, ErrorKind::Service);
        let err = store
            .check_entrypoint("../../etc", &PY, "app.handler")
            .unwrap_err();
        assert!(matches!(err, CodeError::BadDigest(_)), "{err}");
    }

    #[test]
    fn gc_removes_only_unreferenced_code() {
        let (_dir, store) = store();
        let keep = staged(&store, &[F("a.py", b"a", 0o644)]);
        let drop_me = staged(&store, &[F("b.py", b"b", 0o644)]);
        let tree_only = staged(&store, &[F("c.py", b"c", 0o644)]);
        fs::remove_file(store.blob_path(&tree_only)).unwrap();
        fs::write(store.blobs.join("README"), b"not a digest").unwrap();

        let referenced = HashSet::from([keep.clone()]);
        assert_eq!(store.gc(&referenced).unwrap(), 2);
        store.verify(&keep).unwrap();
        for gone in [&drop_me, &tree_only] {
            assert!(!store.blob_path(gone).exists());
            assert!(!store.unpacked_dir(gone).exists());
        }
        assert!(store.blobs.join("README").exists());
        assert_eq!(store.gc(&referenced).unwrap(), 0);
    }

    #[test]
    fn layers_merge_in_order_into_a_shared_opt() {
        let (_dir, store) = store();
        let first = staged(
            &store,
            &[
                F("python/shared.py", b"first", 0o644),
                F("python/only_first.py", b"1", 0o644),
                F("bin/tool", b"#!/bin/sh", 0o755),
                F("conf", b"a file in the first", 0o644),
                Link("python/alias.py", "shared.py"),
            ],
        );
        let second = staged(
            &store,
            &[
                F("python/shared.py", b"second", 0o644),
                F("conf/inner", b"a dir in the second", 0o644),
                F("bin", b"a file where a dir was", 0o644),
            ],
        );
        assert_eq!(store.opt_dir(&[]).unwrap(), None);
        assert_eq!(
            store.opt_dir(&[&first]).unwrap(),
            Some(store.unpacked_dir(&first))
        );
        let merged = store.opt_dir(&[&first, &second]).unwrap().unwrap();
        let read = |p: &str| fs::read_to_string(merged.join(p)).unwrap();
        assert_eq!(read("python/shared.py"), "second");
        assert_eq!(read("python/only_first.py"), "1");
        assert_eq!(read("python/alias.py"), "second"); // the link follows the winner
        assert_eq!(read("conf/inner"), "a dir in the second");
        assert_eq!(read("bin"), "a file where a dir was");
        // The layers' own trees are untouched.
        assert_eq!(
            fs::read_to_string(store.unpacked_dir(&first).join("python/shared.py")).unwrap(),
            "first"
        );
        assert!(store.unpacked_dir(&first).join("bin/tool").exists());
        // Order matters, and the same order is the same tree.
        let reversed = store.opt_dir(&[&second, &first]).unwrap().unwrap();
        assert_ne!(reversed, merged);
        assert_eq!(
            fs::read_to_string(reversed.join("python/shared.py")).unwrap(),
            "first"
        );
        assert_eq!(store.opt_dir(&[&first, &second]).unwrap().unwrap(), merged);
        // A missing layer tree is re-unpacked from its blob.
        fs::remove_dir_all(store.unpacked_dir(&second)).unwrap();
        fs::remove_dir_all(&merged).unwrap();
        let again = store.opt_dir(&[&first, &second]).unwrap().unwrap();
        assert_eq!(
            fs::read_to_string(again.join("python/shared.py")).unwrap(),
            "second"
        );
        // gc at start-up drops merged trees (they are remade on demand).
        let referenced = HashSet::from([first.clone(), second.clone()]);
        store.gc(&referenced).unwrap();
        assert!(!again.exists());
        assert!(store.unpacked_dir(&second).exists());
    }

    #[test]
    fn verify_catches_tampering_and_missing_parts() {
        let (_dir, store) = store();
        let hex = staged(&store, &[F("a.py", b"a", 0o644)]);
        store.verify(&hex).unwrap();

        let blob = store.blob_path(&hex);
        let mut bytes = fs::read(&blob).unwrap();
        bytes.push(0);
        fs::write(&blob, &bytes).unwrap();
        let err = store.verify(&hex).unwrap_err();
        assert!(matches!(err, CodeError::Corrupt { .. }), "{err}");
        assert!(matches!(
            store.read_zip(&hex),
            Err(CodeError::Corrupt { .. })
        ));
        // Re-unpacking refuses a tampered blob too.
        fs::remove_dir_all(store.unpacked_dir(&hex)).unwrap();
        assert!(matches!(
            store.ensure_unpacked(&hex),
            Err(CodeError::Corrupt { .. })
        ));
        assert_eq!(fs::read_dir(&store.tmp).unwrap().count(), 0);

        fs::remove_file(&blob).unwrap();
        let err = store.verify(&hex).unwrap_err();
        assert!(
            matches!(err, CodeError::Missing { what: "blob", .. }),
            "{err}"
        );

        let other = staged(&store, &[F("b.py", b"b", 0o644)]);
        fs::remove_dir_all(store.unpacked_dir(&other)).unwrap();
        let err = store.verify(&other).unwrap_err();
        assert!(
            matches!(
                err,
                CodeError::Missing {
                    what: "unpacked tree",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(LambdaError::from(err).kind, ErrorKind::Service);
    }

    #[test]
    fn open_clears_leftovers_of_a_crash() {
        let (dir, store) = store();
        let hex = staged(&store, &[F("a.py", b"a", 0o644)]);
        fs::create_dir_all(store.tmp.join("unpack-x/deep")).unwrap();
        fs::write(store.tmp.join("unpack-x/deep/f"), b"f").unwrap();
        fs::write(store.tmp.join("blob-y"), b"y").unwrap();
        let reopened = CodeStore::open(&dir.path().join("code")).unwrap();
        assert_eq!(fs::read_dir(&reopened.tmp).unwrap().count(), 0);
        reopened.verify(&hex).unwrap();
    }
}
