//! Snapshot files: a VM's memory pages and vCPU state, versioned and
//! checksummed, written atomically, verified before they are ever mapped.
//!
//! ```text
//! 0     header (256 bytes): magic "HRTHSNAP", format version, kind,
//!       ABI version, memory size, this snapshot's id, its parent's id,
//!       guest image id, CPU signature, module SHA-256 and length, a key
//!       digest, run count, state length, data offset and length, a
//!       CRC32C of the whole file (computed with that field zero), and
//!       where the guest image ends
//! 256   vCPU state (`VcpuState::to_bytes`)
//! ...   the page runs: (guest-physical address, length, file offset) each
//! data  at a page-aligned offset: the runs' pages, back to back
//! ```
//!
//! A **base** snapshot holds every non-zero page of a booted VM. A
//! **layer** (a function snapshot) holds only the pages that differ from
//! its base, and names the base by id: restoring maps the base's runs,
//! then the layer's over them. Zero pages are never stored: restored RAM
//! starts as anonymous zero memory.
//!
//! This module only reads and writes files; `Vm` decides what goes in.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::memory::FileRun;
use crate::sys::FileView;
use crate::vcpu::VcpuState;

/// "HRTHSNAP".
const MAGIC: &[u8; 8] = b"HRTHSNAP";
/// Bumped whenever the format changes; older files are refused.
pub const FORMAT_VERSION: u32 = 2;
const HEADER_LEN: usize = 256;
const CHECKSUM_AT: usize = 224;
const PAGE: u64 = 4096;
/// The most runs a file may hold (each is one mapping per restored VM).
pub const MAX_RUNS: usize = 4096;

/// Why a snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing the file failed.
    #[error("snapshot {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Not a Hearth snapshot, or another format version.
    #[error("not a Hearth snapshot of format {FORMAT_VERSION}: {0}")]
    Format(String),
    /// Shorter or longer than its header says.
    #[error("the snapshot is truncated or padded: {0} bytes, the header says {1}")]
    Truncated(u64, u64),
    /// The checksum does not match the contents.
    #[error("the snapshot is corrupt: checksum {found:#010x}, expected {expected:#010x}")]
    Checksum {
        /// Computed over the file.
        found: u32,
        /// Recorded in the header.
        expected: u32,
    },
    /// Its index is inconsistent (runs out of order, outside memory, …).
    #[error("the snapshot's page index is invalid: {0}")]
    Index(String),
    /// It does not fit what it is restored with (another image, CPU, base).
    #[error("the snapshot does not match: {0}")]
    Mismatch(String),
}

/// Which kind of snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Every non-zero page of a booted guest, at `BaseReady`.
    Base,
    /// The pages that differ from a base, at the function's `StdinWait`.
    Layer,
}

/// What a snapshot says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Base or layer.
    pub kind: Kind,
    /// The guest ABI version it was taken with.
    pub abi_version: u32,
    /// RAM size.
    pub mem_size: u64,
    /// This snapshot's random id.
    pub id: [u8; 16],
    /// A layer's base (zero for a base).
    pub parent_id: [u8; 16],
    /// SHA-256 of the guest image.
    pub image_id: [u8; 32],
    /// The CPU signature of the host that took it.
    pub cpu_signature: [u8; 32],
    /// A layer's module: its SHA-256 (zero for a base).
    pub module_sha256: [u8; 32],
    /// A layer's module length.
    pub module_len: u64,
    /// A digest of whatever else the snapshot depends on (the config the
    /// module was loaded with, the engine), chosen by the caller.
    pub key: [u8; 32],
    /// Where the guest image ends in memory (the layout follows from it).
    pub image_end: u64,
}

/// A verified snapshot file, open, with its index and vCPU state.
#[derive(Debug)]
pub struct Snapshot {
    path: PathBuf,
    file: File,
    /// The whole file, mapped read-only: a reset copies pages back from it.
    view: FileView,
    /// What it says about itself.
    pub header: Header,
    /// Its page runs, with their file offsets.
    pub runs: Vec<FileRun>,
    /// The vCPU state.
    pub vcpu: VcpuState,
    /// Bytes of page data.
    pub data_len: u64,
}

