//! The `datafusion-bedrock` shell (feature `cli`): `datafusion-cli` with the extension.
//!
//! The shell owns the input loop — `datafusion-cli` parses every statement itself, with no hook
//! before parsing — and hands everything that is not one of the extension's statements to
//! `datafusion-cli`'s own execution and printing, so those behave exactly as in `datafusion-cli`
//! (print formats, `--maxrows`, object stores for `s3://`, `gs://`, `http(s)://`, `\d`-style
//! commands). There is one session, built as `datafusion-cli` builds its own plus the
//! extension ([`session_context`]); the extension's statements run on it through
//! [`crate::execute_sql`] and print through the same `PrintOptions`.

mod helper;
pub mod history;
pub mod nested_text;
pub mod progress;
pub mod split;

use std::io::BufRead;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::instant::Instant;
use datafusion::config::ConfigOptions;
use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::{ExplainFormat, LogicalPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_cli::catalog::DynamicObjectStoreCatalog;
use datafusion_cli::cli_context::CliSessionContext;
use datafusion_cli::command::{Command, OutputFormat};
use datafusion_cli::functions::{
    ListFilesCacheFunc, MetadataCacheFunc, ParquetMetadataFunc, StatisticsCacheFunc,
};
use datafusion_cli::object_storage::StdinCarriesCommands;
use datafusion_cli::object_storage::instrumented::InstrumentedObjectStoreRegistry;
use datafusion_cli::print_format::PrintFormat;
use datafusion_cli::print_options::{MaxRows, PrintOptions};
use object_store::ObjectStore;
use rustyline::error::ReadlineError;

use crate::extension::{BedrockExtension, SessionStateBuilderBedrock};
use crate::sql::execute::runs_in_extension;
use crate::sql::parser::{ParserOptions, parse_sql_with};
use progress::ProgressLine;
use split::{looks_like_extension, split_statements};

/// How the session is configured (the `datafusion-cli` flags that shape it).
#[derive(Debug, Clone, Default)]
pub struct SessionSettings {
    /// `-b`: rows per batch (DataFusion's default when `None`).
    pub batch_size: Option<usize>,
    /// `-m`: a memory limit in bytes (no limit when `None`).
    pub memory_limit: Option<usize>,
    /// The shell reads its SQL from stdin (the REPL, or `-f /dev/stdin`), so stdin is not a
    /// data source.
    pub reads_sql_from_stdin: bool,
    /// `df://host:port`: send queries to this Ballista scheduler.
    pub cluster: Option<String>,
}

/// A session configured as `datafusion-cli` configures its own — settings from `DATAFUSION_*`
/// environment variables, `information_schema`, `NULL` shown as `NULL`, EXPLAIN as a tree,
/// tables from URLs (`SELECT * FROM 's3://…'`) with their object stores registered on first
/// use, and the `parquet_metadata`, `metadata_cache`, `statistics_cache` and
/// `list_files_cache` table functions — with the extension in it.
///
/// # Errors
/// Invalid `DATAFUSION_*` settings or a zero batch size.
pub async fn session_context(
    settings: &SessionSettings,
    registry: Arc<InstrumentedObjectStoreRegistry>,
) -> Result<SessionContext> {
    let mut options = ConfigOptions::from_env()?;
    if let Some(batch_size) = settings.batch_size {
        options.execution.batch_size =
            datafusion::common::config::ConfigNonZeroUsize::try_new(batch_size).map_err(|_| {
                DataFusionError::Configuration(
                    "batch_size must be greater than 0: give -b a positive number of rows".into(),
                )
            })?;
    }
    if std::env::var_os("DATAFUSION_EXPLAIN_FORMAT").is_none() {
        options.explain.format = ExplainFormat::Tree;
    }
    if std::env::var_os("DATAFUSION_FORMAT_NULL").is_none() {
        options.format.null = String::from("NULL");
    }
    let mut config = SessionConfig::from(options).with_information_schema(true);
    if settings.reads_sql_from_stdin {
        config = config.with_extension(Arc::new(StdinCarriesCommands));
    }
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(limit) = settings.memory_limit {
        let pool: Arc<dyn MemoryPool> = match NonZeroUsize::new(3) {
            Some(top) => Arc::new(TrackConsumersPool::new(GreedyMemoryPool::new(limit), top)),
            None => Arc::new(GreedyMemoryPool::new(limit)),
        };
        runtime = runtime.with_memory_pool(pool);
    }
    let runtime = runtime.with_object_store_registry(registry).build_arc()?;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_bedrock()
        .build();
    let ctx = match &settings.cluster {
        Some(address) => crate::distributed::cluster_session(address, state).await?,
        None => SessionContext::new_with_state(state),
    };
    let ctx = ctx.enable_url_table();
    ctx.refresh_catalogs().await?;
    ctx.register_catalog_list(Arc::new(DynamicObjectStoreCatalog::new(
        Arc::clone(ctx.state().catalog_list()),
        ctx.state_weak_ref(),
    )));
    let caches = Arc::clone(&ctx.task_ctx().runtime_env().cache_manager);
    ctx.register_udtf("parquet_metadata", Arc::new(ParquetMetadataFunc {}));
    ctx.register_udtf(
        "metadata_cache",
        Arc::new(MetadataCacheFunc::new(Arc::clone(&caches))),
    );
    ctx.register_udtf(
        "statistics_cache",
        Arc::new(StatisticsCacheFunc::new(Arc::clone(&caches))),
    );
    ctx.register_udtf(
        "list_files_cache",
        Arc::new(ListFilesCacheFunc::new(caches)),
    );
    Ok(ctx)
}

/// The session as `datafusion-cli` sees it (the same session, not a copy): its plans with
/// model relations or AI functions are rewritten and checked before they run, so their errors
/// come at planning and plainly.
struct CliSession<'a> {
    ctx: &'a SessionContext,
    /// Nested columns print as JSON text (CSV and TSV cannot hold them).
    nested_as_json: bool,
}

