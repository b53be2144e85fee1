//! The guest's filesystem: read-only file images mounted at absolute paths
//! (the function's code at `/var/task`, a runtime's library, layers), read
//! in place where the VMM mapped them, and one small writable `/tmp` in
//! guest memory. It is preopened as `/` (fd 3), so every absolute path a
//! module names resolves here.
//!
//! `/tmp` lives in the guest's heap, so a VM reset (which restores the
//! function snapshot's memory) drops whatever an invocation wrote there;
//! its size is capped ([`TMP_CAP`]). Nothing else is writable: a write to
//! an image is `EROFS`. Every pointer and length from the module is
//! checked; a bad one is `EFAULT`.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use hearth_guest_abi::files::{Image, Kind};

/// WASI errno values (the one table, in [`crate::errno`]).
pub use crate::wasi::errno as e;

/// The most bytes `/tmp` holds.
pub const TMP_CAP: usize = 64 << 20;
/// The first fd the filesystem hands out; 3 is the `/` preopen.
const ROOT_FD: i32 = 3;
const MAX_FDS: usize = 1024;
const MAX_PATH: usize = 4096;

const FILETYPE_DIRECTORY: u8 = 3;
const FILETYPE_REGULAR_FILE: u8 = 4;
const OFLAG_CREAT: u16 = 1;
const OFLAG_DIRECTORY: u16 = 2;
const OFLAG_EXCL: u16 = 4;
const OFLAG_TRUNC: u16 = 8;
const FDFLAG_APPEND: u16 = 1;
const RIGHT_FD_WRITE: u64 = 1 << 6;
/// Every right: a preopen and what is opened under it may do anything the
/// filesystem allows (the filesystem, not rights, says what is writable).
const ALL_RIGHTS: u64 = (1 << 30) - 1;

#[derive(Debug)]
enum Node {
    Dir {
        children: BTreeMap<String, usize>,
        parent: usize,
        writable: bool,
    },
    Image(&'static [u8]),
    Tmp(Vec<u8>),
}

#[derive(Debug, Clone, Copy)]
struct Open {
    node: usize,
    pos: u64,
    append: bool,
    write: bool,
}

/// The filesystem of one module's run.
#[derive(Debug)]
pub struct Fs {
    /// Nodes by inode number - 1; `None` once removed.
    nodes: Vec<Option<Node>>,
    /// Open descriptors, from fd 3 (`/`) on.
    fds: Vec<Option<Open>>,
    /// `/tmp` bytes held by files, linked or still open.
    tmp_used: usize,
    /// `/tmp` files unlinked while open: freed at their last close.
    orphans: Vec<usize>,
}

/// A mount that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountError(pub String);

fn get(mem: &[u8], ptr: u32, len: u32) -> Option<&[u8]> {
    let start = ptr as usize;
    mem.get(start..start.checked_add(len as usize)?)
}

fn get_mut(mem: &mut [u8], ptr: u32, len: u32) -> Option<&mut [u8]> {
    let start = ptr as usize;
    mem.get_mut(start..start.checked_add(len as usize)?)
}

fn put(mem: &mut [u8], ptr: u32, bytes: &[u8]) -> i32 {
    match u32::try_from(bytes.len())
        .ok()
        .and_then(|n| get_mut(mem, ptr, n))
    {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            0
        }
        None => e::FAULT,
    }
}

fn iovec(mem: &[u8], iovs: u32, i: u32) -> Option<(u32, u32)> {
    let at = iovs.checked_add(i.checked_mul(8)?)?;
    let b = get(mem, at, 8)?;
    Some((
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    ))
}

impl Default for Fs {
    fn default() -> Fs {
        Fs::new()
    }
}

impl Fs {
    /// A filesystem with an empty root and a writable `/tmp`.
    pub fn new() -> Fs {
        let mut fs = Fs {
            nodes: alloc::vec![Some(Node::Dir {
                children: BTreeMap::new(),
                parent: 0,
                writable: false,
            })],
            fds: alloc::vec![Some(Open {
                node: 0,
                pos: 0,
                append: false,
                write: false,
            })],
            tmp_used: 0,
            orphans: Vec::new(),
        };
        let tmp = fs.add(Node::Dir {
            children: BTreeMap::new(),
            parent: 0,
            writable: true,
        });
        fs.link(0, "tmp", tmp);
        fs
    }

    fn add(&mut self, n: Node) -> usize {
        self.nodes.push(Some(n));
        self.nodes.len() - 1
    }

    fn link(&mut self, dir: usize, name: &str, child: usize) {
        if let Some(Some(Node::Dir { children, .. })) = self.nodes.get_mut(dir) {
            children.insert(name.to_string(), child);
        }
    }

    fn child(&self, dir: usize, name: &str) -> Option<usize> {
        match self.nodes.get(dir)? {
            Some(Node::Dir { children, .. }) => children.get(name).copied(),
            _ => None,
        }
    }

