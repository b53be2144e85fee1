//! The sandbox's root filesystem, built by its pid 1 inside its own mount
//! namespace and then `pivot_root`ed into.
//!
//! ```text
//! /                 tmpfs, read-only once built
//! /usr /lib* /bin /sbin   host directories bound read-only (nosuid, nodev),
//!                   or the same symlinks as on the host (merged /usr)
//! /etc              tmpfs written fresh, read-only: passwd, group, hosts,
//!                   resolv.conf, nsswitch.conf, ld.so.cache/conf, localtime,
//!                   ssl/certs (host, read-only) — nothing else
//! /var/task         the function's code, read-only (nosuid, nodev): a bind
//!                   of `task_root`, or a slave of the host-side task mount
//!                   that receives the code later (see [`TaskSource`])
//! /var/runtime      Hearth's bootstraps, read-only (if any)
//! /opt              empty read-only tmpfs (layers later)
//! /tmp              tmpfs of the sandbox's size, mode 1777, nosuid, nodev
//! /proc             procfs of the sandbox's pid namespace, masked as container
//!                   runtimes mask it: the kernel's symbols, memory and
//!                   debugging files read empty (host /dev/null bound over
//!                   them), `/proc/sys` and the hardware and driver
//!                   directories are empty read-only tmpfs
//! /dev              read-only tmpfs: null zero full random urandom (host
//!                   nodes bound), shm (tmpfs), fd/stdin/stdout/stderr links
//! ```
//!
//! **Propagation.** Every mount of the sandbox is private — nothing it
//! mounts reaches the host, nothing the host mounts reaches it — except,
//! with [`TaskSource::Propagated`], `/var/task`: a receive-only slave of the
//! host-side task directory's own peer group. To get there, the first step
//! makes `/` a recursive slave (not private) so that the copy of the host-side
//! task mount stays attached to its peer group; once the root is built it is
//! made recursively private (cutting off the binds of `/usr` and the rest
//! from the host's groups), and only then is the host-side task mount bound
//! at `/var/task` (a bind of a slave is a slave of the same master).
//!
//! Every operation goes through [`Syscall`]; [`HostSyscall`] is the real one
//! and the tests use a recording double, as youki does.

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

/// The sandbox's user's name in `/etc/passwd` (AWS Lambda's).
pub(crate) const SANDBOX_USER: &str = "sbx_user1051";

/// What a host path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostEntry {
    Dir,
    File,
    Symlink(PathBuf),
    Missing,
}

/// Everything building the root does to the system.
pub(crate) trait Syscall: Debug {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()>;
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
    fn write_file(&self, path: &Path, contents: &[u8], mode: u32) -> io::Result<()>;
    fn copy_file(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes `new_root` the root and detaches the old one.
    fn pivot_root(&self, new_root: &Path) -> io::Result<()>;
    /// The flags of the mount at `path` that a remount must keep (the kernel
    /// locks them on mounts inherited into a user namespace).
    fn mount_flags(&self, path: &Path) -> io::Result<MsFlags>;
    /// Mount points strictly below any of `dirs`.
    fn submounts(&self, dirs: &[PathBuf]) -> io::Result<Vec<PathBuf>>;
    /// Makes the mount at `target` and all below it read-only, nosuid and
    /// nodev in one call; `ENOSYS` where the kernel cannot (before 5.12).
    fn set_ro_recursive(&self, target: &Path) -> io::Result<()>;
    fn host_entry(&self, path: &Path) -> HostEntry;
    /// Regular files directly in a host directory.
    fn list_files(&self, dir: &Path) -> Vec<PathBuf>;
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;
    /// Attaches a clone of the detached mount `mount` (a descriptor this
    /// process holds) at `target`.
    fn attach_mount(&self, mount: std::os::fd::RawFd, target: &Path) -> io::Result<()>;
}

/// Where `/var/task` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TaskSource {
    /// A host directory, bound read-only.
    Bind(PathBuf),
    /// A host-side mount point that is shared in a peer group of its own:
    /// `/var/task` becomes its slave and receives what the daemon mounts
    /// there later.
    Propagated(PathBuf),
}

