//! The `datafusion-bedrock` command: `datafusion-cli` with the extension, plus the `emulator`
//! and `slt` subcommands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use datafusion::prelude::SessionContext;
use datafusion_bedrock::catalog::persist::CatalogFile;
use datafusion_bedrock::distributed;
use datafusion_bedrock::emulator::{
    Emulator, EmulatorConfig, FaultRates, LoadModel, StaticCredential,
};
use datafusion_bedrock::shell::{self, Failure, SessionSettings, Shell};
use datafusion_bedrock::slt::{SltDriver, slt_files};
use datafusion_bedrock::{BedrockExtension, register_files_dir, restore_catalog};
use datafusion_cli::object_storage::instrumented::InstrumentedObjectStoreRegistry;
use datafusion_cli::object_storage::is_stdin_location;
use datafusion_cli::print_format::PrintFormat;
use datafusion_cli::print_options::MaxRows;

/// Amazon Bedrock foundation models inside Apache DataFusion SQL: datafusion-cli with
/// `CREATE ML_ENGINE`, `CREATE MODEL` and models as relations.
#[derive(Debug, Parser)]
#[command(
    name = "datafusion-bedrock",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    shell: ShellArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the built-in Bedrock emulator on 127.0.0.1 until interrupted (Ctrl-C).
    Emulator(EmulatorArgs),
    /// Run sqllogictest files against the extension and a built-in emulator.
    Slt(SltArgs),
    /// Run a Ballista scheduler that knows the extension, until interrupted.
    Scheduler(SchedulerArgs),
    /// Run a Ballista executor that knows the extension, until interrupted. It calls Bedrock
    /// with its own credentials (environment, profile, role).
    Executor(ExecutorArgs),
}

#[derive(Debug, Args)]
struct SchedulerArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_host: String,
    /// The host name executors and clients reach this scheduler by (default: the bind host).
    #[arg(long)]
    external_host: Option<String>,
    /// The gRPC port.
    #[arg(long, default_value_t = 50050)]
    port: u16,
}

#[derive(Debug, Args)]
struct ExecutorArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_host: String,
    /// The host name others reach this executor by (default: the bind host).
    #[arg(long)]
    external_host: Option<String>,
    /// The Arrow Flight port, which serves shuffle data.
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// The gRPC port.
    #[arg(long, default_value_t = 50052)]
    grpc_port: u16,
    /// The scheduler's host.
    #[arg(long, default_value = "127.0.0.1")]
    scheduler_host: String,
    /// The scheduler's port.
    #[arg(long, default_value_t = 50050)]
    scheduler_port: u16,
    /// Tasks run at once (default: the number of cores).
    #[arg(long)]
    concurrent_tasks: Option<usize>,
    /// Where shuffle files go (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<String>,
}

/// The shell's flags: datafusion-cli's, then the extension's.
// The field docs are the `--help` text, printed as written: no Markdown backticks there.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Args)]
struct ShellArgs {
    /// Path to your data, default to current directory
    #[arg(short = 'p', long)]
    data_path: Option<PathBuf>,
    /// The batch size of each query, or use DataFusion default
    #[arg(short = 'b', long)]
    batch_size: Option<usize>,
    /// Execute the given command string(s), then exit. Commands are expected to be non empty.
    #[arg(short = 'c', long, num_args = 0.., value_parser = non_empty_command)]
    command: Vec<String>,
    /// The memory pool limitation (e.g. '10g'), default to None (no limit)
    #[arg(short = 'm', long, value_parser = memory_size)]
    memory_limit: Option<usize>,
    /// Execute commands from file(s), then exit
    #[arg(short = 'f', long, num_args = 0.., value_parser = existing_file)]
    file: Vec<String>,
    /// Run the provided files on startup instead of ~/.datafusionrc
    #[arg(short = 'r', long, num_args = 0.., value_parser = existing_file, conflicts_with = "file")]
    rc: Option<Vec<String>>,
    /// Output format
    #[arg(long, value_enum, default_value_t = PrintFormat::Automatic)]
    format: PrintFormat,
    /// Reduce printing other than the results and work quietly
    #[arg(short = 'q', long)]
    quiet: bool,
    /// The max number of rows to display for 'Table' format
    /// [possible values: numbers(0/10/...), inf(no limit)]
    #[arg(long, default_value = "40")]
    maxrows: MaxRows,
    /// Enables console syntax highlighting
    #[arg(long)]
    color: bool,
    /// Start the built-in Bedrock emulator and make it the endpoint of engines that name no
    /// endpoint_url: answers are emulated, nothing reaches AWS.
    #[arg(long)]
    emulator: bool,
    /// Serve a directory's CSV, Parquet and JSON files as the `files` schema.
    #[arg(long, value_name = "DIR")]
    files: Option<PathBuf>,
    /// Keep engines and models in this file between runs (mode 0600). Default: catalog.json in
    /// the user's config directory (datafusion-bedrock/), or none with --emulator.
    #[arg(long, value_name = "PATH")]
    catalog: Option<PathBuf>,
    /// Send queries to the Ballista scheduler at df://HOST:PORT (started with
    /// datafusion-bedrock scheduler); queries reading only in-memory tables run here.
    #[arg(long, value_name = "df://HOST:PORT")]
    cluster: Option<String>,
}

