//! The sandbox's seccomp policy: data in `resources/seccomp/sandbox.json`,
//! compiled by `seccompiler` once per daemon and shipped to each launcher as
//! plain BPF instructions.
//!
//! The policy is a deny list over a vetted syscall table (the default action
//! is "allow"): the runtime is an ordinary unprivileged process, and the
//! filter removes the kernel interfaces that are either privileged-only
//! attack surface (module loading, kexec, bpf, keyrings, io_uring, NUMA
//! policy, the LDT) or ways out of the sandbox (mount, namespaces, ptrace).
//! Measured against Docker's default profile (an allowlist), it allows
//! nothing Docker's allows only with added capabilities or not at all; see
//! `docs/seccomp.md` for the comparison. Each architecture has three filters
//! because a seccompiler filter has one match action: `deny_eperm` (EPERM),
//! `clone3_enosys` (ENOSYS, so libc falls back to `clone`, whose flags a
//! filter can inspect) and `socket_families` (EAFNOSUPPORT for every address
//! family but AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK, whose protocols
//! beyond NETLINK_ROUTE `deny_eperm` refuses). The kernel runs every
//! installed filter and applies the most restrictive answer, so they
//! compose. Two hand-written filters follow: one refuses every syscall newer
//! than the vetted table ([`FIRST_UNVETTED_NR`]) with ENOSYS, so that a newer
//! kernel cannot widen the set silently (as `open_tree_attr` would have
//! beside a denied `open_tree`); the other rejects the x32 ABI on x86_64
//! (syscall numbers with bit 30 set), which the named rules would otherwise
//! not match.

use std::io::Cursor;
use std::sync::OnceLock;

use seccompiler::{sock_filter, BpfProgram, TargetArch};

/// The policy file, reviewed and versioned like code.
const POLICY_JSON: &str = include_str!("../../resources/seccomp/sandbox.json");

/// Filter names inside one architecture's section, in installation order.
const FILTERS: [&str; 3] = ["deny_eperm", "clone3_enosys", "socket_families"];

/// The first syscall number the policy has not been reviewed against: one
/// past `set_mempolicy_home_node` (450), the newest call of Linux 6.1, in
/// the table x86_64 and aarch64 share from 424 up. Newer calls (cachestat,
/// fchmodat2, map_shadow_stack, futex2, statmount/listmount, mseal,
/// open_tree_attr, the *xattrat family…) answer ENOSYS, which libc treats as
/// "this kernel is older" and falls back from.
pub(crate) const FIRST_UNVETTED_NR: u32 = 451;

/// One BPF instruction as it travels to the launcher: (code, jt, jf, k).
pub(crate) type WireInstruction = (u16, u8, u8, u32);

/// The compiled programs for the host architecture, compiled on first use.
pub(crate) fn host_programs() -> Result<&'static [BpfProgram], String> {
    static PROGRAMS: OnceLock<Result<Vec<BpfProgram>, String>> = OnceLock::new();
    PROGRAMS
        .get_or_init(|| {
            let arch = host_arch().ok_or_else(|| {
                format!(
                    "no seccomp policy for this architecture ({})",
                    std::env::consts::ARCH
                )
            })?;
            let mut programs = compile(arch)?;
            programs.push(unvetted_guard(arch));
            if arch == TargetArch::x86_64 {
                programs.push(x32_guard());
            }
            Ok(programs)
        })
        .as_deref()
        .map_err(Clone::clone)
}

fn host_arch() -> Option<TargetArch> {
    match std::env::consts::ARCH {
        "x86_64" => Some(TargetArch::x86_64),
        "aarch64" => Some(TargetArch::aarch64),
        _ => None,
    }
}

fn arch_key(arch: TargetArch) -> &'static str {
    match arch {
        TargetArch::x86_64 => "x86_64",
        TargetArch::aarch64 => "aarch64",
        TargetArch::riscv64 => "riscv64",
    }
}

