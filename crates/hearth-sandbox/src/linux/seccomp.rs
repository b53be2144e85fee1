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
//!
//! The five filters are installed as one program ([`merge`]): the same
//! answers, composed in BPF as the kernel composes separate filters. The
//! kernel converts and JITs each filter it is given and runs each on every
//! system call, so one program costs a sandbox's start one conversion
//! instead of five, and each of its system calls one filter run.

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

/// The sandbox's seccomp program for the host architecture ([`merge`] of
/// [`separate_programs`]), made on first use.
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
            Ok(vec![merge(&separate_programs(arch)?)?])
        })
        .as_deref()
        .map_err(Clone::clone)
}

/// The policy's filters and the two guards for `arch`, in installation
/// order.
fn separate_programs(arch: TargetArch) -> Result<Vec<BpfProgram>, String> {
    let mut programs = compile(arch)?;
    programs.push(unvetted_guard(arch));
    if arch == TargetArch::x86_64 {
        programs.push(x32_guard());
    }
    Ok(programs)
}

/// The classic BPF opcodes [`merge`] writes or must not find.
mod bpf {
    pub const LD_IMM: u16 = 0x00;
    pub const LD_MEM: u16 = 0x60;
    pub const LDX_MEM: u16 = 0x61;
    pub const ST: u16 = 0x02;
    pub const STX: u16 = 0x03;
    pub const ADD_K: u16 = 0x04;
    pub const AND_K: u16 = 0x54;
    pub const JA: u16 = 0x05;
    pub const JGE_X: u16 = 0x3d;
    pub const RET_K: u16 = 0x06;
    pub const RET_A: u16 = 0x16;
    pub const TAX: u16 = 0x07;
    /// The mode bits of a load: `BPF_MEM` reads scratch memory.
    pub const MODE_MASK: u16 = 0xe0;
    pub const MODE_MEM: u16 = 0x60;
    /// `BPF_MAXINSNS`.
    pub const MAX_INSNS: usize = 4096;
}

