//! The bench's hot-path client: HTTP/1.1 over one kept-alive loopback
//! connection per client thread, Nagle off, each request written with a
//! single `write`. Hearth and the direct baseline are driven by the same
//! code, so the client's own cost is the same on both sides of a
//! comparison (the control plane goes through [`crate::client::Client`]).

use anyhow::{bail, Context, Result};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime};

/// No single exchange may take longer than this (a bound, not a target).
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Response heads larger than this are refused.
const MAX_HEAD: usize = 64 * 1024;

/// A parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A synchronous Invoke as the bench reads it: its latency, where it ran
/// (`X-Hearth-Placement`) and its log tail (if it asked for one).
#[derive(Debug)]
pub struct Invoked {
    pub took: std::time::Duration,
    pub placement: String,
    pub log: String,
}

/// Sends the already-signed Invoke `request` on `conn`, timing the
/// exchange only; a non-200 answer or a function error is an error that
/// names `what`.
pub fn timed_invoke(conn: &mut Conn, request: &[u8], what: &str) -> Result<Invoked> {
    use base64::Engine as _;
    let start = std::time::Instant::now();
    let r = conn.exchange(request)?;
    let took = start.elapsed();
    if r.status != 200 || r.header("x-amz-function-error").is_some() {
        bail!(
            "{what} failed (HTTP {}): {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    let log = r
        .header("x-amz-log-result")
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let placement = r.header("x-hearth-placement").unwrap_or("").to_owned();
    Ok(Invoked {
        took,
        placement,
        log,
    })
}

/// The REPORT line's `Init Duration`, if the log has one.
pub fn init_duration(log: &str) -> Option<std::time::Duration> {
    let v = log.split("Init Duration: ").nth(1)?.split(" ms").next()?;
    v.trim()
        .parse::<f64>()
        .ok()
        .map(|ms| std::time::Duration::from_secs_f64(ms / 1000.0))
}

/// One kept-alive connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    /// Bytes read past the previous response (none unless the peer
    /// misbehaves; requests are not pipelined).
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Writes a whole request (head and body, prepared beforehand) and
    /// reads the whole response.
    pub fn exchange(&mut self, request: &[u8]) -> Result<Reply> {
        self.stream.write_all(request)?;
        self.read_reply()
    }

    fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn read_reply(&mut self) -> Result<Reply> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_HEAD {
                bail!("a response head over {MAX_HEAD} bytes");
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse::<u16>().ok())
            .context("a response without a status line")?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        self.buf.drain(..head_end + 4);
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let body = if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            self.read_chunked()?
        } else {
            let len = match get("content-length") {
                Some(v) => v.parse::<usize>().context("a bad Content-Length")?,
                None => 0,
            };
            while self.buf.len() < len {
                self.fill()?;
            }
            self.buf.drain(..len).collect()
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        // Bounded by the size of what the server sends: each pass consumes
        // one chunk or reads more bytes.
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                self.fill()?;
            };
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("a bad chunk size `{size_text}`"))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers (none expected), then the final CRLF.
                loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        self.buf.drain(..i + 2);
                        if i == 0 {
                            return Ok(body);
                        }
                    } else {
                        self.fill()?;
                    }
                }
            }
            while self.buf.len() < size + 2 {
                self.fill()?;
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A plain POST to the direct baseline.
pub fn plain_post(body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Signs requests with SigV4 for one node, as an AWS SDK does.
#[derive(Debug)]
pub struct Signer {
    identity: Identity,
    region: String,
    /// `127.0.0.1:PORT`, the `Host` header and the authority of the URL
    /// that is signed.
    host: String,
}

impl Signer {
    pub fn new(addr: SocketAddr, access_key_id: &str, secret: &str, region: &str) -> Self {
        Self {
            identity: Credentials::from_keys(access_key_id, secret, None).into(),
            region: region.to_owned(),
            host: addr.to_string(),
        }
    }

    /// The whole signed request, ready to write: SigV4 over the method,
    /// path, `host`, `content-type`, `extra` headers and the body, dated now.
    pub fn request(
        &self,
        method: &str,
        path_and_query: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<u8>> {
        let url = format!("http://{}{}", self.host, path_and_query);
        let mut headers: Vec<(&str, &str)> = vec![("host", &self.host)];
        if !body.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        headers.extend_from_slice(extra);
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("lambda")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?
            .into();
        let signable = SignableRequest::new(
            method,
            &url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )?;
        let (instructions, _) = sign(signable, &params)?.into_parts();
        let mut req = format!("{method} {path_and_query} HTTP/1.1\r\n");
        for (k, v) in headers.iter().copied().chain(instructions.headers()) {
            req.push_str(k);
            req.push_str(": ");
            req.push_str(v);
            req.push_str("\r\n");
        }
        req.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-connection server that answers each request with `replies`
    /// in turn, raw.
    fn serve(replies: Vec<&'static [u8]>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            for r in replies {
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while find(&got, b"\r\n\r\n").is_none() {
                    let n = s.read(&mut buf).unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
                // Sent in two writes, to exercise partial reads.
                let (a, b) = r.split_at(r.len() / 2);
                s.write_all(a).unwrap();
                s.flush().unwrap();
                std::thread::sleep(Duration::from_millis(5));
                s.write_all(b).unwrap();
            }
        });
        addr
    }

    #[test]
    fn reads_sized_and_chunked_bodies_on_one_connection() {
        let addr = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Hearth-Placement: warm\r\n\r\nnull",
            b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        ]);
        let mut c = Conn::connect(addr).unwrap();
        let r = c.exchange(&plain_post(b"{}")).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"null"[..]));
        assert_eq!(r.header("x-hearth-placement"), Some("warm"));
        let r = c.exchange(&plain_post(b"{}")).unwrap();
        assert_eq!((r.status, r.body.len()), (202, 0));
        let r = c.exchange(&plain_post(b"{}")).unwrap();
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn signed_requests_carry_sigv4_headers() {
        let s = Signer::new(
            "127.0.0.1:9000".parse().unwrap(),
            "test",
            "test",
            "us-east-1",
        );
        let req = s
            .request(
                "POST",
                "/2015-03-31/functions/f/invocations",
                &[("x-amz-invocation-type", "Event")],
                b"{}",
            )
            .unwrap();
        let text = String::from_utf8(req).unwrap();
        assert!(text.starts_with("POST /2015-03-31/functions/f/invocations HTTP/1.1\r\n"));
        assert!(text.contains("host: 127.0.0.1:9000\r\n"));
        assert!(text.contains("authorization: AWS4-HMAC-SHA256 Credential=test/"));
        assert!(text.contains("/us-east-1/lambda/aws4_request"));
        assert!(text.contains("x-amz-date: "));
        assert!(text.contains("x-amz-invocation-type: Event\r\n"));
        assert!(text.ends_with("content-length: 2\r\n\r\n{}"));
    }
}