#[async_trait::async_trait]
impl CliSessionContext for CliSession<'_> {
    fn task_ctx(&self) -> Arc<TaskContext> {
        self.ctx.task_ctx()
    }

    fn session_state(&self) -> SessionState {
        self.ctx.state()
    }

    fn register_object_store(
        &self,
        url: &url::Url,
        object_store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore + 'static>> {
        self.ctx.register_object_store(url, object_store)
    }

    fn register_table_options_extension_from_scheme(&self, scheme: &str) {
        CliSessionContext::register_table_options_extension_from_scheme(self.ctx, scheme);
    }

    async fn execute_logical_plan(&self, plan: LogicalPlan) -> Result<DataFrame> {
        let mut plan = crate::prepare_plan(plan, &self.ctx.state())?;
        if self.nested_as_json {
            plan = nested_text::nested_columns_as_json(plan)?;
        }
        self.ctx.execute_logical_plan(plan).await
    }
}

/// Why a statement did not complete.
#[derive(Debug)]
pub enum Failure {
    /// It failed with this error.
    Error(DataFusionError),
    /// Ctrl-C cancelled it.
    Cancelled,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Error(e) => write!(f, "{e}"),
            Self::Cancelled => f.write_str("Query cancelled (Ctrl-C)"),
        }
    }
}

impl From<DataFusionError> for Failure {
    fn from(e: DataFusionError) -> Self {
        Self::Error(e)
    }
}

/// The shell: a session with the extension and `datafusion-cli`'s print options.
pub struct Shell {
    ctx: SessionContext,
    ext: Arc<BedrockExtension>,
    print: PrintOptions,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("session_id", &self.ctx.session_id())
            .field("extension", &self.ext)
            .field("print", &self.print)
            .finish()
    }
}

impl Shell {
    /// A shell over a session built with the extension ([`session_context`]).
    ///
    /// # Errors
    /// When the session does not have the extension.
    pub fn new(ctx: SessionContext, print: PrintOptions) -> Result<Self> {
        let ext = BedrockExtension::of_session(&ctx)?;
        Ok(Self { ctx, ext, print })
    }

    /// The session.
    #[must_use]
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs SQL text (one or more `;`-separated statements) and prints each result; stops at
    /// the first statement that fails or is cancelled. Ctrl-C cancels the running statement:
    /// its future is dropped, so no new model request starts.
    ///
    /// # Errors
    /// The first failure.
    pub async fn run_sql(&self, sql: &str) -> Result<(), Failure> {
        for statement in split_statements(sql) {
            let progress = ProgressLine::start(self.ext.catalog(), true);
            let result = tokio::select! {
                r = self.run_statement(&statement) => r.map_err(Failure::Error),
                _ = tokio::signal::ctrl_c() => Err(Failure::Cancelled),
            };
            progress.finish();
            result?;
        }
        Ok(())
    }

