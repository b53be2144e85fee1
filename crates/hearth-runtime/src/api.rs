//! The Lambda Runtime API (`2018-06-01`) that each sandbox's runtime talks to.
//!
//! The daemon gives every sandbox its own endpoint: a listening socket at
//! `127.0.0.1:9001` inside the sandbox's network namespace, served from the
//! daemon's tokio runtime by [`RuntimeApi::serve`]. The supervisor then drives
//! the sandbox through two calls:
//!
//! - [`RuntimeApi::init`] resolves once the runtime is ready (its first
//!   `GET /runtime/invocation/next`) or has reported an init failure
//!   (`POST /runtime/init/error`);
//! - [`RuntimeApi::invoke`] hands one event to the runtime's `next` long poll
//!   and resolves with what the runtime answered for that request id.
//!
//! A **runtime-warm** sandbox comes before both: its runtime (Hearth's
//! Python or Node bootstrap started with `HEARTH_AWAIT_ASSIGNMENT=1`, see
//! [`crate::bootstrap::warm_command`]) boots with a minimal environment and
//! long-polls `GET /2018-06-01/runtime/hearth/assignment`, a Hearth
//! extension that official runtime clients never call. Two more calls drive
//! it:
//!
//! - [`RuntimeApi::runtime_ready`] resolves once the runtime has asked for
//!   its assignment: it is runtime-warm;
//! - [`RuntimeApi::assign`] gives it a function: the poll answers 200
//!   `{"handler": "...", "env": {"K": "V", ...}}` (an [`Assignment`]), the
//!   runtime replaces its environment with exactly `env`, loads the handler,
//!   and the normal flow continues: `init` resolves at its first `next` (or
//!   its `init/error`), then `invoke`.
//!
//! ```no_run
//! # async fn demo(listener: std::net::TcpListener, env: hearth_runtime::api::RuntimeEnv<'_>) -> std::io::Result<()> {
//! use hearth_runtime::api::{Assignment, InitOutcome, RuntimeApi, RuntimeReady};
//! let api = RuntimeApi::serve(listener)?;
//! // ... start the runtime with bootstrap::warm_command's argv and environment ...
//! if let RuntimeReady::Ready = api.runtime_ready().await {
//!     // The sandbox now waits in the general sub-pool; later, placement picks it:
//!     if api.assign(Assignment::for_function(&env)).is_ok() {
//!         if let InitOutcome::Ready = api.init().await { /* function-warm */ }
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! ```no_run
//! # async fn demo(listener: std::net::TcpListener) -> std::io::Result<()> {
//! use hearth_runtime::api::{InitOutcome, Invocation, InvokeOutcome, RuntimeApi};
//! let api = RuntimeApi::serve(listener)?;
//! // ... start the runtime with AWS_LAMBDA_RUNTIME_API pointing at the listener ...
//! if let InitOutcome::Ready = api.init().await {
//!     let inv = Invocation::new("8f3c…", bytes::Bytes::from_static(b"{}"), 1_700_000_000_000, "arn:…");
//!     match api.invoke(inv).await {
//!         InvokeOutcome::Response(body) => println!("{body:?}"),
//!         other => println!("{other:?}"),
//!     }
//! }
//! api.shutdown();
//! # Ok(()) }
//! ```
//!
//! # The state machine
//!
//! One sandbox runs one invocation at a time. The rules, as AWS's Runtime
//! Interface Emulator applies them (state first, then request id):
//!
//! | request | state | answer |
//! |---|---|---|
//! | `GET …/invocation/next` | an invocation is queued | 200 with it at once |
//! | | nothing queued | parked until [`RuntimeApi::invoke`] (no timeout) |
//! | | another `next` is parked | the newer one wins; the older gets 403 `InvalidStateTransition` (a runtime only ever has one poll outstanding, so the older one is a dead or retried connection) |
//! | | an invocation is in flight | 403 `InvalidStateTransition` (answer it first) |
//! | `POST …/{id}/response`, `…/{id}/error` | nothing in flight (before any `next`, after the answer, or after the invoker abandoned it) | 403 `InvalidStateTransition` |
//! | | another id is in flight | 400 `InvalidRequestID` |
//! | | this id is in flight, body ≤ 6 MB | 202 `{"status":"OK"}` |
//! | | this id is in flight, body > 6 MB | 413 `RequestEntityTooLarge`; the invoker gets [`InvokeOutcome::ResponseTooLarge`] |
//! | | this id is in flight, body ≤ 6 MB, header `Hearth-Then-Next: 1` (Hearth's own bootstraps) | accepted as above, then answered as a `GET …/invocation/next` made at that moment (the next invocation, parked until there is one): one exchange per invocation |
//! | `POST …/init/error` | before the first `next`, once | 202 |
//! | | otherwise | 403 `InvalidStateTransition` |
//! | `GET …/hearth/assignment` | init has started (a `next` or `init/error` was accepted) | 403 `InvalidStateTransition` |
//! | | [`RuntimeApi::assign`] has been called | 200 with the assignment at once (again to a repeated poll, e.g. a retried connection, until init starts) |
//! | | no assignment yet | parked until [`RuntimeApi::assign`] (no timeout); a newer poll supersedes an older one (403), as for `next` |
//! | `GET …/invocation/next`, `POST …/init/error` | the runtime asked for an assignment, or one was given, and no poll has received it yet | 403 `InvalidStateTransition` (checked before the rows above) |
//! | unknown path / wrong method | | 404 / 405 |
//!
//! Every error body is `{"errorMessage": …, "errorType": …}`.
//!
//! ## Runtime-warm phases
//!
//! ```text
//!  booting ──poll──▶ awaiting assignment ──assign──▶ assigned ──next──▶ ready (function-warm)
//!     │     (runtime_ready: Ready)         (poll answered)  └──init/error──▶ failed
//!     │
//!     ├──assign──▶ assignment stored ──poll──▶ assigned (answered at once; runtime_ready: Ready)
//!     └──next / init/error (never polled, nothing assigned) ──▶ plain init
//!                                   (runtime_ready: InitStarted; assign refused)
//! ```
//!
//! Decisions:
//! - [`RuntimeApi::assign`] accepts exactly one assignment in the sandbox's
//!   life ([`AssignError::AlreadyAssigned`] afterwards): a sandbox serves one
//!   function. It is refused once init has started without one
//!   ([`AssignError::InitStarted`]): that runtime already runs with
//!   whatever environment it was started with.
//! - Once the runtime has asked for an assignment, or the daemon has given
//!   one, `next` and `init/error` are refused until a poll has received it,
//!   so a runtime can never start a function with the boot environment.
//! - [`RuntimeApi::runtime_ready`] resolves [`RuntimeReady::Ready`] at the
//!   first poll even if the assignment was already there and answered it at
//!   once; [`RuntimeReady::InitStarted`] if the runtime skipped the
//!   assignment (a `provided` runtime or a bootstrap started without
//!   `HEARTH_AWAIT_ASSIGNMENT`); [`RuntimeReady::Closed`] if the endpoint
//!   shut down first. Like `init`, it does not notice a runtime that dies:
//!   the supervisor watches the process.
//!
//! If the future returned by [`RuntimeApi::invoke`] is dropped (the invoker
//! timed out or gave up), the invocation is abandoned: if it was still
//! queued the runtime never sees it; if the runtime already has it, its late
//! answer is refused (403, or 400 once a newer invocation is in flight) and
//! never reaches anyone. Bodies are read whole before the state is checked,
//! so a refused request leaves its keep-alive connection usable.

