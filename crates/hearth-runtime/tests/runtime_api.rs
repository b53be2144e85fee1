//! The Runtime API over real sockets, driven by a hand-written HTTP client:
//! every path, status and state transition of the contract.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{eventually, within, Conn};
use hearth_runtime::api::{
    AssignError, Assignment, InitOutcome, Invocation, InvokeOutcome, RuntimeApi, RuntimeReady,
    RESPONSE_MAX_BYTES,
};
use std::time::Duration;

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const INIT_ERROR: &str = "/2018-06-01/runtime/init/error";
const ASSIGNMENT: &str = "/2018-06-01/runtime/hearth/assignment";

fn response_path(id: &str) -> String {
    format!("/2018-06-01/runtime/invocation/{id}/response")
}

fn error_path(id: &str) -> String {
    format!("/2018-06-01/runtime/invocation/{id}/error")
}

fn serve() -> RuntimeApi {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    RuntimeApi::serve(listener).unwrap()
}

fn inv(id: &str, payload: &'static str) -> Invocation {
    Invocation::new(
        id,
        Bytes::from_static(payload.as_bytes()),
        1_700_000_000_123,
        "arn:aws:lambda:us-east-1:000000000000:function:f",
    )
}

/// Starts `invoke` in the background.
fn spawn_invoke(api: &RuntimeApi, inv: Invocation) -> tokio::task::JoinHandle<InvokeOutcome> {
    let api = api.clone();
    tokio::spawn(async move { api.invoke(inv).await })
}

/// Waits (bounded) for `invoke` and checks that it was answered with `body`.
async fn expect_response(invoke: tokio::task::JoinHandle<InvokeOutcome>, body: &'static [u8]) {
    assert_eq!(
        within("invoke", invoke).await.unwrap(),
        InvokeOutcome::Response(Bytes::from_static(body))
    );
}

/// Starts a `next` long poll on its own connection in the background.
async fn spawn_next(api: &RuntimeApi) -> tokio::task::JoinHandle<(Conn, common::HttpResponse)> {
    let mut conn = Conn::connect(api.local_addr()).await;
    tokio::spawn(async move {
        let r = conn.get(NEXT).await;
        (conn, r)
    })
}

