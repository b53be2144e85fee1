//! `hearth bench`: measures a node against baselines in the same run.
//!
//! It starts its own `hearth serve` (this binary) on a free loopback port
//! with a fresh data directory, and a resident Python HTTP server that calls
//! the same no-op handler (the floor for a Python handler behind HTTP). Every
//! figure is printed beside its baseline, measured interleaved, so the
//! comparison holds on a noisy machine. Nothing here asserts a speed.

use crate::client::{Client, ClientArgs};
use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Fewer iterations (a smoke run).
    #[arg(long)]
    pub quick: bool,
}

const HANDLER: &str = "def handler(event, context):\n    return None\n";

/// The same handler served by a resident Python process over HTTP/1.1
/// keep-alive, with Nagle disabled (otherwise http.server answers 40 ms late).
const BASELINE_SERVER: &str = r#"
import json, socket, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
sys.path.insert(0, sys.argv[2])
from app import handler

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        event = json.loads(self.rfile.read(n) or b"{}")
        body = json.dumps(handler(event, None)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

srv = HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("ready", flush=True)
srv.serve_forever()
"#;

struct Stats {
    name: String,
    samples: Vec<Duration>,
}

impl Stats {
    fn pct(&self, p: f64) -> Duration {
        let mut s = self.samples.clone();
        s.sort();
        if s.is_empty() {
            return Duration::ZERO;
        }
        let i = ((s.len() as f64 - 1.0) * p).round() as usize;
        s[i.min(s.len() - 1)]
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Kills the child when dropped, so an early error leaves nothing running.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) -> Result<()> {
    // Bounded: 30 s.
    for _ in 0..600 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on 127.0.0.1:{port} after 30 s")
}

fn zip_handler() -> Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("app.py", zip::write::SimpleFileOptions::default())?;
    w.write_all(HANDLER.as_bytes())?;
    Ok(w.finish()?.into_inner())
}

/// One POST over a kept-alive connection; returns the time to the full answer.
fn post_keepalive(stream: &mut TcpStream, body: &[u8]) -> Result<Duration> {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let start = Instant::now();
    stream.write_all(req.as_bytes())?;
    stream.write_all(body)?;
    // Read headers, then Content-Length bytes.
    let mut buf = Vec::with_capacity(512);
    let mut byte = [0u8; 512];
    let (head_end, len) = loop {
        let n = stream.read(&mut byte)?;
        if n == 0 {
            bail!("baseline server closed the connection");
        }
        buf.extend_from_slice(&byte[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, len);
        }
    };
    while buf.len() < head_end + len {
        let n = stream.read(&mut byte)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&byte[..n]);
    }
    Ok(start.elapsed())
}

