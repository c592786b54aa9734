//! Inference benchmarks: throughput against the physical limit `C / L`, overhead against a bare
//! `aws-sdk-bedrockruntime` loop, cost against duplicates, a tokens-per-minute quota, peak
//! memory and MindsDB's one-request-per-row baseline.
//!
//! Every scenario runs the real SQL path (`SELECT … FROM parquet_table AS d JOIN model AS m`,
//! or `ai_classify` over a table for `packing` and `ordering`) against the built-in emulator,
//! started in this process on 127.0.0.1.
//!
//! ```text
//! cargo bench --bench inference                      # every scenario, 3 runs each (release)
//! cargo bench --bench inference -- latency quota     # some scenarios
//! cargo bench --bench inference -- --runs 5 --out DIR
//! cargo test  --bench inference -- --short           # CI: small sizes, one run, dev profile
//! ```
//!
//! Scenarios: `latency`, `overhead`, `duplicates`, `quota`, `memory`, `sequential`, `cluster`
//! (the latency-bound JOIN on a Ballista cluster of one, then two, executors in this process),
//! `batch` (the same distinct prompts on demand and through a Bedrock batch inference job, at
//! the on-demand and the batch price), `packing` (`ai_classify` with `rows_per_request = 16`
//! against one row per request: requests, tokens, cost), `prompt_cache` (a 2,000-token fixed
//! instruction with `prompt_cache = 'auto'` against `'off'`: billed input cost) and `ordering`
//! (rows sharing one of several long prefixes, interleaved, against an emulator prompt cache
//! smaller than the prefixes: the cache-read share with `bedrock.reorder_requests` on and off)
//! and `semantic_join` (`ai_filter` over questions × answers with the semantic-join rewrite
//! against the full cross product: filter and embedding requests, cost, the same matches).
//! Results are
//! printed as a table and written to `<out>/results.json` and `<out>/throughput.svg` (default
//! `target/inference-bench`). The short mode checks what does not depend on timing (every row
//! answered, duplicates sent once, no failed row under a quota, packed and unpacked request
//! counts, the prompt cache read and its tokens billed as `bedrock_usage()` says) and fails
//! when it does not hold; no mode ever fails on a time, nor on the token ratios' targets.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use aws_smithy_types::retry::RetryConfig;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use datafusion_bedrock::distributed::{LocalCluster, cluster_session};
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig, LoadModel};
use datafusion_bedrock::{BedrockContext, BedrockExtension, SessionStateBuilderBedrock};
use futures::StreamExt;
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, BoxError>;

const MODEL_ID: &str = "amazon.titan-text-premier-v1:0";
const ACCESS_KEY: &str = "AKIDBENCHMARK";
const SECRET_KEY: &str = "benchmark-secret";
const QUERY: &str = "SELECT d.question, m.answer FROM questions AS d JOIN bench_model AS m";
const SCENARIOS: [&str; 12] = [
    "latency",
    "overhead",
    "duplicates",
    "quota",
    "memory",
    "sequential",
    "cluster",
    "batch",
    "packing",
    "prompt_cache",
    "ordering",
    "semantic_join",
];
/// The model of the packing, prompt-cache and ordering scenarios (Nova caches prompts from
/// 1,000 tokens).
const NOVA: &str = "amazon.nova-micro-v1:0";
/// Scenario 10's model, the usual one for prompt caching on Bedrock: Claude 3.7 Sonnet through
/// its US inference profile (the emulator counts its requests under the base id).
const CLAUDE: &str = "us.anthropic.claude-3-7-sonnet-20250219-v1:0";
const CLAUDE_BASE: &str = "anthropic.claude-3-7-sonnet-20250219-v1:0";
/// Claude 3.7 Sonnet's list prices (USD per 1K tokens) and its cache prices as factors of the
/// input price: reads at 0.1×, 5-minute writes at 1.25× (the library's table).
const CLAUDE_INPUT_PER_1K: f64 = 0.003;
const CLAUDE_OUTPUT_PER_1K: f64 = 0.015;
const CLAUDE_CACHE_READ_FACTOR: f64 = 0.1;
const CLAUDE_CACHE_WRITE_FACTOR: f64 = 1.25;

/// Sizes and latencies of one mode.
#[derive(Debug, Clone)]
struct Sizes {
    runs: usize,
    /// Fixed emulator latency; jitter adds up to `jitter` more, so the mean latency is
    /// `latency + jitter / 2`.
    latency: Duration,
    jitter: Duration,
    concurrencies: Vec<usize>,
    latency_prompts: usize,
    latency_prompts_c1: usize,
    overhead_prompts: usize,
    overhead_concurrency: usize,
    duplicate_rows: usize,
    duplicate_distinct: usize,
    duplicate_concurrency: usize,
    quota_rows: usize,
    quota_tokens_per_minute: u32,
    quota_window: Duration,
    quota_start_concurrency: usize,
    memory_rows: Vec<usize>,
    memory_distinct: usize,
    sequential_prompts: usize,
    /// The cluster scenario: rows (in 16 Parquet files, so that executors take tasks in turn
    /// as they free up), each executor's engine concurrency and task slots.
    cluster_rows: usize,
    cluster_concurrency: usize,
    cluster_tasks: usize,
    /// The batch scenario: distinct prompts, the on-demand concurrency, and the emulator's
    /// pace of a job (each status step, records per second while in progress).
    batch_prompts: usize,
    batch_concurrency: usize,
    batch_step: Duration,
    batch_records_per_second: u32,
    /// The packing scenario: texts classified, rows per packed request, engine concurrency.
    packing_rows: usize,
    packing_rows_per_request: usize,
    packing_concurrency: usize,
    /// The prompt-cache scenario: rows, characters of the fixed instruction (the model's system
    /// prompt), engine concurrency.
    prompt_cache_rows: usize,
    prompt_cache_instruction_chars: usize,
    prompt_cache_concurrency: usize,
    /// The ordering scenario: rows, distinct long prefixes (rows take them in turn), repeats of
    /// the rule sentence making up each prefix, the emulator's prompt-cache entries (fewer than
    /// the prefixes: a cache that evicts) and the engine concurrencies.
    ordering_rows: usize,
    ordering_prefixes: usize,
    ordering_rule_repeats: usize,
    ordering_cache_entries: usize,
    ordering_concurrencies: Vec<usize>,
    /// Scenario 12: questions and answers (as many of each) and the engine concurrency.
    semantic_join_rows: usize,
    semantic_join_concurrency: usize,
}

impl Sizes {
    fn full(runs: usize) -> Self {
        Self {
            runs,
            latency: Duration::from_millis(190),
            jitter: Duration::from_millis(20),
            concurrencies: vec![1, 8, 32, 64, 128],
            latency_prompts: 2_000,
            latency_prompts_c1: 100,
            overhead_prompts: 20_000,
            overhead_concurrency: 64,
            duplicate_rows: 100_000,
            duplicate_distinct: 500,
            duplicate_concurrency: 64,
            quota_rows: 800,
            quota_tokens_per_minute: 60_000,
            quota_window: Duration::from_secs(2),
            quota_start_concurrency: 256,
            memory_rows: vec![100_000, 1_000_000],
            memory_distinct: 1_000,
            sequential_prompts: 100,
            cluster_rows: 4_000,
            cluster_concurrency: 16,
            cluster_tasks: 2,
            batch_prompts: 10_000,
            batch_concurrency: 32,
            batch_step: Duration::from_secs(2),
            batch_records_per_second: 500,
            packing_rows: 10_000,
            packing_rows_per_request: 16,
            packing_concurrency: 32,
            prompt_cache_rows: 2_000,
            prompt_cache_instruction_chars: 8_000,
            prompt_cache_concurrency: 16,
            ordering_rows: 2_000,
            ordering_prefixes: 8,
            ordering_rule_repeats: 98,
            ordering_cache_entries: 4,
            ordering_concurrencies: vec![1, 8],
            semantic_join_rows: 200,
            semantic_join_concurrency: 32,
        }
    }

    fn short() -> Self {
        Self {
            runs: 1,
            latency: Duration::from_millis(15),
            jitter: Duration::from_millis(10),
            concurrencies: vec![1, 8, 32],
            latency_prompts: 200,
            latency_prompts_c1: 10,
            overhead_prompts: 500,
            overhead_concurrency: 16,
            duplicate_rows: 5_000,
            duplicate_distinct: 50,
            duplicate_concurrency: 16,
            quota_rows: 60,
            quota_tokens_per_minute: 60_000,
            quota_window: Duration::from_secs(1),
            quota_start_concurrency: 64,
            memory_rows: vec![2_000, 20_000],
            memory_distinct: 100,
            sequential_prompts: 10,
            cluster_rows: 400,
            cluster_concurrency: 8,
            cluster_tasks: 2,
            batch_prompts: 300,
            batch_concurrency: 16,
            batch_step: Duration::from_millis(20),
            batch_records_per_second: 5_000,
            packing_rows: 320,
            packing_rows_per_request: 16,
            packing_concurrency: 16,
            prompt_cache_rows: 60,
            prompt_cache_instruction_chars: 8_000,
            prompt_cache_concurrency: 16,
            ordering_rows: 64,
            ordering_prefixes: 8,
            ordering_rule_repeats: 98,
            ordering_cache_entries: 4,
            ordering_concurrencies: vec![1, 8],
            semantic_join_rows: 60,
            semantic_join_concurrency: 32,
        }
    }

    /// The mean emulator latency `L`.
    fn mean_latency(&self) -> Duration {
        self.latency + self.jitter / 2
    }

    fn load(&self) -> LoadModel {
        LoadModel {
            latency: self.latency,
            jitter: self.jitter,
            seed: 7,
            ..LoadModel::default()
        }
    }
}

/// Command-line arguments.
#[derive(Debug)]
struct Args {
    short: bool,
    runs: Option<usize>,
    out: PathBuf,
    scenarios: Vec<String>,
    /// `--rss-child <parquet>`: run one query and print peak RSS (internal).
    rss_child: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        short: false,
        runs: None,
        out: PathBuf::from("target/inference-bench"),
        scenarios: Vec::new(),
        rss_child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--short" => args.short = true,
            // Passed by `cargo bench` to every bench binary.
            "--bench" | "--nocapture" => {}
            "--runs" => {
                let n = it.next().ok_or("--runs needs a number, e.g. --runs 3")?;
                let n: usize = n
                    .parse()
                    .map_err(|_| format!("--runs {n}: not a number; write e.g. --runs 3"))?;
                args.runs = Some(n.max(1));
            }
            "--out" => {
                args.out = PathBuf::from(it.next().ok_or("--out needs a directory")?);
            }
            "--rss-child" => {
                let path = it.next().ok_or("--rss-child needs a Parquet file")?;
                args.rss_child = Some(PathBuf::from(path));
            }
            s if SCENARIOS.contains(&s) => args.scenarios.push(s.to_string()),
            other => {
                return Err(format!(
                    "unknown argument '{other}': expected --short, --runs N, --out DIR or a scenario ({})",
                    SCENARIOS.join(", ")
                )
                .into());
            }
        }
    }
    if args.scenarios.is_empty() {
        args.scenarios = SCENARIOS.iter().map(ToString::to_string).collect();
    }
    Ok(args)
}

