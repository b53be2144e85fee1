#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! In-process tests of the whole router (no socket): every control-plane
//! operation's success and error paths, signed exactly as an SDK signs.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use hearth_api::{app, ApiSettings, AppState, Services};
use hearth_exec::events::{Events, EventsConfig};
use hearth_exec::{ExecConfig, Executor};
use hearth_runtime::RuntimeCatalog;
use hearth_sandbox::{Protections, Sandbox, SandboxBackend, SandboxError, SandboxSpec};
use hearth_store::{CodeStore, LogStore, Registry, SqliteEventQueue, SqliteRegistry};
use hearth_types::arn::NodeIdentity;
use hearth_types::function::{AccessKey, Account};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;
use tower::ServiceExt;

/// A backend that cannot isolate anything: the router tests exercise the
/// API's own checks, and real sandboxes are covered end to end.
#[derive(Debug)]
struct NoSandboxes;

impl SandboxBackend for NoSandboxes {
    fn start(&self, _: &SandboxSpec) -> Result<Sandbox, SandboxError> {
        Err(SandboxError::Unsupported(
            "no sandboxes in router tests".into(),
        ))
    }
    fn protections(&self) -> Protections {
        Protections {
            warnings: vec!["router tests run no sandboxes".into()],
            ..Protections::default()
        }
    }
    fn reap_leftovers(&self) -> Result<usize, SandboxError> {
        Ok(0)
    }
}

struct Node {
    app: axum::Router,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    error_type: Option<String>,
    body: Value,
}

async fn node() -> Node {
    node_with(ApiSettings::default()).await
}

async fn node_with(settings: ApiSettings) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeIdentity::new("us-east-1");
    let registry = Arc::new(SqliteRegistry::open_in_memory(node.clone()).unwrap());
    for (id, key, admin) in [
        ("000000000000", "test", true),
        ("111111111111", "other", false),
    ] {
        registry
            .ensure_account(
                &Account {
                    id: id.into(),
                    name: key.into(),
                    admin,
                    created_ms: 0,
                },
                &AccessKey {
                    account_id: id.into(),
                    access_key_id: key.into(),
                    secret_access_key: format!("{key}-secret"),
                },
            )
            .unwrap();
    }
    let code = Arc::new(CodeStore::open(&dir.path().join("code")).unwrap());
    // /bin/sh stands in for every interpreter: the control plane only needs one to exist.
    let rules = BTreeMap::from([
        ("python3.*".to_owned(), "/bin/sh".to_owned()),
        ("nodejs*".to_owned(), "/bin/sh".to_owned()),
        ("python3.8".to_owned(), "/nonexistent/python3.8".to_owned()),
    ]);
    let runtimes = RuntimeCatalog::new(&rules, None);
    let logs = Arc::new(LogStore::open_in_memory(100).unwrap());
    let usage = Arc::new(hearth_store::UsageStore::open_in_memory().unwrap());
    let executor = Executor::start(
        Arc::new(NoSandboxes),
        hearth_exec::ExecStores {
            registry: registry.clone(),
            code: code.clone(),
            logs: logs.clone(),
            usage: usage.clone(),
        },
        runtimes.clone(),
        node.clone(),
        ExecConfig::new(dir.path().join("runtime")),
    );
    let queue = Arc::new(SqliteEventQueue::open(&dir.path().join("events.sqlite")).unwrap());
    let sqs = Arc::new(hearth_exec::sqs::SqsHub::new(Arc::new(
        hearth_store::SqsStore::open_in_memory().unwrap(),
    )));
    let events = Events::start(
        executor.clone(),
        queue,
        registry.clone(),
        node.clone(),
        EventsConfig::default(),
        sqs.clone(),
    )
    .unwrap();
    let mappings =
        hearth_exec::esm::Mappings::start(executor.clone(), sqs.clone(), node.clone()).unwrap();
    let state = AppState::start(
        registry,
        code,
        node,
        runtimes,
        settings,
        Services {
            executor,
            events,
            logs,
            usage,
            mappings,
            sqs,
        },
    )
    .unwrap();
    Node {
        app: app(state),
        _dir: dir,
    }
}

impl Node {
    async fn call_as(
        &self,
        key: &str,
        secret: &str,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> Reply {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        let url = format!("http://127.0.0.1:9000{uri}");
        let headers = [
            ("host", "127.0.0.1:9000"),
            ("content-type", "application/json"),
        ];
        let identity = Credentials::from_keys(key, secret, None).into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("lambda")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            method,
            &url,
            headers.into_iter(),
            SignableBody::Bytes(&bytes),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let mut req = req.body(Body::from(bytes)).unwrap();
        instructions.apply_to_request_http1x(&mut req);
        self.send(req).await
    }

    /// A query-protocol request (`Action=…`, form-encoded) signed for
    /// `service`: the status and the XML.
    async fn query_as(&self, key: &str, secret: &str, service: &str, form: &str) -> (u16, String) {
        let headers = [
            ("host", "127.0.0.1:9000"),
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
        ];
        let identity = Credentials::from_keys(key, secret, None).into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            "POST",
            "http://127.0.0.1:9000/",
            headers.into_iter(),
            SignableBody::Bytes(form.as_bytes()),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut req = Request::builder().method("POST").uri("/");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let mut req = req.body(Body::from(form.to_owned())).unwrap();
        instructions.apply_to_request_http1x(&mut req);
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let b = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(b.to_vec()).unwrap())
    }

