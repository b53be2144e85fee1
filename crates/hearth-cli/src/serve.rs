//! `hearth serve`: one process running every role of a node.

use anyhow::{Context, Result};
use hearth_api::{ApiSettings, AppState, FunctionRoleCheck, Services};
use hearth_exec::events::{Events, EventsConfig};
use hearth_exec::{ExecConfig, Executor, GeneralPoolConfig, PoolKey};
use hearth_runtime::RuntimeCatalog;
use hearth_sandbox::linux::{LinuxBackend, LinuxConfig};
use hearth_sandbox::SandboxBackend;
use hearth_store::{CodeStore, Registry, SqliteRegistry};
use hearth_store::{EventQueue, LogStore, SqliteEventQueue};
use hearth_types::arn::NodeIdentity;
use hearth_types::function::{AccessKey, Account};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The dev account of the embedded default.
pub const DEV_ACCOUNT_ID: &str = "000000000000";
pub const DEV_ACCESS_KEY: &str = "test";
pub const DEV_SECRET_KEY: &str = "test";

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:9000].
    #[arg(long, env = "HEARTH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory (SQLite registry and code) [default: ~/.local/share/hearth].
    #[arg(long, env = "HEARTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML config file (see README: listen, data_dir, region, dev_account, [runtimes]).
    #[arg(long, env = "HEARTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address serving Function URLs [default: the API's address, port + 1].
    #[arg(long, env = "HEARTH_FUNCTION_URLS_LISTEN")]
    pub function_urls_listen: Option<SocketAddr>,
}

/// The config file. Flags and environment variables win over it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: Option<SocketAddr>,
    /// Address serving Function URLs [default: `listen`'s, port + 1].
    pub function_urls_listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    /// Region printed in ARNs [default: us-east-1].
    pub region: Option<String>,
    /// Create the dev account `000000000000` (key `test` / secret `test`) [default: true].
    pub dev_account: Option<bool>,
    /// Concurrency limit of each account [default: 1000].
    pub account_concurrency: Option<u32>,
    /// Idle function-warm sandboxes are destroyed after this many seconds [default: 600].
    pub idle_timeout_secs: Option<u64>,
    /// Log events kept per function [default: 10000].
    pub log_events_per_function: Option<usize>,
    /// Warm pools and the memory budget (see README).
    pub capacity: Option<CapacityConfig>,
    /// Asynchronous invocation (see README).
    pub events: Option<EventsSection>,
    /// MicroVMs for WebAssembly functions (see README).
    pub microvm: Option<MicroVmSection>,
    /// IAM: whose functions must name an existing role.
    pub iam: Option<IamSection>,
    /// Runtime → interpreter rules, e.g. `"python3.*" = "/usr/bin/python3"`.
    #[serde(default)]
    pub runtimes: BTreeMap<String, String>,
}

/// `[microvm]` of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MicroVmSection {
    /// Run WebAssembly functions in microVMs [default: true; needs /dev/kvm].
    pub enabled: Option<bool>,
    /// Threads that run guests, started on demand: the most VMs that run at
    /// once [default: 64].
    pub workers: Option<usize>,
    /// How general VMs are warmed: none, populate, rehearse [default: rehearse].
    pub prewarm: Option<String>,
    /// The general VM pools; `general = []` makes every VM start cold.
    pub general: Option<Vec<VmPoolEntry>>,
    /// Where `python3.x` functions run unless tagged `hearth:isolation`:
    /// `process` or `microvm` [default: process].
    pub python: Option<String>,
}

/// One `[[microvm.general]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmPoolEntry {
    /// A memory class, MB (128, 256, 512, …).
    pub memory_class_mb: u32,
    pub min: u32,
    pub max: u32,
}

impl MicroVmSection {
    /// `python`: where untagged `python3.x` functions run.
    pub fn python_isolation(&self) -> Result<hearth_exec::Isolation> {
        match self.python.as_deref() {
            None => Ok(hearth_exec::Isolation::Process),
            Some(v) => hearth_exec::Isolation::parse(v).ok_or_else(|| {
                anyhow::anyhow!("[microvm] python = {v:?}: it is \"process\" or \"microvm\"")
            }),
        }
    }