#[tokio::test]
async fn init_is_ready_at_the_first_next_and_an_invocation_round_trips() {
    let api = serve();
    let init = {
        let api = api.clone();
        tokio::spawn(async move { api.init().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!init.is_finished(), "init must wait for the first next");

    let poll = spawn_next(&api).await;
    assert_eq!(within("init", init).await.unwrap(), InitOutcome::Ready);
    assert_eq!(within("init again", api.init()).await, InitOutcome::Ready);
    eventually("runtime parked in next", || api.is_idle()).await;

    let mut event = inv("req-1", r#"{"name":"é"}"#);
    event.trace_id = "Root=1-5e1b4151-5ac6c58f5b5dbd8a1e0e1d1c;Sampled=0".to_owned();
    event.client_context = Some("{\n \"custom\": {\"k\": \"v\"}\n}".to_owned());
    event.cognito_identity =
        Some(r#"{"cognitoIdentityId":"id","cognitoIdentityPoolId":"pool"}"#.to_owned());
    let invoke = spawn_invoke(&api, event);

    let (mut conn, r) = within("next", poll).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, r#"{"name":"é"}"#.as_bytes());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("req-1"));
    assert_eq!(
        r.header("lambda-runtime-deadline-ms"),
        Some("1700000000123")
    );
    assert_eq!(
        r.header("lambda-runtime-invoked-function-arn"),
        Some("arn:aws:lambda:us-east-1:000000000000:function:f")
    );
    assert_eq!(
        r.header("lambda-runtime-trace-id"),
        Some("Root=1-5e1b4151-5ac6c58f5b5dbd8a1e0e1d1c;Sampled=0")
    );
    let cc: serde_json::Value =
        serde_json::from_str(r.header("lambda-runtime-client-context").unwrap()).unwrap();
    assert_eq!(cc["custom"]["k"], "v");
    assert_eq!(
        r.header("lambda-runtime-cognito-identity"),
        Some(r#"{"cognitoIdentityId":"id","cognitoIdentityPoolId":"pool"}"#)
    );
    assert!(!api.is_idle());

    let r = conn.post(&response_path("req-1"), br#"{"ok":true}"#).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.json(), serde_json::json!({"status": "OK"}));
    assert_eq!(
        within("invoke", invoke).await.unwrap(),
        InvokeOutcome::Response(Bytes::from_static(br#"{"ok":true}"#))
    );

    // The same keep-alive connection serves the next round; optional
    // headers are absent when there is nothing to say.
    let invoke = spawn_invoke(&api, inv("req-2", "null"));
    let r = conn.get(NEXT).await;
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("req-2"));
    for absent in [
        "lambda-runtime-trace-id",
        "lambda-runtime-client-context",
        "lambda-runtime-cognito-identity",
    ] {
        assert_eq!(r.header(absent), None, "{absent}");
    }
    assert_eq!(conn.post(&response_path("req-2"), b"").await.status, 202);
    assert_eq!(
        within("invoke", invoke).await.unwrap(),
        InvokeOutcome::Response(Bytes::new())
    );
}

/// Hearth's extension: an answer sent with `Hearth-Then-Next: 1` is, once
/// accepted, the runtime's next `next` — its reply is the next invocation;
/// a refused answer is refused as without it.
#[tokio::test]
async fn an_answer_with_then_next_is_answered_with_the_next_invocation() {
    const THEN_NEXT: (&str, &str) = ("Hearth-Then-Next", "1");
    let api = serve();
    let poll = spawn_next(&api).await;
    let invoke = spawn_invoke(&api, inv("tn-1", "1"));
    let (mut conn, r) = within("next", poll).await.unwrap();
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("tn-1"));

    // A wrong id: refused at once, nothing parked.
    let r = conn
        .send("POST", &response_path("other"), &[THEN_NEXT], Some(b"{}"))
        .await;
    r.assert_error(400, "InvalidRequestID");

    // The answer reaches the invoker while its request waits for the next event.
    let answer = tokio::spawn(async move {
        let r = conn
            .send("POST", &response_path("tn-1"), &[THEN_NEXT], Some(b"[1]"))
            .await;
        (conn, r)
    });
    expect_response(invoke, b"[1]").await;
    eventually("runtime parked in next", || api.is_idle()).await;
    assert!(
        !answer.is_finished(),
        "the answer's reply waits for the next invocation"
    );
    let invoke = spawn_invoke(&api, inv("tn-2", "2"));
    let (mut conn, r) = within("answer", answer).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("tn-2"));
    assert_eq!(r.body, b"2");

    // An error answer, too; the one after it is a plain answer (202).
    let answer = tokio::spawn(async move {
        let r = conn
            .send(
                "POST",
                &error_path("tn-2"),
                &[
                    ("Lambda-Runtime-Function-Error-Type", "Unhandled"),
                    THEN_NEXT,
                ],
                Some(br#"{"errorMessage":"x"}"#),
            )
            .await;
        (conn, r)
    });
    assert_eq!(
        within("invoke", invoke).await.unwrap(),
        InvokeOutcome::FunctionError {
            body: Bytes::from_static(br#"{"errorMessage":"x"}"#),
            error_type: Some("Unhandled".to_owned()),
        }
    );
    let invoke = spawn_invoke(&api, inv("tn-3", "3"));
    let (mut conn, r) = within("answer", answer).await.unwrap();
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("tn-3"));
    assert_eq!(conn.post(&response_path("tn-3"), b"3").await.status, 202);
    expect_response(invoke, b"3").await;
}

/// The sandbox's Unix socket channel is served as one more connection to
/// the same endpoint.
#[tokio::test]
async fn the_channel_is_a_connection_to_the_same_endpoint() {
    let api = serve();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    api.serve_channel(ours).unwrap();
    theirs.set_nonblocking(true).unwrap();
    let mut conn = Conn::over(tokio::net::UnixStream::from_std(theirs).unwrap());
    let invoke = spawn_invoke(&api, inv("ch-1", r#"{"a":1}"#));
    let r = conn.get(NEXT).await;
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("ch-1"));
    assert_eq!(within("init", api.init()).await, InitOutcome::Ready);
    assert_eq!(conn.post(&response_path("ch-1"), b"ok").await.status, 202);
    expect_response(invoke, b"ok").await;
    api.shutdown();
    assert!(conn.is_closed_by_server().await);
}

#[tokio::test]
async fn an_invocation_made_before_the_runtime_polls_is_delivered_at_once() {
    let api = serve();
    let invoke = spawn_invoke(&api, inv("early", "[1,2]"));
    let a = spawn_invoke(&api, inv("second", "3"));
    let mut conn = Conn::connect(api.local_addr()).await;
    let r = conn.get(NEXT).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("early"));
    assert_eq!(r.body, b"[1,2]");
    assert_eq!(within("init", api.init()).await, InitOutcome::Ready);
    conn.post(&response_path("early"), b"1").await;
    expect_response(invoke, b"1").await;
    // Invocations queue in order.
    let r = conn.get(NEXT).await;
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("second"));
    conn.post(&response_path("second"), b"2").await;
    expect_response(a, b"2").await;
}

#[tokio::test]
async fn errors_are_passed_through_with_their_error_type() {
    let api = serve();
    let mut conn = Conn::connect(api.local_addr()).await;

    let invoke = spawn_invoke(&api, inv("e1", "{}"));
    conn.get(NEXT).await;
    let body =
        br#"{"errorMessage":"boom","errorType":"Exception","requestId":"e1","stackTrace":[]}"#;
    let r = conn
        .send(
            "POST",
            &error_path("e1"),
            &[("Lambda-Runtime-Function-Error-Type", "Unhandled")],
            Some(body),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.json(), serde_json::json!({"status": "OK"}));
    assert_eq!(
        within("invoke", invoke).await.unwrap(),
        InvokeOutcome::FunctionError {
            body: Bytes::from_static(body),
            error_type: Some("Unhandled".to_owned())
        }
    );

    // awslambdaric sends no error-type header, and the body may be anything.
    let invoke = spawn_invoke(&api, inv("e2", "{}"));
    conn.get(NEXT).await;
    assert_eq!(conn.post(&error_path("e2"), b"not json").await.status, 202);
    assert_eq!(
        within("invoke", invoke).await.unwrap(),
        InvokeOutcome::FunctionError {
            body: Bytes::from_static(b"not json"),
            error_type: None
        }
    );
}

#[tokio::test]
async fn wrong_ids_and_repeated_answers_are_refused() {
    let api = serve();
    let mut conn = Conn::connect(api.local_addr()).await;

    // An answer before any next: nothing is in progress.
    conn.post(&response_path("nope"), b"1")
        .await
        .assert_error(403, "InvalidStateTransition");
    conn.post(&error_path("nope"), b"1")
        .await
        .assert_error(403, "InvalidStateTransition");

    let invoke = spawn_invoke(&api, inv("right", "{}"));
    conn.get(NEXT).await;
    // Another id while one is in flight.
    let r = conn.post(&response_path("wrong"), b"1").await;
    r.assert_error(400, "InvalidRequestID");
    assert_eq!(r.json()["errorMessage"], "Invalid request ID");
    conn.post(&error_path("wrong"), b"1")
        .await
        .assert_error(400, "InvalidRequestID");
    // A next before answering.
    conn.get(NEXT)
        .await
        .assert_error(403, "InvalidStateTransition");

    assert_eq!(
        conn.post(&response_path("right"), b"\"first\"")
            .await
            .status,
        202
    );
    // A second answer, of either kind.
    conn.post(&response_path("right"), b"\"second\"")
        .await
        .assert_error(403, "InvalidStateTransition");
    conn.post(&error_path("right"), b"{}")
        .await
        .assert_error(403, "InvalidStateTransition");
    expect_response(invoke, b"\"first\"").await;
}

#[tokio::test]
async fn responses_over_6_mb_get_413_and_the_invoker_is_told() {
    let api = serve();
    let mut conn = Conn::connect(api.local_addr()).await;

    let invoke = spawn_invoke(&api, inv("big", "{}"));
    conn.get(NEXT).await;
    let too_big = vec![b'x'; RESPONSE_MAX_BYTES + 1];
    let r = conn.post(&response_path("big"), &too_big).await;
    r.assert_error(413, "RequestEntityTooLarge");
    assert_eq!(
        r.json()["errorMessage"],
        "Exceeded maximum allowed payload size (6291456 bytes)."
    );
    assert_eq!(
        within("invoke", invoke).await.unwrap(),
        InvokeOutcome::ResponseTooLarge {
            size: RESPONSE_MAX_BYTES + 1
        }
    );
    // The invocation is over.
    conn.post(&response_path("big"), b"1")
        .await
        .assert_error(403, "InvalidStateTransition");

    // Exactly the limit is fine, and the connection is still usable.
    let invoke = spawn_invoke(&api, inv("edge", "{}"));
    conn.get(NEXT).await;
    let edge = vec![b'y'; RESPONSE_MAX_BYTES];
    assert_eq!(conn.post(&response_path("edge"), &edge).await.status, 202);
    match within("invoke", invoke).await.unwrap() {
        InvokeOutcome::Response(b) => assert_eq!(b.len(), RESPONSE_MAX_BYTES),
        other => panic!("{other:?}"),
    }

    // Error bodies have the same limit.
    let invoke = spawn_invoke(&api, inv("bigerr", "{}"));
    conn.get(NEXT).await;
    conn.post(&error_path("bigerr"), &too_big)
        .await
        .assert_error(413, "RequestEntityTooLarge");
    assert!(matches!(
        within("invoke", invoke).await.unwrap(),
        InvokeOutcome::ResponseTooLarge { .. }
    ));
}

#[tokio::test]
async fn chunked_bodies_are_accepted() {
    let api = serve();
    let mut conn = Conn::connect(api.local_addr()).await;
    let invoke = spawn_invoke(&api, inv("c", "{}"));
    conn.get(NEXT).await;
    let r = conn
        .send_chunked(&response_path("c"), &[b"{\"a\":", b"[1,2,", b"3]}"])
        .await;
    assert_eq!(r.status, 202);
    expect_response(invoke, b"{\"a\":[1,2,3]}").await;

    // Over the limit in chunks, too.
    let invoke = spawn_invoke(&api, inv("c2", "{}"));
    conn.get(NEXT).await;
    let half = vec![b'z'; RESPONSE_MAX_BYTES / 2 + 1];
    conn.send_chunked(&response_path("c2"), &[&half, &half])
        .await
        .assert_error(413, "RequestEntityTooLarge");
    assert_eq!(
        within("invoke", invoke).await.unwrap(),
        InvokeOutcome::ResponseTooLarge {
            size: 2 * half.len()
        }
    );
}

#[tokio::test]
async fn init_error_is_accepted_once_before_the_first_next() {
    let api = serve();
    let mut conn = Conn::connect(api.local_addr()).await;
    let body = br#"{"errorMessage": "Unable to import module 'app': No module named 'app'", "errorType": "Runtime.ImportModuleError", "requestId": "", "stackTrace": []}"#;
    let r = conn
        .send(
            "POST",
            INIT_ERROR,
            &[(
                "Lambda-Runtime-Function-Error-Type",
                "Runtime.ImportModuleError",
            )],
            Some(body),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.json(), serde_json::json!({"status": "OK"}));
    assert_eq!(
        within("init", api.init()).await,
        InitOutcome::Failed {
            body: Bytes::from_static(body),
            error_type: Some("Runtime.ImportModuleError".to_owned())
        }
    );
    conn.post(INIT_ERROR, b"{}")
        .await
        .assert_error(403, "InvalidStateTransition");

    // After the first next it is too late.
    let api = serve();
    let mut conn = Conn::connect(api.local_addr()).await;
    let _invoke = spawn_invoke(&api, inv("x", "{}"));
    conn.get(NEXT).await;
    conn.post(INIT_ERROR, b"{}")
        .await
        .assert_error(403, "InvalidStateTransition");
    assert_eq!(within("init", api.init()).await, InitOutcome::Ready);
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let api = serve();
    let mut conn = Conn::connect(api.local_addr()).await;
    for path in [
        "/",
        "/2018-06-01/runtime/invocation",
        "/2018-06-01/runtime/invocation/abc/bogus",
        "/2018-06-01/runtime/invocation//response",
        "/2020-01-01/extension/register",
        "/2018-06-01/runtime/invocation/next/extra",
    ] {
        conn.get(path).await.assert_error(404, "NotFound");
    }
    let r = conn.post(NEXT, b"").await;
    r.assert_error(405, "MethodNotAllowed");
    assert_eq!(r.header("allow"), Some("GET"));
    let r = conn.get(&response_path("abc")).await;
    r.assert_error(405, "MethodNotAllowed");
    assert_eq!(r.header("allow"), Some("POST"));
    conn.send("PUT", &error_path("abc"), &[], Some(b"{}"))
        .await
        .assert_error(405, "MethodNotAllowed");
    conn.get(INIT_ERROR)
        .await
        .assert_error(405, "MethodNotAllowed");
    // None of that counted as the runtime's first next.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(tokio::time::timeout(Duration::from_millis(20), api.init())
        .await
        .is_err());
}

#[tokio::test]
async fn an_abandoned_invocation_is_never_answered_into_a_later_one() {
    let api = serve();
    let poll = spawn_next(&api).await;
    eventually("runtime parked", || api.is_idle()).await;

    // The invoker gives up (its timeout) while the runtime works on "slow".
    let gave_up =
        tokio::time::timeout(Duration::from_millis(100), api.invoke(inv("slow", "{}"))).await;
    assert!(gave_up.is_err());
    let (mut conn, r) = within("next", poll).await.unwrap();
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("slow"));

    // Its late answer is refused...
    conn.post(&response_path("slow"), b"\"late\"")
        .await
        .assert_error(403, "InvalidStateTransition");
    // ...and while a newer invocation is in flight, it is the wrong id.
    let invoke = spawn_invoke(&api, inv("fresh", "{}"));
    let r = conn.get(NEXT).await;
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("fresh"));
    conn.post(&response_path("slow"), b"\"late\"")
        .await
        .assert_error(400, "InvalidRequestID");
    conn.post(&error_path("slow"), b"{}")
        .await
        .assert_error(400, "InvalidRequestID");
    assert_eq!(
        conn.post(&response_path("fresh"), b"\"mine\"").await.status,
        202
    );
    expect_response(invoke, b"\"mine\"").await;
}

#[tokio::test]
async fn an_invocation_abandoned_while_queued_is_never_delivered() {
    let api = serve();
    let gave_up =
        tokio::time::timeout(Duration::from_millis(50), api.invoke(inv("gone", "{}"))).await;
    assert!(gave_up.is_err());
    let poll = spawn_next(&api).await;
    eventually("runtime parked", || api.is_idle()).await;
    assert!(!poll.is_finished());
    let invoke = spawn_invoke(&api, inv("kept", "{}"));
    let (mut conn, r) = within("next", poll).await.unwrap();
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("kept"));
    conn.post(&response_path("kept"), b"1").await;
    assert!(matches!(
        within("invoke", invoke).await.unwrap(),
        InvokeOutcome::Response(_)
    ));
}

#[tokio::test]
async fn a_newer_next_supersedes_an_older_one() {
    let api = serve();
    let older = spawn_next(&api).await;
    eventually("first poll parked", || api.is_idle()).await;
    let newer = spawn_next(&api).await;
    let (_, r) = within("older poll answered", older).await.unwrap();
    r.assert_error(403, "InvalidStateTransition");
    assert!(r.json()["errorMessage"]
        .as_str()
        .unwrap()
        .contains("superseded"));

    eventually("second poll parked", || api.is_idle()).await;
    let invoke = spawn_invoke(&api, inv("n", "{}"));
    let (mut conn, r) = within("newer poll", newer).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("n"));
    conn.post(&response_path("n"), b"1").await;
    assert!(matches!(
        within("invoke", invoke).await.unwrap(),
        InvokeOutcome::Response(_)
    ));
}