fn main() -> ExitCode {
    if std::env::var_os("AWS_EC2_METADATA_DISABLED").is_none() {
        // SAFETY: no other thread exists yet. Static keys are always given; this only makes
        // sure nothing ever asks an instance-metadata endpoint.
        unsafe { std::env::set_var("AWS_EC2_METADATA_DISABLED", "true") };
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match &args.rss_child {
        Some(path) => runtime.block_on(rss_child(path)),
        None => runtime.block_on(run(&args)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// A figure over several runs.
#[derive(Debug, Clone)]
struct Figure(Vec<f64>);

impl Figure {
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => f64::midpoint(v[n / 2 - 1], v[n / 2]),
        }
    }

    fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    fn json(&self) -> Value {
        json!({"median": self.median(), "min": self.min(), "max": self.max(), "runs": self.0})
    }

    /// `median (min–max)` with `decimals` places.
    fn show(&self, decimals: usize) -> String {
        if self.0.len() == 1 {
            format!("{:.decimals$}", self.median())
        } else {
            format!(
                "{:.decimals$} ({:.decimals$}–{:.decimals$})",
                self.median(),
                self.min(),
                self.max()
            )
        }
    }
}

fn collect_runs<const N: usize>(runs: &[[f64; N]]) -> [Figure; N] {
    std::array::from_fn(|i| Figure(runs.iter().map(|r| r[i]).collect()))
}

/// One printed row: scenario, setting, figure, result, target.
struct Row {
    scenario: String,
    setting: String,
    measure: String,
    result: String,
    target: String,
}

fn row(scenario: &str, setting: &str, measure: &str, result: String, target: &str) -> Row {
    Row {
        scenario: scenario.into(),
        setting: setting.into(),
        measure: measure.into(),
        result,
        target: target.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Data, contexts and queries

/// Writes `rows` rows (`id`, `question`) whose questions repeat every `distinct` rows.
async fn write_questions(path: &Path, rows: usize, distinct: usize) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let ctx = SessionContext::new();
    let sql = format!(
        "COPY (SELECT value AS id, concat('Question ', CAST(value % {distinct} AS VARCHAR), ': what comes after ', CAST(value % {distinct} AS VARCHAR), '?') AS question FROM generate_series(0, {last}) ORDER BY value) TO '{path}' STORED AS PARQUET",
        last = rows.saturating_sub(1),
        path = path.display()
    );
    ctx.sql(&sql).await?.collect().await?;
    Ok(())
}

/// An engine's extra `USING` settings.
#[derive(Debug, Clone, Copy, Default)]
struct EngineSettings {
    max_concurrency: Option<usize>,
    cache_size: Option<u64>,
}

/// `ctx` with engines defaulting to the emulator and the Parquet data at `data` as
/// `questions`.
async fn questions_context(
    ctx: BedrockContext,
    emulator: &Emulator,
    data: &Path,
) -> Result<BedrockContext> {
    let ctx = ctx.with_default_endpoint(emulator.url());
    ctx.session()
        .register_parquet(
            "questions",
            data.to_string_lossy().as_ref(),
            ParquetReadOptions::default(),
        )
        .await?;
    Ok(ctx)
}

/// A fresh session (so no cache survives from an earlier measurement) with `questions` and
/// `bench_model`.
async fn session(
    emulator: &Emulator,
    data: &Path,
    engine: EngineSettings,
    max_tokens: Option<u32>,
) -> Result<BedrockContext> {
    let ctx = questions_context(BedrockContext::new(), emulator, data).await?;
    let mut using = format!(
        "aws_access_key_id = '{ACCESS_KEY}', aws_secret_access_key = '{SECRET_KEY}', region_name = 'us-east-1'"
    );
    if let Some(c) = engine.max_concurrency {
        let _ = write!(using, ", max_concurrency = {c}");
    }
    if let Some(s) = engine.cache_size {
        let _ = write!(using, ", cache_size = {s}");
    }
    ctx.sql(&format!(
        "CREATE ML_ENGINE bench_engine FROM bedrock USING {using}"
    ))
    .await?;
    let mut model = format!(
        "CREATE MODEL bench_model PREDICT answer USING engine = 'bench_engine', model_id = '{MODEL_ID}', prompt_template = '{{{{question}}}}'"
    );
    if let Some(t) = max_tokens {
        let _ = write!(model, ", max_tokens = {t}");
    }
    ctx.sql(&model).await?;
    Ok(ctx)
}

/// What one query did.
#[derive(Debug, Clone, Copy)]
struct QueryRun {
    rows: usize,
    /// Rows whose answer is NULL or does not answer the row's question.
    failed: usize,
    seconds: f64,
    /// CPU seconds the whole process (emulator included) spent during the query.
    cpu_seconds: f64,
    /// Converse requests the emulator received (every attempt).
    requests: u64,
    /// Of them, answered 429.
    throttled: u64,
}

fn converse_counts(emulator: &Emulator, model_id: &str) -> (u64, u64) {
    let s = emulator.stats().snapshot();
    (
        s.count(Some(model_id), Some("Converse"), None),
        s.count(Some(model_id), Some("Converse"), Some(429)),
    )
}

/// Runs [`QUERY`], streaming its batches (nothing is kept), and checks every answer.
async fn run_query(ctx: &BedrockContext, emulator: &Emulator) -> Result<QueryRun> {
    run_query_on(ctx, emulator, MODEL_ID).await
}

/// [`run_query`] with `bench_model` calling `model_id` (whose requests are counted).
async fn run_query_on(
    ctx: &BedrockContext,
    emulator: &Emulator,
    model_id: &str,
) -> Result<QueryRun> {
    let (requests_before, throttled_before) = converse_counts(emulator, model_id);
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut stream = ctx.sql(QUERY).await?.execute_stream().await?;
    let (mut rows, mut failed) = (0, 0);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let questions = cast(batch.column(0), &DataType::Utf8)?;
        let answers = cast(batch.column(1), &DataType::Utf8)?;
        let (questions, answers) = (questions.as_string::<i32>(), answers.as_string::<i32>());
        for i in 0..batch.num_rows() {
            let ok = answers.is_valid(i)
                && questions.is_valid(i)
                && answers.value(i).starts_with("Emulated ")
                && answers.value(i).ends_with(questions.value(i));
            failed += usize::from(!ok);
        }
        rows += batch.num_rows();
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds() - cpu_before;
    let (requests, throttled) = converse_counts(emulator, model_id);
    Ok(QueryRun {
        rows,
        failed,
        seconds,
        cpu_seconds,
        requests: requests - requests_before,
        throttled: throttled - throttled_before,
    })
}

/// Fails unless `cond` holds: the structural targets that do not depend on timing.
fn check(cond: bool, what: impl FnOnce() -> String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(format!("check failed: {}", what()).into())
    }
}

fn check_complete(run: &QueryRun, rows: usize, scenario: &str) -> Result<()> {
    check(run.rows == rows && run.failed == 0, || {
        format!(
            "{scenario}: {} of {rows} rows returned, {} without their answer",
            run.rows, run.failed
        )
    })
}

#[allow(clippy::cast_precision_loss)]
fn per_second(n: usize, seconds: f64) -> f64 {
    n as f64 / seconds
}

// ---------------------------------------------------------------------------------------------
// The bare SDK loop

fn bare_client(url: &str) -> aws_sdk_bedrockruntime::Client {
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new(
            ACCESS_KEY,
            SECRET_KEY,
            None,
            None,
            "benchmark",
        ))
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(config)
}

/// What the bare loop did: wall seconds, process CPU seconds, prompts answered.
#[derive(Debug, Clone, Copy)]
struct BareRun {
    seconds: f64,
    cpu_seconds: f64,
    answered: usize,
}

/// Converse once per prompt, `concurrency` at a time.
async fn bare_loop(url: &str, prompts: &[String], concurrency: usize) -> Result<BareRun> {
    let client = bare_client(url);
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut answered = 0;
    let mut calls = futures::stream::iter(prompts.iter().map(|prompt| {
        let client = client.clone();
        async move {
            let message = Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text(prompt.clone()))
                .build()?;
            let out = client
                .converse()
                .model_id(MODEL_ID)
                .messages(message)
                .send()
                .await?;
            let text: String = out
                .output()
                .and_then(|o| o.as_message().ok())
                .map(|m| {
                    m.content()
                        .iter()
                        .filter_map(|c| c.as_text().ok().cloned())
                        .collect()
                })
                .unwrap_or_default();
            Ok::<bool, BoxError>(text.ends_with(prompt.as_str()))
        }
    }))
    .buffer_unordered(concurrency);
    while let Some(ok) = calls.next().await {
        answered += usize::from(ok?);
    }
    Ok(BareRun {
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: cpu_seconds() - cpu_before,
        answered,
    })
}

/// CPU seconds (user + system) this process has used so far, from `/proc/self/stat` (Linux;
/// NaN elsewhere). Counted in clock ticks of 1/100 s.
fn cpu_seconds() -> f64 {
    const TICKS_PER_SECOND: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name, which is in parentheses and may hold spaces: utime and
    // stime are the 14th and 15th fields of the line, the 12th and 13th after the name.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / TICKS_PER_SECOND,
        _ => f64::NAN,
    }
}

fn question(i: usize) -> String {
    format!("Question {i}: what comes after {i}?")
}

// ---------------------------------------------------------------------------------------------
// Scenarios

struct Bench {
    sizes: Sizes,
    short: bool,
    dir: PathBuf,
    emulator: Emulator,
    rows: Vec<Row>,
    json: serde_json::Map<String, Value>,
    /// (C, C/L, rows/s figure) for the plot.
    plot: Vec<(usize, f64, Figure)>,
}

impl Bench {
    fn data(&self, rows: usize, distinct: usize) -> PathBuf {
        self.dir
            .join(format!("questions_{rows}_{distinct}.parquet"))
    }

    async fn prepared(&self, rows: usize, distinct: usize) -> Result<PathBuf> {
        let path = self.data(rows, distinct);
        write_questions(&path, rows, distinct).await?;
        Ok(path)
    }

    /// Runs one query on a fresh session.
    async fn measure(
        &self,
        data: &Path,
        engine: EngineSettings,
        max_tokens: Option<u32>,
    ) -> Result<QueryRun> {
        let ctx = session(&self.emulator, data, engine, max_tokens).await?;
        run_query(&ctx, &self.emulator).await
    }

    fn concurrency(c: usize) -> EngineSettings {
        EngineSettings {
            max_concurrency: Some(c),
            cache_size: None,
        }
    }

