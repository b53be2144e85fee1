//! cgroups for sandboxes, on cgroup v1, v2 and the hybrid layout.
//!
//! Detection reads `/proc/self/mountinfo` and `/proc/self/cgroup` once, at
//! start, into a [`CgroupLayout`]: where each hierarchy is mounted and where
//! the daemon's own cgroup is in it. Each resource (memory, pids, cpu) is then
//! placed on the unified (v2) hierarchy when the daemon's cgroup there offers
//! the controller, otherwise on the v1 hierarchy that carries it. Every
//! sandbox gets `<daemon's cgroup>/<name>/<sandbox id>` in each hierarchy it
//! uses; on a hybrid host the unified hierarchy is used too, without
//! controllers, because its `cgroup.kill` empties a sandbox in one write.
//!
//! **v2 placement.** cgroup v2 refuses controllers below a cgroup that has
//! processes ("no internal processes"). When the daemon's cgroup has
//! processes and is not the root, the daemon moves itself into a leaf
//! `<own>/daemon` and enables the controllers on `<own>` — what systemd asks
//! of a service with `Delegate=yes`. A later start that finds itself already
//! in `<own>/daemon` (beside `<own>/<name>`) uses `<own>` again.
//!
//! All file access goes through [`CgroupFs`], so placement and limit logic is
//! tested against a temporary directory.

use super::protocol::CgroupJoin;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The few filesystem operations cgroup management needs.
pub(crate) trait CgroupFs: Send + Sync + fmt::Debug {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Writes an existing control file (never creates one).
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    /// Creates a directory; an existing one is fine.
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    fn rmdir(&self, path: &Path) -> io::Result<()>;
    fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    fn exists(&self, path: &Path) -> bool;
    /// Whether paths name the host's real files (not a test double's).
    fn is_real(&self) -> bool {
        false
    }
    /// Whether the caller may create cgroups in `dir`.
    fn writable(&self, dir: &Path) -> bool;
}

/// The real cgroup filesystems.
#[derive(Debug, Default)]
pub(crate) struct HostCgroupFs;

impl CgroupFs for HostCgroupFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn is_real(&self) -> bool {
        true
    }
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(value.as_bytes())
    }
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        match std::fs::create_dir(path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            r => r,
        }
    }
    fn rmdir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
    fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(path)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                out.push(e.path());
            }
        }
        out.sort();
        Ok(out)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn writable(&self, dir: &Path) -> bool {
        nix::unistd::access(
            dir,
            nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
        )
        .is_ok()
    }
}

/// Creates `dir` (if needed) and checks that cgroups can be made in it.
fn make_parent(fs: &dyn CgroupFs, dir: &Path) -> io::Result<()> {
    fs.mkdir(dir)?;
    if fs.writable(dir) {
        Ok(())
    } else {
        Err(io::Error::from(io::ErrorKind::PermissionDenied))
    }
}

/// A v1 hierarchy: its controllers and the daemon's cgroup directory in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V1Hierarchy {
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    /// The daemon's own cgroup, as a host directory.
    pub own: PathBuf,
}

/// The unified (v2) hierarchy and the daemon's cgroup directory in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnifiedHierarchy {
    pub mount_point: PathBuf,
    pub own: PathBuf,
}

/// Where the cgroup hierarchies are and where the daemon sits in them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CgroupLayout {
    pub v1: Vec<V1Hierarchy>,
    pub unified: Option<UnifiedHierarchy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupMount {
    root: String,
    mount_point: PathBuf,
    /// `None` for cgroup2; the v1 controllers (and `name=` tags) otherwise.
    v1_options: Option<Vec<String>>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
pub(crate) fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One parsed line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountInfo {
    pub root: String,
    pub mount_point: PathBuf,
    /// The optional fields: `shared:N`, `master:N`, ... (propagation).
    pub optional: Vec<String>,
    pub fs_type: String,
    pub super_options: String,
}

impl MountInfo {
    /// Whether mounts made under this one propagate to other mounts.
    pub(crate) fn is_shared(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("shared:"))
    }
}

pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 5 || r.len() < 3 {
                return None;
            }
            Some(MountInfo {
                root: unescape_mountinfo(l[3]),
                mount_point: PathBuf::from(unescape_mountinfo(l[4])),
                optional: l
                    .get(6..)
                    .unwrap_or_default()
                    .iter()
                    .map(|o| (*o).to_owned())
                    .collect(),
                fs_type: r[0].to_owned(),
                super_options: r[2].to_owned(),
            })
        })
        .collect()
}

fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    parse_mountinfo(mountinfo)
        .into_iter()
        .filter_map(|m| match m.fs_type.as_str() {
            "cgroup2" => Some(CgroupMount {
                root: m.root,
                mount_point: m.mount_point,
                v1_options: None,
            }),
            "cgroup" => Some(CgroupMount {
                root: m.root,
                mount_point: m.mount_point,
                v1_options: Some(
                    m.super_options
                        .split(',')
                        .filter(|o| *o != "rw" && *o != "ro")
                        .map(str::to_owned)
                        .collect(),
                ),
            }),
            _ => None,
        })
        .collect()
}

/// The host directory of `cgroup_path` (as `/proc/self/cgroup` shows it) in
/// a hierarchy mounted at `mount_point` whose mount shows `root`.
fn host_dir(mount_point: &Path, root: &str, cgroup_path: &str) -> PathBuf {
    let rel = if root == "/" {
        cgroup_path
    } else {
        cgroup_path.strip_prefix(root).unwrap_or(cgroup_path)
    };
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        mount_point.to_path_buf()
    } else {
        mount_point.join(rel)
    }
}

/// Builds the layout from the texts of `/proc/self/mountinfo` and
/// `/proc/self/cgroup`.
pub(crate) fn detect_layout(mountinfo: &str, proc_cgroup: &str) -> CgroupLayout {
    let mounts = cgroup_mounts(mountinfo);
    let mut layout = CgroupLayout::default();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(list), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && list.is_empty() {
            // The unified hierarchy.
            if let Some(m) = mounts.iter().find(|m| m.v1_options.is_none()) {
                layout.unified = Some(UnifiedHierarchy {
                    mount_point: m.mount_point.clone(),
                    own: host_dir(&m.mount_point, &m.root, path),
                });
            }
            continue;
        }
        let controllers: Vec<String> = list
            .split(',')
            .filter(|c| !c.is_empty() && !c.starts_with("name="))
            .map(str::to_owned)
            .collect();
        if controllers.is_empty() {
            continue;
        }
        let found = mounts.iter().find(|m| {
            m.v1_options
                .as_ref()
                .is_some_and(|opts| controllers.iter().all(|c| opts.contains(c)))
        });
        if let Some(m) = found {
            layout.v1.push(V1Hierarchy {
                controllers,
                mount_point: m.mount_point.clone(),
                own: host_dir(&m.mount_point, &m.root, path),
            });
        }
    }
    layout
}