impl ShellArgs {
    /// Without -c/-f the shell reads SQL from stdin (interactive or piped).
    fn repl_mode(&self) -> bool {
        self.command.is_empty() && self.file.is_empty()
    }

    fn reads_sql_from_stdin(&self) -> bool {
        self.repl_mode() || self.file.iter().any(|f| is_stdin_location(f))
    }
}

fn non_empty_command(command: &str) -> Result<String, String> {
    if command.is_empty() {
        Err("-c expects a non-empty SQL command".to_string())
    } else {
        Ok(command.to_string())
    }
}

fn existing_file(path: &str) -> Result<String, String> {
    if std::path::Path::new(path).is_file() || is_stdin_location(path) {
        Ok(path.to_string())
    } else {
        Err(format!("Invalid file '{path}': no such file"))
    }
}

/// `10g`, `512m`, `64k`, `1000` (bytes).
fn memory_size(size: &str) -> Result<usize, String> {
    let lower = size.trim().to_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        "t" | "tb" => 40,
        _ => {
            return Err(format!(
                "Invalid memory pool size '{size}': use e.g. 512m or 10g"
            ));
        }
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("Invalid numeric value in memory pool size '{size}'"))?;
    n.checked_mul(1_usize << shift)
        .ok_or_else(|| format!("memory pool size '{size}' is too large"))
}

#[derive(Debug, Args)]
struct SltArgs {
    /// .slt files, or directories searched for them.
    #[arg(required = true, value_name = "FILES")]
    paths: Vec<PathBuf>,
    /// Rewrite each file's expected output with what the queries return now.
    #[arg(long)]
    complete: bool,
    /// Serve a directory's CSV, Parquet and JSON files as the `files` schema.
    #[arg(long, value_name = "DIR")]
    files: Option<PathBuf>,
}

// The field docs are the `--help` text, printed as written: no Markdown backticks there.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Args)]
struct EmulatorArgs {
    /// TCP port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Fixed latency of every runtime response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Up to this many extra milliseconds, drawn from the seeded generator.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Extra milliseconds per output token.
    #[arg(long, default_value_t = 0.0)]
    per_token_ms: f64,
    /// Requests per minute allowed per model (throttles beyond it).
    #[arg(long)]
    rpm: Option<u32>,
    /// Tokens per minute allowed per model (input + maxTokens reserved at the start).
    #[arg(long)]
    tpm: Option<u32>,
    /// The burst a quota allows, as seconds of its per-minute rate.
    #[arg(long, default_value_t = 60)]
    quota_window_secs: u64,
    /// Probability of a 429 ThrottlingException.
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
    /// Probability of a 500 InternalServerException.
    #[arg(long, default_value_t = 0.0)]
    internal_error_rate: f64,
    /// Probability of a 503 ServiceUnavailableException.
    #[arg(long, default_value_t = 0.0)]
    unavailable_rate: f64,
    /// Probability of a 408 ModelTimeoutException.
    #[arg(long, default_value_t = 0.0)]
    timeout_rate: f64,
    /// Probability of a 200 response with a truncated JSON body.
    #[arg(long, default_value_t = 0.0)]
    malformed_rate: f64,
    /// Probability of closing the connection without a response.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Seed of jitter and fault draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Verify SigV4 signatures made with this access key id (with --secret-access-key).
    #[arg(long, requires = "secret_access_key")]
    access_key_id: Option<String>,
    /// The secret key of --access-key-id.
    #[arg(long, requires = "access_key_id")]
    secret_access_key: Option<String>,
    /// Require this session token with --access-key-id.
    #[arg(long, requires = "access_key_id")]
    session_token: Option<String>,
    /// Accept only these Bedrock API keys as `Authorization: Bearer` (repeatable).
    #[arg(long = "api-key")]
    api_keys: Vec<String>,
    /// Serve S3 over this directory (created if missing; bucket `bedrock-batch` in it), for
    /// batch inference jobs and s3:// tables. Its keys: AKIDEMULATEDS3 / emulated-s3-secret-key.
    #[arg(long)]
    s3_root: Option<std::path::PathBuf>,
    /// How long each status step of a batch job lasts, in milliseconds.
    #[arg(long, default_value_t = 20)]
    batch_step_ms: u64,
    /// Records a running batch job processes per second (default: as fast as it can).
    #[arg(long)]
    batch_records_per_second: Option<u32>,
}

