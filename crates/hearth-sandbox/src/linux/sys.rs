//! The few system calls the sandbox needs that have no safe wrapper: each is
//! wrapped here once, with its safety argument, so the rest of the backend is
//! safe code.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Proof that the process has exactly one thread, which makes `fork` safe:
/// nothing another thread held (a lock, half-written allocator state) can be
/// copied into the child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SingleThreaded(());

impl SingleThreaded {
    /// Checks `/proc/self/stat` (field 20, `num_threads`).
    pub(crate) fn check() -> Option<SingleThreaded> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) may contain spaces; count after its ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let threads: u64 = rest.split(' ').nth(17)?.parse().ok()?;
        (threads == 1).then_some(SingleThreaded(()))
    }
}

/// What `fork` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forked {
    Parent(i32),
    Child,
}

/// `fork()`, for a process proven single-threaded.
pub(crate) fn fork(_proof: SingleThreaded) -> io::Result<Forked> {
    // SAFETY: the process has one thread (the proof), so the child gets a
    // consistent copy of all memory and may run arbitrary code.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child.as_raw())),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the one clock the daemon and its
/// launcher (separate processes) can compare stage times on (`Instant`
/// reads it too, but cannot be sent between processes).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// `CLONE_INTO_CGROUP` (Linux 5.7); `libc`'s constant overflows its type.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `fork()` whose child starts in the v2 cgroup `cgroup` (an open
/// directory), by `clone3(CLONE_INTO_CGROUP)`. Unlike writing a pid to
/// `cgroup.procs`, this takes the cgroup lock only for reading, so no RCU
/// grace period is waited for. `Err` with `ENOSYS`, `E2BIG` or `EINVAL`
/// means the kernel cannot do it (older than 5.7).
pub(crate) fn fork_into_cgroup(
    _proof: SingleThreaded,
    cgroup: BorrowedFd<'_>,
) -> io::Result<Forked> {
    // SAFETY: all-zero is a valid `clone_args` (plain integers).
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = CLONE_INTO_CGROUP;
    args.exit_signal = libc::SIGCHLD as u64;
    args.cgroup = cgroup.as_raw_fd() as u64;
    // SAFETY: a fork (no CLONE_VM, no stack given: the child continues on a
    // copy of this stack) of a process proven single-threaded, so the
    // child's memory is a consistent copy, as with `fork`. glibc's wrapper
    // is bypassed (it has none for clone3), so the child's cached thread
    // id in its TCB is the parent's: the child must not rely on
    // `raise`/`pthread_kill` (the launcher never does; `getpid` is not
    // cached, and a later glibc `fork` in the child sets its own child's
    // id correctly).
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of!(args),
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match r {
        r if r < 0 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => {
            Ok(Forked::Parent(i32::try_from(pid).map_err(|_| {
                io::Error::from(io::ErrorKind::InvalidData)
            })?))
        }
    }
}

/// Takes ownership of a descriptor just received with `SCM_RIGHTS`.
pub(crate) fn own_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the kernel installed this descriptor in our table for this
    // message; nothing else refers to it, so we are its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `pidfd_open(pid, 0)`: a descriptor that names this process for as long as
/// it is held, immune to pid reuse.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(r).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: a successful pidfd_open returns a new descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: valid descriptor, null siginfo is allowed, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `kill(pid, SIGKILL)`; errors (the process is already gone) are ignored.
pub(crate) fn kill_pid(pid: i32) {
    if pid > 0 {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Clears close-on-exec on `fd`, so the program exec'd next inherits it.
pub(crate) fn inherit_on_exec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD only changes the descriptor's flags (an invalid `fd`
    // is EBADF); no memory involved.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Marks every descriptor from `from` up close-on-exec, so nothing the
/// daemon leaked to the launcher reaches the sandbox.
pub(crate) fn cloexec_from(from: u32) -> io::Result<()> {
    // SAFETY: close_range only changes descriptor flags; no memory involved.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            from,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // Kernels before 5.11: walk /proc/self/fd.
    let mut fds = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd")? {
        if let Some(fd) = e?
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<RawFd>().ok())
        {
            if fd >= from as RawFd {
                fds.push(fd);
            }
        }
    }
    for fd in fds {
        // SAFETY: F_SETFD on a descriptor number only changes its flags; a
        // number that was the directory iterator's (now closed) fails harmlessly.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Brings the loopback interface of the current network namespace up.
pub(crate) fn loopback_up() -> io::Result<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into the ifreq we own and pass by pointer.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// Drops every capability from the bounding set and clears the ambient set,
/// so nothing exec'd later can regain one.
pub(crate) fn drop_bounding_and_ambient() -> io::Result<()> {
    for cap in 0..=last_cap() {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r != 0 {
            let e = io::Error::last_os_error();
            // EINVAL: the kernel does not know this capability.
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
    }
    // SAFETY: prctl with integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e);
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Empties the effective, permitted and inheritable sets of the calling thread.
pub(crate) fn clear_capabilities() -> io::Result<()> {
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset reads one header and two data structs (version 3), both
    // valid for the duration of the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Resets every signal to its default action and unblocks all of them, as a
/// freshly exec'd program expects (Rust's runtime ignores SIGPIPE, and ignored
/// signals survive exec).
pub(crate) fn reset_signals() {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL has no handler to be unsafe about.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Terminates the calling process with `sig`, as if it had been killed by
/// it; returns only when the signal does not kill (then the caller exits).
pub(crate) fn die_by_signal(sig: i32) {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
    // SAFETY: installing SIG_DFL has no handler to be unsafe about.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SAFETY: raise with an integer signal number.
    unsafe { libc::raise(sig) };
}

/// `struct mount_attr` of `mount_setattr(2)` (version 0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 0x1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
/// `MS_PRIVATE`, as `mount_attr.propagation` takes it.
const MS_PRIVATE: u64 = 1 << 18;

fn path_cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Makes the mount at `target` and every mount below it read-only, nosuid
/// and nodev in one call (`mount_setattr` with `AT_RECURSIVE`; other flags
/// are kept). Linux 5.12 or later: `ENOSYS` before.
pub(crate) fn set_ro_recursive(target: &Path) -> io::Result<()> {
    let dst = path_cstring(target)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads a NUL-terminated path and one mount_attr of
    // the size passed, both valid for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            dst.as_ptr(),
            libc::AT_RECURSIVE | libc::AT_SYMLINK_NOFOLLOW,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mounts a read-only, nosuid, nodev, private bind of `source` (not its
/// submounts) on `target`. The bind gets its flags while still detached
/// (`open_tree` + `mount_setattr`, then `move_mount`), so the copies that
/// mount propagation makes of it are read-only from their first moment: a
/// classic bind followed by a read-only remount would propagate a writable
/// copy, since a remount is not propagated. Linux 5.12 or later.
pub(crate) fn bind_ro_detached(source: &Path, target: &Path) -> io::Result<()> {
    let src = path_cstring(source)?;
    let dst = path_cstring(target)?;
    let empty = c"";
    // SAFETY: open_tree reads a NUL-terminated path that outlives the call;
    // the other arguments are integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(r).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: a successful open_tree returns a new descriptor that we own
    // (closing it while detached frees the clone).
    let tree = unsafe { OwnedFd::from_raw_fd(fd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        // Out of the source mount's peer group: attached on a shared mount,
        // the bind then gets a group of its own.
        propagation: MS_PRIVATE,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads an empty NUL-terminated path and one
    // mount_attr of the size passed, both valid for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: move_mount reads two NUL-terminated paths valid for the call;
    // the descriptors are integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `_exit(code)`: ends a forked child without running the parent's exit
/// handlers or flushing buffers it copied.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes an integer and never returns.
    unsafe { libc::_exit(code) }
}

/// `strerror` text of an errno value, for messages.
pub(crate) fn errno_text(errno: i32) -> String {
    // SAFETY: strerror returns a pointer to a static (or thread-local)
    // NUL-terminated string, read immediately.
    let p = unsafe { libc::strerror(errno) };
    if p.is_null() {
        return format!("errno {errno}");
    }
    // SAFETY: non-null, NUL-terminated, valid until the next strerror call.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    format!("{s} (errno {errno})")
}

/// Attaches a clone of the detached mount held by descriptor `raw` at
/// `target` (see `runtime_fs`).
pub(crate) fn attach_detached_mount(raw: RawFd, target: &Path) -> io::Result<()> {
    // SAFETY: `raw` is the descriptor the launcher received with its launch
    // request and keeps open for its whole life (it is never closed), so it
    // is valid for this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    super::runtime_fs::attach(fd, target)
}

/// Gives the allocator's free memory back to the kernel (`malloc_trim(0)`:
/// the heap's top and, in glibc, every free page inside it). The launcher
/// and pid 1 call it once their set-up is done: what they allocated while
/// building the sandbox (the seccomp policy, mount tables) would otherwise
/// stay resident for the sandbox's whole life.
pub(crate) fn release_free_heap() {
    // SAFETY: malloc_trim only returns free pages of the process's own
    // allocator to the kernel; it reads and writes no memory the program
    // uses and is thread-safe in glibc.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_thread_check_reads_proc() {
        // The test harness runs tests on threads: never single-threaded here,
        // but the parse must succeed (None because of the count, not a parse error).
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let n: u64 = rest.split(' ').nth(17).unwrap().parse().unwrap();
        assert_eq!(SingleThreaded::check().is_some(), n == 1);
    }

    #[test]
    fn errno_text_names_the_error() {
        assert!(errno_text(libc::EPERM).contains("errno 1"));
    }
}
