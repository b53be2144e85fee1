//! One synchronous invocation, from the resolved function to Lambda's answer.

use crate::instance::Instance;
use crate::logs::{frame, tail, LogPump, Report};
use crate::placement::{Placement, WarmKey};
use crate::Executor;
use base64::Engine;
use bytes::Bytes;
use hearth_runtime::api::{InitOutcome, Invocation, InvokeOutcome, RuntimeApi};
use hearth_sandbox::{ExitStatus, SandboxSpec};
use hearth_store::VersionSelector;
use hearth_types::function::{FunctionState, VersionRecord};
use hearth_types::LambdaError;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// An invocation as the Invoke API parsed it.
#[derive(Debug, Clone)]
pub struct InvokeInput {
    pub account_id: String,
    pub function_name: String,
    pub qualifier: Option<String>,
    /// Valid JSON (the API checked it).
    pub payload: Bytes,
    /// `X-Amz-Log-Type: Tail`.
    pub tail: bool,
    /// `X-Amz-Client-Context`, decoded from base64.
    pub client_context: Option<String>,
    /// `X-Amz-Invocation-Type: DryRun`: resolve and check, run nothing.
    pub dry_run: bool,
}

/// What the Invoke API answers.
#[derive(Debug, Clone)]
pub struct InvokeOutput {
    pub request_id: String,
    pub executed_version: String,
    /// `X-Amz-Function-Error: Unhandled`.
    pub function_error: bool,
    pub body: Bytes,
    /// `X-Amz-Log-Result`: base64 of the last 4 KB of this invocation's log.
    pub log_result: Option<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn error_body(error_type: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({"errorType": error_type, "errorMessage": message}).to_string())
}

/// How an invocation on a sandbox ended.
enum Ending {
    Answered(InvokeOutcome),
    TimedOut,
    /// The sandbox died; its exit status once the launcher was reaped.
    Exited(Option<ExitStatus>),
}

