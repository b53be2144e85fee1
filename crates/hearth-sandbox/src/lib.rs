//! Sandboxes: the unit of isolation.
//!
//! [`SandboxBackend`] builds and destroys sandboxes; [`linux::LinuxBackend`]
//! is the implementation on Linux namespaces, cgroups (v1 and v2), seccomp and
//! `pivot_root`. A microVM backend can follow behind the same trait.
//!
//! A sandbox runs one program (the runtime) as an unprivileged uid in its own
//! mount, pid, ipc, uts and network namespaces, with a read-only root built
//! from host bind mounts, the function's code at `/var/task`, and a listening
//! TCP socket at `127.0.0.1:9001` *inside its network namespace* whose file
//! descriptor the daemon receives, so the daemon serves the sandbox's Runtime
//! API without the sandbox seeing any other network.
//!
//! Warmth levels are states of the same sandbox: a spec without `argv` builds
//! a **shell-warm** sandbox whose init waits for [`SandboxControl::exec`]; a
//! spec without `task_root` gets its code later, by mount propagation, from
//! [`SandboxControl::mount_task`] (no copy); a general-pool sandbox built for
//! a memory class gets the function's exact MemorySize with
//! [`SandboxControl::set_memory_limit`] when it is assigned.

pub mod linux;
mod spec;

pub use spec::*;