#[tokio::test]
async fn a_poll_whose_connection_died_does_not_lose_the_event() {
    let api = serve();
    let mut dead = Conn::connect(api.local_addr()).await;
    dead.write_raw(format!("GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await;
    eventually("dead poll parked", || api.is_idle()).await;
    drop(dead);
    // hyper notices the closed socket and drops the parked request.
    eventually("dead poll noticed", || !api.is_idle()).await;
    let invoke = spawn_invoke(&api, inv("kept", "{}"));
    let mut conn = Conn::connect(api.local_addr()).await;
    let r = conn.get(NEXT).await;
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("kept"));
    conn.post(&response_path("kept"), b"1").await;
    assert!(matches!(
        within("invoke", invoke).await.unwrap(),
        InvokeOutcome::Response(_)
    ));
}

#[tokio::test]
async fn shutdown_fails_waiters_and_closes_connections() {
    let api = serve();
    let addr = api.local_addr();
    let init = {
        let api = api.clone();
        tokio::spawn(async move { api.init().await })
    };
    let queued = spawn_invoke(&api, inv("q", "{}"));
    let mut idle = Conn::connect(addr).await;
    // A request proves the connection is being served before shutdown.
    idle.get("/nowhere").await.assert_error(404, "NotFound");
    tokio::time::sleep(Duration::from_millis(20)).await;

    api.shutdown();
    assert_eq!(within("init", init).await.unwrap(), InitOutcome::Closed);
    assert_eq!(
        within("invoke", queued).await.unwrap(),
        InvokeOutcome::Closed
    );
    assert_eq!(
        within("invoke after", api.invoke(inv("z", "{}"))).await,
        InvokeOutcome::Closed
    );
    assert!(idle.is_closed_by_server().await);
    within("listener closed", async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    api.shutdown(); // idempotent
}

#[tokio::test]
async fn an_in_flight_invocation_gets_closed_at_shutdown_and_parked_polls_are_dropped() {
    let api = serve();
    let mut conn = Conn::connect(api.local_addr()).await;
    let invoke = spawn_invoke(&api, inv("a", "{}"));
    conn.get(NEXT).await;
    api.shutdown();
    assert_eq!(
        within("invoke", invoke).await.unwrap(),
        InvokeOutcome::Closed
    );
    assert!(conn.is_closed_by_server().await);

    let api = serve();
    let mut parked = Conn::connect(api.local_addr()).await;
    parked
        .write_raw(format!("GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await;
    eventually("poll parked", || api.is_idle()).await;
    api.shutdown();
    assert!(
        parked.is_closed_by_server().await,
        "closed without an answer"
    );
}

#[tokio::test]
async fn dropping_the_last_handle_shuts_the_endpoint_down() {
    let api = serve();
    let addr = api.local_addr();
    let clone = api.clone();
    drop(api);
    let mut conn = Conn::connect(addr).await;
    conn.get("/x").await.assert_error(404, "NotFound");
    drop(clone);
    assert!(conn.is_closed_by_server().await);
}

#[test]
fn serve_outside_a_tokio_runtime_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let e = RuntimeApi::serve(listener).unwrap_err();
    assert!(e.to_string().contains("tokio"), "{e}");
}

// ------------------------------------------------------------ runtime-warm

fn assignment(handler: &str) -> Assignment {
    Assignment::new(
        handler,
        vec![
            ("_HANDLER".to_owned(), handler.to_owned()),
            ("AWS_LAMBDA_FUNCTION_NAME".to_owned(), "f".to_owned()),
            ("TEST_KEY".to_owned(), "TEST_VAL \"quoted\" é".to_owned()),
        ],
    )
}

fn assert_assignment(r: &common::HttpResponse, handler: &str) {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        serde_json::json!({
            "handler": handler,
            "env": {
                "_HANDLER": handler,
                "AWS_LAMBDA_FUNCTION_NAME": "f",
                "TEST_KEY": "TEST_VAL \"quoted\" é",
            },
        })
    );
}

/// Starts an assignment long poll on its own connection in the background.
async fn spawn_assignment_poll(
    api: &RuntimeApi,
) -> tokio::task::JoinHandle<(Conn, common::HttpResponse)> {
    let mut conn = Conn::connect(api.local_addr()).await;
    tokio::spawn(async move {
        let r = conn.get(ASSIGNMENT).await;
        (conn, r)
    })
}

fn spawn_ready(api: &RuntimeApi) -> tokio::task::JoinHandle<RuntimeReady> {
    let api = api.clone();
    tokio::spawn(async move { api.runtime_ready().await })
}

fn spawn_init(api: &RuntimeApi) -> tokio::task::JoinHandle<InitOutcome> {
    let api = api.clone();
    tokio::spawn(async move { api.init().await })
}

#[tokio::test]
async fn a_runtime_warm_runtime_parks_for_its_assignment_then_starts() {
    let api = serve();
    let ready = spawn_ready(&api);
    let init = spawn_init(&api);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!ready.is_finished(), "runtime_ready waits for the poll");
    assert!(!api.is_awaiting_assignment());

    let poll = spawn_assignment_poll(&api).await;
    assert_eq!(within("ready", ready).await.unwrap(), RuntimeReady::Ready);
    assert_eq!(
        within("ready again", api.runtime_ready()).await,
        RuntimeReady::Ready
    );
    eventually("poll parked", || api.is_awaiting_assignment()).await;

    // Before the assignment the runtime may not start its init.
    let mut other = Conn::connect(api.local_addr()).await;
    let r = other.get(NEXT).await;
    r.assert_error(403, "InvalidStateTransition");
    assert!(r.json()["errorMessage"]
        .as_str()
        .unwrap()
        .contains("assignment"));
    other
        .post(INIT_ERROR, b"{}")
        .await
        .assert_error(403, "InvalidStateTransition");
    assert!(!init.is_finished(), "init waits for the assigned runtime");
    assert!(
        api.is_awaiting_assignment(),
        "refusals leave the poll parked"
    );

    api.assign(assignment("app.handler")).unwrap();
    let (mut conn, r) = within("assignment", poll).await.unwrap();
    assert_assignment(&r, "app.handler");
    assert!(!api.is_awaiting_assignment());
    assert_eq!(
        api.assign(assignment("other.handler")),
        Err(AssignError::AlreadyAssigned)
    );
    // A repeated poll (a retried connection) gets the same assignment.
    assert_assignment(&other.get(ASSIGNMENT).await, "app.handler");

    // Then the usual flow, on the same keep-alive connection.
    let next = tokio::spawn(async move {
        let r = conn.get(NEXT).await;
        (conn, r)
    });
    assert_eq!(within("init", init).await.unwrap(), InitOutcome::Ready);
    eventually("next parked", || api.is_idle()).await;
    let invoke = spawn_invoke(&api, inv("w1", "{}"));
    let (mut conn, r) = within("next", next).await.unwrap();
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("w1"));
    conn.post(&response_path("w1"), b"\"ok\"").await;
    expect_response(invoke, b"\"ok\"").await;
    // Once init has started, the assignment endpoint is closed to it.
    other
        .get(ASSIGNMENT)
        .await
        .assert_error(403, "InvalidStateTransition");
    assert_eq!(
        api.assign(assignment("other.handler")),
        Err(AssignError::AlreadyAssigned)
    );
}