    /// 1. Latency-bound: rows/s against `C / L`.
    async fn latency(&mut self) -> Result<()> {
        self.emulator.set_load(self.sizes.load());
        let l = self.sizes.mean_latency().as_secs_f64();
        let mut out = Vec::new();
        for c in self.sizes.concurrencies.clone() {
            let prompts = if c == 1 {
                self.sizes.latency_prompts_c1
            } else {
                self.sizes.latency_prompts
            };
            let data = self.prepared(prompts, prompts).await?;
            let mut runs = Vec::new();
            for _ in 0..self.sizes.runs {
                let run = self.measure(&data, Self::concurrency(c), None).await?;
                check_complete(&run, prompts, "latency")?;
                check(run.requests == prompts as u64, || {
                    format!(
                        "latency: {prompts} distinct prompts sent {} requests",
                        run.requests
                    )
                })?;
                let rate = per_second(run.rows, run.seconds);
                #[allow(clippy::cast_precision_loss)]
                let ideal = c as f64 / l;
                runs.push([rate, rate / ideal, run.seconds]);
            }
            let [rate, ratio, seconds] = collect_runs(&runs);
            #[allow(clippy::cast_precision_loss)]
            let ideal = c as f64 / l;
            self.rows.push(row(
                "1 latency-bound",
                &format!("C={c}, {prompts} prompts"),
                "rows/s (ratio to C/L)",
                format!("{} ({})", rate.show(1), ratio.show(3)),
                "ratio >= 0.9",
            ));
            out.push(json!({
                "concurrency": c, "prompts": prompts, "ideal_rows_per_s": ideal,
                "rows_per_s": rate.json(), "ratio": ratio.json(), "seconds": seconds.json(),
            }));
            self.plot.push((c, ideal, rate));
        }
        self.json.insert(
            "latency".into(),
            json!({"mean_latency_ms": l * 1000.0, "latency_ms": self.sizes.latency.as_millis(),
                   "jitter_ms": self.sizes.jitter.as_millis(), "results": out}),
        );
        Ok(())
    }

    /// 2. Overhead-bound: the SQL path against a bare SDK loop, latency 0.
    async fn overhead(&mut self) -> Result<()> {
        self.emulator.set_load(LoadModel::default());
        let (n, c) = (self.sizes.overhead_prompts, self.sizes.overhead_concurrency);
        let data = self.prepared(n, n).await?;
        let prompts: Vec<String> = (0..n).map(question).collect();
        let mut runs = Vec::new();
        for i in 0..self.sizes.runs {
            // The two paths take turns going first, so neither always runs on a warmer process.
            let bare_first = i % 2 == 1;
            let mut bare = None;
            if bare_first {
                bare = Some(bare_loop(self.emulator.url(), &prompts, c).await?);
            }
            let run = self.measure(&data, Self::concurrency(c), None).await?;
            check_complete(&run, n, "overhead")?;
            check(run.requests == n as u64, || {
                format!(
                    "overhead: the SQL path sent {} requests for {n} distinct prompts",
                    run.requests
                )
            })?;
            let bare = match bare {
                Some(bare) => bare,
                None => bare_loop(self.emulator.url(), &prompts, c).await?,
            };
            check(bare.answered == n, || {
                format!("overhead: the bare loop answered {} of {n}", bare.answered)
            })?;
            let sql = per_second(run.rows, run.seconds);
            let bare_rate = per_second(bare.answered, bare.seconds);
            #[allow(clippy::cast_precision_loss)]
            let cpu_ms = |seconds: f64, rows: usize| seconds * 1000.0 / (rows as f64 / 1000.0);
            let sql_cpu = cpu_ms(run.cpu_seconds, run.rows);
            let bare_cpu = cpu_ms(bare.cpu_seconds, bare.answered);
            runs.push([
                sql,
                bare_rate,
                sql / bare_rate,
                sql_cpu,
                bare_cpu,
                sql_cpu / bare_cpu,
            ]);
        }
        let [sql, bare, ratio, sql_cpu, bare_cpu, cpu_ratio] = collect_runs(&runs);
        let setting = format!("C={c}, {n} prompts, L=0");
        self.rows.push(row(
            "2 overhead-bound",
            &setting,
            "SQL path rows/s",
            sql.show(0),
            "",
        ));
        self.rows.push(row(
            "2 overhead-bound",
            &setting,
            "bare SDK loop rows/s",
            bare.show(0),
            "",
        ));
        self.rows.push(row(
            "2 overhead-bound",
            &setting,
            "SQL / bare",
            ratio.show(3),
            ">= 0.8",
        ));
        self.rows.push(row(
            "2 overhead-bound",
            &setting,
            "CPU ms per 1,000 rows, SQL / bare",
            format!("{} / {}", sql_cpu.show(0), bare_cpu.show(0)),
            "",
        ));
        self.rows.push(row(
            "2 overhead-bound",
            &setting,
            "CPU per row, SQL / bare",
            cpu_ratio.show(3),
            "",
        ));
        self.json.insert(
            "overhead".into(),
            json!({"concurrency": c, "prompts": n, "sql_rows_per_s": sql.json(),
                   "bare_sdk_rows_per_s": bare.json(), "ratio": ratio.json(),
                   "sql_cpu_ms_per_1000_rows": sql_cpu.json(),
                   "bare_cpu_ms_per_1000_rows": bare_cpu.json(),
                   "cpu_ratio": cpu_ratio.json()}),
        );
        Ok(())
    }

    /// 3. Duplicates: N rows with k distinct prompts send k requests.
    async fn duplicates(&mut self) -> Result<()> {
        self.emulator.set_load(self.sizes.load());
        let (n, k, c) = (
            self.sizes.duplicate_rows,
            self.sizes.duplicate_distinct,
            self.sizes.duplicate_concurrency,
        );
        let many = self.prepared(n, k).await?;
        let distinct = self.prepared(k, k).await?;
        let mut runs = Vec::new();
        for _ in 0..self.sizes.runs {
            let run = self.measure(&many, Self::concurrency(c), None).await?;
            check_complete(&run, n, "duplicates")?;
            check(run.requests == k as u64, || {
                format!(
                    "duplicates: {n} rows with {k} distinct prompts sent {} requests",
                    run.requests
                )
            })?;
            let reference = self.measure(&distinct, Self::concurrency(c), None).await?;
            check_complete(&reference, k, "duplicates reference")?;
            #[allow(clippy::cast_precision_loss)]
            runs.push([
                run.requests as f64,
                run.seconds,
                reference.seconds,
                run.seconds / reference.seconds,
            ]);
        }
        let [requests, seconds, reference, ratio] = collect_runs(&runs);
        let setting = format!("{n} rows, {k} distinct, C={c}");
        self.rows.push(row(
            "3 duplicates",
            &setting,
            "requests sent",
            requests.show(0),
            &format!("= {k}"),
        ));
        self.rows.push(row(
            "3 duplicates",
            &setting,
            &format!("wall s (vs {k} distinct rows)"),
            format!("{} ({})", seconds.show(2), reference.show(2)),
            "",
        ));
        self.rows.push(row(
            "3 duplicates",
            &setting,
            "wall time ratio",
            ratio.show(3),
            "",
        ));
        self.json.insert(
            "duplicates".into(),
            json!({"rows": n, "distinct": k, "concurrency": c, "requests": requests.json(),
                   "seconds": seconds.json(), "distinct_only_seconds": reference.json(),
                   "ratio": ratio.json()}),
        );
        Ok(())
    }

    /// 4. Quota-bound: a tokens-per-minute quota, starting far above the concurrency it allows.
    async fn quota(&mut self) -> Result<()> {
        let tpm = self.sizes.quota_tokens_per_minute;
        let load = LoadModel {
            tokens_per_minute: Some(tpm),
            quota_window: self.sizes.quota_window,
            ..self.sizes.load()
        };
        let (n, c) = (self.sizes.quota_rows, self.sizes.quota_start_concurrency);
        let data = self.prepared(n, n).await?;
        let mut runs = Vec::new();
        for _ in 0..self.sizes.runs {
            // A fresh quota bucket for every run.
            self.emulator.set_load(load.clone());
            let before = self.emulator.stats().snapshot();
            let run = self.measure(&data, Self::concurrency(c), Some(64)).await?;
            let after = self.emulator.stats().snapshot();
            check(run.failed == 0 && run.rows == n, || {
                format!(
                    "quota: {} failed rows of {} ({n} expected)",
                    run.failed, run.rows
                )
            })?;
            let tokens = (after.input_tokens + after.output_tokens)
                - (before.input_tokens + before.output_tokens);
            // The most the quota admits in that time: a full bucket, then the refill rate.
            let per_second = f64::from(tpm) / 60.0;
            let allowed = per_second * (run.seconds + self.sizes.quota_window.as_secs_f64());
            #[allow(clippy::cast_precision_loss)]
            let tokens_per_minute = tokens as f64 / run.seconds * 60.0;
            #[allow(clippy::cast_precision_loss)]
            runs.push([
                tokens_per_minute,
                tokens as f64 / allowed,
                run.throttled as f64,
                (run.requests - n as u64) as f64,
                run.failed as f64,
                run.seconds,
            ]);
        }
        let [tpm_measured, fraction, throttles, retries, failed, seconds] = collect_runs(&runs);
        let setting = format!(
            "{n} rows, quota {tpm} tokens/min, start C={c}, max_tokens 64, L={}ms",
            self.sizes.mean_latency().as_millis()
        );
        for (measure, result, target) in [
            ("tokens/min sustained", tpm_measured.show(0), String::new()),
            ("fraction of quota", fraction.show(3), ">= 0.85".to_string()),
            ("throttles (429)", throttles.show(0), String::new()),
            ("retries", retries.show(0), String::new()),
            ("failed rows", failed.show(0), "= 0".to_string()),
            ("wall s", seconds.show(2), String::new()),
        ] {
            self.rows
                .push(row("4 quota-bound", &setting, measure, result, &target));
        }
        self.json.insert(
            "quota".into(),
            json!({"rows": n, "tokens_per_minute_quota": tpm, "start_concurrency": c,
                   "quota_window_s": self.sizes.quota_window.as_secs_f64(),
                   "tokens_per_minute": tpm_measured.json(), "fraction_of_quota": fraction.json(),
                   "throttles": throttles.json(), "retries": retries.json(),
                   "failed_rows": failed.json(), "seconds": seconds.json()}),
        );
        Ok(())
    }

