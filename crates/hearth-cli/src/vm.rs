//! `hearth vm run`: one module in one of Hearth's microVMs, from the command
//! line. Boots a guest, or restores one from snapshots, runs the module with
//! an event and prints the result (stdout), the module's logs (stderr) and
//! the microsecond accounting (stderr, or all of it as JSON).
//!
//! With `--snapshot-dir`, the first run of a module boots a guest, writes the
//! base snapshot (once per guest image and memory size), restores from it,
//! loads the module up to its first stdin read, writes the function
//! snapshot, and answers the event; every later run restores the function
//! snapshot and answers at once. Without it, every run boots.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use hearth_vmm::cache::{FunctionKey, SnapshotCache};
use hearth_vmm::guest::{Ended, Finished, GuestError, Invocation, Loaded};
use hearth_vmm::image::GuestImage;
use hearth_vmm::kvm::Kvm;
use hearth_vmm::runner::VmThread;
use hearth_vmm::snapshot::Snapshot;
use hearth_vmm::vm::{ModuleFile, Vm};
use hearth_vmm::RunStats;
use serde_json::json;

#[derive(Debug, clap::Subcommand)]
pub enum VmCommand {
    /// Run a WebAssembly module (wasm32-wasip1 command, or .wat text) in a
    /// microVM with an event on its stdin. Needs /dev/kvm (root, or the kvm group).
    Run(Box<RunArgs>),
    /// Compile a WebAssembly module ahead of time for the guest's wasmtime
    /// (Cranelift, on this machine); `hearth vm run --engine aot` takes the
    /// result as its module without compiling again.
    Compile {
        /// The module: .wasm or .wat.
        module: PathBuf,
        /// Where to write the compiled module.
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The module: a .wasm file (WASI command) or .wat text.
    #[arg(required_unless_present = "python")]
    pub module: Option<PathBuf>,
    /// Run a Lambda Python handler (`module.function`) instead, on the
    /// CPython runtime `hearth runtimes install python` set up, with its
    /// code from --code; the event is the handler's event. Exit status 3:
    /// the handler failed, and stdout holds Lambda's error object.
    #[arg(long, value_name = "HANDLER", requires = "code", conflicts_with_all = ["module", "engine"])]
    pub python: Option<String>,
    /// The event's bytes as the guest reads them, when --python wraps it.
    #[arg(skip)]
    pub event_bytes: Option<Vec<u8>>,
    /// The Python function's code: a directory, mounted at /var/task.
    #[arg(long, value_name = "DIR")]
    pub code: Option<PathBuf>,
    /// Where `hearth runtimes install` put the runtime [default: as
    /// `hearth serve`'s data directory].
    #[arg(long, env = "HEARTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The event, as JSON text, or @FILE to read it from a file (@- for stdin).
    #[arg(long, default_value = "{}")]
    pub event: String,
    /// VM memory in MiB.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(64..=10240))]
    pub memory: u64,
    /// How long the module may run, in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
    /// Keep base and function snapshots here and restore from them.
    #[arg(long, value_name = "DIR")]
    pub snapshot_dir: Option<PathBuf>,
    /// An environment variable for the module (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// An argument for the module, after its name (repeatable, in order).
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Mount a host directory (its files, read-only) or a single file at an
    /// absolute guest path, e.g. `/var/task=./code` (repeatable).
    #[arg(long = "mount", value_name = "GUEST=HOST")]
    pub mounts: Vec<String>,
    /// Print everything (result, logs, accounting) as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// The guest's engine: `wasmi` interprets the module; `aot` compiles it
    /// here with Cranelift first and the guest runs the machine code.
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
}

/// `--engine`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    /// The interpreter (wasmi).
    Wasmi,
    /// Ahead-of-time compiled (wasmtime + Cranelift).
    Aot,
}

impl RunArgs {
    fn engine(&self) -> EngineArg {
        self.engine.unwrap_or(EngineArg::Wasmi)
    }
}

impl EngineArg {
    /// The engine's id, as snapshots are keyed on it.
    pub fn id(self) -> &'static str {
        match self {
            EngineArg::Wasmi => hearth_wasi::WASMI_ENGINE_ID,
            EngineArg::Aot => hearth_wasi::AOT_ENGINE_ID,
        }
    }
}

