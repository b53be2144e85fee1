//! The typed channel between the daemon and the launcher: one `SOCK_SEQPACKET`
//! socketpair (the launcher's end is its stdin), one JSON message per packet,
//! and the Runtime API listener passed along with `SCM_RIGHTS`.
//!
//! daemon → launcher: one [`Request`]. launcher → daemon: [`Report`]s — the
//! listener, then `Ready` once the runtime has been exec'd, or `Error` with
//! the reason setup stopped.
//!
//! A shell-warm sandbox (empty `argv`) reports `Waiting` instead of `Ready`:
//! its pid 1 (which inherited the launcher's end of the socketpair) then
//! reads one more [`Request::Exec`] and answers `Ready` or `Error` for it.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use super::seccomp::WireInstruction;
use super::sys;
use crate::SandboxSpec;

/// Largest message either side accepts.
const MAX_MESSAGE: usize = 256 * 1024;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum Request {
    Launch(Box<LaunchRequest>),
    Probe(ProbeRequest),
    /// To a shell-warm sandbox's pid 1: the program to start.
    Exec(ExecRequest),
}

/// The program of a shell-warm sandbox, as `SandboxSpec` would have named it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ExecRequest {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
}

/// How the sandbox's user namespace maps ids, when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct IdMapping {
    /// The host uid/gid that the sandbox uid/gid stand for.
    pub outside_uid: u32,
    pub outside_gid: u32,
    /// The launcher is privileged (root): a helper in the parent namespace
    /// writes the maps and `setgroups` stays allowed. Otherwise the launcher
    /// maps its own ids (the only mapping the kernel lets it write) and
    /// `setgroups` is denied.
    pub privileged: bool,
}

/// Where a sandbox's processes go, by hierarchy version: joining a cgroup
/// costs very different amounts on the two (see the launcher's `outer`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct CgroupJoin {
    /// v1 cgroup directories (one per mounted controller hierarchy).
    pub v1: Vec<PathBuf>,
    /// The v2 (unified) cgroup directory, if the sandbox has one.
    pub v2: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct LaunchRequest {
    pub spec: SandboxSpec,
    /// The sandbox's uid and gid (inside its user namespace, if any).
    pub uid: u32,
    pub gid: u32,
    /// The sandbox's cgroups, which the launcher joins before anything else.
    pub cgroups: CgroupJoin,
    /// Host directory the new root is mounted on (private to the sandbox's
    /// mount namespace).
    pub root_dir: PathBuf,
    /// With `spec.task_root` `None`: the host-side directory, a shared mount
    /// in its own peer group, whose slave becomes `/var/task`.
    pub task_mount: Option<PathBuf>,
    /// Likewise for `/opt` (the function's layers).
    #[serde(default)]
    pub opt_mount: Option<PathBuf>,
    pub user_namespace: Option<IdMapping>,
    pub seccomp: Vec<Vec<WireInstruction>>,
    /// `RLIMIT_NPROC`, when the sandbox's uid is its own on the host.
    pub nproc_limit: Option<u64>,
    /// The launcher enters a network namespace the daemon made ahead
    /// (`lo` up, the Runtime API listening in it), which travels as the
    /// last descriptor with this request, instead of making its own.
    #[serde(default)]
    pub pooled_netns: bool,
    /// That namespace, as received (not sent as data).
    #[serde(skip)]
    pub netns: Option<OwnedFd>,
    /// With `spec.runtime_channel`: the program's end of its Unix socket to
    /// the Runtime API, as received (it travels before the namespace).
    #[serde(skip)]
    pub channel: Option<OwnedFd>,
    /// The descriptor of the detached tmpfs holding the runtime directory's
    /// copy, as the launcher received it with this request (not sent as
    /// data: it travels as SCM_RIGHTS).
    #[serde(skip)]
    pub runtime_mount: Option<std::os::fd::RawFd>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct ProbeRequest {
    pub user_namespace: Option<IdMapping>,
    /// The ids to map, as a sandbox would.
    pub uid: u32,
    pub gid: u32,
    /// An empty directory the probe may mount on inside its own mount namespace.
    pub scratch_dir: PathBuf,
    pub seccomp: Vec<Vec<WireInstruction>>,
}

/// What the probe could do on this host.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ProbeReport {
    pub namespaces: Result<(), String>,
    pub loopback: Result<(), String>,
    pub procfs: Result<(), String>,
    pub seccomp: Result<(), String>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum Report {
    /// Carries the Runtime API listening socket.
    Listener,
    /// The runtime has been exec'd. `stages`: when each of the launcher's
    /// stages ended ([`crate::linux::sys::monotonic_ns`]), in order.
    Ready {
        #[serde(default)]
        stages: Vec<(String, u64)>,
    },
    /// A shell-warm sandbox is built; its pid 1 waits for [`Request::Exec`].
    Waiting,
    Error {
        message: String,
    },
    Probe(ProbeReport),
}

/// Sends one message, with `fd` attached if given.
pub(crate) fn send<T: serde::Serialize>(
    sock: BorrowedFd<'_>,
    msg: &T,
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    send_all(sock, msg, fd.as_slice())
}

/// Sends one message with every descriptor in `fds` attached, in order.
pub(crate) fn send_all<T: serde::Serialize>(
    sock: BorrowedFd<'_>,
    msg: &T,
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if bytes.len() > MAX_MESSAGE {
        return Err(io::Error::other("message too large"));
    }
    send_fds(sock, &bytes, fds)
}

fn send_fds(sock: BorrowedFd<'_>, bytes: &[u8], fd: &[BorrowedFd<'_>]) -> io::Result<()> {
    let iov = [IoSlice::new(bytes)];
    let fds: Vec<RawFd> = fd.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs: Vec<ControlMessage<'_>> = if fds.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&fds)]
    };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one message (and a descriptor, if one came with it). `Ok(None)`
