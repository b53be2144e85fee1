//! Section `first-invoke`: the first invocation of a just-created function,
//! served from runtime-warm general capacity, from shell-warm general
//! capacity, from provisioned (dedicated, function-warm) capacity, and
//! fully cold with every pool disabled; against peers measured here, trial
//! by trial in the same loop: `fork+exec python3` of Hearth's bootstrap,
//! the same in `bwrap`, and as an OCI container started by `crun`
//! ([`hearth_bench::baselines`]).

use super::http::{init_duration, timed_invoke, Conn, Signer};
use super::node::{zip_b64, zip_b64_as, Node};
use super::{check_stop, Ctx, HANDLER};
use anyhow::{bail, Context, Result};
use hearth_bench::baselines::{Fixture, PeerBaseline};
use hearth_bench::report::{ChartSpec, Figure, Scenario, Section};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a node's general pools may take to refill between trials.
const REFILL: Duration = Duration::from_secs(30);

/// The Node.js counterpart of `HANDLER`: a no-op.
const NODE_HANDLER: &str = "exports.handler = async () => null;\n";

/// One way Hearth can serve a first invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    RuntimeWarm,
    NodeRuntimeWarm,
    Provisioned,
    ShellWarm,
    Cold,
}

impl Phase {
    const ALL: [Self; 5] = [
        Self::RuntimeWarm,
        Self::NodeRuntimeWarm,
        Self::Provisioned,
        Self::ShellWarm,
        Self::Cold,
    ];

    fn id(self) -> &'static str {
        match self {
            Self::RuntimeWarm => "runtime-warm",
            Self::NodeRuntimeWarm => "node-runtime-warm",
            Self::Provisioned => "provisioned",
            Self::ShellWarm => "shell-warm",
            Self::Cold => "cold",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::RuntimeWarm => "Hearth, general runtime-warm",
            Self::NodeRuntimeWarm => "Hearth, general runtime-warm, Node.js",
            Self::Provisioned => "Hearth, provisioned (dedicated)",
            Self::ShellWarm => "Hearth, general shell-warm",
            Self::Cold => "Hearth, cold (pools disabled)",
        }
    }

    /// The `X-Hearth-Placement` the first invocation must report.
    fn placement(self) -> &'static str {
        match self {
            Self::RuntimeWarm | Self::NodeRuntimeWarm => "general-runtime",
            Self::Provisioned => "dedicated",
            Self::ShellWarm => "general-shell",
            Self::Cold => "cold",
        }
    }

    /// The node's `[capacity]` for this phase.
    fn config(self) -> &'static str {
        match self {
            Self::RuntimeWarm | Self::Provisioned => {
                "[capacity]\ngeneral = [ { profile = \"python:128\", min = 2, max = 2 } ]\n"
            }
            Self::NodeRuntimeWarm => {
                "[capacity]\ngeneral = [ { profile = \"nodejs:128\", min = 2, max = 2 } ]\n"
            }
            Self::ShellWarm => {
                "[capacity]\ngeneral = [ { profile = \"shell:128\", min = 2, max = 2 } ]\n"
            }
            Self::Cold => "[capacity]\ngeneral = []\n",
        }
    }

    /// What the phase is compared with.
    fn baseline(self) -> &'static str {
        match self {
            Self::RuntimeWarm => peer_id(PeerBaseline::ForkExec),
            // Node's own first invoke against Python's, from the same pool kind.
            Self::NodeRuntimeWarm => Self::RuntimeWarm.id(),
            Self::Provisioned => "provisioned-warm",
            Self::ShellWarm => peer_id(PeerBaseline::Bubblewrap),
            Self::Cold => peer_id(PeerBaseline::Crun),
        }
    }
}

fn peer_id(kind: PeerBaseline) -> &'static str {
    match kind {
        PeerBaseline::ForkExec => "fork-exec",
        PeerBaseline::Bubblewrap => "bwrap",
        PeerBaseline::Crun => "crun",
    }
}