/// Where `/opt` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OptSource {
    /// Nothing: an empty read-only tmpfs.
    Empty,
    /// A host directory (the function's layers), bound read-only.
    Bind(PathBuf),
    /// A host-side shared mount point, as [`TaskSource::Propagated`].
    Propagated(PathBuf),
}

/// What one sandbox's root is made of.
#[derive(Debug, Clone)]
pub(crate) struct RootSpec {
    /// Host directory to build on (only this mount namespace sees the build).
    pub root: PathBuf,
    pub task: TaskSource,
    pub opt: OptSource,
    pub runtime_dir: Option<PathBuf>,
    /// A detached tmpfs copy of `runtime_dir` to attach instead of binding
    /// it (see `runtime_fs`): its host path then shows nowhere.
    pub runtime_mount: Option<std::os::fd::RawFd>,
    pub tmp_mb: u32,
    pub uid: u32,
    pub gid: u32,
}

pub(crate) fn etc_passwd(uid: u32, gid: u32) -> String {
    format!(
        "root:x:0:0:root:/root:/sbin/nologin\n\
         {SANDBOX_USER}:x:{uid}:{gid}::/tmp:/sbin/nologin\n\
         nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    )
}

pub(crate) fn etc_group(gid: u32) -> String {
    format!("root:x:0:\n{SANDBOX_USER}:x:{gid}:\nnogroup:x:65534:\n")
}

const ETC_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
const ETC_RESOLV: &str = "# no network but loopback in a Hearth sandbox\n";
const ETC_NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n";

/// Host directories bound read-only, or recreated as symlinks.
const SYSTEM_DIRS: [&str; 7] = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// Files of `/proc` that read empty in a sandbox: runc's and Docker's masked
/// paths, the kernel's symbol table and module list, and the rest of what
/// describes the host's kernel rather than the sandbox.
const PROC_MASKED_FILES: [&str; 18] = [
    "kallsyms",
    "kcore",
    "keys",
    "key-users",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "sysrq-trigger",
    "kmsg",
    "modules",
    "kpagecount",
    "kpageflags",
    "kpagecgroup",
    "config.gz",
    "vmallocinfo",
    "iomem",
    "ioports",
];
/// Directories of `/proc` replaced by an empty read-only tmpfs: the host's
/// sysctls (`/proc/sys`: read-only and empty, a function has no business
/// with the host kernel's tunables), hardware, buses, drivers, interrupts,
/// filesystems and pressure stall information.
const PROC_MASKED_DIRS: [&str; 9] = [
    "sys", "acpi", "asound", "scsi", "bus", "fs", "irq", "driver", "pressure",
];
/// Host device nodes bound into `/dev`.
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

/// `MS_*` flags that read-only binds always get.
fn ro_flags() -> MsFlags {
    MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
}

struct Builder<'a> {
    sys: &'a dyn Syscall,
    ro_binds: Vec<PathBuf>,
}

fn ctx<T>(r: io::Result<T>, what: impl FnOnce() -> String) -> Result<T, String> {
    r.map_err(|e| format!("{}: {e}", what()))
}