/// Runs the command; returns the process exit code.
pub fn run(cmd: VmCommand) -> i32 {
    let args = match cmd {
        VmCommand::Run(args) => *args,
        VmCommand::Compile { module, output } => {
            return match compile(&module, &output) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("hearth vm compile: {e:#}");
                    2
                }
            }
        }
    };
    let args = match python_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hearth vm run: {e:#}");
            return 2;
        }
    };
    match run_module(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hearth vm run: {e:#}");
            2
        }
    }
}

/// `--python`: the same run, spelled out: the installed runtime's compiled
/// CPython as the module, its library and the code mounted, Hearth's
/// bootstrap as `-c`, the handler in `_HANDLER`, and the event behind the
/// bootstrap's envelope line.
fn python_args(mut args: RunArgs) -> Result<RunArgs> {
    let Some(handler) = args.python.clone() else {
        return Ok(args);
    };
    use hearth_pool::vm::python;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(crate::serve::default_data_dir);
    let rt = python::PythonRuntime::find(&data_dir).ok_or_else(|| {
        anyhow!(
            "no CPython runtime for microVMs in {}: run `hearth runtimes install python --from …` first",
            data_dir.display()
        )
    })?;
    let code = args.code.clone().unwrap_or_default();
    let event = read_event(&args.event)?;
    let deadline_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
        + (args.timeout * 1000.0) as u64;
    let envelope = python::envelope(
        "00000000-0000-0000-0000-000000000000",
        deadline_ms,
        None,
        &event,
    );
    args.event_bytes = Some(envelope);
    args.module = Some(rt.cwasm());
    args.engine = Some(EngineArg::Aot);
    args.mounts.insert(
        0,
        format!("{}={}", python::LIB_MOUNT, rt.lib_image().display()),
    );
    args.mounts.push(format!("/var/task={}", code.display()));
    args.env.push(format!("_HANDLER={handler}"));
    let name = code
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "function".into());
    args.env.push(format!("AWS_LAMBDA_FUNCTION_NAME={name}"));
    args.env.push("AWS_LAMBDA_FUNCTION_VERSION=$LATEST".into());
    args.env
        .push(format!("AWS_LAMBDA_FUNCTION_MEMORY_SIZE={}", args.memory));
    args.args = vec!["-c".into(), python::BOOTSTRAP.into()];
    Ok(args)
}