/// One program that answers every system call as the kernel answers it
/// with `programs` installed in this order as separate filters. The kernel
/// runs the last installed first and keeps the answer whose action
/// (`SECCOMP_RET_ACTION_FULL`, compared as a signed number) is lowest, the
/// first such among equals. Here each program runs in that order, its
/// `RET`s turned into jumps to a step that keeps the best answer so far in
/// scratch memory, and the best is returned at the end:
///
/// - `M[0]`/`M[1]`: the best answer and its action's key, the action plus
///   2^31 (unsigned order of the key = signed order of the action);
/// - `M[2]`/`M[3]`: the program's answer and its key.
///
/// Each `RET k` becomes a `JA` of the same length to a stub after the
/// program (`A = k`, then `JA` to the merge step), so no jump inside the
/// program moves. A and X are zeroed before each program, as the kernel
/// starts every filter. Refuses programs that use scratch memory themselves
/// (the policy's do not: `seccompiler` never emits it).
pub(crate) fn merge(programs: &[BpfProgram]) -> Result<BpfProgram, String> {
    use bpf::*;
    const BEST: u32 = 0;
    const BEST_KEY: u32 = 1;
    const ANSWER: u32 = 2;
    const ANSWER_KEY: u32 = 3;
    const SIGN: u32 = 0x8000_0000;
    let stmt = |code, k| sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let ja = |from: usize, to: usize| stmt(JA, (to - from - 1) as u32);
    let allow = libc::SECCOMP_RET_ALLOW;
    let mut out = vec![
        stmt(LD_IMM, allow),
        stmt(ST, BEST),
        stmt(
            LD_IMM,
            (allow & libc::SECCOMP_RET_ACTION_FULL).wrapping_add(SIGN),
        ),
        stmt(ST, BEST_KEY),
    ];
    for p in programs.iter().rev() {
        if p.iter().any(|i| {
            matches!(i.code, ST | STX) || i.code & 0x07 <= 0x01 && i.code & MODE_MASK == MODE_MEM
        }) {
            return Err("a seccomp program to merge uses scratch memory".to_owned());
        }
        out.push(stmt(LD_IMM, 0));
        out.push(stmt(TAX, 0));
        let mut answers: Vec<u32> = Vec::new();
        for i in p {
            if i.code == RET_K && !answers.contains(&i.k) {
                answers.push(i.k);
            }
        }
        // Indices inside this program's part: the body, a stub of two
        // instructions per distinct answer, then the merge step.
        let n = p.len();
        let merge_at = n + 2 * answers.len();
        let base = out.len();
        for (at, i) in p.iter().enumerate() {
            out.push(match i.code {
                RET_K => {
                    let stub = answers.iter().position(|k| *k == i.k).unwrap_or(0);
                    ja(at, n + 2 * stub)
                }
                RET_A => ja(at, merge_at),
                _ => i.clone(),
            });
        }
        for (s, k) in answers.iter().enumerate() {
            out.push(stmt(LD_IMM, *k));
            out.push(ja(n + 2 * s + 1, merge_at));
        }
        debug_assert_eq!(out.len(), base + merge_at);
        out.extend([
            stmt(ST, ANSWER),
            stmt(AND_K, libc::SECCOMP_RET_ACTION_FULL),
            stmt(ADD_K, SIGN),
            stmt(ST, ANSWER_KEY),
            stmt(LDX_MEM, BEST_KEY),
            // Not lower than the best so far: keep the best.
            sock_filter {
                code: JGE_X,
                jt: 4,
                jf: 0,
                k: 0,
            },
            stmt(LD_MEM, ANSWER),
            stmt(ST, BEST),
            stmt(LD_MEM, ANSWER_KEY),
            stmt(ST, BEST_KEY),
        ]);
    }
    out.push(stmt(LD_MEM, BEST));
    out.push(stmt(RET_A, 0));
    if out.len() > MAX_INSNS {
        return Err(format!(
            "the merged seccomp program has {} instructions (at most {MAX_INSNS})",
            out.len()
        ));
    }
    Ok(out)
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
        assert_eq!(host_programs().unwrap().len(), 1);
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

    /// A classic BPF interpreter for seccomp programs, as the kernel runs
    /// them: `data` is a `struct seccomp_data`.
    fn run(program: &[sock_filter], data: &[u8; 64]) -> u32 {
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        let mut pc = 0usize;
        loop {
            let i = program[pc].clone();
            pc += 1;
            let word =
                |k: u32| u32::from_le_bytes(data[k as usize..k as usize + 4].try_into().unwrap());
            let src = |i: &sock_filter, x: u32| if i.code & 0x08 != 0 { x } else { i.k };
            match i.code & 0x07 {
                0x00 => {
                    a = match i.code & 0xe0 {
                        0x20 => word(i.k),
                        0x00 => i.k,
                        0x60 => mem[i.k as usize],
                        m => panic!("load mode {m:#x}"),
                    }
                }
                0x01 => {
                    x = match i.code & 0xe0 {
                        0x00 => i.k,
                        0x60 => mem[i.k as usize],
                        m => panic!("ldx mode {m:#x}"),
                    }
                }
                0x02 => mem[i.k as usize] = a,
                0x03 => mem[i.k as usize] = x,
                0x04 => {
                    let v = src(&i, x);
                    a = match i.code & 0xf0 {
                        0x00 => a.wrapping_add(v),
                        0x10 => a.wrapping_sub(v),
                        0x40 => a | v,
                        0x50 => a & v,
                        0x60 => a.wrapping_shl(v),
                        0x70 => a.wrapping_shr(v),
                        0xa0 => a ^ v,
                        op => panic!("alu op {op:#x}"),
                    }
                }
                0x05 => {
                    let v = src(&i, x);
                    let taken = match i.code & 0xf0 {
                        0x00 => {
                            pc += i.k as usize;
                            continue;
                        }
                        0x10 => a == v,
                        0x20 => a > v,
                        0x30 => a >= v,
                        0x40 => a & v != 0,
                        op => panic!("jump op {op:#x}"),
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                0x06 => return if i.code & 0x18 == 0x10 { a } else { i.k },
                0x07 => {
                    if i.code & 0xf8 == 0 {
                        x = a
                    } else {
                        a = x
                    }
                }
                _ => unreachable!(),
            }
        }
    }

    /// What the kernel answers with `programs` installed in this order.
    fn composed(programs: &[BpfProgram], data: &[u8; 64]) -> u32 {
        let action = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
        let mut best = libc::SECCOMP_RET_ALLOW;
        for p in programs.iter().rev() {
            let r = run(p, data);
            if action(r) < action(best) {
                best = r;
            }
        }
        best
    }

    fn data(nr: u32, arch: u32, args: [u64; 6]) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&nr.to_le_bytes());
        d[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        d
    }

    /// The merged program answers exactly as the separate filters do: every
    /// syscall number of the vetted table and beyond, x32 numbers, four
    /// architectures; and, for the numbers the filters name, every argument
    /// set to each constant they compare with (and its neighbours).
    #[test]
    fn the_merged_program_answers_as_the_separate_filters() {
        for arch in [TargetArch::x86_64, TargetArch::aarch64] {
            let programs = separate_programs(arch).unwrap();
            let merged = merge(&programs).unwrap();
            assert!(merged.len() < 4096);
            let mut constants: Vec<u32> = programs
                .iter()
                .flatten()
                .filter(|i| i.code & 0x07 == 0x05 && i.code & 0xf0 != 0)
                .flat_map(|i| [i.k, i.k.wrapping_sub(1), i.k.wrapping_add(1)])
                .chain([0, u32::MAX, 0x8000_0000])
                .collect();
            constants.sort_unstable();
            constants.dedup();
            let arches = [0xc000_003e, 0x4000_0003, 0xc000_00b7, 0];
            let mut checked = 0u64;
            for a in arches {
                let numbers = (0..520)
                    .chain((0x4000_0000..0x4000_0000 + 520).step_by(7))
                    .chain([u32::MAX]);
                for nr in numbers {
                    let d = data(nr, a, [0; 6]);
                    assert_eq!(
                        run(&merged, &d),
                        composed(&programs, &d),
                        "nr {nr} arch {a:#x}"
                    );
                    checked += 1;
                }
                for &nr in constants.iter().filter(|&&c| c < 1024) {
                    for arg in 0..6 {
                        for &c in &constants {
                            for v in [
                                u64::from(c),
                                u64::from(c) << 32,
                                u64::from(c) | u64::from(c) << 32,
                            ] {
                                let mut args = [0u64; 6];
                                args[arg] = v;
                                let d = data(nr, a, args);
                                assert_eq!(
                                    run(&merged, &d),
                                    composed(&programs, &d),
                                    "nr {nr} arch {a:#x} args {args:?}"
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
            assert!(checked > 10_000, "{checked}");
        }
    }

    /// The merge itself, on hand-made filters: the lowest action wins
    /// whatever the order, and among equal actions the last installed.
    #[test]
    fn merge_keeps_the_kernels_precedence() {
        let ret = |k| sock_filter {
            code: bpf::RET_K,
            jt: 0,
            jf: 0,
            k,
        };
        let errno = |e: u32| libc::SECCOMP_RET_ERRNO | e;
        let kill = libc::SECCOMP_RET_KILL_PROCESS;
        let allow = libc::SECCOMP_RET_ALLOW;
        for (programs, want) in [
            (vec![vec![ret(allow)], vec![ret(errno(1))]], errno(1)),
            (vec![vec![ret(errno(1))], vec![ret(allow)]], errno(1)),
            (vec![vec![ret(errno(1))], vec![ret(errno(38))]], errno(38)),
            (vec![vec![ret(errno(38))], vec![ret(errno(1))]], errno(1)),
            (
                vec![vec![ret(errno(1))], vec![ret(kill)], vec![ret(allow)]],
                kill,
            ),
            (vec![vec![ret(allow)], vec![ret(allow)]], allow),
        ] {
            let d = data(0, 0, [0; 6]);
            assert_eq!(composed(&programs, &d), want);
            assert_eq!(run(&merge(&programs).unwrap(), &d), want, "{programs:?}");
        }
        let scratch = vec![vec![
            sock_filter {
                code: bpf::ST,
                jt: 0,
                jf: 0,
                k: 0,
            },
            ret(allow),
        ]];
        assert!(merge(&scratch).is_err());
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