/// means the other side closed; a `deadline` that passes is `TimedOut`.
pub(crate) fn recv<T: serde::de::DeserializeOwned>(
    sock: BorrowedFd<'_>,
    deadline: Option<Instant>,
) -> io::Result<Option<(T, Option<OwnedFd>)>> {
    Ok(recv_all(sock, deadline)?.map(|(m, fds)| (m, fds.into_iter().next())))
}

/// [`recv`], with every descriptor that came with the message, in order
/// (at most three: a launch carries the runtime directory's mount, the
/// Runtime API channel and a pooled network namespace).
pub(crate) fn recv_all<T: serde::de::DeserializeOwned>(
    sock: BorrowedFd<'_>,
    deadline: Option<Instant>,
) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    if let Some(deadline) = deadline {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
            }
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(sock, PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => continue,
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut cmsg = nix::cmsg_space!([RawFd; 3]);
    let (len, fds, truncated) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => {
                let mut fds = Vec::new();
                if let Ok(cms) = m.cmsgs() {
                    for c in cms {
                        if let ControlMessageOwned::ScmRights(received) = c {
                            fds.extend(received.into_iter().map(sys::own_received_fd));
                        }
                    }
                }
                let truncated = m.flags.contains(MsgFlags::MSG_TRUNC);
                break (m.bytes, fds, truncated);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if len == 0 && fds.is_empty() {
        return Ok(None);
    }
    if truncated {
        return Err(io::Error::other("message truncated"));
    }
    let msg = serde_json::from_slice(&buf[..len])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some((msg, fds)))
}

/// How long `start` waits for a launcher to report.
pub(crate) const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsFd;

    #[test]
    fn messages_and_descriptors_cross_a_socketpair() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let file = tempfile::tempfile().unwrap();
        send(a.as_fd(), &Report::Listener, Some(file.as_fd())).unwrap();
        send(
            a.as_fd(),
            &Report::Error {
                message: "no".into(),
            },
            None,
        )
        .unwrap();
        let (m, fd) = recv::<Report>(b.as_fd(), Some(Instant::now() + Duration::from_secs(1)))
            .unwrap()
            .unwrap();
        assert!(matches!(m, Report::Listener));
        assert!(fd.is_some());
        let (m, fd) = recv::<Report>(b.as_fd(), None).unwrap().unwrap();
        assert!(matches!(m, Report::Error { message } if message == "no"));
        assert!(fd.is_none());
        let e =
            recv::<Report>(b.as_fd(), Some(Instant::now() + Duration::from_millis(5))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(a);
        assert!(recv::<Report>(b.as_fd(), None).unwrap().is_none());
    }
}