impl Builder<'_> {
    fn mkdir(&self, p: &Path, mode: u32) -> Result<(), String> {
        ctx(self.sys.mkdir(p, mode), || format!("mkdir {}", p.display()))
    }

    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), String> {
        ctx(self.sys.mount(source, target, fstype, flags, data), || {
            format!(
                "mount {} on {} ({})",
                source
                    .map(|s| s.display().to_string())
                    .unwrap_or_else(|| fstype.unwrap_or("-").to_owned()),
                target.display(),
                data.unwrap_or("")
            )
        })
    }

    fn tmpfs(&self, target: &Path, flags: MsFlags, data: &str) -> Result<(), String> {
        self.mount(
            Some(Path::new("tmpfs")),
            target,
            Some("tmpfs"),
            flags,
            Some(data),
        )
    }

    /// Binds `source` (recursively: a user namespace forbids splitting off
    /// locked submounts) and makes the bind and everything under it
    /// read-only, nosuid, nodev: in one `mount_setattr` where the kernel
    /// has it; else the top is remounted now and what came along under it
    /// once the root is built (`ro_binds`, found in `/proc/self/mountinfo`,
    /// which costs about 0.25 ms to read here).
    fn bind_ro(&mut self, source: &Path, target: &Path) -> Result<(), String> {
        self.mount(
            Some(source),
            target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        match self.sys.set_ro_recursive(target) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL)) => {
                self.remount_ro(target)?;
                self.ro_binds.push(target.to_path_buf());
                Ok(())
            }
            Err(e) => Err(format!("make {} read-only: {e}", target.display())),
        }
    }

    fn remount_ro(&self, target: &Path) -> Result<(), String> {
        let keep = ctx(self.sys.mount_flags(target), || {
            format!("statvfs {}", target.display())
        })?;
        self.mount(None, target, None, ro_flags() | keep, None)
    }

    fn write(&self, p: &Path, contents: &str) -> Result<(), String> {
        ctx(self.sys.write_file(p, contents.as_bytes(), 0o644), || {
            format!("write {}", p.display())
        })
    }

    fn symlink(&self, target: &str, link: &Path) -> Result<(), String> {
        ctx(self.sys.symlink(Path::new(target), link), || {
            format!("symlink {}", link.display())
        })
    }
}

/// Builds the root described by `spec` and pivots into it. The caller is
/// pid 1 of a new pid namespace, in a new mount namespace.
pub(crate) fn build(spec: &RootSpec, sys: &dyn Syscall) -> Result<(), String> {
    let mut b = Builder {
        sys,
        ro_binds: Vec::new(),
    };
    let root = spec.root.as_path();
    // Private, or — to keep the host-side task mount's copy in its peer
    // group — a slave: either way nothing mounted here reaches the host.
    let propagated = matches!(spec.task, TaskSource::Propagated(_))
        || matches!(spec.opt, OptSource::Propagated(_));
    let first = if propagated {
        MsFlags::MS_SLAVE
    } else {
        MsFlags::MS_PRIVATE
    };
    b.mount(None, Path::new("/"), None, MsFlags::MS_REC | first, None)?;
    b.tmpfs(
        root,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "size=1m,nr_inodes=512,mode=755",
    )?;

    for name in SYSTEM_DIRS {
        let host = Path::new("/").join(name);
        let inside = root.join(name);
        match sys.host_entry(&host) {
            HostEntry::Dir => {
                b.mkdir(&inside, 0o755)?;
                b.bind_ro(&host, &inside)?;
            }
            HostEntry::Symlink(target) => {
                ctx(sys.symlink(&target, &inside), || {
                    format!("symlink {}", inside.display())
                })?;
            }
            HostEntry::File | HostEntry::Missing => {}
        }
    }

    build_etc(&mut b, spec)?;

    let var = root.join("var");
    b.mkdir(&var, 0o755)?;
    let task = var.join("task");
    b.mkdir(&task, 0o755)?;
    if let TaskSource::Bind(dir) = &spec.task {
        b.bind_ro(dir, &task)?;
    }
    if let Some(rt) = &spec.runtime_dir {
        let inside = var.join("runtime");
        b.mkdir(&inside, 0o755)?;
        match spec.runtime_mount.map(|fd| sys.attach_mount(fd, &inside)) {
            Some(Ok(())) => b.remount_ro(&inside)?,
            // No copy, or one this namespace refuses (a user namespace may
            // not take a mount made outside it): bind the directory.
            Some(Err(_)) | None => b.bind_ro(rt, &inside)?,
        }
    }

    let opt = root.join("opt");
    b.mkdir(&opt, 0o755)?;
    match &spec.opt {
        OptSource::Empty => b.tmpfs(
            &opt,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "size=4k,nr_inodes=16,mode=755",
        )?,
        OptSource::Bind(dir) => b.bind_ro(dir, &opt)?,
        OptSource::Propagated(_) => {}
    }

    let tmp = root.join("tmp");
    b.mkdir(&tmp, 0o1777)?;
    b.tmpfs(
        &tmp,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        &format!("size={}m,mode=1777", spec.tmp_mb.max(1)),
    )?;

    let proc_dir = root.join("proc");
    b.mkdir(&proc_dir, 0o555)?;
    b.mount(
        Some(Path::new("proc")),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;

    mask_proc(&b, &proc_dir)?;
    build_dev(&mut b, root)?;

    // Whatever was under a read-only bind came along with MS_REC, writable:
    // make it read-only too (where `bind_ro` could not at once).
    if !b.ro_binds.is_empty() {
        let subs = ctx(sys.submounts(&b.ro_binds), || {
            "read /proc/self/mountinfo".to_owned()
        })?;
        for m in subs {
            b.remount_ro(&m)?;
        }
    }

    if propagated {
        // The binds above are slaves of the host's mounts (copies of `/`
        // made slave): cut them off, so that the host's later mounts under
        // /usr and the rest never show up here. Then bind the host-side task
        // (and opt) mounts, whose copies here are slaves of their own peer
        // groups; each bind is a slave of the same group, the only ones in
        // this root.
        b.mount(
            None,
            root,
            None,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None,
        )?;
        if let TaskSource::Propagated(host) = &spec.task {
            b.mount(Some(host), &task, None, MsFlags::MS_BIND, None)?;
            b.remount_ro(&task)?;
        }
        if let OptSource::Propagated(host) = &spec.opt {
            b.mount(Some(host), &opt, None, MsFlags::MS_BIND, None)?;
            b.remount_ro(&opt)?;
        }
    }

    ctx(sys.pivot_root(root), || {
        format!("pivot_root into {}", root.display())
    })?;
    b.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None,
    )?;
    Ok(())
}

