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

fn invoke(c: &Client, name: &str) -> Result<(Duration, String)> {
    let start = Instant::now();
    let r = c.send(
        "POST",
        &format!("/2015-03-31/functions/{name}/invocations"),
        b"{}".to_vec(),
        &[("x-amz-log-type", "Tail")],
    )?;
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
    Ok((took, log))
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

pub fn run(args: BenchArgs) -> Result<()> {
    let (warm_n, cold_n) = if args.quick { (200, 10) } else { (3000, 60) };
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
    invoke(&client, "bench-warm")?;
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
            hearth_warm.samples.push(invoke(&client, "bench-warm")?.0);
        }
        for _ in 0..50 {
            direct.samples.push(post_keepalive(&mut bconn, b"{}")?);
        }
    }

    // Cold: a fresh function each time (no warm sandbox can serve it).
    let mut cold = Stats {
        name: "first invoke of a new function (cold sandbox)".into(),
        samples: vec![],
    };
    let mut init = Stats {
        name: "  of which Init Duration (REPORT)".into(),
        samples: vec![],
    };
    for i in 0..cold_n {
        let name = format!("bench-cold-{i}");
        create(&name)?;
        let (took, log) = invoke(&client, &name)?;
        cold.samples.push(took);
        if let Some(d) = init_duration(&log) {
            init.samples.push(d);
        }
        client.call("DELETE", &format!("/2015-03-31/functions/{name}"), None)?;
    }
    print_table(&[&direct, &hearth_warm, &cold, &init]);
    let over = hearth_warm.pct(0.5).saturating_sub(direct.pct(0.5));
    println!(
        "\nwarm p50 over the direct baseline: {} ms (target <= 0.150); warm p99: {} ms (target <= 1); cold p50: {} ms (target <= 15 with every pool empty)",
        ms(over),
        ms(hearth_warm.pct(0.99)),
        ms(cold.pct(0.5)),
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
