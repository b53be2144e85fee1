//! The WASI context and the functions it provides, over a byte slice of the
//! module's linear memory. Every pointer the module passes is checked; a bad
//! one is `errno::FAULT`, never a host fault.

use alloc::vec::Vec;

use crate::fs::Fs;
use crate::Platform;

/// WASI preview 1 error numbers (the ones this runtime and its filesystem
/// return).
pub mod errno {
    /// No error.
    pub const SUCCESS: i32 = 0;
    /// Bad file descriptor.
    pub const BADF: i32 = 8;
    /// Bad address.
    pub const FAULT: i32 = 21;
    /// Invalid argument.
    pub const INVAL: i32 = 28;
    /// Function not supported.
    pub const NOTSUP: i32 = 58;
    /// Invalid seek.
    pub const SPIPE: i32 = 70;
    /// Permission denied.
    pub const ACCES: i32 = 2;
    /// File exists.
    pub const EXIST: i32 = 20;
    /// Is a directory.
    pub const ISDIR: i32 = 31;
    /// Too many open files.
    pub const MFILE: i32 = 33;
    /// Filename too long.
    pub const NAMETOOLONG: i32 = 37;
    /// No such file or directory.
    pub const NOENT: i32 = 44;
    /// No space left (the `/tmp` cap).
    pub const NOSPC: i32 = 51;
    /// Not a directory.
    pub const NOTDIR: i32 = 54;
    /// Directory not empty.
    pub const NOTEMPTY: i32 = 55;
    /// Not a socket.
    pub const NOTSOCK: i32 = 57;
    /// Operation not permitted.
    pub const PERM: i32 = 63;
    /// Read-only file system.
    pub const ROFS: i32 = 69;
    /// Outside the preopened directory.
    pub const NOTCAPABLE: i32 = 76;
}

/// Why a call ends the module's run instead of returning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Abort {
    /// `proc_exit(code)`.
    Exit(i32),
    /// Stdout went past its limit.
    OutputTooLarge,
}

#[derive(Clone, Copy, Debug)]
enum Stdin {
    /// Nothing read yet: the next read waits for the event.
    Unread,
    /// The event, being read.
    Open { len: usize, pos: usize },
}

/// A module's WASI context.
#[derive(Debug)]
pub struct Wasi<P> {
    pub(crate) platform: P,
    /// Arguments then environment entries, each NUL-terminated.
    strings: Vec<u8>,
    argc: usize,
    envc: usize,
    args_bytes: usize,
    stdin: Stdin,
    /// Set when the module asked for more memory than the VM has.
    pub(crate) oom: bool,
    /// The filesystem: mounted images and `/tmp` (fd 3 on).
    pub(crate) fs: Fs,
}

const WASI_FILETYPE_CHARACTER_DEVICE: u8 = 2;
const CLOCK_REALTIME: i32 = 0;
const CLOCK_MONOTONIC: i32 = 1;
const CLOCK_PROCESS_CPUTIME: i32 = 2;
const CLOCK_THREAD_CPUTIME: i32 = 3;
const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;
const SUBCLOCKFLAG_ABSTIME: u16 = 1;

type Res = Result<i32, Abort>;

fn get(mem: &[u8], ptr: u32, len: u32) -> Option<&[u8]> {
    let start = ptr as usize;
    mem.get(start..start.checked_add(len as usize)?)
}

fn get_mut(mem: &mut [u8], ptr: u32, len: u32) -> Option<&mut [u8]> {
    let start = ptr as usize;
    mem.get_mut(start..start.checked_add(len as usize)?)
}