mod environment;
mod http;
mod state;

use bytes::Bytes;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{oneshot, watch};

pub(crate) use environment::{default_path, DEFAULT_LANG, DEFAULT_TZ};
pub use environment::{
    log_stream_name, runtime_environment, InitializationType, RuntimeEnv, SANDBOX_RUNTIME_API,
};

use state::Machine;

/// The largest response (or error) body a runtime may post: Lambda's 6 MB
/// synchronous payload limit.
pub const RESPONSE_MAX_BYTES: usize = hearth_types::limits::SYNC_PAYLOAD_MAX_BYTES;

/// One event for the runtime, with what `next` tells it in headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`; unique per invocation.
    pub request_id: String,
    /// The event, as the invoker sent it (JSON text).
    pub payload: Bytes,
    /// `Lambda-Runtime-Deadline-Ms`: when the invocation times out, epoch ms.
    pub deadline_ms: u64,
    /// `Lambda-Runtime-Invoked-Function-Arn`: the ARN the caller used
    /// (qualified if the caller gave a qualifier).
    pub invoked_function_arn: String,
    /// `Lambda-Runtime-Trace-Id`; omitted when empty.
    pub trace_id: String,
    /// `Lambda-Runtime-Client-Context`: the JSON text of the client context,
    /// i.e. `X-Amz-Client-Context` already base64-decoded by the frontend.
    pub client_context: Option<String>,
    /// `Lambda-Runtime-Cognito-Identity`: JSON text, when there is one.
    pub cognito_identity: Option<String>,
}