/// Compiles the policy's filters for `arch`, in installation order.
pub(crate) fn compile(arch: TargetArch) -> Result<Vec<BpfProgram>, String> {
    let doc: serde_json::Value = serde_json::from_str(POLICY_JSON)
        .map_err(|e| format!("the seccomp policy is not JSON: {e}"))?;
    let section = doc
        .get(arch_key(arch))
        .ok_or_else(|| format!("the seccomp policy has no section for {}", arch_key(arch)))?;
    let text = serde_json::to_vec(section)
        .map_err(|e| format!("cannot re-serialise the seccomp policy: {e}"))?;
    let mut compiled = seccompiler::compile_from_json(Cursor::new(text), arch)
        .map_err(|e| format!("the seccomp policy does not compile: {e}"))?;
    FILTERS
        .iter()
        .map(|name| {
            compiled
                .remove(*name)
                .ok_or_else(|| format!("the seccomp policy has no filter {name:?}"))
        })
        .collect()
}

/// `AUDIT_ARCH_*` of the architectures the policy covers.
fn audit_arch(arch: TargetArch) -> u32 {
    match arch {
        TargetArch::x86_64 => 0xc000_003e,
        TargetArch::aarch64 => 0xc000_00b7,
        TargetArch::riscv64 => 0xc000_00f3,
    }
}

/// Refuses every syscall at or above [`FIRST_UNVETTED_NR`] with ENOSYS
/// (for `arch`; another architecture's calls are the main filters' business,
/// and they kill them).
fn unvetted_guard(arch: TargetArch) -> BpfProgram {
    enosys_from(audit_arch(arch), FIRST_UNVETTED_NR)
}

/// x86_64 only: refuses every x32-ABI system call (numbers with
/// `__X32_SYSCALL_BIT`) with ENOSYS. The named rules match x86_64 numbers
/// only, so without this a kernel built with x32 support would let
/// `mount` through as `0x40000000 | 165`.
fn x32_guard() -> BpfProgram {
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    enosys_from(audit_arch(TargetArch::x86_64), X32_SYSCALL_BIT)
}

/// A filter answering ENOSYS to every syscall numbered `first_nr` or more
/// made under the `AUDIT_ARCH_*` value `arch`, and allowing the rest (which
/// the other filters judge).
fn enosys_from(arch: u32, first_nr: u32) -> BpfProgram {
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JEQ_K: u16 = 0x15;
    const BPF_JGE_K: u16 = 0x35;
    const BPF_RET_K: u16 = 0x06;
    const ARCH_OFFSET: u32 = 4;
    const NR_OFFSET: u32 = 0;
    let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    let allow = libc::SECCOMP_RET_ALLOW;
    let stmt = |code, k| sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code, k, jt, jf| sock_filter { code, jt, jf, k };
    vec![
        stmt(BPF_LD_W_ABS, ARCH_OFFSET),
        jump(BPF_JEQ_K, arch, 0, 3),
        stmt(BPF_LD_W_ABS, NR_OFFSET),
        jump(BPF_JGE_K, first_nr, 0, 1),
        stmt(BPF_RET_K, enosys),
        stmt(BPF_RET_K, allow),
    ]
}

pub(crate) fn to_wire(programs: &[BpfProgram]) -> Vec<Vec<WireInstruction>> {
    programs
        .iter()
        .map(|p| p.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect())
        .collect()
}

pub(crate) fn from_wire(programs: &[Vec<WireInstruction>]) -> Vec<BpfProgram> {
    programs
        .iter()
        .map(|p| {
            p.iter()
                .map(|&(code, jt, jf, k)| sock_filter { code, jt, jf, k })
                .collect()
        })
        .collect()
}

