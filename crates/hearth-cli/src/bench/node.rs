//! The processes the bench starts: `hearth serve` nodes (this binary) on
//! free loopback ports with fresh data directories, and the resident
//! Python server of the direct baseline. Each is held by a [`Guard`] that
//! kills and reaps it when dropped, so every path out of the bench, an
//! error included, leaves nothing running.

use super::{check_stop, HANDLER};
use crate::client::{segment, Client, ClientArgs};
use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::json;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The interpreter of the direct baseline (the pyenv `python3` first on
/// `PATH` on these machines starts several times slower).
const PYTHON: &str = "/usr/bin/python3";
/// How long a started process may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The no-op handler as a resident Python process serves it over HTTP/1.1
/// keep-alive: a forking server, so that each client connection has a
/// process of its own, as each concurrent invocation has a sandbox of its
/// own in Hearth (threads would share one GIL). Nagle is off (otherwise
/// `http.server` answers 40 ms late). Children exit when their connection
/// closes.
const DIRECT_SERVER: &str = r#"
import json, socket, socketserver, sys
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

class Server(socketserver.ForkingMixIn, HTTPServer):
    pass

srv = Server(("127.0.0.1", int(sys.argv[1])), H)
print("ready", flush=True)
srv.serve_forever()
"#;

/// Stops the child when dropped, so an early error leaves nothing running.
/// A node is asked to stop with SIGTERM first: it then destroys its
/// sandboxes and their host-side mounts, which SIGKILL would leave behind;
/// it is killed if it has not exited within [`STOP_TIMEOUT`].
#[derive(Debug)]
pub struct Guard {
    child: Child,
    graceful: bool,
}

/// How long a node may take to stop after SIGTERM (it waits up to 20 s for
/// its sandboxes to go).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

impl Guard {
    fn new(child: Child, graceful: bool) -> Self {
        Self { child, graceful }
    }

    /// SIGTERM through `kill(1)` (this crate has no unsafe code or libc),
    /// then a bounded wait.
    fn terminate(&mut self) -> bool {
        let sent = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !sent {
            return false;
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if self.graceful && self.terminate() {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits (bounded) until something listens on `port`, or `child` exits.
fn wait_for_port(port: u16, child: &mut Child, what: &str) -> Result<()> {
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited ({status}) before it listened");
        }
        check_stop()?;
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{what}: nothing listens on 127.0.0.1:{port} after {LISTEN_TIMEOUT:?}")
}

/// The resident Python server of the direct baseline.
#[derive(Debug)]
pub struct DirectServer {
    _guard: Guard,
    pub addr: SocketAddr,
}

impl DirectServer {
    /// The server's pid (its connections' processes are its children).
    pub fn pid(&self) -> u32 {
        self._guard.child.id()
    }

    /// Writes the handler and the server into `dir` and starts it.
    pub fn start(dir: &Path) -> Result<Self> {
        let code = dir.join("direct");
        std::fs::create_dir_all(&code)?;
        std::fs::write(code.join("app.py"), HANDLER)?;
        std::fs::write(code.join("server.py"), DIRECT_SERVER)?;
        let port = free_port()?;
        let child = Command::new(PYTHON)
            .arg(code.join("server.py"))
            .arg(port.to_string())
            .arg(&code)
            .env_remove("PYTHONDONTWRITEBYTECODE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start the direct baseline's Python server")?;
        let mut guard = Guard::new(child, false);
        wait_for_port(
            port,
            &mut guard.child,
            "the direct baseline's Python server",
        )?;
        Ok(Self {
            _guard: guard,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }
}

/// One `hearth serve` of the bench, on its own port and data directory.
#[derive(Debug)]
pub struct Node {
    _guard: Guard,
    pub client: Client,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

impl Node {
    /// Starts `hearth serve` with `config` (TOML) in `dir/<name>`, lets the
    /// dev account draw the whole general sub-pool, and waits until it
    /// answers.
    pub fn start(dir: &Path, name: &str, config: &str) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let port = free_port()?;
        let data_dir = dir.join(name);
        std::fs::create_dir_all(&data_dir)?;
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(&cfg, config)?;
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let child = Command::new(&exe)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--config")
            .arg(&cfg)
            .env("HEARTH_LOG", "warn")
            // Its sandboxes run Python handlers: nothing of the bench's own
            // environment that changes how they run may reach them.
            .env_remove("PYTHONDONTWRITEBYTECODE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start hearth serve")?;
        let mut guard = Guard::new(child, true);
        wait_for_port(port, &mut guard.child, "hearth serve")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let client = Client::new(ClientArgs {
            endpoint: format!("http://{addr}"),
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
            region: "us-east-1".into(),
        })?;
        // The bench measures the pool path, not fairness between tenants: its
        // one account may draw the whole general sub-pool (the default share
        // is half, and sandboxes of deleted functions count until they are
        // gone).
        client.call(
            "PUT",
            "/hearth/v1/accounts/000000000000/capacity",
            Some(&json!({"Policy": "burst", "GeneralShare": 1.0})),
        )?;
        Ok(Self {
            _guard: guard,
            client,
            addr,
            data_dir,
        })
    }

    /// The pid of `hearth serve` (its sandboxes are its descendants).
    pub fn pid(&self) -> u32 {
        self._guard.child.id()
    }

    /// Creates a Python function from `zip_b64` and waits until it is Active.
    pub fn create_function(&self, name: &str, zip_b64: &str) -> Result<()> {
        self.create_function_tagged(name, zip_b64, &json!({}))
    }

    /// [`Self::create_function`] with `tags` (e.g. `hearth:isolation`).
    pub fn create_function_tagged(
        &self,
        name: &str,
        zip_b64: &str,
        tags: &serde_json::Value,
    ) -> Result<()> {
        self.create_function_of(name, "python3.11", "app.handler", zip_b64, tags)
    }

    /// Creates a function of `runtime` with `handler` from `zip_b64` and
    /// waits until it is Active.
    pub fn create_function_of(
        &self,
        name: &str,
        runtime: &str,
        handler: &str,
        zip_b64: &str,
        tags: &serde_json::Value,
    ) -> Result<()> {
        self.client.call(
            "POST",
            "/2015-03-31/functions",
            Some(&json!({
                "FunctionName": name, "Runtime": runtime, "Handler": handler,
                "Role": "arn:aws:iam::000000000000:role/bench", "Code": {"ZipFile": zip_b64},
                "Tags": tags,
            })),
        )?;
        self.wait_active(name)
    }

    /// Waits (at most 20 s, asking every 2 ms) until `name` is Active.
    pub fn wait_active(&self, name: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            super::check_stop()?;
            let r = self.client.call(
                "GET",
                &format!("/2015-03-31/functions/{}/configuration", segment(name)),
                None,
            )?;
            if r["State"] == "Active" {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        bail!("{name} did not become Active in 20 s")
    }

    pub fn delete_function(&self, name: &str) -> Result<()> {
        self.client.call(
            "DELETE",
            &format!("/2015-03-31/functions/{}", segment(name)),
            None,
        )?;
        Ok(())
    }

    /// Waits (bounded by `limit`) until every general pool holds at least
    /// its minimum of idle sandboxes.
    pub fn wait_pools_full(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            check_stop()?;
            let p = self.client.call("GET", "/hearth/v1/pools", None)?;
            let full = p["General"]
                .as_array()
                .is_some_and(|g| g.iter().all(|e| e["Idle"].as_u64() >= e["Min"].as_u64()));
            if full {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("the general pools did not fill in {limit:?}")
    }

    /// Idle sandboxes of the first general pool.
    pub fn general_idle(&self) -> Result<u64> {
        let p = self.client.call("GET", "/hearth/v1/pools", None)?;
        Ok(p["General"][0]["Idle"].as_u64().unwrap_or(0))
    }

    /// The sum of a Prometheus counter or gauge's samples whose labels
    /// contain `label` (e.g. `outcome="success"`), from `/metrics`.
    pub fn metric_sum(&self, name: &str, label: &str) -> Result<f64> {
        let mut conn = super::http::Conn::connect(self.addr)?;
        let reply = conn
            .exchange(format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr).as_bytes())?;
        if reply.status != 200 {
            bail!("GET /metrics: HTTP {}", reply.status);
        }
        let text = String::from_utf8_lossy(&reply.body);
        Ok(text
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter(|l| l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}

/// A zip holding `app.py` with `source`, base64-encoded for CreateFunction.
pub fn zip_b64(source: &str) -> Result<String> {
    zip_b64_as("app.py", source)
}

/// A zip holding `source` as `file`, base64-encoded for CreateFunction.
pub fn zip_b64_as(file: &str, source: &str) -> Result<String> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(file, zip::write::SimpleFileOptions::default())?;
    w.write_all(source.as_bytes())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(w.finish()?.into_inner()))
}