    /// The node's microVM side: on where KVM works, off (with the reason)
    /// where it does not or is disabled.
    pub fn build(&self, data_dir: &Path) -> Result<hearth_exec::MicroVm> {
        use hearth_exec::MicroVm;
        use hearth_pool::vm::{Prewarm, VmHost, VmHostConfig};
        if self.enabled == Some(false) {
            return Ok(MicroVm::Off(
                "microVMs are disabled in the config file ([microvm] enabled = false)".into(),
            ));
        }
        let prewarm = match self.prewarm.as_deref().unwrap_or("rehearse") {
            "none" => Prewarm::None,
            "populate" => Prewarm::Populate,
            "rehearse" => Prewarm::Rehearse,
            other => anyhow::bail!("unknown prewarm '{other}' (none, populate, rehearse)"),
        };
        let general = match &self.general {
            None => hearth_exec::default_vm_pools(),
            Some(list) => list
                .iter()
                .map(|e| {
                    let c = e.memory_class_mb;
                    if hearth_pool::profile::memory_class_for(c) != Some(c) {
                        anyhow::bail!("{c} MB is not a memory class (128, 256, 512, 1024, …)");
                    }
                    if e.min > e.max {
                        anyhow::bail!("VM pool {c} MB: min {} exceeds max {}", e.min, e.max);
                    }
                    Ok(hearth_exec::VmPoolConfig {
                        memory_class_mb: c,
                        min: e.min,
                        max: e.max,
                    })
                })
                .collect::<Result<_>>()?,
        };
        // A guest that runs (or sleeps in WASI's poll) holds its thread:
        // as many threads as VMs may run at once, started on demand.
        let workers = self.workers.unwrap_or(64);
        anyhow::ensure!(workers >= 1, "[microvm] workers must be at least 1");
        let config = VmHostConfig {
            snapshot_dir: data_dir.join("vm").join("snapshots"),
            workers,
            prewarm,
            boot_timeout: std::time::Duration::from_secs(30),
        };
        match VmHost::new(
            config,
            hearth_vmm::image::GuestImage::new(hearth_guest_image::ELF),
            hearth_guest_image::ENGINE,
        ) {
            Ok(host) => Ok(MicroVm::On {
                host: Arc::new(host),
                general,
                python: hearth_pool::vm::python::PythonRuntime::find(data_dir),
            }),
            Err(e) => Ok(MicroVm::Off(format!("KVM is not usable here: {e}"))),
        }
    }
}

/// `[iam]` of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamSection {
    /// Whose CreateFunction and UpdateFunctionConfiguration must name, as
    /// `Role`, a role that exists in the caller's own account (else they
    /// fail as AWS fails them: "The role defined for the function cannot be
    /// assumed by Lambda."): `except-dev`, every account but the dev account
    /// `000000000000`, whose made-up roles keep a tour without IAM working;
    /// `all`; or `none` [default: except-dev].
    pub check_function_roles: Option<String>,
}

impl IamSection {
    pub fn function_roles(&self) -> Result<FunctionRoleCheck> {
        match self.check_function_roles.as_deref() {
            None | Some("except-dev") => Ok(FunctionRoleCheck::AllExcept(DEV_ACCOUNT_ID.into())),
            Some("all") => Ok(FunctionRoleCheck::All),
            Some("none") => Ok(FunctionRoleCheck::None),
            Some(v) => anyhow::bail!(
                "[iam] check_function_roles = {v:?}: it is \"except-dev\", \"all\" or \"none\""
            ),
        }
    }
}

/// `[events]` of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// Event attempts running at once [default: 64].
    pub workers: Option<usize>,
    /// Memory budget (MiB) async work leaves free for synchronous requests [default: 512].
    pub reserve_mb: Option<u64>,
    /// Back-offs before the first and second retry of a failed event, seconds [default: [60, 120]].
    pub retry_delays_secs: Option<Vec<f64>>,
    /// Throttled events back off from this many ms, doubling… [default: 1000]
    pub throttle_min_ms: Option<u64>,
    /// …up to this many [default: 300000].
    pub throttle_max_ms: Option<u64>,
    /// Deferred events run early only while at most this share of the budget is used [default: 0.5].
    pub defer_load_threshold: Option<f64>,
    /// How often the dispatcher looks at the queue besides being woken, ms [default: 200].
    pub poll_ms: Option<u64>,
}