impl Invocation {
    /// An invocation with no trace id, client context or identity.
    pub fn new(
        request_id: impl Into<String>,
        payload: Bytes,
        deadline_ms: u64,
        invoked_function_arn: impl Into<String>,
    ) -> Self {
        Self {
            request_id: request_id.into(),
            payload,
            deadline_ms,
            invoked_function_arn: invoked_function_arn.into(),
            trace_id: String::new(),
            client_context: None,
            cognito_identity: None,
        }
    }
}

/// How an invocation ended, as far as the Runtime API can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeOutcome {
    /// The runtime posted `/response` with this body (at most 6 MB).
    Response(Bytes),
    /// The runtime posted `/error`: `body` is its error JSON exactly as
    /// posted (it may be anything); `error_type` is its
    /// `Lambda-Runtime-Function-Error-Type` header, if it sent one
    /// (`awslambdaric` does not).
    FunctionError {
        body: Bytes,
        error_type: Option<String>,
    },
    /// The runtime posted a response or error of `size` bytes, over the 6 MB
    /// limit; it was told 413 and the body was discarded.
    ResponseTooLarge { size: usize },
    /// The Runtime API was shut down before the runtime answered.
    Closed,
}

/// How a runtime's initialisation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// The runtime asked for its first event.
    Ready,
    /// The runtime posted `/runtime/init/error` (it exits afterwards):
    /// `body` is its error JSON as posted, `error_type` its
    /// `Lambda-Runtime-Function-Error-Type` header.
    Failed {
        body: Bytes,
        error_type: Option<String>,
    },
    /// The Runtime API was shut down before either happened.
    Closed,
}

/// What a runtime-warm sandbox is specialised with: the handler and the
/// complete environment of the function (as [`runtime_environment`] builds
/// it). Sent to the runtime as `{"handler": "...", "env": {"K": "V", ...}}`;
/// the runtime's environment becomes exactly `env` (a later duplicate of a
/// name wins).
///
/// `env` should hold the same `AWS_LAMBDA_RUNTIME_API` the runtime was
/// started with: the bootstrap keeps the connection it already has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// `_HANDLER`: what the bootstrap loads, e.g. `app.handler`.
    pub handler: String,
    /// The function's whole environment.
    pub env: Vec<(String, String)>,
}

impl Assignment {
    pub fn new(handler: impl Into<String>, env: Vec<(String, String)>) -> Self {
        Self {
            handler: handler.into(),
            env,
        }
    }

    /// The assignment for the function `env` describes: its handler and
    /// [`runtime_environment`].
    pub fn for_function(env: &RuntimeEnv<'_>) -> Self {
        Self::new(env.handler, runtime_environment(env))
    }

