//! The vCPU thread's seccomp filter: data in `resources/seccomp/vcpu.json`,
//! compiled by seccompiler once per process.
//!
//! It is an allow list of what a thread that runs VMs needs and nothing
//! else: `KVM_RUN` and the vCPU state ioctls (by request number), creating a
//! VM from already-open files (the VM, its vCPU, its memory slots, CPUID),
//! mapping those files, the dirty-page scan, `madvise` for resets, the
//! deadline timer, its event loop and the allocator. Opening files, sockets,
//! new processes or threads, signals to others and executable memory are all
//! refused: files are opened, and snapshots written, on other threads. A refused call fails with `EPERM`
//! instead of killing the process: `hearth serve` hosts many tenants' VMs,
//! and a bug on one VM's thread must not take the others down (the allow
//! list, not the action, is what confines).

use std::io::Cursor;
use std::sync::OnceLock;

use seccompiler::{BpfProgram, TargetArch};

const POLICY_JSON: &str = include_str!("../resources/seccomp/vcpu.json");

/// Why the filter could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The policy does not compile (a bug in the JSON).
    #[error("the vCPU seccomp policy: {0}")]
    Policy(String),
    /// The kernel refused it.
    #[error("installing the vCPU seccomp filter: {0}")]
    Install(String),
}

/// The compiled filter.
pub fn program() -> Result<&'static BpfProgram, SeccompError> {
    static PROGRAM: OnceLock<Result<BpfProgram, String>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| {
            if std::env::consts::ARCH != "x86_64" {
                return Err(format!("no vCPU policy for {}", std::env::consts::ARCH));
            }
            let doc: serde_json::Value =
                serde_json::from_str(POLICY_JSON).map_err(|e| e.to_string())?;
            let section = doc.get("x86_64").ok_or("no x86_64 section")?;
            let text = serde_json::to_vec(section).map_err(|e| e.to_string())?;
            let mut compiled =
                seccompiler::compile_from_json(Cursor::new(text), TargetArch::x86_64)
                    .map_err(|e| e.to_string())?;
            compiled
                .remove("vcpu")
                .ok_or_else(|| "no filter named vcpu".to_string())
        })
        .as_ref()
        .map_err(|e| SeccompError::Policy(e.clone()))
}

/// Installs the filter on the calling thread, for the rest of its life.
pub fn apply_to_this_thread() -> Result<(), SeccompError> {
    let p = program()?;
    seccompiler::apply_filter(p).map_err(|e| SeccompError::Install(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::{
        kvm_debugregs, kvm_msrs, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave,
    };
    use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iow_nr, ioctl_iowr_nr};

    const KVMIO: u32 = 0xAE;
    ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
    ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
    ioctl_iow_nr!(KVM_SET_REGS, KVMIO, 0x82, kvm_regs);
    ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
    ioctl_iow_nr!(KVM_SET_SREGS, KVMIO, 0x84, kvm_sregs);
    ioctl_ior_nr!(KVM_GET_XSAVE, KVMIO, 0xa4, kvm_xsave);
    ioctl_iow_nr!(KVM_SET_XSAVE, KVMIO, 0xa5, kvm_xsave);
    ioctl_ior_nr!(KVM_GET_XCRS, KVMIO, 0xa6, kvm_xcrs);
    ioctl_iow_nr!(KVM_SET_XCRS, KVMIO, 0xa7, kvm_xcrs);
    ioctl_ior_nr!(KVM_GET_VCPU_EVENTS, KVMIO, 0x9f, kvm_vcpu_events);
    ioctl_iow_nr!(KVM_SET_VCPU_EVENTS, KVMIO, 0xa0, kvm_vcpu_events);
    ioctl_ior_nr!(KVM_GET_DEBUGREGS, KVMIO, 0xa1, kvm_debugregs);
    ioctl_iow_nr!(KVM_SET_DEBUGREGS, KVMIO, 0xa2, kvm_debugregs);
    ioctl_iowr_nr!(KVM_GET_MSRS, KVMIO, 0x88, kvm_msrs);
    ioctl_iow_nr!(KVM_SET_MSRS, KVMIO, 0x89, kvm_msrs);
    ioctl_io_nr!(KVM_CREATE_VM, KVMIO, 0x01);
    ioctl_io_nr!(KVM_GET_VCPU_MMAP_SIZE, KVMIO, 0x04);
    ioctl_io_nr!(KVM_CREATE_VCPU, KVMIO, 0x41);
    ioctl_iow_nr!(
        KVM_SET_USER_MEMORY_REGION,
        KVMIO,
        0x46,
        kvm_bindings::kvm_userspace_memory_region
    );
    ioctl_iow_nr!(KVM_SET_CPUID2, KVMIO, 0x90, kvm_bindings::kvm_cpuid2);
    ioctl_iow_nr!(KVM_ENABLE_CAP, KVMIO, 0xa3, kvm_bindings::kvm_enable_cap);

    #[test]
    fn policy_compiles() {
        assert!(!program().unwrap().is_empty());
    }

    #[test]
    fn ioctl_numbers_in_the_policy_are_the_kernel_ones() {
        let doc: serde_json::Value = serde_json::from_str(POLICY_JSON).unwrap();
        let listed: Vec<u64> = doc["x86_64"]["vcpu"]["filter"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["syscall"] == "ioctl")
            .map(|r| r["args"][0]["val"].as_u64().unwrap())
            .collect();
        for want in [
            KVM_RUN(),
            KVM_GET_REGS(),
            KVM_SET_REGS(),
            KVM_GET_SREGS(),
            KVM_SET_SREGS(),
            KVM_GET_XSAVE(),
            KVM_SET_XSAVE(),
            KVM_GET_XCRS(),
            KVM_SET_XCRS(),
            KVM_GET_VCPU_EVENTS(),
            KVM_SET_VCPU_EVENTS(),
            KVM_GET_DEBUGREGS(),
            KVM_SET_DEBUGREGS(),
            KVM_GET_MSRS(),
            KVM_SET_MSRS(),
            KVM_CREATE_VM(),
            KVM_GET_VCPU_MMAP_SIZE(),
            KVM_CREATE_VCPU(),
            KVM_SET_USER_MEMORY_REGION(),
            KVM_SET_CPUID2(),
            KVM_ENABLE_CAP(),
        ] {
            assert!(
                listed.contains(&u64::from(want as u32)),
                "{want:#x} missing"
            );
        }
    }

    #[test]
    fn a_filtered_thread_cannot_open_files() {
        let r = std::thread::spawn(|| {
            apply_to_this_thread().unwrap();
            std::fs::File::open("/etc/hostname").map(|_| ())
        })
        .join()
        .unwrap();
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EPERM));
    }

    #[test]
    fn a_filtered_thread_cannot_map_executable_memory() {
        let r = std::thread::spawn(|| {
            apply_to_this_thread().unwrap();
            #[allow(unsafe_code)]
            // SAFETY: a fresh anonymous mapping at an address the kernel
            // picks; it is refused (the point of the test).
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            (
                p == libc::MAP_FAILED,
                std::io::Error::last_os_error().raw_os_error(),
            )
        })
        .join()
        .unwrap();
        assert_eq!(r, (true, Some(libc::EPERM)));
    }
}