impl EventsSection {
    fn apply(&self, c: &mut EventsConfig) -> Result<()> {
        if let Some(n) = self.workers {
            anyhow::ensure!(n >= 1, "[events] workers must be at least 1");
            c.workers = n;
        }
        if let Some(mb) = self.reserve_mb {
            c.scheduler.reserve_mb = mb;
        }
        if let Some(d) = &self.retry_delays_secs {
            anyhow::ensure!(
                !d.is_empty() && d.iter().all(|s| s.is_finite() && *s >= 0.0),
                "[events] retry_delays_secs must be a non-empty list of seconds"
            );
            c.scheduler.retry_delays_ms = d.iter().map(|s| (s * 1000.0) as u64).collect();
        }
        if let Some(ms) = self.throttle_min_ms {
            c.scheduler.throttle_min_ms = ms;
        }
        if let Some(ms) = self.throttle_max_ms {
            c.scheduler.throttle_max_ms = ms;
        }
        anyhow::ensure!(
            c.scheduler.throttle_min_ms <= c.scheduler.throttle_max_ms,
            "[events] throttle_min_ms exceeds throttle_max_ms"
        );
        if let Some(t) = self.defer_load_threshold {
            anyhow::ensure!(
                (0.0..=1.0).contains(&t),
                "[events] defer_load_threshold is a share, 0 to 1"
            );
            c.scheduler.defer_load_threshold = t;
        }
        if let Some(ms) = self.poll_ms {
            c.poll = std::time::Duration::from_millis(ms.max(10));
        }
        Ok(())
    }
}

/// `[capacity]` of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityConfig {
    /// The most the sum of sandbox memory limits may reach, MiB [default: 75% of RAM].
    pub memory_budget_mb: Option<u64>,
    /// How general sub-pools follow demand: forecast (default), fixed, ewma, openwhisk.
    pub sizer: Option<String>,
    /// Keep-alive of idle function-warm sandboxes: fixed (default, `idle_timeout_secs`),
    /// hybrid-histogram, greedy-dual.
    pub keepalive: Option<String>,
    /// The hybrid histogram's range, minutes [default: 15; the paper's is 240] (ADR 0007).
    pub histogram_range_mins: Option<u64>,
    /// The general sub-pools; `general = []` disables pooling (every start is cold).
    pub general: Option<Vec<GeneralPoolEntry>>,
}

/// One `[[capacity.general]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneralPoolEntry {
    /// `python:128`, `nodejs:256`, `shell:128` (shell-warm, any runtime).
    pub profile: String,
    pub min: u32,
    pub max: u32,
}

impl CapacityConfig {
    fn apply(&self, exec: &mut ExecConfig) -> Result<()> {
        if let Some(mb) = self.memory_budget_mb {
            exec.memory_budget_mb = mb;
        }
        if let Some(s) = &self.sizer {
            use hearth_pool::sizing::SizerConfig;
            exec.sizer = match s.as_str() {
                "forecast" => SizerConfig::default(),
                "fixed" => SizerConfig::Fixed,
                "ewma" => SizerConfig::Ewma {
                    alpha: 0.5,
                    interval_ms: 60_000,
                },
                "openwhisk" => SizerConfig::OpenwhiskReactive(Default::default()),
                other => {
                    anyhow::bail!("unknown sizer '{other}' (forecast, fixed, ewma, openwhisk)")
                }
            };
        }
        if let Some(k) = &self.keepalive {
            use hearth_pool::keepalive::KeepAliveConfig;
            exec.keepalive = match k.as_str() {
                "fixed" => None,
                "hybrid-histogram" => Some(KeepAliveConfig::HybridHistogram(
                    hearth_pool::keepalive::HybridHistogramConfig {
                        range_ms: self.histogram_range_mins.unwrap_or(15).max(1)
                            * hearth_pool::clock::MS_PER_MINUTE,
                        ..Default::default()
                    },
                )),
                "greedy-dual" => Some(KeepAliveConfig::GreedyDual),
                other => anyhow::bail!(
                    "unknown keepalive '{other}' (fixed, hybrid-histogram, greedy-dual)"
                ),
            };
        }
        if let Some(list) = &self.general {
            exec.general_pools = list
                .iter()
                .map(|e| {
                    let (family, class) = e.profile.split_once(':').context(
                        "a general pool's profile is FAMILY:MEMORY_CLASS, e.g. python:128",
                    )?;
                    if !["python", "nodejs", hearth_exec::pools::SHELL].contains(&family) {
                        anyhow::bail!("unknown pool family '{family}' (python, nodejs, shell)");
                    }
                    let class: u32 = class
                        .parse()
                        .context("the memory class must be a number of MB")?;
                    if hearth_pool::profile::memory_class_for(class) != Some(class) {
                        anyhow::bail!("{class} MB is not a memory class (128, 256, 512, 1024, …)");
                    }
                    if e.min > e.max {
                        anyhow::bail!("pool {}: min {} exceeds max {}", e.profile, e.min, e.max);
                    }
                    Ok(GeneralPoolConfig {
                        key: PoolKey {
                            family: family.to_owned(),
                            memory_class_mb: class,
                        },
                        min: e.min,
                        max: e.max,
                    })
                })
                .collect::<Result<_>>()?;
        }
        Ok(())
    }
}