impl Executor {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Executor) -> Result<T, LambdaError> + Send + 'static,
    ) -> Result<T, LambdaError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| LambdaError::service(format!("worker failed: {e}")))?
    }

    /// Resolves the version to run: `$LATEST`, a number, or an alias, whose
    /// routing weights pick between its two versions.
    fn resolve_version(&self, input: &InvokeInput) -> Result<VersionRecord, LambdaError> {
        let reg = &self.0.registry;
        let sel = VersionSelector::from_qualifier(input.qualifier.as_deref());
        let sel = match sel {
            VersionSelector::Alias(alias) => {
                let a = reg
                    .get_alias(&input.account_id, &input.function_name, &alias)
                    .map_err(store_err)?;
                let roll: f64 = rand_unit();
                let mut acc = 0.0;
                let mut chosen = a.function_version.clone();
                for (v, w) in &a.routing {
                    acc += w;
                    if roll < acc {
                        chosen = v.clone();
                        break;
                    }
                }
                VersionSelector::Version(chosen)
            }
            other => other,
        };
        reg.get_version(&input.account_id, &input.function_name, &sel)
            .map_err(store_err)
    }

    /// Runs one synchronous invocation.
    pub async fn invoke(&self, input: InvokeInput) -> Result<InvokeOutput, LambdaError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let inp = input.clone();
        let (version, reserved, reserved_total) = self
            .blocking(move |me| {
                let v = me.resolve_version(&inp)?;
                let reserved =
                    me.0.registry
                        .get_reserved_concurrency(&inp.account_id, &inp.function_name)
                        .map_err(store_err)?;
                let usage =
                    me.0.registry
                        .account_usage(&inp.account_id)
                        .map_err(store_err)?;
                Ok((v, reserved, usage.reserved_concurrency))
            })
            .await?;
        if version.lifecycle.state != FunctionState::Active {
            return Err(LambdaError::conflict(format!(
                "The operation cannot be performed at this time. The function is currently in the following state: {}",
                version.lifecycle.state.as_str()
            )));
        }
        if input.dry_run {
            return Ok(InvokeOutput {
                request_id,
                executed_version: version.version.clone(),
                function_error: false,
                body: Bytes::new(),
                log_result: None,
            });
        }
        let _slot = self.0.concurrency.admit(
            &input.account_id,
            &input.function_name,
            reserved,
            self.0.config.account_concurrency,
            u32::try_from(reserved_total).unwrap_or(u32::MAX),
        )?;
        if let Some(why) = &self.0.cannot_isolate {
            return Err(LambdaError::service(format!(
                "This Hearth node cannot isolate functions, so it runs none: {why}"
            )));
        }

        let key = WarmKey {
            account_id: version.account_id.clone(),
            function_name: version.function_name.clone(),
            version: version.version.clone(),
            revision_id: version.revision_id.clone(),
        };
        let placed = self.0.idle.lock().place(&key);
        let mut instance = match placed {
            Placement::Warm(i) => *i,
            Placement::Cold => match self.cold_start(&version, key, &request_id).await {
                Ok(i) => i,
                Err(failed) => return Ok(failed.into_output(self, &input, &version)),
            },
        };
        Ok(self
            .run(&mut instance, &version, &input, request_id)
            .await
            .finish(self, instance))
    }

    /// Starts a sandbox for `version` and waits for its runtime to initialise.
    async fn cold_start(
        &self,
        version: &VersionRecord,
        key: WarmKey,
        request_id: &str,
    ) -> Result<Instance, FailedStart> {
        let started = Instant::now();
        let seq = self.0.sandbox_seq.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "sb{seq}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let spec = self.spec(version, &id).map_err(FailedStart::Error)?;
        let backend = self.0.backend.clone();
        let sandbox = tokio::task::spawn_blocking(move || backend.start(&spec))
            .await
            .map_err(|e| {
                FailedStart::Error(LambdaError::service(format!("sandbox start failed: {e}")))
            })?
            .map_err(|e| FailedStart::Error(LambdaError::service(e.to_string())))?;
        let control: Arc<dyn hearth_sandbox::SandboxControl> = Arc::from(sandbox.control);
        let destroy = |c: &Arc<dyn hearth_sandbox::SandboxControl>| {
            let c = c.clone();
            tokio::task::spawn_blocking(move || c.destroy());
        };
        let logs = match LogPump::start(sandbox.stdout, sandbox.stderr) {
            Ok(l) => l,
            Err(e) => {
                destroy(&control);
                return Err(FailedStart::Error(LambdaError::service(format!(
                    "cannot read the sandbox's output: {e}"
                ))));
            }
        };
        let api = match RuntimeApi::serve(sandbox.runtime_api) {
            Ok(a) => a,
            Err(e) => {
                destroy(&control);
                return Err(FailedStart::Error(LambdaError::service(format!(
                    "cannot serve the Runtime API: {e}"
                ))));
            }
        };
        let init = tokio::select! {
            o = api.init() => Some(o),
            () = logs.closed() => None,
            () = tokio::time::sleep(self.0.config.init_timeout) => {
                let output = logs.take().await;
                api.shutdown();
                destroy(&control);
                return Err(FailedStart::Timeout { output, limit: self.0.config.init_timeout, request_id: request_id.to_owned() });
            }
        };
        let init_duration = started.elapsed();
        match init {
            Some(InitOutcome::Ready) => Ok(Instance {
                id,
                key,
                generation: self.generation(&version.account_id, &version.function_name),
                control,
                api,
                init_output: logs.take().await,
                logs,
                memory_mb: version.config.memory_size,
                last_used: Instant::now(),
                init_duration: Some(init_duration),
            }),
            Some(InitOutcome::Failed { body, .. }) => {
                let output = logs.take().await;
                api.shutdown();
                destroy(&control);
                Err(FailedStart::InitError {
                    body,
                    output,
                    init_duration,
                })
            }
            None | Some(InitOutcome::Closed) => {
                let output = logs.take().await;
                api.shutdown();
                let c = control.clone();
                let status = tokio::task::spawn_blocking(move || c.wait()).await.ok();
                let oom = control.oom_killed();
                destroy(&control);
                Err(FailedStart::Exited {
                    status,
                    oom,
                    output,
                    init_duration,
                    request_id: request_id.to_owned(),
                })
            }
        }
    }

    fn spec(&self, v: &VersionRecord, id: &str) -> Result<SandboxSpec, LambdaError> {
        let c = &v.config;
        let interpreter = self.0.runtimes.interpreter(&c.runtime)?;
        let argv = hearth_runtime::bootstrap::command(&c.runtime, interpreter.as_deref());
        let env = hearth_runtime::api::runtime_environment(&hearth_runtime::api::RuntimeEnv {
            function_name: &v.function_name,
            function_version: &v.version,
            memory_mb: c.memory_size,
            runtime: &c.runtime,
            handler: &c.handler,
            region: &self.0.node.region,
            initialization_type: hearth_runtime::api::InitializationType::OnDemand,
            runtime_api: hearth_runtime::api::SANDBOX_RUNTIME_API,
            log_stream_name: &hearth_runtime::api::log_stream_name(&v.version, SystemTime::now()),
            user_env: &c.environment.clone().unwrap_or_default(),
        });
        Ok(SandboxSpec {
            id: id.to_owned(),
            account_id: v.account_id.clone(),
            memory_mb: c.memory_size,
            pids_max: self.0.config.pids_max,
            task_root: Some(self.0.code.unpacked_dir(&v.code.sha256_hex)),
            runtime_dir: Some(self.0.config.runtime_dir.clone()),
            tmp_mb: self.0.config.tmp_mb,
            argv,
            env,
            cwd: "/var/task".to_owned(),
        })
    }

    /// Delivers the event and waits for the answer, the deadline or the
    /// sandbox's death.
    async fn run(
        &self,
        instance: &mut Instance,
        version: &VersionRecord,
        input: &InvokeInput,
        request_id: String,
    ) -> Finished {
        let timeout = Duration::from_secs(u64::from(version.config.timeout));
        let start = Instant::now();
        let deadline_ms = u64::try_from(now_ms()).unwrap_or(0) + timeout.as_millis() as u64;
        let inv = Invocation {
            request_id: request_id.clone(),
            payload: input.payload.clone(),
            deadline_ms,
            invoked_function_arn: self.0.node.arn(
                &version.account_id,
                &version.function_name,
                input.qualifier.as_deref(),
            ),
            trace_id: format!(
                "Root=1-{:08x}-{};Parent={};Sampled=0",
                now_ms() / 1000,
                &uuid::Uuid::new_v4().simple().to_string()[..24],
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            ),
            client_context: input.client_context.clone(),
            cognito_identity: None,
        };
        let ending = tokio::select! {
            o = instance.api.invoke(inv) => match o {
                // The endpoint closed under us: the sandbox is going away.
                InvokeOutcome::Closed => Ending::Exited(None),
                o => Ending::Answered(o),
            },
            () = tokio::time::sleep(timeout) => Ending::TimedOut,
            () = instance.logs.closed() => Ending::Exited(None),
        };
        let ending = match ending {
            // The pipes close a moment before the launcher is reaped: wait
            // (bounded) for the status the error message reports.
            Ending::Exited(_) => {
                let c = instance.control.clone();
                let wait = tokio::task::spawn_blocking(move || c.wait());
                Ending::Exited(
                    tokio::time::timeout(Duration::from_secs(5), wait)
                        .await
                        .ok()
                        .and_then(Result::ok),
                )
            }
            other => other,
        };
        let duration = start.elapsed();
        let output = instance.logs.take().await;
        Finished {
            request_id,
            ending,
            duration,
            output,
            timeout,
            executed_version: version.version.clone(),
        }
    }
}