    /// 5. Memory: peak RSS of one query over each input size, each in a fresh process.
    async fn memory(&mut self) -> Result<()> {
        let k = self.sizes.memory_distinct;
        let exe = std::env::current_exe()?;
        let mut out = Vec::new();
        for n in self.sizes.memory_rows.clone() {
            let data = self.prepared(n, k).await?;
            let mut runs = Vec::new();
            for _ in 0..self.sizes.runs {
                let output = tokio::process::Command::new(&exe)
                    .arg("--rss-child")
                    .arg(&data)
                    .env("AWS_EC2_METADATA_DISABLED", "true")
                    .output()
                    .await?;
                let stdout = String::from_utf8_lossy(&output.stdout);
                check(output.status.success(), || {
                    format!(
                        "memory: the child for {n} rows failed: {}",
                        String::from_utf8_lossy(&output.stderr)
                    )
                })?;
                let field = |name: &str| -> Result<f64> {
                    stdout
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix(name))
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| format!("memory: no {name} in '{stdout}'").into())
                };
                let (rows, requests) = (field("rows=")?, field("requests=")?);
                #[allow(clippy::cast_precision_loss)]
                let expected = (n as f64, k as f64);
                check((rows, requests) == expected, || {
                    format!(
                        "memory: {n} rows with {k} distinct prompts returned {rows} rows and sent {requests} requests"
                    )
                })?;
                runs.push([
                    field("peak_kb=")? / 1024.0,
                    field("before_kb=")? / 1024.0,
                    field("seconds=")?,
                ]);
            }
            let [peak, before, seconds] = collect_runs(&runs);
            self.rows.push(row(
                "5 memory",
                &format!("{n} rows, {k} distinct, L=0"),
                "peak RSS MiB (before query)",
                format!("{} ({})", peak.show(1), before.show(1)),
                "flat in rows",
            ));
            out.push(
                json!({"rows": n, "distinct": k, "peak_rss_mib": peak.json(),
                            "rss_before_query_mib": before.json(), "seconds": seconds.json()}),
            );
        }
        self.json.insert("memory".into(), Value::Array(out));
        Ok(())
    }

    /// 6. MindsDB's behaviour (one request per row, no concurrency, no cache) against the
    ///    defaults.
    async fn sequential(&mut self) -> Result<()> {
        self.emulator.set_load(self.sizes.load());
        let n = self.sizes.sequential_prompts;
        let data = self.prepared(n, n).await?;
        let mut runs = Vec::new();
        for _ in 0..self.sizes.runs {
            let baseline = EngineSettings {
                max_concurrency: Some(1),
                cache_size: Some(0),
            };
            let slow = self.measure(&data, baseline, None).await?;
            check_complete(&slow, n, "sequential baseline")?;
            let fast = self.measure(&data, EngineSettings::default(), None).await?;
            check_complete(&fast, n, "sequential defaults")?;
            runs.push([
                per_second(n, slow.seconds),
                per_second(n, fast.seconds),
                slow.seconds / fast.seconds,
            ]);
        }
        let [slow, fast, speedup] = collect_runs(&runs);
        let setting = format!("{n} prompts, L={}ms", self.sizes.mean_latency().as_millis());
        self.rows.push(row(
            "6 sequential",
            &setting,
            "one request per row, rows/s",
            slow.show(2),
            "",
        ));
        self.rows.push(row(
            "6 sequential",
            &setting,
            "defaults, rows/s",
            fast.show(1),
            "",
        ));
        self.rows.push(row(
            "6 sequential",
            &setting,
            "speed-up",
            speedup.show(1),
            "",
        ));
        self.json.insert(
            "sequential".into(),
            json!({"prompts": n, "baseline_rows_per_s": slow.json(),
                   "defaults_rows_per_s": fast.json(), "speedup": speedup.json()}),
        );
        Ok(())
    }
}

/// Writes `rows` distinct questions of run `tag` as 16 Parquet files in `dir`.
async fn write_question_files(dir: &Path, tag: &str, rows: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let ctx = SessionContext::new();
    for file in 0..16 {
        let sql = format!(
            "COPY (SELECT value AS id, concat('{tag} question ', CAST(value AS VARCHAR), '?') AS question FROM generate_series(0, {last}) WHERE value % 16 = {file} ORDER BY value) TO '{path}' STORED AS PARQUET",
            last = rows.saturating_sub(1),
            path = dir.join(format!("part-{file}.parquet")).display()
        );
        ctx.sql(&sql).await?.collect().await?;
    }
    Ok(())
}

/// A client session of `cluster` with `bench_model` over the Parquet files in `dir`, its
/// engine at concurrency `c` (each executor builds its own).
async fn cluster_context(
    cluster: &LocalCluster,
    emulator: &Emulator,
    dir: &Path,
    c: usize,
) -> Result<BedrockContext> {
    let extension = Arc::new(BedrockExtension::new());
    extension.set_default_endpoint(Some(emulator.url().to_string()));
    let state = SessionStateBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(16))
        .with_default_features()
        .with_bedrock_extension(extension)
        .build();
    let ctx = BedrockContext::try_new(cluster_session(cluster.address(), state).await?)?;
    for sql in [
        format!(
            "CREATE ML_ENGINE bench_engine FROM bedrock USING aws_access_key_id = '{ACCESS_KEY}', aws_secret_access_key = '{SECRET_KEY}', region_name = 'us-east-1', max_concurrency = {c}"
        ),
        format!(
            "CREATE MODEL bench_model PREDICT answer USING engine = 'bench_engine', model_id = '{MODEL_ID}', prompt_template = '{{{{question}}}}'"
        ),
        format!(
            "CREATE EXTERNAL TABLE questions STORED AS PARQUET LOCATION '{}/'",
            dir.display()
        ),
    ] {
        ctx.sql(&sql).await?.collect().await?;
    }
    Ok(ctx)
}

impl Bench {
    /// Scenario 7, the latency-bound JOIN on a cluster of one, then two, executors, each with engine
    /// concurrency C: rows/s of two over rows/s of one, run by run. Every run asks new
    /// questions (executors keep their caches).
    async fn cluster(&mut self) -> Result<()> {
        self.emulator.set_load(self.sizes.load());
        let (rows, c) = (self.sizes.cluster_rows, self.sizes.cluster_concurrency);
        let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let mut per_executor = Vec::new();
        for executors in [1, 2] {
            let cluster = LocalCluster::start(executors, self.sizes.cluster_tasks).await?;
            for run in 0..self.sizes.runs {
                let dir = self.dir.join(format!("cluster_{executors}_{run}"));
                write_question_files(&dir, &format!("Cluster {executors}/{run}"), rows).await?;
                let ctx = cluster_context(&cluster, &self.emulator, &dir, c).await?;
                let before: Vec<u64> = cluster.executor_requests();
                let result = run_query(&ctx, &self.emulator).await?;
                check_complete(&result, rows, "cluster")?;
                check(result.requests == rows as u64, || {
                    format!(
                        "cluster: {rows} distinct prompts sent {} requests",
                        result.requests
                    )
                })?;
                let made: Vec<u64> = cluster
                    .executor_requests()
                    .iter()
                    .zip(&before)
                    .map(|(after, before)| after - before)
                    .collect();
                check(made.iter().all(|n| *n > 0), || {
                    format!("cluster: every executor calls the model, made {made:?}")
                })?;
                if executors == 2 {
                    per_executor.push(made);
                }
                rates[executors - 1].push(per_second(result.rows, result.seconds));
            }
        }
        let ratios: Vec<[f64; 1]> = rates[0]
            .iter()
            .zip(&rates[1])
            .map(|(one, two)| [two / one])
            .collect();
        let [ratio] = collect_runs(&ratios);
        let one = collect_runs(&rates[0].iter().map(|r| [*r]).collect::<Vec<_>>())[0].clone();
        let two = collect_runs(&rates[1].iter().map(|r| [*r]).collect::<Vec<_>>())[0].clone();
        let setting = format!(
            "C={c} per executor, {} task slots each, {rows} rows in 16 files",
            self.sizes.cluster_tasks
        );
        self.rows.push(row(
            "7 cluster",
            &format!("1 executor, {setting}"),
            "rows/s",
            one.show(1),
            "",
        ));
        self.rows.push(row(
            "7 cluster",
            &format!("2 executors, {setting}"),
            "rows/s",
            two.show(1),
            "",
        ));
        self.rows.push(row(
            "7 cluster",
            "2 executors / 1",
            "rows/s ratio",
            ratio.show(2),
            ">= 1.8",
        ));
        self.json.insert(
            "cluster".into(),
            json!({"rows": rows, "concurrency_per_executor": c,
                   "task_slots_per_executor": self.sizes.cluster_tasks,
                   "one_executor_rows_per_s": one.json(), "two_executors_rows_per_s": two.json(),
                   "ratio": ratio.json(), "requests_per_executor_with_two": per_executor}),
        );
        Ok(())
    }
}

/// What one run of the batch scenario measured, in one execution.
struct BatchRun {
    query: QueryRun,
    jobs: usize,
    records: u64,
    usd: f64,
}

/// A fresh session on `emulator` whose `bench_model` runs in `execution`, its engine writing
/// batch jobs' files to the emulator's S3 endpoint.
async fn batch_context(
    emulator: &Emulator,
    data: &Path,
    concurrency: usize,
    execution: &str,
) -> Result<BedrockContext> {
    let s3 = emulator.s3_url().ok_or("the emulator serves no S3")?;
    let ctx = questions_context(
        BedrockContext::new().with_default_s3_endpoint(s3),
        emulator,
        data,
    )
    .await?;
    ctx.sql(&format!(
        "CREATE ML_ENGINE bench_engine FROM bedrock USING max_concurrency = {concurrency}, batch_role_arn = 'arn:aws:iam::123456789012:role/BedrockBatch', batch_s3_uri = 's3://bedrock-batch/bench/'"
    ))
    .await?;
    ctx.sql(&format!(
        "CREATE MODEL bench_model PREDICT answer USING engine = 'bench_engine', model_id = '{MODEL_ID}', prompt_template = '{{{{question}}}}', execution = '{execution}'"
    ))
    .await?;
    Ok(ctx)
}

/// The estimated USD a session spent, on demand and in batch.
async fn spent_usd(ctx: &BedrockContext) -> Result<f64> {
    let batches = ctx
        .sql("SELECT CAST(sum(coalesce(estimated_usd, 0) + coalesce(batch_estimated_usd, 0)) AS DOUBLE) FROM bedrock_usage()")
        .await?
        .collect()
        .await?;
    let usd = batches
        .first()
        .map(|b| {
            b.column(0)
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
        })
        .filter(|c| !c.is_empty() && c.is_valid(0))
        .map_or(0.0, |c| c.value(0));
    Ok(usd)
}

impl Bench {
    /// One run of scenario 8: on demand, then in batch, each in a fresh session over new
    /// prompts; requests, wall time and cost of each, and the cost ratio.
    async fn batch_run(&self, emulator: &Emulator, run: usize) -> Result<[f64; 7]> {
        let (n, c) = (self.sizes.batch_prompts, self.sizes.batch_concurrency);
        let mut measured = Vec::new();
        for execution in ["on_demand", "batch"] {
            let data = self.dir.join(format!("batch_{execution}_{run}"));
            // Tags of one length: both executions send the same tokens.
            let tag = if execution == "batch" { "B" } else { "D" };
            write_question_files(&data, &format!("{tag}{run}"), n).await?;
            let ctx = batch_context(emulator, &data, c, execution).await?;
            let jobs_before = emulator.stats().snapshot().batch_jobs.len();
            let query = run_query(&ctx, emulator).await?;
            check_complete(&query, n, "batch")?;
            let stats = emulator.stats().snapshot();
            let jobs = &stats.batch_jobs[jobs_before..];
            measured.push(BatchRun {
                query,
                jobs: jobs.len(),
                records: jobs.iter().map(|j| j.records).sum(),
                usd: spent_usd(&ctx).await?,
            });
        }
        let (demand, batch) = (&measured[0], &measured[1]);
        check(
            demand.query.requests == n as u64 && demand.jobs == 0,
            || {
                format!(
                    "batch: on demand, {n} prompts sent {} requests and {} jobs",
                    demand.query.requests, demand.jobs
                )
            },
        )?;
        check(
            batch.query.requests == 0 && batch.jobs == 1 && batch.records == n as u64,
            || {
                format!(
                    "batch: in batch, {n} prompts sent {} requests and {} jobs of {} records",
                    batch.query.requests, batch.jobs, batch.records
                )
            },
        )?;
        check(batch.usd <= demand.usd * 0.5 + 1e-9, || {
            format!(
                "batch: cost ${:.6} in batch vs ${:.6} on demand",
                batch.usd, demand.usd
            )
        })?;
        #[allow(clippy::cast_precision_loss)]
        Ok([
            demand.query.requests as f64,
            demand.query.seconds,
            demand.usd,
            batch.records as f64,
            batch.query.seconds,
            batch.usd,
            batch.usd / demand.usd,
        ])
    }

