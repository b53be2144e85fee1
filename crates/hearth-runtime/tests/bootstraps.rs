//! The embedded Python and Node.js bootstraps, run as plain child processes
//! (no sandbox) against a real [`RuntimeApi`], with the environment
//! [`runtime_environment`] builds and nothing inherited from the test.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::within;
use hearth_runtime::api::{
    log_stream_name, runtime_environment, AssignError, Assignment, InitOutcome, InitializationType,
    Invocation, InvokeOutcome, RuntimeApi, RuntimeEnv, RuntimeReady,
};
use hearth_runtime::bootstrap;
use hearth_types::runtime::{Runtime, RuntimeFamily};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;

const PYTHON: &str = "/usr/bin/python3";
const NODE: &str = "/usr/bin/node";
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:fn";

/// One runtime process and the Runtime API it talks to.
struct Harness {
    runtime: Runtime,
    api: RuntimeApi,
    child: tokio::process::Child,
    task: tempfile::TempDir,
    _runtime_dir: tempfile::TempDir,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

fn interpreter(runtime: &Runtime) -> Option<&'static str> {
    let path = match runtime.family() {
        RuntimeFamily::Python => PYTHON,
        RuntimeFamily::Node => NODE,
        RuntimeFamily::Provided => return None,
    };
    if Path::new(path).exists() {
        Some(path)
    } else {
        eprintln!("skipped: {path} is not installed");
        None
    }
}