/// An invocation that ran (or tried to) on a sandbox.
struct Finished {
    request_id: String,
    ending: Ending,
    duration: Duration,
    output: Vec<u8>,
    timeout: Duration,
    executed_version: String,
}

impl Finished {
    /// Builds Lambda's answer and decides the sandbox's fate.
    fn finish(self, exec: &Executor, mut instance: Instance) -> InvokeOutput {
        let id = &self.request_id;
        let mut extra = Vec::new();
        let mut keep = true;
        let (function_error, body) = match self.ending {
            Ending::Answered(InvokeOutcome::Response(b)) => (false, b),
            Ending::Answered(InvokeOutcome::FunctionError { body, .. }) => (true, body),
            Ending::Answered(InvokeOutcome::Closed) => (
                true,
                error_body(
                    "Runtime.ExitError",
                    "Runtime exited without providing a reason",
                ),
            ),
            Ending::Answered(InvokeOutcome::ResponseTooLarge { size }) => {
                let msg = format!(
                    "Response payload size ({size} bytes) exceeded maximum allowed payload size ({} bytes).",
                    hearth_types::limits::SYNC_PAYLOAD_MAX_BYTES
                );
                (true, error_body("Function.ResponseSizeTooLarge", &msg))
            }
            Ending::TimedOut => {
                keep = false;
                let secs = self.timeout.as_secs_f64();
                extra.push(format!(
                    "{} {id} Task timed out after {secs:.2} seconds",
                    iso_now()
                ));
                (
                    true,
                    error_body(
                        "Sandbox.Timedout",
                        &format!("RequestId: {id} Error: Task timed out after {secs:.2} seconds"),
                    ),
                )
            }
            Ending::Exited(status) => {
                keep = false;
                let (etype, why) = exit_reason(status, instance.control.oom_killed());
                let msg = format!("RequestId: {id} Error: {why}");
                extra.push(msg.clone());
                extra.push(etype.to_owned());
                (true, error_body(etype, &msg))
            }
        };
        let report = Report {
            duration: self.duration,
            memory_mb: instance.memory_mb,
            max_memory_used_mb: instance
                .control
                .peak_memory_bytes()
                .map_or(0, |b| b.div_ceil(1024 * 1024)),
            init_duration: instance.init_duration.take(),
        };
        let init_output = std::mem::take(&mut instance.init_output);
        let log = frame(
            id,
            &self.executed_version,
            &init_output,
            &self.output,
            &extra,
            &report,
        );
        exec.0.logs.write(
            &instance.key.account_id,
            &instance.key.function_name,
            now_ms(),
            &log,
        );
        if keep {
            exec.release(instance);
        } else {
            instance.destroy();
        }
        InvokeOutput {
            request_id: self.request_id.clone(),
            executed_version: self.executed_version,
            function_error,
            body,
            log_result: None,
        }
        .with_log(&log)
    }
}