    /// Scenario 8: the same distinct prompts on demand (C requests in flight at the emulator's
    /// latency) and as one batch inference job (at the emulator's pace of a job): requests,
    /// wall time and estimated cost at the on-demand and the batch price. Every run asks new
    /// prompts of a fresh session.
    async fn batch(&mut self) -> Result<()> {
        let (n, c) = (self.sizes.batch_prompts, self.sizes.batch_concurrency);
        let root = self.dir.join("batch_s3");
        let emulator = Emulator::start(EmulatorConfig {
            request_log_capacity: 0,
            load: self.sizes.load(),
            s3_root: Some(root),
            batch_step: self.sizes.batch_step,
            batch_records_per_second: Some(self.sizes.batch_records_per_second),
            ..EmulatorConfig::default()
        })
        .await?;
        let mut runs = Vec::new();
        for run in 0..self.sizes.runs {
            runs.push(self.batch_run(&emulator, run).await?);
        }
        emulator.shutdown().await;
        let [
            requests,
            demand_s,
            demand_usd,
            records,
            batch_s,
            batch_usd,
            ratio,
        ] = collect_runs(&runs);
        let setting = format!("{n} distinct prompts");
        let pace = format!(
            "1 job; {} ms per status step, {} records/s",
            self.sizes.batch_step.as_millis(),
            self.sizes.batch_records_per_second
        );
        self.rows.push(row(
            "8 batch",
            &format!("{setting}, on demand C={c}"),
            "requests · wall s · est. USD",
            format!(
                "{} · {} · {}",
                requests.show(0),
                demand_s.show(2),
                demand_usd.show(6)
            ),
            "",
        ));
        self.rows.push(row(
            "8 batch",
            &format!("{setting}, batch ({pace})"),
            "records · wall s · est. USD",
            format!(
                "{} · {} · {}",
                records.show(0),
                batch_s.show(2),
                batch_usd.show(6)
            ),
            "",
        ));
        self.rows.push(row(
            "8 batch",
            &setting,
            "cost ratio batch / on demand",
            ratio.show(3),
            "<= 0.5",
        ));
        self.json.insert(
            "batch".into(),
            json!({"prompts": n, "on_demand_concurrency": c,
                   "batch_step_ms": self.sizes.batch_step.as_millis(),
                   "batch_records_per_second": self.sizes.batch_records_per_second,
                   "on_demand_requests": requests.json(), "on_demand_seconds": demand_s.json(),
                   "on_demand_usd": demand_usd.json(), "batch_records": records.json(),
                   "batch_seconds": batch_s.json(), "batch_usd": batch_usd.json(),
                   "cost_ratio": ratio.json()}),
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Packing, prompt caching and request ordering (scenarios 9–11)

/// What the emulator counted for one model: Converse requests, uncached input, output, and
/// the input tokens read from and written to its prompt cache.
#[derive(Debug, Clone, Copy, Default)]
struct Tokens {
    requests: u64,
    input: u64,
    output: u64,
    read: u64,
    write: u64,
}

impl Tokens {
    /// The emulator's counters now (tokens are of every model: scenarios run one at a time).
    fn of(emulator: &Emulator, model_id: &str) -> Self {
        let s = emulator.stats().snapshot();
        Self {
            requests: s.count(Some(model_id), Some("Converse"), None),
            input: s.input_tokens,
            output: s.output_tokens,
            read: s.cache_read_input_tokens,
            write: s.cache_write_input_tokens,
        }
    }

    /// What was counted since `before`.
    fn since(self, before: Self) -> Self {
        Self {
            requests: self.requests - before.requests,
            input: self.input - before.input,
            output: self.output - before.output,
            read: self.read - before.read,
            write: self.write - before.write,
        }
    }

    /// Every input token: uncached, read from and written to the prompt cache.
    fn all_input(&self) -> u64 {
        self.input + self.read + self.write
    }

    /// The share of input tokens read from the prompt cache.
    #[allow(clippy::cast_precision_loss)]
    fn read_share(&self) -> f64 {
        self.read as f64 / self.all_input().max(1) as f64
    }

    /// The billed input cost at Claude 3.7 Sonnet's prices: uncached input, plus cache reads
    /// and writes at their factors of the input price.
    #[allow(clippy::cast_precision_loss)]
    fn billed_input_usd(&self) -> f64 {
        (self.input as f64
            + self.read as f64 * CLAUDE_CACHE_READ_FACTOR
            + self.write as f64 * CLAUDE_CACHE_WRITE_FACTOR)
            * CLAUDE_INPUT_PER_1K
            / 1000.0
    }

    #[allow(clippy::cast_precision_loss)]
    fn output_usd(&self) -> f64 {
        self.output as f64 * CLAUDE_OUTPUT_PER_1K / 1000.0
    }
}

/// One model's row of `bedrock_usage()` (zeros when it has none).
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    tokens: Tokens,
    usd: f64,
}

async fn usage_of(ctx: &BedrockContext, model_id: &str) -> Result<Usage> {
    let batches = ctx
        .sql(&format!(
            "SELECT CAST(coalesce(sum(requests), 0) AS BIGINT), CAST(coalesce(sum(input_tokens), 0) AS BIGINT), CAST(coalesce(sum(output_tokens), 0) AS BIGINT), CAST(coalesce(sum(cache_read_tokens), 0) AS BIGINT), CAST(coalesce(sum(cache_write_tokens), 0) AS BIGINT), CAST(coalesce(sum(estimated_usd), 0) AS DOUBLE) FROM bedrock_usage() WHERE model = '{model_id}'"
        ))
        .await?
        .collect()
        .await?;
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or("bedrock_usage() gave no row")?;
    let int = |i: usize| -> u64 {
        let c = batch
            .column(i)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        u64::try_from(c.value(0)).unwrap_or(0)
    };
    let usd = batch
        .column(5)
        .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
        .value(0);
    Ok(Usage {
        tokens: Tokens {
            requests: int(0),
            input: int(1),
            output: int(2),
            read: int(3),
            write: int(4),
        },
        usd,
    })
}

/// The labels `ai_classify` chooses from.
const LABELS: &str = "['billing', 'shipping', 'other']";

/// A short ticket text of row `value` (a SQL expression) naming exactly one label, and that
/// label: SQL expressions.
fn ticket_sql(value: &str) -> (String, String) {
    (
        format!(
            "CASE {value} % 3 WHEN 0 THEN 'I was charged twice, a billing error' WHEN 1 THEN 'my parcel is late, a shipping delay' ELSE 'an other request about my account' END"
        ),
        format!("CASE {value} % 3 WHEN 0 THEN 'billing' WHEN 1 THEN 'shipping' ELSE 'other' END"),
    )
}

/// A fresh session whose only engine (so the AI functions' default) reaches `emulator` at
/// concurrency `c`, with the table `tickets(text, expected)` made by `table` (a `SELECT`), and
/// `bedrock.reorder_requests` as given.
async fn tickets_context(
    emulator: &Emulator,
    c: usize,
    table: &str,
    reorder: bool,
) -> Result<BedrockContext> {
    let ctx = BedrockContext::new().with_default_endpoint(emulator.url());
    let mut statements = vec![
        format!(
            "CREATE ML_ENGINE bench_engine FROM bedrock USING aws_access_key_id = '{ACCESS_KEY}', aws_secret_access_key = '{SECRET_KEY}', region_name = 'us-east-1', max_concurrency = {c}"
        ),
        format!("CREATE TABLE tickets AS {table}"),
    ];
    if !reorder {
        statements.push("SET bedrock.reorder_requests = false".to_string());
    }
    for sql in statements {
        ctx.sql(&sql).await?.collect().await?;
    }
    Ok(ctx)
}

/// What one `ai_classify` query over `tickets` did.
#[derive(Debug, Clone, Copy)]
struct Classified {
    rows: usize,
    /// Rows whose answer is the label their text names (none NULL).
    right: usize,
    seconds: f64,
    tokens: Tokens,
}

/// Classifies every ticket with `options` (a JSON object), counting the rows answered with
/// their own label and what the emulator counted.
async fn classify(ctx: &BedrockContext, emulator: &Emulator, options: &str) -> Result<Classified> {
    let sql = format!(
        "SELECT CAST(count(*) AS BIGINT), CAST(coalesce(sum(CASE WHEN label = expected THEN 1 ELSE 0 END), 0) AS BIGINT) FROM (SELECT expected, ai_classify('{NOVA}', text, {LABELS}, '{options}') AS label FROM tickets) AS t"
    );
    let before = Tokens::of(emulator, NOVA);
    let started = Instant::now();
    let batches = ctx.sql(&sql).await?.collect().await?;
    let seconds = started.elapsed().as_secs_f64();
    let tokens = Tokens::of(emulator, NOVA).since(before);
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or("the classification query returned no row")?;
    let int = |i: usize| -> usize {
        let c = batch
            .column(i)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        usize::try_from(c.value(0)).unwrap_or(0)
    };
    Ok(Classified {
        rows: int(0),
        right: int(1),
        seconds,
        tokens,
    })
}

/// A fixed instruction of at least `chars` characters (no quotes), as a policy of numbered
/// clauses.
fn policy_instruction(chars: usize) -> String {
    let mut text = String::from("You answer customer questions under the policy below.");
    let mut clause = 1;
    while text.chars().count() < chars {
        let _ = write!(
            text,
            " Clause {clause}: a refund is due within {clause} days when the customer asks for it in writing."
        );
        clause += 1;
    }
    text
}

/// The long prefix `j` of the ordering scenario: a header and `repeats` rule sentences, all
/// naming `j` (so two prefixes share only `Instruction set `).
fn ordering_prefix(j: usize, repeats: usize) -> String {
    format!(
        "Instruction set {j}: {}",
        format!("Rule {j} says to read the whole message with care. ").repeat(repeats)
    )
}

/// Estimated tokens of a text as the emulator counts them: one per started four characters.
fn estimated_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// A ratio of counts.
#[allow(clippy::cast_precision_loss)]
fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b as f64
}

impl Bench {
    /// One run of scenario 9: `ai_classify` over the same short texts with `k` rows per request
    /// and with one, each in a fresh session (its own response cache).
    async fn packing_run(&self, run: usize) -> Result<[f64; 13]> {
        let (n, k, c) = (
            self.sizes.packing_rows,
            self.sizes.packing_rows_per_request,
            self.sizes.packing_concurrency,
        );
        let (text, expected) = ticket_sql("value");
        let table = format!(
            "SELECT value AS n, 'Ticket {run}-' || CAST(value AS VARCHAR) || ': ' || {text} AS text, {expected} AS expected FROM generate_series(1, {n})"
        );
        let mut measured = Vec::new();
        for rows_per_request in [k, 1] {
            let ctx = tickets_context(&self.emulator, c, &table, true).await?;
            let result = classify(
                &ctx,
                &self.emulator,
                &format!("{{\"rows_per_request\": {rows_per_request}}}"),
            )
            .await?;
            check(result.rows == n && result.right == n, || {
                format!(
                    "packing: k = {rows_per_request}, {} of {n} rows, {} answered with their label",
                    result.rows, result.right
                )
            })?;
            measured.push((result, spent_usd(&ctx).await?));
        }
        let ((packed, packed_usd), (single, single_usd)) = (measured[0], measured[1]);
        let most = n.div_ceil(k) as u64;
        check(packed.tokens.requests <= most, || {
            format!(
                "packing: {n} rows at {k} per request sent {} requests (at most {most} expected)",
                packed.tokens.requests
            )
        })?;
        check(single.tokens.requests == n as u64, || {
            format!(
                "packing: {n} rows one per request sent {} requests",
                single.tokens.requests
            )
        })?;
        #[allow(clippy::cast_precision_loss)]
        Ok([
            packed.tokens.requests as f64,
            packed.tokens.all_input() as f64,
            packed.tokens.output as f64,
            packed_usd,
            packed.seconds,
            single.tokens.requests as f64,
            single.tokens.all_input() as f64,
            single.tokens.output as f64,
            single_usd,
            single.seconds,
            ratio(packed.tokens.requests, single.tokens.requests),
            ratio(packed.tokens.all_input(), single.tokens.all_input()),
            packed_usd / single_usd,
        ])
    }

