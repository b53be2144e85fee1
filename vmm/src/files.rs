//! Building file images (the format is `hearth_guest_abi::files`): a tree
//! of read-only files that a VM maps into its files window and the guest's
//! WASI filesystem reads in place. One image per function's code, one per
//! runtime library, one per layer; each is written once, content-addressed
//! by whoever stores it, and shared by every VM that mounts it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use hearth_guest_abi::files::{valid_path, Kind, ENTRY_LEN, HEADER_LEN, MAGIC};

/// Why an image cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// A path is not a clean relative path.
    #[error("{0:?} is not a clean relative path")]
    BadPath(String),
    /// The same path twice, or a file where a directory must be.
    #[error("{0:?} is given twice, or as both a file and a directory")]
    Conflict(String),
    /// Reading a source or writing the image failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The image would not fit the files window's offsets.
    #[error("the image is larger than 4 GiB of names")]
    TooLarge,
}

#[derive(Debug)]
enum Source {
    Dir,
    Bytes(Vec<u8>),
    Host(PathBuf, u64),
}

/// An image being put together: paths and where their content comes from.
#[derive(Debug, Default)]
pub struct ImageBuilder {
    entries: BTreeMap<String, (u32, Source)>,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FilesError {
    let what = what.into();
    move |source| FilesError::Io { what, source }
}

impl ImageBuilder {
    /// An empty image.
    pub fn new() -> ImageBuilder {
        ImageBuilder::default()
    }

    fn insert(&mut self, path: &str, mode: u32, src: Source) -> Result<(), FilesError> {
        if !valid_path(path) {
            return Err(FilesError::BadPath(path.to_string()));
        }
        // Parents are directories.
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let parent = &path[..at + i];
            match self.entries.get(parent) {
                Some((_, Source::Dir)) => {}
                Some(_) => return Err(FilesError::Conflict(parent.to_string())),
                None => {
                    self.entries
                        .insert(parent.to_string(), (0o755, Source::Dir));
                }
            }
            at += i + 1;
        }
        match (self.entries.get(path), &src) {
            (None, _) => {}
            (Some((_, Source::Dir)), Source::Dir) => return Ok(()),
            _ => return Err(FilesError::Conflict(path.to_string())),
        }
        self.entries.insert(path.to_string(), (mode, src));
        Ok(())
    }

    /// A directory (parents are added as needed).
    pub fn dir(&mut self, path: &str) -> Result<(), FilesError> {
        self.insert(path, 0o755, Source::Dir)
    }

    /// A file with this content.
    pub fn file_bytes(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<(), FilesError> {
        self.insert(path, mode, Source::Bytes(data))
    }

    /// A file with the content of `host` (read when the image is written).
    pub fn file_from(&mut self, path: &str, host: &Path) -> Result<(), FilesError> {
        let meta = std::fs::metadata(host).map_err(io(format!("reading {}", host.display())))?;
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            meta.permissions().mode() & 0o777
        };
        self.insert(path, mode, Source::Host(host.to_path_buf(), meta.len()))
    }

    /// Every regular file and directory under `host_dir`, below `prefix`
    /// (`""` for the image's root). Symbolic links are not followed: a
    /// function's code is unpacked without them.
    pub fn tree(&mut self, prefix: &str, host_dir: &Path) -> Result<(), FilesError> {
        let mut stack = vec![(host_dir.to_path_buf(), prefix.to_string())];
        while let Some((dir, rel)) = stack.pop() {
            if !rel.is_empty() {
                self.dir(&rel)?;
            }
            let rd = std::fs::read_dir(&dir).map_err(io(format!("listing {}", dir.display())))?;
            for e in rd {
                let e = e.map_err(io(format!("listing {}", dir.display())))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let ft = e
                    .file_type()
                    .map_err(io(format!("reading {}", e.path().display())))?;
                if ft.is_dir() {
                    stack.push((e.path(), child));
                } else if ft.is_file() {
                    self.file_from(&child, &e.path())?;
                }
            }
        }
        Ok(())
    }

