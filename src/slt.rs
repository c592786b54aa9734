//! The sqllogictest driver (feature `slt`): run `.slt` suites that create engines and models and
//! query them, against the built-in emulator, deterministic and offline.
//!
//! [`SltDriver`] starts one emulator for a whole suite; every file gets a fresh
//! [`BedrockContext`] (a [`BedrockSltDb`]) whose engines default to that emulator, with an
//! optional directory served as the `files` schema (and `files_url('name')`, the `file://` URL
//! of a file in it), the functions `emulator_model_calls()`, `emulator_embedding_calls()`,
//! `emulator_batch_jobs()` and `emulator_batch_records()`, and the emulator's S3 endpoint as
//! the default of `batch_s3_endpoint_url` (its bucket `bedrock-batch` takes batch jobs' files).
//! The same driver runs this project's own `sql-tests/` and `datafusion-bedrock slt FILES…`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use datafusion_bedrock::emulator::EmulatorConfig;
//! use datafusion_bedrock::slt::SltDriver;
//!
//! let driver = SltDriver::start(EmulatorConfig::default(), Some("sql-tests/files".into())).await?;
//! driver.run_file("sql-tests/seed/amazon_bedrock.slt").await?;
//! driver.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion_sqllogictest::{
    DFColumnType, DFOutput, DFSqlLogicTestError, convert_batches, convert_schema_to_types,
    df_value_validator, value_normalizer,
};
use sqllogictest::{DBOutput, default_column_validator};

use crate::BedrockContext;
use crate::emulator::{Emulator, EmulatorConfig, EmulatorStats};

/// The error of a failed `.slt` record or file (from `sqllogictest`).
pub type SltError = sqllogictest::TestError;

/// One `.slt` file's database: a [`BedrockContext`], as a `sqllogictest::AsyncDB`.
///
/// Query results are rendered as DataFusion's own sqllogictest suite renders them
/// (`convert_batches`), so expected outputs read the same.
#[derive(Debug)]
pub struct BedrockSltDb {
    ctx: BedrockContext,
}

impl BedrockSltDb {
    /// Wraps a context.
    #[must_use]
    pub fn new(ctx: BedrockContext) -> Self {
        Self { ctx }
    }

    /// The context the records run against.
    #[must_use]
    pub fn context(&self) -> &BedrockContext {
        &self.ctx
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for BedrockSltDb {
    type Error = DFSqlLogicTestError;
    type ColumnType = DFColumnType;

    async fn run(&mut self, sql: &str) -> Result<DFOutput, Self::Error> {
        let df = self.ctx.sql(sql).await?;
        let schema = df.schema().as_arrow().clone();
        let batches = df.collect().await?;
        let types = convert_schema_to_types(schema.fields());
        let rows = convert_batches(&schema, batches, false)?;
        if rows.is_empty() && types.is_empty() {
            Ok(DBOutput::StatementComplete(0))
        } else {
            Ok(DBOutput::Rows { types, rows })
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &'static str {
        "datafusion-bedrock"
    }
}

/// `emulator_model_calls() -> BIGINT`: how many model invocations (`Converse` and `InvokeModel`,
/// streamed or not) the emulator has received since the current `.slt` file started, so a file
/// can prove how many requests a query made.
pub fn emulator_model_calls_udf(stats: Arc<EmulatorStats>) -> ScalarUDF {
    create_udf(
        "emulator_model_calls",
        vec![],
        DataType::Int64,
        Volatility::Volatile,
        Arc::new(move |_args: &[ColumnarValue]| {
            let snapshot = stats.snapshot();
            let calls: u64 = [
                "Converse",
                "ConverseStream",
                "InvokeModel",
                "InvokeModelWithResponseStream",
            ]
            .iter()
            .map(|op| snapshot.count(None, Some(op), None))
            .sum();
            let total = i64::try_from(calls).unwrap_or(i64::MAX);
            Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(total))))
        }),
    )
}