    /// The directory at absolute `path`, made (read-only) where missing.
    fn mkdirs(&mut self, path: &str) -> Result<usize, MountError> {
        let mut at = 0;
        for c in path.split('/').filter(|c| !c.is_empty()) {
            at = match self.child(at, c) {
                Some(n) if matches!(self.nodes[n], Some(Node::Dir { .. })) => n,
                Some(_) => return Err(MountError(alloc::format!("{path}: a file is in the way"))),
                None => {
                    let n = self.add(Node::Dir {
                        children: BTreeMap::new(),
                        parent: at,
                        writable: false,
                    });
                    self.link(at, c, n);
                    n
                }
            };
        }
        Ok(at)
    }

    /// Mounts a file image (see `hearth_guest_abi::files`) at the absolute
    /// path `at`; its files are read in place, never copied.
    pub fn mount(&mut self, at: &str, image: &'static [u8]) -> Result<(), MountError> {
        if !at.starts_with('/') || at.split('/').any(|c| c == "." || c == "..") {
            return Err(MountError(alloc::format!(
                "{at}: not a clean absolute path"
            )));
        }
        let img = Image::new(image).map_err(|e| MountError(alloc::format!("{at}: {e}")))?;
        let root = self.mkdirs(at)?;
        for entry in img.entries() {
            let entry = entry.map_err(|e| MountError(alloc::format!("{at}: {e}")))?;
            let (parent_path, name) = match entry.path.rsplit_once('/') {
                Some((p, n)) => (Some(p), n),
                None => (None, entry.path),
            };
            let mut parent = root;
            if let Some(p) = parent_path {
                for c in p.split('/') {
                    parent = match self.child(parent, c) {
                        Some(n) => n,
                        None => {
                            return Err(MountError(alloc::format!(
                                "{at}: {} comes before its directory",
                                entry.path
                            )))
                        }
                    };
                }
            }
            if self.child(parent, name).is_some() {
                // A directory given twice (by two images) merges.
                if entry.kind == Kind::Dir {
                    continue;
                }
                return Err(MountError(alloc::format!("{at}: {} twice", entry.path)));
            }
            let node = match entry.kind {
                Kind::Dir => Node::Dir {
                    children: BTreeMap::new(),
                    parent,
                    writable: false,
                },
                Kind::File => Node::Image(entry.data),
            };
            let n = self.add(node);
            self.link(parent, name, n);
        }
        Ok(())
    }

    /// The descriptor table's index of `fd`, if it could be one.
    fn slot(fd: i32) -> Option<usize> {
        usize::try_from(fd.checked_sub(ROOT_FD)?).ok()
    }

    fn open_of(&self, fd: i32) -> Result<Open, i32> {
        let i = Fs::slot(fd).ok_or(e::BADF)?;
        self.fds.get(i).copied().flatten().ok_or(e::BADF)
    }

    fn node(&self, n: usize) -> Option<&Node> {
        self.nodes.get(n)?.as_ref()
    }

    /// Resolves `path` relative to the directory open at `fd`: the parent
    /// directory, the last component (`None` for the directory itself) and
    /// the node it names, if any.
    fn resolve(&self, fd: i32, path: &[u8]) -> Result<(usize, Option<String>, Option<usize>), i32> {
        let start = self.open_of(fd)?.node;
        if !matches!(self.node(start), Some(Node::Dir { .. })) {
            return Err(e::NOTDIR);
        }
        if path.len() > MAX_PATH {
            return Err(e::NAMETOOLONG);
        }
        let path = core::str::from_utf8(path).map_err(|_| e::INVAL)?;
        if path.starts_with('/') {
            return Err(e::NOTCAPABLE);
        }
        let comps: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let mut dir = start;
        let mut last: Option<&str> = None;
        for (i, c) in comps.iter().enumerate() {
            let is_last = i + 1 == comps.len();
            if *c == ".." {
                if dir == 0 {
                    return Err(e::NOTCAPABLE);
                }
                match self.node(dir) {
                    Some(Node::Dir { parent, .. }) => dir = *parent,
                    _ => return Err(e::NOTDIR),
                }
                continue;
            }
            if is_last {
                last = Some(c);
                break;
            }
            match self.child(dir, c) {
                Some(n) if matches!(self.node(n), Some(Node::Dir { .. })) => dir = n,
                Some(_) => return Err(e::NOTDIR),
                None => return Err(e::NOENT),
            }
        }
        match last {
            None => Ok((dir, None, Some(dir))),
            Some(name) => {
                let node = self.child(dir, name);
                // A trailing slash names a directory.
                if path.ends_with('/')
                    && node.is_some_and(|n| !matches!(self.node(n), Some(Node::Dir { .. })))
                {
                    return Err(e::NOTDIR);
                }
                Ok((dir, Some(name.to_string()), node))
            }
        }
    }

    fn writable_dir(&self, dir: usize) -> bool {
        matches!(self.node(dir), Some(Node::Dir { writable: true, .. }))
    }

