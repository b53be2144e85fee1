//! Network namespaces made ahead of cold starts.
//!
//! A sandbox's network namespace (with `lo` up and the Runtime API's
//! listening socket at `127.0.0.1:9001` in it) costs about 0.6 ms to make:
//! the kernel registers a loopback device and a namespace's worth of sysctl
//! tables. Nothing in it depends on the sandbox, so a background thread
//! keeps a few ready, and the launcher enters one (`setns`) instead of
//! making its own; a start that finds none makes its own as before.
//!
//! A namespace is made on a short-lived thread of the daemon: `unshare`
//! of the network namespace moves only the calling thread, which brings
//! `lo` up, binds the listener, opens `/proc/thread-self/ns/net` and ends.
//! The namespace then lives on through that descriptor and the listening
//! socket, and is freed when both are closed. Each is handed to one sandbox
//! only.

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::sys;

/// A network namespace with `lo` up and the Runtime API listening in it.
#[derive(Debug)]
pub(crate) struct ReadyNetns {
    /// The namespace (an nsfs descriptor, for `setns`).
    pub ns: OwnedFd,
    /// `127.0.0.1:9001` in it, listening.
    pub listener: TcpListener,
}

/// Makes one, on a thread of its own.
pub(crate) fn make(addr: &'static str) -> std::io::Result<ReadyNetns> {
    std::thread::Builder::new()
        .name("hearth-netns".into())
        .spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
            sys::loopback_up()?;
            let listener = TcpListener::bind(addr)?;
            let ns = std::fs::File::open("/proc/thread-self/ns/net")?;
            Ok(ReadyNetns {
                ns: ns.into(),
                listener,
            })
        })?
        .join()
        .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}

/// Up to `target` ready namespaces, refilled in the background.
/// Its filler thread holds it weakly, and ends within a second of the
/// pool being dropped.
#[derive(Debug)]
pub(crate) struct NetnsPool {
    ready: Mutex<Vec<ReadyNetns>>,
    wake: Condvar,
    target: usize,
}

impl NetnsPool {
    /// Starts the pool and its filler thread, if a first namespace can be
    /// made here (it needs CAP_SYS_ADMIN); `None` otherwise.
    pub(crate) fn start(target: usize, addr: &'static str) -> Option<Arc<Self>> {
        let first = make(addr).ok()?;
        let pool = Arc::new(Self {
            ready: Mutex::new(vec![first]),
            wake: Condvar::new(),
            target: target.max(1),
        });
        let weak = Arc::downgrade(&pool);
        std::thread::Builder::new()
            .name("hearth-netns-pool".into())
            .spawn(move || fill(&weak, addr))
            .ok()?;
        Some(pool)
    }

    /// A ready namespace, if there is one; the filler makes the next.
    pub(crate) fn take(&self) -> Option<ReadyNetns> {
        let got = self.ready.lock().pop();
        self.wake.notify_one();
        got
    }
}

/// How long the filler waits after a take before it makes the next one:
/// making a namespace takes kernel locks and CPU that the start which just
/// took one needs (its exec, namespaces and mounts, some 4 ms).
const REFILL_DELAY: Duration = Duration::from_millis(20);

/// The filler: tops the pool up to its target, then sleeps until a take
/// (or, at most, a second). Ends when the pool is dropped. A
/// failure to make one is retried after a pause (bounded: one attempt a
/// second at most).
fn fill(pool: &Weak<NetnsPool>, addr: &'static str) {
    loop {
        std::thread::sleep(REFILL_DELAY);
        let Some(p) = pool.upgrade() else {
            return;
        };
        {
            let mut ready = p.ready.lock();
            if ready.len() >= p.target {
                p.wake.wait_for(&mut ready, Duration::from_secs(1));
                continue;
            }
        }
        match make(addr) {
            Ok(ns) => p.ready.lock().push(ns),
            Err(e) => {
                tracing::debug!(error = %e, "cannot make a network namespace ahead");
                drop(p);
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_made_ahead_and_each_given_once() {
        if !nix::unistd::geteuid().is_root() {
            println!("SKIP namespaces_are_made_ahead_and_each_given_once: making network namespaces needs root");
            return;
        }
        let pool = NetnsPool::start(2, "127.0.0.1:9001").expect("a pool as root");
        let a = pool.take().expect("the first namespace");
        // The filler refills (bounded wait).
        let mut b = None;
        for _ in 0..200 {
            if let Some(n) = pool.take() {
                b = Some(n);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let b = b.expect("a second namespace within 2 s");
        // Two different namespaces, each listening on the same address.
        let ino = |fd: &OwnedFd| nix::sys::stat::fstat(fd).map(|s| s.st_ino).unwrap();
        assert_ne!(ino(&a.ns), ino(&b.ns));
        assert_eq!(
            a.listener.local_addr().unwrap(),
            b.listener.local_addr().unwrap()
        );
        // Never more than the target is held.
        std::thread::sleep(Duration::from_millis(100));
        assert!(pool.ready.lock().len() <= 2);
    }
}
