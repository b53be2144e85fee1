//! What every handler shares: the registry, the code store, the runtime
//! catalog, the node's identity, the signing-key cache and the activation
//! queue.

use crate::auth::SigningKeyCache;
use crate::error::{ApiError, ApiResult};
use hearth_exec::events::Events;
use hearth_exec::Executor;
use hearth_runtime::RuntimeCatalog;
use hearth_store::{CodeStore, LogStore, Registry};
use hearth_types::arn::NodeIdentity;
use hearth_types::function::{AccessKey, Account};
use hearth_types::function::{Lifecycle, VersionRecord};
use hearth_types::LambdaError;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What the authenticator read per access key, valid while the registry's
/// write epoch is unchanged.
pub type AccessKeyCache = HashMap<String, (u64, (Account, AccessKey))>;

/// Node-wide settings the API needs.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Concurrency limit of every account (GetAccountSettings, reserved-concurrency checks).
    pub account_concurrency: u32,
    /// Whose functions must name a role that exists in IAM.
    pub function_roles: FunctionRoleCheck,
    /// MACs STS session tokens and derives their secrets ([`crate::sts`]);
    /// `hearth serve` keeps it in `<data dir>/sts.key`, so sessions outlive
    /// a restart.
    pub session_key: [u8; 32],
    /// Where the node serves Function URLs, e.g. `http://127.0.0.1:9001`:
    /// `FunctionUrl` is `<origin>/<url id>/`. `None`: no URL listener, and
    /// `FunctionUrl` takes Lambda's own form.
    pub function_urls_origin: Option<String>,
}

impl Default for ApiSettings {
    /// Checks no account's function roles: `hearth serve` decides (its
    /// default is [`FunctionRoleCheck::AllExcept`] the dev account).
    fn default() -> Self {
        Self {
            account_concurrency: hearth_types::limits::ACCOUNT_CONCURRENCY_DEFAULT,
            function_roles: FunctionRoleCheck::None,
            session_key: rand::random(),
            function_urls_origin: None,
        }
    }
}

/// Which accounts' CreateFunction and UpdateFunctionConfiguration must
/// name, as `Role`, a role that exists in the caller's own account, as AWS
/// requires. Otherwise they fail as AWS fails them:
/// `InvalidParameterValueException`, "The role defined for the function
/// cannot be assumed by Lambda.". Where the check does not apply, any
/// well-formed role ARN is recorded as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionRoleCheck {
    /// Every account's.
    All,
    /// Every account's but this one's: the node's dev account, whose
    /// made-up roles keep a tour without IAM working.
    AllExcept(String),
    /// No account's.
    None,
}

impl FunctionRoleCheck {
    /// Whether `account`'s function roles must exist.
    pub fn applies_to(&self, account: &str) -> bool {
        match self {
            Self::All => true,
            Self::AllExcept(exempt) => exempt != account,
            Self::None => false,
        }
    }
}

#[derive(Debug)]
pub struct Shared {
    pub registry: Arc<dyn Registry>,
    pub code: Arc<CodeStore>,
    pub node: NodeIdentity,
    pub runtimes: RuntimeCatalog,
    pub settings: ApiSettings,
    pub signing_keys: SigningKeyCache,
    /// Access key id → (registry write epoch, its account and key).
    pub access_keys: parking_lot::Mutex<AccessKeyCache>,
    /// Runs invocations.
    pub executor: Executor,
    /// Accepts and dispatches asynchronous events.
    pub events: Events,
    /// Each function's recent log events.
    pub logs: Arc<LogStore>,
    /// Usage totals per account and function.
    pub usage: Arc<hearth_store::UsageStore>,
    /// SQS queues and their messages, and the signal every send rings
    /// (long polls answer as soon as a message arrives).
    pub sqs: Arc<hearth_exec::sqs::SqsHub>,
    /// The pollers of the SQS event source mappings.
    pub mappings: hearth_exec::esm::Mappings,
    /// Keys code-download URLs (`GetFunction`'s `Code.Location`).
    pub url_key: [u8; 32],
    /// Versions whose code must be made ready before they turn `Active`.
    activation: mpsc::UnboundedSender<VersionRecord>,
}

/// What runs functions and keeps their output.
#[derive(Debug)]
pub struct Services {
    pub executor: Executor,
    pub events: Events,
    pub logs: Arc<LogStore>,
    pub usage: Arc<hearth_store::UsageStore>,
    pub sqs: Arc<hearth_exec::sqs::SqsHub>,
    /// The pollers of the SQS event source mappings.
    pub mappings: hearth_exec::esm::Mappings,
}