    fn new_fd(&mut self, open: Open) -> Result<i32, i32> {
        if let Some(i) = self.fds.iter().position(Option::is_none) {
            self.fds[i] = Some(open);
            return Ok(ROOT_FD + i as i32);
        }
        if self.fds.len() >= MAX_FDS {
            return Err(e::MFILE);
        }
        self.fds.push(Some(open));
        Ok(ROOT_FD + self.fds.len() as i32 - 1)
    }

    /// Whether `fd` is one of the filesystem's.
    pub fn owns(&self, fd: i32) -> bool {
        self.open_of(fd).is_ok()
    }

    /// `fd_prestat_get`: fd 3 is the `/` preopen.
    pub fn prestat_get(&self, mem: &mut [u8], fd: i32, out: u32) -> i32 {
        if fd != ROOT_FD {
            return e::BADF;
        }
        let mut b = [0u8; 8];
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        put(mem, out, &b)
    }

    /// `fd_prestat_dir_name`.
    pub fn prestat_dir_name(&self, mem: &mut [u8], fd: i32, buf: u32, len: u32) -> i32 {
        if fd != ROOT_FD {
            return e::BADF;
        }
        if len < 1 {
            return e::INVAL;
        }
        put(mem, buf, b"/")
    }

    /// `path_open`.
    #[allow(clippy::too_many_arguments)]
    pub fn path_open(
        &mut self,
        mem: &mut [u8],
        fd: i32,
        path: u32,
        path_len: u32,
        oflags: i32,
        rights: i64,
        fdflags: i32,
        out: u32,
    ) -> i32 {
        let Some(p) = get(mem, path, path_len) else {
            return e::FAULT;
        };
        // Everything is checked before anything changes: a failed open
        // creates, truncates and allocates nothing.
        if get(mem, out, 4).is_none() {
            return e::FAULT;
        }
        if !self.fds.iter().any(Option::is_none) && self.fds.len() >= MAX_FDS {
            return e::MFILE;
        }
        let trailing_slash = p.ends_with(b"/");
        let (dir, name, node) = match self.resolve(fd, p) {
            Ok(r) => r,
            Err(x) => return x,
        };
        let oflags = oflags as u16;
        let want_write = (rights as u64) & RIGHT_FD_WRITE != 0;
        let node = match node {
            Some(n) => {
                if oflags & OFLAG_CREAT != 0 && oflags & OFLAG_EXCL != 0 {
                    return e::EXIST;
                }
                let is_dir = matches!(self.node(n), Some(Node::Dir { .. }));
                if oflags & OFLAG_DIRECTORY != 0 && !is_dir {
                    return e::NOTDIR;
                }
                if is_dir && (want_write || oflags & OFLAG_TRUNC != 0) {
                    return e::ISDIR;
                }
                let writable_file = matches!(self.node(n), Some(Node::Tmp(_)));
                if (want_write || oflags & OFLAG_TRUNC != 0) && !is_dir && !writable_file {
                    return e::ROFS;
                }
                if oflags & OFLAG_TRUNC != 0 {
                    if let Some(Some(Node::Tmp(d))) = self.nodes.get_mut(n) {
                        self.tmp_used -= d.len();
                        d.clear();
                    }
                }
                n
            }
            None => {
                if oflags & OFLAG_CREAT == 0 {
                    return e::NOENT;
                }
                if oflags & OFLAG_DIRECTORY != 0 || trailing_slash {
                    return e::ISDIR;
                }
                if !self.writable_dir(dir) {
                    return e::ROFS;
                }
                let Some(name) = name else { return e::INVAL };
                let n = self.add(Node::Tmp(Vec::new()));
                self.link(dir, &name, n);
                n
            }
        };
        let open = Open {
            node,
            pos: 0,
            append: (fdflags as u16) & FDFLAG_APPEND != 0,
            write: want_write,
        };
        match self.new_fd(open) {
            Ok(new) => put(mem, out, &new.to_le_bytes()),
            Err(x) => x,
        }
    }

    /// `fd_close`.
    pub fn close(&mut self, fd: i32) -> i32 {
        if fd == ROOT_FD {
            return e::NOTSUP;
        }
        match Fs::slot(fd).and_then(|i| self.fds.get_mut(i)) {
            Some(slot @ Some(_)) => {
                *slot = None;
                self.free_orphans();
                0
            }
            _ => e::BADF,
        }
    }

    /// Frees the `/tmp` files that were unlinked while open, once nothing
    /// has them open any more.
    fn free_orphans(&mut self) {
        let mut i = 0;
        while i < self.orphans.len() {
            let n = self.orphans[i];
            if self.fds.iter().flatten().any(|o| o.node == n) {
                i += 1;
                continue;
            }
            if let Some(Some(Node::Tmp(d))) = self.nodes.get(n) {
                self.tmp_used -= d.len();
            }
            self.nodes[n] = None;
            self.orphans.swap_remove(i);
        }
    }