fn invoke_placed(
    c: &Client,
    name: &str,
    qualifier: Option<&str>,
) -> Result<(Duration, String, String)> {
    let path = match qualifier {
        Some(q) => format!("/2015-03-31/functions/{name}/invocations?Qualifier={q}"),
        None => format!("/2015-03-31/functions/{name}/invocations"),
    };
    let start = Instant::now();
    let r = c.send("POST", &path, b"{}".to_vec(), &[("x-amz-log-type", "Tail")])?;
    let took = start.elapsed();
    if r.headers.contains_key("x-amz-function-error") {
        bail!(
            "the bench function failed: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let log = r
        .headers
        .get("x-amz-log-result")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let placement = r
        .headers
        .get("x-hearth-placement")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    Ok((took, log, placement))
}

fn init_duration(log: &str) -> Option<Duration> {
    let v = log.split("Init Duration: ").nth(1)?.split(" ms").next()?;
    v.trim()
        .parse::<f64>()
        .ok()
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
}

fn wait_active(c: &Client, name: &str) -> Result<()> {
    for _ in 0..200 {
        let r = c.call(
            "GET",
            &format!("/2015-03-31/functions/{name}/configuration"),
            None,
        )?;
        if r["State"] == "Active" {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{name} did not become Active")
}

/// One `hearth serve` of the bench, on its own port and data directory.
struct Node {
    _guard: Guard,
    client: Client,
    data_dir: std::path::PathBuf,
}

fn start_node(dir: &std::path::Path, name: &str, config: &str) -> Result<Node> {
    let exe = std::env::current_exe()?;
    let port = free_port()?;
    let data_dir = dir.join(name);
    std::fs::create_dir_all(&data_dir)?;
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, config)?;
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let guard = Guard(
        Command::new(&exe)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(&data_dir)
            .arg("--config")
            .arg(&cfg)
            .env("HEARTH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start hearth serve")?,
    );
    wait_for_port(port)?;
    let client = Client::new(ClientArgs {
        endpoint: format!("http://127.0.0.1:{port}"),
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
        region: "us-east-1".into(),
    })?;
    // The bench measures the pool path, not fairness between tenants: its one
    // account may draw the whole general sub-pool (the default share is half,
    // and sandboxes of deleted functions count until they are gone).
    client.call(
        "PUT",
        "/hearth/v1/accounts/000000000000/capacity",
        Some(&json!({"Policy": "burst", "GeneralShare": 1.0})),
    )?;
    Ok(Node {
        _guard: guard,
        client,
        data_dir,
    })
}

/// Waits (bounded) until every general pool holds at least its minimum.
fn wait_pools_full(c: &Client) -> Result<()> {
    for _ in 0..600 {
        let p = c.call("GET", "/hearth/v1/pools", None)?;
        let full = p["General"]
            .as_array()
            .is_some_and(|g| g.iter().all(|e| e["Idle"].as_u64() >= e["Min"].as_u64()));
        if full {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the general pools did not fill in 30 s")
}

fn create_fn(c: &Client, zip_b64: &str, name: &str, runtime: &str) -> Result<()> {
    c.call(
        "POST",
        "/2015-03-31/functions",
        Some(&json!({
            "FunctionName": name, "Runtime": runtime, "Handler": "app.handler",
            "Role": "arn:aws:iam::000000000000:role/bench", "Code": {"ZipFile": zip_b64},
        })),
    )?;
    wait_active(c, name)
}

/// First invocations of fresh functions on `node`, the pools refilled
/// (bounded wait) before each; returns client latency and Init Duration.
fn first_invokes(
    node: &Node,
    zip_b64: &str,
    n: usize,
    tag: &str,
    expect: &str,
) -> Result<(Stats, Stats)> {
    let mut lat = Stats {
        name: format!("first invoke, {tag}"),
        samples: vec![],
    };
    let mut init = Stats {
        name: format!("  of which Init Duration, {tag}"),
        samples: vec![],
    };
    for i in 0..n {
        wait_pools_full(&node.client)?;
        let name = format!(
            "bench-{}-{i}",
            tag.replace(' ', "-").replace(['(', ')', ','], "")
        );
        create_fn(&node.client, zip_b64, &name, "python3.11")?;
        let (took, log, placement) = invoke_placed(&node.client, &name, None)?;
        if placement != expect {
            bail!("{tag}: expected placement {expect}, got {placement}");
        }
        lat.samples.push(took);
        if let Some(d) = init_duration(&log) {
            init.samples.push(d);
        }
        node.client
            .call("DELETE", &format!("/2015-03-31/functions/{name}"), None)?;
    }
    Ok((lat, init))
}

/// Idle PSS per pooled sandbox: every process in the node's sandbox cgroups,
/// summed from smaps_rollup, over the number of sandboxes.
fn pss_per_sandbox(data_dir: &std::path::Path) -> Result<(f64, usize)> {
    let marker = format!("/{}/", crate::serve::cgroup_name(data_dir));
    let mut pss_kb = 0u64;
    let mut sandboxes = std::collections::BTreeSet::new();
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
        if let Some(sb) = line.split(&marker).nth(1) {
            sandboxes.insert(sb.split('/').next().unwrap_or("").to_owned());
        }
        let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        pss_kb += smaps
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    let n = sandboxes.len().max(1);
    Ok((pss_kb as f64 / 1024.0 / n as f64, sandboxes.len()))
}

fn mem_available_mb() -> Result<u64> {
    let m = std::fs::read_to_string("/proc/meminfo")?;
    m.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .context("no MemAvailable in /proc/meminfo")
}

pub fn run(args: BenchArgs) -> Result<()> {
    let warm_n = if args.quick { 200 } else { 3000 };
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.path().join("serve.log"))?;
    let _server = Guard(
        Command::new(&exe)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .env("HEARTH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start hearth serve")?,
    );
    wait_for_port(port)?;
    let client = Client::new(ClientArgs {
        endpoint: format!("http://127.0.0.1:{port}"),
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
        region: "us-east-1".into(),
    })?;
    let zip = base64::engine::general_purpose::STANDARD.encode(zip_handler()?);
    let create = |name: &str| -> Result<()> {
        client.call(
            "POST",
            "/2015-03-31/functions",
            Some(&json!({
                "FunctionName": name, "Runtime": "python3.11", "Handler": "app.handler",
                "Role": "arn:aws:iam::000000000000:role/bench", "Code": {"ZipFile": zip},
            })),
        )?;
        wait_active(&client, name)
    };

    // Baseline: the same handler in a resident Python HTTP server.
    let code_dir = dir.path().join("baseline");
    std::fs::create_dir_all(&code_dir)?;
    std::fs::write(code_dir.join("app.py"), HANDLER)?;
    std::fs::write(code_dir.join("server.py"), BASELINE_SERVER)?;
    let bport = free_port()?;
    let _baseline = Guard(
        Command::new("/usr/bin/python3")
            .arg(code_dir.join("server.py"))
            .arg(bport.to_string())
            .arg(&code_dir)
            .env_remove("PYTHONDONTWRITEBYTECODE")
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start the baseline Python server")?,
    );
    wait_for_port(bport)?;
    let mut bconn = TcpStream::connect(("127.0.0.1", bport))?;
    bconn.set_nodelay(true)?;

    // Warm: one function, its sandbox kept warm; interleaved in blocks of 50
    // with the baseline so both see the same machine.
    create("bench-warm")?;
    invoke_placed(&client, "bench-warm", None)?;
    let mut hearth_warm = Stats {
        name: "warm invoke (Hearth, SigV4 Invoke API)".into(),
        samples: vec![],
    };
    let mut direct = Stats {
        name: "direct HTTP to resident Python (baseline)".into(),
        samples: vec![],
    };
    for _ in 0..warm_n / 50 {
        for _ in 0..50 {
            hearth_warm
                .samples
                .push(invoke_placed(&client, "bench-warm", None)?.0);
        }
        for _ in 0..50 {
            direct.samples.push(post_keepalive(&mut bconn, b"{}")?);
        }
    }

    drop(_server);
    let first_n = if args.quick { 8 } else { 40 };
    let general_runtime = start_node(
        dir.path(),
        "runtime-warm",
        "[capacity]\ngeneral = [ { profile = \"python:128\", min = 2, max = 2 } ]\n",
    )?;
    let (rt_lat, rt_init) = first_invokes(
        &general_runtime,
        &zip,
        first_n,
        "general runtime-warm",
        "general-runtime",
    )?;
    // Provisioned: a published version with provisioned concurrency 1,
    // first invocation of each, against warm invocations of the same.
    let mut prov = Stats {
        name: "first invoke, provisioned (dedicated)".into(),
        samples: vec![],
    };
    for i in 0..first_n.min(10) {
        let c = &general_runtime.client;
        let name = format!("bench-prov-{i}");
        create_fn(c, &zip, &name, "python3.11")?;
        let v = c.call(
            "POST",
            &format!("/2015-03-31/functions/{name}/versions"),
            Some(&json!({})),
        )?;
        let ver = v["Version"].as_str().unwrap_or("1").to_owned();
        c.call(
            "PUT",
            &format!("/2019-09-30/functions/{name}/provisioned-concurrency?Qualifier={ver}"),
            Some(&json!({"ProvisionedConcurrentExecutions": 1})),
        )?;
        let mut ready = false;
        for _ in 0..400 {
            let s = c.call(
                "GET",
                &format!("/2019-09-30/functions/{name}/provisioned-concurrency?Qualifier={ver}"),
                None,
            )?;
            if s["Status"] == "READY" {
                ready = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        if !ready {
            bail!("provisioned concurrency for {name} never became READY");
        }
        let (took, _, placement) = invoke_placed(c, &name, Some(&ver))?;
        if placement != "dedicated" {
            bail!("provisioned: expected placement dedicated, got {placement}");
        }
        prov.samples.push(took);
        c.call("DELETE", &format!("/2015-03-31/functions/{name}"), None)?;
    }
    drop(general_runtime);
    let shell = start_node(
        dir.path(),
        "shell-warm",
        "[capacity]\ngeneral = [ { profile = \"shell:128\", min = 2, max = 2 } ]\n",
    )?;
    let (sh_lat, sh_init) =
        first_invokes(&shell, &zip, first_n, "general shell-warm", "general-shell")?;
    drop(shell);
    let off = start_node(dir.path(), "pools-off", "[capacity]\ngeneral = []\n")?;
    let (off_lat, off_init) = first_invokes(&off, &zip, first_n, "cold, pools disabled", "cold")?;
    drop(off);

    // Density: N idle runtime-warm Python sandboxes, PSS each and the
    // node's MemAvailable drop.
    let density_n: usize = if args.quick { 20 } else { 200 };
    let before = mem_available_mb()?;
    let dense = start_node(
        dir.path(),
        "density",
        // The budget counts memory limits (128 MB each here), not use: lift it
        // so the pool holds every idle sandbox the bench asks for.
        &format!("[capacity]\nmemory_budget_mb = 100000000\ngeneral = [ {{ profile = \"python:128\", min = {density_n}, max = {density_n} }} ]\n"),
    )?;
    for _ in 0..1200 {
        let p = dense.client.call("GET", "/hearth/v1/pools", None)?;
        if p["General"][0]["Idle"].as_u64() >= Some(density_n as u64) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let (pss_mb, counted) = pss_per_sandbox(&dense.data_dir)?;
    let after = mem_available_mb()?;
    drop(dense);

    print_table(&[
        &direct,
        &hearth_warm,
        &prov,
        &rt_lat,
        &rt_init,
        &sh_lat,
        &sh_init,
        &off_lat,
        &off_init,
    ]);
    let drop_mb = before.saturating_sub(after);
    println!(
        "\ndensity: {counted} idle runtime-warm Python sandboxes: PSS {pss_mb:.2} MiB each; MemAvailable dropped {drop_mb} MiB ({:.2} MiB each); extrapolated to 24 GiB: {:.0} sandboxes by PSS",
        drop_mb as f64 / counted.max(1) as f64,
        24.0 * 1024.0 / pss_mb.max(0.01),
    );
    let over = hearth_warm.pct(0.5).saturating_sub(direct.pct(0.5));
    println!(
        "warm p50 over the direct baseline: {} ms (target <= 0.150); warm p99: {} ms (target <= 1)",
        ms(over),
        ms(hearth_warm.pct(0.99)),
    );
    println!(
        "runtime-warm first invoke p50: {} ms (target <= 3); provisioned first invoke p50 {} ms vs warm p50 {} ms (target: as fast); cold with pools disabled p50 {} ms (target <= 15)",
        ms(rt_lat.pct(0.5)),
        ms(prov.pct(0.5)),
        ms(hearth_warm.pct(0.5)),
        ms(off_lat.pct(0.5)),
    );
    Ok(())
}

fn print_table(rows: &[&Stats]) {
    println!(
        "{:<46} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "scenario (ms, client-observed)", "n", "p50", "p90", "p99", "max"
    );
    for s in rows {
        println!(
            "{:<46} {:>6} {:>9} {:>9} {:>9} {:>9}",
            s.name,
            s.samples.len(),
            ms(s.pct(0.5)),
            ms(s.pct(0.9)),
            ms(s.pct(0.99)),
            ms(s.pct(1.0))
        );
    }
}