/// The state handlers receive.
#[derive(Debug, Clone)]
pub struct AppState(pub Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// Builds the state and starts the activation worker on the current
    /// tokio runtime. Versions left mid-activation by a previous run are
    /// queued again.
    pub fn start(
        registry: Arc<dyn Registry>,
        code: Arc<CodeStore>,
        node: NodeIdentity,
        runtimes: RuntimeCatalog,
        settings: ApiSettings,
        services: Services,
    ) -> Result<Self, ApiError> {
        let Services {
            executor,
            events,
            logs,
            usage,
            sqs,
            mappings,
        } = services;
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Self(Arc::new(Shared {
            registry,
            code,
            node,
            runtimes,
            settings,
            signing_keys: SigningKeyCache::new(),
            access_keys: parking_lot::Mutex::new(HashMap::new()),
            executor,
            events,
            logs,
            usage,
            sqs,
            mappings,
            url_key: rand::random(),
            activation: tx,
        }));
        tokio::spawn(activation_worker(state.clone(), rx));
        for v in state.registry.pending_activations()? {
            state.activate(&v);
        }
        Ok(state)
    }

    /// A `FunctionConfiguration` as AWS shapes it, with where it runs
    /// (`HearthIsolation`, which AWS clients ignore).
    pub fn config_of(&self, v: &VersionRecord) -> serde_json::Value {
        let q = (v.version != "$LATEST").then_some(v.version.as_str());
        self.config_as(v, q)
    }

    /// [`Self::config_of`] whose `FunctionArn` carries `arn_qualifier`.
    pub fn config_as(&self, v: &VersionRecord, arn_qualifier: Option<&str>) -> serde_json::Value {
        let mut c = crate::shapes::function_configuration_as(&self.node, v, arn_qualifier);
        if let Some(m) = c.as_object_mut() {
            let (isolation, runtime) = self.executor.placement_of(v);
            m.insert("HearthIsolation".to_owned(), isolation.as_str().into());
            // The one modeled field that can say it to AWS clients (boto3
            // and the AWS CLI drop members their model lacks).
            m.insert(
                "RuntimeVersionConfig".to_owned(),
                serde_json::json!({
                    "RuntimeVersionArn": format!("arn:aws:lambda:{}::runtime:{runtime}", self.node.region)
                }),
            );
        }
        c
    }

    /// Runs blocking registry / file work off the async threads.
    pub async fn blocking<T, F>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&AppState) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| ApiError(LambdaError::service(format!("worker failed: {e}"))))?
    }

    /// Queues `v` for activation if it still needs it.
    pub fn activate(&self, v: &VersionRecord) {
        if !v.lifecycle.needs_activation() {
            return;
        }
        // The worker lives as long as the state; a send can only fail during
        // shutdown, when the next start re-queues the version anyway.
        let _ = self.activation.send(v.clone());
    }
}

/// Makes each queued version's code ready — the unpacked tree present and
/// its blob's digest re-verified; for a version that runs in microVMs, its
/// function snapshot taken too (`hearth_exec::DeployPrep`, ADR 0019) — then
/// records `Active` / `Successful`, or `Failed` with the reason if the code
/// cannot be made ready. The code is unpacked here, one version at a time;
/// the microVM step runs in a task of its own (the executor takes those
/// snapshots one at a time), so a slow one delays no other version.
async fn activation_worker(state: AppState, mut rx: mpsc::UnboundedReceiver<VersionRecord>) {
    while let Some(job) = rx.recv().await {
        let s = state.clone();
        let sha = job.code.sha256_hex.clone();
        let ready = tokio::task::spawn_blocking(move || {
            s.code
                .ensure_unpacked(&sha)
                .and_then(|()| s.code.verify(&sha))
        })
        .await;
        let s = state.clone();
        match ready {
            Ok(Ok(())) => {
                tokio::spawn(async move {
                    match s.executor.prepare_first_invoke(&job).await {
                        Ok(what) => {
                            tracing::debug!(function = %job.function_name, version = %job.version, ?what, "prepared for the first invocation")
                        }
                        Err(e) => {
                            tracing::warn!(function = %job.function_name, version = %job.version, error = %e.message, "cannot prepare the first invocation; it will load the function itself")
                        }
                    }
                    record_lifecycle(&s, &job, Lifecycle::active()).await;
                });
            }
            Ok(Err(e)) => {
                tracing::error!(function = %job.function_name, error = %e, "code could not be made ready");
                record_lifecycle(&s, &job, failed_lifecycle(&e.to_string())).await;
            }
            Err(e) => tracing::error!(error = %e, "activation task failed"),
        }
    }
}

/// Records a version's new lifecycle (if it is still at the revision that
/// was activated).
async fn record_lifecycle(s: &AppState, v: &VersionRecord, lifecycle: Lifecycle) {
    let s = s.clone();
    let v = v.clone();
    let res = tokio::task::spawn_blocking(move || {
        s.registry.set_lifecycle(
            &v.account_id,
            &v.function_name,
            &v.version,
            &v.revision_id,
            &lifecycle,
        )
    })
    .await;
    match res {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "activation could not be recorded"),
        Err(e) => tracing::error!(error = %e, "activation task failed"),
    }
}

fn failed_lifecycle(reason: &str) -> Lifecycle {
    use hearth_types::function::{FunctionState, UpdateStatus};
    Lifecycle {
        state: FunctionState::Failed,
        state_reason: Some(reason.to_owned()),
        state_reason_code: Some("InvalidZipFileException".to_owned()),
        last_update_status: Some(UpdateStatus::Failed),
        last_update_status_reason: Some(reason.to_owned()),
        last_update_status_reason_code: Some("InvalidZipFileException".to_owned()),
    }
}