    fn data(&self, n: usize) -> Option<&[u8]> {
        match self.node(n)? {
            Node::Image(d) => Some(d),
            Node::Tmp(d) => Some(d),
            Node::Dir { .. } => None,
        }
    }

    fn read_at(
        &self,
        mem: &mut [u8],
        node: usize,
        mut at: u64,
        iovs: u32,
        n: u32,
    ) -> Result<u64, i32> {
        let Some(data) = self.data(node) else {
            return Err(e::ISDIR);
        };
        let mut total = 0u64;
        for i in 0..n {
            let (buf, len) = iovec(mem, iovs, i).ok_or(e::FAULT)?;
            let dst = get_mut(mem, buf, len).ok_or(e::FAULT)?;
            let start = (at as usize).min(data.len());
            let k = dst.len().min(data.len() - start);
            dst[..k].copy_from_slice(&data[start..start + k]);
            total += k as u64;
            at += k as u64;
            if k < dst.len() {
                break;
            }
        }
        Ok(total)
    }

    /// `fd_read` (advancing) and `fd_pread` (`at`, not advancing).
    pub fn read(
        &mut self,
        mem: &mut [u8],
        fd: i32,
        iovs: u32,
        n: u32,
        at: Option<u64>,
        out: u32,
    ) -> i32 {
        let open = match self.open_of(fd) {
            Ok(o) => o,
            Err(x) => return x,
        };
        match self.read_at(mem, open.node, at.unwrap_or(open.pos), iovs, n) {
            Ok(k) => {
                if at.is_none() {
                    if let Some(Some(o)) = Fs::slot(fd).and_then(|i| self.fds.get_mut(i)) {
                        o.pos += k;
                    }
                }
                put(mem, out, &(k as u32).to_le_bytes())
            }
            Err(x) => x,
        }
    }

    /// `fd_write` (advancing, or at the end with append) and `fd_pwrite`.
    pub fn write(
        &mut self,
        mem: &mut [u8],
        fd: i32,
        iovs: u32,
        n: u32,
        at: Option<u64>,
        out: u32,
    ) -> i32 {
        let open = match self.open_of(fd) {
            Ok(o) => o,
            Err(x) => return x,
        };
        if !open.write {
            return e::BADF;
        }
        let mut chunks: Vec<(u32, u32)> = Vec::new();
        let mut len = 0usize;
        for i in 0..n {
            let Some((buf, l)) = iovec(mem, iovs, i) else {
                return e::FAULT;
            };
            if get(mem, buf, l).is_none() {
                return e::FAULT;
            }
            chunks.push((buf, l));
            len += l as usize;
        }
        let used = self.tmp_used;
        let Some(Some(Node::Tmp(data))) = self.nodes.get_mut(open.node) else {
            return e::ROFS;
        };
        let start = match at {
            Some(a) => a as usize,
            None if open.append => data.len(),
            None => open.pos as usize,
        };
        let Some(end) = start.checked_add(len) else {
            return e::INVAL;
        };
        let grow = end.saturating_sub(data.len());
        if used + grow > TMP_CAP {
            return e::NOSPC;
        }
        if end > data.len() {
            data.resize(end, 0);
        }
        let mut w = start;
        for (buf, l) in chunks {
            if let Some(src) = get(mem, buf, l) {
                data[w..w + src.len()].copy_from_slice(src);
            }
            w += l as usize;
        }
        self.tmp_used = used + grow;
        if at.is_none() {
            if let Some(Some(o)) = Fs::slot(fd).and_then(|i| self.fds.get_mut(i)) {
                o.pos = end as u64;
            }
        }
        put(mem, out, &(len as u32).to_le_bytes())
    }

    /// `fd_seek`.
    pub fn seek(&mut self, mem: &mut [u8], fd: i32, offset: i64, whence: i32, out: u32) -> i32 {
        let open = match self.open_of(fd) {
            Ok(o) => o,
            Err(x) => return x,
        };
        let Some(size) = self.data(open.node).map(|d| d.len() as i64) else {
            return e::ISDIR;
        };
        let base = match whence {
            0 => 0,
            1 => open.pos as i64,
            2 => size,
            _ => return e::INVAL,
        };
        let Some(pos) = base.checked_add(offset).filter(|p| *p >= 0) else {
            return e::INVAL;
        };
        if let Some(Some(o)) = Fs::slot(fd).and_then(|i| self.fds.get_mut(i)) {
            o.pos = pos as u64;
        }
        put(mem, out, &(pos as u64).to_le_bytes())
    }

    /// `fd_tell`.
    pub fn tell(&self, mem: &mut [u8], fd: i32, out: u32) -> i32 {
        match self.open_of(fd) {
            Ok(o) => put(mem, out, &o.pos.to_le_bytes()),
            Err(x) => x,
        }
    }

