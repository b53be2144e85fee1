//! The HTTP side of the Runtime API: the accept loop, one hyper HTTP/1.1
//! keep-alive connection per socket, routing, and the one place where
//! [`ApiError`]s become status codes and Lambda's error bodies.

use super::state::{ApiError, AssignmentDecision, NextDecision};
use super::{InitOutcome, Invocation, InvokeOutcome, RuntimeReady, Shared, RESPONSE_MAX_BYTES};
use bytes::{Bytes, BytesMut};
use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

type Resp = Response<Full<Bytes>>;

const PREFIX: &str = "/2018-06-01/runtime/";
const ERROR_TYPE_HEADER: &str = "lambda-runtime-function-error-type";
/// Hearth's extension for its own bootstraps: an answer (`…/response` or
/// `…/error`) with this header set to `1` is, once accepted, also the
/// runtime's next `next`: the reply is the next invocation (or what `next`
/// would answer) instead of `202`. One HTTP exchange per invocation instead
/// of two; a runtime that does not send it sees Lambda's protocol unchanged.
const THEN_NEXT_HEADER: &str = "hearth-then-next";

/// Accepts connections until the endpoint shuts down.
pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            biased;
            () = shut_down(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Every request is one small write answered by one small
                    // write: Nagle would only add latency.
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "runtime API: cannot set TCP_NODELAY");
                    }
                    tokio::spawn(serve_connection(stream, shared.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, addr = %shared.local_addr, "runtime API: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Resolves once the endpoint is shut down (or its sender is gone).
async fn shut_down(rx: &mut watch::Receiver<bool>) {
    // The returned guard is dropped here, never held across an await.
    let _ = rx.wait_for(|down| *down).await;
}

/// Serves one keep-alive HTTP/1.1 connection: an accepted TCP socket, or
/// the sandbox's Unix socket channel.
pub(super) async fn serve_connection<S>(stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut shutdown = shared.shutdown.subscribe();
    let svc_shared = shared.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = svc_shared.clone();
        async move { Ok::<_, Infallible>(route(&shared, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // No header-read timeout: a runtime keeps its connection idle for as
    // long as its handler runs (up to 15 minutes).
    builder.keep_alive(true).header_read_timeout(None);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        biased;
        // Dropping the connection closes the socket.
        () = shut_down(&mut shutdown) => {}
        served = conn => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "runtime API connection ended with an error");
            }
        }
    }
}

/// Which answer an `…/invocation/{id}/…` request carries.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Response,
    Error,
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Resp {
    let path = req.uri().path();
    let method = req.method();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return render_error(&ApiError::NotFound(path.to_owned()));
    };
    if rest == "invocation/next" {
        if method != Method::GET {
            return method_not_allowed(method, path, "GET");
        }
        return next(shared).await;
    }
    if rest == "init/error" {
        if method != Method::POST {
            return method_not_allowed(method, path, "POST");
        }
        return init_error(shared, req).await;
    }
    if rest == "hearth/assignment" {
        if method != Method::GET {
            return method_not_allowed(method, path, "GET");
        }
        return assignment(shared).await;
    }
    if let Some((id, answer)) = rest.strip_prefix("invocation/").and_then(split_answer) {
        if method != Method::POST {
            return method_not_allowed(method, path, "POST");
        }
        return answer_invocation(shared, id, answer, req).await;
    }
    render_error(&ApiError::NotFound(path.to_owned()))
}

/// `{id}/response` or `{id}/error` → the (percent-decoded) id and the kind.
fn split_answer(s: &str) -> Option<(String, Answer)> {
    let (id, kind) = s.rsplit_once('/')?;
    let answer = match kind {
        "response" => Answer::Response,
        "error" => Answer::Error,
        _ => return None,
    };
    if id.is_empty() || id.contains('/') {
        return None;
    }
    Some((percent_decode(id), answer))
}

/// Node's runtime client sends `encodeURIComponent(id)`; request ids are
/// UUIDs in practice, so this only matters for odd ids.
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                // Two hex digits make at most 255.
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Records that the runtime reached the runtime-warm state, or passed it by.
fn set_ready(shared: &Shared, value: RuntimeReady) {
    shared.ready.send_if_modified(|s| {
        if s.is_none() {
            *s = Some(value);
            true
        } else {
            false
        }
    });
}