/// The header and index decoded from a file's first bytes.
#[derive(Debug)]
pub struct Prefix {
    /// The header.
    pub header: Header,
    /// The runs.
    pub runs: Vec<FileRun>,
    /// The vCPU state.
    pub vcpu: VcpuState,
    /// Where the data starts.
    pub data_offset: u64,
    /// How long it is.
    pub data_len: u64,
    /// The recorded checksum.
    pub checksum: u32,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

fn format_err(s: impl Into<String>) -> SnapshotError {
    SnapshotError::Format(s.into())
}

fn index_err(s: impl Into<String>) -> SnapshotError {
    SnapshotError::Index(s.into())
}

/// How many bytes of a file `decode_prefix` needs, from its first
/// `HEADER_LEN` bytes.
pub fn prefix_len(first: &[u8]) -> Result<u64, SnapshotError> {
    if first.len() < HEADER_LEN || &first[0..8] != MAGIC {
        return Err(format_err("bad magic"));
    }
    let off = u64_at(first, 208);
    if off < HEADER_LEN as u64 || !off.is_multiple_of(PAGE) || off > 64 << 20 {
        return Err(format_err(format!("bad data offset {off}")));
    }
    Ok(off)
}

/// Decodes and checks the header, state and index (everything before the
/// data). Never panics, whatever `b` holds.
pub fn decode_prefix(b: &[u8]) -> Result<Prefix, SnapshotError> {
    let data_offset = prefix_len(b)?;
    if (b.len() as u64) < data_offset {
        return Err(SnapshotError::Truncated(b.len() as u64, data_offset));
    }
    let version = u32_at(b, 8);
    if version != FORMAT_VERSION {
        return Err(format_err(format!("format version {version}")));
    }
    let kind = match u32_at(b, 12) {
        1 => Kind::Base,
        2 => Kind::Layer,
        k => return Err(format_err(format!("unknown kind {k}"))),
    };
    let header = Header {
        kind,
        abi_version: u32_at(b, 16),
        mem_size: u64_at(b, 24),
        id: arr(b, 32),
        parent_id: arr(b, 48),
        image_id: arr(b, 64),
        cpu_signature: arr(b, 96),
        module_sha256: arr(b, 128),
        module_len: u64_at(b, 160),
        key: arr(b, 168),
        image_end: u64_at(b, 232),
    };
    let n_runs = u32_at(b, 200) as usize;
    let vcpu_len = u32_at(b, 204) as usize;
    let data_len = u64_at(b, 216);
    let checksum = u32_at(b, CHECKSUM_AT);
    if header.mem_size == 0 || !header.mem_size.is_multiple_of(PAGE) || header.mem_size > 1 << 40 {
        return Err(format_err(format!("memory size {}", header.mem_size)));
    }
    if n_runs > MAX_RUNS {
        return Err(index_err(format!("{n_runs} runs")));
    }
    if vcpu_len != VcpuState::SIZE {
        return Err(format_err(format!("vCPU state of {vcpu_len} bytes")));
    }
    let runs_at = HEADER_LEN + vcpu_len;
    let runs_end = runs_at + n_runs * 24;
    if runs_end as u64 > data_offset {
        return Err(index_err("the index overlaps the data"));
    }
    let vcpu =
        VcpuState::from_bytes(&b[HEADER_LEN..runs_at]).map_err(|e| format_err(e.to_string()))?;
    let mut runs = Vec::with_capacity(n_runs);
    let (mut next_gpa, mut next_off) = (0u64, data_offset);
    for i in 0..n_runs {
        let at = runs_at + i * 24;
        let r = FileRun {
            gpa: u64_at(b, at),
            len: u64_at(b, at + 8),
            file_offset: u64_at(b, at + 16),
        };
        let gpa_end = r
            .gpa
            .checked_add(r.len)
            .ok_or_else(|| index_err("run overflows"))?;
        if r.len == 0 || !r.gpa.is_multiple_of(PAGE) || !r.len.is_multiple_of(PAGE) {
            return Err(index_err(format!("run {i} is not whole pages")));
        }
        if r.gpa < next_gpa || gpa_end > header.mem_size {
            return Err(index_err(format!(
                "run {i} is out of order or outside memory"
            )));
        }
        if r.file_offset != next_off {
            return Err(index_err(format!(
                "run {i} is not where the data continues"
            )));
        }
        next_gpa = gpa_end;
        next_off += r.len;
        runs.push(r);
    }
    if next_off - data_offset != data_len {
        return Err(index_err("the runs do not add up to the data length"));
    }
    Ok(Prefix {
        header,
        runs,
        vcpu,
        data_offset,
        data_len,
        checksum,
    })
}

/// CRC32C of a file's bytes with the checksum field taken as zero; `at` is
/// the offset of `chunk` in the file.
fn crc_update(crc: u32, at: u64, chunk: &[u8]) -> u32 {
    let field = CHECKSUM_AT as u64..CHECKSUM_AT as u64 + 4;
    if at >= field.end || at + chunk.len() as u64 <= field.start {
        return crc32c::crc32c_append(crc, chunk);
    }
    let mut copy = chunk.to_vec();
    for i in field {
        if let Some(b) = i.checked_sub(at).and_then(|j| copy.get_mut(j as usize)) {
            *b = 0;
        }
    }
    crc32c::crc32c_append(crc, &copy)
}

/// Checks a whole snapshot held in memory: the prefix, the length and the
/// checksum. What `Snapshot::open` does with a file, for fuzzing and tests.
pub fn check_bytes(b: &[u8]) -> Result<Prefix, SnapshotError> {
    let p = decode_prefix(b)?;
    let want = p.data_offset + p.data_len;
    if b.len() as u64 != want {
        return Err(SnapshotError::Truncated(b.len() as u64, want));
    }
    let found = crc_update(0, 0, b);
    if found != p.checksum {
        return Err(SnapshotError::Checksum {
            found,
            expected: p.checksum,
        });
    }
    Ok(p)
}

impl Snapshot {
    /// Opens a snapshot and verifies it whole (its length, then a CRC32C
    /// over every byte) before anything can map it.
    pub fn open(path: &Path) -> Result<Snapshot, SnapshotError> {
        let io = |source| SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let mut first = vec![0u8; HEADER_LEN];
        if size < HEADER_LEN as u64 {
            return Err(SnapshotError::Truncated(size, HEADER_LEN as u64));
        }
        file.read_exact(&mut first).map_err(io)?;
        let plen = prefix_len(&first)?;
        if size < plen {
            return Err(SnapshotError::Truncated(size, plen));
        }
        let mut prefix = first;
        prefix.resize(plen as usize, 0);
        file.read_exact(&mut prefix[HEADER_LEN..]).map_err(io)?;
        let p = decode_prefix(&prefix)?;
        let want = p.data_offset + p.data_len;
        if size != want {
            return Err(SnapshotError::Truncated(size, want));
        }
        let mut crc = crc_update(0, 0, &prefix);
        let mut at = plen;
        let mut buf = vec![0u8; 1 << 20];
        while at < size {
            let n = ((size - at) as usize).min(buf.len());
            file.read_exact(&mut buf[..n]).map_err(io)?;
            crc = crc_update(crc, at, &buf[..n]);
            at += n as u64;
        }
        if crc != p.checksum {
            return Err(SnapshotError::Checksum {
                found: crc,
                expected: p.checksum,
            });
        }
        let view = FileView::new(&file).map_err(io)?;
        Ok(Snapshot {
            path: path.to_path_buf(),
            file,
            view,
            header: p.header,
            runs: p.runs,
            vcpu: p.vcpu,
            data_len: p.data_len,
        })
    }