impl Config {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }
}

pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("hearth")
}

/// The runtime catalog of this node (also used by `hearth runtimes --local`).
pub fn runtime_catalog(config: &Config) -> RuntimeCatalog {
    RuntimeCatalog::new(&config.runtimes, std::env::var("PATH").ok().as_deref())
}

pub async fn serve(args: ServeArgs) -> Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let listen = args
        .listen
        .or(config.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9000)));
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| config.data_dir.clone())
        .unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let node = NodeIdentity::new(config.region.clone().unwrap_or_else(|| "us-east-1".into()));

    let registry: Arc<dyn Registry> = Arc::new(
        SqliteRegistry::open(&data_dir.join("registry.sqlite"), node.clone())
            .context("cannot open the registry")?,
    );
    let code =
        Arc::new(CodeStore::open(&data_dir.join("code")).context("cannot open the code store")?);
    // Nothing is being staged yet, so unreferenced blobs are leftovers of
    // creates that crashed before their row committed.
    let referenced: HashSet<String> = registry.referenced_code()?.into_iter().collect();
    let removed = code.gc(&referenced)?;
    if removed > 0 {
        tracing::info!(removed, "removed code packages no function refers to");
    }
    if config.dev_account.unwrap_or(true) {
        registry.ensure_account(
            &Account {
                id: DEV_ACCOUNT_ID.into(),
                name: "dev".into(),
                admin: true,
                created_ms: 0,
            },
            &AccessKey {
                account_id: DEV_ACCOUNT_ID.into(),
                access_key_id: DEV_ACCESS_KEY.into(),
                secret_access_key: DEV_SECRET_KEY.into(),
            },
        )?;
        tracing::info!(
            account = DEV_ACCOUNT_ID,
            access_key = DEV_ACCESS_KEY,
            "dev account enabled"
        );
    }
    let runtimes = runtime_catalog(&config);
    for e in runtimes.entries() {
        tracing::info!(runtime = %e.runtime, interpreter = %e.interpreter, resolved = ?e.resolved, "runtime");
    }
    let account_concurrency = config
        .account_concurrency
        .unwrap_or(hearth_types::limits::ACCOUNT_CONCURRENCY_DEFAULT);
    let urls_listener = bind_function_urls(
        args.function_urls_listen.or(config.function_urls_listen),
        listen,
    )
    .await?;
    let settings = ApiSettings {
        account_concurrency,
        function_roles: config.iam.as_ref().map_or_else(
            || IamSection::default().function_roles(),
            IamSection::function_roles,
        )?,
        session_key: hearth_api::sts::load_or_create_key(&data_dir.join("sts.key"))
            .context("cannot read or make the STS session key (<data dir>/sts.key)")?,
        function_urls_origin: urls_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(function_urls_origin),
    };

    // Execution: bootstraps, the sandbox backend (reaping what a previous
    // run left), the log store and the supervisor.
    let runtime_dir = data_dir.join("runtime");
    let pythons: Vec<PathBuf> = runtimes
        .entries()
        .into_iter()
        .filter(|e| e.runtime.starts_with("python"))
        .filter_map(|e| e.resolved)
        .collect();
    hearth_runtime::bootstrap::install_precompiled(&runtime_dir, &pythons)
        .with_context(|| format!("cannot install the bootstraps in {}", runtime_dir.display()))?;
    let (init_program, init_args) = sandbox_launcher(&data_dir)?;
    let backend = LinuxBackend::new(LinuxConfig {
        state_dir: data_dir.join("sandboxes"),
        init_program,
        init_args,
        cgroup_name: cgroup_name(&data_dir),
        ..LinuxConfig::default()
    })
    .context("cannot set up the sandbox backend")?;
    let reaped = backend
        .reap_leftovers()
        .context("cannot reap leftover sandboxes")?;
    if reaped > 0 {
        tracing::info!(reaped, "reaped sandboxes a previous run left behind");
    }
    let protections = backend.protections();
    for w in &protections.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(?protections, "sandbox protections");
    let backend: Arc<dyn SandboxBackend> = Arc::new(backend);
    let logs = Arc::new(
        LogStore::open(
            &data_dir.join("logs.sqlite"),
            config.log_events_per_function.unwrap_or(10_000),
        )
        .context("cannot open the log store")?,
    );
    let mut exec_config = ExecConfig::new(runtime_dir);
    exec_config.account_concurrency = account_concurrency;
    if let Some(s) = config.idle_timeout_secs {
        exec_config.idle_timeout = std::time::Duration::from_secs(s);
    }
    if let Some(c) = &config.capacity {
        c.apply(&mut exec_config)
            .context("invalid [capacity] in the config file")?;
    }
    exec_config.microvm = config
        .microvm
        .as_ref()
        .map_or_else(
            || MicroVmSection::default().build(&data_dir),
            |m| m.build(&data_dir),
        )
        .context("invalid [microvm] in the config file")?;
    exec_config.python_isolation = config.microvm.as_ref().map_or(
        Ok(hearth_exec::Isolation::Process),
        MicroVmSection::python_isolation,
    )?;
    match &exec_config.microvm {
        hearth_exec::MicroVm::On {
            host,
            general,
            python,
        } => {
            tracing::info!(
                engine = host.engine,
                workers = host.config.workers,
                prewarm = ?host.config.prewarm,
                pools = ?general,
                python = python.as_ref().map(|p| p.dir.display().to_string()),
                "microVMs for WebAssembly (and Python) functions"
            );
            if python.is_none() && exec_config.python_isolation == hearth_exec::Isolation::Microvm {
                anyhow::bail!(
                    "[microvm] python = \"microvm\", and no CPython runtime for microVMs is installed in {}: run `hearth runtimes install python --from …` first",
                    data_dir.display()
                );
            }
        }
        hearth_exec::MicroVm::Off(why) => {
            tracing::warn!("WebAssembly functions cannot run: {why}");
            if exec_config.python_isolation == hearth_exec::Isolation::Microvm {
                anyhow::bail!(
                    "[microvm] python = \"microvm\", and this node runs no microVMs: {why}"
                );
            }
        }
    }
    let usage = Arc::new(
        hearth_store::UsageStore::open(&data_dir.join("usage.sqlite"))
            .context("cannot open the usage store")?,
    );
    let sqs = Arc::new(hearth_exec::sqs::SqsHub::new(Arc::new(
        hearth_store::SqsStore::open(&data_dir.join("sqs.sqlite"))
            .context("cannot open the SQS store")?,
    )));
    let executor = Executor::start(
        backend,
        hearth_exec::ExecStores {
            registry: registry.clone(),
            code: code.clone(),
            logs: logs.clone(),
            usage: usage.clone(),
        },
        runtimes.clone(),
        node.clone(),
        exec_config,
    );
    let mut events_config = EventsConfig::default();
    if let Some(e) = &config.events {
        e.apply(&mut events_config)
            .context("invalid [events] in the config file")?;
    }
    let queue: Arc<dyn EventQueue> = Arc::new(
        SqliteEventQueue::open(&data_dir.join("events.sqlite"))
            .context("cannot open the event queue")?,
    );
    let events = Events::start(
        executor.clone(),
        queue,
        registry.clone(),
        node.clone(),
        events_config,
        sqs.clone(),
    )
    .context("cannot start the event dispatcher")?;
    let events_handle = events.clone();
    let mappings = hearth_exec::esm::Mappings::start(executor.clone(), sqs.clone(), node.clone())
        .context("cannot start the SQS event source mappings")?;
    let mappings_handle = mappings.clone();
    let state = AppState::start(
        registry,
        code,
        node,
        runtimes,
        settings,
        Services {
            executor: executor.clone(),
            events,
            logs,
            usage,
            sqs,
            mappings,
        },
    )
    .map_err(|e| anyhow::anyhow!("cannot start: {}", e.0))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, data_dir = %data_dir.display(), "hearth is serving");
    if let Some(urls) = urls_listener {
        let app = hearth_api::urls::app(state.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(urls, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
            {
                tracing::error!(error = %e, "the Function URL listener failed");
            }
        });
    }
    axum::serve(listener, hearth_api::app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    // Wait (bounded) until every sandbox is gone, so a stopped node leaves
    // no process, cgroup or mount behind; anything left after that is
    // reaped at the next start on this data dir.
    // No new event attempt; the running ones end (bounded) and are recorded
    // before their sandboxes go.
    // No new SQS batch either; one in flight whose sandbox goes is not
    // deleted, so its messages come back after their visibility timeout.
    mappings_handle.stop();
    events_handle.stop(std::time::Duration::from_secs(15)).await;
    let gone = executor.shutdown();
    let all = async {
        for g in gone {
            let _ = g.await;
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(20), all)
        .await
        .is_err()
    {
        tracing::warn!("some sandboxes were still being destroyed at exit");
    }
    tracing::info!("hearth stopped");
    Ok(())
}

/// Binds the Function URL listener: at `configured` (a failure is fatal), or
/// by default on the API's address with the next port (the API on port 0:
/// any port), where a failure only means the node serves no URLs.
async fn bind_function_urls(
    configured: Option<SocketAddr>,
    api: SocketAddr,
) -> Result<Option<tokio::net::TcpListener>> {
    if let Some(addr) = configured {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for Function URLs on {addr}"))?;
        tracing::info!(listen = %addr, "serving Function URLs");
        return Ok(Some(l));
    }
    let port = match api.port() {
        0 => 0,
        p => p.checked_add(1).unwrap_or(0),
    };
    let addr = SocketAddr::new(api.ip(), port);
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            tracing::info!(listen = %l.local_addr().unwrap_or(addr), "serving Function URLs");
            Ok(Some(l))
        }
        Err(e) => {
            tracing::warn!(listen = %addr, error = %e, "cannot listen for Function URLs: this node serves none (set function_urls_listen)");
            Ok(None)
        }
    }
}