fn drain(mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = buf.clone();
    tokio::spawn(async move {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

/// Starts `runtime` with `handler` over a task root holding `files`.
/// `None` if the interpreter is missing on this machine.
async fn start(runtime: &str, handler: &str, files: &[(&str, &str)]) -> Option<Harness> {
    start_with(runtime, handler, files, &[]).await
}

async fn start_with(
    runtime: &str,
    handler: &str,
    files: &[(&str, &str)],
    vars: &[(&str, &str)],
) -> Option<Harness> {
    let (rt, interp, runtime_dir, installed, task) = prepare(runtime, files)?;
    let api = RuntimeApi::serve(std::net::TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
    let env = function_env(&rt, handler, vars, &api, task.path());
    let argv = bootstrap::command_at(&rt, Path::new(interp), &installed, task.path());
    let cwd = task.path().to_path_buf();
    Some(launch(rt, api, runtime_dir, task, &argv, env, &cwd))
}

/// How a bootstrap started by [`start_on_channel`] reaches the Runtime API.
#[derive(Clone, Copy)]
enum Channel {
    /// A Unix socket served by the endpoint, its number in
    /// `HEARTH_RUNTIME_API_FD`, and `AWS_LAMBDA_RUNTIME_API` pointing where
    /// nothing listens: only the channel can work.
    Only,
    /// `HEARTH_RUNTIME_API_FD` naming a descriptor that is not open: the
    /// bootstrap must fall back to TCP.
    Broken,
}

/// [`start`], with the sandbox's Runtime API channel as `channel` says.
async fn start_on_channel(
    runtime: &str,
    handler: &str,
    files: &[(&str, &str)],
    channel: Channel,
) -> Option<Harness> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use std::os::fd::AsRawFd;
    let (rt, interp, runtime_dir, installed, task) = prepare(runtime, files)?;
    let api = RuntimeApi::serve(std::net::TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
    let mut env = function_env(&rt, handler, &[], &api, task.path());
    let argv = bootstrap::command_at(&rt, Path::new(interp), &installed, task.path());
    let cwd = task.path().to_path_buf();
    let theirs = match channel {
        Channel::Only => {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
            api.serve_channel(ours).unwrap();
            // Inherited by the child (and, for this moment, by any other
            // child this test binary starts: harmless).
            fcntl(&theirs, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
            for (k, v) in &mut env {
                if k == "AWS_LAMBDA_RUNTIME_API" {
                    *v = "127.0.0.1:1".to_owned();
                }
            }
            env.push((
                "HEARTH_RUNTIME_API_FD".to_owned(),
                theirs.as_raw_fd().to_string(),
            ));
            Some(theirs)
        }
        Channel::Broken => {
            env.push(("HEARTH_RUNTIME_API_FD".to_owned(), "987".to_owned()));
            None
        }
    };
    let h = launch(rt, api, runtime_dir, task, &argv, env, &cwd);
    drop(theirs);
    Some(h)
}

/// Starts `runtime` runtime-warm: the bootstrap with [`bootstrap::warm_command_at`]'s
/// minimal environment, in `/` rather than the task root, waiting for
/// [`Harness::assign`].
async fn start_warm(runtime: &str, files: &[(&str, &str)]) -> Option<Harness> {
    let (rt, interp, runtime_dir, installed, task) = prepare(runtime, files)?;
    let api = RuntimeApi::serve(std::net::TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
    let (argv, env) = bootstrap::warm_command_at(
        &rt,
        Path::new(interp),
        &installed,
        task.path(),
        &api.local_addr().to_string(),
    )
    .unwrap();
    Some(launch(
        rt,
        api,
        runtime_dir,
        task,
        &argv,
        env,
        Path::new("/"),
    ))
}

/// The bootstraps installed in a fresh directory and a task root holding
/// `files`; `None` if the interpreter is missing on this machine.
fn prepare(
    runtime: &str,
    files: &[(&str, &str)],
) -> Option<(
    Runtime,
    &'static str,
    tempfile::TempDir,
    PathBuf,
    tempfile::TempDir,
)> {
    let rt = Runtime::parse(runtime).unwrap();
    let interp = interpreter(&rt)?;
    let runtime_dir = tempfile::tempdir().unwrap();
    let installed = runtime_dir.path().join("runtime");
    // Python runtimes load the precompiled module, as in production.
    let pythons: Vec<PathBuf> = match rt.family() {
        RuntimeFamily::Python => vec![PathBuf::from(interp)],
        _ => vec![],
    };
    bootstrap::install_precompiled(&installed, &pythons).unwrap();
    let task = tempfile::tempdir().unwrap();
    for (name, contents) in files {
        let p = task.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }
    Some((rt, interp, runtime_dir, installed, task))
}

/// A function's environment as [`runtime_environment`] builds it, pointed at
/// `api` and, since the code is not at /var/task outside a sandbox, `task`.
fn function_env(
    rt: &Runtime,
    handler: &str,
    vars: &[(&str, &str)],
    api: &RuntimeApi,
    task: &Path,
) -> Vec<(String, String)> {
    let address = api.local_addr().to_string();
    let stream = log_stream_name("$LATEST", SystemTime::now());
    let variables: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut env = runtime_environment(&RuntimeEnv {
        function_name: "fn",
        function_version: "$LATEST",
        memory_mb: 256,
        runtime: rt,
        handler,
        region: "us-east-1",
        initialization_type: InitializationType::OnDemand,
        runtime_api: &address,
        log_stream_name: &stream,
        user_env: &variables,
    });
    for (k, v) in &mut env {
        if k == "LAMBDA_TASK_ROOT" {
            *v = task.display().to_string();
        }
    }
    env
}

/// Spawns `argv` with exactly `env` (nothing inherited from the test).
fn launch(
    runtime: Runtime,
    api: RuntimeApi,
    runtime_dir: tempfile::TempDir,
    task: tempfile::TempDir,
    argv: &[String],
    env: Vec<(String, String)>,
    cwd: &Path,
) -> Harness {
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(env)
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    Harness {
        runtime,
        api,
        child,
        task,
        _runtime_dir: runtime_dir,
        stdout,
        stderr,
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

impl Harness {
    fn task_root(&self) -> PathBuf {
        self.task.path().to_path_buf()
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    async fn init(&self) -> InitOutcome {
        within("init", self.api.init()).await
    }

    async fn ready(&self) {
        let outcome = self.init().await;
        assert_eq!(
            outcome,
            InitOutcome::Ready,
            "stdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
    }

    /// Invokes with `payload`; returns the request id and the outcome.
    async fn invoke_with(
        &self,
        payload: &str,
        customise: impl FnOnce(&mut Invocation),
    ) -> (String, InvokeOutcome) {
        let id = format!(
            "00000000-0000-4000-8000-{:012}",
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let mut inv = Invocation::new(
            id.clone(),
            Bytes::from(payload.to_owned()),
            now_ms() + 10_000,
            FUNCTION_ARN,
        );
        customise(&mut inv);
        let outcome = within("invoke", self.api.invoke(inv)).await;
        (id, outcome)
    }

    async fn invoke(&self, payload: &str) -> (String, InvokeOutcome) {
        self.invoke_with(payload, |_| {}).await
    }

    /// Invokes and expects a response; returns it parsed.
    async fn call(&self, payload: &str) -> Value {
        match self.invoke(payload).await.1 {
            InvokeOutcome::Response(b) => serde_json::from_slice(&b)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&b))),
            other => panic!(
                "{other:?}\nstdout: {}\nstderr: {}",
                self.stdout(),
                self.stderr()
            ),
        }
    }

    /// Invokes and expects a function error; returns its body and type header.
    async fn call_error(&self, payload: &str) -> (String, Value, Option<String>) {
        match self.invoke(payload).await {
            (id, InvokeOutcome::FunctionError { body, error_type }) => {
                (id, serde_json::from_slice(&body).unwrap(), error_type)
            }
            (_, other) => panic!(
                "{other:?}\nstdout: {}\nstderr: {}",
                self.stdout(),
                self.stderr()
            ),
        }
    }

    /// Expects init to fail; returns the body, the type header and the exit code.
    async fn init_failure(&mut self) -> (String, Value, Option<String>, Option<i32>) {
        let (body, error_type) = match self.init().await {
            InitOutcome::Failed { body, error_type } => (body, error_type),
            other => panic!(
                "{other:?}\nstdout: {}\nstderr: {}",
                self.stdout(),
                self.stderr()
            ),
        };
        let status = within("exit", self.child.wait()).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        (
            text.clone(),
            serde_json::from_str(&text).unwrap(),
            error_type,
            status.code(),
        )
    }

    /// Waits until the runtime-warm runtime parks for its assignment.
    async fn runtime_warm(&self) {
        let outcome = within("runtime_ready", self.api.runtime_ready()).await;
        assert_eq!(
            outcome,
            RuntimeReady::Ready,
            "stdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
    }

    /// Assigns the function `handler` with the user variables `vars`;
    /// returns the environment assigned.
    fn assign(&self, handler: &str, vars: &[(&str, &str)]) -> Vec<(String, String)> {
        let env = function_env(&self.runtime, handler, vars, &self.api, self.task.path());
        self.api
            .assign(Assignment::new(handler, env.clone()))
            .unwrap();
        env
    }

    /// Waits until stdout contains `needle` (output is read asynchronously).
    async fn stdout_contains(&self, needle: &str) -> String {
        within(&format!("stdout containing {needle:?}"), async {
            loop {
                let out = self.stdout();
                if out.contains(needle) {
                    return out;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
    }
}

const ECHO_PAYLOADS: &[&str] = &[
    r#"{"s":"héllo wörld ✓ 😀 中文","n":[1,2.5,-3e-7],"t":true,"z":null}"#,
    "null",
    r#"[1,"two",3.5,true,null,{"a":[]}]"#,
    "42",
    "-1.5e+300",
    r#""just a string""#,
    "true",
    "{}",
];

// ------------------------------------------------------------------ python

const PY_APP: &str = r#"import helper

def handler(event, context):
    if event == {"raise": True}:
        print("about to fail")
        raise Exception("boom")
    return helper.same(event)
"#;
const PY_HELPER: &str = "def same(x):\n    return x\n";

#[tokio::test]
async fn python_echoes_json_values_on_one_process() {
    let Some(h) = start(
        "python3.11",
        "app.handler",
        &[("app.py", PY_APP), ("helper.py", PY_HELPER)],
    )
    .await
    else {
        return;
    };
    h.ready().await;
    for p in ECHO_PAYLOADS {
        let expected: Value = serde_json::from_str(p).unwrap();
        assert_eq!(h.call(p).await, expected, "payload {p}");
    }
    // python3.11 escapes non-ASCII as AWS's runtime of that version does.
    match h.invoke(r#""é""#).await.1 {
        InvokeOutcome::Response(b) => assert_eq!(&b[..], br#""\u00e9""#),
        other => panic!("{other:?}"),
    }
    // An exception, then the process keeps serving.
    let task = h.task_root().display().to_string();
    let (id, body, error_type) = h.call_error(r#"{"raise": true}"#).await;
    assert_eq!(error_type.as_deref(), Some("Unhandled"));
    assert_eq!(
        body,
        json!({
            "errorMessage": "boom",
            "errorType": "Exception",
            "requestId": id,
            "stackTrace": [format!("  File \"{task}/app.py\", line 6, in handler\n    raise Exception(\"boom\")\n")],
        })
    );
    let out = h
        .stdout_contains("Traceback (most recent call last):")
        .await;
    assert!(
        out.contains(&format!(
            "about to fail\n[ERROR] Exception: boom\nTraceback (most recent call last):\n  File \"{task}/app.py\", line 6, in handler\n    raise Exception(\"boom\")\n"
        )),
        "{out}"
    );
    assert_eq!(h.call("[7]").await, json!([7]));
    // No bytecode was written into the task root.
    assert!(!h.task_root().join("__pycache__").exists());
}

#[tokio::test]
async fn python312_returns_utf8_and_none_is_null() {
    let Some(h) = start(
        "python3.12",
        "app.handler",
        &[(
            "app.py",
            "def handler(event, context):\n    return None if event == 0 else event\n",
        )],
    )
    .await
    else {
        return;
    };
    h.ready().await;
    match h.invoke("0").await.1 {
        InvokeOutcome::Response(b) => assert_eq!(&b[..], b"null"),
        other => panic!("{other:?}"),
    }
    match h.invoke(r#""é😀""#).await.1 {
        InvokeOutcome::Response(b) => assert_eq!(&b[..], "\"é😀\"".as_bytes()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn python_import_error_is_an_init_error() {
    let Some(mut h) = start("python3.12", "missing.handler", &[("app.py", PY_APP)]).await else {
        return;
    };
    let (text, _, error_type, code) = h.init_failure().await;
    assert_eq!(
        text,
        r#"{"errorMessage": "Unable to import module 'missing': No module named 'missing'", "errorType": "Runtime.ImportModuleError", "requestId": "", "stackTrace": []}"#
    );
    assert_eq!(error_type.as_deref(), Some("Runtime.ImportModuleError"));
    assert_eq!(code, Some(1));
    assert!(h
        .stdout()
        .contains("[ERROR] Runtime.ImportModuleError: Unable to import module 'missing': No module named 'missing'\nTraceback (most recent call last):\n"));
}

#[tokio::test]
async fn python_missing_handler_fails_each_invocation_as_aws_does() {
    let Some(h) = start(
        "python3.12",
        "app.nope",
        &[("app.py", PY_APP), ("helper.py", PY_HELPER)],
    )
    .await
    else {
        return;
    };
    h.ready().await;
    let (id, body, _) = h.call_error("{}").await;
    assert_eq!(
        body,
        json!({
            "errorMessage": "Handler 'nope' missing on module 'app'",
            "errorType": "Runtime.HandlerNotFound",
            "requestId": id,
            "stackTrace": [],
        })
    );
}

#[tokio::test]
async fn python_syntax_error_malformed_handler_and_import_time_exception() {
    let Some(mut h) = start(
        "python3.12",
        "app.handler",
        &[("app.py", "def handler(:\n    pass\n")],
    )
    .await
    else {
        return;
    };
    let (_, body, error_type, _) = h.init_failure().await;
    assert_eq!(body["errorType"], "Runtime.UserCodeSyntaxError");
    assert_eq!(error_type.as_deref(), Some("Runtime.UserCodeSyntaxError"));
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .starts_with("Syntax error in module 'app': "),
        "{body}"
    );
    assert!(
        body["stackTrace"][0]
            .as_str()
            .unwrap()
            .contains("app.py\" Line 1"),
        "{body}"
    );

    let Some(mut h) = start("python3.12", "nodots", &[]).await else {
        return;
    };
    let (_, body, _, _) = h.init_failure().await;
    assert_eq!(
        body,
        json!({
            "errorMessage": "Bad handler 'nodots': not enough values to unpack (expected 2, got 1)",
            "errorType": "Runtime.MalformedHandlerName",
            "requestId": "",
            "stackTrace": [],
        })
    );

    let Some(mut h) = start(
        "python3.12",
        "app.handler",
        &[("app.py", "raise ValueError(\"Runtime startup fails\")\n")],
    )
    .await
    else {
        return;
    };
    let (_, body, error_type, code) = h.init_failure().await;
    assert_eq!(body["errorType"], "ValueError");
    assert_eq!(body["errorMessage"], "Runtime startup fails");
    assert_eq!(body["requestId"], "");
    assert_eq!(error_type.as_deref(), Some("ValueError"));
    assert_eq!(code, Some(1));
    let trace: Vec<&str> = body["stackTrace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(trace[0].contains("importlib"), "{trace:?}");
    assert!(
        !trace.iter().any(|f| f.contains("bootstrap.py")),
        "{trace:?}"
    );
    assert_eq!(
        trace.last().unwrap(),
        &format!(
            "  File \"{}/app.py\", line 1, in <module>\n    raise ValueError(\"Runtime startup fails\")\n",
            h.task_root().display()
        )
    );
}

const PY_CONTEXT: &str = r#"import os, sys

def handler(event, context):
    cc = context.client_context
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "invoked_function_arn": context.invoked_function_arn,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "custom": cc.custom if cc else None,
        "app_title": cc.client.app_title if cc and cc.client else None,
        "identity_id": context.identity.cognito_identity_id,
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "dont_write_bytecode": sys.dont_write_bytecode,
        "path0": sys.path[0],
        "env": dict(os.environ),
    }
"#;

#[tokio::test]
async fn python_context_and_environment() {
    let Some(h) = start_with(
        "python3.12",
        "sub/ctx.handler",
        &[("sub/ctx.py", PY_CONTEXT)],
        &[("TEST_KEY", "TEST_VAL")],
    )
    .await
    else {
        return;
    };
    h.ready().await;
    let (id, outcome) = h
        .invoke_with("{}", |inv| {
            inv.trace_id = "Root=1-abc;Sampled=0".to_owned();
            inv.client_context =
                Some(r#"{"custom":{"k":"v"},"client":{"app_title":"t"},"env":{}}"#.to_owned());
            inv.cognito_identity =
                Some(r#"{"cognitoIdentityId":"cid","cognitoIdentityPoolId":"pool"}"#.to_owned());
        })
        .await;
    let InvokeOutcome::Response(b) = outcome else {
        panic!("{outcome:?}\n{}", h.stderr())
    };
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["function_name"], "fn");
    assert_eq!(v["function_version"], "$LATEST");
    assert_eq!(v["memory_limit_in_mb"], "256");
    assert_eq!(v["aws_request_id"], id.as_str());
    assert_eq!(v["invoked_function_arn"], FUNCTION_ARN);
    assert_eq!(v["log_group_name"], "/aws/lambda/fn");
    assert!(v["log_stream_name"]
        .as_str()
        .unwrap()
        .contains("/[$LATEST]"));
    let remaining = v["remaining"].as_i64().unwrap();
    assert!(remaining > 0 && remaining <= 10_000, "{remaining}");
    assert_eq!(v["custom"], json!({"k": "v"}));
    assert_eq!(v["app_title"], "t");
    assert_eq!(v["identity_id"], "cid");
    assert_eq!(v["trace"], "Root=1-abc;Sampled=0");
    assert_eq!(v["dont_write_bytecode"], true);
    assert_eq!(v["path0"], h.task_root().display().to_string());
    let env = &v["env"];
    assert_eq!(env["TEST_KEY"], "TEST_VAL");
    assert_eq!(env["AWS_EXECUTION_ENV"], "AWS_Lambda_python3.12");
    assert_eq!(env["TZ"], ":UTC");
    assert_eq!(env["_HANDLER"], "sub/ctx.handler");
    assert!(env.get("PYTHONDONTWRITEBYTECODE").is_none());
    assert!(env.get("AWS_ACCESS_KEY_ID").is_none());

    // Without a trace id the variable is removed; without a client context
    // or identity, those are empty.
    let v = h.call("{}").await;
    assert_eq!(v["trace"], Value::Null);
    assert_eq!(v["custom"], Value::Null);
    assert_eq!(v["identity_id"], Value::Null);
}

#[tokio::test]
async fn python_marshal_errors_and_oversized_responses() {
    let app = r#"import logging
logger = logging.getLogger()
logger.setLevel(logging.INFO)

def handler(event, context):
    logger.info("handling %s", event)
    if event == "set":
        return {1, 2}
    if event == "big":
        return "x" * (6 * 1024 * 1024 + 10)
    return event
"#;
    let Some(h) = start("python3.12", "app.handler", &[("app.py", app)]).await else {
        return;
    };
    h.ready().await;
    let (id, body, _) = h.call_error(r#""set""#).await;
    assert_eq!(
        body,
        json!({
            "errorMessage": "Unable to marshal response: Object of type set is not JSON serializable",
            "errorType": "Runtime.MarshalError",
            "requestId": id,
            "stackTrace": [],
        })
    );
    match h.invoke(r#""big""#).await.1 {
        InvokeOutcome::ResponseTooLarge { size } => assert_eq!(size, 6 * 1024 * 1024 + 12),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.call(r#""after""#).await, json!("after"));
    // The root logger got AWS's format: [LEVEL]\t<time>Z\t<request id>\t<message>.
    let out = h.stdout_contains("handling after").await;
    let line = out.lines().find(|l| l.contains("handling after")).unwrap();
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields[0], "[INFO]", "{line}");
    assert!(fields[1].ends_with('Z') && fields[1].len() == 24, "{line}");
    assert!(fields[2].starts_with("00000000-0000-4000-8000-"), "{line}");
    assert_eq!(fields[3], "handling after");
}

/// The bootstrap decodes events and encodes results with the `_json` C
/// accelerator instead of importing `json`: the same values, the same
/// errors as `json.loads` / `json.dumps`.
#[tokio::test]
async fn python_json_matches_the_json_module() {
    let app = r#"import sys

def handler(event, context):
    if event == "modules":
        return sorted(m for m in ("json", "re", "enum") if m in sys.modules)
    return event
"#;
    let Some(h) = start("python3.12", "app.handler", &[("app.py", app)]).await else {
        return;
    };
    h.ready().await;
    // Neither the runtime nor a no-op handler imports json (or re, enum).
    assert_eq!(h.call(r#""modules""#).await, json!([]));
    assert_eq!(
        h.call(" {\"a\": [1, 2.5, null, true, \"\\u00e9\\ud83d\\ude00\"], \"b\": {}} ")
            .await,
        json!({"a": [1, 2.5, null, true, "\u{e9}\u{1f600}"], "b": {}})
    );
    for (event, message) in [
        (r#"{"a":"#, "Expecting value: line 1 column 6 (char 5)"),
        ("1 2", "Extra data: line 1 column 3 (char 2)"),
        ("[1,]", "Expecting value: line 1 column 4 (char 3)"),
    ] {
        let (id, body, _) = h.call_error(event).await;
        assert_eq!(
            body,
            json!({
                "errorMessage": format!("Unable to unmarshal input: {message}"),
                "errorType": "Runtime.UnmarshalError",
                "requestId": id,
                "stackTrace": [],
            }),
            "{event}"
        );
    }
}

// ------------------------------------------------------------------ node

#[tokio::test]
async fn node_echoes_json_values_on_one_process() {
    let Some(h) = start(
        "nodejs20.x",
        "index.handler",
        &[("index.js", "exports.handler = async (event) => event;\n")],
    )
    .await
    else {
        return;
    };
    h.ready().await;
    for p in ECHO_PAYLOADS {
        let expected: Value = serde_json::from_str(p).unwrap();
        assert_eq!(h.call(p).await, expected, "payload {p}");
    }
    match h.invoke(r#""é😀""#).await.1 {
        InvokeOutcome::Response(b) => assert_eq!(&b[..], "\"é😀\"".as_bytes()),
        other => panic!("{other:?}"),
    }
}

const NODE_STYLES: &str = r#"
exports.callback = (event, context, callback) => {
  setTimeout(() => callback(null, { cb: event }), 5);
};
exports.promise = (event) => Promise.resolve({ promised: event });
exports.sync = (event) => { console.log('sync ran'); };
exports.succeed = (event, context) => { context.succeed({ succeeded: event }); };
exports.throws = async () => { throw new Error('boom'); };
exports.cbError = (event, context, callback) => callback(new TypeError('bad input'));
exports.rejectsNothing = () => Promise.reject();
exports.nested = { deep: { fn: async () => 'deep' } };
exports.notAFunction = 42;
exports.big = async () => 'x'.repeat(6 * 1024 * 1024 + 10);
"#;

#[tokio::test]
async fn node_async_callback_promise_and_sync_handlers() {
    for (handler, payload, expected) in [
        ("index.callback", "1", json!({"cb": 1})),
        ("index.promise", "2", json!({"promised": 2})),
        ("index.sync", "3", Value::Null),
        ("index.succeed", "4", json!({"succeeded": 4})),
        ("index.nested.deep.fn", "5", json!("deep")),
    ] {
        let Some(h) = start("nodejs20.x", handler, &[("index.js", NODE_STYLES)]).await else {
            return;
        };
        h.ready().await;
        assert_eq!(h.call(payload).await, expected, "{handler}");
        assert_eq!(
            h.call(payload).await,
            expected,
            "{handler}, second invocation"
        );
    }
}

#[tokio::test]
async fn node_errors_carry_a_trace() {
    let Some(h) = start("nodejs20.x", "index.throws", &[("index.js", NODE_STYLES)]).await else {
        return;
    };
    h.ready().await;
    let (id, body, error_type) = h.call_error("{}").await;
    assert_eq!(error_type.as_deref(), Some("Unhandled"));
    assert_eq!(body["errorType"], "Error");
    assert_eq!(body["errorMessage"], "boom");
    assert!(
        body.get("stackTrace").is_none(),
        "node uses `trace`: {body}"
    );
    let trace: Vec<&str> = body["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(trace[0], "Error: boom");
    let file = h.task_root().join("index.js").display().to_string();
    assert!(trace[1].contains(&file), "{trace:?}");
    let out = h.stdout_contains("Invoke Error").await;
    let line = out.lines().find(|l| l.contains("Invoke Error")).unwrap();
    let fields: Vec<&str> = line.splitn(4, '\t').collect();
    assert_eq!(fields[1], id);
    assert_eq!(fields[2], "ERROR");
    assert!(
        fields[3].starts_with("Invoke Error \t{\"errorType\":\"Error\",\"errorMessage\":\"boom\""),
        "{line}"
    );
    // The process keeps serving.
    let (_, body, _) = h.call_error("{}").await;
    assert_eq!(body["errorMessage"], "boom");

    let Some(h) = start("nodejs20.x", "index.cbError", &[("index.js", NODE_STYLES)]).await else {
        return;
    };
    h.ready().await;
    let (_, body, _) = h.call_error("{}").await;
    assert_eq!(body["errorType"], "TypeError");
    assert_eq!(body["errorMessage"], "bad input");

    let Some(h) = start(
        "nodejs20.x",
        "index.rejectsNothing",
        &[("index.js", NODE_STYLES)],
    )
    .await
    else {
        return;
    };
    h.ready().await;
    let (_, body, _) = h.call_error("{}").await;
    assert_eq!(
        body,
        json!({"errorType": "string", "errorMessage": "handled", "trace": []})
    );
}

#[tokio::test]
async fn node_uncaught_exception_fails_the_invocation_and_exits() {
    let app = "exports.handler = (e, c, cb) => { setTimeout(() => { throw new RangeError('late'); }, 1); };\n";
    let Some(mut h) = start("nodejs20.x", "index.handler", &[("index.js", app)]).await else {
        return;
    };
    h.ready().await;
    let (_, body, _) = h.call_error("{}").await;
    assert_eq!(body["errorType"], "RangeError");
    assert_eq!(body["errorMessage"], "late");
    let status = within("exit", h.child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(129));
    assert!(h
        .stdout()
        .contains("\tERROR\tUncaught Exception \t{\"errorType\":\"RangeError\""));
}

#[tokio::test]
async fn node_load_failures_are_init_errors() {
    let Some(mut h) = start(
        "nodejs20.x",
        "missing.handler",
        &[("index.js", NODE_STYLES)],
    )
    .await
    else {
        return;
    };
    let (_, body, error_type, code) = h.init_failure().await;
    assert_eq!(body["errorType"], "Runtime.ImportModuleError");
    assert_eq!(error_type.as_deref(), Some("Runtime.ImportModuleError"));
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .starts_with("Error: Cannot find module 'missing'"),
        "{body}"
    );
    assert!(body["trace"][0]
        .as_str()
        .unwrap()
        .starts_with("Runtime.ImportModuleError: Error: Cannot find module 'missing'"));
    assert_eq!(code, Some(129));
    assert!(h.stdout().contains(
        "\tundefined\tERROR\tUncaught Exception \t{\"errorType\":\"Runtime.ImportModuleError\""
    ));

    let Some(mut h) = start("nodejs20.x", "index.nope", &[("index.js", NODE_STYLES)]).await else {
        return;
    };
    let (_, body, error_type, _) = h.init_failure().await;
    assert_eq!(body["errorType"], "Runtime.HandlerNotFound");
    assert_eq!(
        body["errorMessage"],
        "index.nope is undefined or not exported"
    );
    assert_eq!(error_type.as_deref(), Some("Runtime.HandlerNotFound"));

    let Some(mut h) = start(
        "nodejs20.x",
        "index.notAFunction",
        &[("index.js", NODE_STYLES)],
    )
    .await
    else {
        return;
    };
    let (_, body, _, _) = h.init_failure().await;
    assert_eq!(body["errorMessage"], "index.notAFunction is not a function");

    let Some(mut h) = start(
        "nodejs20.x",
        "index.handler",
        &[("index.js", "exports.handler = async (e => e;\n")],
    )
    .await
    else {
        return;
    };
    let (_, body, _, _) = h.init_failure().await;
    assert_eq!(body["errorType"], "Runtime.UserCodeSyntaxError");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .starts_with("SyntaxError: "),
        "{body}"
    );

    let Some(mut h) = start("nodejs20.x", "nodots", &[]).await else {
        return;
    };
    let (_, body, _, _) = h.init_failure().await;
    assert_eq!(body["errorType"], "Runtime.MalformedHandlerName");
    assert_eq!(body["errorMessage"], "Bad handler");

    let Some(mut h) = start(
        "nodejs20.x",
        "index.handler",
        &[("index.js", "throw new Error('at load');\n")],
    )
    .await
    else {
        return;
    };
    let (_, body, error_type, _) = h.init_failure().await;
    assert_eq!(body["errorType"], "Error");
    assert_eq!(body["errorMessage"], "at load");
    assert_eq!(error_type.as_deref(), Some("Error"));
}

#[tokio::test]
async fn node_esm_and_nested_modules() {
    let Some(h) = start(
        "nodejs22.x",
        "app.handler",
        &[(
            "app.mjs",
            "export const handler = async (event) => ({ esm: event });\n",
        )],
    )
    .await
    else {
        return;
    };
    h.ready().await;
    assert_eq!(h.call("[1]").await, json!({"esm": [1]}));

    // `.js` under a package.json with "type": "module", in a sub-directory:
    // the module is everything up to the first '.' after the last '/'.
    let Some(h) = start(
        "nodejs20.x",
        "src/lib/app.v1.handler",
        &[
            ("package.json", r#"{"type":"module"}"#),
            (
                "src/lib/app.js",
                "export const v1 = { handler: async (e) => ({ nested: e }) };\n",
            ),
        ],
    )
    .await
    else {
        return;
    };
    h.ready().await;
    assert_eq!(h.call("2").await, json!({"nested": 2}));

    let Some(h) = start(
        "nodejs20.x",
        "app.handler",
        &[("app.cjs", "exports.handler = async () => 'cjs';\n")],
    )
    .await
    else {
        return;
    };
    h.ready().await;
    assert_eq!(h.call("null").await, json!("cjs"));
}

const NODE_CONTEXT: &str = r#"
exports.handler = async (event, context) => {
  console.log('hello', { a: 1 });
  console.warn('careful');
  return {
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    memoryLimitInMB: context.memoryLimitInMB,
    logGroupName: context.logGroupName,
    logStreamName: context.logStreamName,
    invokedFunctionArn: context.invokedFunctionArn,
    awsRequestId: context.awsRequestId,
    remaining: context.getRemainingTimeInMillis(),
    clientContext: context.clientContext,
    identity: context.identity,
    waits: context.callbackWaitsForEmptyEventLoop,
    trace: process.env._X_AMZN_TRACE_ID,
    nodePath: process.env.NODE_PATH,
    env: process.env,
  };
};
"#;

#[tokio::test]
async fn node_context_and_console_format() {
    let Some(h) = start_with(
        "nodejs20.x",
        "index.handler",
        &[("index.js", NODE_CONTEXT)],
        &[("TEST_KEY", "TEST_VAL")],
    )
    .await
    else {
        return;
    };
    h.ready().await;
    let (id, outcome) = h
        .invoke_with("{}", |inv| {
            inv.trace_id = "Root=1-abc;Sampled=0".to_owned();
            inv.client_context = Some(r#"{"custom":{"k":"v"}}"#.to_owned());
            inv.cognito_identity = Some(r#"{"cognitoIdentityId":"cid"}"#.to_owned());
        })
        .await;
    let InvokeOutcome::Response(b) = outcome else {
        panic!("{outcome:?}\n{}", h.stderr())
    };
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["functionName"], "fn");
    assert_eq!(v["functionVersion"], "$LATEST");
    assert_eq!(v["memoryLimitInMB"], "256");
    assert_eq!(v["logGroupName"], "/aws/lambda/fn");
    assert_eq!(v["invokedFunctionArn"], FUNCTION_ARN);
    assert_eq!(v["awsRequestId"], id.as_str());
    let remaining = v["remaining"].as_i64().unwrap();
    assert!(remaining > 0 && remaining <= 10_000, "{remaining}");
    assert_eq!(v["clientContext"], json!({"custom": {"k": "v"}}));
    assert_eq!(v["identity"], json!({"cognitoIdentityId": "cid"}));
    assert_eq!(v["waits"], true);
    assert_eq!(v["trace"], "Root=1-abc;Sampled=0");
    assert!(v["nodePath"]
        .as_str()
        .unwrap()
        .starts_with("/opt/nodejs/node20/node_modules:"));
    assert_eq!(v["env"]["TEST_KEY"], "TEST_VAL");
    assert_eq!(v["env"]["AWS_EXECUTION_ENV"], "AWS_Lambda_nodejs20.x");

    let out = h.stdout_contains("careful").await;
    let line = out.lines().find(|l| l.contains("hello")).unwrap();
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields.len(), 4, "{line}");
    assert!(fields[0].ends_with('Z') && fields[0].len() == 24, "{line}");
    assert_eq!(fields[1], id);
    assert_eq!(fields[2], "INFO");
    assert_eq!(fields[3], "hello { a: 1 }");
    assert!(out.contains(&format!("\t{id}\tWARN\tcareful\n")), "{out}");
}

#[tokio::test]
async fn node_oversized_response_then_keeps_serving() {
    let Some(h) = start("nodejs20.x", "index.big", &[("index.js", NODE_STYLES)]).await else {
        return;
    };
    h.ready().await;
    match h.invoke("{}").await.1 {
        InvokeOutcome::ResponseTooLarge { size } => assert_eq!(size, 6 * 1024 * 1024 + 12),
        other => panic!("{other:?}"),
    }
    match h.invoke("{}").await.1 {
        InvokeOutcome::ResponseTooLarge { .. } => {}
        other => panic!("{other:?}"),
    }
}

/// Both of Hearth's bootstraps take the sandbox's channel as their
/// connection and answer with `Hearth-Then-Next` over it (several
/// invocations, an error among them); the handler never sees the variable.
/// A channel that is not there falls back to TCP.
#[tokio::test]
async fn bootstraps_use_the_runtime_api_channel_or_fall_back_to_tcp() {
    const PY: &str = "import os\n\ndef handler(event, context):\n    if event == 'fail':\n        raise ValueError('asked')\n    return [event, os.environ.get('HEARTH_RUNTIME_API_FD')]\n";
    const JS: &str = "exports.handler = async (event) => {\n  if (event === 'fail') throw new Error('asked');\n  return [event, process.env.HEARTH_RUNTIME_API_FD ?? null];\n};\n";
    for channel in [Channel::Only, Channel::Broken] {
        for (runtime, handler, files) in [
            ("python3.11", "app.handler", [("app.py", PY)]),
            ("nodejs20.x", "index.handler", [("index.js", JS)]),
        ] {
            let Some(h) = start_on_channel(runtime, handler, &files, channel).await else {
                continue;
            };
            h.ready().await;
            for i in 0..3 {
                assert_eq!(h.call(&i.to_string()).await, json!([i, null]), "{runtime}");
            }
            let (_, body, error_type) = h.call_error(r#""fail""#).await;
            assert_eq!(body["errorMessage"], "asked", "{runtime}: {body}");
            assert_eq!(error_type.as_deref(), Some("Unhandled"), "{runtime}");
            assert_eq!(h.call("4").await, json!([4, null]), "{runtime}");
        }
    }
}

#[tokio::test]
async fn python_oversized_event_round_trips_under_the_limit() {
    // A payload near 6 MB goes through both directions.
    let Some(h) = start(
        "python3.12",
        "app.handler",
        &[("app.py", "def handler(e, c):\n    return e\n")],
    )
    .await
    else {
        return;
    };
    h.ready().await;
    let big = format!("\"{}\"", "a".repeat(6 * 1024 * 1024 - 100));
    match h.invoke(&big).await.1 {
        InvokeOutcome::Response(b) => assert_eq!(b.len(), big.len()),
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------ runtime-warm

/// The environment a handler saw, as a map.
fn env_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

/// Asserts that the handler saw exactly the assigned environment: the
/// function's variables and the user's, and none of the boot environment's.
fn assert_assigned_env(seen: &Value, assigned: &[(String, String)]) {
    let seen = env_map(seen);
    let assigned: BTreeMap<String, String> = assigned.iter().cloned().collect();
    assert_eq!(
        seen.get("AWS_LAMBDA_FUNCTION_NAME").map(String::as_str),
        Some("fn")
    );
    assert_eq!(seen.get("TEST_KEY").map(String::as_str), Some("TEST_VAL"));
    assert!(!seen.contains_key("HEARTH_AWAIT_ASSIGNMENT"), "{seen:?}");
    assert_eq!(seen, assigned);
}

const PY_WARM_APP: &str = r#"import os, sys, time
import warmmod  # found through the assigned PYTHONPATH

def handler(event, context):
    return {
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "path0": sys.path[0],
        "mod": warmmod.VALUE,
        "function_name": context.function_name,
        "tzname": list(time.tzname),
        "text": "é",
    }
"#;

#[tokio::test]
async fn python_runtime_warm_takes_its_assignment_without_restarting() {
    let Some(h) = start_warm(
        "python3.11",
        &[("app.py", PY_WARM_APP), ("lib/warmmod.py", "VALUE = 7\n")],
    )
    .await
    else {
        return;
    };
    h.runtime_warm().await;
    common::eventually("parked on the assignment", || {
        h.api.is_awaiting_assignment()
    })
    .await;
    let pid = h.child.id();
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), h.api.init())
            .await
            .is_err(),
        "no init before the assignment"
    );

    let task = h.task_root().canonicalize().unwrap();
    let lib = task.join("lib").display().to_string();
    let assigned = h.assign(
        "app.handler",
        &[
            ("TEST_KEY", "TEST_VAL"),
            ("PYTHONPATH", &lib),
            ("TZ", "EST5EDT"),
        ],
    );
    h.ready().await;
    assert_eq!(h.child.id(), pid, "the same process");
    let v = h.call("{}").await;
    assert_assigned_env(&v["env"], &assigned);
    assert_eq!(v["cwd"], task.display().to_string());
    assert_eq!(v["path0"], h.task_root().display().to_string());
    assert_eq!(v["mod"], 7);
    assert_eq!(v["function_name"], "fn");
    assert_eq!(v["tzname"], json!(["EST", "EDT"]));
    // AWS_EXECUTION_ENV arrived with the assignment: python3.11 escapes.
    match h.invoke("{}").await.1 {
        InvokeOutcome::Response(b) => {
            assert!(String::from_utf8_lossy(&b).contains(r#""text": "\u00e9""#))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.api.assign(Assignment::new("app.handler", assigned)),
        Err(AssignError::AlreadyAssigned)
    );
    assert_eq!(h.call("[1]").await["mod"], 7);
}

#[tokio::test]
async fn python_runtime_warm_import_error_is_an_init_error() {
    let Some(mut h) = start_warm("python3.12", &[("app.py", PY_APP)]).await else {
        return;
    };
    h.runtime_warm().await;
    h.assign("missing.handler", &[("TEST_KEY", "TEST_VAL")]);
    let (text, _, error_type, code) = h.init_failure().await;
    assert_eq!(
        text,
        r#"{"errorMessage": "Unable to import module 'missing': No module named 'missing'", "errorType": "Runtime.ImportModuleError", "requestId": "", "stackTrace": []}"#
    );
    assert_eq!(error_type.as_deref(), Some("Runtime.ImportModuleError"));
    assert_eq!(code, Some(1));
}

const NODE_WARM_APP: &str = r#"
const warmmod = require('warmmod'); // found through the assigned NODE_PATH
exports.handler = async (event, context) => ({
  env: process.env,
  cwd: process.cwd(),
  mod: warmmod.value,
  functionName: context.functionName,
  tzOffset: new Date(0).getTimezoneOffset(),
});
"#;

#[tokio::test]
async fn node_runtime_warm_takes_its_assignment_without_restarting() {
    let Some(h) = start_warm(
        "nodejs20.x",
        &[
            ("index.js", NODE_WARM_APP),
            ("node_lib/warmmod/index.js", "exports.value = 7;\n"),
        ],
    )
    .await
    else {
        return;
    };
    h.runtime_warm().await;
    common::eventually("parked on the assignment", || {
        h.api.is_awaiting_assignment()
    })
    .await;
    let pid = h.child.id();
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), h.api.init())
            .await
            .is_err(),
        "no init before the assignment"
    );

    let task = h.task_root().canonicalize().unwrap();
    let node_lib = task.join("node_lib").display().to_string();
    let assigned = h.assign(
        "index.handler",
        &[
            ("TEST_KEY", "TEST_VAL"),
            ("NODE_PATH", &node_lib),
            ("TZ", "EST5EDT"),
        ],
    );
    h.ready().await;
    assert_eq!(h.child.id(), pid, "the same process");
    let v = h.call("{}").await;
    assert_assigned_env(&v["env"], &assigned);
    assert_eq!(v["cwd"], task.display().to_string());
    assert_eq!(v["mod"], 7);
    assert_eq!(v["functionName"], "fn");
    assert_eq!(v["tzOffset"], 300, "TZ from the assignment");
    assert_eq!(
        h.api.assign(Assignment::new("index.handler", assigned)),
        Err(AssignError::AlreadyAssigned)
    );
    assert_eq!(h.call("[1]").await["mod"], 7);
}

#[tokio::test]
async fn node_runtime_warm_import_error_is_an_init_error() {
    let Some(mut h) = start_warm("nodejs20.x", &[("index.js", NODE_STYLES)]).await else {
        return;
    };
    h.runtime_warm().await;
    h.assign("missing.handler", &[("TEST_KEY", "TEST_VAL")]);
    let (_, body, error_type, code) = h.init_failure().await;
    assert_eq!(body["errorType"], "Runtime.ImportModuleError");
    assert_eq!(error_type.as_deref(), Some("Runtime.ImportModuleError"));
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .starts_with("Error: Cannot find module 'missing'"),
        "{body}"
    );
    assert_eq!(code, Some(129));
}

// ------------------------------------------------------------ measurements

/// `Rss`, `Pss`, `Private_Dirty` (KiB) of a process, from smaps_rollup.
fn memory_kib(pid: u32) -> [u64; 3] {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    [field("Rss"), field("Pss"), field("Private_Dirty")]
}

/// Compiles the task's `.py` files, as Hearth would when unpacking code.
fn compile_task(task: &Path) {
    let status = std::process::Command::new(PYTHON)
        .args(["-m", "compileall", "-q"])
        .arg(task)
        .status()
        .unwrap();
    assert!(status.success());
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Memory of parked runtime-warm runtimes and the assignment → first `next`
/// time for a trivial handler. Prints, asserts nothing about speed:
/// `cargo test --release -p hearth-runtime --test bootstraps -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn measure_runtime_warm() {
    use std::time::{Duration, Instant};
    const PY_TRIVIAL: &[(&str, &str)] =
        &[("app.py", "def handler(event, context):\n    return event\n")];
    for (runtime, handler, files, precompile) in [
        ("python3.12", "app.handler", PY_TRIVIAL, false),
        // As if Hearth compiled the code when unpacking it (ARCHITECTURE 5a).
        ("python3.12", "app.handler", PY_TRIVIAL, true),
        (
            "nodejs20.x",
            "index.handler",
            &[("index.js", "exports.handler = async (event) => event;\n")][..],
            false,
        ),
    ] {
        let label = if precompile {
            format!("{runtime} (handler precompiled)")
        } else {
            runtime.to_owned()
        };
        const N: usize = 15;
        // One at a time: memory of a lone parked runtime, then its start.
        let (mut rss, mut pss, mut dirty) = (vec![], vec![], vec![]);
        let (mut assign_ms, mut first_ms, mut boot_ms, mut cold_ms) =
            (vec![], vec![], vec![], vec![]);
        for _ in 0..N {
            let Some((rt, interp, runtime_dir, installed, task)) = prepare(runtime, files) else {
                return;
            };
            if precompile {
                compile_task(task.path());
            }
            let api =
                RuntimeApi::serve(std::net::TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
            let (argv, env) = bootstrap::warm_command_at(
                &rt,
                Path::new(interp),
                &installed,
                task.path(),
                &api.local_addr().to_string(),
            )
            .unwrap();
            let t0 = Instant::now();
            let h = launch(rt, api, runtime_dir, task, &argv, env, Path::new("/"));
            h.runtime_warm().await;
            boot_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            common::eventually("parked", || h.api.is_awaiting_assignment()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let [r, p, d] = memory_kib(h.child.id().unwrap());
            rss.push(r as f64 / 1024.0);
            pss.push(p as f64 / 1024.0);
            dirty.push(d as f64 / 1024.0);
            let t = Instant::now();
            h.assign(handler, &[("TEST_KEY", "TEST_VAL")]);
            h.ready().await;
            assign_ms.push(t.elapsed().as_secs_f64() * 1e3);
            h.call("1").await;
            first_ms.push(t.elapsed().as_secs_f64() * 1e3);
            drop(h);

            // For comparison: a normal (cold) start to the first `next`.
            let (rt, interp, runtime_dir, installed, task) = prepare(runtime, files).unwrap();
            if precompile {
                compile_task(task.path());
            }
            let api =
                RuntimeApi::serve(std::net::TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
            let env = function_env(&rt, handler, &[], &api, task.path());
            let argv = bootstrap::command_at(&rt, Path::new(interp), &installed, task.path());
            let cwd = task.path().to_path_buf();
            let t = Instant::now();
            let h = launch(rt, api, runtime_dir, task, &argv, env, &cwd);
            h.ready().await;
            cold_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "{label}: parked alone: RSS {:.2} MiB, PSS {:.2} MiB, Private_Dirty {:.2} MiB (medians of {N})",
            median(rss),
            median(pss),
            median(dirty)
        );
        println!(
            "{label}: spawn → runtime_ready {:.1} ms; assign → init Ready (first next) {:.2} ms; assign → first response {:.2} ms; cold start: spawn → first next {:.1} ms",
            median(boot_ms),
            median(assign_ms),
            median(first_ms),
            median(cold_ms)
        );

        if precompile {
            continue;
        }
        // Many parked at once: PSS shares the interpreter's pages out.
        const M: usize = 20;
        let mut parked = Vec::new();
        for _ in 0..M {
            parked.push(start_warm(runtime, files).await.unwrap());
        }
        for h in &parked {
            h.runtime_warm().await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sums = parked.iter().fold([0u64; 3], |acc, h| {
            let m = memory_kib(h.child.id().unwrap());
            [acc[0] + m[0], acc[1] + m[1], acc[2] + m[2]]
        });
        println!(
            "{runtime}: {M} parked together: per process RSS {:.2} MiB, PSS {:.2} MiB, Private_Dirty {:.2} MiB",
            sums[0] as f64 / 1024.0 / M as f64,
            sums[1] as f64 / 1024.0 / M as f64,
            sums[2] as f64 / 1024.0 / M as f64
        );
    }
}