    fn filestat(&self, n: usize) -> [u8; 64] {
        let mut s = [0u8; 64];
        s[8..16].copy_from_slice(&(n as u64 + 1).to_le_bytes());
        let (ft, size) = match self.node(n) {
            Some(Node::Dir { .. }) => (FILETYPE_DIRECTORY, 0),
            Some(Node::Image(d)) => (FILETYPE_REGULAR_FILE, d.len()),
            Some(Node::Tmp(d)) => (FILETYPE_REGULAR_FILE, d.len()),
            None => (0, 0),
        };
        s[16] = ft;
        s[24..32].copy_from_slice(&1u64.to_le_bytes());
        s[32..40].copy_from_slice(&(size as u64).to_le_bytes());
        s
    }

    /// `fd_filestat_get`.
    pub fn fd_filestat(&self, mem: &mut [u8], fd: i32, out: u32) -> i32 {
        match self.open_of(fd) {
            Ok(o) => put(mem, out, &self.filestat(o.node)),
            Err(x) => x,
        }
    }

    /// `fd_fdstat_get`.
    pub fn fdstat(&self, mem: &mut [u8], fd: i32, out: u32) -> i32 {
        let open = match self.open_of(fd) {
            Ok(o) => o,
            Err(x) => return x,
        };
        let mut s = [0u8; 24];
        s[0] = self.filestat(open.node)[16];
        if open.append {
            s[2] = FDFLAG_APPEND as u8;
        }
        s[8..16].copy_from_slice(&ALL_RIGHTS.to_le_bytes());
        s[16..24].copy_from_slice(&ALL_RIGHTS.to_le_bytes());
        put(mem, out, &s)
    }

    /// `fd_fdstat_set_flags`: only append may change.
    pub fn set_flags(&mut self, fd: i32, flags: i32) -> i32 {
        match Fs::slot(fd).and_then(|i| self.fds.get_mut(i)) {
            Some(Some(o)) => {
                o.append = (flags as u16) & FDFLAG_APPEND != 0;
                0
            }
            _ => e::BADF,
        }
    }

    /// `fd_filestat_set_size`.
    pub fn set_size(&mut self, fd: i32, size: i64) -> i32 {
        let open = match self.open_of(fd) {
            Ok(o) => o,
            Err(x) => return x,
        };
        let used = self.tmp_used;
        let Some(Some(Node::Tmp(d))) = self.nodes.get_mut(open.node) else {
            return e::ROFS;
        };
        let Ok(size) = usize::try_from(size) else {
            return e::INVAL;
        };
        let grow = size.saturating_sub(d.len());
        if used + grow > TMP_CAP {
            return e::NOSPC;
        }
        self.tmp_used = used + grow - d.len().saturating_sub(size);
        d.resize(size, 0);
        0
    }

    /// `path_filestat_get`.
    pub fn path_filestat(&self, mem: &mut [u8], fd: i32, path: u32, len: u32, out: u32) -> i32 {
        let Some(p) = get(mem, path, len) else {
            return e::FAULT;
        };
        match self.resolve(fd, p) {
            Ok((_, _, Some(n))) => put(mem, out, &self.filestat(n)),
            Ok((_, _, None)) => e::NOENT,
            Err(x) => x,
        }
    }

    /// `path_create_directory`.
    pub fn mkdir(&mut self, mem: &mut [u8], fd: i32, path: u32, len: u32) -> i32 {
        let Some(p) = get(mem, path, len) else {
            return e::FAULT;
        };
        match self.resolve(fd, p) {
            Ok((_, _, Some(_))) => e::EXIST,
            Ok((dir, Some(name), None)) => {
                if !self.writable_dir(dir) {
                    return e::ROFS;
                }
                let n = self.add(Node::Dir {
                    children: BTreeMap::new(),
                    parent: dir,
                    writable: true,
                });
                self.link(dir, &name, n);
                0
            }
            Ok(_) => e::INVAL,
            Err(x) => x,
        }
    }

    fn remove(&mut self, dir: usize, name: &str, n: usize) {
        if let Some(Some(Node::Dir { children, .. })) = self.nodes.get_mut(dir) {
            children.remove(name);
        }
        if let Some(Some(Node::Tmp(_))) = self.nodes.get(n) {
            // Freed now, or when the last descriptor on it closes.
            self.orphans.push(n);
            self.free_orphans();
        }
    }

    /// `path_unlink_file` and `path_remove_directory`.
    pub fn unlink(&mut self, mem: &mut [u8], fd: i32, path: u32, len: u32, want_dir: bool) -> i32 {
        let Some(p) = get(mem, path, len) else {
            return e::FAULT;
        };
        let (dir, name, node) = match self.resolve(fd, p) {
            Ok((d, Some(name), Some(n))) => (d, name, n),
            Ok((_, None, _)) => return e::PERM,
            Ok(_) => return e::NOENT,
            Err(x) => return x,
        };
        if !self.writable_dir(dir) {
            return e::ROFS;
        }
        match (self.node(node), want_dir) {
            (Some(Node::Dir { children, .. }), true) if !children.is_empty() => return e::NOTEMPTY,
            (Some(Node::Dir { .. }), true) => {}
            (Some(Node::Dir { .. }), false) => return e::ISDIR,
            (_, true) => return e::NOTDIR,
            _ => {}
        }
        self.remove(dir, &name, node);
        0
    }