#[tokio::test]
async fn an_assignment_given_before_the_poll_is_answered_at_once() {
    let api = serve();
    api.assign(assignment("early.handler")).unwrap();
    assert_eq!(
        api.assign(assignment("early.handler")),
        Err(AssignError::AlreadyAssigned)
    );
    let ready = spawn_ready(&api);
    let mut conn = Conn::connect(api.local_addr()).await;
    // The assigned runtime must collect its assignment before it starts.
    conn.get(NEXT)
        .await
        .assert_error(403, "InvalidStateTransition");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!ready.is_finished());

    assert_assignment(&conn.get(ASSIGNMENT).await, "early.handler");
    assert_eq!(within("ready", ready).await.unwrap(), RuntimeReady::Ready);
    assert!(!api.is_awaiting_assignment());
    // An init failure after the assignment is an init failure.
    assert_eq!(
        conn.post(INIT_ERROR, b"{\"errorType\":\"x\"}").await.status,
        202
    );
    assert!(matches!(
        within("init", api.init()).await,
        InitOutcome::Failed { .. }
    ));
}

#[tokio::test]
async fn a_runtime_that_never_asks_is_not_runtime_warm() {
    // `next` first: an official client, or a bootstrap in its normal mode.
    let api = serve();
    let ready = spawn_ready(&api);
    let poll = spawn_next(&api).await;
    assert_eq!(
        within("ready", ready).await.unwrap(),
        RuntimeReady::InitStarted
    );
    assert_eq!(within("init", api.init()).await, InitOutcome::Ready);
    assert_eq!(
        api.assign(assignment("app.handler")),
        Err(AssignError::InitStarted)
    );
    let mut conn = Conn::connect(api.local_addr()).await;
    conn.get(ASSIGNMENT)
        .await
        .assert_error(403, "InvalidStateTransition");
    // The invocation flow is untouched.
    let invoke = spawn_invoke(&api, inv("p", "{}"));
    let (mut conn, r) = within("next", poll).await.unwrap();
    assert_eq!(r.status, 200);
    conn.post(&response_path("p"), b"1").await;
    assert!(matches!(
        within("invoke", invoke).await.unwrap(),
        InvokeOutcome::Response(_)
    ));

    // `init/error` first.
    let api = serve();
    let mut conn = Conn::connect(api.local_addr()).await;
    assert_eq!(conn.post(INIT_ERROR, b"{}").await.status, 202);
    assert_eq!(
        within("ready", api.runtime_ready()).await,
        RuntimeReady::InitStarted
    );
    assert_eq!(
        api.assign(assignment("app.handler")),
        Err(AssignError::InitStarted)
    );
    conn.get(ASSIGNMENT)
        .await
        .assert_error(403, "InvalidStateTransition");
}