fn build_etc(b: &mut Builder<'_>, spec: &RootSpec) -> Result<(), String> {
    let sys = b.sys;
    let etc = spec.root.join("etc");
    b.mkdir(&etc, 0o755)?;
    b.tmpfs(
        &etc,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        "size=1m,nr_inodes=256,mode=755",
    )?;
    b.write(&etc.join("passwd"), &etc_passwd(spec.uid, spec.gid))?;
    b.write(&etc.join("group"), &etc_group(spec.gid))?;
    b.write(&etc.join("hosts"), ETC_HOSTS)?;
    b.write(&etc.join("resolv.conf"), ETC_RESOLV)?;
    b.write(&etc.join("nsswitch.conf"), ETC_NSSWITCH)?;
    // The dynamic loader reads ld.so.cache; ldconfig's configuration comes along.
    for f in ["ld.so.cache", "ld.so.conf"] {
        let host = Path::new("/etc").join(f);
        if sys.host_entry(&host) == HostEntry::File {
            ctx(sys.copy_file(&host, &etc.join(f)), || {
                format!("copy {}", host.display())
            })?;
        }
    }
    let confd = Path::new("/etc/ld.so.conf.d");
    if sys.host_entry(confd) == HostEntry::Dir {
        let inside = etc.join("ld.so.conf.d");
        b.mkdir(&inside, 0o755)?;
        for f in sys.list_files(confd) {
            if let Some(name) = f.file_name() {
                ctx(sys.copy_file(&f, &inside.join(name)), || {
                    format!("copy {}", f.display())
                })?;
            }
        }
    }
    b.symlink("/usr/share/zoneinfo/Etc/UTC", &etc.join("localtime"))?;
    // CA certificates for TLS clients (the host's, read-only; Debian's
    // entries are symlinks into /usr/share/ca-certificates, which is bound).
    let certs = Path::new("/etc/ssl/certs");
    if matches!(
        sys.host_entry(certs),
        HostEntry::Dir | HostEntry::Symlink(_)
    ) {
        if let Ok(real) = sys.canonicalize(certs) {
            if sys.host_entry(&real) == HostEntry::Dir {
                b.mkdir(&etc.join("ssl"), 0o755)?;
                let inside = etc.join("ssl/certs");
                b.mkdir(&inside, 0o755)?;
                b.bind_ro(&real, &inside)?;
            }
        }
    }
    b.mount(
        None,
        &etc,
        None,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None,
    )
}

