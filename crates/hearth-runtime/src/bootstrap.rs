//! Hearth's own bootstraps for the managed runtimes, embedded in the binary
//! and installed read-only on the host, where sandboxes see them at
//! `/var/runtime`:
//!
//! - `python/bootstrap.py` (python3.8+, standard library only) for
//!   `python3.x`: a stub that imports `python/hearth_bootstrap.py`, which
//!   [`install_precompiled`] can compile ahead for the host's Pythons;
//! - `node/bootstrap.js` (Node 18+, built-ins only) for `nodejs*`.
//!
//! Each implements the Runtime API client: it loads the handler named by
//! `_HANDLER` from `LAMBDA_TASK_ROOT`, reports load failures to
//! `/runtime/init/error` (`Runtime.ImportModuleError`,
//! `Runtime.HandlerNotFound`, …), then loops on `next`, calling the handler
//! and posting its result or Lambda's error body. `provided*` functions
//! bring their own `bootstrap` and need nothing from here.
//!
//! Started with `HEARTH_AWAIT_ASSIGNMENT=1` ([`warm_command`]), the Python
//! and Node bootstraps make a **runtime-warm** sandbox: they boot the
//! interpreter and load everything the runtime itself needs with a minimal
//! environment, then long-poll `GET /2018-06-01/runtime/hearth/assignment`
//! (see [`crate::api`]). On assignment they replace their environment with
//! exactly the assigned one (the pre-assignment variables are gone), change
//! to the task root, set the module search path from it (`sys.path` with
//! `PYTHONPATH`, Node's global paths with `NODE_PATH`) and continue as a
//! normal start: load the handler, report a failure to `init/error`, loop
//! on `next`. The interpreter is not restarted. What only takes effect at
//! interpreter start-up cannot follow the assigned environment: for Python
//! the encoding of stdio from `LANG`/`PYTHONIOENCODING`, the `PYTHON*`
//! options other than `PYTHONPATH` (`PYTHONHASHSEED`, `PYTHONUTF8`,
//! `PYTHONWARNINGS`, …); for Node `NODE_OPTIONS`. Without the variable
//! nothing changes: runtimes never see the Hearth endpoint.

use hearth_types::runtime::Runtime;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where sandboxes see the installed bootstraps.
pub const RUNTIME_DIR: &str = "/var/runtime";
/// Where sandboxes see the function's code.
pub const TASK_ROOT: &str = "/var/task";

/// One embedded file: path relative to the install directory, contents, mode.
struct Embedded {
    path: &'static str,
    contents: &'static str,
    mode: u32,
}

const FILES: &[Embedded] = &[
    Embedded {
        path: "python/bootstrap.py",
        contents: include_str!("../bootstrap/python/bootstrap.py"),
        mode: 0o444,
    },
    Embedded {
        path: PYTHON_MODULE,
        contents: include_str!("../bootstrap/python/hearth_bootstrap.py"),
        mode: 0o444,
    },
    Embedded {
        path: "python/rehearsal/_hearth_rehearsal.py",
        contents: include_str!("../bootstrap/python/rehearsal/_hearth_rehearsal.py"),
        mode: 0o444,
    },
    Embedded {
        path: "node/bootstrap.js",
        contents: include_str!("../bootstrap/node/bootstrap.js"),
        mode: 0o444,
    },
    Embedded {
        path: "node/rehearsal/rehearsal.js",
        contents: include_str!("../bootstrap/node/rehearsal/rehearsal.js"),
        mode: 0o444,
    },
];
const DIR_MODE: u32 = 0o555;
/// The Python runtime proper; `bootstrap.py` only imports it, so that it
/// can be loaded from precompiled bytecode.
const PYTHON_MODULE: &str = "python/hearth_bootstrap.py";
/// Which interpreters the Python module was precompiled with, one per line.
const COMPILED_FOR: &str = "python/.compiled-for";

/// Installs the embedded bootstraps into `dir` (created if missing; its
/// parent must exist).
///
/// Idempotent: if `dir` already holds exactly these files it is left alone
/// (running sandboxes keep their bind mount of it). Otherwise the files are
/// written to a fresh sibling directory and swapped in by rename, so `dir`
/// never holds a half-written mixture. Files are made 0444, directories 0555.
pub fn install(dir: &Path) -> io::Result<()> {
    install_precompiled(dir, &[])
}

