//! A guest image: a static x86-64 ELF (Hearth's guest runtime and kernel,
//! or a test's hand-made image), loaded with linux-loader.

use std::io::Cursor;

use hearth_guest_abi::layout;
use linux_loader::loader::{elf::Elf, KernelLoader};
use sha2::{Digest, Sha256};
use vm_memory::GuestMemoryMmap;

/// Why an image cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// linux-loader refused it.
    #[error("loading the guest image: {0}")]
    Load(String),
    /// Its segments are not where the guest layout allows.
    #[error("the guest image's segments must lie between {base:#x} and the end of RAM: {0}", base = layout::IMAGE_BASE)]
    Placement(String),
}

/// A guest image and its id (SHA-256 of its bytes).
#[derive(Clone, Debug)]
pub struct GuestImage {
    elf: std::borrow::Cow<'static, [u8]>,
    id: [u8; 32],
}

/// Where an image landed.
#[derive(Clone, Copy, Debug)]
pub struct Loaded {
    /// The entry point.
    pub entry: u64,
    /// One past its last byte in memory (bss included).
    pub end: u64,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl GuestImage {
    /// An image from its ELF bytes.
    pub fn new(elf: impl Into<std::borrow::Cow<'static, [u8]>>) -> GuestImage {
        let elf = elf.into();
        let id = Sha256::digest(&elf).into();
        GuestImage { elf, id }
    }

    /// SHA-256 of the image.
    pub fn id(&self) -> [u8; 32] {
        self.id
    }

    /// The loadable segments' span, from the program headers (linux-loader
    /// skips segments with no file bytes, such as `.bss`, so it cannot say
    /// where the image ends).
    fn span(&self) -> Result<(u64, u64), ImageError> {
        let b = &self.elf;
        let bad = || ImageError::Load("malformed ELF program headers".into());
        let phoff = u64_at(b, 0x20).ok_or_else(bad)? as usize;
        let phentsize = u16_at(b, 0x36).ok_or_else(bad)? as usize;
        let phnum = u16_at(b, 0x38).ok_or_else(bad)? as usize;
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        for i in 0..phnum {
            let at = phoff
                .checked_add(i.checked_mul(phentsize).ok_or_else(bad)?)
                .ok_or_else(bad)?;
            if u32_at(b, at).ok_or_else(bad)? != 1 {
                continue; // not PT_LOAD
            }
            let paddr = u64_at(b, at + 0x18).ok_or_else(bad)?;
            let memsz = u64_at(b, at + 0x28).ok_or_else(bad)?;
            lo = lo.min(paddr);
            hi = hi.max(paddr.checked_add(memsz).ok_or_else(bad)?);
        }
        if lo == u64::MAX {
            return Err(ImageError::Load("no loadable segment".into()));
        }
        Ok((lo, hi))
    }

    /// Loads the image into `mem` (RAM of `mem_size` bytes).
    pub fn load(&self, mem: &GuestMemoryMmap, mem_size: u64) -> Result<Loaded, ImageError> {
        let (lo, hi) = self.span()?;
        if lo < layout::IMAGE_BASE || hi > mem_size {
            return Err(ImageError::Placement(format!("{lo:#x}..{hi:#x}")));
        }
        let r = Elf::load(mem, None, &mut Cursor::new(&self.elf[..]), None)
            .map_err(|e| ImageError::Load(e.to_string()))?;
        Ok(Loaded {
            entry: r.kernel_load.0,
            end: hi,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestAddress;

    /// A minimal ELF64 with one PT_LOAD at `vaddr` holding `code`, plus a
    /// bss of `bss` bytes.
    pub(crate) fn tiny_elf(vaddr: u64, code: &[u8], bss: u64) -> Vec<u8> {
        let mut e = vec![0u8; 0x78];
        e[0..4].copy_from_slice(b"\x7fELF");
        e[4] = 2; // 64-bit
        e[5] = 1; // little-endian
        e[6] = 1;
        e[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        e[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        e[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
        e[0x18..0x20].copy_from_slice(&vaddr.to_le_bytes()); // entry
        e[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes()); // phoff
        e[0x34..0x36].copy_from_slice(&0x40u16.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let ph = 0x40;
        e[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
        e[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes());
        e[ph + 8..ph + 0x10].copy_from_slice(&0x1000u64.to_le_bytes());
        for o in [0x10, 0x18] {
            e[ph + o..ph + o + 8].copy_from_slice(&vaddr.to_le_bytes());
        }
        e[ph + 0x20..ph + 0x28].copy_from_slice(&(code.len() as u64).to_le_bytes());
        e[ph + 0x28..ph + 0x30].copy_from_slice(&(code.len() as u64 + bss).to_le_bytes());
        e[ph + 0x30..ph + 0x38].copy_from_slice(&0x1000u64.to_le_bytes());
        e.resize(0x1000, 0);
        e.extend_from_slice(code);
        e
    }

    #[test]
    fn loads_and_counts_bss() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap();
        let img = GuestImage::new(tiny_elf(0x400000, &[0xf4; 16], 0x100));
        let l = img.load(&mem, 64 << 20).unwrap();
        assert_eq!((l.entry, l.end), (0x400000, 0x400110));
        let low = GuestImage::new(tiny_elf(0x1000, &[0xf4], 0));
        assert!(matches!(
            low.load(&mem, 64 << 20),
            Err(ImageError::Placement(_))
        ));
        assert!(GuestImage::new(vec![1, 2, 3]).load(&mem, 64 << 20).is_err());
    }
}