fn read_u32(mem: &[u8], ptr: u32) -> Option<u32> {
    let b = get(mem, ptr, 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
fn read_u64(mem: &[u8], ptr: u32) -> Option<u64> {
    let mut a = [0u8; 8];
    a.copy_from_slice(get(mem, ptr, 8)?);
    Some(u64::from_le_bytes(a))
}

fn write(mem: &mut [u8], ptr: u32, bytes: &[u8]) -> Option<()> {
    get_mut(mem, ptr, u32::try_from(bytes.len()).ok()?)?.copy_from_slice(bytes);
    Some(())
}

/// Reads iovec `i` of the array at `iovs`: (buffer pointer, length).
fn iovec(mem: &[u8], iovs: u32, i: u32) -> Option<(u32, u32)> {
    let at = iovs.checked_add(i.checked_mul(8)?)?;
    Some((read_u32(mem, at)?, read_u32(mem, at.checked_add(4)?)?))
}

/// `Ok(errno)` from an `Option` of success.
fn fault(r: Option<()>) -> Res {
    Ok(if r.is_some() {
        errno::SUCCESS
    } else {
        errno::FAULT
    })
}

impl<P: Platform> Wasi<P> {
    /// A context with `args` and `env` (`KEY=VALUE`), each string
    /// NUL-terminated, as the config blob holds them.
    pub fn new(platform: P, args: &[&[u8]], env: &[&[u8]]) -> Wasi<P> {
        let mut strings = Vec::new();
        for s in args {
            strings.extend_from_slice(s);
        }
        let args_bytes = strings.len();
        for s in env {
            strings.extend_from_slice(s);
        }
        Wasi {
            platform,
            strings,
            argc: args.len(),
            envc: env.len(),
            args_bytes,
            stdin: Stdin::Unread,
            oom: false,
            fs: Fs::new(),
        }
    }

    /// Mounts a file image at the absolute path `at` (before the run).
    pub fn mount(&mut self, at: &str, image: &'static [u8]) -> Result<(), crate::fs::MountError> {
        self.fs.mount(at, image)
    }

    /// The platform, for reading what the run left behind.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The platform, mutably.
    pub fn platform_mut(&mut self) -> &mut P {
        &mut self.platform
    }

    /// Whether the module has read stdin (reached its snapshot point).
    pub fn stdin_opened(&self) -> bool {
        matches!(self.stdin, Stdin::Open { .. })
    }

    fn sizes(
        &self,
        mem: &mut [u8],
        count: usize,
        bytes: usize,
        count_ptr: u32,
        size_ptr: u32,
    ) -> Res {
        fault((|| {
            write(mem, count_ptr, &u32::try_from(count).ok()?.to_le_bytes())?;
            write(mem, size_ptr, &u32::try_from(bytes).ok()?.to_le_bytes())
        })())
    }

    fn strings_into(
        &self,
        mem: &mut [u8],
        which: core::ops::Range<usize>,
        ptrs: u32,
        buf: u32,
    ) -> Res {
        let strings = &self.strings[which];
        fault((|| {
            write(mem, buf, strings)?;
            let mut at = 0usize;
            for (i, s) in strings.split_inclusive(|b| *b == 0).enumerate() {
                let addr = buf.checked_add(u32::try_from(at).ok()?)?;
                let slot = ptrs.checked_add(u32::try_from(i).ok()?.checked_mul(4)?)?;
                write(mem, slot, &addr.to_le_bytes())?;
                at += s.len();
            }
            Some(())
        })())
    }

    pub(crate) fn args_sizes_get(&mut self, mem: &mut [u8], argc: u32, size: u32) -> Res {
        self.sizes(mem, self.argc, self.args_bytes, argc, size)
    }

    pub(crate) fn args_get(&mut self, mem: &mut [u8], argv: u32, buf: u32) -> Res {
        self.strings_into(mem, 0..self.args_bytes, argv, buf)
    }

    pub(crate) fn environ_sizes_get(&mut self, mem: &mut [u8], count: u32, size: u32) -> Res {
        self.sizes(
            mem,
            self.envc,
            self.strings.len() - self.args_bytes,
            count,
            size,
        )
    }

    pub(crate) fn environ_get(&mut self, mem: &mut [u8], environ: u32, buf: u32) -> Res {
        self.strings_into(mem, self.args_bytes..self.strings.len(), environ, buf)
    }

    fn clock(&mut self, id: i32) -> Option<u64> {
        match id {
            CLOCK_REALTIME => Some(self.platform.realtime_ns()),
            // One vCPU, one module: its CPU time is the time since start,
            // which is what the monotonic clock measures closely enough.
            CLOCK_MONOTONIC | CLOCK_PROCESS_CPUTIME | CLOCK_THREAD_CPUTIME => {
                Some(self.platform.monotonic_ns())
            }
            _ => None,
        }
    }

    pub(crate) fn clock_res_get(&mut self, mem: &mut [u8], id: i32, res: u32) -> Res {
        if !(0..=3).contains(&id) {
            return Ok(errno::INVAL);
        }
        fault(write(mem, res, &1u64.to_le_bytes()))
    }

    pub(crate) fn clock_time_get(
        &mut self,
        mem: &mut [u8],
        id: i32,
        _precision: i64,
        out: u32,
    ) -> Res {
        match self.clock(id) {
            Some(t) => fault(write(mem, out, &t.to_le_bytes())),
            None => Ok(errno::INVAL),
        }
    }

    pub(crate) fn fd_close(&mut self, fd: i32) -> Res {
        Ok(if (0..=2).contains(&fd) {
            errno::SUCCESS
        } else {
            self.fs.close(fd)
        })
    }

    pub(crate) fn fd_fdstat_get(&mut self, mem: &mut [u8], fd: i32, out: u32) -> Res {
        if !(0..=2).contains(&fd) {
            return Ok(self.fs.fdstat(mem, fd, out));
        }
        // fdstat: filetype u8, flags u16 at 2, rights_base u64 at 8,
        // rights_inheriting u64 at 16.
        let mut stat = [0u8; 24];
        stat[0] = WASI_FILETYPE_CHARACTER_DEVICE;
        // fd_read (bit 1) for stdin, fd_write (bit 6) for the others, and
        // poll_fd_readwrite (bit 27).
        let rights: u64 = if fd == 0 { 1 << 1 } else { 1 << 6 } | 1 << 27;
        stat[8..16].copy_from_slice(&rights.to_le_bytes());
        fault(write(mem, out, &stat))
    }

    pub(crate) fn fd_fdstat_set_flags(&mut self, fd: i32, flags: i32) -> Res {
        Ok(if (0..=2).contains(&fd) {
            errno::NOTSUP
        } else {
            self.fs.set_flags(fd, flags)
        })
    }

    pub(crate) fn fd_filestat_get(&mut self, mem: &mut [u8], fd: i32, out: u32) -> Res {
        if !(0..=2).contains(&fd) {
            return Ok(self.fs.fd_filestat(mem, fd, out));
        }
        // filestat: dev, ino, filetype u8 at 16, nlink at 24, size at 32,
        // atim, mtim, ctim: 64 bytes.
        let mut stat = [0u8; 64];
        stat[16] = WASI_FILETYPE_CHARACTER_DEVICE;
        stat[24..32].copy_from_slice(&1u64.to_le_bytes());
        fault(write(mem, out, &stat))
    }

    pub(crate) fn fd_prestat_get(&mut self, mem: &mut [u8], fd: i32, out: u32) -> Res {
        // One preopened directory, `/` at fd 3: libc start-up asks from
        // fd 3 up and stops at the first BADF.
        Ok(self.fs.prestat_get(mem, fd, out))
    }

    pub(crate) fn fd_prestat_dir_name(
        &mut self,
        mem: &mut [u8],
        fd: i32,
        buf: u32,
        len: u32,
    ) -> Res {
        Ok(self.fs.prestat_dir_name(mem, fd, buf, len))
    }

    pub(crate) fn fd_seek(
        &mut self,
        mem: &mut [u8],
        fd: i32,
        off: i64,
        whence: i32,
        out: u32,
    ) -> Res {
        Ok(if (0..=2).contains(&fd) {
            errno::SPIPE
        } else {
            self.fs.seek(mem, fd, off, whence, out)
        })
    }

    /// The filesystem, for the calls that only it answers.
    pub(crate) fn fs(&mut self) -> &mut Fs {
        &mut self.fs
    }

    /// The std streams are not files: `fd_pread`, `fd_tell` and the like
    /// on them are ESPIPE; anything else goes to the filesystem.
    pub(crate) fn file_call(&mut self, fd: i32, f: impl FnOnce(&mut Fs) -> i32) -> Res {
        Ok(if (0..=2).contains(&fd) {
            errno::SPIPE
        } else {
            f(&mut self.fs)
        })
    }

    pub(crate) fn fd_read(
        &mut self,
        mem: &mut [u8],
        fd: i32,
        iovs: u32,
        iovs_len: u32,
        nread: u32,
    ) -> Res {
        if fd != 0 {
            if (1..=2).contains(&fd) {
                return Ok(errno::BADF);
            }
            return Ok(self.fs.read(mem, fd, iovs, iovs_len, None, nread));
        }
        let (len, mut pos) = match self.stdin {
            Stdin::Unread => {
                // The snapshot point: the module's init is over. Marked open
                // at once, so a read that then fails on a bad buffer does not
                // wait for the event a second time.
                let len = self.platform.wait_event();
                self.stdin = Stdin::Open { len, pos: 0 };
                (len, 0)
            }
            Stdin::Open { len, pos } => (len, pos),
        };
        let mut total: u32 = 0;
        for i in 0..iovs_len {
            let Some((buf, buf_len)) = iovec(mem, iovs, i) else {
                return Ok(errno::FAULT);
            };
            let Some(dst) = get_mut(mem, buf, buf_len) else {
                return Ok(errno::FAULT);
            };
            let n = self.platform.read_event(pos, dst);
            pos += n;
            total = total.saturating_add(n as u32);
            if n < dst.len() || pos >= len {
                break;
            }
        }
        self.stdin = Stdin::Open { len, pos };
        fault(write(mem, nread, &total.to_le_bytes()))
    }

    pub(crate) fn fd_write(
        &mut self,
        mem: &mut [u8],
        fd: i32,
        iovs: u32,
        iovs_len: u32,
        nwritten: u32,
    ) -> Res {
        if !(1..=2).contains(&fd) {
            if fd == 0 {
                return Ok(errno::BADF);
            }
            return Ok(self.fs.write(mem, fd, iovs, iovs_len, None, nwritten));
        }
        let mut total: u32 = 0;
        for i in 0..iovs_len {
            let Some((buf, buf_len)) = iovec(mem, iovs, i) else {
                return Ok(errno::FAULT);
            };
            let Some(src) = get(mem, buf, buf_len) else {
                return Ok(errno::FAULT);
            };
            if fd == 1 {
                self.platform
                    .stdout(src)
                    .map_err(|_| Abort::OutputTooLarge)?;
            } else {
                self.platform.stderr(src);
            }
            total = total.saturating_add(buf_len);
        }
        fault(write(mem, nwritten, &total.to_le_bytes()))
    }

    pub(crate) fn poll_oneoff(
        &mut self,
        mem: &mut [u8],
        subs: u32,
        events: u32,
        n: u32,
        nevents: u32,
    ) -> Res {
        // Subscriptions are 48 bytes, events 32. Stdin and the outputs are
        // always ready; clock subscriptions wait (by spinning: the VM has
        // nothing else to do) until the earliest one expires.
        if n == 0 {
            return Ok(errno::INVAL);
        }
        let mut ready = 0u32;
        let mut earliest: Option<(u64, u32)> = None;
        for i in 0..n {
            let Some(at) = i.checked_mul(48).and_then(|o| subs.checked_add(o)) else {
                return Ok(errno::FAULT);
            };
            let Some(sub) = get(mem, at, 48) else {
                return Ok(errno::FAULT);
            };
            let mut userdata = [0u8; 8];
            userdata.copy_from_slice(&sub[0..8]);
            let tag = sub[8];
            if tag == EVENTTYPE_CLOCK {
                let id = i32::from_le_bytes([sub[16], sub[17], sub[18], sub[19]]);
                let mut t = [0u8; 8];
                t.copy_from_slice(&sub[24..32]);
                let timeout = u64::from_le_bytes(t);
                let flags = u16::from_le_bytes([sub[40], sub[41]]);
                let Some(now) = self.clock(id) else {
                    return Ok(errno::INVAL);
                };
                // Deadlines on the monotonic clock, whatever the clock asked.
                let wait = if flags & SUBCLOCKFLAG_ABSTIME != 0 {
                    timeout.saturating_sub(now)
                } else {
                    timeout
                };
                let due = self.platform.monotonic_ns().saturating_add(wait);
                if earliest.is_none_or(|(d, _)| due < d) {
                    earliest = Some((due, i));
                }
            } else if tag == EVENTTYPE_FD_READ || tag == EVENTTYPE_FD_WRITE {
                let mut ev = [0u8; 32];
                ev[0..8].copy_from_slice(&userdata);
                let fd = i32::from_le_bytes([sub[16], sub[17], sub[18], sub[19]]);
                let ok = if tag == EVENTTYPE_FD_READ {
                    fd == 0
                } else {
                    (1..=2).contains(&fd)
                };
                let err = if ok { errno::SUCCESS } else { errno::BADF } as u16;
                ev[8..10].copy_from_slice(&err.to_le_bytes());
                ev[10] = tag;
                let Some(slot) = ready.checked_mul(32).and_then(|o| events.checked_add(o)) else {
                    return Ok(errno::FAULT);
                };
                if write(mem, slot, &ev).is_none() {
                    return Ok(errno::FAULT);
                }
                ready += 1;
            } else {
                return Ok(errno::INVAL);
            }
        }
        if ready == 0 {
            if let Some((due, i)) = earliest {
                while self.platform.monotonic_ns() < due {
                    core::hint::spin_loop();
                }
                let Some(sub) = get(mem, subs + i * 48, 8) else {
                    return Ok(errno::FAULT);
                };
                let mut ev = [0u8; 32];
                ev[0..8].copy_from_slice(sub);
                ev[10] = EVENTTYPE_CLOCK;
                if write(mem, events, &ev).is_none() {
                    return Ok(errno::FAULT);
                }
                ready = 1;
            }
        }
        fault(write(mem, nevents, &ready.to_le_bytes()))
    }

    pub(crate) fn random_get(&mut self, mem: &mut [u8], buf: u32, len: u32) -> Res {
        match get_mut(mem, buf, len) {
            Some(dst) => {
                self.platform.random(dst);
                Ok(errno::SUCCESS)
            }
            None => Ok(errno::FAULT),
        }
    }

    pub(crate) fn request_id(&mut self, mem: &mut [u8], buf: u32, len: u32) -> Res {
        let id = self.platform.request_id();
        let n = id.len().min(len as usize);
        let id: Vec<u8> = id[..n].to_vec();
        match write(mem, buf, &id) {
            Some(()) => Ok(self.platform.request_id().len() as i32),
            None => Ok(-errno::FAULT),
        }
    }

    /// Whether linear memory may grow from `current` to `desired` bytes.
    pub(crate) fn may_grow(&mut self, current: usize, desired: usize) -> bool {
        // Growing copies the old buffer into a new one, so both exist for a
        // moment; keep a margin for the engine's own allocations.
        const MARGIN: usize = 1 << 20;
        let need = desired
            .saturating_sub(current)
            .saturating_add(current)
            .saturating_add(MARGIN);
        let ok = self.platform.memory_available() >= need;
        if !ok {
            self.oom = true;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OutputTooLarge;
    use alloc::vec;

    #[derive(Default, Debug)]
    struct Host {
        event: Vec<u8>,
        waits: u32,
        out: Vec<u8>,
        err: Vec<u8>,
    }

    impl Platform for Host {
        fn realtime_ns(&mut self) -> u64 {
            1_700_000_000_000_000_000
        }
        fn monotonic_ns(&mut self) -> u64 {
            42
        }
        fn random(&mut self, buf: &mut [u8]) {
            buf.fill(0xab);
        }
        fn wait_event(&mut self) -> usize {
            self.waits += 1;
            self.event.len()
        }
        fn read_event(&mut self, at: usize, buf: &mut [u8]) -> usize {
            let n = buf.len().min(self.event.len().saturating_sub(at));
            buf[..n].copy_from_slice(&self.event[at..at + n]);
            n
        }
        fn stdout(&mut self, data: &[u8]) -> Result<(), OutputTooLarge> {
            if self.out.len() + data.len() > 8 {
                return Err(OutputTooLarge);
            }
            self.out.extend_from_slice(data);
            Ok(())
        }
        fn stderr(&mut self, data: &[u8]) {
            self.err.extend_from_slice(data);
        }
        fn memory_available(&self) -> usize {
            10 << 20
        }
    }

    fn iov(mem: &mut [u8], at: u32, buf: u32, len: u32) {
        write(mem, at, &buf.to_le_bytes()).unwrap();
        write(mem, at + 4, &len.to_le_bytes()).unwrap();
    }

    #[test]
    fn stdin_waits_once_then_reads_to_eof() {
        let mut w = Wasi::new(
            Host {
                event: b"hello world".to_vec(),
                ..Host::default()
            },
            &[],
            &[],
        );
        let mut mem = vec![0u8; 256];
        iov(&mut mem, 0, 100, 5);
        assert_eq!(w.fd_read(&mut mem, 0, 0, 1, 16), Ok(0));
        assert_eq!(read_u32(&mem, 16), Some(5));
        assert_eq!(&mem[100..105], b"hello");
        assert_eq!(w.fd_read(&mut mem, 0, 0, 1, 16), Ok(0));
        assert_eq!(&mem[100..105], b" worl");
        assert_eq!(w.fd_read(&mut mem, 0, 0, 1, 16), Ok(0));
        assert_eq!(read_u32(&mem, 16), Some(1));
        assert_eq!(w.fd_read(&mut mem, 0, 0, 1, 16), Ok(0));
        assert_eq!(read_u32(&mem, 16), Some(0), "end of file");
        assert_eq!(w.platform.waits, 1);
    }

    #[test]
    fn a_failed_first_read_still_counts_as_the_wait() {
        let mut w = Wasi::new(
            Host {
                event: b"ev".to_vec(),
                ..Host::default()
            },
            &[],
            &[],
        );
        let mut mem = vec![0u8; 64];
        iov(&mut mem, 0, 60, 10);
        assert_eq!(w.fd_read(&mut mem, 0, 0, 1, 16), Ok(errno::FAULT));
        iov(&mut mem, 0, 32, 10);
        assert_eq!(w.fd_read(&mut mem, 0, 0, 1, 16), Ok(0));
        assert_eq!(&mem[32..34], b"ev");
        assert_eq!(w.platform.waits, 1);
    }

    #[test]
    fn bad_pointers_are_efault_not_panics() {
        let mut w = Wasi::new(Host::default(), &[b"a\0"], &[]);
        let mut mem = vec![0u8; 64];
        iov(&mut mem, 0, 60, 10);
        assert_eq!(w.fd_write(&mut mem, 1, 0, 1, 16), Ok(errno::FAULT));
        assert_eq!(
            w.fd_read(&mut mem, 0, u32::MAX - 3, 1, 16),
            Ok(errno::FAULT)
        );
        assert_eq!(w.args_get(&mut mem, 62, 0), Ok(errno::FAULT));
        assert_eq!(w.random_get(&mut mem, 60, 10), Ok(errno::FAULT));
        assert_eq!(w.clock_time_get(&mut mem, 0, 0, 60), Ok(errno::FAULT));
        assert_eq!(w.poll_oneoff(&mut mem, u32::MAX, 0, 2, 0), Ok(errno::FAULT));
    }

    #[test]
    fn stdout_limit_aborts() {
        let mut w = Wasi::new(Host::default(), &[], &[]);
        let mut mem = vec![0u8; 64];
        iov(&mut mem, 0, 32, 6);
        assert_eq!(w.fd_write(&mut mem, 1, 0, 1, 16), Ok(0));
        assert_eq!(
            w.fd_write(&mut mem, 1, 0, 1, 16),
            Err(Abort::OutputTooLarge)
        );
        assert_eq!(w.fd_write(&mut mem, 2, 0, 1, 16), Ok(0));
        assert_eq!(w.fd_write(&mut mem, 3, 0, 1, 16), Ok(errno::BADF));
    }

    #[test]
    fn args_and_environ() {
        let mut w = Wasi::new(Host::default(), &[b"fn\0", b"-x\0"], &[b"A=1\0"]);
        let mut mem = vec![0u8; 128];
        assert_eq!(w.args_sizes_get(&mut mem, 0, 4), Ok(0));
        assert_eq!((read_u32(&mem, 0), read_u32(&mem, 4)), (Some(2), Some(6)));
        assert_eq!(w.args_get(&mut mem, 8, 64), Ok(0));
        assert_eq!(
            (read_u32(&mem, 8), read_u32(&mem, 12)),
            (Some(64), Some(67))
        );
        assert_eq!(&mem[64..70], b"fn\0-x\0");
        assert_eq!(w.environ_sizes_get(&mut mem, 0, 4), Ok(0));
        assert_eq!((read_u32(&mem, 0), read_u32(&mem, 4)), (Some(1), Some(4)));
        assert_eq!(w.environ_get(&mut mem, 16, 96), Ok(0));
        assert_eq!(read_u32(&mem, 16), Some(96));
        assert_eq!(&mem[96..100], b"A=1\0");
    }

    #[test]
    fn poll_reports_ready_fds() {
        let mut w = Wasi::new(Host::default(), &[], &[]);
        let mut mem = vec![0u8; 256];
        // One fd_read subscription on stdin, userdata 7.
        mem[0..8].copy_from_slice(&7u64.to_le_bytes());
        mem[8] = EVENTTYPE_FD_READ;
        assert_eq!(w.poll_oneoff(&mut mem, 0, 100, 1, 200), Ok(0));
        assert_eq!(read_u32(&mem, 200), Some(1));
        assert_eq!(read_u64(&mem, 100), Some(7));
        assert_eq!(mem[110], EVENTTYPE_FD_READ);
    }
}