impl CgroupLayout {
    /// Reads the running process's layout.
    pub(crate) fn detect() -> CgroupLayout {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        detect_layout(&mountinfo, &cgroup)
    }

    fn v1_with(&self, controller: &str) -> Option<&V1Hierarchy> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) enum CgroupVersion {
    V1,
    V2,
}

/// Where one resource controller lives: its version and the `<own>/<name>`
/// directory that holds the sandboxes' cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub version: CgroupVersion,
    pub parent: PathBuf,
}

/// v1 `cpu.shares` for a memory size: the memory in MiB, at least 2 (the
/// kernel's minimum). 1024 MiB gets the default weight of 1024.
pub(crate) fn cpu_shares_v1(memory_mb: u32) -> u64 {
    u64::from(memory_mb).max(2)
}

/// v2 `cpu.weight` for a memory size: the same proportion as v1 (1024 MiB
/// gets the default weight, 100), rounded, clamped to the kernel's 1..=10000.
pub(crate) fn cpu_weight_v2(memory_mb: u32) -> u64 {
    ((u64::from(memory_mb) * 100 + 512) / 1024).clamp(1, 10_000)
}

/// What a sandbox's cgroup enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub memory_mb: u32,
    pub pids_max: u32,
}

/// How sandboxes' cgroups are placed on this host (decided once, at start).
#[derive(Debug)]
pub(crate) struct CgroupManager {
    fs: Arc<dyn CgroupFs>,
    pub memory: Option<Slot>,
    pub pids: Option<Slot>,
    pub cpu: Option<Slot>,
    /// v1 freezer parent, used to stop a v1 sandbox while killing it.
    pub freezer: Option<PathBuf>,
    /// Unified parent (with or without controllers): process tracking and `cgroup.kill`.
    pub unified: Option<PathBuf>,
}

/// A sandbox's cgroup directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SandboxCgroup {
    pub memory: Option<(CgroupVersion, PathBuf)>,
    pub pids: Option<(CgroupVersion, PathBuf)>,
    pub cpu: Option<(CgroupVersion, PathBuf)>,
    pub freezer: Option<PathBuf>,
    pub unified: Option<PathBuf>,
}

impl SandboxCgroup {
    /// Every distinct directory, in a stable order.
    pub(crate) fn dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = Vec::new();
        let all = [
            self.memory.as_ref().map(|s| &s.1),
            self.pids.as_ref().map(|s| &s.1),
            self.cpu.as_ref().map(|s| &s.1),
            self.freezer.as_ref(),
            self.unified.as_ref(),
        ];
        for d in all.into_iter().flatten() {
            if !v.contains(d) {
                v.push(d.clone());
            }
        }
        v
    }

    /// The directories a sandbox's processes join, by hierarchy version.
    /// Every v2 slot lives on the one unified hierarchy, where a process
    /// is in exactly one cgroup, so they are one directory.
    pub(crate) fn joins(&self) -> Result<CgroupJoin, String> {
        let mut join = CgroupJoin::default();
        let versioned = [&self.memory, &self.pids, &self.cpu]
            .into_iter()
            .flatten()
            .map(|(v, d)| (*v, d))
            .chain(self.freezer.iter().map(|d| (CgroupVersion::V1, d)))
            .chain(self.unified.iter().map(|d| (CgroupVersion::V2, d)));
        for (version, dir) in versioned {
            match version {
                CgroupVersion::V1 => {
                    if !join.v1.contains(dir) {
                        join.v1.push(dir.clone());
                    }
                }
                CgroupVersion::V2 => match &join.v2 {
                    None => join.v2 = Some(dir.clone()),
                    Some(d) if d == dir => {}
                    Some(d) => {
                        return Err(format!(
                            "two unified-hierarchy cgroups for one sandbox: {} and {}",
                            d.display(),
                            dir.display()
                        ))
                    }
                },
            }
        }
        Ok(join)
    }
}

const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

impl CgroupManager {
    /// Decides placement and creates the `<own>/<name>` parents. Whatever
    /// cannot be used is left out, with a warning saying why.
    pub(crate) fn prepare(
        fs: Arc<dyn CgroupFs>,
        layout: &CgroupLayout,
        name: &str,
        self_pid: u32,
    ) -> (CgroupManager, Vec<String>) {
        let mut warnings = Vec::new();
        let mut m = CgroupManager {
            fs: fs.clone(),
            memory: None,
            pids: None,
            cpu: None,
            freezer: None,
            unified: None,
        };
        let mut on_v2: Vec<&str> = Vec::new();
        if let Some(u) = &layout.unified {
            let base = unified_base(fs.as_ref(), u, name);
            let available = fs
                .read(&base.join("cgroup.controllers"))
                .unwrap_or_default();
            let wanted: Vec<&str> = CONTROLLERS
                .iter()
                .copied()
                .filter(|c| available.split_whitespace().any(|a| a == *c))
                .collect();
            let parent = base.join(name);
            match prepare_unified(fs.as_ref(), u, &base, &parent, &wanted, self_pid) {
                Ok(enabled) => {
                    on_v2 = enabled;
                    m.unified = Some(parent);
                }
                Err(e) => warnings.push(e),
            }
        }
        for c in CONTROLLERS {
            let what = match c {
                "memory" => "memory limit",
                "pids" => "pids limit",
                _ => "CPU weight",
            };
            let slot = if on_v2.contains(&c) {
                m.unified.clone().map(|parent| Slot {
                    version: CgroupVersion::V2,
                    parent,
                })
            } else if let Some(h) = layout.v1_with(c) {
                let parent = h.own.join(name);
                match make_parent(fs.as_ref(), &parent) {
                    Ok(()) => Some(Slot {
                        version: CgroupVersion::V1,
                        parent,
                    }),
                    Err(e) => {
                        warnings.push(format!(
                            "no {what} for sandboxes: cannot create {} ({e}); run as root or delegate a cgroup v2 subtree to hearth (systemd Delegate=yes)",
                            parent.display()
                        ));
                        None
                    }
                }
            } else {
                warnings.push(format!(
                    "no {what} for sandboxes: the {c} cgroup controller is not available to hearth (neither in its cgroup v2 subtree nor as a v1 hierarchy); enable it or delegate it (systemd Delegate=yes)"
                ));
                None
            };
            match c {
                "memory" => m.memory = slot,
                "pids" => m.pids = slot,
                _ => m.cpu = slot,
            }
        }
        let uses_v1 = [&m.memory, &m.pids, &m.cpu]
            .iter()
            .any(|s| s.as_ref().is_some_and(|s| s.version == CgroupVersion::V1));
        // The freezer is only needed to kill a v1 group race-free; the
        // unified hierarchy's cgroup.kill does it in one write when present.
        let unified_kill = m
            .unified
            .as_ref()
            .is_some_and(|u| fs.exists(&u.join("cgroup.kill")));
        if uses_v1 && !unified_kill {
            if let Some(h) = layout.v1_with("freezer") {
                let parent = h.own.join(name);
                if make_parent(fs.as_ref(), &parent).is_ok() {
                    m.freezer = Some(parent);
                }
            }
        }
        (m, warnings)
    }