    /// The JSON the assignment endpoint answers with.
    fn to_json(&self) -> Bytes {
        let env: serde_json::Map<String, serde_json::Value> = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let body = serde_json::json!({"handler": self.handler, "env": env});
        // Serialising a `Value` of strings cannot fail.
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }
}

/// How waiting for a runtime-warm runtime ended ([`RuntimeApi::runtime_ready`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeReady {
    /// The runtime asked for its assignment: it is runtime-warm (or, if the
    /// assignment was already given, it has received it).
    Ready,
    /// The runtime began its init (`next` or `init/error`) without asking
    /// for an assignment: it does not speak Hearth's extension (a
    /// `provided` runtime, or a bootstrap started without
    /// `HEARTH_AWAIT_ASSIGNMENT=1`). [`RuntimeApi::assign`] is refused.
    InitStarted,
    /// The Runtime API was shut down before either happened.
    Closed,
}

/// Why [`RuntimeApi::assign`] refused an assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AssignError {
    /// The sandbox already has an assignment; it serves one function only.
    #[error("the sandbox is already assigned to a function")]
    AlreadyAssigned,
    /// The runtime began its init without asking for an assignment.
    #[error("the runtime started without asking for an assignment")]
    InitStarted,
    /// The Runtime API is shut down.
    #[error("the Runtime API is shut down")]
    Closed,
}

/// The Runtime API endpoint of one sandbox. Cheap to clone; the endpoint is
/// shut down by [`RuntimeApi::shutdown`] or when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct RuntimeApi {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

/// What the accept loop, the connections and the handles share.
#[derive(Debug)]
struct Shared {
    machine: Mutex<Machine>,
    ready: watch::Sender<Option<RuntimeReady>>,
    init: watch::Sender<InitOutcomeState>,
    shutdown: watch::Sender<bool>,
    local_addr: SocketAddr,
}

/// `init`'s watched value: `None` while the runtime is initialising.
type InitOutcomeState = Option<InitOutcome>;

/// Shuts the endpoint down when the last [`RuntimeApi`] handle goes away
/// (the accept loop holds [`Shared`], not this).
#[derive(Debug)]
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