impl InvokeOutput {
    fn with_log(mut self, log: &str) -> Self {
        self.log_result = Some(base64::engine::general_purpose::STANDARD.encode(tail(log)));
        self
    }
}

/// A cold start that did not produce a ready sandbox.
enum FailedStart {
    Error(LambdaError),
    InitError {
        body: Bytes,
        output: Vec<u8>,
        init_duration: Duration,
    },
    Exited {
        status: Option<ExitStatus>,
        oom: bool,
        output: Vec<u8>,
        init_duration: Duration,
        request_id: String,
    },
    Timeout {
        output: Vec<u8>,
        limit: Duration,
        request_id: String,
    },
}

impl FailedStart {
    fn into_output(self, exec: &Executor, input: &InvokeInput, v: &VersionRecord) -> InvokeOutput {
        let request_id = match &self {
            Self::Exited { request_id, .. } | Self::Timeout { request_id, .. } => {
                request_id.clone()
            }
            _ => uuid::Uuid::new_v4().to_string(),
        };
        let (body, output, extra, init) = match self {
            Self::Error(e) => {
                // Not the function's fault: surface as a service error body.
                tracing::error!(error = %e, "cold start failed");
                (
                    error_body(e.kind.code(), &e.message),
                    Vec::new(),
                    vec![e.message],
                    None,
                )
            }
            Self::InitError {
                body,
                output,
                init_duration,
            } => (body, output, Vec::new(), Some(init_duration)),
            Self::Exited {
                status,
                oom,
                output,
                init_duration,
                request_id,
            } => {
                let (etype, why) = exit_reason(status, oom);
                let msg = format!("RequestId: {request_id} Error: {why}");
                (
                    error_body(etype, &msg),
                    output,
                    vec![msg, etype.to_owned()],
                    Some(init_duration),
                )
            }
            Self::Timeout {
                output,
                limit,
                request_id,
            } => {
                let secs = limit.as_secs_f64();
                let msg = format!(
                    "RequestId: {request_id} Error: Task timed out after {secs:.2} seconds"
                );
                (
                    error_body("Sandbox.Timedout", &msg),
                    output,
                    vec![msg],
                    Some(limit),
                )
            }
        };
        let report = Report {
            duration: Duration::ZERO,
            memory_mb: v.config.memory_size,
            max_memory_used_mb: 0,
            init_duration: init,
        };
        let log = frame(&request_id, &v.version, &output, b"", &extra, &report);
        exec.0
            .logs
            .write(&v.account_id, &v.function_name, now_ms(), &log);
        let _ = input;
        InvokeOutput {
            request_id,
            executed_version: v.version.clone(),
            function_error: true,
            body,
            log_result: None,
        }
        .with_log(&log)
    }
}