async fn assignment(shared: &Shared) -> Resp {
    let (decision, first) = shared.machine.lock().assignment_poll();
    if first {
        set_ready(shared, RuntimeReady::Ready);
    }
    match decision {
        AssignmentDecision::Deliver(json) => json_bytes_response(json),
        AssignmentDecision::Refuse(e) => render_error(&e),
        AssignmentDecision::Park(rx) => match rx.await {
            Ok(json) => json_bytes_response(json),
            Err(_) if shared.machine.lock().is_closed() => render_error(&ApiError::ShuttingDown),
            Err(_) => render_error(&ApiError::InvalidStateTransition(
                "this /runtime/hearth/assignment was superseded by a newer one (only one may be outstanding)"
                    .to_owned(),
            )),
        },
    }
}

async fn next(shared: &Shared) -> Resp {
    let (decision, first, bypassed) = {
        let mut machine = shared.machine.lock();
        let (decision, first) = machine.next();
        (decision, first, first && !machine.asked_for_assignment())
    };
    if bypassed {
        set_ready(shared, RuntimeReady::InitStarted);
    }
    if first {
        shared.init.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(InitOutcome::Ready);
                true
            } else {
                false
            }
        });
    }
    match decision {
        NextDecision::Deliver(inv) => event_response(inv),
        NextDecision::Refuse(e) => render_error(&e),
        NextDecision::Park(rx) => match rx.await {
            Ok(inv) => event_response(inv),
            Err(_) if shared.machine.lock().is_closed() => render_error(&ApiError::ShuttingDown),
            Err(_) => render_error(&ApiError::InvalidStateTransition(
                "this /runtime/invocation/next was superseded by a newer one (only one may be outstanding)"
                    .to_owned(),
            )),
        },
    }
}

async fn answer_invocation(
    shared: &Shared,
    id: String,
    answer: Answer,
    req: Request<Incoming>,
) -> Resp {
    let error_type = error_type_header(&req);
    let then_next = req
        .headers()
        .get(THEN_NEXT_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1");
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(e) => return render_error(&e),
    };
    let done = match shared.machine.lock().answer(&id) {
        Ok(done) => done,
        Err(e) => return render_error(&e),
    };
    let (outcome, resp) = match body {
        ReadBody::Complete(body) => (
            match answer {
                Answer::Response => InvokeOutcome::Response(body),
                Answer::Error => InvokeOutcome::FunctionError { body, error_type },
            },
            accepted(),
        ),
        ReadBody::TooLarge(size) => (
            InvokeOutcome::ResponseTooLarge { size },
            render_error(&ApiError::RequestEntityTooLarge),
        ),
    };
    // The invoker may have given up a moment ago; the answer is then dropped.
    let _ = done.send(outcome);
    if then_next && resp.status() == StatusCode::ACCEPTED {
        return next(shared).await;
    }
    resp
}

async fn init_error(shared: &Shared, req: Request<Incoming>) -> Resp {
    let error_type = error_type_header(&req);
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(e) => return render_error(&e),
    };
    let accepted_init_error = {
        let mut machine = shared.machine.lock();
        machine
            .init_error()
            .map(|()| machine.asked_for_assignment())
    };
    match accepted_init_error {
        Err(e) => return render_error(&e),
        Ok(false) => set_ready(shared, RuntimeReady::InitStarted),
        Ok(true) => {}
    }
    let (body, resp) = match body {
        ReadBody::Complete(body) => (body, accepted()),
        // Still an init failure; only its description is lost.
        ReadBody::TooLarge(_) => (Bytes::new(), render_error(&ApiError::RequestEntityTooLarge)),
    };
    shared.init.send_if_modified(|s| {
        if s.is_none() {
            *s = Some(InitOutcome::Failed { body, error_type });
            true
        } else {
            false
        }
    });
    resp
}