impl EmulatorArgs {
    fn into_config(self) -> Result<EmulatorConfig, String> {
        let faults = FaultRates {
            throttle: self.throttle_rate,
            internal: self.internal_error_rate,
            unavailable: self.unavailable_rate,
            timeout: self.timeout_rate,
            malformed: self.malformed_rate,
            drop_connection: self.drop_rate,
        };
        let rates = [
            ("--throttle-rate", faults.throttle),
            ("--internal-error-rate", faults.internal),
            ("--unavailable-rate", faults.unavailable),
            ("--timeout-rate", faults.timeout),
            ("--malformed-rate", faults.malformed),
            ("--drop-rate", faults.drop_connection),
        ];
        if let Some((flag, rate)) = rates.iter().find(|(_, r)| !(0.0..=1.0).contains(r)) {
            return Err(format!(
                "{flag} {rate} is outside 0..1: give a probability such as 0.05"
            ));
        }
        if faults.total() > 1.0 {
            return Err(format!(
                "the fault rates add up to {}: their sum must be at most 1",
                faults.total()
            ));
        }
        if !self.per_token_ms.is_finite() || self.per_token_ms < 0.0 {
            return Err(format!(
                "--per-token-ms {} must be a non-negative number of milliseconds",
                self.per_token_ms
            ));
        }
        let credentials = match (self.access_key_id, self.secret_access_key) {
            (Some(key), Some(secret)) => {
                let mut c = StaticCredential::new(key, secret);
                c.session_token = self.session_token;
                vec![c]
            }
            _ => Vec::new(),
        };
        Ok(EmulatorConfig {
            port: self.port,
            credentials,
            api_keys: self.api_keys,
            load: LoadModel {
                latency: Duration::from_millis(self.latency_ms),
                jitter: Duration::from_millis(self.jitter_ms),
                per_output_token: Duration::from_secs_f64(self.per_token_ms / 1000.0),
                requests_per_minute: self.rpm,
                tokens_per_minute: self.tpm,
                quota_window: Duration::from_secs(self.quota_window_secs.max(1)),
                faults,
                seed: self.seed,
            },
            s3_root: self.s3_root,
            batch_step: Duration::from_millis(self.batch_step_ms),
            batch_records_per_second: self.batch_records_per_second,
            ..EmulatorConfig::default()
        })
    }
}

async fn run_emulator(args: EmulatorArgs) -> Result<(), String> {
    let config = args.into_config()?;
    let emulator = Emulator::start(config)
        .await
        .map_err(|e| format!("cannot start the emulator: {e}"))?;
    println!("Bedrock emulator listening on {}", emulator.url());
    println!(
        "Point the AWS SDK at it with AWS_ENDPOINT_URL={}",
        emulator.url()
    );
    if let Some(s3) = emulator.s3_url() {
        println!("S3 for batch jobs at {s3} (bucket bedrock-batch)");
    }
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
    emulator.shutdown().await;
    Ok(())
}