    /// An IAM request as the dev account.
    async fn iam(&self, form: &str) -> (u16, String) {
        self.query_as("test", "test-secret", "iam", form).await
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        assert!(resp.headers().contains_key("x-amzn-requestid"));
        let error_type = resp
            .headers()
            .get("x-amzn-errortype")
            .map(|v| v.to_str().unwrap().to_owned());
        let b = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if b.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&b).unwrap()
        };
        Reply {
            status,
            error_type,
            body,
        }
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        self.call_as("test", "test-secret", method, uri, body).await
    }

    async fn create(&self, name: &str, extra: Value) -> Reply {
        let mut body = json!({
            "FunctionName": name,
            "Runtime": "python3.11",
            "Handler": "app.handler",
            "Role": "arn:aws:iam::000000000000:role/x",
            "Code": {"ZipFile": b64(&zip_of(&[("app.py", "def handler(e, c):\n    return e\n")]))},
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        self.call("POST", "/2015-03-31/functions", Some(body)).await
    }

    /// Polls (bounded) until `$LATEST` is Active and its update Successful.
    async fn wait_active(&self, name: &str) -> Value {
        for _ in 0..200 {
            let r = self
                .call(
                    "GET",
                    &format!("/2015-03-31/functions/{name}/configuration"),
                    None,
                )
                .await;
            if r.body["State"] == "Active" && r.body["LastUpdateStatus"] == "Successful" {
                return r.body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{name} never became Active");
    }
}

fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, content) in files {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(content.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{:?}", r.body);
    assert_eq!(r.error_type.as_deref(), Some(code), "{:?}", r.body);
    let msg = r.body.get("message").or_else(|| r.body.get("Message"));
    assert!(
        msg.and_then(Value::as_str).is_some_and(|m| !m.is_empty()),
        "{:?}",
        r.body
    );
}

#[tokio::test]
async fn function_lifecycle() {
    let n = node().await;
    let r = n
        .create("hello", json!({"MemorySize": 256, "Timeout": 5}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["State"], "Pending");
    assert_eq!(r.body["StateReasonCode"], "Creating");
    assert_eq!(r.body["Version"], "$LATEST");
    assert_eq!(
        r.body["FunctionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:hello"
    );
    assert_eq!(r.body["MemorySize"], 256);
    assert_eq!(r.body["PackageType"], "Zip");
    let active = n.wait_active("hello").await;
    assert_ne!(active["RevisionId"], r.body["RevisionId"]);

    let g = n.call("GET", "/2015-03-31/functions/hello", None).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.body["Code"]["RepositoryType"], "S3");
    // The code location serves the zip without credentials.
    let loc = g.body["Code"]["Location"].as_str().unwrap();
    let path = loc.strip_prefix("http://127.0.0.1:9000").unwrap();
    let resp = n
        .app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Change the token's last hex digit to a different one.
    let last = if path.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{}{last}", &path[..path.len() - 1]);
    let bad = n
        .send(Request::get(tampered).body(Body::empty()).unwrap())
        .await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);

    let u = n
        .call(
            "PUT",
            "/2015-03-31/functions/hello/configuration",
            Some(json!({"Description": "d", "Environment": {"Variables": {"A": "1"}}, "Timeout": 10})),
        )
        .await;
    assert_eq!(u.status, StatusCode::OK, "{:?}", u.body);
    assert_eq!(u.body["LastUpdateStatus"], "InProgress");
    assert_eq!(u.body["Environment"]["Variables"]["A"], "1");
    n.wait_active("hello").await;

    let new_zip = zip_of(&[("app.py", "def handler(e, c):\n    return 2\n")]);
    let c = n
        .call(
            "PUT",
            "/2015-03-31/functions/hello/code",
            Some(json!({"ZipFile": b64(&new_zip)})),
        )
        .await;
    assert_eq!(c.status, StatusCode::OK);
    assert_ne!(c.body["CodeSha256"], r.body["CodeSha256"]);
    n.wait_active("hello").await;

    let d = n.call("DELETE", "/2015-03-31/functions/hello", None).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    let g = n.call("GET", "/2015-03-31/functions/hello", None).await;
    assert_error(&g, 404, "ResourceNotFoundException");
    assert_eq!(
        g.body["Message"],
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:hello"
    );
}

#[tokio::test]
async fn create_errors_store_nothing() {
    let n = node().await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"FunctionName": "bad!name"}),
            400,
            "ValidationException",
        ),
        (
            json!({"FunctionName": "x".repeat(65)}),
            400,
            "InvalidParameterValueException",
        ),
        (json!({"MemorySize": 64}), 400, "ValidationException"),
        (json!({"MemorySize": 20000}), 400, "ValidationException"),
        (json!({"Timeout": 0}), 400, "ValidationException"),
        (json!({"Timeout": 901}), 400, "ValidationException"),
        (
            json!({"Runtime": "java21"}),
            400,
            "InvalidParameterValueException",
        ),
        (
            json!({"Runtime": "python3.8"}),
            400,
            "InvalidParameterValueException",
        ),
        (json!({"Role": "r1"}), 400, "ValidationException"),
        (
            json!({"Environment": {"Variables": {"BIG": "x".repeat(5000)}}}),
            400,
            "InvalidParameterValueException",
        ),
        (
            json!({"Code": {"ZipFile": "not base64!!"}}),
            400,
            "InvalidRequestContentException",
        ),
        (
            json!({"Code": {"ZipFile": b64(b"plain text")}}),
            400,
            "InvalidParameterValueException",
        ),
        (
            json!({"Code": {"ZipFile": b64(&zip_of(&[("other.py", "")]))}}),
            400,
            "InvalidParameterValueException",
        ),
        (
            json!({"Code": {"ZipFile": b64(&zip_of(&[("../app.py", "")]))}}),
            400,
            "InvalidParameterValueException",
        ),
        (
            json!({"Code": {"S3Bucket": "b", "S3Key": "k"}}),
            400,
            "InvalidParameterValueException",
        ),
        (
            json!({"Handler": null}),
            400,
            "InvalidParameterValueException",
        ),
    ];
    for (i, (extra, status, code)) in cases.into_iter().enumerate() {
        let name = format!("bad{i}");
        let mut extra = extra;
        if extra.get("FunctionName").is_none() {
            extra["FunctionName"] = json!(name);
        }
        let r = n.create(&name, extra.clone()).await;
        assert_error(&r, status, code);
        let _ = extra;
    }
    let l = n.call("GET", "/2015-03-31/functions/", None).await;
    assert_eq!(
        l.body["Functions"],
        json!([]),
        "a refused create stored something"
    );
    let bad_json = n
        .send(
            Request::post("/2015-03-31/functions")
                .header("content-type", "application/json")
                .body(Body::from("{"))
                .unwrap(),
        )
        .await;
    // Unsigned: refused before parsing.
    assert_error(&bad_json, 403, "MissingAuthenticationTokenException");
    let dup = n.create("dup", json!({})).await;
    assert_eq!(dup.status, StatusCode::CREATED);
    let dup2 = n.create("dup", json!({})).await;
    assert_error(&dup2, 409, "ResourceConflictException");
}

#[tokio::test]
async fn malformed_json_and_unknown_paths() {
    let n = node().await;
    // Signed request whose body is not JSON.
    let url = "/2015-03-31/functions";
    let r = {
        let bytes = b"{not json".to_vec();
        let identity = Credentials::from_keys("test", "test-secret", None).into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("lambda")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let full = format!("http://127.0.0.1:9000{url}");
        let signable = SignableRequest::new(
            "POST",
            &full,
            [("host", "127.0.0.1:9000")].into_iter(),
            SignableBody::Bytes(&bytes),
        )
        .unwrap();
        let (ins, _) = sign(signable, &params).unwrap().into_parts();
        let mut req = Request::post(url)
            .header("host", "127.0.0.1:9000")
            .body(Body::from(bytes))
            .unwrap();
        ins.apply_to_request_http1x(&mut req);
        n.send(req).await
    };
    assert_error(&r, 400, "InvalidRequestContentException");
    let r = n.call("GET", "/2015-03-31/nothing-here", None).await;
    assert_error(&r, 404, "UnknownOperationException");
    let r = n.call("PATCH", "/2015-03-31/functions/x", None).await;
    assert_error(&r, 405, "MethodNotAllowedException");
}

