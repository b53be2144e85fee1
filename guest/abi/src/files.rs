//! File images: a read-only tree of files in one blob, mapped into the
//! files window (see [`crate::layout::FILES_WINDOW_GPA`]) and read in place
//! by the guest's WASI filesystem. The host builds them (`hearth_vmm::files`)
//! from a function's code, a runtime's library or a layer.
//!
//! ```text
//! 0   magic "HFILES01"
//! 8   entry count (u32), reserved (u32)
//! 16  entries, 32 bytes each: name offset (u32), name length (u32),
//!     kind (u32: 1 file, 2 directory), mode (u32), data offset (u64),
//!     data length (u64)
//!     then the names, then the files' data
//! ```
//!
//! Offsets are from the image's start. Names are paths relative to the
//! mount point, `/`-separated, every component non-empty and neither `.`
//! nor `..`; a directory's entry comes before its children's. Every value
//! is checked where it is read, so a bad image is an error, never a fault.

/// The first 8 bytes of an image.
pub const MAGIC: &[u8; 8] = b"HFILES01";
/// Bytes per entry.
pub const ENTRY_LEN: usize = 32;
/// Bytes before the first entry.
pub const HEADER_LEN: usize = 16;

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

impl Kind {
    /// Its number in an entry.
    pub const fn code(self) -> u32 {
        match self {
            Kind::File => 1,
            Kind::Dir => 2,
        }
    }
}

/// A malformed image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadImage(pub &'static str);

impl core::fmt::Display for BadImage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "a malformed file image: {}", self.0)
    }
}

/// One entry, read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Its path below the mount point.
    pub path: &'a str,
    /// File or directory.
    pub kind: Kind,
    /// Unix permission bits, as shipped.
    pub mode: u32,
    /// A file's content (empty for a directory).
    pub data: &'a [u8],
}

/// An image, checked as far as its header.
#[derive(Clone, Copy, Debug)]
pub struct Image<'a> {
    bytes: &'a [u8],
    count: usize,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Whether `path` is a well-formed relative path.
pub fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
}

impl<'a> Image<'a> {
    /// Reads the header of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Result<Image<'a>, BadImage> {
        if bytes.get(..8) != Some(&MAGIC[..]) {
            return Err(BadImage("no HFILES01 magic"));
        }
        let count = u32_at(bytes, 8).ok_or(BadImage("truncated header"))? as usize;
        let table_end = count
            .checked_mul(ENTRY_LEN)
            .and_then(|n| n.checked_add(HEADER_LEN))
            .ok_or(BadImage("entry count overflows"))?;
        if table_end > bytes.len() {
            return Err(BadImage("the entry table runs past the image"));
        }
        Ok(Image { bytes, count })
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Entry `i`, checked.
    pub fn entry(&self, i: usize) -> Result<Entry<'a>, BadImage> {
        if i >= self.count {
            return Err(BadImage("no such entry"));
        }
        let at = HEADER_LEN + i * ENTRY_LEN;
        let b = self.bytes;
        let bad = BadImage("an entry points outside the image");
        let name_off = u32_at(b, at).ok_or(bad)? as usize;
        let name_len = u32_at(b, at + 4).ok_or(bad)? as usize;
        let kind = match u32_at(b, at + 8).ok_or(bad)? {
            1 => Kind::File,
            2 => Kind::Dir,
            _ => return Err(BadImage("an entry of unknown kind")),
        };
        let mode = u32_at(b, at + 12).ok_or(bad)?;
        let data_off = usize::try_from(u64_at(b, at + 16).ok_or(bad)?).map_err(|_| bad)?;
        let data_len = usize::try_from(u64_at(b, at + 24).ok_or(bad)?).map_err(|_| bad)?;
        let name = b
            .get(name_off..name_off.checked_add(name_len).ok_or(bad)?)
            .ok_or(bad)?;
        let path = core::str::from_utf8(name).map_err(|_| BadImage("a name is not UTF-8"))?;
        if !valid_path(path) {
            return Err(BadImage("a name is not a clean relative path"));
        }
        let data = b
            .get(data_off..data_off.checked_add(data_len).ok_or(bad)?)
            .ok_or(bad)?;
        Ok(Entry {
            path,
            kind,
            mode,
            data: if kind == Kind::Dir { &[] } else { data },
        })
    }

    /// Every entry, in order; stops at the first bad one.
    pub fn entries(&self) -> impl Iterator<Item = Result<Entry<'a>, BadImage>> + '_ {
        (0..self.count).map(|i| self.entry(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built image: dir "a", file "a/b" = "hi".
    fn sample() -> [u8; 16 + 64 + 3 + 2] {
        let mut img = [0u8; 16 + 64 + 3 + 2];
        img[..8].copy_from_slice(MAGIC);
        img[8..12].copy_from_slice(&2u32.to_le_bytes());
        let names = 16 + 64;
        let put = |img: &mut [u8], at: usize, no: u32, nl: u32, kind: u32, off: u64, len: u64| {
            img[at..at + 4].copy_from_slice(&no.to_le_bytes());
            img[at + 4..at + 8].copy_from_slice(&nl.to_le_bytes());
            img[at + 8..at + 12].copy_from_slice(&kind.to_le_bytes());
            img[at + 12..at + 16].copy_from_slice(&0o644u32.to_le_bytes());
            img[at + 16..at + 24].copy_from_slice(&off.to_le_bytes());
            img[at + 24..at + 32].copy_from_slice(&len.to_le_bytes());
        };
        put(&mut img, 16, names as u32, 1, 2, 0, 0);
        put(&mut img, 48, names as u32, 3, 1, (names + 3) as u64, 2);
        img[names..names + 3].copy_from_slice(b"a/b");
        img[names + 3..].copy_from_slice(b"hi");
        img
    }

    #[test]
    fn reads_entries() {
        let img = sample();
        let i = Image::new(&img).unwrap();
        assert_eq!(i.len(), 2);
        let a = i.entry(0).unwrap();
        assert_eq!((a.path, a.kind), ("a", Kind::Dir));
        let b = i.entry(1).unwrap();
        assert_eq!((b.path, b.kind, b.data), ("a/b", Kind::File, &b"hi"[..]));
    }

    #[test]
    fn refuses_bad_images() {
        assert!(Image::new(b"nope").is_err());
        let mut img = sample();
        img[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Image::new(&img).is_err());
        let mut img = sample();
        img[48 + 24..48 + 32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Image::new(&img).unwrap().entry(1).is_err());
        let mut img = sample();
        img[16 + 64..16 + 64 + 3].copy_from_slice(b"../");
        assert!(Image::new(&img).unwrap().entry(1).is_err());
        assert!(!valid_path("a//b") && !valid_path("/a") && !valid_path("a/./b"));
    }
}