#[tokio::test]
async fn a_newer_assignment_poll_supersedes_an_older_one() {
    let api = serve();
    let older = spawn_assignment_poll(&api).await;
    eventually("first poll parked", || api.is_awaiting_assignment()).await;
    let newer = spawn_assignment_poll(&api).await;
    let (_, r) = within("older poll answered", older).await.unwrap();
    r.assert_error(403, "InvalidStateTransition");
    assert!(r.json()["errorMessage"]
        .as_str()
        .unwrap()
        .contains("superseded"));
    eventually("second poll parked", || api.is_awaiting_assignment()).await;
    api.assign(assignment("app.handler")).unwrap();
    let (_, r) = within("newer poll", newer).await.unwrap();
    assert_assignment(&r, "app.handler");
}

#[tokio::test]
async fn an_assignment_whose_poll_died_waits_for_the_next_poll() {
    let api = serve();
    let mut dead = Conn::connect(api.local_addr()).await;
    dead.write_raw(format!("GET {ASSIGNMENT} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await;
    eventually("dead poll parked", || api.is_awaiting_assignment()).await;
    drop(dead);
    // hyper notices the closed socket and drops the parked request.
    eventually("dead poll noticed", || !api.is_awaiting_assignment()).await;
    api.assign(assignment("app.handler")).unwrap();
    let mut conn = Conn::connect(api.local_addr()).await;
    conn.get(NEXT)
        .await
        .assert_error(403, "InvalidStateTransition");
    assert_assignment(&conn.get(ASSIGNMENT).await, "app.handler");
    conn.write_raw(format!("GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await;
    assert_eq!(within("init", api.init()).await, InitOutcome::Ready);
}

#[tokio::test]
async fn the_assignment_endpoint_is_get_only_and_shuts_down() {
    let api = serve();
    let mut conn = Conn::connect(api.local_addr()).await;
    let r = conn.post(ASSIGNMENT, b"{}").await;
    r.assert_error(405, "MethodNotAllowed");
    assert_eq!(r.header("allow"), Some("GET"));
    conn.get("/2018-06-01/runtime/hearth/other")
        .await
        .assert_error(404, "NotFound");

    let ready = spawn_ready(&api);
    let mut parked = Conn::connect(api.local_addr()).await;
    parked
        .write_raw(format!("GET {ASSIGNMENT} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await;
    assert_eq!(within("ready", ready).await.unwrap(), RuntimeReady::Ready);
    eventually("poll parked", || api.is_awaiting_assignment()).await;
    api.shutdown();
    assert_eq!(api.assign(assignment("a.b")), Err(AssignError::Closed));
    assert!(!api.is_awaiting_assignment());
    assert!(
        parked.is_closed_by_server().await,
        "closed without an answer"
    );

    let api = serve();
    let ready = spawn_ready(&api);
    api.shutdown();
    assert_eq!(within("ready", ready).await.unwrap(), RuntimeReady::Closed);
    assert_eq!(
        within("ready after", api.runtime_ready()).await,
        RuntimeReady::Closed
    );
}