/// [`install`], and also compile the Python runtime's module with each of
/// `pythons` (host interpreters, e.g. from the runtime catalog), so that a
/// cold start loads bytecode instead of compiling the runtime (~2 ms). An
/// interpreter that cannot compile it is logged and skipped: that Python
/// then compiles the runtime in memory at each start, which is slower but
/// correct. An install is current only if it was compiled for every
/// interpreter asked for now.
pub fn install_precompiled(dir: &Path, pythons: &[PathBuf]) -> io::Result<()> {
    if is_current(dir, pythons) {
        return Ok(());
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bootstrap dir has no name"))?
        .to_string_lossy()
        .into_owned();
    let tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    remove_leftovers(parent, &name);
    let staging = parent.join(format!(".{name}.new-{tag}"));
    if let Err(e) = write_tree(&staging, pythons) {
        let _ = remove_tree(&staging);
        return Err(e);
    }
    let old = parent.join(format!(".{name}.old-{tag}"));
    let had_old = match fs::rename(dir, &old) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => {
            let _ = remove_tree(&staging);
            return Err(e);
        }
    };
    if let Err(e) = fs::rename(&staging, dir) {
        if had_old {
            let _ = fs::rename(&old, dir);
        }
        let _ = remove_tree(&staging);
        return Err(e);
    }
    if had_old {
        if let Err(e) = remove_tree(&old) {
            tracing::warn!(path = %old.display(), error = %e, "cannot remove the previous bootstraps");
        }
    }
    Ok(())
}

/// Whether `dir` already holds exactly the embedded files, compiled for at
/// least `pythons`.
fn is_current(dir: &Path, pythons: &[PathBuf]) -> bool {
    let files_match = FILES.iter().all(|f| {
        let p = dir.join(f.path);
        fs::read(&p).is_ok_and(|c| c == f.contents.as_bytes())
            && fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o777 == f.mode)
    });
    if !files_match {
        return false;
    }
    if pythons.is_empty() {
        return true;
    }
    let compiled = fs::read_to_string(dir.join(COMPILED_FOR)).unwrap_or_default();
    pythons
        .iter()
        .all(|p| compiled.lines().any(|l| Path::new(l) == p.as_path()))
}

fn write_tree(root: &Path, pythons: &[PathBuf]) -> io::Result<()> {
    fs::create_dir(root)?;
    for f in FILES {
        let p = root.join(f.path);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d)?;
        }
        fs::write(&p, f.contents)?;
    }
    let mut compiled_for = String::new();
    for python in pythons {
        match compile_python(python, &root.join(PYTHON_MODULE)) {
            Ok(()) => {
                compiled_for.push_str(&python.to_string_lossy());
                compiled_for.push('\n');
            }
            Err(e) => tracing::warn!(
                python = %python.display(),
                error = %e,
                "cannot precompile the Python bootstrap; that Python will compile it at each start"
            ),
        }
    }
    if !compiled_for.is_empty() {
        fs::write(root.join(COMPILED_FOR), compiled_for)?;
    }
    seal(root, root)
}

