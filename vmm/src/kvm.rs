//! The KVM handle: `/dev/kvm`, the capabilities Hearth relies on, the CPUID
//! it gives every vCPU, and a signature of that CPUID so that a snapshot
//! taken on one CPU is never restored on another.

use std::sync::Arc;

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Cap, Kvm as KvmFd};
use sha2::{Digest, Sha256};

/// Why KVM cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// `/dev/kvm` is missing: no hardware virtualisation, or the module is
    /// not loaded.
    #[error("/dev/kvm does not exist: this host has no KVM (hardware virtualisation off, or the kvm module not loaded)")]
    Missing,
    /// `/dev/kvm` exists but this process may not open it.
    #[error("no access to /dev/kvm: run as root, or as a user in the group that owns /dev/kvm")]
    Denied,
    /// Another failure opening or querying KVM.
    #[error("KVM: {0}")]
    Other(#[source] std::io::Error),
    /// A capability Hearth needs is not offered.
    #[error("KVM lacks a capability Hearth needs: {0}")]
    Capability(&'static str),
}

fn io(e: kvm_ioctls::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.errno())
}

/// An open `/dev/kvm` with what Hearth learned from it. Shared by every VM.
#[derive(Debug)]
pub struct Kvm {
    pub(crate) fd: KvmFd,
    pub(crate) cpuid: CpuId,
    /// SHA-256 of the CPUID entries: part of every snapshot's key.
    cpu_signature: [u8; 32],
    /// Whether memory slots can be read-only (`KVM_CAP_READONLY_MEM`).
    pub(crate) readonly_mem: bool,
    /// Whether registers, special registers and events can be handed to the
    /// next `KVM_RUN` through `kvm_run` (`KVM_CAP_SYNC_REGS`), saving three
    /// ioctls per reset.
    pub(crate) sync_regs: bool,
    /// Whether the "zap every shadow page when a memslot goes" quirk can be
    /// turned off (`KVM_CAP_DISABLE_QUIRKS2`), so that unmapping one slot
    /// invalidates only that slot's mappings.
    pub(crate) slot_zap_quirk: bool,
}

impl Kvm {
    /// Opens `/dev/kvm`, checks it, and reads the supported CPUID.
    pub fn open() -> Result<Arc<Kvm>, KvmError> {
        let fd = KvmFd::new().map_err(|e| match e.errno() {
            libc::ENOENT => KvmError::Missing,
            libc::EACCES | libc::EPERM => KvmError::Denied,
            _ => KvmError::Other(io(e)),
        })?;
        for (cap, name) in [
            (Cap::UserMemory, "user memory"),
            (Cap::Xsave, "xsave"),
            (Cap::Xcrs, "xcrs"),
        ] {
            if !fd.check_extension(cap) {
                return Err(KvmError::Capability(name));
            }
        }
        let readonly_mem = fd.check_extension(Cap::ReadonlyMem);
        let cpuid = fd
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| KvmError::Other(io(e)))?;
        let cpu_signature = signature(cpuid.as_slice());
        let sync_regs = fd.check_extension_int(Cap::SyncRegs) & 7 == 7;
        let quirks = fd.check_extension_raw(u64::from(kvm_bindings::KVM_CAP_DISABLE_QUIRKS2));
        let slot_zap_quirk =
            quirks > 0 && quirks as u32 & kvm_bindings::KVM_X86_QUIRK_SLOT_ZAP_ALL != 0;
        Ok(Arc::new(Kvm {
            fd,
            cpuid,
            cpu_signature,
            readonly_mem,
            sync_regs,
            slot_zap_quirk,
        }))
    }

    /// Whether `/dev/kvm` can be opened here, and if not, why (for tests
    /// and commands that skip or explain).
    pub fn available() -> Result<(), KvmError> {
        Kvm::open().map(|_| ())
    }

    /// The CPU signature snapshots are keyed on.
    pub fn cpu_signature(&self) -> [u8; 32] {
        self.cpu_signature
    }
}

/// The CPUID leaves a snapshot's state depends on: the vendor, family and
/// model, and the feature and XSAVE leaves. Fields that name the CPU the
/// query ran on (APIC ids, core ids) are left out, or two processes on two
/// cores of one host would disagree.
fn signature(entries: &[kvm_bindings::kvm_cpuid_entry2]) -> [u8; 32] {
    let mut h = Sha256::new();
    for e in entries {
        let fields: &[u32] = match (e.function, e.index) {
            (0, _) => &[e.ebx, e.ecx, e.edx],
            (1, _) => &[e.eax, e.ecx, e.edx],
            (7, 0) | (7, 1) => &[e.eax, e.ebx, e.ecx, e.edx],
            (0xd, 0) => &[e.eax, e.ecx, e.edx],
            (0xd, 1) => &[e.eax],
            (0x8000_0001, _) => &[e.ecx, e.edx],
            _ => continue,
        };
        h.update(e.function.to_le_bytes());
        h.update(e.index.to_le_bytes());
        for v in fields {
            h.update(v.to_le_bytes());
        }
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn leaf(function: u32, ebx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            ebx,
            eax: 0x0a0f11,
            ecx: 1,
            edx: 2,
            ..Default::default()
        }
    }

    #[test]
    fn signature_ignores_the_apic_id_but_not_features() {
        // Leaf 1's EBX holds the initial APIC id of the CPU that answered.
        let a = signature(&[leaf(1, 0x0100_0800)]);
        let b = signature(&[leaf(1, 0x0300_0800)]);
        assert_eq!(a, b);
        let mut c = leaf(1, 0x0100_0800);
        c.ecx ^= 1 << 28; // AVX
        assert_ne!(a, signature(&[c]));
    }
}