/// Masks what `/proc` shows of the host (see [`PROC_MASKED_FILES`] and
/// [`PROC_MASKED_DIRS`]); entries this kernel does not have are skipped.
/// A masked file is the host's `/dev/null`, as runc masks it: it reads
/// empty, and what is written to it goes nowhere.
fn mask_proc(b: &Builder<'_>, proc_dir: &Path) -> Result<(), String> {
    for f in PROC_MASKED_FILES {
        let target = proc_dir.join(f);
        if b.sys.host_entry(&target) == HostEntry::Missing {
            continue;
        }
        b.mount(
            Some(Path::new("/dev/null")),
            &target,
            None,
            MsFlags::MS_BIND,
            None,
        )?;
    }
    for d in PROC_MASKED_DIRS {
        let target = proc_dir.join(d);
        if b.sys.host_entry(&target) == HostEntry::Missing {
            continue;
        }
        b.tmpfs(
            &target,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            "size=4k,nr_inodes=1,mode=555",
        )?;
    }
    Ok(())
}

fn build_dev(b: &mut Builder<'_>, root: &Path) -> Result<(), String> {
    let sys = b.sys;
    let dev = root.join("dev");
    b.mkdir(&dev, 0o755)?;
    b.tmpfs(
        &dev,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        "size=64k,nr_inodes=64,mode=755",
    )?;
    for d in DEVICES {
        let inside = dev.join(d);
        let host = Path::new("/dev").join(d);
        ctx(sys.write_file(&inside, b"", 0o666), || {
            format!("create {}", inside.display())
        })?;
        // A bind keeps the host node's mount (devices allowed) whatever /dev's flags.
        b.mount(Some(&host), &inside, None, MsFlags::MS_BIND, None)?;
    }
    let shm = dev.join("shm");
    b.mkdir(&shm, 0o1777)?;
    b.tmpfs(
        &shm,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        "size=64m,mode=1777",
    )?;
    b.symlink("/proc/self/fd", &dev.join("fd"))?;
    b.symlink("/proc/self/fd/0", &dev.join("stdin"))?;
    b.symlink("/proc/self/fd/1", &dev.join("stdout"))?;
    b.symlink("/proc/self/fd/2", &dev.join("stderr"))?;
    b.mount(
        None,
        &dev,
        None,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None,
    )
}

/// The real system calls.
#[derive(Debug, Default)]
pub(crate) struct HostSyscall;