    async fn run_statement(&self, sql: &str) -> Result<()> {
        let options = ParserOptions::from(&self.ctx.state().config_options().sql_parser);
        let parsed = match parse_sql_with(sql, &options) {
            Ok(parsed) => parsed,
            Err(e) if looks_like_extension(sql) => return Err(e),
            // datafusion-cli reports its own syntax errors.
            Err(_) => return self.run_in_datafusion_cli(sql).await,
        };
        let ours = parsed
            .iter()
            .any(|s| runs_in_extension(s, &options, &self.ext));
        if ours {
            self.run_extension(sql).await
        } else {
            self.run_in_datafusion_cli(sql).await
        }
    }

    /// The session as `datafusion-cli` sees it, for the current print format.
    fn cli_session(&self) -> CliSession<'_> {
        CliSession {
            ctx: &self.ctx,
            nested_as_json: nested_as_json(&self.print),
        }
    }

    async fn run_in_datafusion_cli(&self, sql: &str) -> Result<()> {
        let session = self.cli_session();
        let print = every_row_unless_table(&self.print);
        datafusion_cli::exec::exec_from_commands(&session, vec![sql.to_string()], &print).await
    }

    async fn run_extension(&self, sql: &str) -> Result<()> {
        let started = Instant::now();
        let df = crate::execute_sql(&self.ctx, sql).await?;
        let schema = Arc::clone(df.schema().inner());
        let batches = df.collect().await?;
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        let mut print = self.print.clone();
        // Results print as tables, as datafusion-cli prints its queries; a statement without
        // a result (RESET bedrock.…) prints nothing, as datafusion-cli's SET and RESET.
        if print.format == PrintFormat::Automatic && !schema.fields().is_empty() {
            print.format = PrintFormat::Table;
        }
        let task = self.ctx.task_ctx();
        print.print_batches(
            schema,
            &batches,
            started,
            rows,
            &task.session_config().options().format,
        )
    }

    /// Runs `-c` commands in order; stops at the first failure.
    ///
    /// # Errors
    /// The first failure.
    pub async fn run_commands(&self, commands: &[String]) -> Result<(), Failure> {
        for sql in commands {
            self.run_sql(sql).await?;
        }
        Ok(())
    }

    /// Runs a SQL file as `datafusion-cli -f` does: lines starting with `--` or `#!` are
    /// skipped, a statement runs when a line ends with `;`, and a failing statement's error is
    /// printed on stderr before the next one runs. Ctrl-C stops the file.
    ///
    /// Returns whether every statement succeeded.
    ///
    /// # Errors
    /// When the file cannot be read, or Ctrl-C cancelled it.
    pub async fn run_file(&self, path: impl AsRef<Path>) -> Result<bool, Failure> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| {
            DataFusionError::Execution(format!("Error opening {:?} {e}", path.display()))
        })?;
        let mut ok = true;
        let mut query = String::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|e| {
                DataFusionError::Execution(format!("Error reading {:?} {e}", path.display()))
            })?;
            if line.starts_with("#!") || line.starts_with("--") {
                continue;
            }
            let line = line.trim_end();
            query.push_str(line);
            if line.ends_with(';') {
                ok &= self.run_reporting(&std::mem::take(&mut query)).await?;
            } else {
                query.push('\n');
            }
        }
        if query.contains(|c: char| !c.is_whitespace()) {
            ok &= self.run_reporting(&query).await?;
        }
        Ok(ok)
    }

    /// Runs SQL, printing a failure on stderr; `Ok(false)` when it failed.
    async fn run_reporting(&self, sql: &str) -> Result<bool, Failure> {
        match self.run_sql(sql).await {
            Ok(()) => Ok(true),
            Err(Failure::Cancelled) => Err(Failure::Cancelled),
            Err(e) => {
                eprintln!("{e}");
                Ok(false)
            }
        }
    }

    /// The interactive shell: `datafusion-cli`'s line editor, hints, highlighting and `\`
    /// commands, with the extension's statements accepted. History is kept in the user's state
    /// directory ([`history::history_path`]) without the values of secret parameters.
    ///
    /// # Errors
    /// When the terminal cannot be read.
    pub async fn run_repl(&mut self) -> rustyline::Result<()> {
        let mut editor: rustyline::Editor<helper::ShellHelper, rustyline::history::DefaultHistory> =
            rustyline::Editor::new()?;
        let dialect = self
            .ctx
            .task_ctx()
            .session_config()
            .options()
            .sql_parser
            .dialect;
        editor.set_helper(Some(helper::ShellHelper::new(dialect, self.print.color)));
        let history = history::history_path();
        if let Some(path) = &history {
            editor.load_history(path).ok();
        }
        loop {
            match editor.readline("> ") {
                Ok(line) if line.starts_with('\\') => {
                    remember(&mut editor, &line)?;
                    if !self.run_command(&line).await {
                        break;
                    }
                }
                Ok(line) => {
                    remember(&mut editor, &line)?;
                    match self.run_sql(&line).await {
                        Ok(()) => {}
                        Err(Failure::Cancelled) => println!("^C"),
                        Err(e) => eprintln!("{e}"),
                    }
                }
                Err(ReadlineError::Interrupted) => {
                    println!("^C");
                    if let Some(h) = editor.helper() {
                        h.reset_hint();
                    }
                }
                Err(ReadlineError::Eof) => {
                    println!("\\q");
                    break;
                }
                Err(err) => {
                    eprintln!("Unknown error happened {err:?}");
                    break;
                }
            }
        }
        match &history {
            Some(path) => save_history(&mut editor, path),
            None => Ok(()),
        }
    }

    /// Runs a `\` command; `false` for `\q`.
    async fn run_command(&mut self, line: &str) -> bool {
        let command = line.split_whitespace().collect::<Vec<_>>().join(" ");
        let invalid = || {
            eprintln!(
                "'\\{}' is not a valid command, you can use '\\?' to see all commands",
                &line[1..]
            );
        };
        let Ok(cmd) = command[1..].parse::<Command>() else {
            invalid();
            return true;
        };
        let result = match &cmd {
            Command::Quit => return false,
            Command::OutputFormat(None) => {
                println!("Output format is {:?}.", self.print.format);
                Ok(())
            }
            Command::OutputFormat(Some(sub)) => {
                if let Ok(change) = sub.parse::<OutputFormat>() {
                    change.execute(&mut self.print)
                } else {
                    invalid();
                    Ok(())
                }
            }
            // Included files may hold the extension's statements too.
            Command::Include(Some(file)) => match self.run_file(file).await {
                Ok(_) => Ok(()),
                Err(Failure::Cancelled) => {
                    println!("^C");
                    Ok(())
                }
                Err(Failure::Error(e)) => Err(e),
            },
            _ => {
                let session = CliSession {
                    ctx: &self.ctx,
                    nested_as_json: nested_as_json(&self.print),
                };
                cmd.execute(&session, &mut self.print).await
            }
        };
        if let Err(e) = result {
            eprintln!("{e}");
        }
        true
    }
}

