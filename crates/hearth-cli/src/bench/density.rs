//! Section `density`: N idle runtime-warm Python sandboxes in a node's
//! general pool; their memory from `/proc/*/smaps_rollup` (PSS and private
//! memory, summed over each sandbox's processes) and the node's
//! `MemAvailable` drop, extrapolated to a 24 GiB node.

use super::node::Node;
use super::{check_stop, Ctx};
use anyhow::{bail, Context, Result};
use hearth_bench::report::{Figure, Section};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// The node the figures are extrapolated to.
const NODE_GIB: f64 = 24.0;
/// N is bounded so that N sandboxes at this much each (about 6 MiB each
/// were measured here) take at most half of the machine's available memory.
const WORST_CASE_MIB: u64 = 10;

/// Memory of the sandboxes found in a node's cgroups.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    sandboxes: usize,
    pss_kib: u64,
    private_kib: u64,
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let wanted: u64 = if ctx.quick { 20 } else { 1000 };
    // Sandboxes of earlier sections' nodes may still be going away.
    std::thread::sleep(Duration::from_secs(2));
    let before = mem_available_mib()?;
    let n = wanted.min(before / 2 / WORST_CASE_MIB).max(1);
    let fill_limit = if ctx.quick {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(300)
    };
    eprintln!("[density] {n} idle runtime-warm Python sandboxes…");
    let node = Node::start(
        &ctx.dir,
        "density",
        // The budget counts memory limits (128 MB each here), not use: lift
        // it so the pool holds every idle sandbox the bench asks for.
        &format!("[capacity]\nmemory_budget_mb = 100000000\ngeneral = [ {{ profile = \"python:128\", min = {n}, max = {n} }} ]\n"),
    )?;
    let started = Instant::now();
    let deadline = started + fill_limit;
    let mut idle = 0;
    while Instant::now() < deadline {
        check_stop()?;
        idle = node.general_idle()?;
        if idle >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let fill_time = started.elapsed();
    // Let the last ones settle into their wait for an assignment.
    std::thread::sleep(Duration::from_secs(1));
    let usage = sandbox_usage(&node.data_dir)?;
    let after = mem_available_mib()?;
    drop(node);
    if usage.sandboxes == 0 {
        bail!("no sandbox process was found in the node's cgroups ({idle} idle in its pool)");
    }

    let count = usage.sandboxes.max(1) as f64;
    let pss = usage.pss_kib as f64 / 1024.0 / count;
    let private = usage.private_kib as f64 / 1024.0 / count;
    let dropped = before.saturating_sub(after) as f64;
    let per_drop = dropped / count;
    let fit = |mib: f64| NODE_GIB * 1024.0 / mib.max(0.01);
    let section = Section::new(
        "density",
        "Density of idle runtime-warm sandboxes",
        "A node whose general pool holds N idle runtime-warm Python sandboxes (interpreter and bootstrap running, waiting for code). \
         Memory summed over every process in the node's sandbox cgroups from /proc/PID/smaps_rollup: PSS (shared pages split between sharers) and private memory (Private_Clean + Private_Dirty: what each sandbox alone costs). \
         MemAvailable drop: the machine's MemAvailable before the node started minus after the pool filled (includes the daemon itself). \
         Extrapolated: how many such sandboxes 24 GiB holds at that cost each.",
    )
    .figure(
        Figure::new(
            "sandboxes",
            "idle runtime-warm sandboxes measured",
            usage.sandboxes as f64,
            "sandboxes",
        )
        .with_note(&format!(
            "asked for {n}{}; the pool held {idle} after {:.1} s",
            if n < wanted {
                format!(" ({wanted} bounded by this machine's MemAvailable)")
            } else {
                String::new()
            },
            fill_time.as_secs_f64()
        )),
    )
    .figure(Figure::new("pss", "PSS per sandbox", pss, "MiB"))
    .figure(Figure::new(
        "private",
        "private memory per sandbox",
        private,
        "MiB",
    ))
    .figure(
        Figure::new(
            "memavailable-drop",
            "MemAvailable drop per sandbox",
            per_drop,
            "MiB",
        )
        .with_note(&format!("{dropped:.0} MiB in all")),
    )
    .figure(Figure::new(
        "fit-24g-pss",
        "sandboxes in 24 GiB, by PSS",
        fit(pss),
        "sandboxes",
    ))
    .figure(Figure::new(
        "fit-24g-private",
        "sandboxes in 24 GiB, by private memory",
        fit(private),
        "sandboxes",
    ))
    .figure(Figure::new(
        "fit-24g-memavailable",
        "sandboxes in 24 GiB, by MemAvailable drop",
        fit(per_drop),
        "sandboxes",
    ));
    Ok(section)
}

/// Every process in the node's sandbox cgroups, summed per sandbox.
fn sandbox_usage(data_dir: &Path) -> Result<Usage> {
    let marker = format!("/{}/", crate::serve::cgroup_name(data_dir));
    let mut per_sandbox: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cg) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            continue;
        };
        let Some(line) = cg
            .lines()
            .find(|l| l.contains(&marker) && (l.contains(":memory:") || l.starts_with("0::")))
        else {
            continue;
        };
        let Some(sandbox) = line
            .split(&marker)
            .nth(1)
            .and_then(|rest| rest.split('/').next())
        else {
            continue;
        };
        // A process that exited meanwhile is skipped.
        let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        let kib = |key: &str| {
            smaps
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let e = per_sandbox.entry(sandbox.to_owned()).or_default();
        e.0 += kib("Pss:");
        e.1 += kib("Private_Clean:") + kib("Private_Dirty:");
    }
    Ok(Usage {
        sandboxes: per_sandbox.len(),
        pss_kib: per_sandbox.values().map(|v| v.0).sum(),
        private_kib: per_sandbox.values().map(|v| v.1).sum(),
    })
}

fn mem_available_mib() -> Result<u64> {
    let m = std::fs::read_to_string("/proc/meminfo")?;
    m.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib / 1024)
        .context("no MemAvailable in /proc/meminfo")
}
