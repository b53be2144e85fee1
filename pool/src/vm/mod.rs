//! The microVM pools: Hearth's KVM microVMs (`hearth-vmm`) arranged as the
//! seed's sub-pools, beside the process-sandbox pools. Unlike the rest of
//! this crate this module runs things: it boots, restores and resets VMs, on
//! threads of its own.
//!
//! | file | what |
//! |---|---|
//! | [`subpools`] | general, dedicated, provisioned and idle VMs, as data |
//! | [`snapshots`] | the snapshot cache: bases, function snapshots, modules |
//! | [`lifecycle`] | restore, specialise, invoke, reset, cold start; warming |
//! | [`workers`] | the seccomp'd threads that enter guests |
//! | [`accounting`] | an invocation's cost, phase by phase, in µs |
//! | [`python`] | the CPython-for-WASI runtime: install, bootstrap |
//!
//! [`VmHost`] holds what every VM of a node shares: `/dev/kvm`, the guest
//! image, the snapshot cache and the threads.

pub mod accounting;
pub mod lifecycle;
pub mod python;
pub mod snapshots;
pub mod subpools;
pub mod workers;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use hearth_vmm::image::GuestImage;
use hearth_vmm::kvm::Kvm;

pub use accounting::Usage;
pub use lifecycle::{FunctionSpec, PooledVm, Prepared, Prewarm, Specialised};
pub use snapshots::SnapshotStore;
pub use subpools::VmSubPools;
pub use workers::Workers;

/// Why the VM side failed.
#[derive(Debug, thiserror::Error)]
pub enum VmPoolError {
    /// KVM is missing or unusable here.
    #[error("{0}")]
    Kvm(#[from] hearth_vmm::kvm::KvmError),
    /// A VMM operation.
    #[error(transparent)]
    Vm(#[from] hearth_vmm::vm::VmError),
    /// The guest failed a step.
    #[error(transparent)]
    Step(#[from] hearth_vmm::guest::GuestError),
    /// A snapshot file.
    #[error(transparent)]
    Snapshot(#[from] hearth_vmm::snapshot::SnapshotError),
    /// A file of the cache or the code store.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// A VM thread.
    #[error("VM thread: {0}")]
    Worker(String),
    /// The guest did something the pool did not expect.
    #[error("{0}")]
    Guest(String),
}

/// How a node's VM side is set up.
#[derive(Debug, Clone)]
pub struct VmHostConfig {
    /// Where snapshots are kept (`<data dir>/vm/snapshots`).
    pub snapshot_dir: PathBuf,
    /// The most VM threads (each runs one guest step at a time).
    pub workers: usize,
    /// How general VMs are warmed.
    pub prewarm: Prewarm,
    /// How long booting a guest to its base snapshot may take.
    pub boot_timeout: Duration,
}

/// What every VM of a node shares.
#[derive(Debug)]
pub struct VmHost {
    /// `/dev/kvm`.
    pub kvm: Arc<Kvm>,
    /// The guest image.
    pub image: GuestImage,
    /// The engine inside it (snapshots are keyed on it).
    pub engine: &'static str,
    /// The snapshot cache.
    pub store: SnapshotStore,
    /// The threads that enter guests.
    pub workers: Workers,
    /// Settings.
    pub config: VmHostConfig,
    seq: AtomicU64,
    /// Held while a base or the warm-up snapshot is being taken, so two
    /// threads never take the same one.
    taking: std::sync::Mutex<()>,
    /// The warm-up module, once written and opened.
    warmup: std::sync::Mutex<Option<hearth_vmm::vm::ModuleFile>>,
}

impl VmHost {
    /// Opens KVM and the snapshot cache. Fails (with a sentence saying why)
    /// where there is no usable `/dev/kvm`.
    pub fn new(
        config: VmHostConfig,
        image: GuestImage,
        engine: &'static str,
    ) -> Result<VmHost, VmPoolError> {
        let kvm = Kvm::open()?;
        let store = SnapshotStore::open(&config.snapshot_dir)?;
        Ok(VmHost {
            kvm,
            image,
            engine,
            store,
            workers: Workers::new(config.workers),
            config,
            seq: AtomicU64::new(1),
            taking: std::sync::Mutex::new(()),
            warmup: std::sync::Mutex::new(None),
        })
    }
}

/// The module that warms general VMs: reads stdin, answers it. Built from
/// WAT here (Hearth's own, not a user's).
pub fn warmup_module() -> Vec<u8> {
    const WARMUP: &str = r#"(module
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i64 i32) (result i32)))
      (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
      (memory (export "memory") 2)
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store (i32.const 4) (i32.const 4096))
        (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (drop (call $now (i32.const 1) (i64.const 1) (i32.const 16)))
        (drop (call $random (i32.const 24) (i32.const 8)))
        (i32.store (i32.const 4) (i32.load (i32.const 8)))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
    // The WAT is a constant of this crate; it is valid (a unit test parses it).
    wat::parse_str(WARMUP).unwrap_or_default()
}

/// A config blob of `args` and `env` (KEY, VALUE).
pub fn config_blob(args: &[&str], env: &[(&str, &str)]) -> Result<Vec<u8>, VmPoolError> {
    let mut buf = vec![0u8; hearth_guest_abi::layout::CONFIG_CAP as usize];
    let n = hearth_guest_abi::config::encode(args, env, &mut buf)
        .map_err(|e| VmPoolError::Guest(e.to_string()))?;
    buf.truncate(n);
    Ok(buf)
}

/// A config blob of `args`, `env` and a mount table: each guest path and
/// the length of the file image mounted there, in the order the images are
/// attached ([`hearth_vmm::vm::place_files`] says where each lies).
pub fn config_blob_with_mounts(
    args: &[&str],
    env: &[(&str, &str)],
    mounts: &[(&str, u64)],
) -> Result<Vec<u8>, VmPoolError> {
    let lens: Vec<u64> = mounts.iter().map(|m| m.1).collect();
    let placed = hearth_vmm::vm::place_files(&lens)
        .ok_or_else(|| VmPoolError::Guest("the file images do not fit the files window".into()))?;
    let table: Vec<hearth_guest_abi::config::Mount<'_>> = mounts
        .iter()
        .zip(placed)
        .map(|((path, _), (gpa, len))| hearth_guest_abi::config::Mount { path, gpa, len })
        .collect();
    let mut buf = vec![0u8; hearth_guest_abi::layout::CONFIG_CAP as usize];
    let n = hearth_guest_abi::config::encode_with_mounts(args, env, &table, &mut buf)
        .map_err(|e| VmPoolError::Guest(e.to_string()))?;
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_warmup_module_is_valid() {
        let m = super::warmup_module();
        assert_eq!(&m[..4], b"\0asm");
    }

    #[test]
    fn config_blobs_hold_lambdas_environment() {
        let b = super::config_blob(&["f.wasm"], &[("AWS_REGION", "us-east-1")]).unwrap();
        assert!(b.windows(20).any(|w| w == b"AWS_REGION=us-east-1"));
    }
}
