//! The machine's physical floor, for benchmarks: bare kvm-ioctls calls with
//! no Hearth code between them. A VM is created (VM, one memory slot, one
//! vCPU, CPUID, registers), entered, and its guest, a two-instruction loop
//! (`out dx, eax; jmp back`), exits on every iteration. What Hearth's own
//! figures are compared against, measured in the same run.

use std::sync::Arc;

use hearth_guest_abi::layout;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VcpuExit;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

use crate::kvm::Kvm;
use crate::sys::{self, Mapping};
use crate::vcpu::x86_64;

/// One floor VM's figures, ns.
#[derive(Clone, Debug, Default)]
pub struct Floor {
    /// `KVM_CREATE_VM`, the memory slot, `KVM_CREATE_VCPU`, `KVM_SET_CPUID2`
    /// and the registers.
    pub create_ns: u64,
    /// The first `KVM_RUN` until the first exit.
    pub first_run_ns: u64,
    /// Each exit and re-entry of the loop.
    pub exit_round_trips_ns: Vec<u64>,
}

const MEM: u64 = 64 << 20;

/// The guest: `mov dx, DOORBELL; out dx, eax; jmp -3`.
fn code() -> Vec<u8> {
    let mut c = vec![0x66, 0xba];
    c.extend_from_slice(&hearth_guest_abi::ports::DOORBELL_PORT.to_le_bytes());
    c.extend_from_slice(&[0xef, 0xeb, 0xfd]);
    c
}

/// Creates one floor VM, enters it, and times `exits` exit round trips.
pub fn measure(kvm: &Arc<Kvm>, exits: u32) -> Result<Floor, String> {
    // Memory with the boot tables is prepared outside the timed part: the
    // floor is KVM's cost, not writing page tables.
    let map = Mapping::anonymous(MEM as usize).map_err(|e| e.to_string())?;
    #[allow(unsafe_code)]
    // SAFETY: `map` is a live read-write mapping of `MEM` bytes that outlives
    // the view (dropped at the end of this function, after the VM).
    let region = unsafe {
        MmapRegion::build_raw(
            map.as_ptr(),
            MEM as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
        )
    }
    .map_err(|e| e.to_string())?;
    let mem = GuestMemoryMmap::from_regions(vec![
        GuestRegionMmap::new(region, GuestAddress(0)).ok_or("region")?
    ])
    .map_err(|e| e.to_string())?;
    let entry = layout::IMAGE_BASE;
    mem.write_slice(&code(), GuestAddress(entry))
        .map_err(|e| e.to_string())?;
    x86_64::write_tables(&mem, MEM, &[entry; 32]).map_err(|e| e.to_string())?;
    let sregs_template = x86_64::boot_sregs(Default::default());

    let t0 = sys::monotonic_ns();
    let vm = kvm.fd.create_vm().map_err(|e| e.to_string())?;
    let slot = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: MEM,
        userspace_addr: map.as_ptr() as u64,
    };
    #[allow(unsafe_code)]
    // SAFETY: `map` lives until after `vm` is dropped (declared before it).
    unsafe { vm.set_user_memory_region(slot) }.map_err(|e| e.to_string())?;
    let mut vcpu = vm.create_vcpu(0).map_err(|e| e.to_string())?;
    vcpu.set_cpuid2(&kvm.cpuid).map_err(|e| e.to_string())?;
    let mut sregs = vcpu.get_sregs().map_err(|e| e.to_string())?;
    sregs.cs = sregs_template.cs;
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (
        sregs_template.ds,
        sregs_template.es,
        sregs_template.fs,
        sregs_template.gs,
        sregs_template.ss,
    );
    (sregs.tr, sregs.ldt, sregs.gdt, sregs.idt) = (
        sregs_template.tr,
        sregs_template.ldt,
        sregs_template.gdt,
        sregs_template.idt,
    );
    (sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer) = (
        sregs_template.cr0,
        sregs_template.cr3,
        sregs_template.cr4,
        sregs_template.efer,
    );
    vcpu.set_sregs(&sregs).map_err(|e| e.to_string())?;
    vcpu.set_regs(&x86_64::boot_regs(entry))
        .map_err(|e| e.to_string())?;
    let t1 = sys::monotonic_ns();
    let expect_out = |exit: VcpuExit<'_>| match exit {
        VcpuExit::IoOut(_, _) => Ok(()),
        other => Err(format!("the floor guest exited with {other:?}")),
    };
    expect_out(vcpu.run().map_err(|e| e.to_string())?)?;
    let t2 = sys::monotonic_ns();
    let mut trips = Vec::with_capacity(exits as usize);
    let mut last = t2;
    for _ in 0..exits {
        expect_out(vcpu.run().map_err(|e| e.to_string())?)?;
        let now = sys::monotonic_ns();
        trips.push(now - last);
        last = now;
    }
    drop(vcpu);
    drop(vm);
    Ok(Floor {
        create_ns: t1 - t0,
        first_run_ns: t2 - t1,
        exit_round_trips_ns: trips,
    })
}