fn compile(module: &Path, output: &Path) -> Result<()> {
    let bytes = read_module(module)?;
    let t0 = std::time::Instant::now();
    let code = hearth_wasi::aot::precompile(&bytes).map_err(|e| anyhow!("{e}"))?;
    std::fs::write(output, &code).with_context(|| format!("writing {}", output.display()))?;
    eprintln!(
        "compiled {} ({} bytes) to {} ({} bytes, {}) in {:.1} s",
        module.display(),
        bytes.len(),
        output.display(),
        code.len(),
        hearth_wasi::AOT_ENGINE_ID,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Timings of the steps this run took, µs.
#[derive(Default)]
struct Phases(Vec<(&'static str, f64)>);

impl Phases {
    fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let t0 = hearth_vmm::monotonic_ns();
        let r = f();
        self.0
            .push((name, (hearth_vmm::monotonic_ns() - t0) as f64 / 1000.0));
        r
    }
}

fn read_event(arg: &str) -> Result<Vec<u8>> {
    match arg.strip_prefix('@') {
        Some("-") => {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .context("reading the event from stdin")?;
            Ok(v)
        }
        Some(path) => std::fs::read(path).with_context(|| format!("reading the event from {path}")),
        None => Ok(arg.as_bytes().to_vec()),
    }
}

fn read_module(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "wat") {
        return wat::parse_bytes(&bytes)
            .map(|c| c.into_owned())
            .map_err(|e| anyhow!("{} is not valid WAT: {e}", path.display()));
    }
    Ok(bytes)
}

fn module_file(bytes: &[u8]) -> Result<ModuleFile> {
    let mut f = tempfile::tempfile().context("creating a file for the module")?;
    f.write_all(bytes).context("writing the module")?;
    f.flush().context("writing the module")?;
    ModuleFile::new(f).context("reading the module back")
}

/// Whether `path` is a file image (it starts with the image magic).
fn is_image(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == hearth_guest_abi::files::MAGIC
}

/// The mounted images: each guest path and its image file.
struct Files {
    paths: Vec<String>,
    images: Vec<ModuleFile>,
}

impl Files {
    fn build(specs: &[String]) -> Result<Files> {
        let mut files = Files {
            paths: Vec::new(),
            images: Vec::new(),
        };
        for spec in specs {
            let (guest, host) = spec
                .split_once('=')
                .ok_or_else(|| anyhow!("--mount {spec:?} is not GUEST=HOST"))?;
            if !guest.starts_with('/') {
                bail!("--mount {spec:?}: the guest path must be absolute");
            }
            let host = Path::new(host);
            if is_image(host) {
                // A file image Hearth made (a runtime's library): as it is.
                files.paths.push(guest.to_string());
                files.images.push(
                    ModuleFile::open(host)
                        .with_context(|| format!("reading {}", host.display()))?,
                );
                continue;
            }
            let mut b = hearth_vmm::files::ImageBuilder::new();
            if host.is_dir() {
                b.tree("", host)?;
            } else {
                let name = host
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| anyhow!("--mount {spec:?}: no file name"))?;
                b.file_from(name, host)?;
            }
            let mut f = tempfile::tempfile().context("creating a file for a mount")?;
            b.write(&mut std::io::BufWriter::new(&mut f))?;
            files.paths.push(guest.to_string());
            files
                .images
                .push(ModuleFile::new(f).context("reading a mount's image back")?);
        }
        Ok(files)
    }

    fn refs(&self) -> Vec<&ModuleFile> {
        self.images.iter().collect()
    }

    fn shas(&self) -> Vec<[u8; 32]> {
        self.images.iter().map(|i| i.sha256).collect()
    }
}

fn config(module: &Path, args: &[String], env: &[String], files: &Files) -> Result<Vec<u8>> {
    let name = module
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("module.wasm");
    let mut pairs = Vec::new();
    for e in env {
        let (k, v) = e
            .split_once('=')
            .ok_or_else(|| anyhow!("--env {e:?} is not KEY=VALUE"))?;
        pairs.push((k, v));
    }
    let mounts: Vec<(&str, u64)> = files
        .paths
        .iter()
        .zip(&files.images)
        .map(|(path, image)| (path.as_str(), image.len))
        .collect();
    let argv: Vec<&str> = std::iter::once(name)
        .chain(args.iter().map(String::as_str))
        .collect();
    hearth_pool::vm::config_blob_with_mounts(&argv, &pairs, &mounts).map_err(|e| anyhow!("{e}"))
}

/// Opens a cached snapshot, removing it if it no longer verifies (it is
/// then taken again).
fn open_cached(path: &Path) -> Option<Arc<Snapshot>> {
    match SnapshotCache::open(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hearth vm run: discarding {}: {e}", path.display());
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

/// How the run got its VM.
#[derive(Clone, Copy)]
enum Path_ {
    Boot,
    FirstRun,
    Restore,
}

impl Path_ {
    fn name(self) -> &'static str {
        match self {
            Path_::Boot => "boot (no snapshots)",
            Path_::FirstRun => "first run: booted, snapshotted, restored",
            Path_::Restore => "restored from the function snapshot",
        }
    }
}

struct Outcome {
    how: Path_,
    result: std::result::Result<Finished, GuestError>,
    stats: RunStats,
    phases: Phases,
    snapshots: Vec<PathBuf>,
}

fn run_module(args: &RunArgs) -> Result<i32> {
    let kvm = Kvm::open().map_err(|e| anyhow!("{e}"))?;
    let module_path = args
        .module
        .clone()
        .ok_or_else(|| anyhow!("no module given"))?;
    let bytes = read_module(&module_path)?;
    let event = match &args.event_bytes {
        Some(b) => b.clone(),
        None => read_event(&args.event)?,
    };
    if event.len() as u64 > hearth_guest_abi::layout::EVENT_CAP {
        bail!(
            "the event is {} bytes; the limit is {}",
            event.len(),
            hearth_guest_abi::layout::EVENT_CAP
        );
    }
    if !(args.timeout > 0.0 && args.timeout <= 900.0) {
        bail!("--timeout must be between 0 and 900 seconds");
    }
    let files = Files::build(&args.mounts)?;
    let cfg = config(&module_path, &args.args, &args.env, &files)?;
    let bytes = match args.engine() {
        EngineArg::Wasmi if bytes.starts_with(hearth_wasi::aot::AOT_MAGIC) => {
            bail!(
                "{} is compiled for the ahead-of-time engine: use --engine aot",
                module_path.display()
            )
        }
        EngineArg::Wasmi => bytes,
        // Already compiled (`hearth vm compile`): as it is.
        EngineArg::Aot if bytes.starts_with(hearth_wasi::aot::AOT_MAGIC) => bytes,
        EngineArg::Aot => hearth_wasi::aot::precompile(&bytes)
            .map_err(|e| anyhow!("compiling the module: {e}"))?,
    };
    let module = module_file(&bytes)?;
    let image = GuestImage::new(hearth_guest_image::ELF);
    let thread = VmThread::spawn("hearth-vm", true).map_err(|e| anyhow!("{e}"))?;
    let timeout_ns = (args.timeout * 1e9) as u64;
    let outcome = match &args.snapshot_dir {
        None => run_booted(
            &kvm,
            &image,
            &thread,
            args.memory,
            &module,
            &files,
            &cfg,
            &event,
            timeout_ns,
        )?,
        Some(dir) => run_snapshotted(
            &kvm,
            &image,
            &thread,
            args.memory,
            &module,
            &files,
            &cfg,
            &event,
            timeout_ns,
            dir,
        )?,
    };
    report(args, outcome)
}

const BOOT_TIMEOUT_NS: u64 = 10_000_000_000;
const REQUEST_ID: &str = "00000000-0000-0000-0000-000000000000";

#[allow(clippy::too_many_arguments)]
fn run_booted(
    kvm: &Arc<Kvm>,
    image: &GuestImage,
    thread: &VmThread,
    mem: u64,
    module: &ModuleFile,
    files: &Files,
    cfg: &[u8],
    event: &[u8],
    timeout_ns: u64,
) -> Result<Outcome> {
    let mut phases = Phases::default();
    let mut vm = phases.time("create", || Vm::boot(kvm, image, mem))?;
    let create_ns = vm.setup_ns();
    let (vm_back, booted) = phases.time("boot", || {
        thread.call(move |r| {
            let res = r.boot(&mut vm, BOOT_TIMEOUT_NS, &mut RunStats::default());
            (vm, res)
        })
    })?;
    vm = vm_back;
    booted.context("booting the guest")?;
    let len = vm.attach_module(module)?;
    vm.attach_files(&files.refs())?;
    let (cfg, event) = (cfg.to_vec(), event.to_vec());
    let (result, stats) = phases.time("load+run", || {
        thread.call(move |r| {
            let mut stats = RunStats::default();
            let inv = Invocation {
                event: &event,
                request_id: REQUEST_ID,
                timeout_ns,
            };
            let res = r
                .load(&mut vm, len, &cfg, Some(&inv), timeout_ns, &mut stats)
                .map(|l| match l {
                    Loaded::Finished(f) => f,
                    Loaded::Waiting => unreachable!("a load with its event runs to the end"),
                });
            (res, stats)
        })
    })?;
    let mut stats = stats;
    stats.create_ns = create_ns;
    Ok(Outcome {
        how: Path_::Boot,
        result,
        stats,
        phases,
        snapshots: Vec::new(),
    })
}

#[allow(clippy::too_many_arguments)]
fn run_snapshotted(
    kvm: &Arc<Kvm>,
    image: &GuestImage,
    thread: &VmThread,
    mem: u64,
    module: &ModuleFile,
    files: &Files,
    cfg: &[u8],
    event: &[u8],
    timeout_ns: u64,
    dir: &Path,
) -> Result<Outcome> {
    match run_from_cache(
        kvm, image, thread, mem, module, files, cfg, event, timeout_ns, dir,
    ) {
        Err(e) if is_mismatch(&e) => {
            // Snapshots that verify but do not fit this host (another CPU,
            // another KVM): discard them and take new ones.
            eprintln!(
                "hearth vm run: discarding snapshots in {}: {e:#}",
                dir.display()
            );
            for f in std::fs::read_dir(dir)?.flatten() {
                if f.file_name().to_string_lossy().ends_with(".snap") {
                    let _ = std::fs::remove_file(f.path());
                }
            }
            run_from_cache(
                kvm, image, thread, mem, module, files, cfg, event, timeout_ns, dir,
            )
        }
        other => other,
    }
}

fn is_mismatch(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<hearth_vmm::vm::VmError>(),
        Some(hearth_vmm::vm::VmError::Snapshot(
            hearth_vmm::snapshot::SnapshotError::Mismatch(_)
        ))
    )
}

#[allow(clippy::too_many_arguments)]
fn run_from_cache(
    kvm: &Arc<Kvm>,
    image: &GuestImage,
    thread: &VmThread,
    mem: u64,
    module: &ModuleFile,
    files: &Files,
    cfg: &[u8],
    event: &[u8],
    timeout_ns: u64,
    dir: &Path,
) -> Result<Outcome> {
    let cache = SnapshotCache::new(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut phases = Phases::default();
    let base_path = cache.base_path(&image.id(), &kvm.cpu_signature(), mem);
    let base = match open_cached(&base_path) {
        Some(b) => b,
        None => {
            let mut vm = phases.time("create", || Vm::boot(kvm, image, mem))?;
            let (vm_back, booted) = phases.time("boot", || {
                thread.call(move |r| {
                    let res = r.boot(&mut vm, BOOT_TIMEOUT_NS, &mut RunStats::default());
                    (vm, res)
                })
            })?;
            vm = vm_back;
            booted.context("booting the guest")?;
            phases.time("base snapshot", || vm.snapshot_base(&base_path, [0; 32]))?;
            Arc::new(Snapshot::open(&base_path)?)
        }
    };
    let shas = files.shas();
    let key = FunctionKey {
        module_sha256: module.sha256,
        image_id: image.id(),
        engine: hearth_guest_image::ENGINE,
        config: cfg,
        mem_mib: mem,
        base_id: base.header.id,
        files: &shas,
    }
    .digest();
    let fn_path = cache.function_path(&key);
    let event = event.to_vec();
    let invoke = move |vm: Vm, thread: &VmThread| {
        thread.call(move |r| {
            let mut vm = vm;
            let mut stats = RunStats::default();
            let inv = Invocation {
                event: &event,
                request_id: REQUEST_ID,
                timeout_ns,
            };
            let res = r.invoke(&mut vm, &inv, &mut stats);
            stats.cow_pages = vm.copied_pages().unwrap_or(0);
            (res, stats)
        })
    };
    if let Some(layer) = open_cached(&fn_path) {
        let vm = phases.time("restore", || {
            let mut vm = Vm::restore(kvm, &base, Some(&layer), Some(module))?;
            vm.attach_files(&files.refs())?;
            anyhow::Ok(vm)
        })?;
        let restore_ns = vm.setup_ns();
        let (result, mut stats) = phases.time("invoke", || invoke(vm, thread))?;
        stats.restore_ns = restore_ns;
        return Ok(Outcome {
            how: Path_::Restore,
            result,
            stats,
            phases,
            snapshots: vec![base_path, fn_path],
        });
    }
    let mut vm = phases.time("restore base", || Vm::restore(kvm, &base, None, None))?;
    let len = vm.attach_module(module)?;
    vm.attach_files(&files.refs())?;
    let load_cfg = cfg.to_vec();
    let (vm_back, loaded) = phases.time("load to stdin read", || {
        thread.call(move |r| {
            let res = r.load(
                &mut vm,
                len,
                &load_cfg,
                None,
                BOOT_TIMEOUT_NS.max(timeout_ns),
                &mut RunStats::default(),
            );
            (vm, res)
        })
    })?;
    vm = vm_back;
    match loaded {
        Ok(Loaded::Waiting) => {}
        Ok(Loaded::Finished(f)) => {
            // The module never read stdin: there is no snapshot point, and
            // this run is its whole answer.
            return Ok(Outcome {
                how: Path_::FirstRun,
                result: Ok(f),
                stats: RunStats::default(),
                phases,
                snapshots: vec![base_path],
            });
        }
        Err(e) => {
            return Ok(Outcome {
                how: Path_::FirstRun,
                result: Err(e),
                stats: RunStats::default(),
                phases,
                snapshots: vec![base_path],
            })
        }
    }
    // The init's stderr is this first run's only: invocations from the
    // snapshot point report just their own.
    let init_output = hearth_vmm::guest::Runner::init_output(&vm)?;
    phases.time("function snapshot", || vm.snapshot_layer(&fn_path, key))?;
    let (mut result, stats) = phases.time("invoke", || invoke(vm, thread))?;
    if let Ok(f) = &mut result {
        f.stderr.splice(0..0, init_output);
    }
    Ok(Outcome {
        how: Path_::FirstRun,
        result,
        stats,
        phases,
        snapshots: vec![base_path, fn_path],
    })
}

/// Prints the outcome; returns the exit code: the module's own exit status
/// (0 is success), 1 for any other function error.
fn report(args: &RunArgs, o: Outcome) -> Result<i32> {
    let (status, code, message, stdout, stderr, dropped) = match &o.result {
        Ok(f) => {
            let (status, code, message) = match &f.ended {
                Ended::Exited(0) => ("exited", 0, String::new()),
                Ended::Exited(n) => (
                    "exited",
                    (*n).clamp(1, 125),
                    format!("the module exited with status {n}"),
                ),
                Ended::Trap(m) => ("trap", 1, m.clone()),
                Ended::OutOfMemory => (
                    "out-of-memory",
                    1,
                    "the module needs more memory than the VM has".into(),
                ),
                Ended::OutputTooLarge => (
                    "output-too-large",
                    1,
                    "the module wrote more than 6 MB to stdout".into(),
                ),
                Ended::LoadError { kind, message } => {
                    ("load-error", 1, format!("{kind:?}: {message}"))
                }
                Ended::GuestPanic(m) => ("guest-error", 1, m.clone()),
            };
            (
                status,
                code,
                message,
                f.stdout.as_slice(),
                f.stderr.as_slice(),
                f.stderr_dropped,
            )
        }
        Err(GuestError::Timeout) => (
            "timeout",
            1,
            format!("the module ran past its {} s timeout", args.timeout),
            &[][..],
            &[][..],
            0,
        ),
        Err(e) => ("vm-error", 1, e.to_string(), &[][..], &[][..], 0),
    };
    let acct = o.stats.micros();
    if args.json {
        let phases: serde_json::Map<String, serde_json::Value> = o
            .phases
            .0
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let out = json!({
            "module": args.module,
            "path": o.how.name(),
            "status": status,
            "exit_code": code,
            "error": if message.is_empty() { serde_json::Value::Null } else { json!(message) },
            "stdout": String::from_utf8_lossy(stdout),
            "stderr": String::from_utf8_lossy(stderr),
            "stderr_dropped": dropped,
            "phases_us": phases,
            "accounting": acct,
            "snapshots": o.snapshots,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(code);
    }
    std::io::stdout().write_all(stdout)?;
    std::io::stdout().flush()?;
    let mut err = std::io::stderr().lock();
    err.write_all(stderr)?;
    if dropped > 0 {
        writeln!(err, "[{dropped} more bytes of stderr dropped]")?;
    }
    writeln!(
        err,
        "-- hearth vm: {} ({}, {} MiB): {}",
        args.python.as_deref().map_or_else(
            || args
                .module
                .as_deref()
                .unwrap_or(Path::new("?"))
                .display()
                .to_string(),
            |h| format!("python {h}")
        ),
        args.engine().id(),
        args.memory,
        o.how.name()
    )?;
    let phases: Vec<String> = o
        .phases
        .0
        .iter()
        .map(|(k, v)| format!("{k} {v:.1} µs"))
        .collect();
    writeln!(err, "   phases   {}", phases.join(" · "))?;
    writeln!(
        err,
        "   guest    run wall {:.1} µs · vCPU thread cpu {:.1} µs · exits {} · pages copied on write {}{}{}",
        acct.run_wall_us,
        acct.run_cpu_us,
        acct.exits_total,
        acct.cow_pages,
        if acct.restore_us > 0.0 { format!(" · restore {:.1} µs", acct.restore_us) } else { String::new() },
        if acct.create_us > 0.0 { format!(" · create {:.1} µs", acct.create_us) } else { String::new() },
    )?;
    if message.is_empty() {
        writeln!(err, "   status   {status}")?;
    } else {
        writeln!(err, "   status   {status}: {message}")?;
    }
    Ok(code)
}