    /// The `<own>/<name>` directories in use (recorded for the next start).
    pub(crate) fn parents(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = Vec::new();
        let all = [
            self.memory.as_ref().map(|s| &s.parent),
            self.pids.as_ref().map(|s| &s.parent),
            self.cpu.as_ref().map(|s| &s.parent),
            self.freezer.as_ref(),
            self.unified.as_ref(),
        ];
        for d in all.into_iter().flatten() {
            if !v.contains(d) {
                v.push(d.clone());
            }
        }
        v
    }

    /// The version that enforces memory, or `None` without a memory limit.
    pub(crate) fn version(&self) -> Option<u8> {
        self.memory.as_ref().map(|s| match s.version {
            CgroupVersion::V1 => 1,
            CgroupVersion::V2 => 2,
        })
    }

    /// The directories a sandbox called `id` gets (not created).
    pub(crate) fn sandbox_dirs(&self, id: &str) -> SandboxCgroup {
        let at = |s: &Option<Slot>| s.as_ref().map(|s| (s.version, s.parent.join(id)));
        SandboxCgroup {
            memory: at(&self.memory),
            pids: at(&self.pids),
            cpu: at(&self.cpu),
            freezer: self.freezer.as_ref().map(|p| p.join(id)),
            unified: self.unified.as_ref().map(|p| p.join(id)),
        }
    }

    /// Creates a sandbox's cgroups and writes its limits; on failure nothing
    /// is left behind.
    pub(crate) fn create(&self, id: &str, limits: Limits) -> Result<SandboxCgroup, String> {
        let cg = self.sandbox_dirs(id);
        let mut created: Vec<PathBuf> = Vec::new();
        for d in cg.dirs() {
            if let Err(e) = self.fs.mkdir(&d) {
                for c in created.iter().rev() {
                    let _ = self.fs.rmdir(c);
                }
                return Err(format!("cannot create cgroup {}: {e}", d.display()));
            }
            created.push(d);
        }
        if let Err(e) = self.write_limits(&cg, limits) {
            for c in created.iter().rev() {
                let _ = self.fs.rmdir(c);
            }
            return Err(e);
        }
        Ok(cg)
    }

    fn write_limits(&self, cg: &SandboxCgroup, limits: Limits) -> Result<(), String> {
        let fs = self.fs.as_ref();
        let w = |dir: &Path, file: &str, value: String| {
            let p = dir.join(file);
            fs.write(&p, &value)
                .map_err(|e| format!("cannot write {value} to {}: {e}", p.display()))
        };
        let bytes = u64::from(limits.memory_mb) << 20;
        match &cg.memory {
            Some((CgroupVersion::V1, d)) => {
                w(d, "memory.limit_in_bytes", bytes.to_string())?;
                // Without swap accounting the file is absent; with it, the
                // sandbox must not swap past its limit.
                if fs.exists(&d.join("memory.memsw.limit_in_bytes")) {
                    w(d, "memory.memsw.limit_in_bytes", bytes.to_string())?;
                }
            }
            Some((CgroupVersion::V2, d)) => {
                w(d, "memory.max", bytes.to_string())?;
                if fs.exists(&d.join("memory.swap.max")) {
                    w(d, "memory.swap.max", "0".to_owned())?;
                }
                // One OOM kill takes the whole sandbox, as its runtime would die anyway.
                if fs.exists(&d.join("memory.oom.group")) {
                    w(d, "memory.oom.group", "1".to_owned())?;
                }
            }
            None => {}
        }
        if let Some((_, d)) = &cg.pids {
            w(d, "pids.max", limits.pids_max.to_string())?;
        }
        match &cg.cpu {
            Some((CgroupVersion::V1, d)) => {
                w(d, "cpu.shares", cpu_shares_v1(limits.memory_mb).to_string())?
            }
            Some((CgroupVersion::V2, d)) => {
                w(d, "cpu.weight", cpu_weight_v2(limits.memory_mb).to_string())?
            }
            None => {}
        }
        Ok(())
    }