fn error_type_header(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(ERROR_TYPE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

enum ReadBody {
    Complete(Bytes),
    /// Over the limit: drained and discarded; this many bytes were sent.
    TooLarge(usize),
}

/// Reads a whole body (Content-Length or chunked). Bodies over the limit are
/// drained rather than refused unread, so the runtime's write completes, it
/// reads the 413, and the keep-alive connection stays usable.
async fn read_body(mut body: Incoming) -> Result<ReadBody, ApiError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut size = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::TruncatedHttpRequest(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            size = size.saturating_add(data.len());
            if size <= RESPONSE_MAX_BYTES {
                chunks.push(data);
            } else {
                chunks.clear();
            }
        }
    }
    if size > RESPONSE_MAX_BYTES {
        return Ok(ReadBody::TooLarge(size));
    }
    Ok(ReadBody::Complete(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut buf = BytesMut::with_capacity(size);
            for c in &chunks {
                buf.extend_from_slice(c);
            }
            buf.freeze()
        }
    }))
}

fn event_response(inv: Invocation) -> Resp {
    let mut resp = Response::new(Full::new(inv.payload));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut set = |name: &'static str, value: &str| {
        if let Some(v) = header_value(value) {
            h.insert(HeaderName::from_static(name), v);
        } else {
            tracing::warn!(header = name, "runtime API: header value dropped");
        }
    };
    set("lambda-runtime-aws-request-id", &inv.request_id);
    set("lambda-runtime-deadline-ms", &inv.deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        &inv.invoked_function_arn,
    );
    if !inv.trace_id.is_empty() {
        set("lambda-runtime-trace-id", &inv.trace_id);
    }
    if let Some(cc) = &inv.client_context {
        set("lambda-runtime-client-context", cc);
    }
    if let Some(ci) = &inv.cognito_identity {
        set("lambda-runtime-cognito-identity", ci);
    }
    resp
}

/// A header value from text that may hold control characters (a client
/// context's JSON may contain newlines): each becomes a space, which keeps
/// JSON meaning intact since raw control characters can only be whitespace
/// between JSON tokens.
fn header_value(s: &str) -> Option<HeaderValue> {
    if let Ok(v) = HeaderValue::from_str(s) {
        return Some(v);
    }
    let cleaned: Vec<u8> = s
        .bytes()
        .map(|b| if b < 0x20 || b == 0x7f { b' ' } else { b })
        .collect();
    HeaderValue::from_bytes(&cleaned).ok()
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Resp {
    // Serialising a `Value` of strings cannot fail.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn json_bytes_response(body: Bytes) -> Resp {
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn accepted() -> Resp {
    json_response(StatusCode::ACCEPTED, &serde_json::json!({"status": "OK"}))
}

fn method_not_allowed(method: &Method, path: &str, allowed: &'static str) -> Resp {
    let mut resp = render_error(&ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: path.to_owned(),
        allowed,
    });
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allowed));
    resp
}

/// The one place an [`ApiError`] becomes a status and an `errorType`.
fn render_error(e: &ApiError) -> Resp {
    let (status, error_type) = match e {
        ApiError::InvalidRequestId => (StatusCode::BAD_REQUEST, "InvalidRequestID"),
        ApiError::InvalidStateTransition(_) => (StatusCode::FORBIDDEN, "InvalidStateTransition"),
        ApiError::RequestEntityTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
        ApiError::TruncatedHttpRequest(_) => (StatusCode::BAD_REQUEST, "TruncatedHTTPRequest"),
        ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
        ApiError::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        ApiError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
    };
    json_response(
        status,
        &serde_json::json!({"errorMessage": e.to_string(), "errorType": error_type}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_paths_are_split_and_decoded() {
        assert!(
            matches!(split_answer("abc/response"), Some((id, Answer::Response)) if id == "abc")
        );
        assert!(matches!(split_answer("a%2Fb/error"), Some((id, Answer::Error)) if id == "a/b"));
        assert!(split_answer("/response").is_none());
        assert!(split_answer("a/b/response").is_none());
        assert!(split_answer("abc/other").is_none());
        assert_eq!(percent_decode("x%4"), "x%4");
        assert_eq!(percent_decode("x%41"), "xA");
    }

    #[test]
    fn control_characters_in_header_values_become_spaces() {
        let v = header_value("{\n  \"custom\": {}\n}").unwrap();
        assert_eq!(v.as_bytes(), b"{   \"custom\": {} }");
        assert!(header_value("café").is_some());
    }
}
