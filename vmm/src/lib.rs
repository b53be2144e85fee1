//! Hearth's own minimal VMM, on KVM directly (the rust-vmm crates; no QEMU,
//! no Firecracker binary).
//!
//! A Hearth microVM has one vCPU, RAM, a read-only module window, and two
//! devices: a console port and a doorbell port with a shared mailbox page
//! (`hearth-guest-abi`). The VMM builds the whole long-mode CPU state itself
//! and enters the guest directly in ring 3, so the guest kernel's ring 0
//! (emulated at ~0.6 µs per instruction on this machine's PVM KVM) stays
//! off every hot path; an invocation is one entry and one exit.
//!
//! Read it one object per file, like Firecracker's `vstate`:
//!
//! | file | what |
//! |---|---|
//! | [`kvm`] | `/dev/kvm`, capabilities, CPUID and its signature |
//! | [`memory`] | guest RAM (memfd, or copy-on-write over snapshot files), the module window, dirty-page scans |
//! | [`image`] | loading the guest ELF with linux-loader |
//! | [`vcpu`] | vCPU state, the run loop with its deadline; [`vcpu::x86_64`] builds page tables, GDT, IDT, TSS |
//! | [`vm`] | a VM: boot, restore, run, snapshot, reset |
//! | [`snapshot`] | the snapshot file format: write atomically, verify, index |
//! | [`cache`] | where snapshots live on disk and what they are keyed on |
//! | [`floor`] | the machine's bare-KVM floor, for benchmarks |
//! | [`guest`] | Hearth's guest protocol: boot, load, invoke, reports |
//! | [`accounting`] | µs accounting of every run and phase |
//! | [`seccomp`] | the vCPU thread's seccomp filter |
//! | [`runner`] | a VM on a thread of its own, behind the seccomp filter |
//!
//! ```no_run
//! use std::sync::Arc;
//! use hearth_vmm::{guest::{Invocation, Loaded, Runner}, image::GuestImage, kvm::Kvm, vm::{ModuleFile, Vm}, RunStats};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kvm = Kvm::open()?;
//! let image = GuestImage::new(std::fs::read("hearth-guest.elf")?);
//! let runner = Runner::for_this_thread()?;
//! let mut stats = RunStats::default();
//! let mut vm = Vm::boot(&kvm, &image, 128)?;
//! runner.boot(&mut vm, 1_000_000_000, &mut stats)?;
//! let module = ModuleFile::open(std::path::Path::new("echo.wasm"))?;
//! let len = vm.attach_module(&module)?;
//! let config = [0u8; 8]; // no arguments, no environment
//! let inv = Invocation { event: b"{}", request_id: "r1", timeout_ns: 3_000_000_000 };
//! if let Loaded::Finished(done) = runner.load(&mut vm, len, &config, Some(&inv), 0, &mut stats)? {
//!     println!("{}", String::from_utf8_lossy(&done.stdout));
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod accounting;
pub mod cache;
pub mod files;
pub mod floor;
pub mod guest;
pub mod image;
pub mod kvm;
pub mod memory;
pub mod runner;
pub mod seccomp;
pub mod snapshot;
mod sys;
pub mod vcpu;
pub mod vm;

pub use accounting::RunStats;
pub use sys::{monotonic_ns, thread_cpu_ns};