impl Syscall for HostSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data).map_err(io::Error::from)
    }

    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new().mode(mode).create(path)?;
        // The umask may have removed bits (sticky /tmp needs all of them).
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn write_file(&self, path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?;
        f.write_all(contents)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
    }

    fn copy_file(&self, from: &Path, to: &Path) -> io::Result<()> {
        let data = std::fs::read(from)?;
        self.write_file(to, &data, 0o644)
    }

    fn pivot_root(&self, new_root: &Path) -> io::Result<()> {
        // pivot_root(".", ".") stacks the old root on top of the new one,
        // then detaching "." removes it: no directory for the old root needed.
        nix::unistd::chdir(new_root)?;
        nix::unistd::pivot_root(".", ".")?;
        nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH)?;
        nix::unistd::chdir("/")?;
        Ok(())
    }

    fn mount_flags(&self, path: &Path) -> io::Result<MsFlags> {
        use nix::sys::statvfs::{statvfs, FsFlags};
        let f = statvfs(path)?.flags();
        let mut m = MsFlags::empty();
        for (st, ms) in [
            (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(st) {
                m |= ms;
            }
        }
        Ok(m)
    }

    fn set_ro_recursive(&self, target: &Path) -> io::Result<()> {
        super::sys::set_ro_recursive(target)
    }

    fn submounts(&self, dirs: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")?;
        Ok(super::cgroup::parse_mountinfo(&text)
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| dirs.iter().any(|d| p != d && p.starts_with(d)))
            .collect())
    }

    fn host_entry(&self, path: &Path) -> HostEntry {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(path) {
                Ok(t) => HostEntry::Symlink(t),
                Err(_) => HostEntry::Missing,
            },
            Ok(m) if m.is_dir() => HostEntry::Dir,
            Ok(m) if m.is_file() => HostEntry::File,
            _ => HostEntry::Missing,
        }
    }

    fn list_files(&self, dir: &Path) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut v: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .collect();
        v.sort();
        v
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }

    fn attach_mount(&self, mount: std::os::fd::RawFd, target: &Path) -> io::Result<()> {
        super::sys::attach_detached_mount(mount, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Records every call; answers host questions from a table.
    #[derive(Debug, Default)]
    struct Recorder {
        calls: parking_lot::Mutex<Vec<String>>,
        host: HashMap<PathBuf, HostEntry>,
        /// No `mount_setattr` (before Linux 5.12).
        old_kernel: bool,
    }

    impl Recorder {
        fn debian12() -> Recorder {
            let mut host = HashMap::new();
            host.insert("/usr".into(), HostEntry::Dir);
            for (l, t) in [
                ("bin", "usr/bin"),
                ("sbin", "usr/sbin"),
                ("lib", "usr/lib"),
                ("lib64", "usr/lib64"),
            ] {
                host.insert(Path::new("/").join(l), HostEntry::Symlink(t.into()));
            }
            host.insert("/etc/ld.so.cache".into(), HostEntry::File);
            host.insert("/etc/ld.so.conf".into(), HostEntry::File);
            host.insert("/etc/ssl/certs".into(), HostEntry::Dir);
            Recorder {
                calls: Default::default(),
                host,
                old_kernel: false,
            }
        }
        fn log(&self, s: String) {
            self.calls.lock().push(s);
        }
        fn calls(&self) -> Vec<String> {
            self.calls.lock().clone()
        }
    }

    impl Syscall for Recorder {
        fn mount(
            &self,
            source: Option<&Path>,
            target: &Path,
            fstype: Option<&str>,
            flags: MsFlags,
            data: Option<&str>,
        ) -> io::Result<()> {
            let mut names: Vec<&str> = flags.iter_names().map(|(n, _)| n).collect();
            names.sort_unstable();
            self.log(format!(
                "mount {} {} {} [{}] {}",
                source
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "-".into()),
                target.display(),
                fstype.unwrap_or("-"),
                names.join(","),
                data.unwrap_or("")
            ));
            Ok(())
        }
        fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
            self.log(format!("mkdir {} {mode:o}", path.display()));
            Ok(())
        }
        fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
            self.log(format!(
                "symlink {} -> {}",
                link.display(),
                target.display()
            ));
            Ok(())
        }
        fn write_file(&self, path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
            self.log(format!(
                "write {} {mode:o} {}",
                path.display(),
                String::from_utf8_lossy(contents)
            ));
            Ok(())
        }
        fn copy_file(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.log(format!("copy {} {}", from.display(), to.display()));
            Ok(())
        }
        fn pivot_root(&self, new_root: &Path) -> io::Result<()> {
            self.log(format!("pivot_root {}", new_root.display()));
            Ok(())
        }
        fn mount_flags(&self, _: &Path) -> io::Result<MsFlags> {
            Ok(MsFlags::MS_RELATIME)
        }
        fn submounts(&self, _: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
            Ok(vec!["/r/usr/share/sub".into()])
        }
        fn set_ro_recursive(&self, target: &Path) -> io::Result<()> {
            if self.old_kernel {
                return Err(io::Error::from_raw_os_error(libc::ENOSYS));
            }
            self.log(format!("ro-recursive {}", target.display()));
            Ok(())
        }
        fn host_entry(&self, path: &Path) -> HostEntry {
            self.host.get(path).cloned().unwrap_or(HostEntry::Missing)
        }
        fn list_files(&self, _: &Path) -> Vec<PathBuf> {
            Vec::new()
        }
        fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
            Ok(path.to_path_buf())
        }
        fn attach_mount(&self, mount: std::os::fd::RawFd, target: &Path) -> io::Result<()> {
            if mount < 0 {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            self.log(format!("attach {mount} {}", target.display()));
            Ok(())
        }
    }

    fn spec() -> RootSpec {
        RootSpec {
            root: "/r".into(),
            task: TaskSource::Bind("/data/code/abc".into()),
            opt: OptSource::Empty,
            runtime_dir: Some("/data/runtime".into()),
            runtime_mount: None,
            tmp_mb: 512,
            uid: 200_007,
            gid: 200_007,
        }
    }

    #[test]
    fn the_runtime_tmpfs_is_attached_instead_of_bound() {
        let r = Recorder::debian12();
        let with_copy = RootSpec {
            runtime_mount: Some(7),
            ..spec()
        };
        build(&with_copy, &r).unwrap();
        let calls = r.calls();
        assert!(
            calls.contains(&"attach 7 /r/var/runtime".to_owned()),
            "{calls:#?}"
        );
        assert!(
            !calls.iter().any(|c| c.starts_with("mount /data/runtime ")),
            "the runtime directory was bound too: {calls:#?}"
        );
        // A namespace that refuses the attach gets the bind.
        let r = Recorder::debian12();
        let refused = RootSpec {
            runtime_mount: Some(-1),
            ..spec()
        };
        build(&refused, &r).unwrap();
        assert!(r
            .calls()
            .iter()
            .any(|c| c.starts_with("mount /data/runtime /r/var/runtime ")));
    }

    #[test]
    fn merged_usr_host_gets_one_bind_and_symlinks() {
        let r = Recorder::debian12();
        build(&spec(), &r).unwrap();
        let calls = r.calls();
        let binds: Vec<&String> = calls
            .iter()
            .filter(|c| c.starts_with("mount /") && c.contains("[MS_BIND,MS_REC]"))
            .collect();
        let sources: Vec<&str> = binds.iter().map(|c| c.split(' ').nth(1).unwrap()).collect();
        assert_eq!(
            sources,
            ["/usr", "/etc/ssl/certs", "/data/code/abc", "/data/runtime"]
        );
        for l in [
            "bin -> usr/bin",
            "sbin -> usr/sbin",
            "lib -> usr/lib",
            "lib64 -> usr/lib64",
        ] {
            assert!(
                calls.contains(&format!("symlink /r/{l}")),
                "{l} missing: {calls:#?}"
            );
        }
        // Every read-only bind is made read-only with what is under it, in
        // one call right after the bind; mountinfo is never read.
        for b in &binds {
            let target = b.split(' ').nth(2).unwrap();
            let at = calls.iter().position(|c| c == *b).unwrap();
            assert_eq!(
                calls[at + 1],
                format!("ro-recursive {target}"),
                "{calls:#?}"
            );
        }
        assert!(
            !calls.iter().any(|c| c.contains("/r/usr/share/sub")),
            "{calls:#?}"
        );
    }

    /// Before Linux 5.12: each bind is remounted read-only, keeping the
    /// locked flags, and so is every submount found under them.
    #[test]
    fn without_mount_setattr_binds_and_their_submounts_are_remounted() {
        let r = Recorder {
            old_kernel: true,
            ..Recorder::debian12()
        };
        build(&spec(), &r).unwrap();
        let calls = r.calls();
        let remounts: Vec<&str> = calls
            .iter()
            .filter(|c| c.contains("[MS_BIND,MS_NODEV,MS_NOSUID,MS_RDONLY,MS_RELATIME,MS_REMOUNT]"))
            .map(|c| c.split(' ').nth(2).unwrap())
            .collect();
        assert_eq!(
            remounts,
            [
                "/r/usr",
                "/r/etc/ssl/certs",
                "/r/var/task",
                "/r/var/runtime",
                "/r/usr/share/sub"
            ],
            "{calls:#?}"
        );
    }

    #[test]
    fn etc_is_curated_and_nothing_of_the_host_etc_is_bound() {
        let r = Recorder::debian12();
        build(&spec(), &r).unwrap();
        let calls = r.calls();
        let written: Vec<&str> = calls
            .iter()
            .filter_map(|c| c.strip_prefix("write /r/etc/"))
            .map(|c| c.split(' ').next().unwrap())
            .collect();
        assert_eq!(
            written,
            ["passwd", "group", "hosts", "resolv.conf", "nsswitch.conf"]
        );
        assert!(calls.contains(&"copy /etc/ld.so.cache /r/etc/ld.so.cache".to_owned()));
        assert!(!calls
            .iter()
            .any(|c| c.contains("shadow") && !c.contains("shadow: files")));
        assert!(!calls.iter().any(|c| c.starts_with("mount /etc ")));
        // /etc ends read-only.
        assert!(
            calls.contains(
                &"mount - /r/etc - [MS_NODEV,MS_NOEXEC,MS_NOSUID,MS_RDONLY,MS_REMOUNT] ".to_owned()
            ),
            "{calls:#?}"
        );
        assert!(calls.iter().any(|c| c.contains("passwd 644 root:x:0:0")
            && c.contains("sbx_user1051:x:200007:200007::/tmp:/sbin/nologin")));
    }

    #[test]
    fn tmp_proc_dev_and_pivot() {
        let r = Recorder::debian12();
        build(&spec(), &r).unwrap();
        let calls = r.calls();
        assert!(
            calls.contains(
                &"mount tmpfs /r/tmp tmpfs [MS_NODEV,MS_NOSUID] size=512m,mode=1777".to_owned()
            ),
            "{calls:#?}"
        );
        assert!(
            calls.contains(&"mount proc /r/proc proc [MS_NODEV,MS_NOEXEC,MS_NOSUID] ".to_owned())
        );
        assert!(calls.contains(&"mount tmpfs /r/opt tmpfs [MS_NODEV,MS_NOSUID,MS_RDONLY] size=4k,nr_inodes=16,mode=755".to_owned()));
        for d in DEVICES {
            assert!(calls.contains(&format!("mount /dev/{d} /r/dev/{d} - [MS_BIND] ")));
        }
        assert!(!calls
            .iter()
            .any(|c| c.contains("/dev/tty") || c.contains("/dev/pts")));
        let pivot = calls.iter().position(|c| c == "pivot_root /r").unwrap();
        // Everything is mounted before the pivot; the last step makes / read-only.
        assert_eq!(pivot, calls.len() - 2);
        assert_eq!(
            calls[calls.len() - 1],
            "mount - / - [MS_NODEV,MS_NOSUID,MS_RDONLY,MS_REMOUNT] "
        );
        // The first step makes every mount private.
        assert_eq!(calls[0], "mount - / - [MS_PRIVATE,MS_REC] ");
    }

    #[test]
    fn a_propagated_task_is_the_only_slave_in_a_private_root() {
        let r = Recorder::debian12();
        let mut sp = spec();
        sp.task = TaskSource::Propagated("/state/sb1/task".into());
        build(&sp, &r).unwrap();
        let calls = r.calls();
        // `/` becomes a recursive slave, not private: the host-side task
        // mount's copy must stay in its peer group.
        assert_eq!(calls[0], "mount - / - [MS_REC,MS_SLAVE] ");
        let private = calls
            .iter()
            .position(|c| c == "mount - /r - [MS_PRIVATE,MS_REC] ")
            .expect("the built root is made private");
        let bind = calls
            .iter()
            .position(|c| c == "mount /state/sb1/task /r/var/task - [MS_BIND] ")
            .expect("the host-side task mount is bound, not recursively");
        let ro = calls
            .iter()
            .position(|c| {
                c == "mount - /r/var/task - [MS_BIND,MS_NODEV,MS_NOSUID,MS_RDONLY,MS_RELATIME,MS_REMOUNT] "
            })
            .expect("and made read-only");
        let pivot = calls.iter().position(|c| c == "pivot_root /r").unwrap();
        // Every other mount is made before the root goes private; the task
        // bind comes after it, so it alone stays a slave.
        let last_other = calls[..private]
            .iter()
            .rposition(|c| c.starts_with("mount "))
            .unwrap();
        assert!(last_other < private && private < bind && bind < ro && ro < pivot);
        assert_eq!(pivot, ro + 1, "{calls:#?}");
        assert!(!calls.iter().any(|c| c.contains("/data/code")));
    }

    #[test]
    fn curated_passwd_and_group() {
        let p = etc_passwd(200_001, 200_001);
        assert_eq!(p.lines().count(), 3);
        assert!(p.contains("sbx_user1051:x:200001:200001::/tmp:/sbin/nologin\n"));
        assert!(etc_group(200_001).contains("sbx_user1051:x:200001:"));
    }
}