#[tokio::test]
async fn authentication() {
    let n = node().await;
    let r = n
        .call_as("test", "wrong", "GET", "/2015-03-31/functions/", None)
        .await;
    assert_error(&r, 403, "InvalidSignatureException");
    let r = n
        .call_as("nobody", "x", "GET", "/2015-03-31/functions/", None)
        .await;
    assert_error(&r, 403, "UnrecognizedClientException");
    let r = n
        .send(
            Request::get("/2015-03-31/functions/")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_error(&r, 403, "MissingAuthenticationTokenException");
    let r = n
        .send(
            Request::get("/hearth/v1/health")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn accounts_are_isolated_and_admin_only() {
    let n = node().await;
    assert_eq!(
        n.create("mine", json!({})).await.status,
        StatusCode::CREATED
    );
    let other = |m: &'static str, u: String, b: Option<Value>| {
        let n = &n;
        async move { n.call_as("other", "other-secret", m, &u, b).await }
    };
    let r = other("GET", "/2015-03-31/functions/mine".into(), None).await;
    assert_error(&r, 404, "ResourceNotFoundException");
    let arn = "arn:aws:lambda:us-east-1:000000000000:function:mine";
    let r = other(
        "GET",
        format!("/2015-03-31/functions/{}", arn.replace(':', "%3A")),
        None,
    )
    .await;
    assert_error(&r, 404, "ResourceNotFoundException");
    let r = other("DELETE", "/2015-03-31/functions/mine".into(), None).await;
    assert_error(&r, 404, "ResourceNotFoundException");
    let r = other("GET", "/2015-03-31/functions/".into(), None).await;
    assert_eq!(r.body["Functions"], json!([]));
    let r = other("GET", "/hearth/v1/accounts".into(), None).await;
    assert_error(&r, 403, "AccessDeniedException");
    let r = n
        .call(
            "POST",
            "/hearth/v1/accounts",
            Some(json!({"Name": "team-a"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let (id, key, secret) = (
        r.body["AccountId"].as_str().unwrap().to_owned(),
        r.body["AccessKeyId"].as_str().unwrap().to_owned(),
        r.body["SecretAccessKey"].as_str().unwrap().to_owned(),
    );
    assert_eq!(id.len(), 12);
    let r = n
        .call_as(&key, &secret, "GET", "/2015-03-31/functions/", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = n.call("GET", "/hearth/v1/accounts", None).await;
    assert_eq!(r.body["Accounts"].as_array().unwrap().len(), 3);
    let r = n
        .call("DELETE", &format!("/hearth/v1/accounts/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = n
        .call_as(&key, &secret, "GET", "/2015-03-31/functions/", None)
        .await;
    assert_error(&r, 403, "UnrecognizedClientException");
}

#[tokio::test]
async fn names_resolve_from_arns_and_qualifiers() {
    let n = node().await;
    n.create("res", json!({"Publish": true})).await;
    for name in [
        "res",
        "res:1",
        "000000000000:function:res",
        "arn:aws:lambda:us-east-1:000000000000:function:res",
        "arn:aws:lambda:us-east-1:000000000000:function:res:$LATEST",
    ] {
        let enc = name.replace(':', "%3A").replace('$', "%24");
        let r = n
            .call(
                "GET",
                &format!("/2015-03-31/functions/{enc}/configuration"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {:?}", r.body);
        assert_eq!(r.body["FunctionName"], "res");
    }
    let r = n
        .call(
            "GET",
            "/2015-03-31/functions/res%3A1/configuration?Qualifier=2",
            None,
        )
        .await;
    assert_error(&r, 400, "InvalidParameterValueException");
    let r = n
        .call("GET", "/2015-03-31/functions/res%3A7/configuration", None)
        .await;
    assert_error(&r, 404, "ResourceNotFoundException");
    let r = n.call("GET", "/2015-03-31/functions/arn%3Aaws%3Aec2%3Aus-east-1%3A000000000000%3Ainstance%3Ai/configuration", None).await;
    assert_error(&r, 400, "ValidationException");
}

#[tokio::test]
async fn list_pagination() {
    let n = node().await;
    for i in 0..7 {
        assert_eq!(
            n.create(&format!("f{i}"), json!({})).await.status,
            StatusCode::CREATED
        );
    }
    let mut seen = Vec::new();
    let mut uri = "/2015-03-31/functions/?MaxItems=3".to_owned();
    for _ in 0..10 {
        let r = n.call("GET", &uri, None).await;
        assert_eq!(r.status, StatusCode::OK);
        let page = r.body["Functions"].as_array().unwrap();
        assert!(page.len() <= 3);
        seen.extend(
            page.iter()
                .map(|f| f["FunctionName"].as_str().unwrap().to_owned()),
        );
        match r.body["NextMarker"].as_str() {
            Some(m) => {
                let enc: String = m
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                uri = format!("/2015-03-31/functions/?MaxItems=3&Marker={enc}");
            }
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("f{i}")).collect::<Vec<_>>());
    let r = n
        .call("GET", "/2015-03-31/functions/?MaxItems=0", None)
        .await;
    assert_error(&r, 400, "ValidationException");
}

#[tokio::test]
async fn versions_aliases_and_preconditions() {
    let n = node().await;
    n.create("v", json!({})).await;
    let latest = n.wait_active("v").await;
    let p1 = n
        .call("POST", "/2015-03-31/functions/v/versions", Some(json!({})))
        .await;
    assert_eq!(p1.status, StatusCode::CREATED, "{:?}", p1.body);
    assert_eq!(p1.body["Version"], "1");
    assert_eq!(
        p1.body["FunctionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:v:1"
    );
    let again = n
        .call("POST", "/2015-03-31/functions/v/versions", Some(json!({})))
        .await;
    assert_eq!(
        again.body["Version"], "1",
        "publishing an unchanged $LATEST is idempotent"
    );
    let r = n
        .call(
            "POST",
            "/2015-03-31/functions/v/versions",
            Some(json!({"CodeSha256": "nope"})),
        )
        .await;
    assert_error(&r, 400, "InvalidParameterValueException");
    let r = n
        .call(
            "POST",
            "/2015-03-31/functions/v/versions",
            Some(json!({"RevisionId": "nope"})),
        )
        .await;
    assert_error(&r, 412, "PreconditionFailedException");
    n.call(
        "PUT",
        "/2015-03-31/functions/v/configuration",
        Some(json!({"Description": "two"})),
    )
    .await;
    let cur = n.wait_active("v").await;
    assert_ne!(cur["RevisionId"], latest["RevisionId"]);
    let p2 = n
        .call(
            "POST",
            "/2015-03-31/functions/v/versions",
            Some(json!({"CodeSha256": cur["CodeSha256"], "RevisionId": cur["RevisionId"]})),
        )
        .await;
    assert_eq!(p2.body["Version"], "2", "{:?}", p2.body);
    let lv = n
        .call("GET", "/2015-03-31/functions/v/versions", None)
        .await;
    let versions: Vec<&str> = lv.body["Versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["$LATEST", "1", "2"]);

    let a = n
        .call(
            "POST",
            "/2015-03-31/functions/v/aliases",
            Some(json!({"Name": "prod", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.25}}})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(
        a.body["AliasArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:v:prod"
    );
    assert_eq!(
        a.body["RoutingConfig"]["AdditionalVersionWeights"]["2"],
        0.25
    );
    let dup = n
        .call(
            "POST",
            "/2015-03-31/functions/v/aliases",
            Some(json!({"Name": "prod", "FunctionVersion": "1"})),
        )
        .await;
    assert_error(&dup, 409, "ResourceConflictException");
    let missing = n
        .call(
            "POST",
            "/2015-03-31/functions/v/aliases",
            Some(json!({"Name": "x", "FunctionVersion": "9"})),
        )
        .await;
    assert_error(&missing, 404, "ResourceNotFoundException");
    let via_alias = n
        .call(
            "GET",
            "/2015-03-31/functions/v/configuration?Qualifier=prod",
            None,
        )
        .await;
    assert_eq!(via_alias.body["Version"], "1");
    let u = n
        .call(
            "PUT",
            "/2015-03-31/functions/v/aliases/prod",
            Some(json!({"FunctionVersion": "2", "RevisionId": "stale"})),
        )
        .await;
    assert_error(&u, 412, "PreconditionFailedException");
    let u = n
        .call(
            "PUT",
            "/2015-03-31/functions/v/aliases/prod",
            Some(
                json!({"FunctionVersion": "2", "RoutingConfig": {"AdditionalVersionWeights": {}}}),
            ),
        )
        .await;
    assert_eq!(u.status, StatusCode::OK, "{:?}", u.body);
    assert_eq!(u.body["FunctionVersion"], "2");
    assert!(u.body.get("RoutingConfig").is_none());
    let del_v2 = n
        .call("DELETE", "/2015-03-31/functions/v?Qualifier=2", None)
        .await;
    assert_error(&del_v2, 409, "ResourceConflictException");
    let la = n.call("GET", "/2015-03-31/functions/v/aliases", None).await;
    assert_eq!(la.body["Aliases"].as_array().unwrap().len(), 1);
    assert_eq!(
        n.call("DELETE", "/2015-03-31/functions/v/aliases/prod", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let ga = n
        .call("GET", "/2015-03-31/functions/v/aliases/prod", None)
        .await;
    assert_error(&ga, 404, "ResourceNotFoundException");
    assert_eq!(
        n.call("DELETE", "/2015-03-31/functions/v?Qualifier=2", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let gone = n
        .call(
            "GET",
            "/2015-03-31/functions/v/configuration?Qualifier=2",
            None,
        )
        .await;
    assert_error(&gone, 404, "ResourceNotFoundException");
    let latest_del = n
        .call(
            "DELETE",
            "/2015-03-31/functions/v?Qualifier=%24LATEST",
            None,
        )
        .await;
    assert_error(&latest_del, 400, "InvalidParameterValueException");
}

#[tokio::test]
async fn concurrency_and_account_settings() {
    let n = node().await;
    n.create("c", json!({})).await;
    let r = n
        .call("GET", "/2019-09-30/functions/c/concurrency", None)
        .await;
    assert_eq!(r.body, json!({}));
    let r = n
        .call(
            "PUT",
            "/2017-10-31/functions/c/concurrency",
            Some(json!({"ReservedConcurrentExecutions": 5})),
        )
        .await;
    assert_eq!(r.body["ReservedConcurrentExecutions"], 5);
    let r = n
        .call("GET", "/2019-09-30/functions/c/concurrency", None)
        .await;
    assert_eq!(r.body["ReservedConcurrentExecutions"], 5);
    let s = n.call("GET", "/2016-08-19/account-settings/", None).await;
    assert_eq!(s.body["AccountLimit"]["ConcurrentExecutions"], 1000);
    assert_eq!(
        s.body["AccountLimit"]["UnreservedConcurrentExecutions"],
        995
    );
    assert_eq!(s.body["AccountUsage"]["FunctionCount"], 1);
    assert!(s.body["AccountUsage"]["TotalCodeSize"].as_u64().unwrap() > 0);
    let r = n
        .call(
            "PUT",
            "/2017-10-31/functions/c/concurrency",
            Some(json!({"ReservedConcurrentExecutions": 950})),
        )
        .await;
    assert_error(&r, 400, "InvalidParameterValueException");
    assert_eq!(
        n.call("DELETE", "/2017-10-31/functions/c/concurrency", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = n
        .call("GET", "/2019-09-30/functions/c/concurrency", None)
        .await;
    assert_eq!(r.body, json!({}));
    let r = n
        .call(
            "PUT",
            "/2017-10-31/functions/nope/concurrency",
            Some(json!({"ReservedConcurrentExecutions": 1})),
        )
        .await;
    assert_error(&r, 404, "ResourceNotFoundException");
}

#[tokio::test]
async fn invoke_checks_its_input_before_running_anything() {
    let n = node().await;
    n.create("inv", json!({})).await;
    n.wait_active("inv").await;
    let call = |headers: Vec<(&'static str, &'static str)>, body: &'static [u8]| {
        let n = &n;
        async move {
            let uri = "/2015-03-31/functions/inv/invocations";
            let url = format!("http://127.0.0.1:9000{uri}");
            let mut all = vec![("host", "127.0.0.1:9000")];
            all.extend(headers.iter().copied());
            let identity = Credentials::from_keys("test", "test-secret", None).into();
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region("us-east-1")
                .name("lambda")
                .time(SystemTime::now())
                .settings(SigningSettings::default())
                .build()
                .unwrap()
                .into();
            let signable = SignableRequest::new(
                "POST",
                &url,
                all.clone().into_iter(),
                SignableBody::Bytes(body),
            )
            .unwrap();
            let (ins, _) = sign(signable, &params).unwrap().into_parts();
            let mut req = Request::post(uri);
            for (k, v) in &all {
                req = req.header(*k, *v);
            }
            let mut req = req.body(Body::from(body)).unwrap();
            ins.apply_to_request_http1x(&mut req);
            n.send(req).await
        }
    };
    let r = call(vec![], b"{not json").await;
    assert_error(&r, 400, "InvalidRequestContentException");
    // Event: accepted once stored (202, empty body, a request id); over
    // 256 KB refused; a bad execution window refused.
    let r = call(vec![("x-amz-invocation-type", "Event")], b"{}").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.body.is_null());
    let big_event: &'static [u8] = Box::leak(
        format!("\"{}\"", "x".repeat(256 * 1024))
            .into_bytes()
            .into_boxed_slice(),
    );
    let r = call(vec![("x-amz-invocation-type", "Event")], big_event).await;
    assert_error(&r, 413, "RequestTooLargeException");
    let r = call(
        vec![
            ("x-amz-invocation-type", "Event"),
            ("x-hearth-execution-window", "0"),
        ],
        b"{}",
    )
    .await;
    assert_error(&r, 400, "InvalidParameterValueException");
    let r = call(vec![("x-amz-invocation-type", "Event")], b"{not json").await;
    assert_error(&r, 400, "InvalidRequestContentException");
    let r = call(vec![("x-amz-invocation-type", "Nope")], b"{}").await;
    assert_error(&r, 400, "ValidationException");
    let r = call(vec![("x-amz-invocation-type", "DryRun")], b"{}").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = call(vec![("x-amz-client-context", "%%%")], b"{}").await;
    assert_error(&r, 400, "InvalidParameterValueException");
    let big: &'static [u8] = Box::leak(vec![b' '; 6 * 1024 * 1024 + 1].into_boxed_slice());
    let r = call(vec![], big).await;
    assert_error(&r, 413, "RequestTooLargeException");
    // No sandbox backend here: a valid invoke says why it cannot run.
    let r = call(vec![], b"{}").await;
    assert_error(&r, 500, "ServiceException");
    let r = n
        .call(
            "PUT",
            "/2017-10-31/functions/inv/concurrency",
            Some(json!({"ReservedConcurrentExecutions": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(vec![], b"{}").await;
    assert_error(&r, 429, "TooManyRequestsException");
    assert_eq!(
        r.body["Reason"],
        "ReservedFunctionConcurrentInvocationLimitExceeded"
    );
}

/// An error reply's message, under whichever key AWS gives it for the type.
fn message_of(r: &Reply) -> &str {
    r.body
        .get("message")
        .or_else(|| r.body.get("Message"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[track_caller]
fn assert_aws_error(r: &Reply, status: u16, code: &str, message: &str) {
    assert_error(r, status, code);
    assert_eq!(message_of(r), message, "{:?}", r.body);
}

const PC: &str = "/2019-09-30/functions/pc/provisioned-concurrency";

/// `pc` with version 1 (Active) and an alias `live` → 1.
async fn provisioned_node() -> Node {
    let n = node().await;
    let r = n.create("pc", json!({"Publish": true})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    n.wait_active("pc").await;
    let r = n
        .call(
            "POST",
            "/2015-03-31/functions/pc/aliases",
            Some(json!({"Name": "live", "FunctionVersion": "1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    n
}

async fn put_pc(n: &Node, qualifier: &str, count: Value) -> Reply {
    n.call(
        "PUT",
        &format!("{PC}?Qualifier={qualifier}"),
        Some(json!({ "ProvisionedConcurrentExecutions": count })),
    )
    .await
}

fn is_iso_timestamp(v: &Value) -> bool {
    // 2026-01-01T00:00:00+0000
    v.as_str()
        .is_some_and(|s| s.len() == 24 && s.as_bytes()[10] == b'T' && s.ends_with("+0000"))
}

#[tokio::test]
async fn provisioned_concurrency_lifecycle_as_recorded() {
    let n = provisioned_node().await;
    let r = put_pc(&n, "1", json!(1)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert!(is_iso_timestamp(&r.body["LastModified"]), "{:?}", r.body);
    let mut expected = json!({
        "RequestedProvisionedConcurrentExecutions": 1,
        "AvailableProvisionedConcurrentExecutions": 0,
        "AllocatedProvisionedConcurrentExecutions": 0,
        "Status": "IN_PROGRESS",
        "LastModified": r.body["LastModified"],
    });
    assert_eq!(r.body, expected);
    let g = n.call("GET", &format!("{PC}?Qualifier=1"), None).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.body, expected);

    let r = put_pc(&n, "live", json!(1)).await;
    assert_aws_error(
        &r,
        409,
        "ResourceConflictException",
        "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version",
    );
    assert_eq!(r.body["Type"], "User");

    let l = n.call("GET", &format!("{PC}?List=ALL"), None).await;
    assert_eq!(l.status, StatusCode::OK, "{:?}", l.body);
    expected["FunctionArn"] = json!("arn:aws:lambda:us-east-1:000000000000:function:pc:1");
    assert_eq!(
        l.body,
        json!({ "ProvisionedConcurrencyConfigs": [expected] })
    );

    let d = n.call("DELETE", &format!("{PC}?Qualifier=1"), None).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    assert_eq!(d.body, Value::Null);
    let r = n.call("GET", &format!("{PC}?Qualifier=1"), None).await;
    assert_aws_error(
        &r,
        404,
        "ProvisionedConcurrencyConfigNotFoundException",
        "No Provisioned Concurrency Config found for this function",
    );
    assert_eq!(r.body["Type"], "User");

    let r = put_pc(&n, "live", json!(1)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body["Status"], "IN_PROGRESS");
    let r = put_pc(&n, "1", json!(1)).await;
    assert_aws_error(
        &r,
        409,
        "ResourceConflictException",
        "Version is pointed by a Provisioned Concurrency alias",
    );
    // The qualifier may come with the name instead.
    let r = n
        .call(
            "GET",
            "/2019-09-30/functions/pc%3Alive/provisioned-concurrency",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["RequestedProvisionedConcurrentExecutions"], 1);

    let r = n
        .call("DELETE", "/2015-03-31/functions/pc/aliases/live", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = n.call("GET", &format!("{PC}?Qualifier=live"), None).await;
    assert_aws_error(
        &r,
        404,
        "ResourceNotFoundException",
        "Cannot find alias arn: arn:aws:lambda:us-east-1:000000000000:function:pc:live",
    );
    assert_eq!(r.body["Type"], "User");
    let l = n.call("GET", &format!("{PC}?List=ALL"), None).await;
    assert_eq!(l.body, json!({ "ProvisionedConcurrencyConfigs": [] }));

    // GetFunction and GetFunctionConfiguration are unchanged by it all.
    let r = n
        .call(
            "GET",
            "/2015-03-31/functions/pc/configuration?Qualifier=1",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["Version"], "1");
}

#[tokio::test]
async fn provisioned_concurrency_errors_as_recorded() {
    let n = provisioned_node().await;
    let arn = |rest: &str| format!("arn:aws:lambda:us-east-1:000000000000:function:{rest}");
    let nowhere = "/2019-09-30/functions/doesnotexist/provisioned-concurrency";
    let not_published = "The function resource provided must be an alias or a published version.";

    // GetProvisionedConcurrencyConfig.
    let r = n.call("GET", &format!("{PC}?Qualifier=1"), None).await;
    assert_aws_error(
        &r,
        404,
        "ProvisionedConcurrencyConfigNotFoundException",
        "No Provisioned Concurrency Config found for this function",
    );
    let r = n
        .call("GET", &format!("{nowhere}?Qualifier=noalias"), None)
        .await;
    assert_aws_error(
        &r,
        404,
        "ResourceNotFoundException",
        &format!("Cannot find alias arn: {}", arn("doesnotexist:noalias")),
    );
    let r = n
        .call("GET", &format!("{PC}?Qualifier=noalias"), None)
        .await;
    assert_aws_error(
        &r,
        404,
        "ResourceNotFoundException",
        &format!("Cannot find alias arn: {}", arn("pc:noalias")),
    );
    let r = n.call("GET", &format!("{PC}?Qualifier=10"), None).await;
    assert_aws_error(
        &r,
        404,
        "ResourceNotFoundException",
        &format!("Function not found: {}", arn("pc:10")),
    );
    assert_eq!(r.body["Type"], "User");
    assert!(r.body.get("Message").is_some(), "404s carry Message");
    let r = n
        .call("GET", &format!("{PC}?Qualifier=%24LATEST"), None)
        .await;
    assert_aws_error(&r, 400, "InvalidParameterValueException", not_published);
    assert_eq!(r.body["Type"], "User");

    // ListProvisionedConcurrencyConfigs.
    let r = n.call("GET", &format!("{PC}?List=ALL"), None).await;
    assert_eq!(r.body, json!({ "ProvisionedConcurrencyConfigs": [] }));
    let r = n.call("GET", &format!("{nowhere}?List=ALL"), None).await;
    assert_aws_error(
        &r,
        404,
        "ResourceNotFoundException",
        &format!("Function not found: {}", arn("doesnotexist")),
    );
    let r = n
        .call("GET", &format!("{PC}?List=ALL&MaxItems=0"), None)
        .await;
    assert_error(&r, 400, "ValidationException");

    // DeleteProvisionedConcurrencyConfig.
    let r = n
        .call("DELETE", &format!("{nowhere}?Qualifier=1"), None)
        .await;
    assert_aws_error(
        &r,
        404,
        "ResourceNotFoundException",
        &format!("Function not found: {}", arn("doesnotexist:1")),
    );
    let r = n
        .call("DELETE", &format!("{PC}?Qualifier=noalias"), None)
        .await;
    assert_aws_error(
        &r,
        404,
        "ResourceNotFoundException",
        &format!("Cannot find alias arn: {}", arn("pc:noalias")),
    );
    let r = n.call("DELETE", &format!("{PC}?Qualifier=10"), None).await;
    assert_aws_error(
        &r,
        404,
        "ResourceNotFoundException",
        &format!("Function not found: {}", arn("pc:10")),
    );
    let r = n
        .call("DELETE", &format!("{PC}?Qualifier=%24LATEST"), None)
        .await;
    assert_aws_error(&r, 400, "InvalidParameterValueException", not_published);
    let r = n.call("DELETE", &format!("{PC}?Qualifier=1"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "absent config: still 204");

    // PutProvisionedConcurrencyConfig.
    let r = put_pc(&n, "1", json!(0)).await;
    assert_aws_error(
        &r,
        400,
        "ValidationException",
        "1 validation error detected: Value '0' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1",
    );
    assert!(r.body.get("Type").is_none(), "{:?}", r.body);
    let r = put_pc(&n, "1", json!(-3)).await;
    assert_error(&r, 400, "ValidationException");
    let r = n
        .call("PUT", &format!("{PC}?Qualifier=1"), Some(json!({})))
        .await;
    assert_error(&r, 400, "ValidationException");
    let r = n
        .call(
            "PUT",
            &format!("{nowhere}?Qualifier=noalias"),
            Some(json!({"ProvisionedConcurrentExecutions": 1})),
        )
        .await;
    assert_aws_error(
        &r,
        404,
        "ResourceNotFoundException",
        &format!("Cannot find alias arn: {}", arn("doesnotexist:noalias")),
    );
    let r = n
        .call(
            "PUT",
            &format!("{nowhere}?Qualifier=1"),
            Some(json!({"ProvisionedConcurrentExecutions": 1})),
        )
        .await;
    assert_aws_error(
        &r,
        404,
        "ResourceNotFoundException",
        &format!("Function not found: {}", arn("doesnotexist:1")),
    );
    let r = put_pc(&n, "doesnotexist", json!(1)).await;
    assert_aws_error(
        &r,
        404,
        "ResourceNotFoundException",
        &format!("Cannot find alias arn: {}", arn("pc:doesnotexist")),
    );
    let r = put_pc(&n, "10", json!(1)).await;
    assert_aws_error(
        &r,
        404,
        "ResourceNotFoundException",
        &format!("Function not found: {}", arn("pc:10")),
    );
    let r = put_pc(&n, "%24LATEST", json!(1)).await;
    assert_aws_error(
        &r,
        400,
        "InvalidParameterValueException",
        "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
    );
    // AWS requires the qualifier.
    for method in ["GET", "DELETE"] {
        let r = n.call(method, PC, None).await;
        assert_error(&r, 400, "ValidationException");
    }
    let r = n
        .call(
            "PUT",
            PC,
            Some(json!({"ProvisionedConcurrentExecutions": 1})),
        )
        .await;
    assert_error(&r, 400, "ValidationException");
    // Another account's function does not exist for this one.
    let r = n
        .call_as(
            "other",
            "other-secret",
            "GET",
            &format!("{PC}?Qualifier=1"),
            None,
        )
        .await;
    assert_aws_error(
        &r,
        404,
        "ResourceNotFoundException",
        "Function not found: arn:aws:lambda:us-east-1:111111111111:function:pc:1",
    );
    let r = n
        .call_as(
            "other",
            "other-secret",
            "GET",
            "/2019-09-30/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Apc/provisioned-concurrency?Qualifier=1",
            None,
        )
        .await;
    assert_error(&r, 404, "ResourceNotFoundException");
}

#[tokio::test]
async fn provisioned_concurrency_limits_as_recorded() {
    let n = provisioned_node().await;
    let limit = n
        .call("GET", "/2016-08-19/account-settings/", None)
        .await
        .body["AccountLimit"]["ConcurrentExecutions"]
        .as_u64()
        .unwrap();
    let r = put_pc(&n, "1", json!(limit + 1)).await;
    assert_aws_error(
        &r,
        400,
        "InvalidParameterValueException",
        &format!("Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [{limit}]."),
    );
    let r = put_pc(&n, "1", json!(limit)).await;
    assert_aws_error(
        &r,
        400,
        "InvalidParameterValueException",
        "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100].",
    );
    let r = put_pc(&n, "1", json!(900)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    // The function's own reservation cannot drop below what it provisions.
    let r = n
        .call(
            "PUT",
            "/2017-10-31/functions/pc/concurrency",
            Some(json!({"ReservedConcurrentExecutions": 899})),
        )
        .await;
    assert_aws_error(
        &r,
        400,
        "InvalidParameterValueException",
        " ReservedConcurrentExecutions  899 should not be lower than function's total provisioned concurrency [900].",
    );
    // What is provisioned is no longer free to reserve.
    n.create("other", json!({})).await;
    let r = n
        .call(
            "PUT",
            "/2017-10-31/functions/other/concurrency",
            Some(json!({"ReservedConcurrentExecutions": 1})),
        )
        .await;
    assert_error(&r, 400, "InvalidParameterValueException");
}

#[tokio::test]
async fn provisioned_concurrency_lists_page() {
    let n = provisioned_node().await;
    for alias in ["a", "b"] {
        n.call(
            "POST",
            "/2015-03-31/functions/pc/aliases",
            Some(json!({"Name": alias, "FunctionVersion": "$LATEST"})),
        )
        .await;
    }
    // Aliases of $LATEST cannot be provisioned; give these a version.
    n.call(
        "PUT",
        "/2015-03-31/functions/pc/configuration",
        Some(json!({"Description": "two"})),
    )
    .await;
    n.wait_active("pc").await;
    let v = n
        .call("POST", "/2015-03-31/functions/pc/versions", Some(json!({})))
        .await;
    assert_eq!(v.body["Version"], "2");
    for alias in ["a", "b"] {
        let r = n
            .call(
                "PUT",
                &format!("/2015-03-31/functions/pc/aliases/{alias}"),
                Some(json!({"FunctionVersion": "2"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(
            put_pc(&n, alias, json!(1)).await.status,
            StatusCode::ACCEPTED
        );
    }
    assert_eq!(
        put_pc(&n, "live", json!(2)).await.status,
        StatusCode::ACCEPTED
    );
    let mut arns = Vec::new();
    let mut uri = format!("{PC}?List=ALL&MaxItems=2");
    loop {
        let r = n.call("GET", &uri, None).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let items = r.body["ProvisionedConcurrencyConfigs"].as_array().unwrap();
        assert!(items.len() <= 2);
        arns.extend(
            items
                .iter()
                .map(|i| i["FunctionArn"].as_str().unwrap().to_owned()),
        );
        match r.body["NextMarker"].as_str() {
            Some(m) => uri = format!("{PC}?List=ALL&MaxItems=2&Marker={m}"),
            None => break,
        }
    }
    let prefix = "arn:aws:lambda:us-east-1:000000000000:function:pc:";
    assert_eq!(arns, ["a", "b", "live"].map(|q| format!("{prefix}{q}")));
    // Deleting the function takes its configs.
    assert_eq!(
        n.call("DELETE", "/2015-03-31/functions/pc", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = n.call("GET", &format!("{PC}?List=ALL"), None).await;
    assert_error(&r, 404, "ResourceNotFoundException");
}

#[tokio::test]
async fn account_capacity_admin_api() {
    let n = node().await;
    let path = "/hearth/v1/accounts/111111111111/capacity";
    let r = n.call("GET", path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({
            "AccountId": "111111111111",
            "Dedicated": {},
            "Policy": "burst",
            "MaxWaitMs": 1000,
            "GeneralShare": 0.5,
        })
    );
    let settings = json!({
        "AccountId": "111111111111",
        "Dedicated": {"python:256": 4, "nodejs20.x:128": 1},
        "Policy": "wait",
        "MaxWaitMs": 2500,
        "GeneralShare": 0.25,
    });
    let r = n.call("PUT", path, Some(settings.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, settings);
    assert_eq!(n.call("GET", path, None).await.body, settings);
    // PUT replaces: what is left out takes its default.
    let r = n.call("PUT", path, Some(json!({"Policy": "reject"}))).await;
    assert_eq!(
        r.body,
        json!({
            "AccountId": "111111111111",
            "Dedicated": {},
            "Policy": "reject",
            "MaxWaitMs": 1000,
            "GeneralShare": 0.5,
        })
    );

    for (body, needle) in [
        (
            json!({"Policy": "sometimes"}),
            "Policy 'sometimes' is invalid",
        ),
        (json!({"GeneralShare": 0}), "GeneralShare 0 is out of range"),
        (
            json!({"GeneralShare": 1.5}),
            "GeneralShare 1.5 is out of range",
        ),
        (json!({"MaxWaitMs": -1}), "MaxWaitMs -1 is out of range"),
        (
            json!({"Dedicated": {"python:256": -2}}),
            "Dedicated count -2",
        ),
        (
            json!({"Dedicated": {"python": 1}}),
            "Profile 'python' is invalid",
        ),
        (
            json!({"Dedicated": {"cobol:256": 1}}),
            "Profile 'cobol:256' is invalid",
        ),
        (
            json!({"Dedicated": {"python:333": 1}}),
            "Profile 'python:333' is invalid",
        ),
        (json!({"AccountId": "000000000000"}), "does not match"),
    ] {
        let r = n.call("PUT", path, Some(body.clone())).await;
        assert_error(&r, 400, "InvalidParameterValueException");
        assert!(message_of(&r).contains(needle), "{body}: {:?}", r.body);
    }
    let r = n
        .call("PUT", path, Some(json!({"Policy": "wait", "Typo": 1})))
        .await;
    assert_error(&r, 400, "InvalidRequestContentException");
    // Nothing invalid was stored.
    assert_eq!(n.call("GET", path, None).await.body["Policy"], "reject");

    let unknown = "/hearth/v1/accounts/999999999999/capacity";
    let r = n.call("GET", unknown, None).await;
    assert_aws_error(&r, 404, "ResourceNotFoundException", "Account not found.");
    let r = n.call("PUT", unknown, Some(json!({}))).await;
    assert_aws_error(&r, 404, "ResourceNotFoundException", "Account not found.");

    // Only admins.
    for (method, body) in [("GET", None), ("PUT", Some(json!({"Policy": "burst"})))] {
        let r = n.call_as("other", "other-secret", method, path, body).await;
        assert_error(&r, 403, "AccessDeniedException");
    }
    let r = n
        .call_as(
            "other",
            "other-secret",
            "GET",
            "/hearth/v1/accounts/000000000000/capacity",
            None,
        )
        .await;
    assert_error(&r, 403, "AccessDeniedException");
    assert_eq!(n.call("GET", path, None).await.body["Policy"], "reject");
    let r = n.call("DELETE", path, None).await;
    assert_error(&r, 405, "MethodNotAllowedException");
}

// ---- IAM ------------------------------------------------------------------

const IAM: &str = "Version=2010-05-08&Action=";
const TRUST: &str = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";

/// The text of the first `<tag>` in `xml`, unescaped.
fn xml_text(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml.find(&open).map(|i| i + open.len()).unwrap_or(0);
    let end = xml[start..].find('<').map_or(start, |i| start + i);
    xml[start..end]
        .replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[track_caller]
fn assert_iam_error(reply: &(u16, String), status: u16, code: &str, message: &str) {
    let (got, xml) = reply;
    assert_eq!(*got, status, "{xml}");
    assert!(
        xml.starts_with(
            "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type>"
        ),
        "{xml}"
    );
    assert_eq!(
        (
            xml_text(xml, "Code").as_str(),
            xml_text(xml, "Message").as_str()
        ),
        (code, message)
    );
}

#[tokio::test]
async fn iam_roles_over_the_query_protocol() {
    let n = node().await;
    let (status, xml) = n
        .iam(&format!(
            "{IAM}CreateRole&RoleName=fn-role&Path=%2Fapp%2F&AssumeRolePolicyDocument={TRUST}"
        ))
        .await;
    assert_eq!(status, 200, "{xml}");
    assert!(xml.starts_with(
        "<CreateRoleResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><CreateRoleResult><Role><Path>/app/</Path><RoleName>fn-role</RoleName><RoleId>AROA"
    ), "{xml}");
    assert_eq!(
        xml_text(&xml, "Arn"),
        "arn:aws:iam::000000000000:role/app/fn-role"
    );
    assert_eq!(xml_text(&xml, "AssumeRolePolicyDocument"), TRUST);
    let (status, xml) = n.iam(&format!("{IAM}GetRole&RoleName=FN-ROLE")).await;
    assert_eq!(
        (status, xml_text(&xml, "RoleName").as_str()),
        (200, "fn-role")
    );

    assert_iam_error(
        &n.iam(&format!(
            "{IAM}CreateRole&RoleName=fn-role&AssumeRolePolicyDocument={TRUST}"
        ))
        .await,
        409,
        "EntityAlreadyExists",
        "Role with name fn-role already exists.",
    );
    assert_iam_error(
        &n.iam(&format!(
            "{IAM}CreateRole&RoleName=bad&AssumeRolePolicyDocument=%7Bnope"
        ))
        .await,
        400,
        "MalformedPolicyDocument",
        "This policy contains invalid Json",
    );
    assert_iam_error(
        &n.iam(&format!("{IAM}GetRole&RoleName=bad")).await,
        404,
        "NoSuchEntity",
        "The role with name bad cannot be found.",
    );
    assert_iam_error(
        &n.iam(&format!("{IAM}GetRole&RoleName=x%20y")).await,
        400,
        "ValidationError",
        r"1 validation error detected: Value 'x y' at 'roleName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\w+=,.@-]+",
    );
    let (status, xml) = n.iam(&format!("{IAM}GetUser")).await;
    assert_eq!(status, 400, "{xml}");
    assert_eq!(
        (
            xml_text(&xml, "Code").as_str(),
            xml_text(&xml, "Message").as_str()
        ),
        (
            "InvalidAction",
            "Could not find operation GetUser for version 2010-05-08"
        )
    );
    let (status, xml) = n
        .iam("Version=2099-01-01&Action=GetRole&RoleName=fn-role")
        .await;
    assert_eq!(
        (status, xml_text(&xml, "Code").as_str()),
        (400, "InvalidAction")
    );

    // Another account does not see the role.
    let other = n
        .query_as(
            "other",
            "other-secret",
            "iam",
            &format!("{IAM}GetRole&RoleName=fn-role"),
        )
        .await;
    assert_iam_error(
        &other,
        404,
        "NoSuchEntity",
        "The role with name fn-role cannot be found.",
    );

    // Managed and inline policies, and the conflicts they make.
    let (status, xml) = n
        .iam(&format!(
            "{IAM}CreatePolicy&PolicyName=Logs&PolicyDocument={TRUST}"
        ))
        .await;
    assert_eq!(status, 200, "{xml}");
    let policy = xml_text(&xml, "Arn");
    assert_eq!(policy, "arn:aws:iam::000000000000:policy/Logs");
    for arn in [
        policy.as_str(),
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    ] {
        let (status, xml) = n
            .iam(&format!(
                "{IAM}AttachRolePolicy&RoleName=fn-role&PolicyArn={arn}"
            ))
            .await;
        assert_eq!(status, 200, "{xml}");
        assert!(xml.starts_with("<AttachRolePolicyResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><ResponseMetadata><RequestId>"), "{xml}");
    }
    let (_, xml) = n
        .iam(&format!("{IAM}ListAttachedRolePolicies&RoleName=fn-role"))
        .await;
    assert_eq!(xml.matches("<member>").count(), 2, "{xml}");
    assert_eq!(xml_text(&xml, "IsTruncated"), "false");
    assert_iam_error(
        &n.iam(&format!("{IAM}DeletePolicy&PolicyArn={policy}"))
            .await,
        409,
        "DeleteConflict",
        "Cannot delete a policy attached to entities.",
    );
    assert_iam_error(
        &n.iam(&format!("{IAM}DeleteRole&RoleName=fn-role")).await,
        409,
        "DeleteConflict",
        "Cannot delete entity, must detach all policies first.",
    );
    let (_, xml) = n.iam(&format!("{IAM}GetPolicy&PolicyArn={policy}")).await;
    assert_eq!(xml_text(&xml, "AttachmentCount"), "1");
}

#[tokio::test]
async fn function_roles_must_exist_where_checked() {
    use hearth_api::FunctionRoleCheck;
    let n = node_with(ApiSettings {
        function_roles: FunctionRoleCheck::AllExcept("000000000000".into()),
        ..ApiSettings::default()
    })
    .await;
    let create_as_other = |name: &'static str, role: &'static str| {
        let n = &n;
        async move {
            let body = json!({
                "FunctionName": name,
                "Runtime": "python3.11",
                "Handler": "app.handler",
                "Role": role,
                "Code": {"ZipFile": b64(&zip_of(&[("app.py", "def handler(e, c):\n    return e\n")]))},
            });
            n.call_as(
                "other",
                "other-secret",
                "POST",
                "/2015-03-31/functions",
                Some(body),
            )
            .await
        }
    };
    let cannot = "The role defined for the function cannot be assumed by Lambda.";
    for role in [
        "arn:aws:iam::111111111111:role/fn-role",
        // The dev account's role, or a role at another path, is not this one.
        "arn:aws:iam::000000000000:role/fn-role",
        "arn:aws:iam::111111111111:role/other/fn-role",
    ] {
        let r = create_as_other("f", role).await;
        assert_error(&r, 400, "InvalidParameterValueException");
        assert_eq!(r.body["message"], cannot, "{role}");
    }
    // The dev account is not checked, and its role does not serve account 111….
    let dev = n.create("dev-fn", json!({})).await;
    assert_eq!(dev.status, StatusCode::CREATED, "{:?}", dev.body);
    let (status, xml) = n
        .iam(&format!(
            "{IAM}CreateRole&RoleName=fn-role&AssumeRolePolicyDocument={TRUST}"
        ))
        .await;
    assert_eq!(status, 200, "{xml}");
    let r = create_as_other("f", "arn:aws:iam::000000000000:role/fn-role").await;
    assert_error(&r, 400, "InvalidParameterValueException");

    let (status, xml) = n
        .query_as(
            "other",
            "other-secret",
            "iam",
            &format!("{IAM}CreateRole&RoleName=fn-role&AssumeRolePolicyDocument={TRUST}"),
        )
        .await;
    assert_eq!(status, 200, "{xml}");
    let r = create_as_other("f", "arn:aws:iam::111111111111:role/fn-role").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    // UpdateFunctionConfiguration checks a new role, and only a new role.
    let update = |body: Value| {
        n.call_as(
            "other",
            "other-secret",
            "PUT",
            "/2015-03-31/functions/f/configuration",
            Some(body),
        )
    };
    let r = update(json!({"Role": "arn:aws:iam::111111111111:role/missing"})).await;
    assert_error(&r, 400, "InvalidParameterValueException");
    assert_eq!(r.body["message"], cannot);
    for _ in 0..200 {
        let r = update(json!({"Description": "d"})).await;
        if r.status == StatusCode::OK {
            assert_eq!(r.body["Role"], "arn:aws:iam::111111111111:role/fn-role");
            return;
        }
        // The function is still being created.
        assert_error(&r, 409, "ResourceConflictException");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("f never accepted an update");
}
