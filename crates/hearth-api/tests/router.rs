#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! In-process tests of the whole router (no socket): every control-plane
//! operation's success and error paths, signed exactly as an SDK signs.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use hearth_api::{app, ApiSettings, AppState};
use hearth_exec::{ExecConfig, Executor};
use hearth_runtime::RuntimeCatalog;
use hearth_sandbox::{Protections, Sandbox, SandboxBackend, SandboxError, SandboxSpec};
use hearth_store::{CodeStore, LogStore, Registry, SqliteRegistry};
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
    let executor = Executor::start(
        Arc::new(NoSandboxes),
        registry.clone(),
        code.clone(),
        logs.clone(),
        runtimes.clone(),
        node.clone(),
        ExecConfig::new(dir.path().join("runtime")),
    );
    let state = AppState::start(
        registry,
        code,
        node,
        runtimes,
        ApiSettings::default(),
        executor,
        logs,
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
    let tampered = format!("{}0", &path[..path.len() - 1]);
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
    let r = call(vec![("x-amz-invocation-type", "Event")], b"{}").await;
    assert_error(&r, 400, "InvalidParameterValueException");
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