impl RuntimeApi {
    /// Serves the Runtime API on `listener` (already bound and listening)
    /// from the current tokio runtime. Fails if called outside a tokio
    /// runtime or if the socket cannot be made non-blocking.
    pub fn serve(listener: std::net::TcpListener) -> std::io::Result<Self> {
        let handle = tokio::runtime::Handle::try_current().map_err(|e| {
            std::io::Error::other(format!("RuntimeApi::serve needs a tokio runtime: {e}"))
        })?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let listener = {
            let _guard = handle.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (ready, _) = watch::channel(None);
        let (init, _) = watch::channel(None);
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            machine: Mutex::new(Machine::default()),
            ready,
            init,
            shutdown,
            local_addr,
        });
        handle.spawn(http::accept_loop(listener, shared.clone()));
        Ok(Self {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
        })
    }

    /// Also serves the Runtime API on `channel`, one end of a connected
    /// Unix socket pair whose other end the sandbox's runtime holds: the
    /// same endpoint as the listener's, without TCP. Hearth's own
    /// bootstraps use it when the sandbox gives it to them
    /// (`HEARTH_RUNTIME_API_FD`), and fall back to TCP if it fails. Fails
    /// outside a tokio runtime or if the socket cannot be made non-blocking.
    pub fn serve_channel(&self, channel: std::os::unix::net::UnixStream) -> std::io::Result<()> {
        let handle = tokio::runtime::Handle::try_current().map_err(|e| {
            std::io::Error::other(format!(
                "RuntimeApi::serve_channel needs a tokio runtime: {e}"
            ))
        })?;
        channel.set_nonblocking(true)?;
        let stream = {
            let _guard = handle.enter();
            tokio::net::UnixStream::from_std(channel)?
        };
        handle.spawn(http::serve_connection(stream, self.shared.clone()));
        Ok(())
    }

    /// The address the endpoint listens on (as seen in its network namespace).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Resolves when the runtime first asks for its assignment
    /// ([`RuntimeReady::Ready`]: the sandbox is runtime-warm), starts its
    /// init without asking ([`RuntimeReady::InitStarted`]), or the endpoint
    /// shuts down ([`RuntimeReady::Closed`]); at once if that has already
    /// happened. Cancel-safe.
    pub async fn runtime_ready(&self) -> RuntimeReady {
        let mut rx = self.shared.ready.subscribe();
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(v) => *v,
            Err(_) => None,
        };
        outcome.unwrap_or(RuntimeReady::Closed)
    }

    /// Assigns the sandbox to a function: `assignment` goes to the runtime's
    /// parked assignment poll, or is kept for the poll it makes. Then wait
    /// for [`RuntimeApi::init`] as for any start. Refused if the sandbox
    /// already has an assignment, if its runtime started without asking
    /// for one, or if the endpoint is shut down (see the module docs).
    pub fn assign(&self, assignment: Assignment) -> Result<(), AssignError> {
        let json = assignment.to_json();
        self.shared.machine.lock().assign(json)
    }

    /// Whether the runtime waits on the assignment endpoint and has not
    /// been assigned: an idle runtime-warm sandbox (a health check).
    pub fn is_awaiting_assignment(&self) -> bool {
        self.shared.machine.lock().is_awaiting_assignment()
    }

    /// Resolves when the runtime first calls `next` ([`InitOutcome::Ready`])
    /// or posts `init/error` ([`InitOutcome::Failed`]); at once if that has
    /// already happened. Cancel-safe: dropping it changes nothing.
    pub async fn init(&self) -> InitOutcome {
        let mut rx = self.shared.init.subscribe();
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        outcome.unwrap_or(InitOutcome::Closed)
    }

    /// Hands `inv` to the runtime (to its parked `next`, or to the next one
    /// it makes) and resolves with its answer for `inv.request_id`.
    ///
    /// Call it after [`RuntimeApi::init`] returned `Ready`; invocations made
    /// while one is in progress wait their turn, in order. Dropping the
    /// future abandons the invocation (see the module docs).
    pub async fn invoke(&self, inv: Invocation) -> InvokeOutcome {
        let (tx, rx) = oneshot::channel();
        let request_id = inv.request_id.clone();
        if !self.shared.machine.lock().submit(inv, tx) {
            return InvokeOutcome::Closed;
        }
        let mut guard = AbandonOnDrop {
            shared: &self.shared,
            request_id,
            armed: true,
        };
        let outcome = rx.await.unwrap_or(InvokeOutcome::Closed);
        guard.armed = false;
        outcome
    }

    /// Whether the runtime is parked in `next` with nothing queued or in
    /// flight: it has finished everything it was given.
    pub fn is_idle(&self) -> bool {
        self.shared.machine.lock().is_idle()
    }

    /// Stops accepting, drops every connection, and makes pending and future
    /// [`RuntimeApi::runtime_ready`] / [`RuntimeApi::init`] /
    /// [`RuntimeApi::invoke`] calls return `Closed` (and
    /// [`RuntimeApi::assign`] fail).
    /// Idempotent.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }
}

impl Shared {
    fn shutdown(&self) {
        // Connections first: a parked `next` is then dropped with its
        // connection rather than answered.
        self.shutdown.send_replace(true);
        self.machine.lock().close();
        self.ready.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(RuntimeReady::Closed);
                true
            } else {
                false
            }
        });
        self.init.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(InitOutcome::Closed);
                true
            } else {
                false
            }
        });
    }
}

/// Abandons an invocation whose `invoke` future is dropped before the answer.
struct AbandonOnDrop<'a> {
    shared: &'a Shared,
    request_id: String,
    armed: bool,
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed && self.shared.machine.lock().abandon(&self.request_id) {
            tracing::debug!(request_id = %self.request_id, "invocation abandoned by its invoker");
        }
    }
}
