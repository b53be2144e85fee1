//! CPU time from `/proc`, for the warm section's per-invocation budget:
//! which process spends what on one invocation.
//!
//! Processes are read from `/proc/<pid>/stat` (user + system time of the
//! whole thread group, dead threads included, in clock ticks: `USER_HZ`,
//! 100 on every Linux ABI this runs on). A thread's own time comes from
//! `/proc/thread-self/schedstat` (nanoseconds, on-CPU time).

use std::collections::HashMap;
use std::time::Duration;

/// Linux's `USER_HZ`, fixed by the ABI (not the kernel's `HZ`).
const USER_HZ: u64 = 100;

/// `(ppid, user + system ticks)` from a `/proc/<pid>/stat` line.
fn parse_stat(line: &str) -> Option<(u32, u64)> {
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted after its last `)`.
    let rest = &line[line.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

fn ticks(t: u64) -> Duration {
    Duration::from_nanos(t * (1_000_000_000 / USER_HZ))
}

/// Every process now: pid → (ppid, ticks).
fn processes() -> HashMap<u32, (u32, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(s) = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|l| parse_stat(&l))
        {
            out.insert(pid, s);
        }
    }
    out
}

/// CPU time so far of a process and, separately, of all its living
/// descendants.
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeCpu {
    pub own: Duration,
    pub descendants: Duration,
}

impl TreeCpu {
    pub fn total(self) -> Duration {
        self.own + self.descendants
    }
}

/// Reads [`TreeCpu`] for each root in one pass over `/proc`.
pub fn trees(roots: &[u32]) -> Vec<TreeCpu> {
    let procs = processes();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, (ppid, _)) in &procs {
        children.entry(*ppid).or_default().push(*pid);
    }
    roots
        .iter()
        .map(|root| {
            let own = procs.get(root).map_or(0, |p| p.1);
            let mut below = 0;
            let mut stack = children.get(root).cloned().unwrap_or_default();
            // Bounded: each pid is visited once (a pid has one parent).
            while let Some(pid) = stack.pop() {
                below += procs.get(&pid).map_or(0, |p| p.1);
                if let Some(c) = children.get(&pid) {
                    stack.extend_from_slice(c);
                }
            }
            TreeCpu {
                own: ticks(own),
                descendants: ticks(below),
            }
        })
        .collect()
}

/// On-CPU time of the calling thread so far.
pub fn this_thread() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_name_has_spaces_and_parens() {
        let line = "4242 (tokio (rt) w) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1000 0 0";
        assert_eq!(parse_stat(line), Some((17, 325)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_seen_with_its_cpu_time() {
        // Spend some CPU so that the counters cannot both be zero.
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        assert!(this_thread() > Duration::ZERO);
        let me = std::process::id();
        let t = trees(&[me]);
        assert_eq!(t.len(), 1);
        assert!(t[0].own > Duration::ZERO);
    }
}