    /// Writes the image to `out`; returns its length.
    pub fn write(&self, out: &mut impl Write) -> Result<u64, FilesError> {
        let count = self.entries.len();
        let names_at = HEADER_LEN + count * ENTRY_LEN;
        let names_len: usize = self.entries.keys().map(String::len).sum();
        let mut data_at = (names_at + names_len).next_multiple_of(16) as u64;
        let mut header = Vec::with_capacity(names_at + names_len);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&(count as u32).to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        let mut name_at = names_at;
        let mut layout = Vec::with_capacity(count);
        for (path, (mode, src)) in &self.entries {
            let (kind, len) = match src {
                Source::Dir => (Kind::Dir, 0),
                Source::Bytes(b) => (Kind::File, b.len() as u64),
                Source::Host(_, len) => (Kind::File, *len),
            };
            let off = if kind == Kind::Dir { 0 } else { data_at };
            header.extend_from_slice(
                &u32::try_from(name_at)
                    .map_err(|_| FilesError::TooLarge)?
                    .to_le_bytes(),
            );
            header.extend_from_slice(&(path.len() as u32).to_le_bytes());
            header.extend_from_slice(&kind.code().to_le_bytes());
            header.extend_from_slice(&mode.to_le_bytes());
            header.extend_from_slice(&off.to_le_bytes());
            header.extend_from_slice(&len.to_le_bytes());
            name_at += path.len();
            if kind == Kind::File {
                layout.push((off, len, src));
                data_at = (data_at + len).next_multiple_of(16);
            }
        }
        for path in self.entries.keys() {
            header.extend_from_slice(path.as_bytes());
        }
        let w = io("writing the file image");
        out.write_all(&header).map_err(w)?;
        let mut at = header.len() as u64;
        for (off, len, src) in layout {
            let pad = vec![0u8; (off - at) as usize];
            out.write_all(&pad).map_err(io("writing the file image"))?;
            match src {
                Source::Bytes(b) => out.write_all(b).map_err(io("writing the file image"))?,
                Source::Host(p, want) => {
                    let mut f =
                        std::fs::File::open(p).map_err(io(format!("reading {}", p.display())))?;
                    let n = std::io::copy(&mut f, out)
                        .map_err(io(format!("copying {}", p.display())))?;
                    if n != *want {
                        return Err(FilesError::Io {
                            what: format!("copying {}", p.display()),
                            source: std::io::Error::other(
                                "the file changed size while the image was written",
                            ),
                        });
                    }
                }
                Source::Dir => {}
            }
            at = off + len;
        }
        // A buffered writer's last bytes must reach the file now, where a
        // failure is seen, not when it is dropped.
        out.flush().map_err(io("writing the file image"))?;
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_guest_abi::files::Image;

    #[test]
    fn round_trips_through_the_guest_reader() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pkg/sub")).unwrap();
        std::fs::write(dir.path().join("app.py"), b"print(1)\n").unwrap();
        std::fs::write(dir.path().join("pkg/sub/data.txt"), b"data").unwrap();
        let mut b = ImageBuilder::new();
        b.tree("", dir.path()).unwrap();
        b.file_bytes("extra/x.bin", 0o600, vec![7; 33]).unwrap();
        let mut out = Vec::new();
        let len = b.write(&mut out).unwrap();
        assert_eq!(len as usize, out.len());
        let img = Image::new(&out).unwrap();
        let got: Vec<(String, Kind, Vec<u8>)> = img
            .entries()
            .map(|e| e.unwrap())
            .map(|e| (e.path.to_string(), e.kind, e.data.to_vec()))
            .collect();
        let want = [
            ("app.py", Kind::File, &b"print(1)\n"[..]),
            ("extra", Kind::Dir, b""),
            ("extra/x.bin", Kind::File, &[7; 33]),
            ("pkg", Kind::Dir, b""),
            ("pkg/sub", Kind::Dir, b""),
            ("pkg/sub/data.txt", Kind::File, b"data"),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0.as_str(), g.1, g.2.as_slice()), w);
        }
    }

    #[test]
    fn refuses_bad_paths_and_conflicts() {
        let mut b = ImageBuilder::new();
        assert!(b.file_bytes("../x", 0o644, vec![]).is_err());
        assert!(b.file_bytes("/abs", 0o644, vec![]).is_err());
        b.file_bytes("a", 0o644, vec![]).unwrap();
        assert!(b.file_bytes("a/b", 0o644, vec![]).is_err());
        assert!(b.file_bytes("a", 0o644, vec![]).is_err());
    }
}
