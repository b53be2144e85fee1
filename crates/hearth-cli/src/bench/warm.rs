//! Section `warm`: a warm invoke of a no-op Python handler through Hearth's
//! SigV4-signed Invoke API, against the same handler in a resident Python
//! HTTP server (the floor for a Python handler behind HTTP) and against
//! Hearth's Runtime API round trip alone.
//!
//! For each concurrency N, N client threads each keep one connection to
//! Hearth and one to the direct server. The run alternates time-boxed
//! steps (Hearth, direct, then direct, Hearth…), every thread starting a
//! step together behind a barrier, so both targets see the same machine
//! and each step is a closed loop at exactly N requests in flight. The
//! Runtime API round trips run between rounds at concurrency 1.

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
    Hearth,
    Direct,
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
    hearth: Vec<Duration>,
    direct: Vec<Duration>,
    runtime_api: Vec<Duration>,
    hearth_count: usize,
    hearth_time: Duration,
    direct_count: usize,
    direct_time: Duration,
    signing: Duration,
    cpu: CpuSpent,
}

/// CPU time spent in the measured steps, by target and process.
#[derive(Debug, Default)]
struct CpuSpent {
    /// The client threads, in Hearth's steps and in direct's.
    hearth_client: Duration,
    direct_client: Duration,
    /// `hearth serve` itself, and its descendants (the sandboxes: the
    /// launchers, their inits and the runtimes), in Hearth's steps.
    hearth_server: Duration,
    hearth_sandboxes: Duration,
    /// The direct server and its per-connection children, in direct's.
    direct_server: Duration,
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
    let signer = Signer::new(node.addr, "test", "test", "us-east-1");
    let mut section = Section::new(
        "warm",
        "Warm invoke",
        "A no-op Python handler, already warm. Hearth: the Invoke API, each request SigV4-signed as an SDK signs it (signing happens before the clock starts; the node verifies it on the clock). \
         Direct: the same handler in a resident Python HTTP/1.1 server, one forked process per connection as Hearth has one sandbox per concurrent invocation (the floor for a Python handler behind HTTP). \
         N clients each keep one connection to each; time-boxed steps alternate Hearth and direct with exactly N requests in flight. \
         Runtime API: one invoke → response through Hearth's Runtime API to a resident bootstrap, without Hearth's HTTP front, placement or sandbox (concurrency 1). \
         Throughput: completed invocations over the steps' wall time.",
    );
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
        let m = measure(c, &plan, &signer, node.addr, direct.addr, rt_api, pids)?;
        let direct_id = format!("direct-c{c}");
        let hearth_id = format!("hearth-c{c}");
        let clients = if c == 1 {
            "1 client".to_owned()
        } else {
            format!("{c} clients")
        };
        section = section
            .scenario(Scenario::from_durations(
                &direct_id,
                &format!("direct HTTP to resident Python, {clients}"),
                &thin(&m.direct),
            ))
            .scenario(
                Scenario::from_durations(
                    &hearth_id,
                    &format!("Hearth Invoke API (SigV4), {clients}"),
                    &thin(&m.hearth),
                )
                .with_baseline(&direct_id),
            );
        let mut chart = vec![direct_id.clone(), hearth_id.clone()];
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
        let rate = |n: usize, t: Duration| n as f64 / t.as_secs_f64().max(1e-9);
        let note = |n: usize, t: Duration| {
            format!(
                "{n} invocations in {:.2} s over {} steps",
                t.as_secs_f64(),
                plan.rounds
            )
        };
        section = section
            .figure(
                Figure::new(
                    &format!("throughput-direct-c{c}"),
                    &format!("throughput, direct, {clients}{saturation}"),
                    rate(m.direct_count, m.direct_time),
                    "inv/s",
                )
                .with_note(&note(m.direct_count, m.direct_time)),
            )
            .figure(
                Figure::new(
                    &format!("throughput-hearth-c{c}"),
                    &format!("throughput, Hearth, {clients}{saturation}"),
                    rate(m.hearth_count, m.hearth_time),
                    "inv/s",
                )
                .with_note(&format!(
                    "{}; the clients spent {:.1} µs per request signing it",
                    note(m.hearth_count, m.hearth_time),
                    m.signing.as_secs_f64() * 1e6 / m.hearth_count.max(1) as f64
                ))
                .with_baseline(&format!("throughput-direct-c{c}")),
            );
        section = cpu_figures(section, c, &clients, &m);
        let ids: Vec<&str> = chart.iter().map(String::as_str).collect();
        section = section.chart(ChartSpec::latency_cdf(
            &format!("warm-c{c}.svg"),
            &format!("Warm invoke, {clients}"),
            &ids,
        ));
    }
    Ok(section)
}