/// `http://<address>/`'s origin for `FunctionUrl`: an unspecified address
/// (`0.0.0.0`) is written as loopback, which reaches it from this host.
fn function_urls_origin(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// `hearth-<digest of the data directory>`: each node's sandboxes live in
/// their own cgroup subtree, so a node reaping its leftovers at start never
/// touches another node's sandboxes on the same host.
pub fn cgroup_name(data_dir: &Path) -> String {
    use sha2::Digest;
    let canonical = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    format!("hearth-{}", &hex::encode(digest)[..12])
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// The program sandboxes are launched with: the small embedded launcher,
/// installed in `<data dir>/bin` (ADR 0017); or, where it cannot be
/// written or run there (a read-only or `noexec` data directory), this
/// binary as `hearth sandbox-init`, which does the same more slowly.
fn sandbox_launcher(data_dir: &Path) -> Result<(PathBuf, Vec<String>)> {
    let own = || -> Result<(PathBuf, Vec<String>)> {
        Ok((
            std::env::current_exe().context("cannot find the hearth binary")?,
            vec!["sandbox-init".to_owned()],
        ))
    };
    let dir = data_dir.join("bin");
    let installed = hearth_launcher_image::install(&dir).and_then(|path| {
        // It must run from there: with nothing on stdin it exits at once.
        std::process::Command::new(&path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|_| path)
    });
    match installed {
        Ok(path) => Ok((path, Vec::new())),
        Err(e) => {
            tracing::warn!(
                dir = %dir.display(),
                error = %e,
                "cannot install or run the sandbox launcher there; sandboxes start from the hearth binary itself (about 1 ms slower each)"
            );
            own()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function_roles(toml_text: &str) -> Result<FunctionRoleCheck> {
        let config: Config = toml::from_str(toml_text)?;
        config.iam.unwrap_or_default().function_roles()
    }

    #[test]
    fn function_roles_are_checked_for_all_but_the_dev_account_by_default() {
        let default = FunctionRoleCheck::AllExcept(DEV_ACCOUNT_ID.into());
        assert_eq!(function_roles("").unwrap(), default);
        assert_eq!(function_roles("[iam]\n").unwrap(), default);
        let dev_too = "[iam]\ncheck_function_roles = \"all\"\n";
        assert_eq!(function_roles(dev_too).unwrap(), FunctionRoleCheck::All);
        let none = "[iam]\ncheck_function_roles = \"none\"\n";
        assert_eq!(function_roles(none).unwrap(), FunctionRoleCheck::None);
        assert!(function_roles("[iam]\ncheck_function_roles = \"some\"\n").is_err());
        assert!(function_roles("[iam]\ncheck_roles = \"all\"\n").is_err());
    }
}