    /// The open file, for mapping.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The page at `gpa` if a run of this snapshot holds it.
    pub fn page(&self, gpa: u64) -> Option<&[u8]> {
        let i = self.runs.partition_point(|r| r.gpa + r.len <= gpa);
        let r = self.runs.get(i).filter(|r| gpa >= r.gpa)?;
        let at = (r.file_offset + (gpa - r.gpa)) as usize;
        self.view.as_slice().get(at..at + PAGE as usize)
    }

    /// Reads the page at `gpa` as this snapshot holds it (zero if no run
    /// covers it) into `buf` (one page).
    pub fn read_page(&self, gpa: u64, buf: &mut [u8]) -> Result<(), SnapshotError> {
        match self.page(gpa) {
            Some(p) if p.len() == buf.len() => buf.copy_from_slice(p),
            Some(_) => return Err(index_err("a page read of the wrong size")),
            None => buf.fill(0),
        }
        Ok(())
    }
}

/// Writes a snapshot atomically: a temporary file in the same directory,
/// written whole, fsynced, renamed over `path`, and the directory fsynced.
/// `runs` are (guest-physical address, length) in ascending order, and
/// `page` fills one page of data for an address.
pub fn write(
    path: &Path,
    header: &Header,
    vcpu: &VcpuState,
    runs: &[(u64, u64)],
    mut page: impl FnMut(u64, &mut [u8]) -> Result<(), String>,
) -> Result<(), SnapshotError> {
    let io = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    if runs.len() > MAX_RUNS {
        return Err(index_err(format!("{} runs", runs.len())));
    }
    let state = vcpu.to_bytes();
    let index_end = (HEADER_LEN + state.len() + runs.len() * 24) as u64;
    let data_offset = index_end.div_ceil(PAGE) * PAGE;
    let data_len: u64 = runs.iter().map(|r| r.1).sum();

    let mut prefix = vec![0u8; data_offset as usize];
    prefix[0..8].copy_from_slice(MAGIC);
    let put32 =
        |p: &mut Vec<u8>, at: usize, v: u32| p[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 =
        |p: &mut Vec<u8>, at: usize, v: u64| p[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put32(&mut prefix, 8, FORMAT_VERSION);
    put32(
        &mut prefix,
        12,
        if header.kind == Kind::Base { 1 } else { 2 },
    );
    put32(&mut prefix, 16, header.abi_version);
    put64(&mut prefix, 24, header.mem_size);
    prefix[32..48].copy_from_slice(&header.id);
    prefix[48..64].copy_from_slice(&header.parent_id);
    prefix[64..96].copy_from_slice(&header.image_id);
    prefix[96..128].copy_from_slice(&header.cpu_signature);
    prefix[128..160].copy_from_slice(&header.module_sha256);
    put64(&mut prefix, 160, header.module_len);
    prefix[168..200].copy_from_slice(&header.key);
    put32(&mut prefix, 200, runs.len() as u32);
    put32(&mut prefix, 204, state.len() as u32);
    put64(&mut prefix, 208, data_offset);
    put64(&mut prefix, 216, data_len);
    put64(&mut prefix, 232, header.image_end);
    prefix[HEADER_LEN..HEADER_LEN + state.len()].copy_from_slice(&state);
    let mut off = data_offset;
    for (i, &(gpa, len)) in runs.iter().enumerate() {
        let at = HEADER_LEN + state.len() + i * 24;
        put64(&mut prefix, at, gpa);
        put64(&mut prefix, at + 8, len);
        put64(&mut prefix, at + 16, off);
        off += len;
    }

    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("snapshot"),
        rand::random::<u64>()
    ));
    let result = (|| -> Result<(), SnapshotError> {
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&prefix).map_err(io)?;
        let mut crc = crc_update(0, 0, &prefix);
        let mut buf = vec![0u8; PAGE as usize];
        let mut at = data_offset;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
        for &(gpa, len) in runs {
            let mut a = gpa;
            while a < gpa + len {
                page(a, &mut buf).map_err(|e| index_err(format!("reading page {a:#x}: {e}")))?;
                w.write_all(&buf).map_err(io)?;
                crc = crc_update(crc, at, &buf);
                a += PAGE;
                at += PAGE;
            }
        }
        w.flush().map_err(io)?;
        drop(w);
        f.seek(SeekFrom::Start(CHECKSUM_AT as u64)).map_err(io)?;
        f.write_all(&crc.to_le_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Groups sorted page addresses into runs, merging runs separated by at
/// most `max_gap` pages (the gap's pages are stored too: fewer runs mean
/// fewer mappings per restored VM), and then merging the closest runs
/// until at most `max_runs` remain.
pub fn coalesce(pages: &[u64], max_gap: u64, max_runs: usize) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &p in pages {
        match runs.last_mut() {
            Some((start, len)) if p >= *start + *len && p - (*start + *len) <= max_gap * PAGE => {
                *len = p + PAGE - *start;
            }
            _ => runs.push((p, PAGE)),
        }
    }
    while runs.len() > max_runs.max(1) {
        // Merge the pair with the smallest gap.
        let (i, _) = runs
            .windows(2)
            .enumerate()
            .map(|(i, w)| (i, w[1].0 - (w[0].0 + w[0].1)))
            .min_by_key(|&(_, gap)| gap)
            .unwrap_or((0, 0));
        let next = runs.remove(i + 1);
        runs[i].1 = next.0 + next.1 - runs[i].0;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: Kind) -> Header {
        Header {
            kind,
            abi_version: 1,
            mem_size: 64 << 20,
            id: [1; 16],
            parent_id: [0; 16],
            image_id: [2; 32],
            cpu_signature: [3; 32],
            module_sha256: [0; 32],
            module_len: 0,
            key: [4; 32],
            image_end: 0x500000,
        }
    }

    fn write_sample(dir: &Path) -> PathBuf {
        let p = dir.join("s.snap");
        let mut st = VcpuState::default();
        st.regs.rip = 0x400000;
        write(
            &p,
            &header(Kind::Base),
            &st,
            &[(0x1000, 0x2000), (0x10000, 0x1000)],
            |a, b| {
                b.fill((a >> 12) as u8);
                Ok(())
            },
        )
        .unwrap();
        p
    }

    #[test]
    fn write_then_open() {
        let d = tempfile::tempdir().unwrap();
        let p = write_sample(d.path());
        let s = Snapshot::open(&p).unwrap();
        assert_eq!(s.header, header(Kind::Base));
        assert_eq!(s.vcpu.regs.rip, 0x400000);
        assert_eq!(s.runs.len(), 2);
        assert_eq!(s.runs[0].gpa, 0x1000);
        let mut page = vec![0u8; 4096];
        s.read_page(0x2000, &mut page).unwrap();
        assert!(page.iter().all(|b| *b == 2));
        s.read_page(0x5000, &mut page).unwrap();
        assert!(page.iter().all(|b| *b == 0));
        assert!(s.page(0x1000).unwrap().iter().all(|b| *b == 1));
        assert!(s.page(0x10000).unwrap().iter().all(|b| *b == 16));
        assert!(s.page(0x3000).is_none() && s.page(0x11000).is_none() && s.page(0).is_none());
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        check_bytes(&std::fs::read(&p).unwrap()).unwrap();
    }

    #[test]
    fn corruption_and_truncation_are_caught() {
        let d = tempfile::tempdir().unwrap();
        let p = write_sample(d.path());
        let good = std::fs::read(&p).unwrap();
        for at in [40usize, 300, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            std::fs::write(&p, &bad).unwrap();
            let e = Snapshot::open(&p).unwrap_err();
            assert!(
                matches!(e, SnapshotError::Checksum { .. }),
                "byte {at}: {e}"
            );
        }
        std::fs::write(&p, &good[..good.len() - 4096]).unwrap();
        assert!(matches!(
            Snapshot::open(&p).unwrap_err(),
            SnapshotError::Truncated(..)
        ));
        std::fs::write(&p, &good[..100]).unwrap();
        assert!(matches!(
            Snapshot::open(&p).unwrap_err(),
            SnapshotError::Truncated(..)
        ));
        std::fs::write(
            &p,
            b"not a snapshot at all, not even close to one, and long enough?",
        )
        .unwrap();
        assert!(Snapshot::open(&p).is_err());
    }

    #[test]
    fn bad_index_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        let st = VcpuState::default();
        // Runs out of order.
        write(
            &p,
            &header(Kind::Base),
            &st,
            &[(0x3000, 0x1000), (0x1000, 0x1000)],
            |_, b| {
                b.fill(1);
                Ok(())
            },
        )
        .unwrap();
        assert!(matches!(
            Snapshot::open(&p).unwrap_err(),
            SnapshotError::Index(_)
        ));
        // Beyond memory.
        write(
            &p,
            &header(Kind::Base),
            &st,
            &[(64 << 20, 0x1000)],
            |_, b| {
                b.fill(1);
                Ok(())
            },
        )
        .unwrap();
        assert!(matches!(
            Snapshot::open(&p).unwrap_err(),
            SnapshotError::Index(_)
        ));
    }

    #[test]
    fn coalescing() {
        let p = |i: u64| i * PAGE;
        assert_eq!(
            coalesce(&[p(1), p(2), p(3), p(10)], 0, 100),
            vec![(p(1), p(3)), (p(10), p(1))]
        );
        assert_eq!(coalesce(&[p(1), p(3)], 1, 100), vec![(p(1), p(3))]);
        assert_eq!(
            coalesce(&[p(1), p(5), p(6), p(20)], 0, 2),
            vec![(p(1), p(6)), (p(20), p(1))]
        );
        assert_eq!(coalesce(&[], 0, 2), vec![]);
    }
}