    /// Scenario 9: `ai_classify` over short distinct texts, `rows_per_request = k` against one
    /// row per request: requests, input and output tokens, estimated cost and wall time, and
    /// the ratios packed / unpacked.
    async fn packing(&mut self) -> Result<()> {
        self.emulator.set_load(self.sizes.load());
        let (n, k, c) = (
            self.sizes.packing_rows,
            self.sizes.packing_rows_per_request,
            self.sizes.packing_concurrency,
        );
        let mut runs = Vec::new();
        for run in 0..self.sizes.runs {
            runs.push(self.packing_run(run).await?);
        }
        let [
            p_requests,
            p_input,
            p_output,
            p_usd,
            p_s,
            s_requests,
            s_input,
            s_output,
            s_usd,
            s_s,
            request_ratio,
            input_ratio,
            cost_ratio,
        ] = collect_runs(&runs);
        let setting = format!(
            "{n} short texts, ai_classify, 3 labels, C={c}, L={}ms",
            self.sizes.mean_latency().as_millis()
        );
        let measure = "requests · input tok · output tok · est. USD · wall s";
        for (label, requests, input, output, usd, seconds) in [
            (
                format!("rows_per_request = {k}"),
                &p_requests,
                &p_input,
                &p_output,
                &p_usd,
                &p_s,
            ),
            (
                "rows_per_request = 1".to_string(),
                &s_requests,
                &s_input,
                &s_output,
                &s_usd,
                &s_s,
            ),
        ] {
            self.rows.push(row(
                "9 packing",
                &format!("{setting}, {label}"),
                measure,
                format!(
                    "{} · {} · {} · {} · {}",
                    requests.show(0),
                    input.show(0),
                    output.show(0),
                    usd.show(6),
                    seconds.show(2)
                ),
                "",
            ));
        }
        for (measure, figure, target) in [
            ("requests, packed / unpacked", &request_ratio, "<= 0.07"),
            ("input tokens, packed / unpacked", &input_ratio, "<= 0.35"),
            ("est. USD, packed / unpacked", &cost_ratio, ""),
        ] {
            self.rows
                .push(row("9 packing", &setting, measure, figure.show(3), target));
        }
        let side =
            |requests: &Figure, input: &Figure, output: &Figure, usd: &Figure, seconds: &Figure| {
                json!({"requests": requests.json(), "input_tokens": input.json(),
                   "output_tokens": output.json(), "estimated_usd": usd.json(),
                   "seconds": seconds.json()})
            };
        self.json.insert(
            "packing".into(),
            json!({"rows": n, "rows_per_request": k, "concurrency": c,
                   "mean_latency_ms": self.sizes.mean_latency().as_millis(),
                   "model_id": NOVA,
                   "packed": side(&p_requests, &p_input, &p_output, &p_usd, &p_s),
                   "unpacked": side(&s_requests, &s_input, &s_output, &s_usd, &s_s),
                   "requests_ratio": request_ratio.json(),
                   "input_tokens_ratio": input_ratio.json(),
                   "cost_ratio": cost_ratio.json(),
                   "targets": {"requests_ratio": 0.07, "input_tokens_ratio": 0.35}}),
        );
        Ok(())
    }

    /// One run of scenario 10: the same questions under a long system prompt, with
    /// `prompt_cache` `auto` and `off`, each in a fresh session with the emulator's prompt
    /// cache emptied first.
    async fn prompt_cache_run(&self, instruction: &str, run: usize) -> Result<[f64; 14]> {
        let (n, c) = (
            self.sizes.prompt_cache_rows,
            self.sizes.prompt_cache_concurrency,
        );
        let data = self.dir.join(format!("prompt_cache_{run}"));
        write_question_files(&data, &format!("P{run}"), n).await?;
        let mut measured = Vec::new();
        for mode in ["auto", "off"] {
            self.emulator.clear_prompt_cache();
            let ctx = questions_context(BedrockContext::new(), &self.emulator, &data).await?;
            for sql in [
                format!(
                    "CREATE ML_ENGINE bench_engine FROM bedrock USING aws_access_key_id = '{ACCESS_KEY}', aws_secret_access_key = '{SECRET_KEY}', region_name = 'us-east-1', max_concurrency = {c}"
                ),
                format!(
                    "CREATE MODEL bench_model PREDICT answer USING engine = 'bench_engine', model_id = '{CLAUDE}', prompt_template = '{{{{question}}}}', system_prompt = '{instruction}', prompt_cache = '{mode}'"
                ),
            ] {
                ctx.sql(&sql).await?.collect().await?;
            }
            let before = Tokens::of(&self.emulator, CLAUDE_BASE);
            let query = run_query_on(&ctx, &self.emulator, CLAUDE_BASE).await?;
            let tokens = Tokens::of(&self.emulator, CLAUDE_BASE).since(before);
            check_complete(&query, n, "prompt_cache")?;
            check(tokens.requests == n as u64, || {
                format!(
                    "prompt_cache: {mode}, {n} distinct questions sent {} requests",
                    tokens.requests
                )
            })?;
            // What the session says it spent is what the emulator counted.
            let usage = usage_of(&ctx, CLAUDE).await?;
            let billed = tokens.billed_input_usd();
            let usage_input_usd = usage.usd - tokens.output_usd();
            check(
                (
                    usage.tokens.input,
                    usage.tokens.output,
                    usage.tokens.read,
                    usage.tokens.write,
                ) == (tokens.input, tokens.output, tokens.read, tokens.write)
                    && (usage_input_usd - billed).abs() <= 1e-9 + billed * 1e-6,
                || {
                    format!(
                        "prompt_cache: {mode}: bedrock_usage() says {usage:?}, the emulator counted {tokens:?} (billed input ${billed:.9})"
                    )
                },
            )?;
            measured.push((tokens, billed, usage_input_usd, query.seconds));
        }
        let ((auto, auto_usd, auto_usage_usd, auto_s), (off, off_usd, off_usage_usd, off_s)) =
            (measured[0], measured[1]);
        check(auto.read > 0 && off.read == 0 && off.write == 0, || {
            format!("prompt_cache: auto counted {auto:?}, off counted {off:?}")
        })?;
        #[allow(clippy::cast_precision_loss)]
        Ok([
            auto.requests as f64,
            auto.input as f64,
            auto.read as f64,
            auto.write as f64,
            auto_usd,
            auto_s,
            off.requests as f64,
            off.input as f64,
            off_usd,
            off_s,
            auto_usd / off_usd,
            auto.read_share(),
            auto_usage_usd,
            off_usage_usd,
        ])
    }

    /// Scenario 10: a fixed instruction of about 2,000 tokens (the model's system prompt) over
    /// distinct questions, `prompt_cache = 'auto'` against `'off'`: the billed input cost
    /// (uncached input + cache reads + cache writes at Nova's prices) and its ratio, checked
    /// against `bedrock_usage()`.
    async fn prompt_cache(&mut self) -> Result<()> {
        self.emulator.set_load(self.sizes.load());
        let (n, c) = (
            self.sizes.prompt_cache_rows,
            self.sizes.prompt_cache_concurrency,
        );
        let instruction = policy_instruction(self.sizes.prompt_cache_instruction_chars);
        let mut runs = Vec::new();
        for run in 0..self.sizes.runs {
            runs.push(self.prompt_cache_run(&instruction, run).await?);
        }
        self.emulator.clear_prompt_cache();
        let [
            a_requests,
            a_input,
            a_read,
            a_write,
            a_usd,
            a_s,
            o_requests,
            o_input,
            o_usd,
            o_s,
            cost_ratio,
            read_share,
            a_usage_usd,
            o_usage_usd,
        ] = collect_runs(&runs);
        let (chars, tokens) = (instruction.chars().count(), estimated_tokens(&instruction));
        let setting = format!(
            "{n} questions to Claude 3.7 Sonnet, system prompt of {chars} chars (~{tokens} tokens), C={c}, L={}ms",
            self.sizes.mean_latency().as_millis()
        );
        self.rows.push(row(
            "10 prompt cache",
            &format!("{setting}, prompt_cache = 'auto'"),
            "requests · uncached in · cache read · cache write · billed input USD · wall s",
            format!(
                "{} · {} · {} · {} · {} · {}",
                a_requests.show(0),
                a_input.show(0),
                a_read.show(0),
                a_write.show(0),
                a_usd.show(6),
                a_s.show(2)
            ),
            "",
        ));
        self.rows.push(row(
            "10 prompt cache",
            &format!("{setting}, prompt_cache = 'off'"),
            "requests · input tokens · billed input USD · wall s",
            format!(
                "{} · {} · {} · {}",
                o_requests.show(0),
                o_input.show(0),
                o_usd.show(6),
                o_s.show(2)
            ),
            "",
        ));
        self.rows.push(row(
            "10 prompt cache",
            &setting,
            "billed input cost, auto / off",
            cost_ratio.show(3),
            "<= 0.25",
        ));
        self.rows.push(row(
            "10 prompt cache",
            &setting,
            "cache read share (auto)",
            read_share.show(3),
            "",
        ));
        self.json.insert(
            "prompt_cache".into(),
            json!({"rows": n, "concurrency": c, "model_id": CLAUDE,
                   "mean_latency_ms": self.sizes.mean_latency().as_millis(),
                   "instruction_chars": chars, "instruction_estimated_tokens": tokens,
                   "prices_usd_per_1k": {"input": CLAUDE_INPUT_PER_1K, "output": CLAUDE_OUTPUT_PER_1K,
                                         "cache_read_factor": CLAUDE_CACHE_READ_FACTOR,
                                         "cache_write_factor": CLAUDE_CACHE_WRITE_FACTOR},
                   "auto": {"requests": a_requests.json(), "uncached_input_tokens": a_input.json(),
                            "cache_read_tokens": a_read.json(), "cache_write_tokens": a_write.json(),
                            "billed_input_usd": a_usd.json(),
                            "bedrock_usage_input_usd": a_usage_usd.json(), "seconds": a_s.json()},
                   "off": {"requests": o_requests.json(), "input_tokens": o_input.json(),
                           "billed_input_usd": o_usd.json(),
                           "bedrock_usage_input_usd": o_usage_usd.json(), "seconds": o_s.json()},
                   "billed_input_cost_ratio": cost_ratio.json(),
                   "cache_read_share": read_share.json(),
                   "targets": {"billed_input_cost_ratio": 0.25}}),
        );
        Ok(())
    }

