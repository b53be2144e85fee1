//! Capturing what a sandbox writes, framing it per invocation with Lambda's
//! START / END / REPORT lines, and storing it in batches.

use hearth_store::{LogStore, NewLogEvent};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};

/// Most bytes of output kept for one invocation; older output is dropped
/// first (the log store keeps a bounded history anyway).
const MAX_CAPTURE: usize = 1 << 20;

/// Reads a sandbox's stdout and stderr continuously into one buffer, and
/// hands the buffer over, drained, on request. The pipes reach EOF only when
/// every process of the sandbox is gone, which `closed` reports.
///
/// The buffer and the pipes are shared with the reading task, so `take`
/// drains and hands over in the caller's own task: no wake-up of another
/// task (and, on a multi-threaded runtime, often another core) per
/// invocation.
#[derive(Debug)]
pub struct LogPump {
    shared: Arc<PumpShared>,
    closed: watch::Receiver<bool>,
}

#[derive(Debug)]
struct PumpShared {
    out: pipe::Receiver,
    err: pipe::Receiver,
    state: parking_lot::Mutex<PumpState>,
    closed: watch::Sender<bool>,
    /// The `LogPump` is gone: the reading task ends.
    dropped: tokio::sync::Notify,
}

#[derive(Debug)]
struct PumpState {
    buf: Vec<u8>,
    out_open: bool,
    err_open: bool,
}

impl PumpShared {
    /// Drains both pipes into the buffer (without waiting) and hands the
    /// buffer over, under one hold of its lock.
    fn drain_and_take(&self) -> Vec<u8> {
        let mut st = self.state.lock();
        let PumpState {
            buf,
            out_open,
            err_open,
        } = &mut *st;
        if *out_open {
            *out_open = drain(&self.out, buf);
        }
        if *err_open {
            *err_open = drain(&self.err, buf);
        }
        let closed = !*out_open && !*err_open;
        let taken = std::mem::take(buf);
        drop(st);
        if closed {
            self.closed.send_replace(true);
        }
        taken
    }
}

impl Drop for LogPump {
    fn drop(&mut self) {
        self.shared.dropped.notify_one();
    }
}

impl LogPump {
    pub fn start(stdout: OwnedFd, stderr: OwnedFd) -> std::io::Result<Self> {
        let out = pipe::Receiver::from_owned_fd(stdout)?;
        let err = pipe::Receiver::from_owned_fd(stderr)?;
        let (closed_tx, closed_rx) = watch::channel(false);
        let shared = Arc::new(PumpShared {
            out,
            err,
            state: parking_lot::Mutex::new(PumpState {
                buf: Vec::new(),
                out_open: true,
                err_open: true,
            }),
            closed: closed_tx,
            dropped: tokio::sync::Notify::new(),
        });
        tokio::spawn(pump(shared.clone()));
        Ok(Self {
            shared,
            closed: closed_rx,
        })
    }

    /// Everything written since the last call. The runtime flushes its output
    /// before it answers, so draining the pipes now captures all of it.
    pub async fn take(&self) -> Vec<u8> {
        self.shared.drain_and_take()
    }

    /// Resolves when both pipes are closed: the sandbox has no process left.
    pub async fn closed(&self) {
        let mut c = self.closed.clone();
        // An error means the pump is gone, which also means closed.
        let _ = c.wait_for(|closed| *closed).await;
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }
}

fn push(buf: &mut Vec<u8>, data: &[u8]) {
    buf.extend_from_slice(data);
    if buf.len() > MAX_CAPTURE {
        let cut = buf.len() - MAX_CAPTURE;
        buf.drain(..cut);
    }
}