/// Installs the programs on the calling thread (sets `no_new_privs` first,
/// which an unprivileged filter requires anyway).
pub(crate) fn install(programs: &[BpfProgram]) -> Result<(), String> {
    for p in programs {
        seccompiler::apply_filter(p)
            .map_err(|e| format!("cannot install the seccomp filter: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syscalls(arch: &str) -> Vec<String> {
        let doc: serde_json::Value = serde_json::from_str(POLICY_JSON).unwrap();
        doc[arch]["deny_eperm"]["filter"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["syscall"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn policy_compiles_for_both_architectures() {
        for arch in [TargetArch::x86_64, TargetArch::aarch64] {
            let programs = compile(arch).unwrap();
            assert_eq!(programs.len(), 3);
            assert!(programs.iter().all(|p| !p.is_empty() && p.len() < 4096));
        }
        assert!(host_programs().unwrap().len() >= 4);
    }

    #[test]
    fn policy_denies_what_the_brief_lists() {
        let required = [
            "mount",
            "umount2",
            "pivot_root",
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "request_key",
            "unshare",
            "setns",
            "reboot",
            "swapon",
            "swapoff",
            "acct",
            "settimeofday",
            "clock_settime",
            "adjtimex",
            "open_by_handle_at",
            "name_to_handle_at",
            "userfaultfd",
            "chroot",
            "quotactl",
            "lookup_dcookie",
            "syslog",
            "personality",
            "fanotify_init",
            "clone",
            "mbind",
            "set_mempolicy",
            "get_mempolicy",
            "move_pages",
            "migrate_pages",
            "process_madvise",
            "sethostname",
        ];
        for arch in ["x86_64", "aarch64"] {
            let names = syscalls(arch);
            for r in required {
                assert!(names.iter().any(|n| n == r), "{arch}: {r} is not denied");
            }
        }
        let x86 = syscalls("x86_64");
        for n in ["iopl", "ioperm", "modify_ldt", "_sysctl", "sysfs", "ustat"] {
            assert!(x86.iter().any(|x| x == n), "x86_64: {n} is not denied");
        }
        let doc: serde_json::Value = serde_json::from_str(POLICY_JSON).unwrap();
        assert_eq!(
            doc["x86_64"]["clone3_enosys"]["filter"][0]["syscall"],
            "clone3"
        );
        assert_eq!(doc["x86_64"]["clone3_enosys"]["match_action"]["errno"], 38);
    }

    #[test]
    fn clone_rules_cover_every_namespace_flag() {
        let doc: serde_json::Value = serde_json::from_str(POLICY_JSON).unwrap();
        let masks: Vec<u64> = doc["x86_64"]["deny_eperm"]["filter"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["syscall"] == "clone")
            .map(|r| r["args"][0]["val"].as_u64().unwrap())
            .collect();
        for flag in [
            libc::CLONE_NEWNS,
            libc::CLONE_NEWCGROUP,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
        ] {
            assert!(
                masks.contains(&(flag as u64)),
                "clone flag {flag:#x} not denied"
            );
        }
    }

    #[test]
    fn wire_format_round_trips() {
        let programs = compile(TargetArch::x86_64).unwrap();
        let back = from_wire(&to_wire(&programs));
        assert_eq!(back, programs);
    }

    #[test]
    fn guard_shapes() {
        for (g, nr) in [
            (x32_guard(), 0x4000_0000),
            (unvetted_guard(TargetArch::x86_64), 451),
        ] {
            assert_eq!(g.len(), 6);
            assert_eq!(g[1].k, 0xc000_003e);
            assert_eq!(g[3].k, nr);
            assert_eq!(g[4].k, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
            assert_eq!(g[5].k, libc::SECCOMP_RET_ALLOW);
        }
        assert_eq!(unvetted_guard(TargetArch::aarch64)[1].k, 0xc000_00b7);
    }

    #[test]
    fn socket_families_are_an_allowlist() {
        let doc: serde_json::Value = serde_json::from_str(POLICY_JSON).unwrap();
        for arch in ["x86_64", "aarch64"] {
            let f = &doc[arch]["socket_families"];
            assert_eq!(f["match_action"]["errno"], libc::EAFNOSUPPORT);
            for (rule, call) in f["filter"]
                .as_array()
                .unwrap()
                .iter()
                .zip(["socket", "socketpair"])
            {
                assert_eq!(rule["syscall"], call);
                let allowed: Vec<i64> = rule["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| {
                        assert_eq!((&a["index"], &a["op"]), (&0.into(), &"ne".into()));
                        a["val"].as_i64().unwrap()
                    })
                    .collect();
                let want = [
                    libc::AF_UNIX,
                    libc::AF_INET,
                    libc::AF_INET6,
                    libc::AF_NETLINK,
                ];
                assert_eq!(allowed, want.map(i64::from));
            }
            let netlink = doc[arch]["deny_eperm"]["filter"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["syscall"] == "socket")
                .expect("a netlink protocol rule");
            assert_eq!(netlink["args"][0]["val"], libc::AF_NETLINK);
            assert_eq!(
                (&netlink["args"][1]["index"], &netlink["args"][1]["op"]),
                (&2.into(), &"ne".into())
            );
            assert_eq!(netlink["args"][1]["val"], libc::NETLINK_ROUTE);
        }
    }
}
