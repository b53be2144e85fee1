//! Section `warm`: a warm invoke through Hearth's SigV4-signed Invoke API,
//! on both backends — a no-op Python handler in a process sandbox, and an
//! echo WebAssembly module in a microVM (where the node runs microVMs) —
//! against the no-op Python handler in a resident Python HTTP server (the
//! floor for a handler behind HTTP) and against Hearth's Runtime API round
//! trip alone.
//!
//! For each concurrency N, N client threads each keep one connection to
//! Hearth and one to the direct server. The run alternates time-boxed
//! steps (Hearth, direct, microVM, then the reverse order…), every thread
//! starting a step together behind a barrier, so every target sees the
//! same machine and each step is a closed loop at exactly N requests in
//! flight. The Runtime API round trips run between rounds at concurrency 1.

use super::cpu;
use super::http::{plain_post, Conn, Signer};
use super::node::{zip_b64, DirectServer, Node};
use super::{check_stop, lock, thin, Ctx, HANDLER};
use anyhow::{bail, Context, Result};
use hearth_bench::report::{ChartSpec, Figure, Scenario, Section};
use std::net::SocketAddr;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

const FUNCTION: &str = "bench-warm";
const INVOKE_PATH: &str = "/2015-03-31/functions/bench-warm/invocations";
/// The microVM backend's function: the echo module (`provided.al2023`).
const VM_FUNCTION: &str = "bench-warm-vm";
const VM_INVOKE_PATH: &str = "/2015-03-31/functions/bench-warm-vm/invocations";
/// A step ends at its deadline or after this many requests per thread.
const MAX_PER_STEP: usize = 200_000;
/// Warm-up steps at most, until one sees only warm placements.
const WARMUP_STEPS: usize = 10;

/// How much to measure.
#[derive(Debug, Clone, Copy)]
struct Plan {
    rounds: usize,
    step: Duration,
    runtime_api_per_round: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                rounds: 3,
                step: Duration::from_millis(100),
                runtime_api_per_round: 30,
            }
        } else {
            Self {
                rounds: 40,
                step: Duration::from_millis(250),
                runtime_api_per_round: 200,
            }
        }
    }
}

pub const CONCURRENCY: [usize; 3] = [1, 2, 8];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The Python function in a process sandbox.
    Hearth,
    /// The echo module in a microVM.
    HearthVm,
    Direct,
}

impl Target {
    fn index(self) -> usize {
        match self {
            Self::Hearth => 0,
            Self::HearthVm => 1,
            Self::Direct => 2,
        }
    }

