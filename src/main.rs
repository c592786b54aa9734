//! The `datafusion-bedrock` command.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use datafusion_bedrock::emulator::{
    Emulator, EmulatorConfig, FaultRates, LoadModel, StaticCredential,
};

/// Amazon Bedrock foundation models inside Apache DataFusion SQL.
#[derive(Debug, Parser)]
#[command(name = "datafusion-bedrock", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the built-in Bedrock emulator on 127.0.0.1 until interrupted (Ctrl-C).
    Emulator(EmulatorArgs),
}

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
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
    emulator.shutdown().await;
    Ok(())
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Emulator(args) => run_emulator(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("Error: {message}");
            ExitCode::FAILURE
        }
    }
}