    /// One measurement of scenario 11: the interleaved rows at concurrency `c`, requests
    /// reordered by prefix or not, in a fresh session with `emulator`'s prompt cache emptied.
    async fn ordering_measure(
        &self,
        emulator: &Emulator,
        table: &str,
        c: usize,
        reorder: bool,
    ) -> Result<Tokens> {
        let n = self.sizes.ordering_rows;
        emulator.clear_prompt_cache();
        let ctx = tickets_context(emulator, c, table, reorder).await?;
        let run = classify(&ctx, emulator, "{\"prompt_cache\": \"auto\"}").await?;
        check(run.rows == n && run.right == n, || {
            format!(
                "ordering: C = {c}, reorder {reorder}: {} of {n} rows, {} answered with their label",
                run.rows, run.right
            )
        })?;
        check(run.tokens.requests == n as u64, || {
            format!(
                "ordering: C = {c}, reorder {reorder}: {n} distinct rows sent {} requests",
                run.tokens.requests
            )
        })?;
        Ok(run.tokens)
    }

    /// Scenario 11 at concurrency `c`: every run reordered, then in input order; its rows and
    /// its JSON.
    async fn ordering_at(
        &mut self,
        emulator: &Emulator,
        table: &str,
        c: usize,
        setting: &str,
    ) -> Result<Value> {
        let mut runs = Vec::new();
        for _ in 0..self.sizes.runs {
            let on = self.ordering_measure(emulator, table, c, true).await?;
            let off = self.ordering_measure(emulator, table, c, false).await?;
            if c == 1 {
                // One request at a time: deterministic, so checked in every mode.
                check(on.read_share() > off.read_share(), || {
                    format!("ordering: C = 1, reordered {on:?}, in input order {off:?}")
                })?;
            }
            #[allow(clippy::cast_precision_loss)]
            runs.push([
                on.read_share(),
                off.read_share(),
                on.read_share() - off.read_share(),
                on.read as f64,
                on.write as f64,
                on.input as f64,
                off.read as f64,
                off.write as f64,
                off.input as f64,
            ]);
        }
        let [
            share_on,
            share_off,
            difference,
            on_read,
            on_write,
            on_input,
            off_read,
            off_write,
            off_input,
        ] = collect_runs(&runs);
        let setting = format!("{setting}, C={c}");
        for (order, read, write, input) in [
            ("reorder_requests = true", &on_read, &on_write, &on_input),
            (
                "reorder_requests = false",
                &off_read,
                &off_write,
                &off_input,
            ),
        ] {
            self.rows.push(row(
                "11 ordering",
                &format!("{setting}, {order}"),
                "cache read · cache write · uncached input tokens",
                format!("{} · {} · {}", read.show(0), write.show(0), input.show(0)),
                "",
            ));
        }
        self.rows.push(row(
            "11 ordering",
            &setting,
            "cache read share: reordered · input order · difference",
            format!(
                "{} · {} · {}",
                share_on.show(3),
                share_off.show(3),
                difference.show(3)
            ),
            "",
        ));
        Ok(json!({
            "concurrency": c,
            "reordered": {"cache_read_share": share_on.json(), "cache_read_tokens": on_read.json(),
                          "cache_write_tokens": on_write.json(), "uncached_input_tokens": on_input.json()},
            "input_order": {"cache_read_share": share_off.json(), "cache_read_tokens": off_read.json(),
                            "cache_write_tokens": off_write.json(), "uncached_input_tokens": off_input.json()},
            "difference": difference.json(),
        }))
    }

    /// Scenario 11: rows whose prompts begin with one of several long prefixes, taken in turn
    /// (consecutive rows differ), against an emulator whose prompt cache holds fewer entries
    /// than there are prefixes; `bedrock.reorder_requests` on (the default) against off: the
    /// share of input tokens read from the cache.
    async fn ordering(&mut self) -> Result<()> {
        let (n, prefixes, repeats, entries) = (
            self.sizes.ordering_rows,
            self.sizes.ordering_prefixes,
            self.sizes.ordering_rule_repeats,
            self.sizes.ordering_cache_entries,
        );
        let emulator = Emulator::start(EmulatorConfig {
            request_log_capacity: 0,
            prompt_cache_entries: entries,
            ..EmulatorConfig::default()
        })
        .await?;
        let heads: Vec<String> = (0..prefixes).map(|j| ordering_prefix(j, repeats)).collect();
        let prefix_tokens = estimated_tokens(&heads[0]);
        let mut cases = String::new();
        for (j, head) in heads.iter().enumerate() {
            let _ = write!(cases, " WHEN {j} THEN '{head}'");
        }
        let (text, expected) = ticket_sql("value");
        let table = format!(
            "SELECT value AS n, CASE value % {prefixes}{cases} END || 'Ticket ' || CAST(value AS VARCHAR) || ': ' || {text} AS text, {expected} AS expected FROM generate_series(0, {last})",
            last = n.saturating_sub(1)
        );
        let mut out = Vec::new();
        let setting = format!(
            "{n} rows, {prefixes} prefixes of ~{prefix_tokens} tokens taken in turn, emulator cache of {entries} entries, L=0"
        );
        for c in self.sizes.ordering_concurrencies.clone() {
            out.push(self.ordering_at(&emulator, &table, c, &setting).await?);
        }
        emulator.shutdown().await;
        self.json.insert(
            "ordering".into(),
            json!({"rows": n, "prefixes": prefixes, "prefix_chars": heads[0].chars().count(),
                   "prefix_estimated_tokens": prefix_tokens, "model_id": NOVA,
                   "emulator_prompt_cache_entries": entries, "latency_ms": 0,
                   "results": out}),
        );
        Ok(())
    }
}

async fn run(args: &Args) -> Result<()> {
    let sizes = if args.short {
        Sizes::short()
    } else {
        Sizes::full(args.runs.unwrap_or(3))
    };
    let sizes = Sizes {
        runs: args.runs.unwrap_or(sizes.runs),
        ..sizes
    };
    let dir = std::env::temp_dir().join(format!("dfb-inference-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let emulator = Emulator::start(EmulatorConfig {
        request_log_capacity: 0,
        ..EmulatorConfig::default()
    })
    .await?;
    let mut bench = Bench {
        sizes,
        short: args.short,
        dir: dir.clone(),
        emulator,
        rows: Vec::new(),
        json: serde_json::Map::new(),
        plot: Vec::new(),
    };
    let result = run_scenarios(&mut bench, &args.scenarios).await;
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    print_table(&bench.rows);
    std::fs::create_dir_all(&args.out)?;
    let mut json = bench.json;
    json.insert(
        "mode".into(),
        json!(if bench.short { "short" } else { "full" }),
    );
    json.insert("runs".into(), json!(bench.sizes.runs));
    json.insert("machine".into(), machine());
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&Value::Object(json))?,
    )?;
    if !bench.plot.is_empty() {
        std::fs::write(
            args.out.join("throughput.svg"),
            svg(&bench.plot, bench.sizes.mean_latency()),
        )?;
    }
    println!("results: {}", args.out.join("results.json").display());
    bench.emulator.shutdown().await;
    Ok(())
}

/// Scenario 12's embedding model.
const TITAN_EMBED: &str = "amazon.titan-embed-text-v2:0";

/// The five ways to split `yes` and `true` between a question's end and an answer's start.
const SPLITS: [(&str, &str); 5] = [
    ("y", "es"),
    ("ye", "s"),
    ("t", "rue"),
    ("tr", "ue"),
    ("tru", "e"),
];

/// `VALUES (id, 'text'), …` of `n` questions and `n` answers for the emulator's rules: a
/// question of class `c` (its id modulo 5) ends with the first letters of `yes` or `true`, and
/// ten answers (two per class) begin with the rest, so only those pairs' prompts read `yes` or
/// `true`; a question shares four words with the answers that fit it, two with the other
/// answers of its class, so embeddings rank its matches among its ten nearest.
fn semantic_join_tables(n: usize) -> (String, String) {
    let questions: Vec<String> = (0..n)
        .map(|i| {
            let c = i % 5;
            format!(
                "({i}, 'Question q{i} on topic{c} and field{c}: {}')",
                SPLITS[c].0
            )
        })
        .collect();
    let answers: Vec<String> = (0..n)
        .map(|j| {
            let c = j % 5;
            if j < 10 {
                format!(
                    "({j}, '{}, answer a{j} on topic{c} and field{c}')",
                    SPLITS[c].1
                )
            } else {
                format!("({j}, 'Note n{j} on topic{c}')")
            }
        })
        .collect();
    (questions.join(", "), answers.join(", "))
}

/// What one semantic-join query did.
#[derive(Debug, Clone)]
struct Joined {
    matches: Vec<(i64, i64)>,
    filter_requests: u64,
    embedding_requests: u64,
    usd: f64,
    seconds: f64,
}

/// What scenario 12 checks in every mode: the same 2 × N matches from both plans, N × 10 filter
/// and 2N embedding requests with the rewrite, N × N filter requests without.
fn check_semantic_join(n: usize, rewritten: &Joined, every: &Joined) -> Result<()> {
    check(rewritten.matches == every.matches, || {
        format!(
            "semantic_join: the rewrite found {} matches, the cross product {}",
            rewritten.matches.len(),
            every.matches.len()
        )
    })?;
    check(rewritten.matches.len() == 2 * n, || {
        format!(
            "semantic_join: {} matches, {} expected",
            rewritten.matches.len(),
            2 * n
        )
    })?;
    check(
        rewritten.filter_requests == (n * 10) as u64
            && rewritten.embedding_requests == (2 * n) as u64
            && every.filter_requests == (n * n) as u64
            && every.embedding_requests == 0,
        || {
            format!(
                "semantic_join: rewrite {} filter + {} embedding requests (expected {} + {}), cross product {} + {} (expected {} + 0)",
                rewritten.filter_requests,
                rewritten.embedding_requests,
                n * 10,
                2 * n,
                every.filter_requests,
                every.embedding_requests,
                n * n
            )
        },
    )?;
    Ok(())
}