async fn run_slt(args: SltArgs) -> Result<ExitCode, String> {
    let mut files = Vec::new();
    for path in &args.paths {
        files.extend(slt_files(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?);
    }
    if files.is_empty() {
        return Err("no .slt files found in the paths given".into());
    }
    let driver = SltDriver::start(EmulatorConfig::default(), args.files)
        .await
        .map_err(|e| format!("cannot start the emulator: {e}"))?;
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let result = if args.complete {
            driver.complete_file(file).await
        } else {
            driver.run_file(file).await.map_err(|e| e.to_string())
        };
        match result {
            Ok(()) if args.complete => {
                println!("completed {}", file.display());
                passed += 1;
            }
            Ok(()) => {
                println!("ok     {}", file.display());
                passed += 1;
            }
            Err(e) => {
                println!("FAILED {}\n{e}", file.display());
                failed += 1;
            }
        }
    }
    driver.shutdown().await;
    println!("sqllogictest: {passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_scheduler(args: SchedulerArgs) -> Result<(), String> {
    let options = distributed::SchedulerOptions {
        bind_host: args.bind_host,
        port: args.port,
        external_host: args.external_host,
    };
    println!(
        "datafusion-bedrock scheduler listening on {}:{}",
        options.bind_host, options.port
    );
    tokio::select! {
        result = distributed::run_scheduler(options) => result.map_err(|e| e.to_string()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn run_executor(args: ExecutorArgs) -> Result<(), String> {
    let defaults = distributed::ExecutorOptions::default();
    let options = distributed::ExecutorOptions {
        bind_host: args.bind_host,
        external_host: args.external_host,
        port: args.port,
        grpc_port: args.grpc_port,
        scheduler_host: args.scheduler_host,
        scheduler_port: args.scheduler_port,
        concurrent_tasks: args.concurrent_tasks.unwrap_or(defaults.concurrent_tasks),
        work_dir: args.work_dir,
    };
    println!(
        "datafusion-bedrock executor on {}:{} (flight) / {} (grpc), scheduler {}:{}, {} concurrent tasks",
        options.bind_host,
        options.port,
        options.grpc_port,
        options.scheduler_host,
        options.scheduler_port,
        options.concurrent_tasks
    );
    distributed::run_executor(options)
        .await
        .map_err(|e| e.to_string())
}

/// The catalog file: `--catalog`, else the user's config directory unless `--emulator`.
fn catalog_path(args: &ShellArgs) -> Option<PathBuf> {
    if let Some(path) = &args.catalog {
        return Some(path.clone());
    }
    if args.emulator {
        return None;
    }
    dirs::config_dir().map(|d| d.join("datafusion-bedrock").join("catalog.json"))
}

/// Keeps the session's engines and models in the catalog file at `path`, after recreating
/// what the file already holds.
async fn open_catalog(
    ctx: &SessionContext,
    ext: &BedrockExtension,
    path: &std::path::Path,
) -> Result<(), String> {
    let file = CatalogFile::open(path).map_err(|e| e.to_string())?;
    ext.set_catalog_file(Some(file));
    // Each engine and model waits at most its connect_timeout; Ctrl-C stops the restore
    // (what was not restored stays in the file).
    tokio::select! {
        restored = restore_catalog(ctx) => {
            for (what, e) in restored.map_err(|e| e.to_string())? {
                eprintln!(
                    "Warning: {what} of {} was not restored: {e}",
                    path.display()
                );
            }
        }
        _ = tokio::signal::ctrl_c() => {
            eprintln!(
                "Warning: restoring {} was interrupted (Ctrl-C): what was not restored yet stays in the file",
                path.display()
            );
        }
    }
    Ok(())
}

/// Runs the shell; `Ok(false)` when a `-c`/`-f` statement failed.
async fn run_shell(args: ShellArgs) -> Result<bool, String> {
    if !args.quiet {
        println!(
            "datafusion-bedrock v{} (DataFusion CLI v{})",
            env!("CARGO_PKG_VERSION"),
            datafusion_cli::DATAFUSION_CLI_VERSION
        );
    }
    if let Some(path) = &args.data_path {
        std::env::set_current_dir(path)
            .map_err(|e| format!("cannot use data path '{}': {e}", path.display()))?;
    }
    let registry = Arc::new(InstrumentedObjectStoreRegistry::new());
    let settings = SessionSettings {
        batch_size: args.batch_size,
        memory_limit: args.memory_limit,
        reads_sql_from_stdin: args.reads_sql_from_stdin(),
        cluster: args.cluster.clone(),
    };
    let ctx: SessionContext = shell::session_context(&settings, Arc::clone(&registry))
        .await
        .map_err(|e| e.to_string())?;
    let ext = BedrockExtension::of_session(&ctx).map_err(|e| e.to_string())?;
    let emulator = if args.emulator {
        let s3_root = datafusion_bedrock::slt::ScratchDir::new("shell-s3")
            .map_err(|e| format!("cannot make the emulator's S3 directory: {e}"))?;
        let emulator = Emulator::start(EmulatorConfig {
            s3_root: Some(s3_root.path().to_path_buf()),
            ..EmulatorConfig::default()
        })
        .await
        .map_err(|e| format!("cannot start the emulator: {e}"))?;
        eprintln!(
            "Emulated Bedrock at {}: engines without endpoint_url get emulated answers, batch jobs use its S3 bucket 'bedrock-batch', nothing reaches AWS.",
            emulator.url()
        );
        ext.set_default_endpoint(Some(emulator.url().to_string()));
        ext.set_default_s3_endpoint(emulator.s3_url().map(str::to_string));
        Some((emulator, s3_root))
    } else {
        None
    };
    if let Some(path) = catalog_path(&args) {
        open_catalog(&ctx, &ext, &path).await?;
    }
    if let Some(dir) = &args.files {
        let registered = register_files_dir(&ctx, dir)
            .await
            .map_err(|e| e.to_string())?;
        for (file, e) in registered.skipped {
            eprintln!(
                "Warning: {} is not served in the files schema: {e}",
                file.display()
            );
        }
    }
    let print = shell::print_options(args.format, args.quiet, args.maxrows, args.color, registry);
    let mut shell = Shell::new(ctx, print).map_err(|e| e.to_string())?;

    let ok = if args.repl_mode() {
        let rc = match args.rc {
            Some(files) => files,
            None => dirs::home_dir()
                .map(|h| h.join(".datafusionrc"))
                .filter(|p| p.exists())
                .map(|p| p.display().to_string())
                .into_iter()
                .collect(),
        };
        for file in rc {
            if let Err(Failure::Cancelled) = shell.run_file(&file).await {
                break;
            }
        }
        shell.run_repl().await.map_err(|e| e.to_string())?;
        true
    } else {
        let mut ok = true;
        for file in &args.file {
            match shell.run_file(file).await {
                Ok(all) => ok &= all,
                Err(e) => return Err(e.to_string()),
            }
        }
        if !args.command.is_empty() {
            shell
                .run_commands(&args.command)
                .await
                .map_err(|e| e.to_string())?;
        }
        ok
    };
    if let Some((emulator, s3_root)) = emulator {
        emulator.shutdown().await;
        drop(s3_root);
    }
    Ok(ok)
}

/// Where the error that ends a run is printed.
enum Failed {
    /// The shell prints it on stdout, as datafusion-cli does.
    Shell(String),
    /// The subcommands print it on stderr.
    Subcommand(String),
}

async fn main_inner(cli: Cli) -> Result<ExitCode, Failed> {
    match cli.command {
        Some(Command::Emulator(args)) => run_emulator(args)
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(Failed::Subcommand),
        Some(Command::Slt(args)) => run_slt(args).await.map_err(Failed::Subcommand),
        Some(Command::Scheduler(args)) => run_scheduler(args)
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(Failed::Subcommand),
        Some(Command::Executor(args)) => run_executor(args)
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(Failed::Subcommand),
        None => match run_shell(cli.shell).await {
            Ok(true) => Ok(ExitCode::SUCCESS),
            Ok(false) => Ok(ExitCode::FAILURE),
            Err(message) => Err(Failed::Shell(message)),
        },
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_inner(cli)) {
        Ok(code) => code,
        Err(Failed::Shell(message)) => {
            println!("Error: {message}");
            ExitCode::FAILURE
        }
        Err(Failed::Subcommand(message)) => {
            eprintln!("Error: {message}");
            ExitCode::FAILURE
        }
    }
}