    /// `path_rename` (within `/tmp`).
    #[allow(clippy::too_many_arguments)]
    pub fn rename(
        &mut self,
        mem: &mut [u8],
        fd: i32,
        old: u32,
        old_len: u32,
        new_fd: i32,
        new: u32,
        new_len: u32,
    ) -> i32 {
        let (Some(o), Some(n)) = (get(mem, old, old_len), get(mem, new, new_len)) else {
            return e::FAULT;
        };
        let (o, n) = (o.to_vec(), n.to_vec());
        let (odir, oname, onode) = match self.resolve(fd, &o) {
            Ok((d, Some(name), Some(node))) => (d, name, node),
            Ok(_) => return e::NOENT,
            Err(x) => return x,
        };
        let (ndir, nname, nnode) = match self.resolve(new_fd, &n) {
            Ok((d, Some(name), node)) => (d, name, node),
            Ok(_) => return e::INVAL,
            Err(x) => return x,
        };
        if !self.writable_dir(odir) || !self.writable_dir(ndir) {
            return e::ROFS;
        }
        let o_is_dir = matches!(self.node(onode), Some(Node::Dir { .. }));
        // Every check before anything changes.
        if o_is_dir {
            // A directory may not move into itself.
            let mut d = ndir;
            loop {
                if d == onode {
                    return e::INVAL;
                }
                match self.node(d) {
                    Some(Node::Dir { parent, .. }) if d != 0 => d = *parent,
                    _ => break,
                }
            }
        }
        if let Some(t) = nnode {
            if t == onode {
                return 0;
            }
            match (self.node(t), o_is_dir) {
                (Some(Node::Dir { children, .. }), true) if !children.is_empty() => {
                    return e::NOTEMPTY
                }
                (Some(Node::Dir { .. }), false) => return e::ISDIR,
                (Some(Node::Dir { .. }), true) => {}
                (_, true) => return e::NOTDIR,
                _ => {}
            }
            self.remove(ndir, &nname, t);
        }
        if o_is_dir {
            if let Some(Some(Node::Dir { parent, .. })) = self.nodes.get_mut(onode) {
                *parent = ndir;
            }
        }
        if let Some(Some(Node::Dir { children, .. })) = self.nodes.get_mut(odir) {
            children.remove(&oname);
        }
        self.link(ndir, &nname, onode);
        0
    }

