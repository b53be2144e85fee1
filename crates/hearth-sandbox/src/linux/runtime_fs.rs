//! Hearth's bootstraps as a **detached tmpfs**, so that `/var/runtime`
//! names nothing of the host.
//!
//! A bind mount's root in `/proc/self/mountinfo` is its path inside the
//! source filesystem: a bind of `<data-dir>/runtime` shows the data
//! directory's host path to every function. Instead the daemon builds, once,
//! a tmpfs with the new mount API (`fsopen`/`fsmount`) that is attached
//! nowhere — it lives only as long as a descriptor or a sandbox's mount of
//! it does, so there is nothing to clean up after a kill -9 — copies the
//! bootstraps into it (keeping their mtimes, which Python's precompiled
//! bytecode is checked against), and passes the descriptor to each
//! launcher, whose pid 1 attaches a clone of it (`open_tree` +
//! `move_mount`) at `/var/runtime`. The sandbox sees `/ /var/runtime … -
//! tmpfs hearth-runtime`. One copy (~100 KB) serves every sandbox.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{Mode, OFlags, Timespec, Timestamps};
use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, open_tree, FsMountFlags,
    FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags,
};

/// The tmpfs's bound: the bootstraps are ~100 KB.
const SIZE: &str = "16m";

/// A detached tmpfs holding a copy of the directory tree `dir`.
pub(crate) fn detached_copy(dir: &Path) -> io::Result<OwnedFd> {
    let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)?;
    fsconfig_set_string(fs.as_fd(), "source", "hearth-runtime")?;
    fsconfig_set_string(fs.as_fd(), "size", SIZE)?;
    fsconfig_set_string(fs.as_fd(), "mode", "555")?;
    fsconfig_create(fs.as_fd())?;
    let mnt = fsmount(
        fs.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )?;
    copy_dir(dir, mnt.as_fd())?;
    Ok(mnt)
}

/// Copies the entries of `src` into the directory `dst` (a descriptor),
/// recursively: regular files and directories, with their modes and
/// modification times. Anything else (a symlink, a socket) is skipped.
fn copy_dir(src: &Path, dst: BorrowedFd<'_>) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let meta = fs::symlink_metadata(entry.path())?;
        let name = entry.file_name();
        let mode = Mode::from_raw_mode(meta.permissions().mode() & 0o7777);
        if meta.is_dir() {
            rustix::fs::mkdirat(dst, &name, Mode::RWXU)?;
            let sub = rustix::fs::openat(
                dst,
                &name,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            copy_dir(&entry.path(), sub.as_fd())?;
            rustix::fs::fchmod(&sub, mode)?;
            set_times(sub.as_fd(), &meta)?;
        } else if meta.is_file() {
            let data = fs::read(entry.path())?;
            let f = rustix::fs::openat(
                dst,
                &name,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::RUSR | Mode::WUSR,
            )?;
            let mut file = fs::File::from(f);
            file.write_all(&data)?;
            rustix::fs::fchmod(&file, mode)?;
            set_times(file.as_fd(), &meta)?;
        }
    }
    Ok(())
}

fn set_times(fd: BorrowedFd<'_>, meta: &fs::Metadata) -> io::Result<()> {
    let ts = |s: i64, ns: i64| Timespec {
        tv_sec: s,
        tv_nsec: ns,
    };
    rustix::fs::futimens(
        fd,
        &Timestamps {
            last_access: ts(meta.atime(), meta.atime_nsec()),
            last_modification: ts(meta.mtime(), meta.mtime_nsec()),
        },
    )?;
    Ok(())
}

/// Attaches a clone of the detached mount `mount` at `target` (in the
/// caller's mount namespace).
pub(crate) fn attach(mount: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let tree = open_tree(
        mount,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )?;
    move_mount(
        tree.as_fd(),
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root only (the mount API needs CAP_SYS_ADMIN): the copy holds the
    /// tree with its modes and mtimes.
    #[test]
    fn copies_the_tree_into_a_detached_tmpfs() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: the mount API needs root");
            return;
        }
        let src = tempfile::tempdir().unwrap();
        fs::create_dir(src.path().join("python")).unwrap();
        fs::write(src.path().join("python/boot.py"), b"print(1)\n").unwrap();
        fs::set_permissions(
            src.path().join("python/boot.py"),
            fs::Permissions::from_mode(0o444),
        )
        .unwrap();
        let mnt = detached_copy(src.path()).unwrap();
        let f = rustix::fs::openat(
            mnt.as_fd(),
            "python/boot.py",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let st = rustix::fs::fstat(&f).unwrap();
        let orig = fs::metadata(src.path().join("python/boot.py")).unwrap();
        assert_eq!(st.st_mode & 0o7777, 0o444);
        assert_eq!(st.st_mtime, orig.mtime());
        assert_eq!(st.st_size, 9);
    }
}