/// `files_url(name) -> VARCHAR`: the `file://` URL of the file `name` of the files directory
/// (`ai_image(files_url('red_pixel.png'))`), so a suite does not depend on where it is checked
/// out.
#[must_use]
pub fn files_url_udf(dir: &Path) -> ScalarUDF {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let base = format!("file://{}", dir.display());
    create_udf(
        "files_url",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let url = |name: Option<&str>| name.map(|n| format!("{base}/{n}"));
            Ok(match args.first() {
                Some(ColumnarValue::Scalar(ScalarValue::Utf8(name))) => {
                    ColumnarValue::Scalar(ScalarValue::Utf8(url(name.as_deref())))
                }
                Some(ColumnarValue::Array(names)) => {
                    let names = datafusion::arrow::array::AsArray::as_string::<i32>(names);
                    ColumnarValue::Array(Arc::new(
                        names
                            .iter()
                            .map(url)
                            .collect::<datafusion::arrow::array::StringArray>(),
                    ))
                }
                _ => ColumnarValue::Scalar(ScalarValue::Utf8(None)),
            })
        }),
    )
}

/// `emulator_batch_jobs() -> BIGINT`: batch inference jobs the emulator has created since the
/// current `.slt` file started (a re-attached job is not a new one).
pub fn emulator_batch_jobs_udf(stats: Arc<EmulatorStats>) -> ScalarUDF {
    snapshot_udf("emulator_batch_jobs", stats, |s| {
        s.batch_jobs_submitted() as u64
    })
}

/// `emulator_batch_records() -> BIGINT`: the records of those jobs.
pub fn emulator_batch_records_udf(stats: Arc<EmulatorStats>) -> ScalarUDF {
    snapshot_udf("emulator_batch_records", stats, |s| {
        s.batch_jobs.iter().map(|j| j.records).sum()
    })
}

/// `emulator_embedding_calls() -> BIGINT`: how many of those model invocations went to an
/// embedding model (Titan Embeddings, Cohere Embed) since the current `.slt` file started.
pub fn emulator_embedding_calls_udf(stats: Arc<EmulatorStats>) -> ScalarUDF {
    snapshot_udf("emulator_embedding_calls", stats, |s| {
        s.requests
            .iter()
            .filter(|r| r.model.contains("embed") && r.operation.starts_with("InvokeModel"))
            .map(|r| r.count)
            .sum()
    })
}

/// `emulator_cache_read_tokens() -> BIGINT`: input tokens the emulator's prompt cache served
/// since the current `.slt` file started.
pub fn emulator_cache_read_tokens_udf(stats: Arc<EmulatorStats>) -> ScalarUDF {
    snapshot_udf("emulator_cache_read_tokens", stats, |s| {
        s.cache_read_input_tokens
    })
}

/// `emulator_cache_write_tokens() -> BIGINT`: input tokens written to the emulator's prompt
/// cache since the current `.slt` file started.
pub fn emulator_cache_write_tokens_udf(stats: Arc<EmulatorStats>) -> ScalarUDF {
    snapshot_udf("emulator_cache_write_tokens", stats, |s| {
        s.cache_write_input_tokens
    })
}

fn snapshot_udf(
    name: &str,
    stats: Arc<EmulatorStats>,
    count: fn(&crate::emulator::StatsSnapshot) -> u64,
) -> ScalarUDF {
    create_udf(
        name,
        vec![],
        DataType::Int64,
        Volatility::Volatile,
        Arc::new(move |_args: &[ColumnarValue]| {
            let total = i64::try_from(count(&stats.snapshot())).unwrap_or(i64::MAX);
            Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(total))))
        }),
    )
}

/// Runs `.slt` files against one in-process emulator.
#[derive(Debug)]
pub struct SltDriver {
    emulator: Emulator,
    files_dir: Option<PathBuf>,
    /// The S3 root the driver made for the emulator (removed with the driver).
    own_s3_root: Option<ScratchDir>,
}

impl SltDriver {
    /// Starts the emulator with `config`; `files_dir`, when given, is registered as the `files`
    /// schema of every file's context.
    ///
    /// # Errors
    /// When the emulator cannot bind a port on 127.0.0.1.
    pub async fn start(
        config: EmulatorConfig,
        files_dir: Option<PathBuf>,
    ) -> std::io::Result<Self> {
        let mut config = config;
        let own_s3_root = if config.s3_root.is_none() {
            let root = ScratchDir::new("slt-s3")?;
            config.s3_root = Some(root.path().to_path_buf());
            Some(root)
        } else {
            None
        };
        let emulator = Emulator::start(config).await?;
        Ok(Self {
            emulator,
            files_dir,
            own_s3_root,
        })
    }