/// Samples gathered so far, by scenario id.
#[derive(Debug, Default)]
struct Samples(BTreeMap<&'static str, Vec<Duration>>);

impl Samples {
    fn push(&mut self, id: &'static str, d: Duration) {
        self.0.entry(id).or_default().push(d);
    }

    fn take(&mut self, id: &str) -> Vec<Duration> {
        self.0.remove(id).unwrap_or_default()
    }
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let trials = if ctx.quick { 5 } else { 100 };
    let zip = zip_b64(HANDLER)?;
    let node_zip = zip_b64_as("index.js", NODE_HANDLER)?;
    let mut section = Section::new(
        "first-invoke",
        "First invoke of a fresh function",
        "Client-observed latency of the first invocation of a just-created no-op Python function (and, on its own row, a no-op Node.js one; SigV4 Invoke API), by where Hearth finds capacity; `Init Duration` is the REPORT line's. \
         Peers, measured here trial by trial between Hearth's trials: Hearth's own Python bootstrap started fresh as a plain child process (fork+exec python3), in bubblewrap, and as a crun OCI container, each timed from spawn to its answer to the first invocation through a Runtime API (init: to its first GET /next). \
         Provisioned is compared with the second invocation of the same provisioned version.",
    );
    let mut peers = Vec::new();
    match &ctx.fixture {
        Ok(f) => {
            for kind in PeerBaseline::ALL {
                match f.probe(kind) {
                    Ok(()) => peers.push(kind),
                    Err(why) => {
                        eprintln!("[first-invoke] skipping the {kind} baseline: {why}");
                        section = section.skipped(peer_id(kind), &why.to_string());
                    }
                }
            }
        }
        Err(why) => {
            eprintln!("[first-invoke] skipping every peer baseline: {why}");
            for kind in PeerBaseline::ALL {
                section = section.skipped(peer_id(kind), why);
            }
        }
    }
    let mut samples = Samples::default();
    let mut inits = Samples::default();
    let mut trial = 0usize;
    let mut node: Option<(Node, &'static str)> = None;
    let mut stages = Vec::new();
    let has_node = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("node").is_file()));
    if !has_node {
        eprintln!("[first-invoke] skipping the Node.js phase: no `node` on PATH");
        section = section.skipped(Phase::NodeRuntimeWarm.id(), "no `node` on PATH");
    }
    for phase in Phase::ALL {
        if phase == Phase::NodeRuntimeWarm && !has_node {
            continue;
        }
        // Provisioned capacity is made on the runtime-warm node.
        if node.as_ref().map(|(_, cfg)| *cfg) != Some(phase.config()) {
            drop(node.take());
            node = Some((
                Node::start(&ctx.dir, &format!("first-{}", phase.id()), phase.config())?,
                phase.config(),
            ));
        }
        let Some((n, _)) = &node else {
            bail!("no node for {}", phase.id());
        };
        eprintln!("[first-invoke] {} ({trials} trials)…", phase.id());
        for i in 0..trials {
            check_stop()?;
            n.wait_pools_full(REFILL)?;
            let name = format!("bench-{}-{i}", phase.id());
            let (took, init) = if phase == Phase::Provisioned {
                let (first, second) = provisioned_trial(n, &zip, &name)?;
                samples.push("provisioned-warm", second);
                (first, None)
            } else if phase == Phase::NodeRuntimeWarm {
                n.create_function_of(&name, "nodejs20.x", "index.handler", &node_zip, &json!({}))?;
                first_invoke(n, &name, phase.placement())?
            } else {
                hearth_trial(n, &zip, &name, phase.placement())?
            };
            samples.push(phase.id(), took);
            if let Some(d) = init {
                inits.push(phase.id(), d);
            }
            n.delete_function(&name)?;
            // The peers run once the node is quiet again.
            n.wait_pools_full(REFILL)?;
            if let Ok(f) = &ctx.fixture {
                run_peers(f, &peers, trial, &mut samples, &mut inits)?;
            }
            trial += 1;
        }
        if phase == Phase::Cold {
            stages = cold_stages(n)?;
        }
    }
    drop(node);
    let mut cdf = Vec::new();
    for phase in Phase::ALL {
        section = section.scenario(
            Scenario::from_durations(phase.id(), phase.label(), &samples.take(phase.id()))
                .with_baseline(phase.baseline()),
        );
        cdf.push(phase.id());
        if phase == Phase::Provisioned {
            section = section.scenario(Scenario::from_durations(
                "provisioned-warm",
                "Hearth, provisioned, second invoke",
                &samples.take("provisioned-warm"),
            ));
        } else {
            let id = format!("{}-init", phase.id());
            let init = inits.take(phase.id());
            if !init.is_empty() {
                section = section.scenario(Scenario::from_durations(
                    &id,
                    &format!("  of which Init Duration, {}", phase.id()),
                    &init,
                ));
            }
        }
    }
    for kind in &peers {
        let id = peer_id(*kind);
        section = section
            .scenario(Scenario::from_durations(
                id,
                &format!("peer: {kind}"),
                &samples.take(id),
            ))
            .scenario(Scenario::from_durations(
                &format!("{id}-init"),
                &format!("  of which init, {kind}"),
                &inits.take(id),
            ));
        cdf.push(id);
    }
    section = stage_figures(section, &stages);
    Ok(section.chart(ChartSpec::latency_cdf(
        "first-invoke.svg",
        "First invoke of a fresh function",
        &cdf,
    )))
}