    /// `fd_readdir`: entries from `cookie` on, as many as fit `len` bytes
    /// (the last may be cut, as WASI allows).
    pub fn readdir(
        &self,
        mem: &mut [u8],
        fd: i32,
        buf: u32,
        len: u32,
        cookie: u64,
        out: u32,
    ) -> i32 {
        let open = match self.open_of(fd) {
            Ok(o) => o,
            Err(x) => return x,
        };
        let Some(Node::Dir {
            children, parent, ..
        }) = self.node(open.node)
        else {
            return e::NOTDIR;
        };
        let mut list: Vec<(&str, usize)> = alloc::vec![(".", open.node), ("..", *parent)];
        list.extend(children.iter().map(|(k, v)| (k.as_str(), *v)));
        let mut bytes: Vec<u8> = Vec::new();
        for (i, (name, node)) in list.iter().enumerate().skip(cookie as usize) {
            if bytes.len() >= len as usize {
                break;
            }
            let mut d = [0u8; 24];
            d[0..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            d[8..16].copy_from_slice(&(*node as u64 + 1).to_le_bytes());
            d[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
            d[20] = self.filestat(*node)[16];
            bytes.extend_from_slice(&d);
            bytes.extend_from_slice(name.as_bytes());
        }
        bytes.truncate(len as usize);
        let r = put(mem, buf, &bytes);
        if r != 0 {
            return r;
        }
        put(mem, out, &(bytes.len() as u32).to_le_bytes())
    }

    /// `path_filestat_set_times` and `fd_filestat_set_times`: times are not
    /// kept; succeeds where the node exists.
    pub fn path_exists(&self, mem: &mut [u8], fd: i32, path: u32, len: u32) -> i32 {
        let Some(p) = get(mem, path, len) else {
            return e::FAULT;
        };
        match self.resolve(fd, p) {
            Ok((_, _, Some(_))) => 0,
            Ok(_) => e::NOENT,
            Err(x) => x,
        }
    }

    /// `path_readlink`: there are no symbolic links.
    pub fn readlink(&self, mem: &mut [u8], fd: i32, path: u32, len: u32) -> i32 {
        match self.path_exists(mem, fd, path, len) {
            0 => e::INVAL,
            x => x,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-file image: `lib/mod.py` = "x = 1\n".
    fn image() -> &'static [u8] {
        let name = b"lib/mod.py";
        let dir = b"lib";
        let data = b"x = 1\n";
        let names = 16 + 64;
        let data_at = names + dir.len() + name.len();
        let mut v = Vec::new();
        v.extend_from_slice(b"HFILES01");
        v.extend_from_slice(&2u32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        for (off, l, kind, doff, dlen) in [
            (names, dir.len(), 2u32, 0usize, 0usize),
            (names + dir.len(), name.len(), 1, data_at, data.len()),
        ] {
            v.extend_from_slice(&(off as u32).to_le_bytes());
            v.extend_from_slice(&(l as u32).to_le_bytes());
            v.extend_from_slice(&kind.to_le_bytes());
            v.extend_from_slice(&0o644u32.to_le_bytes());
            v.extend_from_slice(&(doff as u64).to_le_bytes());
            v.extend_from_slice(&(dlen as u64).to_le_bytes());
        }
        v.extend_from_slice(dir);
        v.extend_from_slice(name);
        v.extend_from_slice(data);
        alloc::boxed::Box::leak(v.into_boxed_slice())
    }

    fn path(mem: &mut [u8], p: &str) -> (u32, u32) {
        mem[1000..1000 + p.len()].copy_from_slice(p.as_bytes());
        (1000, p.len() as u32)
    }

    fn open(fs: &mut Fs, mem: &mut [u8], p: &str, oflags: i32, write: bool) -> Result<i32, i32> {
        let (ptr, len) = path(mem, p);
        let rights = if write { RIGHT_FD_WRITE as i64 | 2 } else { 2 };
        match fs.path_open(mem, ROOT_FD, ptr, len, oflags, rights, 0, 0) {
            0 => Ok(i32::from_le_bytes(mem[0..4].try_into().unwrap())),
            x => Err(x),
        }
    }

    fn read_all(fs: &mut Fs, mem: &mut [u8], fd: i32) -> Vec<u8> {
        mem[16..20].copy_from_slice(&2000u32.to_le_bytes());
        mem[20..24].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(fs.read(mem, fd, 16, 1, None, 8), 0);
        let n = u32::from_le_bytes(mem[8..12].try_into().unwrap()) as usize;
        mem[2000..2000 + n].to_vec()
    }

    fn write_all(fs: &mut Fs, mem: &mut [u8], fd: i32, data: &[u8]) -> i32 {
        mem[3000..3000 + data.len()].copy_from_slice(data);
        mem[16..20].copy_from_slice(&3000u32.to_le_bytes());
        mem[20..24].copy_from_slice(&(data.len() as u32).to_le_bytes());
        fs.write(mem, fd, 16, 1, None, 8)
    }

    #[test]
    fn reads_mounted_files_and_refuses_writes() {
        let mut fs = Fs::new();
        fs.mount("/var/task", image()).unwrap();
        let mut mem = alloc::vec![0u8; 8192];
        let fd = open(&mut fs, &mut mem, "var/task/lib/mod.py", 0, false).unwrap();
        assert_eq!(read_all(&mut fs, &mut mem, fd), b"x = 1\n");
        assert_eq!(read_all(&mut fs, &mut mem, fd), b"");
        assert_eq!(
            open(&mut fs, &mut mem, "var/task/lib/mod.py", 0, true),
            Err(e::ROFS)
        );
        assert_eq!(
            open(
                &mut fs,
                &mut mem,
                "var/task/new.py",
                OFLAG_CREAT as i32,
                true
            ),
            Err(e::ROFS)
        );
        assert_eq!(
            open(&mut fs, &mut mem, "var/task/nope.py", 0, false),
            Err(e::NOENT)
        );
        assert_eq!(
            open(&mut fs, &mut mem, "../etc/passwd", 0, false),
            Err(e::NOTCAPABLE)
        );
        assert_eq!(
            open(&mut fs, &mut mem, "var/task/lib/mod.py/x", 0, false),
            Err(e::NOTDIR)
        );
        let (p, l) = path(&mut mem, "var/task/lib");
        assert_eq!(fs.path_filestat(&mut mem, ROOT_FD, p, l, 100), 0);
        assert_eq!(mem[116], FILETYPE_DIRECTORY);
    }

    #[test]
    fn tmp_is_writable_capped_and_listable() {
        let mut fs = Fs::new();
        let mut mem = alloc::vec![0u8; 8192];
        let fd = open(&mut fs, &mut mem, "tmp/a.txt", OFLAG_CREAT as i32, true).unwrap();
        assert_eq!(write_all(&mut fs, &mut mem, fd, b"hello"), 0);
        assert_eq!(fs.seek(&mut mem, fd, 0, 0, 8), 0);
        assert_eq!(read_all(&mut fs, &mut mem, fd), b"hello");
        assert_eq!(fs.close(fd), 0);
        assert_eq!(fs.close(fd), e::BADF);
        let dir = open(&mut fs, &mut mem, "tmp", OFLAG_DIRECTORY as i32, false).unwrap();
        assert_eq!(fs.readdir(&mut mem, dir, 4000, 512, 0, 8), 0);
        let used = u32::from_le_bytes(mem[8..12].try_into().unwrap()) as usize;
        let listing = &mem[4000..4000 + used];
        assert!(listing.windows(5).any(|w| w == b"a.txt"));
        // Rename, then unlink.
        let (o, ol) = path(&mut mem, "tmp/a.txt");
        mem[1100..1109].copy_from_slice(b"tmp/b.txt");
        assert_eq!(fs.rename(&mut mem, ROOT_FD, o, ol, ROOT_FD, 1100, 9), 0);
        assert_eq!(
            open(&mut fs, &mut mem, "tmp/a.txt", 0, false),
            Err(e::NOENT)
        );
        let (p, l) = path(&mut mem, "tmp/b.txt");
        assert_eq!(fs.unlink(&mut mem, ROOT_FD, p, l, false), 0);
        assert_eq!(fs.tmp_used, 0);
        // The cap.
        let fd = open(&mut fs, &mut mem, "tmp/big", OFLAG_CREAT as i32, true).unwrap();
        assert_eq!(fs.set_size(fd, TMP_CAP as i64 + 1), e::NOSPC);
        assert_eq!(fs.set_size(fd, TMP_CAP as i64), 0);
        assert_eq!(
            write_all(&mut fs, &mut mem, fd, b"x"),
            0,
            "overwrites within the size"
        );
        assert_eq!(fs.seek(&mut mem, fd, 0, 2, 8), 0);
        assert_eq!(write_all(&mut fs, &mut mem, fd, b"x"), e::NOSPC);
    }

    #[test]
    fn an_unlinked_open_file_is_freed_at_its_last_close() {
        let mut fs = Fs::new();
        let mut mem = alloc::vec![0u8; 8192];
        let fd = open(&mut fs, &mut mem, "tmp/t", OFLAG_CREAT as i32, true).unwrap();
        assert_eq!(write_all(&mut fs, &mut mem, fd, b"12345"), 0);
        let (p, l) = path(&mut mem, "tmp/t");
        assert_eq!(fs.unlink(&mut mem, ROOT_FD, p, l, false), 0);
        assert_eq!(fs.tmp_used, 5, "still open: still held");
        assert_eq!(fs.seek(&mut mem, fd, 0, 0, 8), 0);
        assert_eq!(read_all(&mut fs, &mut mem, fd), b"12345");
        assert_eq!(fs.close(fd), 0);
        assert_eq!(fs.tmp_used, 0);
    }

    #[test]
    fn failed_opens_and_renames_change_nothing() {
        let mut fs = Fs::new();
        let mut mem = alloc::vec![0u8; 8192];
        let both = (OFLAG_CREAT | OFLAG_DIRECTORY) as i32;
        assert_eq!(open(&mut fs, &mut mem, "tmp/d", both, false), Err(e::ISDIR));
        assert_eq!(open(&mut fs, &mut mem, "tmp/d", 0, false), Err(e::NOENT));
        let (p, l) = path(&mut mem, "tmp/a");
        assert_eq!(fs.mkdir(&mut mem, ROOT_FD, p, l), 0);
        let (p, l) = path(&mut mem, "tmp/a/b");
        assert_eq!(fs.mkdir(&mut mem, ROOT_FD, p, l), 0);
        mem[1100..1105].copy_from_slice(b"tmp/a");
        assert_eq!(
            fs.rename(&mut mem, ROOT_FD, 1100, 5, ROOT_FD, p, l),
            e::INVAL
        );
        assert!(
            fs.path_exists(&mut mem, ROOT_FD, p, l) == 0,
            "the target survives"
        );
        // A bad result pointer: no descriptor is taken.
        let before = fs.fds.iter().flatten().count();
        let (p, l) = path(&mut mem, "tmp");
        assert_eq!(
            fs.path_open(&mut mem, ROOT_FD, p, l, 0, 2, 0, 9000),
            e::FAULT
        );
        assert_eq!(fs.fds.iter().flatten().count(), before);
    }

    #[test]
    fn bad_pointers_are_faults() {
        let mut fs = Fs::new();
        let mut mem = alloc::vec![0u8; 64];
        assert_eq!(
            fs.path_open(&mut mem, ROOT_FD, 60, 100, 0, 2, 0, 0),
            e::FAULT
        );
        assert_eq!(fs.prestat_get(&mut mem, ROOT_FD, 62), e::FAULT);
        assert_eq!(fs.read(&mut mem, 99, 0, 1, None, 0), e::BADF);
        assert_eq!(fs.read(&mut mem, i32::MIN, 0, 1, None, 0), e::BADF);
        assert_eq!(fs.close(i32::MIN), e::BADF);
    }
}