    /// Changes a sandbox's memory limit (and the CPU weight that follows it).
    /// On v1, `memory.memsw.limit_in_bytes` must stay at or above
    /// `memory.limit_in_bytes`: lowering writes the limit first, raising
    /// writes memsw first.
    pub(crate) fn set_memory_limit(
        &self,
        cg: &SandboxCgroup,
        memory_mb: u32,
    ) -> Result<(), String> {
        let fs = self.fs.as_ref();
        let w = |dir: &Path, file: &str, value: String| {
            let p = dir.join(file);
            fs.write(&p, &value)
                .map_err(|e| format!("cannot write {value} to {}: {e}", p.display()))
        };
        let bytes = u64::from(memory_mb) << 20;
        match &cg.memory {
            Some((CgroupVersion::V1, d)) => {
                let memsw = fs.exists(&d.join("memory.memsw.limit_in_bytes"));
                let current: Option<u64> = fs
                    .read(&d.join("memory.limit_in_bytes"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                let raising = current.is_some_and(|c| bytes > c);
                if memsw && raising {
                    w(d, "memory.memsw.limit_in_bytes", bytes.to_string())?;
                }
                w(d, "memory.limit_in_bytes", bytes.to_string())?;
                if memsw && !raising {
                    w(d, "memory.memsw.limit_in_bytes", bytes.to_string())?;
                }
            }
            Some((CgroupVersion::V2, d)) => w(d, "memory.max", bytes.to_string())?,
            None => {}
        }
        match &cg.cpu {
            Some((CgroupVersion::V1, d)) => {
                w(d, "cpu.shares", cpu_shares_v1(memory_mb).to_string())?
            }
            Some((CgroupVersion::V2, d)) => {
                w(d, "cpu.weight", cpu_weight_v2(memory_mb).to_string())?
            }
            None => {}
        }
        Ok(())
    }

    /// Peak memory use of the sandbox, bytes.
    pub(crate) fn peak_memory(&self, cg: &SandboxCgroup) -> Option<u64> {
        self.fs
            .read(&Self::peak_file(cg)?)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The file [`peak_memory`](Self::peak_memory) reads, for a caller that
    /// keeps it open (only where the cgroup filesystem is the real one).
    pub(crate) fn peak_memory_path(&self, cg: &SandboxCgroup) -> Option<PathBuf> {
        self.fs.is_real().then(|| Self::peak_file(cg)).flatten()
    }

    fn peak_file(cg: &SandboxCgroup) -> Option<PathBuf> {
        let (v, d) = cg.memory.as_ref()?;
        Some(d.join(match v {
            CgroupVersion::V1 => "memory.max_usage_in_bytes",
            CgroupVersion::V2 => "memory.peak",
        }))
    }

    /// Whether the OOM killer has killed something in the sandbox.
    pub(crate) fn oom_killed(&self, cg: &SandboxCgroup) -> bool {
        let Some((v, d)) = cg.memory.as_ref() else {
            return false;
        };
        let key_value = |text: &str, key: &str| -> Option<u64> {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
        };
        match v {
            CgroupVersion::V1 => {
                let text = self
                    .fs
                    .read(&d.join("memory.oom_control"))
                    .unwrap_or_default();
                match key_value(&text, "oom_kill") {
                    Some(n) => n > 0,
                    // Kernels before 4.13 do not count kills; hitting the
                    // limit is the closest sign.
                    None => self
                        .fs
                        .read(&d.join("memory.failcnt"))
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0),
                }
            }
            CgroupVersion::V2 => {
                let text = self.fs.read(&d.join("memory.events")).unwrap_or_default();
                key_value(&text, "oom_kill").is_some_and(|n| n > 0)
            }
        }
    }

    /// SIGKILLs everything in the sandbox's cgroups and waits (bounded) until
    /// they are empty. Returns whether they are.
    pub(crate) fn kill_all(&self, cg: &SandboxCgroup, kill: &dyn Fn(i32)) -> bool {
        kill_dirs(self.fs.as_ref(), &cg.dirs(), kill)
    }

    /// Removes the sandbox's cgroup directories.
    pub(crate) fn remove(&self, cg: &SandboxCgroup) -> Result<(), String> {
        remove_dirs(self.fs.as_ref(), &cg.dirs())
    }

    /// Every sandbox cgroup under the given `<own>/<name>` parents, grouped by
    /// sandbox name.
    pub(crate) fn leftovers(&self, parents: &[PathBuf]) -> Vec<(String, Vec<PathBuf>)> {
        let mut by_name: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for parent in parents {
            let Ok(children) = self.fs.subdirs(parent) else {
                continue;
            };
            for child in children {
                if let Some(name) = child.file_name().and_then(|n| n.to_str()) {
                    by_name
                        .entry(name.to_owned())
                        .or_default()
                        .push(child.clone());
                }
            }
        }
        by_name.into_iter().collect()
    }

    pub(crate) fn fs(&self) -> &dyn CgroupFs {
        self.fs.as_ref()
    }
}

/// Every pid in any of the directories' `cgroup.procs`.
pub(crate) fn pids_in(fs: &dyn CgroupFs, dirs: &[PathBuf]) -> Vec<i32> {
    let mut pids = Vec::new();
    for d in dirs {
        if let Ok(text) = fs.read(&d.join("cgroup.procs")) {
            for p in text
                .split_whitespace()
                .filter_map(|s| s.parse::<i32>().ok())
            {
                if !pids.contains(&p) {
                    pids.push(p);
                }
            }
        }
    }
    pids
}

/// SIGKILLs every process in the cgroup directories (whatever their version)
/// and waits, bounded, until they are empty. v2 directories with
/// `cgroup.kill` are emptied by the kernel in one write; otherwise the group
/// is frozen (v1 `freezer.state` or v2 `cgroup.freeze`) so nothing forks
/// while each member is killed, then thawed so the kills land, until empty.
pub(crate) fn kill_dirs(fs: &dyn CgroupFs, dirs: &[PathBuf], kill: &dyn Fn(i32)) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut killed_by_kernel = false;
    for d in dirs {
        let k = d.join("cgroup.kill");
        if fs.exists(&k) && fs.write(&k, "1").is_ok() {
            killed_by_kernel = true;
        }
    }
    if killed_by_kernel {
        // The kernel has sent SIGKILL to every member; wait for them to go.
        let give_up = Instant::now() + Duration::from_secs(1);
        let mut pause = Duration::from_micros(100);
        while Instant::now() < give_up {
            if pids_in(fs, dirs).is_empty() {
                return true;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }
    let freeze: Vec<(PathBuf, &str, &str)> = dirs
        .iter()
        .filter_map(|d| {
            let v1 = d.join("freezer.state");
            let v2 = d.join("cgroup.freeze");
            if fs.exists(&v1) {
                Some((v1, "FROZEN", "THAWED"))
            } else if fs.exists(&v2) && !fs.exists(&d.join("cgroup.kill")) {
                Some((v2, "1", "0"))
            } else {
                None
            }
        })
        .collect();
    let mut pause = Duration::from_micros(200);
    loop {
        if pids_in(fs, dirs).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        for (f, frozen, _) in &freeze {
            let _ = fs.write(f, frozen);
        }
        for p in pids_in(fs, dirs) {
            kill(p);
        }
        for (f, _, thawed) in &freeze {
            let _ = fs.write(f, thawed);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Removes cgroup directories, retrying briefly while the kernel finishes
/// releasing exited tasks.
pub(crate) fn remove_dirs(fs: &dyn CgroupFs, dirs: &[PathBuf]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut pause = Duration::from_micros(200);
    for d in dirs {
        loop {
            match fs.rmdir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("cannot remove cgroup {}: {e}", d.display()))
                }
                Err(_) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
            }
        }
    }
    Ok(())
}

/// The unified-hierarchy cgroup hearth works under: the daemon's own, or its
/// parent when an earlier start already moved the daemon into `<own>/daemon`.
fn unified_base(fs: &dyn CgroupFs, u: &UnifiedHierarchy, name: &str) -> PathBuf {
    if u.own.file_name().is_some_and(|n| n == "daemon") && u.own != u.mount_point {
        if let Some(parent) = u.own.parent() {
            if fs.exists(&parent.join(name)) {
                return parent.to_path_buf();
            }
        }
    }
    u.own.clone()
}

/// Creates `<base>/<name>` on the unified hierarchy and enables `wanted`
/// controllers down to it. Returns the controllers actually enabled.
fn prepare_unified<'a>(
    fs: &dyn CgroupFs,
    u: &UnifiedHierarchy,
    base: &Path,
    parent: &Path,
    wanted: &[&'a str],
    self_pid: u32,
) -> Result<Vec<&'a str>, String> {
    make_parent(fs, parent).map_err(|e| {
        format!(
            "no cgroup for sandboxes: cannot create {} ({e}); run as root or delegate a cgroup v2 subtree to hearth (systemd Delegate=yes)",
            parent.display()
        )
    })?;
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let enable: String = wanted.iter().map(|c| format!("+{c} ")).collect();
    let enable = enable.trim_end();
    // The hierarchy's real root is exempt from "no internal processes"; a
    // container's cgroup-namespace root is not. Only the real root lacks
    // `cgroup.type`.
    let real_root = base == u.mount_point && !fs.exists(&base.join("cgroup.type"));
    let try_enable = || -> Result<(), String> {
        let mut last = String::new();
        // Processes may appear while we move them: a few rounds.
        for _ in 0..3 {
            if !real_root {
                move_members_to_leaf(fs, base, self_pid)?;
            }
            let mut enabled = true;
            for dir in [base, parent] {
                let f = dir.join("cgroup.subtree_control");
                if let Err(e) = fs.write(&f, enable) {
                    last = format!("cannot write {enable:?} to {}: {e}", f.display());
                    enabled = false;
                    break;
                }
            }
            if enabled {
                return Ok(());
            }
        }
        Err(last)
    };
    match try_enable() {
        Ok(()) => Ok(wanted.to_vec()),
        Err(e) => Err(format!(
            "cgroup v2 controllers unavailable to sandboxes: {e}; delegate an empty cgroup v2 subtree to hearth (systemd Delegate=yes) or run it in its own cgroup"
        )),
    }
}

/// Moves every process of `base` (the daemon first) into `<base>/daemon`, so
/// `base` may enable controllers for its children. They stay inside the
/// daemon's subtree, which is what a service manager tracks.
fn move_members_to_leaf(fs: &dyn CgroupFs, base: &Path, self_pid: u32) -> Result<(), String> {
    let procs = fs.read(&base.join("cgroup.procs")).unwrap_or_default();
    let others: Vec<&str> = procs
        .split_whitespace()
        .filter(|p| *p != self_pid.to_string())
        .collect();
    if procs.trim().is_empty() {
        return Ok(());
    }
    let leaf = base.join("daemon");
    let leaf_procs = leaf.join("cgroup.procs");
    fs.mkdir(&leaf)
        .and_then(|()| {
            if procs.split_whitespace().any(|p| p == self_pid.to_string()) {
                fs.write(&leaf_procs, &self_pid.to_string())?;
            }
            Ok(())
        })
        .map_err(|e| {
            format!(
                "cannot move the daemon into {} to free {} for controllers: {e}",
                leaf.display(),
                base.display()
            )
        })?;
    for p in others {
        // A process that exited meanwhile is fine.
        let _ = fs.write(&leaf_procs, p);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A cgroup filesystem in a temporary directory: writes create files (the
    /// kernel would provide them), and every write is recorded.
    #[derive(Debug, Default)]
    pub(crate) struct TempCgroupFs {
        pub writes: parking_lot::Mutex<Vec<(PathBuf, String)>>,
        pub fail_writes_to: parking_lot::Mutex<HashMap<PathBuf, io::ErrorKind>>,
        /// Directories (and below) the caller may not create cgroups in.
        pub read_only: parking_lot::Mutex<Vec<PathBuf>>,
    }

    impl CgroupFs for TempCgroupFs {
        fn read(&self, path: &Path) -> io::Result<String> {
            std::fs::read_to_string(path)
        }
        fn write(&self, path: &Path, value: &str) -> io::Result<()> {
            if let Some(k) = self.fail_writes_to.lock().get(path) {
                return Err(io::Error::from(*k));
            }
            self.writes
                .lock()
                .push((path.to_path_buf(), value.to_owned()));
            std::fs::write(path, value)
        }
        fn mkdir(&self, path: &Path) -> io::Result<()> {
            HostCgroupFs.mkdir(path)
        }
        fn rmdir(&self, path: &Path) -> io::Result<()> {
            std::fs::remove_dir_all(path)
        }
        fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
            HostCgroupFs.subdirs(path)
        }
        fn exists(&self, path: &Path) -> bool {
            path.exists()
        }
        fn writable(&self, dir: &Path) -> bool {
            !self.read_only.lock().iter().any(|r| dir.starts_with(r))
        }
    }

    const HYBRID_MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
6:freezer:/
4:memory:/process_api/d0ec
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn detects_the_hybrid_layout_of_this_machine_kind() {
        let l = detect_layout(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        let mem = l.v1_with("memory").unwrap();
        assert_eq!(
            mem.own,
            PathBuf::from("/sys/fs/cgroup/memory/process_api/d0ec")
        );
        assert_eq!(
            l.v1_with("pids").unwrap().own,
            PathBuf::from("/sys/fs/cgroup/pids")
        );
        assert_eq!(
            l.v1_with("cpu").unwrap().own,
            PathBuf::from("/sys/fs/cgroup/cpu")
        );
        assert!(l.v1_with("freezer").is_some());
        assert_eq!(
            l.unified,
            Some(UnifiedHierarchy {
                mount_point: "/sys/fs/cgroup/unified".into(),
                own: "/sys/fs/cgroup/unified".into()
            })
        );
        // name=systemd carries no controller.
        assert!(l
            .v1
            .iter()
            .all(|h| !h.controllers.iter().any(|c| c.contains("systemd"))));
    }

    #[test]
    fn detects_pure_v2_and_comounted_v1() {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let cg = "0::/system.slice/hearth.service\n";
        let l = detect_layout(mi, cg);
        assert!(l.v1.is_empty());
        assert_eq!(
            l.unified.unwrap().own,
            PathBuf::from("/sys/fs/cgroup/system.slice/hearth.service")
        );

        let mi = "\
25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
26 24 0:23 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";
        let cg = "4:cpu,cpuacct:/user.slice\n3:memory:/user.slice/x\n";
        let l = detect_layout(mi, cg);
        assert!(l.unified.is_none());
        assert_eq!(
            l.v1_with("cpu").unwrap().own,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/user.slice")
        );
        assert_eq!(
            l.v1_with("memory").unwrap().own,
            PathBuf::from("/sys/fs/cgroup/memory/user.slice/x")
        );
    }

    #[test]
    fn container_mount_roots_are_stripped() {
        // A container that sees its own cgroup mounted at the hierarchy's mount point.
        let mi = "40 31 0:38 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let l = detect_layout(mi, "0::/docker/abc/inner\n");
        assert_eq!(
            l.unified.unwrap().own,
            PathBuf::from("/sys/fs/cgroup/inner")
        );
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
    }

    #[test]
    fn limit_formulas() {
        assert_eq!(cpu_shares_v1(128), 128);
        assert_eq!(cpu_shares_v1(1), 2);
        assert_eq!(cpu_shares_v1(1024), 1024);
        assert_eq!(cpu_weight_v2(1024), 100);
        assert_eq!(cpu_weight_v2(128), 13);
        assert_eq!(cpu_weight_v2(1), 1);
        assert_eq!(cpu_weight_v2(10_240), 1000);
        assert_eq!(cpu_weight_v2(u32::MAX), 10_000);
    }

    fn fake_hybrid(root: &Path) -> CgroupLayout {
        let mk = |p: &str| {
            let d = root.join(p);
            std::fs::create_dir_all(&d).unwrap();
            d
        };
        let unified = mk("unified");
        std::fs::write(unified.join("cgroup.controllers"), "").unwrap();
        CgroupLayout {
            v1: vec![
                V1Hierarchy {
                    controllers: vec!["memory".into()],
                    mount_point: mk("memory"),
                    own: mk("memory/process_api/x"),
                },
                V1Hierarchy {
                    controllers: vec!["pids".into()],
                    mount_point: mk("pids"),
                    own: mk("pids"),
                },
                V1Hierarchy {
                    controllers: vec!["cpu".into()],
                    mount_point: mk("cpu"),
                    own: mk("cpu"),
                },
                V1Hierarchy {
                    controllers: vec!["freezer".into()],
                    mount_point: mk("freezer"),
                    own: mk("freezer"),
                },
            ],
            unified: Some(UnifiedHierarchy {
                mount_point: unified.clone(),
                own: unified,
            }),
        }
    }

    #[test]
    fn v1_sandbox_cgroup_gets_its_limits() {
        let t = tempfile::tempdir().unwrap();
        let layout = fake_hybrid(t.path());
        let fs = Arc::new(TempCgroupFs::default());
        let (m, warnings) = CgroupManager::prepare(fs.clone(), &layout, "hearth", 42);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(m.version(), Some(1));
        let memdir = t.path().join("memory/process_api/x/hearth/sb1");
        std::fs::create_dir_all(&memdir).unwrap();
        // The kernel provides memsw when swap accounting is on.
        std::fs::write(memdir.join("memory.memsw.limit_in_bytes"), "").unwrap();
        let cg = m
            .create(
                "sb1",
                Limits {
                    memory_mb: 128,
                    pids_max: 64,
                },
            )
            .unwrap();
        assert_eq!(cg.memory, Some((CgroupVersion::V1, memdir.clone())));
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(memdir.join("memory.limit_in_bytes")), "134217728");
        assert_eq!(
            read(memdir.join("memory.memsw.limit_in_bytes")),
            "134217728"
        );
        assert_eq!(read(t.path().join("pids/hearth/sb1/pids.max")), "64");
        assert_eq!(read(t.path().join("cpu/hearth/sb1/cpu.shares")), "128");
        assert!(t.path().join("freezer/hearth/sb1").is_dir());
        assert!(t.path().join("unified/hearth/sb1").is_dir());
        // Four v1 hierarchies joined by thread, the unified one by clone.
        let join = cg.joins().unwrap();
        assert_eq!(join.v1.len(), 4);
        assert_eq!(join.v2, Some(t.path().join("unified/hearth/sb1")));
        // The memory limit is written before memsw (the kernel requires memsw >= limit).
        let w = fs.writes.lock();
        let pos = |f: &str| w.iter().position(|(p, _)| p.ends_with(f)).unwrap();
        assert!(pos("memory.limit_in_bytes") < pos("memory.memsw.limit_in_bytes"));
        drop(w);
        std::fs::write(
            memdir.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        )
        .unwrap();
        assert!(!m.oom_killed(&cg));
        std::fs::write(
            memdir.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert!(m.oom_killed(&cg));
        std::fs::write(memdir.join("memory.max_usage_in_bytes"), "5000\n").unwrap();
        assert_eq!(m.peak_memory(&cg), Some(5000));
        m.remove(&cg).unwrap();
        assert!(!memdir.exists());
        assert!(!t.path().join("unified/hearth/sb1").exists());
    }

    #[test]
    fn set_memory_limit_orders_v1_writes_and_follows_with_cpu() {
        let t = tempfile::tempdir().unwrap();
        let layout = fake_hybrid(t.path());
        let fs = Arc::new(TempCgroupFs::default());
        let (m, _) = CgroupManager::prepare(fs.clone(), &layout, "hearth", 42);
        let memdir = t.path().join("memory/process_api/x/hearth/sb4");
        std::fs::create_dir_all(&memdir).unwrap();
        std::fs::write(memdir.join("memory.memsw.limit_in_bytes"), "").unwrap();
        let cg = m
            .create(
                "sb4",
                Limits {
                    memory_mb: 256,
                    pids_max: 64,
                },
            )
            .unwrap();
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        let order = |fs: &TempCgroupFs| -> Vec<String> {
            let w = fs.writes.lock();
            w.iter()
                .filter(|(p, _)| p.starts_with(&memdir))
                .map(|(p, v)| format!("{} {v}", p.file_name().unwrap().to_string_lossy()))
                .collect()
        };
        fs.writes.lock().clear();
        // Lowering: the limit first (memsw may not go below it).
        m.set_memory_limit(&cg, 128).unwrap();
        assert_eq!(
            order(&fs),
            [
                "memory.limit_in_bytes 134217728",
                "memory.memsw.limit_in_bytes 134217728"
            ]
        );
        assert_eq!(read(t.path().join("cpu/hearth/sb4/cpu.shares")), "128");
        fs.writes.lock().clear();
        // Raising: memsw first.
        m.set_memory_limit(&cg, 512).unwrap();
        assert_eq!(
            order(&fs),
            [
                "memory.memsw.limit_in_bytes 536870912",
                "memory.limit_in_bytes 536870912"
            ]
        );
        assert_eq!(read(memdir.join("memory.limit_in_bytes")), "536870912");
        assert_eq!(read(t.path().join("cpu/hearth/sb4/cpu.shares")), "512");
        // A failed write is reported.
        fs.fail_writes_to.lock().insert(
            memdir.join("memory.limit_in_bytes"),
            io::ErrorKind::ResourceBusy,
        );
        let e = m.set_memory_limit(&cg, 64).unwrap_err();
        assert!(e.contains("memory.limit_in_bytes"), "{e}");
    }

    #[test]
    fn set_memory_limit_on_v2_writes_memory_max_and_weight() {
        let t = tempfile::tempdir().unwrap();
        let own = t.path().join("cg");
        std::fs::create_dir_all(own.join("hearth/sb5")).unwrap();
        std::fs::write(own.join("cgroup.controllers"), "memory pids cpu").unwrap();
        std::fs::write(own.join("cgroup.procs"), "").unwrap();
        std::fs::write(own.join("cgroup.subtree_control"), "").unwrap();
        std::fs::write(own.join("hearth/cgroup.subtree_control"), "").unwrap();
        let layout = CgroupLayout {
            v1: vec![],
            unified: Some(UnifiedHierarchy {
                mount_point: own.clone(),
                own: own.clone(),
            }),
        };
        let fs = Arc::new(TempCgroupFs::default());
        let (m, w) = CgroupManager::prepare(fs, &layout, "hearth", 42);
        assert!(w.is_empty(), "{w:?}");
        let cg = m
            .create(
                "sb5",
                Limits {
                    memory_mb: 1024,
                    pids_max: 64,
                },
            )
            .unwrap();
        m.set_memory_limit(&cg, 200).unwrap();
        let read = |f: &str| std::fs::read_to_string(own.join("hearth/sb5").join(f)).unwrap();
        assert_eq!(read("memory.max"), "209715200");
        assert_eq!(read("cpu.weight"), "20");
        // Without a memory controller there is nothing to set.
        m.set_memory_limit(&SandboxCgroup::default(), 64).unwrap();
    }

    #[test]
    fn mountinfo_keeps_the_propagation_fields() {
        let mi = "\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
80 27 254:0 /var/lib/h/sb/task /var/lib/h/sb/task rw shared:412 master:9 - ext4 /dev/vda rw
81 27 254:0 /x /x rw - ext4 /dev/vda rw
";
        let m = parse_mountinfo(mi);
        assert!(m[0].is_shared());
        assert_eq!(m[1].optional, ["shared:412", "master:9"]);
        assert!(!m[2].is_shared());
        assert!(m[2].optional.is_empty());
    }

    #[test]
    fn v2_moves_the_daemon_into_a_leaf_and_enables_controllers() {
        let t = tempfile::tempdir().unwrap();
        let mount = t.path().join("cg");
        let own = mount.join("system.slice/hearth.service");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(
            own.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        // The daemon (42) and a process that shares its cgroup (77).
        std::fs::write(own.join("cgroup.procs"), "42\n77\n").unwrap();
        std::fs::write(own.join("cgroup.subtree_control"), "").unwrap();
        std::fs::create_dir_all(own.join("hearth")).unwrap();
        std::fs::write(own.join("hearth/cgroup.subtree_control"), "").unwrap();
        std::fs::create_dir_all(own.join("daemon")).unwrap();
        std::fs::write(own.join("daemon/cgroup.procs"), "").unwrap();
        let layout = CgroupLayout {
            v1: vec![],
            unified: Some(UnifiedHierarchy {
                mount_point: mount.clone(),
                own: own.clone(),
            }),
        };
        let fs = Arc::new(TempCgroupFs::default());
        let (m, warnings) = CgroupManager::prepare(fs.clone(), &layout, "hearth", 42);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(m.version(), Some(2));
        let moved: Vec<String> = fs
            .writes
            .lock()
            .iter()
            .filter(|(p, _)| p.ends_with("daemon/cgroup.procs"))
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(moved, ["42", "77"]);
        assert_eq!(
            std::fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );
        assert_eq!(
            std::fs::read_to_string(own.join("hearth/cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );
        let sb = own.join("hearth/sb2");
        std::fs::create_dir_all(&sb).unwrap();
        for f in ["memory.swap.max", "memory.oom.group"] {
            std::fs::write(sb.join(f), "").unwrap();
        }
        let cg = m
            .create(
                "sb2",
                Limits {
                    memory_mb: 256,
                    pids_max: 10,
                },
            )
            .unwrap();
        assert_eq!(cg.dirs(), vec![sb.clone()]);
        // Every controller is on the one v2 directory, joined by clone.
        assert_eq!(
            cg.joins().unwrap(),
            CgroupJoin {
                v1: vec![],
                v2: Some(sb.clone())
            }
        );
        let read = |f: &str| std::fs::read_to_string(sb.join(f)).unwrap();
        assert_eq!(read("memory.max"), "268435456");
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("memory.oom.group"), "1");
        assert_eq!(read("pids.max"), "10");
        assert_eq!(read("cpu.weight"), "25");
        std::fs::write(
            sb.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert!(m.oom_killed(&cg));

        // A second start, from inside the leaf, works under the same base.
        let layout2 = CgroupLayout {
            v1: vec![],
            unified: Some(UnifiedHierarchy {
                mount_point: mount,
                own: own.join("daemon"),
            }),
        };
        std::fs::write(own.join("cgroup.procs"), "").unwrap();
        let (m2, warnings) = CgroupManager::prepare(fs, &layout2, "hearth", 43);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(m2.unified, Some(own.join("hearth")));
        assert_eq!(m2.leftovers(&m2.parents()).len(), 1);
    }

    #[test]
    fn only_the_real_root_keeps_its_processes() {
        for (has_type, moves) in [(false, false), (true, true)] {
            let t = tempfile::tempdir().unwrap();
            let mount = t.path().to_path_buf();
            std::fs::write(mount.join("cgroup.controllers"), "memory pids cpu").unwrap();
            std::fs::write(mount.join("cgroup.procs"), "1\n42\n").unwrap();
            std::fs::write(mount.join("cgroup.subtree_control"), "").unwrap();
            if has_type {
                // A container's cgroup-namespace root shows up at the mount point.
                std::fs::write(mount.join("cgroup.type"), "domain").unwrap();
            }
            std::fs::create_dir_all(mount.join("hearth")).unwrap();
            std::fs::write(mount.join("hearth/cgroup.subtree_control"), "").unwrap();
            std::fs::create_dir_all(mount.join("daemon")).unwrap();
            std::fs::write(mount.join("daemon/cgroup.procs"), "").unwrap();
            let layout = CgroupLayout {
                v1: vec![],
                unified: Some(UnifiedHierarchy {
                    mount_point: mount.clone(),
                    own: mount.clone(),
                }),
            };
            let fs = Arc::new(TempCgroupFs::default());
            let (m, w) = CgroupManager::prepare(fs.clone(), &layout, "hearth", 42);
            assert!(w.is_empty(), "{w:?}");
            assert_eq!(m.version(), Some(2));
            let moved = fs
                .writes
                .lock()
                .iter()
                .any(|(p, _)| p.ends_with("daemon/cgroup.procs"));
            assert_eq!(moved, moves);
        }
    }

    #[test]
    fn the_freezer_is_left_out_when_cgroup_kill_exists() {
        let t = tempfile::tempdir().unwrap();
        let layout = fake_hybrid(t.path());
        std::fs::create_dir_all(t.path().join("unified/hearth")).unwrap();
        std::fs::write(t.path().join("unified/hearth/cgroup.kill"), "").unwrap();
        let (m, _) =
            CgroupManager::prepare(Arc::new(TempCgroupFs::default()), &layout, "hearth", 1);
        assert_eq!(m.freezer, None);
        assert_eq!(m.sandbox_dirs("x").dirs().len(), 4);
    }

    #[test]
    fn kill_writes_cgroup_kill_or_freezes_and_kills_each_member() {
        let t = tempfile::tempdir().unwrap();
        let fs = TempCgroupFs::default();
        let v2 = t.path().join("v2");
        let v1 = t.path().join("v1");
        for d in [&v2, &v1] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(v2.join("cgroup.kill"), "").unwrap();
        std::fs::write(v2.join("cgroup.procs"), "").unwrap();
        std::fs::write(v1.join("freezer.state"), "THAWED").unwrap();
        std::fs::write(v1.join("cgroup.procs"), "7\n8\n").unwrap();
        assert!(kill_dirs(&fs, std::slice::from_ref(&v2), &|_| panic!(
            "cgroup.kill does it"
        )));
        assert_eq!(
            std::fs::read_to_string(v2.join("cgroup.kill")).unwrap(),
            "1"
        );
        let killed = parking_lot::Mutex::new(Vec::new());
        // The fake kernel: the kills empty the v1 group.
        let kill = |p: i32| {
            killed.lock().push(p);
            std::fs::write(v1.join("cgroup.procs"), "").unwrap();
        };
        assert!(kill_dirs(&fs, std::slice::from_ref(&v1), &kill));
        assert_eq!(*killed.lock(), vec![7, 8]);
        let writes: Vec<String> = fs.writes.lock().iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(writes, ["1", "FROZEN", "THAWED"]);
    }

    #[test]
    fn failures_become_warnings_and_creation_rolls_back() {
        let t = tempfile::tempdir().unwrap();
        let layout = fake_hybrid(t.path());
        let fs = Arc::new(TempCgroupFs::default());
        let (m, _) = CgroupManager::prepare(fs.clone(), &layout, "hearth", 1);
        fs.fail_writes_to.lock().insert(
            t.path().join("pids/hearth/sb3/pids.max"),
            io::ErrorKind::PermissionDenied,
        );
        let e = m
            .create(
                "sb3",
                Limits {
                    memory_mb: 64,
                    pids_max: 5,
                },
            )
            .unwrap_err();
        assert!(e.contains("pids.max"), "{e}");
        assert!(!t.path().join("memory/process_api/x/hearth/sb3").exists());
        assert!(!t.path().join("unified/hearth/sb3").exists());

        // Parents that exist but are not ours (an unprivileged daemon).
        let fs2 = Arc::new(TempCgroupFs::default());
        fs2.read_only.lock().push(t.path().to_path_buf());
        let (m, warnings) = CgroupManager::prepare(fs2, &layout, "hearth", 1);
        assert_eq!(m.version(), None);
        assert!(m.parents().is_empty());
        assert_eq!(warnings.len(), 4, "{warnings:?}");

        // No cgroup mounted at all: every limit is missing, each said why.
        let (m, warnings) = CgroupManager::prepare(fs, &CgroupLayout::default(), "hearth", 1);
        assert_eq!(m.version(), None);
        assert_eq!(warnings.len(), 3);
        assert!(warnings[0].contains("memory"));
    }
}