    /// The emulator the engines talk to.
    #[must_use]
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// A fresh database for one file: a context whose engines default to the emulator, with
    /// the `files` schema and `emulator_model_calls()`.
    ///
    /// # Errors
    /// When the files directory cannot be registered.
    pub async fn connect(&self) -> Result<BedrockSltDb, DFSqlLogicTestError> {
        connect(
            self.urls(),
            self.files_dir.clone(),
            self.emulator.shared_stats(),
        )
        .await
    }

    fn runner(
        &self,
    ) -> sqllogictest::Runner<
        BedrockSltDb,
        impl sqllogictest::MakeConnection<Conn = BedrockSltDb> + use<>,
    > {
        let urls = self.urls();
        let files_dir = self.files_dir.clone();
        let stats = self.emulator.shared_stats();
        let mut runner = sqllogictest::Runner::new(move || {
            connect(urls.clone(), files_dir.clone(), Arc::clone(&stats))
        });
        runner.with_validator(df_value_validator);
        runner.with_normalizer(value_normalizer);
        runner
    }

    /// Runs one file; the emulator's counters and prompt cache start empty for it.
    ///
    /// # Errors
    /// The first record whose output or error differs from the file, with both shown.
    pub async fn run_file(&self, path: impl AsRef<Path>) -> Result<(), SltError> {
        self.emulator.stats().reset();
        self.emulator.clear_prompt_cache();
        self.runner().run_file_async(path).await
    }

    /// Runs one file and rewrites its expected outputs with what the queries return now
    /// (`--complete`).
    ///
    /// # Errors
    /// When the file cannot be read or written, or a record cannot run at all.
    pub async fn complete_file(&self, path: impl AsRef<Path>) -> Result<(), String> {
        self.emulator.stats().reset();
        self.emulator.clear_prompt_cache();
        self.runner()
            .update_test_file(
                path,
                " ",
                df_value_validator,
                value_normalizer,
                default_column_validator,
            )
            .await
            .map_err(|e| e.to_string())
    }

    /// Stops the emulator (and removes the S3 root it made).
    pub async fn shutdown(self) {
        self.emulator.shutdown().await;
        drop(self.own_s3_root);
    }

    /// The emulator's Bedrock and S3 endpoints.
    fn urls(&self) -> (String, Option<String>) {
        (
            self.emulator.url().to_string(),
            self.emulator.s3_url().map(str::to_string),
        )
    }
}

/// A new, empty directory under the system's temporary directory, named for this process;
/// removed with everything in it when dropped.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `datafusion-bedrock-<what>-<pid>-<n>` in the temporary directory.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn new(what: &str) -> std::io::Result<Self> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "datafusion-bedrock-{what}-{}-{n}",
            std::process::id()
        ));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    /// Its path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn connect(
    (url, s3_url): (String, Option<String>),
    files_dir: Option<PathBuf>,
    stats: Arc<EmulatorStats>,
) -> Result<BedrockSltDb, DFSqlLogicTestError> {
    let mut ctx = BedrockContext::new().with_default_endpoint(url);
    if let Some(s3_url) = s3_url {
        ctx = ctx.with_default_s3_endpoint(s3_url);
    }
    if let Some(dir) = &files_dir {
        ctx.session().register_udf(files_url_udf(dir));
        // A suite's data must all load: a file that does not is an error, not a warning.
        if let Some((file, e)) = ctx
            .register_files_dir(dir)
            .await?
            .skipped
            .into_iter()
            .next()
        {
            return Err(DFSqlLogicTestError::Other(format!(
                "{} cannot be read: {e}",
                file.display()
            )));
        }
    }
    ctx.session()
        .register_udf(emulator_model_calls_udf(Arc::clone(&stats)));
    ctx.session()
        .register_udf(emulator_batch_jobs_udf(Arc::clone(&stats)));
    ctx.session()
        .register_udf(emulator_batch_records_udf(Arc::clone(&stats)));
    ctx.session()
        .register_udf(emulator_cache_read_tokens_udf(Arc::clone(&stats)));
    ctx.session()
        .register_udf(emulator_embedding_calls_udf(Arc::clone(&stats)));
    ctx.session()
        .register_udf(emulator_cache_write_tokens_udf(stats));
    Ok(BedrockSltDb::new(ctx))
}

/// Every `.slt` file under `path` (recursively, sorted), or `path` itself when it is a file.
///
/// # Errors
/// When a directory cannot be read.
pub fn slt_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "slt") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if path.is_dir() {
        walk(path, &mut out)?;
    } else {
        out.push(path.to_path_buf());
    }
    out.sort();
    Ok(out)
}