/// Reads without waiting until the pipe is empty. Returns false at EOF.
///
/// This reads the (non-blocking) descriptor directly: tokio's `try_read`
/// answers `WouldBlock` without a syscall until its reactor has seen the pipe
/// become readable, which would miss output written just before the answer.
fn drain(p: &pipe::Receiver, buf: &mut Vec<u8>) -> bool {
    use std::os::fd::AsFd;
    let mut chunk = [0u8; 16384];
    // Bounded: at most 64 MiB per drain, far beyond any pipe buffer.
    for _ in 0..4096 {
        match nix::unistd::read(p.as_fd(), &mut chunk) {
            Ok(0) => return false,
            Ok(n) => push(buf, &chunk[..n]),
            Err(nix::errno::Errno::EAGAIN) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
    true
}

/// Reads through tokio's readiness (`try_read` clears it when the pipe is
/// empty, so the next `readable` waits) until `WouldBlock`. False at EOF.
///
/// The buffer's lock is held from each read to its push: output read here
/// must reach the buffer before `take` can hand the buffer over, or it would
/// be counted in the next invocation's log.
fn drain_ready(p: &pipe::Receiver, shared: &PumpShared) -> bool {
    let mut chunk = [0u8; 16384];
    let mut st = shared.state.lock();
    // Bounded like `drain`.
    for _ in 0..4096 {
        match p.try_read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => push(&mut st.buf, &chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}

/// Keeps the pipes from filling between invocations: reads whatever the
/// sandbox writes as it writes it.
async fn pump(shared: Arc<PumpShared>) {
    loop {
        let (out_open, err_open) = {
            let st = shared.state.lock();
            (st.out_open, st.err_open)
        };
        if !out_open && !err_open {
            shared.closed.send_replace(true);
            return;
        }
        tokio::select! {
            r = shared.out.readable(), if out_open => {
                let open = r.is_ok() && drain_ready(&shared.out, &shared);
                shared.state.lock().out_open &= open;
            }
            r = shared.err.readable(), if err_open => {
                let open = r.is_ok() && drain_ready(&shared.err, &shared);
                shared.state.lock().err_open &= open;
            }
            () = shared.dropped.notified() => return,
        }
    }
}

/// What the REPORT line says about one invocation.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub duration: Duration,
    pub memory_mb: u32,
    pub max_memory_used_mb: u64,
    pub init_duration: Option<Duration>,
}

/// One invocation's log as Lambda writes it.
pub fn frame(
    request_id: &str,
    version: &str,
    init_output: &[u8],
    output: &[u8],
    extra: &[String],
    report: &Report,
) -> String {
    let mut log = String::new();
    log.push_str(&String::from_utf8_lossy(init_output));
    log.push_str(&format!(
        "START RequestId: {request_id} Version: {version}\n"
    ));
    let out = String::from_utf8_lossy(output);
    log.push_str(&out);
    if !out.is_empty() && !out.ends_with('\n') {
        log.push('\n');
    }
    for line in extra {
        log.push_str(line);
        log.push('\n');
    }
    log.push_str(&format!("END RequestId: {request_id}\n"));
    let ms = report.duration.as_secs_f64() * 1000.0;
    let billed = ms.ceil().max(1.0) as u64;
    log.push_str(&format!(
        "REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {billed} ms\tMemory Size: {} MB\tMax Memory Used: {} MB\t",
        report.memory_mb, report.max_memory_used_mb
    ));
    if let Some(init) = report.init_duration {
        log.push_str(&format!(
            "Init Duration: {:.2} ms\t",
            init.as_secs_f64() * 1000.0
        ));
    }
    log.push('\n');
    log
}

/// The last 4 KB of a log, cut at a UTF-8 boundary, as `X-Amz-Log-Result` carries it.
pub fn tail(log: &str) -> &str {
    const TAIL: usize = 4096;
    if log.len() <= TAIL {
        return log;
    }
    let mut start = log.len() - TAIL;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}

/// What the log writer is sent.
#[derive(Debug)]
enum Msg {
    Event(NewLogEvent),
    /// Commit everything sent before this now, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Batches log events and writes them to the store off the invoke path.
/// A reader calls [`LogWriter::flush`] first: every line an answered
/// invocation wrote is then in the store (no read-after-write lag).
#[derive(Debug, Clone)]
pub struct LogWriter {
    tx: mpsc::UnboundedSender<Msg>,
}

/// A log stream's name as Lambda makes them: the day it started, the
/// version, and 32 hex digits (`2026/12/03/[$LATEST]1f0c…`).
pub fn new_stream_name(version: &str) -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}/{:02}/{:02}/[{version}]{}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        uuid::Uuid::new_v4().simple()
    )
}

impl LogWriter {
    pub fn start(store: Arc<LogStore>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(store, rx));
        Self { tx }
    }

    /// Queues one invocation's log, one event per line, tagged with the
    /// version that ran (`$LATEST` or a number) for `hearth logs NAME:QUALIFIER`
    /// and the stream of the sandbox or VM that ran it.
    pub fn write(
        &self,
        account_id: &str,
        function_name: &str,
        version: &str,
        stream: &str,
        timestamp_ms: i64,
        log: &str,
    ) {
        for line in log.lines() {
            let _ = self.tx.send(Msg::Event(NewLogEvent {
                account_id: account_id.to_owned(),
                function_name: function_name.to_owned(),
                version: version.to_owned(),
                stream: stream.to_owned(),
                timestamp_ms,
                message: line.to_owned(),
            }));
        }
    }

    /// Returns once everything written before the call is in the store.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn write_batches(store: Arc<LogStore>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut first = Vec::new();
    while rx.recv_many(&mut first, 4096).await > 0 {
        let mut batch = Vec::new();
        let mut waiting = Vec::new();
        let take = |m: Msg, batch: &mut Vec<NewLogEvent>, waiting: &mut Vec<_>| match m {
            Msg::Event(e) => batch.push(e),
            Msg::Flush(t) => waiting.push(t),
        };
        for m in first.drain(..) {
            take(m, &mut batch, &mut waiting);
        }
        // Let a burst of invocations share one transaction, unless a
        // reader is waiting.
        let window = tokio::time::sleep(Duration::from_millis(50));
        tokio::pin!(window);
        while waiting.is_empty() && batch.len() < 16_384 {
            tokio::select! {
                () = &mut window => break,
                m = rx.recv() => match m {
                    Some(m) => take(m, &mut batch, &mut waiting),
                    None => break,
                },
            }
        }
        while let Ok(m) = rx.try_recv() {
            take(m, &mut batch, &mut waiting);
            if batch.len() >= 16_384 {
                break;
            }
        }
        if !batch.is_empty() {
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.append(&batch)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not store log events"),
                Err(e) => tracing::warn!(error = %e, "log writer task failed"),
            }
        }
        for w in waiting {
            let _ = w.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_like_lambda() {
        let r = Report {
            duration: Duration::from_micros(1234),
            memory_mb: 128,
            max_memory_used_mb: 40,
            init_duration: Some(Duration::from_micros(105_600)),
        };
        let log = frame("id-1", "$LATEST", b"", b"hello", &[], &r);
        assert_eq!(
            log,
            "START RequestId: id-1 Version: $LATEST\nhello\nEND RequestId: id-1\nREPORT RequestId: id-1\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 105.60 ms\t\n"
        );
        let r = Report {
            init_duration: None,
            ..r
        };
        assert!(!frame("x", "1", b"", b"", &[], &r).contains("Init Duration"));
    }

    #[test]
    fn tail_is_4k_on_a_char_boundary() {
        let s = "é".repeat(3000);
        let t = tail(&s);
        assert!(t.len() <= 4096 && t.len() >= 4094);
        assert!(t.chars().all(|c| c == 'é'));
    }

    #[tokio::test]
    async fn pump_captures_and_reports_close() {
        let (out_r, out_w) = std::io::pipe().unwrap();
        let (err_r, err_w) = std::io::pipe().unwrap();
        let pump = LogPump::start(OwnedFd::from(out_r), OwnedFd::from(err_r)).unwrap();
        use std::io::Write;
        let mut ow = out_w;
        let mut ew = err_w;
        ow.write_all(b"out\n").unwrap();
        ew.write_all(b"err\n").unwrap();
        let got = pump.take().await;
        assert_eq!(got.len(), 8);
        drop(ow);
        drop(ew);
        tokio::time::timeout(Duration::from_secs(5), pump.closed())
            .await
            .unwrap();
        assert!(pump.is_closed());
    }
}