/// The stages of a process sandbox's start, in order, as the node's
/// `hearth_sandbox_start_stage_seconds` histogram names them.
const STAGES: [&str; 11] = [
    "host_prepare",
    "launcher_exec",
    "await_request",
    "cgroup_join",
    "unshare",
    "runtime_api_socket",
    "fork_init",
    "mounts",
    "privileges_seccomp",
    "runtime_exec",
    "ready_report",
];

/// The mean of each start stage over every sandbox the node started (the
/// cold phase's node has no pools, so these are its cold starts), in ms.
fn cold_stages(node: &Node) -> Result<Vec<(&'static str, f64, f64)>> {
    let mut out = Vec::new();
    for stage in STAGES {
        let label = format!("stage=\"{stage}\"");
        let sum = node.metric_sum("hearth_sandbox_start_stage_seconds_sum", &label)?;
        let count = node.metric_sum("hearth_sandbox_start_stage_seconds_count", &label)?;
        if count > 0.0 {
            out.push((stage, sum * 1e3 / count, count));
        }
    }
    Ok(out)
}

/// A figure per start stage, their sum (the set-up before the runtime
/// runs), and bubblewrap's set-up measured the same way from outside: its
/// p50 less fork+exec's, the same bootstrap started without isolation.
fn stage_figures(mut section: Section, stages: &[(&'static str, f64, f64)]) -> Section {
    if stages.is_empty() {
        return section;
    }
    let mut total = 0.0;
    for (stage, ms, n) in stages {
        total += ms;
        section = section.figure(
            Figure::new(
                &format!("cold-stage-{stage}"),
                &format!("cold start stage {stage} (mean)"),
                *ms,
                "ms",
            )
            .with_note(&format!("{n:.0} starts")),
        );
    }
    section = section.figure(
        Figure::new(
            "cold-setup",
            "cold start set-up, daemon to runtime exec'd (sum of the stage means)",
            total,
            "ms",
        )
        .with_note("what Hearth does before the runtime runs: cgroups, namespaces, the Runtime API socket, mounts, privileges and seccomp"),
    );
    let p50 = |id: &str| {
        section
            .scenarios
            .iter()
            .find(|x| x.id == id && x.summary.count > 0)
            .map(|x| x.summary.p50)
    };
    if let (Some(b), Some(f)) = (
        p50(peer_id(PeerBaseline::Bubblewrap)),
        p50(peer_id(PeerBaseline::ForkExec)),
    ) {
        section = section.figure(
            Figure::new(
                "bwrap-setup",
                "bubblewrap set-up (bubblewrap p50 − fork+exec p50)",
                b - f,
                "ms",
            )
            .with_note("user, pid, ipc, uts and mount namespaces and the same binds; no cgroups, no network namespace, no seccomp"),
        );
    }
    section
}

/// One trial of each measurable peer, starting with a different one each
/// trial so that none always follows Hearth.
fn run_peers(
    fixture: &Fixture,
    peers: &[PeerBaseline],
    trial: usize,
    samples: &mut Samples,
    inits: &mut Samples,
) -> Result<()> {
    for k in 0..peers.len() {
        let kind = peers[(trial + k) % peers.len()];
        let r = fixture
            .first_invoke(kind)
            .with_context(|| format!("the {kind} baseline"))?;
        samples.push(peer_id(kind), r.total);
        inits.push(peer_id(kind), r.init);
    }
    Ok(())
}

/// Creates `name` and times its first invocation, which must be served
/// from `placement`; returns the latency and the REPORT's Init Duration.
fn hearth_trial(
    node: &Node,
    zip: &str,
    name: &str,
    placement: &str,
) -> Result<(Duration, Option<Duration>)> {
    node.create_function(name, zip)?;
    first_invoke(node, name, placement)
}

/// Times the first invocation of the just-created `name`, which must be
/// served from `placement`; returns the latency and the REPORT's Init
/// Duration.
fn first_invoke(node: &Node, name: &str, placement: &str) -> Result<(Duration, Option<Duration>)> {
    let (took, log, got) = invoke(node, name, None)?;
    if got != placement {
        bail!("{name}: expected placement {placement}, got {got}");
    }
    Ok((took, init_duration(&log)))
}

/// Creates `name`, publishes version 1 with provisioned concurrency 1,
/// waits until it is READY, and times the version's first and second
/// invocations.
fn provisioned_trial(node: &Node, zip: &str, name: &str) -> Result<(Duration, Duration)> {
    let c = &node.client;
    node.create_function(name, zip)?;
    let v = c.call(
        "POST",
        &format!("/2015-03-31/functions/{name}/versions"),
        Some(&json!({})),
    )?;
    let ver = v["Version"].as_str().unwrap_or("1").to_owned();
    let pc = format!("/2019-09-30/functions/{name}/provisioned-concurrency?Qualifier={ver}");
    c.call(
        "PUT",
        &pc,
        Some(&json!({"ProvisionedConcurrentExecutions": 1})),
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if c.call("GET", &pc, None)?["Status"] == "READY" {
            break;
        }
        if Instant::now() > deadline {
            bail!("provisioned concurrency for {name} was not READY in 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (first, _, placement) = invoke(node, name, Some(&ver))?;
    if placement != "dedicated" {
        bail!("provisioned: expected placement dedicated, got {placement}");
    }
    let (second, _, _) = invoke(node, name, Some(&ver))?;
    Ok((first, second))
}

/// A signed synchronous invocation with its log tail, on a connection
/// opened and a request signed before the clock starts; returns the
/// latency, the log and the placement.
fn invoke(node: &Node, name: &str, qualifier: Option<&str>) -> Result<(Duration, String, String)> {
    let path = match qualifier {
        Some(q) => format!("/2015-03-31/functions/{name}/invocations?Qualifier={q}"),
        None => format!("/2015-03-31/functions/{name}/invocations"),
    };
    let signer = Signer::new(node.addr, "test", "test", "us-east-1");
    let request = signer.request("POST", &path, &[("x-amz-log-type", "Tail")], b"{}")?;
    let mut conn = Conn::connect(node.addr)?;
    let r = timed_invoke(&mut conn, &request, "the bench function")?;
    Ok((r.took, r.log, r.placement))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_init_duration_from_a_report_line() {
        let log = "START RequestId: x\nEND RequestId: x\nREPORT RequestId: x\tDuration: 0.41 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\tMax Memory Used: 9 MB\tInit Duration: 2.25 ms\t\n";
        assert_eq!(init_duration(log), Some(Duration::from_micros(2250)));
        assert_eq!(init_duration("REPORT RequestId: x\tDuration: 1 ms"), None);
    }
}