/// Lambda's error type and words for a runtime that died.
fn exit_reason(status: Option<ExitStatus>, oom: bool) -> (&'static str, String) {
    if oom {
        return (
            "Runtime.OutOfMemory",
            "Runtime exited with error: signal: killed".to_owned(),
        );
    }
    match status {
        Some(ExitStatus::Code(0)) | None => (
            "Runtime.ExitError",
            "Runtime exited without providing a reason".to_owned(),
        ),
        Some(ExitStatus::Code(n)) => (
            "Runtime.ExitError",
            format!("Runtime exited with error: exit status {n}"),
        ),
        Some(ExitStatus::Signal(s)) => (
            "Runtime.ExitError",
            format!("Runtime exited with error: signal: {}", signal_name(s)),
        ),
    }
}

fn signal_name(s: i32) -> String {
    match s {
        9 => "killed".to_owned(),
        6 => "aborted".to_owned(),
        11 => "segmentation fault".to_owned(),
        15 => "terminated".to_owned(),
        n => format!("signal {n}"),
    }
}

fn store_err(e: hearth_store::StoreError) -> LambdaError {
    match e {
        hearth_store::StoreError::Lambda(l) => l,
        other => LambdaError::service(other.to_string()),
    }
}

/// A uniform number in [0, 1) from a fresh UUID's randomness.
fn rand_unit() -> f64 {
    let n = uuid::Uuid::new_v4().as_u128() >> 75;
    n as f64 / (1u64 << 53) as f64
}

fn iso_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons_read_like_lambda() {
        assert_eq!(
            exit_reason(Some(ExitStatus::Code(1)), false).1,
            "Runtime exited with error: exit status 1"
        );
        assert_eq!(
            exit_reason(Some(ExitStatus::Code(0)), false).1,
            "Runtime exited without providing a reason"
        );
        assert_eq!(
            exit_reason(Some(ExitStatus::Signal(9)), true).0,
            "Runtime.OutOfMemory"
        );
        assert_eq!(
            exit_reason(Some(ExitStatus::Signal(9)), false).1,
            "Runtime exited with error: signal: killed"
        );
        let u = rand_unit();
        assert!((0.0..1.0).contains(&u));
    }
}