    /// The Invoke API path and the placement of a warm invocation.
    fn function(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Hearth => Some((INVOKE_PATH, "warm")),
            Self::HearthVm => Some((VM_INVOKE_PATH, "vm-warm")),
            Self::Direct => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Run(Target, Duration),
    Done,
}

/// What one thread measured in one step.
#[derive(Debug)]
struct StepResult {
    samples: Vec<Duration>,
    /// Hearth invocations not served by a function-warm sandbox.
    not_warm: usize,
    /// Time spent signing requests (off the latency clock).
    signing: Duration,
    /// This client thread's CPU time in the step, signing included.
    cpu: Duration,
    first: Instant,
    last: Instant,
}

/// What the client threads and the conductor share.
#[derive(Debug)]
struct Shared {
    barrier: Barrier,
    step: Mutex<Step>,
    results: Mutex<Vec<StepResult>>,
    failure: Mutex<Option<String>>,
}

/// Everything measured at one concurrency.
#[derive(Debug, Default)]
struct Measured {
    /// By [`Target::index`].
    targets: [Measured1; 3],
    runtime_api: Vec<Duration>,
}

impl Measured {
    fn of(&self, t: Target) -> &Measured1 {
        &self.targets[t.index()]
    }
}

/// What was measured of one target at one concurrency.
#[derive(Debug, Default)]
struct Measured1 {
    samples: Vec<Duration>,
    count: usize,
    time: Duration,
    /// Time the clients spent signing requests (Hearth's targets).
    signing: Duration,
    /// CPU time in the measured steps: the client threads (signing
    /// included); the server — `hearth serve` itself (for the microVM
    /// backend this includes the guests, which run on its threads) or the
    /// direct server and its per-connection children; and, for Hearth,
    /// its descendants (the sandboxes: launchers, inits and runtimes).
    cpu_client: Duration,
    cpu_server: Duration,
    cpu_sandboxes: Duration,
}

/// The processes whose CPU time is attributed to the steps.
#[derive(Debug, Clone, Copy)]
struct Pids {
    hearth: u32,
    direct: u32,
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let plan = Plan::new(ctx.quick);
    let node = Node::start(&ctx.dir, "warm", "")?;
    let direct = DirectServer::start(&ctx.dir)?;
    node.create_function(FUNCTION, &zip_b64(HANDLER)?)?;
    let vm = vm_backend(&node);
    let signer = Signer::new(node.addr, "test", "test", "us-east-1");
    let mut section = Section::new(
        "warm",
        "Warm invoke",
        "A no-op Python handler, already warm. Hearth: the Invoke API, each request SigV4-signed as an SDK signs it (signing happens before the clock starts; the node verifies it on the clock). \
         Direct: the same handler in a resident Python HTTP/1.1 server, one forked process per connection as Hearth has one sandbox per concurrent invocation (the floor for a Python handler behind HTTP). \
         N clients each keep one connection to each; time-boxed steps alternate Hearth and direct with exactly N requests in flight. \
         Runtime API: one invoke → response through Hearth's Runtime API to a resident bootstrap, without Hearth's HTTP front, placement or sandbox (concurrency 1). \
         MicroVM: Hearth's Invoke API to an echo WebAssembly module in a microVM (`provided.al2023`), compared with the same direct baseline (a handler behind HTTP; the microVM's handler is not Python). \
         Throughput: completed invocations over the steps' wall time.",
    );
    if let Err(why) = &vm {
        section = section.skipped("hearth-vm", why);
    }
    let targets: &[Target] = if vm.is_ok() {
        &[Target::Hearth, Target::Direct, Target::HearthVm]
    } else {
        &[Target::Hearth, Target::Direct]
    };
    let rt_api = match &ctx.fixture {
        Ok(f) => Some(f),
        Err(why) => {
            section = section.skipped("runtime-api", why);
            None
        }
    };
    for c in CONCURRENCY {
        check_stop()?;
        eprintln!("[warm] {c} client(s)…");
        let pids = Pids {
            hearth: node.pid(),
            direct: direct.pid(),
        };
        let m = measure(
            c,
            &plan,
            &signer,
            (node.addr, direct.addr),
            targets,
            rt_api,
            pids,
        )?;
        let direct_id = format!("direct-c{c}");
        let hearth_id = format!("hearth-c{c}");
        let vm_id = format!("hearth-vm-c{c}");
        let clients = if c == 1 {
            "1 client".to_owned()
        } else {
            format!("{c} clients")
        };
        section = section
            .scenario(Scenario::from_durations(
                &direct_id,
                &format!("direct HTTP to resident Python, {clients}"),
                &thin(&m.of(Target::Direct).samples),
            ))
            .scenario(
                Scenario::from_durations(
                    &hearth_id,
                    &format!("Hearth Invoke API (SigV4), process sandbox, {clients}"),
                    &thin(&m.of(Target::Hearth).samples),
                )
                .with_baseline(&direct_id),
            );
        let mut chart = vec![direct_id.clone(), hearth_id.clone()];
        if targets.contains(&Target::HearthVm) {
            section = section.scenario(
                Scenario::from_durations(
                    &vm_id,
                    &format!("Hearth Invoke API (SigV4), microVM, {clients}"),
                    &thin(&m.of(Target::HearthVm).samples),
                )
                .with_baseline(&direct_id),
            );
            chart.push(vm_id.clone());
        }
        if !m.runtime_api.is_empty() {
            section = section.scenario(Scenario::from_durations(
                "runtime-api",
                "Runtime API round trip alone, 1 client",
                &thin(&m.runtime_api),
            ));
            chart.push("runtime-api".to_owned());
        }
        let saturation = if c == *CONCURRENCY.last().unwrap_or(&c) {
            " (saturation)"
        } else {
            ""
        };
        let rate = |t: &Measured1| t.count as f64 / t.time.as_secs_f64().max(1e-9);
        let note = |t: &Measured1| {
            format!(
                "{} invocations in {:.2} s over {} steps",
                t.count,
                t.time.as_secs_f64(),
                plan.rounds
            )
        };
        let signing = |t: &Measured1| {
            format!(
                "{}; the clients spent {:.1} µs per request signing it",
                note(t),
                t.signing.as_secs_f64() * 1e6 / t.count.max(1) as f64
            )
        };
        let d = m.of(Target::Direct);
        section = section.figure(
            Figure::new(
                &format!("throughput-direct-c{c}"),
                &format!("throughput, direct, {clients}{saturation}"),
                rate(d),
                "inv/s",
            )
            .with_note(&note(d)),
        );
        for (t, id, what) in [
            (Target::Hearth, "hearth", "Hearth (process sandbox)"),
            (Target::HearthVm, "hearth-vm", "Hearth (microVM)"),
        ] {
            if !targets.contains(&t) {
                continue;
            }
            section = section.figure(
                Figure::new(
                    &format!("throughput-{id}-c{c}"),
                    &format!("throughput, {what}, {clients}{saturation}"),
                    rate(m.of(t)),
                    "inv/s",
                )
                .with_note(&signing(m.of(t)))
                .with_baseline(&format!("throughput-direct-c{c}")),
            );
        }
        section = cpu_figures(section, c, &clients, &m, targets);
        let ids: Vec<&str> = chart.iter().map(String::as_str).collect();
        section = section.chart(ChartSpec::latency_cdf(
            &format!("warm-c{c}.svg"),
            &format!("Warm invoke, {clients}"),
            &ids,
        ));
    }
    Ok(section)
}

/// Readies the microVM backend's function, or says why the node cannot
/// run it (no usable `/dev/kvm`, microVMs disabled).
fn vm_backend(node: &Node) -> Result<(), String> {
    let pools = node
        .client
        .call("GET", "/hearth/v1/pools", None)
        .map_err(|e| format!("cannot read the node's pools: {e:#}"))?;
    let vm = &pools["MicroVm"];
    if vm["Available"] != true {
        return Err(format!(
            "the node runs no microVMs: {}",
            vm["Reason"].as_str().unwrap_or("no reason given")
        ));
    }
    let wasm = wat::parse_str(super::vm::ECHO_WAT).map_err(|e| format!("echo WAT: {e}"))?;
    super::vm::create_wasm_function(node, VM_FUNCTION, &wasm)
        .map_err(|e| format!("cannot create the microVM function: {e:#}"))
}

/// CPU time per invocation, by process, for each target; and, for the
/// throughput target, what a Hearth invocation may cost the server for
/// Hearth to reach 80% of direct's throughput when the machine is
/// CPU-bound (throughput is then cores / CPU per invocation).
fn cpu_figures(
    mut section: Section,
    c: usize,
    clients: &str,
    m: &Measured,
    targets: &[Target],
) -> Section {
    let per = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    let d = m.of(Target::Direct);
    if d.count == 0 {
        return section;
    }
    let d_client = per(d.cpu_client, d.count);
    let d_server = per(d.cpu_server, d.count);
    let direct = d_client + d_server;
    section = section.figure(
        Figure::new(
            &format!("cpu-direct-c{c}"),
            &format!("CPU per invocation, direct, {clients}"),
            direct,
            "µs",
        )
        .with_note(&format!(
            "client {d_client:.1} µs, Python server {d_server:.1} µs"
        )),
    );
    let top = c == CONCURRENCY[CONCURRENCY.len() - 1];
    for (t, id, what) in [
        (Target::Hearth, "hearth", "Hearth (process sandbox)"),
        (Target::HearthVm, "hearth-vm", "Hearth (microVM)"),
    ] {
        let h = m.of(t);
        if !targets.contains(&t) || h.count == 0 {
            continue;
        }
        let client = per(h.cpu_client, h.count);
        let server = per(h.cpu_server, h.count);
        let sandboxes = per(h.cpu_sandboxes, h.count);
        let parts = if t == Target::HearthVm {
            format!("client {client:.1} µs (signing included), hearth serve with its guests {server:.1} µs")
        } else {
            format!("client {client:.1} µs (signing included), hearth serve {server:.1} µs, sandbox (runtime) {sandboxes:.1} µs")
        };
        section = section.figure(
            Figure::new(
                &format!("cpu-{id}-c{c}"),
                &format!("CPU per invocation, {what}, {clients}"),
                client + server + sandboxes,
                "µs",
            )
            .with_note(&parts)
            .with_baseline(&format!("cpu-direct-c{c}")),
        );
        if top {
            let budget = direct / 0.8 - client - sandboxes;
            let (fid, whose) = if t == Target::HearthVm {
                (
                    "cpu-server-budget-80-vm",
                    "hearth serve's CPU budget per microVM invocation, its guest's run included,",
                )
            } else {
                (
                    "cpu-server-budget-80",
                    "hearth serve's CPU budget per invocation",
                )
            };
            section = section.figure(
                Figure::new(
                    fid,
                    &format!("{whose} for 80% of direct's throughput (CPU-bound)"),
                    budget,
                    "µs",
                )
                .with_note(&format!(
                    "direct's CPU per invocation / 0.8, less Hearth's client{}; spent now: {server:.1} µs{}",
                    if t == Target::HearthVm { "" } else { " and runtime" },
                    if budget <= 0.0 {
                        " (not positive: out of reach whatever the server does)"
                    } else {
                        ""
                    }
                )),
            );
        }
    }
    section
}

/// Runs the plan at concurrency `c`: `c` client threads, conducted from
/// this thread step by step. `addrs`: Hearth's and the direct server's.
fn measure(
    c: usize,
    plan: &Plan,
    signer: &Signer,
    addrs: (SocketAddr, SocketAddr),
    targets: &[Target],
    rt_api: Option<&hearth_bench::baselines::Fixture>,
    pids: Pids,
) -> Result<Measured> {
    let shared = Shared {
        barrier: Barrier::new(c + 1),
        step: Mutex::new(Step::Done),
        results: Mutex::new(Vec::new()),
        failure: Mutex::new(None),
    };
    std::thread::scope(|s| {
        for _ in 0..c {
            let shared = &shared;
            s.spawn(move || client(shared, signer, addrs.0, addrs.1));
        }
        let outcome = conduct(c, plan, &shared, targets, rt_api, pids);
        // Releases the threads whatever happened: they are all waiting at
        // the start of a step.
        *lock(&shared.step) = Step::Done;
        shared.barrier.wait();
        outcome
    })
}

/// Runs one step on every thread and collects what they measured.
fn step(shared: &Shared, step: Step) -> Result<Vec<StepResult>> {
    *lock(&shared.step) = step;
    lock(&shared.results).clear();
    shared.barrier.wait();
    shared.barrier.wait();
    if let Some(e) = lock(&shared.failure).take() {
        bail!(e);
    }
    Ok(std::mem::take(&mut *lock(&shared.results)))
}

fn conduct(
    c: usize,
    plan: &Plan,
    shared: &Shared,
    targets: &[Target],
    rt_api: Option<&hearth_bench::baselines::Fixture>,
    pids: Pids,
) -> Result<Measured> {
    // Warm-up: until one step at this concurrency is served only by
    // function-warm sandboxes or VMs (the first ones start cold or from a
    // pool).
    for &t in targets {
        let Some((_, placement)) = t.function() else {
            continue;
        };
        let mut warm = false;
        for _ in 0..WARMUP_STEPS {
            check_stop()?;
            let r = step(shared, Step::Run(t, plan.step))?;
            if r.iter().all(|r| r.not_warm == 0) {
                warm = true;
                break;
            }
        }
        if !warm {
            bail!("Hearth still served {t:?} invocations other than {placement} at {c} clients after {WARMUP_STEPS} warm-up steps");
        }
    }
    step(shared, Step::Run(Target::Direct, plan.step))?;
    let mut m = Measured::default();
    for round in 0..plan.rounds {
        check_stop()?;
        let mut order = targets.to_vec();
        if round % 2 == 1 {
            order.reverse();
        }
        for target in order {
            // Read between steps, off every client's clock.
            let before = cpu::trees(&[pids.hearth, pids.direct]);
            let results = step(shared, Step::Run(target, plan.step))?;
            let after = cpu::trees(&[pids.hearth, pids.direct]);
            let t = &mut m.targets[target.index()];
            t.cpu_client += results.iter().map(|r| r.cpu).sum::<Duration>();
            if target == Target::Direct {
                t.cpu_server += after[1].total().saturating_sub(before[1].total());
            } else {
                t.cpu_server += after[0].own.saturating_sub(before[0].own);
                t.cpu_sandboxes += after[0].descendants.saturating_sub(before[0].descendants);
            }
            let first = results.iter().map(|r| r.first).min();
            let last = results.iter().map(|r| r.last).max();
            if let (Some(f), Some(l)) = (first, last) {
                t.time += l.saturating_duration_since(f);
            }
            t.signing += results.iter().map(|r| r.signing).sum::<Duration>();
            let before = t.samples.len();
            t.samples
                .extend(results.into_iter().flat_map(|r| r.samples));
            t.count += t.samples.len() - before;
        }
        if c == 1 {
            if let Some(f) = rt_api {
                m.runtime_api.extend(
                    f.runtime_api_round_trips(plan.runtime_api_per_round)
                        .context("the Runtime API round trips")?,
                );
            }
        }
    }
    Ok(m)
}

/// One client thread: its two connections, then steps until told to stop.
/// It never leaves the barrier protocol early (the conductor would wait
/// forever); a failure is recorded and the remaining steps are skipped.
fn client(shared: &Shared, signer: &Signer, hearth: SocketAddr, direct: SocketAddr) {
    let mut conns = Conn::connect(hearth).and_then(|h| Ok((h, Conn::connect(direct)?)));
    let direct_request = plain_post(b"{}");
    loop {
        shared.barrier.wait();
        let step = *lock(&shared.step);
        let Step::Run(target, length) = step else {
            return;
        };
        let failed = lock(&shared.failure).is_some();
        if !failed {
            let result = match &mut conns {
                Ok((h, d)) => match target.function() {
                    Some((path, placement)) => run_hearth(h, signer, path, placement, length),
                    None => run_direct(d, &direct_request, length),
                },
                Err(e) => Err(anyhow::anyhow!("cannot connect: {e:#}")),
            };
            match result {
                Ok(r) => lock(&shared.results).push(r),
                Err(e) => {
                    lock(&shared.failure).get_or_insert(format!("warm invoke: {e:#}"));
                }
            }
        }
        shared.barrier.wait();
    }
}

fn run_hearth(
    conn: &mut Conn,
    signer: &Signer,
    path: &str,
    placement: &str,
    length: Duration,
) -> Result<StepResult> {
    let cpu_start = cpu::this_thread();
    let mut samples = Vec::new();
    let mut not_warm = 0;
    let mut signing = Duration::ZERO;
    let first = Instant::now();
    let deadline = first + length;
    let mut last = first;
    for _ in 0..MAX_PER_STEP {
        let s = Instant::now();
        let request = signer.request("POST", path, &[], b"{}")?;
        let t = Instant::now();
        signing += t - s;
        let reply = conn.exchange(&request)?;
        let took = t.elapsed();
        last = t + took;
        if reply.status != 200 || reply.header("x-amz-function-error").is_some() {
            bail!(
                "HTTP {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
        }
        if reply.header("x-hearth-placement") != Some(placement) {
            not_warm += 1;
        }
        samples.push(took);
        if last >= deadline {
            break;
        }
    }
    Ok(StepResult {
        samples,
        not_warm,
        signing,
        cpu: cpu::this_thread().saturating_sub(cpu_start),
        first,
        last,
    })
}
fn run_direct(conn: &mut Conn, request: &[u8], length: Duration) -> Result<StepResult> {
    let cpu_start = cpu::this_thread();
    let mut samples = Vec::new();
    let first = Instant::now();
    let deadline = first + length;
    let mut last = first;
    for _ in 0..MAX_PER_STEP {
        let t = Instant::now();
        let reply = conn.exchange(request)?;
        let took = t.elapsed();
        last = t + took;
        if reply.status != 200 {
            bail!("the direct server answered HTTP {}", reply.status);
        }
        samples.push(took);
        if last >= deadline {
            break;
        }
    }
    Ok(StepResult {
        samples,
        not_warm: 0,
        signing: Duration::ZERO,
        cpu: cpu::this_thread().saturating_sub(cpu_start),
        first,
        last,
    })
}