/// CPU time per invocation, by process, for Hearth and for direct; and,
/// for the throughput target, what a Hearth invocation may cost the
/// server for Hearth to reach 80% of direct's throughput when the machine
/// is CPU-bound (throughput is then cores / CPU per invocation).
fn cpu_figures(mut section: Section, c: usize, clients: &str, m: &Measured) -> Section {
    let per = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    if m.hearth_count == 0 || m.direct_count == 0 {
        return section;
    }
    let client = per(m.cpu.hearth_client, m.hearth_count);
    let server = per(m.cpu.hearth_server, m.hearth_count);
    let sandboxes = per(m.cpu.hearth_sandboxes, m.hearth_count);
    let d_client = per(m.cpu.direct_client, m.direct_count);
    let d_server = per(m.cpu.direct_server, m.direct_count);
    section = section
        .figure(
            Figure::new(
                &format!("cpu-direct-c{c}"),
                &format!("CPU per invocation, direct, {clients}"),
                d_client + d_server,
                "µs",
            )
            .with_note(&format!(
                "client {d_client:.1} µs, Python server {d_server:.1} µs"
            )),
        )
        .figure(
            Figure::new(
                &format!("cpu-hearth-c{c}"),
                &format!("CPU per invocation, Hearth, {clients}"),
                client + server + sandboxes,
                "µs",
            )
            .with_note(&format!(
                "client {client:.1} µs (signing included), hearth serve {server:.1} µs, sandbox (runtime) {sandboxes:.1} µs"
            ))
            .with_baseline(&format!("cpu-direct-c{c}")),
        );
    if c == CONCURRENCY[CONCURRENCY.len() - 1] {
        let budget = (d_client + d_server) / 0.8 - client - sandboxes;
        section = section.figure(
            Figure::new(
                "cpu-server-budget-80",
                "hearth serve's CPU budget per invocation for 80% of direct's throughput (CPU-bound)",
                budget,
                "µs",
            )
            .with_note(&format!(
                "direct's CPU per invocation / 0.8, less Hearth's client and runtime; spent now: {server:.1} µs{}",
                if budget <= 0.0 {
                    " (not positive: out of reach whatever the server does)"
                } else {
                    ""
                }
            )),
        );
    }
    section
}

/// Runs the plan at concurrency `c`: `c` client threads, conducted from
/// this thread step by step.
fn measure(
    c: usize,
    plan: &Plan,
    signer: &Signer,
    hearth: SocketAddr,
    direct: SocketAddr,
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
            s.spawn(move || client(shared, signer, hearth, direct));
        }
        let outcome = conduct(c, plan, &shared, rt_api, pids);
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
    rt_api: Option<&hearth_bench::baselines::Fixture>,
    pids: Pids,
) -> Result<Measured> {
    // Warm-up: until one step at this concurrency is served only by
    // function-warm sandboxes (the first ones start cold or from a pool).
    let mut warm = false;
    for _ in 0..WARMUP_STEPS {
        check_stop()?;
        let r = step(shared, Step::Run(Target::Hearth, plan.step))?;
        if r.iter().all(|r| r.not_warm == 0) {
            warm = true;
            break;
        }
    }
    if !warm {
        bail!("Hearth still started sandboxes for {FUNCTION} at {c} clients after {WARMUP_STEPS} warm-up steps");
    }
    step(shared, Step::Run(Target::Direct, plan.step))?;
    let mut m = Measured::default();
    for round in 0..plan.rounds {
        check_stop()?;
        let order = if round % 2 == 0 {
            [Target::Hearth, Target::Direct]
        } else {
            [Target::Direct, Target::Hearth]
        };
        for target in order {
            // Read between steps, off every client's clock.
            let before = cpu::trees(&[pids.hearth, pids.direct]);
            let results = step(shared, Step::Run(target, plan.step))?;
            let after = cpu::trees(&[pids.hearth, pids.direct]);
            let client_cpu: Duration = results.iter().map(|r| r.cpu).sum();
            match target {
                Target::Hearth => {
                    m.cpu.hearth_client += client_cpu;
                    m.cpu.hearth_server += after[0].own.saturating_sub(before[0].own);
                    m.cpu.hearth_sandboxes +=
                        after[0].descendants.saturating_sub(before[0].descendants);
                }
                Target::Direct => {
                    m.cpu.direct_client += client_cpu;
                    m.cpu.direct_server += after[1].total().saturating_sub(before[1].total());
                }
            }
            let first = results.iter().map(|r| r.first).min();
            let last = results.iter().map(|r| r.last).max();
            let elapsed = match (first, last) {
                (Some(f), Some(l)) => l.saturating_duration_since(f),
                _ => Duration::ZERO,
            };
            m.signing += results.iter().map(|r| r.signing).sum::<Duration>();
            let samples = results.into_iter().flat_map(|r| r.samples);
            match target {
                Target::Hearth => {
                    let before = m.hearth.len();
                    m.hearth.extend(samples);
                    m.hearth_count += m.hearth.len() - before;
                    m.hearth_time += elapsed;
                }
                Target::Direct => {
                    let before = m.direct.len();
                    m.direct.extend(samples);
                    m.direct_count += m.direct.len() - before;
                    m.direct_time += elapsed;
                }
            }
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
                Ok((h, d)) => match target {
                    Target::Hearth => run_hearth(h, signer, length),
                    Target::Direct => run_direct(d, &direct_request, length),
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

fn run_hearth(conn: &mut Conn, signer: &Signer, length: Duration) -> Result<StepResult> {
    let cpu_start = cpu::this_thread();
    let mut samples = Vec::new();
    let mut not_warm = 0;
    let mut signing = Duration::ZERO;
    let first = Instant::now();
    let deadline = first + length;
    let mut last = first;
    for _ in 0..MAX_PER_STEP {
        let s = Instant::now();
        let request = signer.request("POST", INVOKE_PATH, &[], b"{}")?;
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
        if reply.header("x-hearth-placement") != Some("warm") {
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