/// Writes `module`'s bytecode to its `__pycache__` with `python`. The
/// environment is cleared so nothing (PYTHONPYCACHEPREFIX, SOURCE_DATE_EPOCH)
/// moves or changes the cache file.
fn compile_python(python: &Path, module: &Path) -> io::Result<()> {
    let out = std::process::Command::new(python)
        .env_clear()
        .args([
            "-c",
            "import py_compile, sys; py_compile.compile(sys.argv[1], doraise=True)",
        ])
        .arg(module)
        .stdin(std::process::Stdio::null())
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Makes every file read-only (its [`FILES`] mode, else 0444) and every
/// directory 0555, deepest first so each is still writable while visited.
fn seal(root: &Path, p: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(p)?;
    if meta.is_dir() {
        for entry in fs::read_dir(p)? {
            seal(root, &entry?.path())?;
        }
        fs::set_permissions(p, fs::Permissions::from_mode(DIR_MODE))
    } else {
        let rel = p.strip_prefix(root).unwrap_or(p);
        let mode = FILES
            .iter()
            .find(|f| Path::new(f.path) == rel)
            .map_or(0o444, |f| f.mode);
        fs::set_permissions(p, fs::Permissions::from_mode(mode))
    }
}

/// Removes a tree whose directories may be read-only (0555).
fn remove_tree(root: &Path) -> io::Result<()> {
    fn make_writable(p: &Path) -> io::Result<()> {
        let meta = fs::symlink_metadata(p)?;
        if meta.is_dir() {
            fs::set_permissions(p, fs::Permissions::from_mode(0o755))?;
            for entry in fs::read_dir(p)? {
                make_writable(&entry?.path())?;
            }
        }
        Ok(())
    }
    make_writable(root)?;
    fs::remove_dir_all(root)
}

/// Staging and old trees left by an install that crashed midway.
fn remove_leftovers(parent: &Path, name: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    let new_prefix = format!(".{name}.new-");
    let old_prefix = format!(".{name}.old-");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let n = file_name.to_string_lossy();
        if n.starts_with(&new_prefix) || n.starts_with(&old_prefix) {
            let _ = remove_tree(&entry.path());
        }
    }
}

/// The argv a sandbox execs for `runtime`: the host interpreter (a host path
/// that also exists inside the sandbox, since `/usr` is bind-mounted) and
/// the bootstrap under `/var/runtime`; for `provided*`, `/var/task/bootstrap`.
///
/// `interpreter` is a `&Path` or, as [`crate::RuntimeCatalog::interpreter`]
/// gives it, an `Option<&Path>` (`None` for `provided*`; for a managed
/// runtime `None` falls back to the catalog's defaults, `/usr/bin/python3`
/// and `/usr/bin/node`).
pub fn command<'a>(runtime: &Runtime, interpreter: impl Into<Option<&'a Path>>) -> Vec<String> {
    command_at(
        runtime,
        interpreter,
        Path::new(RUNTIME_DIR),
        Path::new(TASK_ROOT),
    )
}

/// [`command`] with the bootstraps installed at `runtime_dir` and the code at
/// `task_root`, for running a runtime outside a sandbox (tests, tools).
pub fn command_at<'a>(
    runtime: &Runtime,
    interpreter: impl Into<Option<&'a Path>>,
    runtime_dir: &Path,
    task_root: &Path,
) -> Vec<String> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let interpreter = interpreter.into();
    let or = |default: &'static str| s(interpreter.unwrap_or(Path::new(default)));
    match runtime {
        Runtime::Python { .. } => vec![
            or("/usr/bin/python3"),
            s(&runtime_dir.join("python/bootstrap.py")),
        ],
        Runtime::Node { .. } => vec![
            or("/usr/bin/node"),
            s(&runtime_dir.join("node/bootstrap.js")),
        ],
        Runtime::Provided(_) => vec![s(&task_root.join("bootstrap"))],
    }
}

/// Whether Hearth's bootstrap for `runtime` takes a Unix socket channel to
/// the Runtime API from its sandbox (`HEARTH_RUNTIME_API_FD`) instead of
/// loopback TCP: the Python and Node ones do (each falls back to TCP if
/// the channel fails); a `provided*` function's own `bootstrap` does not.
pub fn takes_channel(runtime: &Runtime) -> bool {
    matches!(runtime, Runtime::Python { .. } | Runtime::Node { .. })
}

/// What [`warm_command`] gives: the argv, and the whole environment.
pub type WarmCommand = (Vec<String>, Vec<(String, String)>);

/// The variable that starts Hearth's Python and Node bootstraps in "await
/// assignment" mode (value `1`).
pub const AWAIT_ASSIGNMENT_VAR: &str = "HEARTH_AWAIT_ASSIGNMENT";