impl Bench {
    /// One query of scenario 12 in a fresh session: with `embedding_model` (the rewrite) or
    /// without (the full cross product).
    async fn semantic_join_run(&self, embedding_model: Option<&str>) -> Result<Joined> {
        let (n, c) = (
            self.sizes.semantic_join_rows,
            self.sizes.semantic_join_concurrency,
        );
        let ctx = BedrockContext::new().with_default_endpoint(self.emulator.url());
        let (questions, answers) = semantic_join_tables(n);
        let mut statements = vec![
            format!(
                "CREATE ML_ENGINE bench_engine FROM bedrock USING aws_access_key_id = '{ACCESS_KEY}', aws_secret_access_key = '{SECRET_KEY}', region_name = 'us-east-1', max_concurrency = {c}"
            ),
            format!("CREATE TABLE questions(id BIGINT, text VARCHAR) AS VALUES {questions}"),
            format!("CREATE TABLE answers(id BIGINT, text VARCHAR) AS VALUES {answers}"),
        ];
        if let Some(model) = embedding_model {
            statements.push(format!(
                "SET bedrock.semantic_join_embedding_model = '{model}'"
            ));
        }
        for sql in statements {
            ctx.sql(&sql).await?.collect().await?;
        }
        let count = |model: &str, op: &str| {
            self.emulator
                .stats()
                .snapshot()
                .count(Some(model), Some(op), None)
        };
        let (filter_before, embed_before) =
            (count(NOVA, "Converse"), count(TITAN_EMBED, "InvokeModel"));
        let started = Instant::now();
        let batches = ctx
            .sql(&format!("SELECT q.id, a.id FROM questions q JOIN answers a ON ai_filter('{NOVA}', 'Does ' || q.text || a.text || ' answer it?') ORDER BY q.id, a.id"))
            .await?
            .collect()
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        let mut matches = Vec::new();
        for batch in &batches {
            let q = batch
                .column(0)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            let a = batch
                .column(1)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            for row in 0..batch.num_rows() {
                matches.push((q.value(row), a.value(row)));
            }
        }
        Ok(Joined {
            matches,
            filter_requests: count(NOVA, "Converse") - filter_before,
            embedding_requests: count(TITAN_EMBED, "InvokeModel") - embed_before,
            usd: spent_usd(&ctx).await?,
            seconds,
        })
    }

    /// Scenario 12: `ai_filter` over N questions × N answers with the semantic-join rewrite
    /// (10 candidates per question) and as the full cross product: filter and embedding
    /// requests, estimated USD, wall time; both must find the same matches.
    async fn semantic_join(&mut self) -> Result<()> {
        self.emulator.set_load(self.sizes.load());
        let (n, c) = (
            self.sizes.semantic_join_rows,
            self.sizes.semantic_join_concurrency,
        );
        let mut runs = Vec::new();
        for _ in 0..self.sizes.runs {
            let rewritten = self.semantic_join_run(Some(TITAN_EMBED)).await?;
            let every = self.semantic_join_run(None).await?;
            check_semantic_join(n, &rewritten, &every)?;
            #[allow(clippy::cast_precision_loss)]
            runs.push([
                rewritten.filter_requests as f64,
                rewritten.embedding_requests as f64,
                rewritten.usd,
                rewritten.seconds,
                every.filter_requests as f64,
                every.usd,
                every.seconds,
                rewritten.matches.len() as f64,
                rewritten.usd / every.usd,
            ]);
        }
        let [
            r_filter,
            r_embed,
            r_usd,
            r_s,
            e_filter,
            e_usd,
            e_s,
            matches,
            cost_ratio,
        ] = collect_runs(&runs);
        let setting = format!(
            "{n} questions × {n} answers, ai_filter, C={c}, L={}ms",
            self.sizes.mean_latency().as_millis()
        );
        let measure = "filter req · embedding req · est. USD · wall s";
        self.rows.push(row(
            "12 semantic_join",
            &format!("{setting}, rewrite (10 candidates, {TITAN_EMBED})"),
            measure,
            format!(
                "{} · {} · {} · {}",
                r_filter.show(0),
                r_embed.show(0),
                r_usd.show(6),
                r_s.show(2)
            ),
            "",
        ));
        self.rows.push(row(
            "12 semantic_join",
            &format!("{setting}, cross product"),
            measure,
            format!(
                "{} · 0 · {} · {}",
                e_filter.show(0),
                e_usd.show(6),
                e_s.show(2)
            ),
            "",
        ));
        self.rows.push(row(
            "12 semantic_join",
            &setting,
            "matches (both plans) · est. USD, rewrite / cross product",
            format!("{} · {}", matches.show(0), cost_ratio.show(3)),
            "",
        ));
        self.json.insert(
            "semantic_join".into(),
            json!({"rows": n, "candidates": 10, "concurrency": c,
                   "mean_latency_ms": self.sizes.mean_latency().as_millis(),
                   "filter_model_id": NOVA, "embedding_model_id": TITAN_EMBED,
                   "rewrite": {"filter_requests": r_filter.json(),
                               "embedding_requests": r_embed.json(),
                               "estimated_usd": r_usd.json(), "seconds": r_s.json()},
                   "cross_product": {"filter_requests": e_filter.json(),
                                     "estimated_usd": e_usd.json(), "seconds": e_s.json()},
                   "matches": matches.json(),
                   "cost_ratio": cost_ratio.json()}),
        );
        Ok(())
    }
}

async fn run_scenarios(bench: &mut Bench, scenarios: &[String]) -> Result<()> {
    for scenario in scenarios {
        eprintln!("running {scenario} …");
        match scenario.as_str() {
            "latency" => bench.latency().await?,
            "overhead" => bench.overhead().await?,
            "duplicates" => bench.duplicates().await?,
            "quota" => bench.quota().await?,
            "memory" => bench.memory().await?,
            "sequential" => bench.sequential().await?,
            "cluster" => bench.cluster().await?,
            "batch" => bench.batch().await?,
            "packing" => bench.packing().await?,
            "prompt_cache" => bench.prompt_cache().await?,
            "ordering" => bench.ordering().await?,
            "semantic_join" => bench.semantic_join().await?,
            other => return Err(format!("unknown scenario '{other}'").into()),
        }
    }
    Ok(())
}

/// Cores and memory of this machine, from `/proc` (Linux).
fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory_kb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    json!({"cores": cores, "memory_kb": memory_kb})
}

fn print_table(rows: &[Row]) {
    let headers = [
        "scenario",
        "setting",
        "measure",
        "median (min–max)",
        "target",
    ];
    let cells: Vec<[&str; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.scenario.as_str(),
                r.setting.as_str(),
                r.measure.as_str(),
                r.result.as_str(),
                r.target.as_str(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain(std::iter::once(headers[i].chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cols: [&str; 5]| {
        let padded: Vec<String> = cols
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    println!("{}", line(headers));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for c in cells {
        println!("{}", line(c));
    }
}

/// Throughput against concurrency (log2 axis), measured median with min–max bars, and the
/// line `C / L`.
#[allow(
    clippy::cast_precision_loss,
    clippy::too_many_lines,
    clippy::many_single_char_names
)] // a drawing: short names for coordinates
fn svg(points: &[(usize, f64, Figure)], latency: Duration) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 70.0, 20.0, 40.0, 50.0);
    let max_c = points.iter().map(|p| p.0).max().unwrap_or(1).max(2) as f64;
    let max_y = points
        .iter()
        .map(|p| p.1.max(p.2.max()))
        .fold(1.0, f64::max)
        * 1.1;
    let x = |c: f64| left + (c.log2() / max_c.log2()) * (w - left - right);
    let y = |v: f64| h - bottom - v / max_y * (h - top - bottom);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">Rows/s against max_concurrency C (emulator latency L = {} ms)</text>"#,
        w / 2.0,
        latency.as_millis()
    );
    // Axes, ticks and grid.
    let _ = writeln!(
        s,
        r#"<line x1="{left}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{b}" stroke="black"/>"#,
        b = h - bottom,
        r = w - right
    );
    for (c, _, _) in points {
        let cx = x(*c as f64);
        let _ = writeln!(
            s,
            r#"<line x1="{cx:.1}" y1="{b}" x2="{cx:.1}" y2="{b2}" stroke="black"/><text x="{cx:.1}" y="{t}" text-anchor="middle">{c}</text>"#,
            b = h - bottom,
            b2 = h - bottom + 5.0,
            t = h - bottom + 18.0
        );
    }
    for i in 0..=5 {
        let v = max_y / 5.0 * f64::from(i);
        let vy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{vy:.1}" x2="{r}" y2="{vy:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{v:.0}</text>"##,
            r = w - right,
            tx = left - 6.0,
            ty = vy + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">max_concurrency C (log scale)</text>"#,
        w / 2.0,
        h - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">rows/s</text>"#,
        h / 2.0,
        h / 2.0
    );
    // The theoretical line C / L, drawn through many points of the log axis.
    let l = latency.as_secs_f64();
    let theory: Vec<String> = (0..=100)
        .map(|i| {
            let c = max_c.powf(f64::from(i) / 100.0);
            format!("{:.1},{:.1}", x(c), y(c / l))
        })
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#888" stroke-dasharray="6 4"/>"##,
        theory.join(" ")
    );
    let measured: Vec<String> = points
        .iter()
        .map(|(c, _, f)| format!("{:.1},{:.1}", x(*c as f64), y(f.median())))
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#1f77b4" stroke-width="2"/>"##,
        measured.join(" ")
    );
    for (c, _, f) in points {
        let cx = x(*c as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{cx:.1}" y1="{:.1}" x2="{cx:.1}" y2="{:.1}" stroke="#1f77b4"/><circle cx="{cx:.1}" cy="{:.1}" r="4" fill="#1f77b4"/>"##,
            y(f.min()),
            y(f.max()),
            y(f.median())
        );
    }
    // Legend.
    let _ = writeln!(
        s,
        r##"<line x1="{lx}" y1="50" x2="{lx2}" y2="50" stroke="#888" stroke-dasharray="6 4"/><text x="{tx}" y="54">C / L (the physical limit)</text>"##,
        lx = left + 20.0,
        lx2 = left + 50.0,
        tx = left + 56.0
    );
    let _ = writeln!(
        s,
        r##"<line x1="{lx}" y1="70" x2="{lx2}" y2="70" stroke="#1f77b4" stroke-width="2"/><text x="{tx}" y="74">measured (median, min–max)</text>"##,
        lx = left + 20.0,
        lx2 = left + 50.0,
        tx = left + 56.0
    );
    s.push_str("</svg>\n");
    s
}

// ---------------------------------------------------------------------------------------------
// The memory child

/// `VmHWM` (peak resident set) of this process in kB.
fn peak_rss_kb() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM in /proc/self/status".into())
}

/// Runs one query over `data` (latency 0) in this fresh process and prints its peak RSS.
async fn rss_child(data: &Path) -> Result<()> {
    let emulator = Emulator::start(EmulatorConfig {
        request_log_capacity: 0,
        ..EmulatorConfig::default()
    })
    .await?;
    let ctx = session(&emulator, data, EngineSettings::default(), None).await?;
    let before = peak_rss_kb()?;
    let run = run_query(&ctx, &emulator).await?;
    let peak = peak_rss_kb()?;
    check(run.failed == 0, || {
        format!("memory: {} rows without their answer", run.failed)
    })?;
    println!(
        "rows={} requests={} before_kb={before} peak_kb={peak} seconds={:.3}",
        run.rows, run.requests, run.seconds
    );
    emulator.shutdown().await;
    Ok(())
}
