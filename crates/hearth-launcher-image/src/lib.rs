//! The sandbox launcher, embedded: `hearth-sandbox`'s standalone
//! `hearth-sandbox-init` binary, built by this crate's build script.
//!
//! The daemon installs it once into its data directory ([`install`]) and
//! execs it for every sandbox, instead of re-exec'ing its own, much larger
//! binary (see `build.rs` for what that costs).
//!
//! ```
//! assert_eq!(&hearth_launcher_image::BINARY[..4], b"\x7fELF");
//! assert_eq!(hearth_launcher_image::ID.len(), 64);
//! ```

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/launcher.rs"));

/// Writes the launcher into `dir` (created if missing) as
/// `hearth-sandbox-init-<first 16 hex digits of its SHA-256>`, mode 0755,
/// unless a file of that name already holds exactly these bytes, and
/// returns its path. The file is written beside its final name and renamed
/// into place, so a concurrent or interrupted install never leaves a
/// partial launcher under the final name. Launchers of other builds left
/// in `dir` are removed (a process still running one keeps it until it
/// exits).
pub fn install(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = format!("hearth-sandbox-init-{}", &ID[..16]);
    let path = dir.join(&name);
    for e in std::fs::read_dir(dir)?.flatten() {
        let other = e.file_name();
        let other = other.to_string_lossy();
        let ours = other == name.as_str();
        if !ours
            && other
                .trim_start_matches('.')
                .starts_with("hearth-sandbox-init-")
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if std::fs::read(&path).is_ok_and(|b| b == BINARY) {
        return Ok(path);
    }
    let tmp = dir.join(format!(
        ".hearth-sandbox-init-{}.{}",
        &ID[..16],
        std::process::id()
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&tmp)?;
        f.write_all(BINARY)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_once_and_repairs_a_damaged_copy() {
        let d = tempfile::tempdir().unwrap();
        let p = install(d.path()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), BINARY);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        // A second install leaves it as it is.
        assert_eq!(install(d.path()).unwrap(), p);
        // A truncated copy is replaced.
        std::fs::write(&p, b"\x7fELF").unwrap();
        assert_eq!(install(d.path()).unwrap(), p);
        assert_eq!(std::fs::read(&p).unwrap(), BINARY);
        // Nothing else is left in the directory; another build's launcher
        // and a leftover temporary file are swept, other files are not.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        std::fs::write(
            d.path().join("hearth-sandbox-init-0123456789abcdef"),
            b"old",
        )
        .unwrap();
        std::fs::write(
            d.path().join(".hearth-sandbox-init-0123456789abcdef.7"),
            b"",
        )
        .unwrap();
        std::fs::write(d.path().join("notes.txt"), b"mine").unwrap();
        assert_eq!(install(d.path()).unwrap(), p);
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                p.file_name().unwrap().to_string_lossy().into_owned(),
                "notes.txt".to_owned()
            ]
        );
    }

    #[test]
    fn the_launcher_runs_and_refuses_an_empty_request() {
        // With nothing on its control socket (stdin), the launcher exits 1.
        let d = tempfile::tempdir().unwrap();
        let p = install(d.path()).unwrap();
        let status = std::process::Command::new(&p)
            .stdin(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(1));
    }
}