/// CSV and TSV cannot hold nested values: they print as JSON text.
fn nested_as_json(print: &PrintOptions) -> bool {
    matches!(print.format, PrintFormat::Csv | PrintFormat::Tsv)
}

/// `--maxrows` limits what the table format displays; `datafusion-cli` 55 also stops
/// collecting a query's rows there for every other format, silently dropping rows that were
/// computed (and paid for). CSV, TSV, JSON and NDJSON print every row.
fn every_row_unless_table(print: &PrintOptions) -> PrintOptions {
    let mut print = print.clone();
    if !matches!(print.format, PrintFormat::Table | PrintFormat::Automatic) {
        print.maxrows = MaxRows::Unlimited;
    }
    print
}

/// Adds a line to the history, with the values of secret parameters redacted.
fn remember<H: rustyline::Helper>(
    editor: &mut rustyline::Editor<H, rustyline::history::DefaultHistory>,
    line: &str,
) -> rustyline::Result<()> {
    if let Some(safe) = history::redact(line.trim_end()) {
        editor.add_history_entry(safe)?;
    }
    Ok(())
}

/// Saves the history in a directory only the user can read (0700 on Unix).
fn save_history<H: rustyline::Helper>(
    editor: &mut rustyline::Editor<H, rustyline::history::DefaultHistory>,
    path: &Path,
) -> rustyline::Result<()> {
    if let Some(dir) = path.parent() {
        crate::catalog::persist::create_private_dir(dir)?;
    }
    editor.save_history(path)
}

/// `datafusion-cli`'s print options for a format.
pub fn print_options(
    format: PrintFormat,
    quiet: bool,
    maxrows: MaxRows,
    color: bool,
    registry: Arc<InstrumentedObjectStoreRegistry>,
) -> PrintOptions {
    PrintOptions {
        format,
        quiet,
        maxrows,
        color,
        instrumented_registry: registry,
    }
}
