//! A tiny HTTP/1.1 client over a raw TCP stream (or the sandbox's Unix
//! socket channel), for driving the Runtime API the way runtimes do, and a
//! bound on every wait.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a connection runs over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Every wait in these tests is bounded by this, so a bug fails, not hangs.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Awaits `f`, panicking with `what` after [`LIMIT`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {LIMIT:?}: {what}"),
    }
}

/// Polls `cond` every 5 ms until it holds (bounded by [`LIMIT`]).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts a Runtime API error: this status and `errorType`, and a
    /// non-empty `errorMessage`.
    pub fn assert_error(&self, status: u16, error_type: &str) {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        assert_eq!(v["errorType"], error_type, "{v}");
        assert!(
            v["errorMessage"].as_str().is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
    }
}

/// One keep-alive connection.
pub struct Conn {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = within("connect", TcpStream::connect(addr)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream: Box::new(stream),
            buf: Vec::new(),
        }
    }

    /// A connection over an already connected stream (the channel).
    pub fn over(stream: impl Stream + 'static) -> Self {
        Self {
            stream: Box::new(stream),
            buf: Vec::new(),
        }
    }

    /// A request with a Content-Length body (or none), and its response.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        self.write_raw(&bytes).await;
        self.read_response().await
    }

    /// A POST with a chunked body made of `chunks`.
    pub async fn send_chunked(&mut self, path: &str, chunks: &[&[u8]]) -> HttpResponse {
        let mut bytes = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        for c in chunks {
            bytes.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            bytes.extend_from_slice(c);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
        self.write_raw(&bytes).await;
        self.read_response().await
    }

    pub async fn get(&mut self, path: &str) -> HttpResponse {
        self.send("GET", path, &[], None).await
    }

    pub async fn post(&mut self, path: &str, body: &[u8]) -> HttpResponse {
        self.send("POST", path, &[], Some(body)).await
    }

    pub async fn write_raw(&mut self, bytes: &[u8]) {
        within("write request", self.stream.write_all(bytes))
            .await
            .unwrap();
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = vec![0u8; 65536];
        let n = self.stream.read(&mut chunk).await.unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads one response (Content-Length bodies, as the server sends).
    pub async fn read_response(&mut self) -> HttpResponse {
        within("read response", async {
            let end = loop {
                if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i;
                }
                assert!(self.fill().await > 0, "connection closed before a response");
            };
            let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
            self.buf.drain(..end + 4);
            let mut lines = head.split("\r\n");
            let status: u16 = lines
                .next()
                .unwrap()
                .split(' ')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            let headers: Vec<(String, String)> = lines
                .map(|l| {
                    let (k, v) = l.split_once(':').unwrap();
                    (k.trim().to_owned(), v.trim().to_owned())
                })
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            while self.buf.len() < len {
                assert!(self.fill().await > 0, "connection closed inside a body");
            }
            let body = self.buf.drain(..len).collect();
            HttpResponse {
                status,
                headers,
                body,
            }
        })
        .await
    }

    /// True once the server has closed this connection.
    pub async fn is_closed_by_server(&mut self) -> bool {
        within("wait for close", self.fill()).await == 0
    }
}