/// The argv and the whole pre-assignment environment of a runtime-warm
/// sandbox for a `python3.x` or `nodejs*` runtime profile: the same argv as
/// [`command`], and only what the runtime needs before it knows its
/// function (`PATH`, `LANG`, `TZ`, `AWS_LAMBDA_RUNTIME_API`,
/// `LAMBDA_RUNTIME_DIR`, `LAMBDA_TASK_ROOT` and
/// `HEARTH_AWAIT_ASSIGNMENT=1`), with the defaults [`crate::api::runtime_environment`]
/// uses. Never `PYTHONDONTWRITEBYTECODE`. The function's environment comes
/// with [`crate::api::RuntimeApi::assign`].
///
/// `None` for `provided*` runtimes: they have no runtime-warm state (their
/// bootstrap is the function's own code).
pub fn warm_command<'a>(
    runtime: &Runtime,
    interpreter: impl Into<Option<&'a Path>>,
) -> Option<WarmCommand> {
    warm_command_at(
        runtime,
        interpreter,
        Path::new(RUNTIME_DIR),
        Path::new(TASK_ROOT),
        crate::api::SANDBOX_RUNTIME_API,
    )
}

/// [`warm_command`] with the bootstraps at `runtime_dir`, the code at
/// `task_root` and the Runtime API at `runtime_api`, for running a
/// runtime outside a sandbox (tests, tools).
pub fn warm_command_at<'a>(
    runtime: &Runtime,
    interpreter: impl Into<Option<&'a Path>>,
    runtime_dir: &Path,
    task_root: &Path,
    runtime_api: &str,
) -> Option<WarmCommand> {
    if matches!(runtime, Runtime::Provided(_)) {
        return None;
    }
    let argv = command_at(runtime, interpreter, runtime_dir, task_root);
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let env = vec![
        (
            "PATH".to_owned(),
            crate::api::default_path(runtime).to_owned(),
        ),
        ("LANG".to_owned(), crate::api::DEFAULT_LANG.to_owned()),
        ("TZ".to_owned(), crate::api::DEFAULT_TZ.to_owned()),
        ("AWS_LAMBDA_RUNTIME_API".to_owned(), runtime_api.to_owned()),
        ("LAMBDA_RUNTIME_DIR".to_owned(), s(runtime_dir)),
        ("LAMBDA_TASK_ROOT".to_owned(), s(task_root)),
        (AWAIT_ASSIGNMENT_VAR.to_owned(), "1".to_owned()),
    ];
    Some((argv, env))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_atomic_idempotent_and_read_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("runtime");
        install(&dir).unwrap();
        let py = dir.join("python/bootstrap.py");
        assert_eq!(fs::read_to_string(&py).unwrap(), FILES[0].contents);
        assert_eq!(
            fs::read_to_string(dir.join("python/hearth_bootstrap.py")).unwrap(),
            FILES[1].contents
        );
        assert_eq!(
            fs::metadata(&py).unwrap().permissions().mode() & 0o777,
            0o444
        );
        assert_eq!(
            fs::metadata(dir.join("node")).unwrap().permissions().mode() & 0o777,
            0o555
        );
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o555
        );
        let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let before = ino(&dir);
        install(&dir).unwrap();
        assert_eq!(ino(&dir), before, "an up-to-date install is left alone");

        // A stale install (e.g. an older Hearth) is replaced as a whole.
        fs::set_permissions(dir.join("python"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&py, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&py, "old").unwrap();
        install(&dir).unwrap();
        assert_eq!(fs::read_to_string(&py).unwrap(), FILES[0].contents);
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["runtime".to_owned()], "no staging leftovers");
        remove_tree(&dir).unwrap();
    }

    #[test]
    fn precompiled_install_holds_bytecode_for_each_python() {
        let python = PathBuf::from("/usr/bin/python3");
        if !python.exists() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("runtime");
        install(&dir).unwrap();
        assert!(!dir.join("python/__pycache__").exists());
        // Asking for bytecode makes a plain install stale.
        install_precompiled(&dir, std::slice::from_ref(&python)).unwrap();
        let cache: Vec<_> = fs::read_dir(dir.join("python/__pycache__"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(cache.len(), 1, "{cache:?}");
        assert!(cache[0].to_string_lossy().contains("hearth_bootstrap."));
        assert_eq!(
            fs::metadata(&cache[0]).unwrap().permissions().mode() & 0o777,
            0o444
        );
        assert_eq!(
            fs::metadata(dir.join("python/__pycache__"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o555
        );
        let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let before = ino(&dir);
        install_precompiled(&dir, std::slice::from_ref(&python)).unwrap();
        install(&dir).unwrap();
        assert_eq!(ino(&dir), before);
        // A Python that cannot compile is skipped, not fatal.
        install_precompiled(&dir, &[python, PathBuf::from("/nonexistent/python")]).unwrap();
        assert!(dir.join("python/bootstrap.py").exists());
        remove_tree(&dir).unwrap();
    }

    #[test]
    fn commands_per_runtime() {
        let py = Runtime::parse("python3.12").unwrap();
        assert_eq!(
            command(&py, Path::new("/usr/bin/python3")),
            ["/usr/bin/python3", "/var/runtime/python/bootstrap.py"]
        );
        let node = Runtime::parse("nodejs20.x").unwrap();
        assert_eq!(
            command(&node, Path::new("/usr/bin/node")),
            ["/usr/bin/node", "/var/runtime/node/bootstrap.js"]
        );
        let provided = Runtime::parse("provided.al2023").unwrap();
        assert_eq!(command(&provided, None), ["/var/task/bootstrap"]);
        assert_eq!(
            command(&node, Some(Path::new("/opt/node"))),
            ["/opt/node", "/var/runtime/node/bootstrap.js"]
        );
        assert_eq!(command(&py, None)[0], "/usr/bin/python3");
        assert_eq!(
            command_at(&py, Path::new("/p"), Path::new("/r"), Path::new("/t")),
            ["/p", "/r/python/bootstrap.py"]
        );
    }

    #[test]
    fn warm_commands_have_a_minimal_environment() {
        let py = Runtime::parse("python3.12").unwrap();
        let (argv, env) = warm_command(&py, Path::new("/usr/bin/python3")).unwrap();
        assert_eq!(argv, command(&py, Path::new("/usr/bin/python3")));
        let env: std::collections::BTreeMap<_, _> = env.into_iter().collect();
        let names: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "AWS_LAMBDA_RUNTIME_API",
                "HEARTH_AWAIT_ASSIGNMENT",
                "LAMBDA_RUNTIME_DIR",
                "LAMBDA_TASK_ROOT",
                "LANG",
                "PATH",
                "TZ"
            ]
        );
        assert_eq!(env["HEARTH_AWAIT_ASSIGNMENT"], "1");
        assert_eq!(env["AWS_LAMBDA_RUNTIME_API"], "127.0.0.1:9001");
        assert_eq!(env["LAMBDA_RUNTIME_DIR"], "/var/runtime");
        assert_eq!(env["LAMBDA_TASK_ROOT"], "/var/task");
        // The same defaults as a function's environment.
        let full = crate::api::runtime_environment(&crate::api::RuntimeEnv {
            function_name: "f",
            function_version: "$LATEST",
            memory_mb: 128,
            runtime: &py,
            handler: "app.handler",
            region: "us-east-1",
            initialization_type: crate::api::InitializationType::OnDemand,
            runtime_api: crate::api::SANDBOX_RUNTIME_API,
            log_stream_name: "s",
            user_env: &std::collections::BTreeMap::new(),
        });
        for (k, v) in &full {
            if let Some(w) = env.get(k) {
                assert_eq!(w, v, "{k}");
            }
        }
        assert!(!env.contains_key("PYTHONDONTWRITEBYTECODE"));

        let node = Runtime::parse("nodejs20.x").unwrap();
        let (argv, env) = warm_command_at(
            &node,
            None,
            Path::new("/r"),
            Path::new("/t"),
            "127.0.0.1:1234",
        )
        .unwrap();
        assert_eq!(argv, ["/usr/bin/node", "/r/node/bootstrap.js"]);
        assert!(env.contains(&("LAMBDA_TASK_ROOT".to_owned(), "/t".to_owned())));
        assert!(env.contains(&(
            "AWS_LAMBDA_RUNTIME_API".to_owned(),
            "127.0.0.1:1234".to_owned()
        )));
        let provided = Runtime::parse("provided.al2023").unwrap();
        assert!(warm_command(&provided, None).is_none());
    }
}
