//! Section `async`: asynchronous invocation (`X-Amz-Invocation-Type:
//! Event`). How many events a node accepts per second (each 202 follows a
//! durable commit), and, on an idle node, how long after the client got its
//! 202 the handler starts: the handler prints its own wall-clock time and
//! the bench reads it back from the function's log (same host, same clock).

use super::http::{Conn, Signer};
use super::node::{zip_b64, Node};
use super::{check_stop, lock, thin, Ctx};
use anyhow::{bail, Context, Result};
use hearth_bench::report::{ChartSpec, Figure, Scenario, Section};
use serde_json::json;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const FUNCTION: &str = "bench-async";
const INVOKE_PATH: &str = "/2015-03-31/functions/bench-async/invocations";
/// Prints when it started if the event asks for it; otherwise a no-op.
const HANDLER: &str = "import time\n\n\ndef handler(event, context):\n    t = time.time()\n    if isinstance(event, dict) and \"bench\" in event:\n        print(\"BENCH %s %.6f\" % (event[\"bench\"], t), flush=True)\n    return None\n";
/// Clients sending events at once in the acceptance burst.
const CLIENTS: usize = 8;
/// How long one event may take to show up in the log.
const LOG_WAIT: Duration = Duration::from_secs(10);

pub fn run(ctx: &Ctx) -> Result<Section> {
    let (burst, one_by_one, gap) = if ctx.quick {
        (400, 10, Duration::from_millis(50))
    } else {
        (10_000, 200, Duration::from_millis(100))
    };
    let node = Node::start(&ctx.dir, "async", "")?;
    node.create_function(FUNCTION, &zip_b64(HANDLER)?)?;
    let signer = Signer::new(node.addr, "test", "test", "us-east-1");
    // Warm: a synchronous invoke, then one event run end to end.
    node.client.send(
        "POST",
        INVOKE_PATH,
        b"{}".to_vec(),
        &[("x-amz-invocation-type", "RequestResponse")],
    )?;
    let mut cursor = log_cursor(&node)?;
    let mut conn = Conn::connect(node.addr)?;
    let (_, warm_up) = send_event(&mut conn, &signer, "warm-up")?;
    let _ = wait_for_start(&node, &mut cursor, "warm-up", warm_up)?;

    eprintln!("[async] {burst} events from {CLIENTS} clients…");
    let succeeded_before = node.metric_sum("hearth_event_attempts_total", "outcome=\"success\"")?;
    let (accept, burst_start, accept_time) = accept_burst(&signer, node.addr, burst)?;
    let drain_limit = if ctx.quick {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(180)
    };
    let deadline = Instant::now() + drain_limit;
    loop {
        check_stop()?;
        let done = node.metric_sum("hearth_event_attempts_total", "outcome=\"success\"")?
            - succeeded_before;
        if done >= burst as f64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {done} of {burst} accepted events ran within {drain_limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let run_time = burst_start.elapsed();

    eprintln!("[async] {one_by_one} events one at a time on the idle node…");
    let mut accept_idle = Vec::new();
    let mut start_after = Vec::new();
    for i in 0..one_by_one {
        check_stop()?;
        std::thread::sleep(gap);
        let id = format!("e{i}-{}", std::process::id());
        let (took, accepted_at) = send_event(&mut conn, &signer, &id)?;
        accept_idle.push(took);
        start_after.push(wait_for_start(&node, &mut cursor, &id, accepted_at)?);
    }
    drop(conn);
    drop(node);

    let rate = |n: usize, t: Duration| n as f64 / t.as_secs_f64().max(1e-9);
    Ok(Section::new(
        "async",
        "Asynchronous invocation",
        "X-Amz-Invocation-Type: Event, SigV4-signed; a 202 is sent only after the event is durably stored. \
         Accepted: a burst of events from 8 clients, each with its own kept-alive connection, while the node also runs them. \
         Run: from the burst's first request until every event's attempt succeeded (/metrics polled every 20 ms). \
         Start after 202: one event at a time on an idle node, its function warm; the handler's time.time() at entry (read back from the function's log) minus the client's wall-clock time when the 202 arrived.",
    )
    .scenario(Scenario::from_durations(
        "accept-idle",
        "202 latency, one event at a time",
        &accept_idle,
    ))
    .scenario(Scenario::from_durations(
        "accept-c8",
        "202 latency, 8 clients",
        &thin(&accept),
    ))
    .scenario(Scenario::from_samples(
        "start-after-202",
        "202 → handler start, idle node",
        "ms",
        start_after,
    ))
    .figure(
        Figure::new(
            "accepted-per-s",
            "events accepted per second, 8 clients",
            rate(burst, accept_time),
            "events/s",
        )
        .with_note(&format!(
            "{burst} events in {:.2} s",
            accept_time.as_secs_f64()
        )),
    )
    .figure(
        Figure::new(
            "run-per-s",
            "events run per second (accepted to succeeded)",
            rate(burst, run_time),
            "events/s",
        )
        .with_note(&format!(
            "{burst} events in {:.2} s",
            run_time.as_secs_f64()
        )),
    )
    .chart(ChartSpec::latency_cdf(
        "async.svg",
        "Asynchronous invocation",
        &["accept-idle", "accept-c8", "start-after-202"],
    )))
}

/// Sends one event whose handler logs `id`; returns the 202's latency and
/// the wall-clock time it arrived.
fn send_event(conn: &mut Conn, signer: &Signer, id: &str) -> Result<(Duration, SystemTime)> {
    let body = serde_json::to_vec(&json!({ "bench": id }))?;
    let request = signer.request(
        "POST",
        INVOKE_PATH,
        &[("x-amz-invocation-type", "Event")],
        &body,
    )?;
    let t = Instant::now();
    let reply = conn.exchange(&request)?;
    let took = t.elapsed();
    let at = SystemTime::now();
    if reply.status != 202 {
        bail!(
            "an Event invoke got HTTP {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    Ok((took, at))
}

/// The function log's newest sequence number.
fn log_cursor(node: &Node) -> Result<Option<i64>> {
    let r = node.client.call(
        "GET",
        &format!("/hearth/v1/functions/{FUNCTION}/logs?limit=1"),
        None,
    )?;
    Ok(r["NextAfter"].as_i64())
}

/// Polls the function's log after `cursor` (bounded by [`LOG_WAIT`]) for
/// the line the handler printed for `id`; returns its start time minus
/// `accepted_at`, in milliseconds.
fn wait_for_start(
    node: &Node,
    cursor: &mut Option<i64>,
    id: &str,
    accepted_at: SystemTime,
) -> Result<f64> {
    let needle = format!("BENCH {id} ");
    let deadline = Instant::now() + LOG_WAIT;
    while Instant::now() < deadline {
        check_stop()?;
        let path = match cursor {
            Some(c) => format!("/hearth/v1/functions/{FUNCTION}/logs?after={c}"),
            None => format!("/hearth/v1/functions/{FUNCTION}/logs"),
        };
        let r = node.client.call("GET", &path, None)?;
        if let Some(next) = r["NextAfter"].as_i64() {
            *cursor = Some(next);
        }
        let started = r["Events"].as_array().into_iter().flatten().find_map(|e| {
            let m = e["Message"].as_str()?;
            let rest = &m[m.find(&needle)? + needle.len()..];
            rest.split_whitespace().next()?.parse::<f64>().ok()
        });
        if let Some(t) = started {
            let accepted = accepted_at
                .duration_since(UNIX_EPOCH)
                .context("the clock is before 1970")?
                .as_secs_f64();
            return Ok((t - accepted) * 1000.0);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("event {id} did not show in {FUNCTION}'s log within {LOG_WAIT:?}")
}

/// One client's 202 latencies, and when it started and finished.
type ClientBurst = (Vec<Duration>, Instant, Instant);

/// `total` events from [`CLIENTS`] threads at once, each on its own
/// connection; returns every 202's latency, when the burst started and
/// its wall time.
fn accept_burst(
    signer: &Signer,
    addr: std::net::SocketAddr,
    total: usize,
) -> Result<(Vec<Duration>, Instant, Duration)> {
    let barrier = Barrier::new(CLIENTS);
    let results: Mutex<Vec<Result<ClientBurst>>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for k in 0..CLIENTS {
            let (barrier, results) = (&barrier, &results);
            let n = total / CLIENTS + usize::from(k < total % CLIENTS);
            s.spawn(move || {
                let conn = Conn::connect(addr);
                // Every thread reaches the barrier, connected or not.
                barrier.wait();
                let r = conn.and_then(|mut conn| {
                    let first = Instant::now();
                    let mut samples = Vec::with_capacity(n);
                    for i in 0..n {
                        let body = format!("{{\"n\":{i}}}");
                        let request = signer.request(
                            "POST",
                            INVOKE_PATH,
                            &[("x-amz-invocation-type", "Event")],
                            body.as_bytes(),
                        )?;
                        let t = Instant::now();
                        let reply = conn.exchange(&request)?;
                        samples.push(t.elapsed());
                        if reply.status != 202 {
                            bail!("an Event invoke got HTTP {}", reply.status);
                        }
                    }
                    Ok((samples, first, Instant::now()))
                });
                lock(results).push(r);
            });
        }
    });
    let mut all = Vec::with_capacity(total);
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    for r in std::mem::take(&mut *lock(&results)) {
        let (samples, f, l) = r?;
        all.extend(samples);
        first = Some(first.map_or(f, |x| x.min(f)));
        last = Some(last.map_or(l, |x| x.max(l)));
    }
    let (Some(first), Some(last)) = (first, last) else {
        bail!("no client thread reported");
    };
    Ok((all, first, last.saturating_duration_since(first)))
}
