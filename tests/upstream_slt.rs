//! Runs DataFusion's own sqllogictest suite (the `.slt` files shipped in the
//! `datafusion-sqllogictest` crate this project depends on) two ways, to prove that adding the
//! extension changes nothing for plain DataFusion SQL:
//!
//! 1. **plain**: as DataFusion's own runner does: per file, `TestContext::try_new_for_test_file`
//!    builds the session (with the file's extra tables and functions), a fresh scratch directory
//!    `test_files/scratch/<file stem>` is made, and every record goes to `SessionContext::sql`;
//! 2. **extension**: the same per-file session set-up, then the extension added to it and every
//!    record sent through the extension's SQL entry point (its parser front, which handles the
//!    extension's statements and hands every other statement to DataFusion).
//!
//! Both ways share one `sqllogictest::AsyncDB` ([`SltDb`]) that mirrors DataFusion's
//! `DataFusion` engine record for record (plan, execute, `convert_batches`, statement vs query
//! output, the check that a file leaves the configuration as it found it) and differ only in
//! which SQL entry point it calls. (DataFusion's engine itself cannot be built here: it takes
//! an `indicatif` progress bar, a crate this project does not depend on.) The runner is set up
//! as DataFusion's (label `Datafusion`, strict column types, `value_normalizer`,
//! `df_value_validator`) and, like DataFusion's, runs every record of a file and collects the
//! errors instead of stopping at the first.
//!
//! The files run from a temporary copy of the crate's layout (`test_files/scratch/`, `data/`),
//! so relative paths resolve as in DataFusion's repository; files that need data only that
//! repository has (`../core/tests/data`, `../../testing`, …) fail plain and are skipped. The
//! file set is DataFusion's default one: no `tpch/`, no sqlite suite, no `encrypted_parquet.slt`
//! (needs a feature of that crate), and `avro.slt` is not run (its `TestContext` says so).
//!
//! A file that passes plain but fails with the extension is a failure; the first differing
//! record is printed for each. Files that fail plain are listed as skipped. The last lines are
//!
//! ```text
//! upstream slt: N passed, M failed
//! upstream slt: K skipped (fail plain), S not run (need a feature this build lacks), in T s
//! ```
//!
//! and the exit code is non-zero when M > 0. Each way of each file has a time limit
//! ([`FILE_TIMEOUT`]); running out of it fails that way. Files run concurrently, as many as
//! the machine has cores (`--test-threads N` to change); files sharing a stem (so a scratch
//! directory) never overlap. `--verbose` prints a line (verdict, seconds plain + with the
//! extension) per file, not only per failure. Other arguments filter files by path substring,
//! with an optional `:LINE` as in DataFusion's runner:
//! `cargo test --test upstream_slt -- joins.slt`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::dataframe::DataFrame;
use datafusion::error::Result;
use datafusion::physical_plan::common::collect;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionContext;
use datafusion_bedrock::{SessionContextBedrock, execute_sql};
use datafusion_sqllogictest::{
    DFColumnType, DFOutput, DFSqlLogicTestError, Filter, TestContext, TestFile, convert_batches,
    convert_schema_to_types, df_value_validator, is_spark_path, read_dir_recursive,
    setup_scratch_dir, should_skip_file, should_skip_record, value_normalizer,
};
use futures::StreamExt;
use sqllogictest::{DBOutput, Record, parse_file, strict_column_validator};

/// How long one way of one file may take.
const FILE_TIMEOUT: Duration = Duration::from_mins(2);

// ------------------------------------------------------------------------------------------
// The extension: the only place that names its API.
// ------------------------------------------------------------------------------------------

/// A file's session with the extension added.
#[derive(Clone)]
struct Extension(SessionContext);

/// Adds the extension to a file's session, with the one call for an existing context.
fn extension_context(ctx: SessionContext) -> Extension {
    Extension(ctx.with_bedrock())
}

impl Extension {
    /// The session the extension runs DataFusion's statements in.
    fn session(&self) -> &SessionContext {
        &self.0
    }

    /// The extension's SQL entry point.
    async fn sql(&self, sql: &str) -> Result<DataFrame> {
        execute_sql(&self.0, sql).await
    }
}

// ------------------------------------------------------------------------------------------

/// The two ways a file runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Plain,
    Extension,
}

/// Where a way sends each record's SQL.
#[derive(Clone)]
enum Front {
    Plain(SessionContext),
    Extension(Extension),
}

impl Front {
    fn session(&self) -> &SessionContext {
        match self {
            Front::Plain(ctx) => ctx,
            Front::Extension(ext) => ext.session(),
        }
    }

    async fn sql(&self, sql: &str) -> Result<DataFrame> {
        match self {
            Front::Plain(ctx) => ctx.sql(sql).await,
            Front::Extension(ext) => ext.sql(sql).await,
        }
    }
}

/// One connection of a file, as `sqllogictest` sees it: DataFusion's `DataFusion` engine with
/// the SQL entry point made a parameter.
struct SltDb {
    front: Front,
    spark: bool,
    relative_path: PathBuf,
    /// The options at connect time, to check the file leaves them as it found them.
    default_config: HashMap<String, Option<String>>,
    config_change_errors: Arc<Mutex<Vec<String>>>,
    /// The SQL running now, to say where a file ran out of time.
    current_sql: Arc<Mutex<Option<String>>>,
}

fn options_of(ctx: &SessionContext) -> HashMap<String, Option<String>> {
    ctx.state()
        .config()
        .options()
        .entries()
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect()
}

impl SltDb {
    fn new(
        front: Front,
        relative_path: &Path,
        config_change_errors: Arc<Mutex<Vec<String>>>,
        current_sql: Arc<Mutex<Option<String>>>,
    ) -> Self {
        Self {
            default_config: options_of(front.session()),
            front,
            spark: is_spark_path(relative_path),
            relative_path: relative_path.to_path_buf(),
            config_change_errors,
            current_sql,
        }
    }

    async fn run_query(&self, sql: &str) -> std::result::Result<DFOutput, DFSqlLogicTestError> {
        let df = self.front.sql(sql).await?;
        let task_ctx = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await?;
        let schema = plan.schema();
        let stream = execute_stream(plan, task_ctx)?;
        let types = convert_schema_to_types(stream.schema().fields());
        let batches = collect(stream).await?;
        let rows = convert_batches(&schema, batches, self.spark)?;
        if rows.is_empty() && types.is_empty() {
            Ok(DBOutput::StatementComplete(0))
        } else {
            Ok(DBOutput::Rows { types, rows })
        }
    }

    /// What the file changed in the options and did not put back, if anything (as DataFusion's
    /// `validate_config_unchanged`).
    fn config_changes(&self) -> Option<String> {
        let now = options_of(self.front.session());
        let mut changes: Vec<String> = now
            .iter()
            .filter_map(|(key, value)| {
                let before = self.default_config.get(key)?;
                (before != value).then(|| {
                    format!(
                        "\n  {key}: {} -> {}",
                        before.as_deref().unwrap_or("NULL"),
                        value.as_deref().unwrap_or("NULL")
                    )
                })
            })
            .chain(
                self.default_config
                    .iter()
                    .filter(|(key, _)| !now.contains_key(*key))
                    .map(|(key, before)| {
                        format!("\n  {key}: {} -> NULL", before.as_deref().unwrap_or("NULL"))
                    }),
            )
            .collect();
        changes.sort();
        (!changes.is_empty()).then(|| {
            format!(
                "SLT file {} left modified configuration{}",
                self.relative_path.display(),
                changes.concat()
            )
        })
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for SltDb {
    type Error = DFSqlLogicTestError;
    type ColumnType = DFColumnType;

    async fn run(&mut self, sql: &str) -> std::result::Result<DFOutput, Self::Error> {
        *lock(&self.current_sql) = Some(sql.to_string());
        let result = self.run_query(sql).await;
        *lock(&self.current_sql) = None;
        result
    }

    /// The name DataFusion's engine gives itself: `skipif`/`onlyif` conditions see it.
    fn engine_name(&self) -> &'static str {
        "DataFusion"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }

    async fn shutdown(&mut self) {
        if let Some(message) = self.config_changes() {
            lock(&self.config_change_errors).push(message);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How one way of one file went.
#[derive(Debug)]
enum Outcome {
    /// DataFusion's runner does not run the file in this build (`TestContext` says so).
    NotRun,
    Passed,
    /// The errors, in file order (at least one).
    Failed(Vec<String>),
}

/// Runs one file one way, as DataFusion's runner does (`run_test_file`).
async fn run_file(
    file: &TestFile,
    filters: &[Filter],
    way: Way,
    current_sql: Arc<Mutex<Option<String>>>,
) -> Outcome {
    let relative_path = &file.relative_path;
    let Some(test_ctx) = TestContext::try_new_for_test_file(relative_path).await else {
        return Outcome::NotRun;
    };
    if let Err(e) = setup_scratch_dir(relative_path) {
        return Outcome::Failed(vec![format!("cannot set up the scratch directory: {e}")]);
    }
    let front = match way {
        Way::Plain => Front::Plain(test_ctx.session_ctx().clone()),
        Way::Extension => Front::Extension(extension_context(test_ctx.session_ctx().clone())),
    };
    let config_change_errors = Arc::new(Mutex::new(Vec::new()));
    let mut runner = sqllogictest::Runner::new(|| {
        let db = SltDb::new(
            front.clone(),
            relative_path,
            Arc::clone(&config_change_errors),
            Arc::clone(&current_sql),
        );
        async move { Ok::<_, DFSqlLogicTestError>(db) }
    });
    runner.add_label("Datafusion");
    runner.with_column_validator(strict_column_validator);
    runner.with_normalizer(value_normalizer);
    runner.with_validator(df_value_validator);

    let path = match file.path.canonicalize() {
        Ok(path) => path,
        Err(e) => return Outcome::Failed(vec![format!("cannot open the file: {e}")]),
    };
    let records = match parse_file::<DFColumnType>(&path) {
        Ok(records) => records,
        Err(e) => return Outcome::Failed(vec![format!("cannot parse the file: {e}")]),
    };
    let mut errors = Vec::new();
    for record in records {
        if let Record::Halt { .. } = record {
            break;
        }
        if should_skip_record::<SltDb>(&record, filters) {
            continue;
        }
        if let Err(e) = runner.run_async(record).await {
            errors.push(e.to_string());
        }
    }
    if !errors.is_empty() {
        return Outcome::Failed(errors);
    }
    runner.shutdown_async().await;
    let changes = std::mem::take(&mut *lock(&config_change_errors));
    if changes.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed(changes)
    }
}

/// Runs one way of one file in its own task, within [`FILE_TIMEOUT`]; a panic or running out
/// of time fails it.
async fn run_way(file: Arc<TestFile>, filters: Arc<Vec<Filter>>, way: Way) -> (Outcome, Duration) {
    let start = Instant::now();
    let current_sql = Arc::new(Mutex::new(None));
    let task = {
        let current_sql = Arc::clone(&current_sql);
        tokio::spawn(async move {
            tokio::time::timeout(FILE_TIMEOUT, run_file(&file, &filters, way, current_sql)).await
        })
    };
    let outcome = match task.await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_elapsed)) => {
            let sql = lock(&current_sql).take().unwrap_or_default();
            Outcome::Failed(vec![format!(
                "timed out after {} s, running:\n{sql}",
                FILE_TIMEOUT.as_secs()
            )])
        }
        Err(e) => Outcome::Failed(vec![format!("panicked: {e}")]),
    };
    (outcome, start.elapsed())
}

/// The verdict on one file.
struct FileResult {
    relative_path: PathBuf,
    plain: Outcome,
    /// `None` when the extension way did not run (the plain one failed or did not run).
    extension: Option<Outcome>,
    plain_time: Duration,
    extension_time: Duration,
}

impl FileResult {
    fn elapsed(&self) -> Duration {
        self.plain_time + self.extension_time
    }

    /// `plain + extension` seconds.
    fn times(&self) -> String {
        format!(
            "{:>5.1} s + {:>5.1} s",
            self.plain_time.as_secs_f64(),
            self.extension_time.as_secs_f64()
        )
    }
}

/// Runs a file plain, then, if that passes, with the extension.
async fn run_both(
    file: TestFile,
    filters: Arc<Vec<Filter>>,
    scratch_lock: Arc<tokio::sync::Mutex<()>>,
) -> FileResult {
    let _scratch = scratch_lock.lock().await;
    let file = Arc::new(file);
    let (plain, plain_time) = run_way(Arc::clone(&file), Arc::clone(&filters), Way::Plain).await;
    let (extension, extension_time) = if matches!(plain, Outcome::Passed) {
        let (outcome, time) = run_way(Arc::clone(&file), filters, Way::Extension).await;
        (Some(outcome), time)
    } else {
        (None, Duration::ZERO)
    };
    FileResult {
        relative_path: file.relative_path.clone(),
        plain,
        extension,
        plain_time,
        extension_time,
    }
}

/// The directory of the `datafusion-sqllogictest` crate this project builds against, from
/// `cargo metadata` (offline, and for this platform only: the packages of other platforms are
/// not downloaded).
fn upstream_crate_dir() -> std::result::Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", "host-tuple", "--manifest-path"])
        .arg(&manifest)
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cannot read cargo metadata: {e}"))?;
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "datafusion-sqllogictest")
        .and_then(|p| p["manifest_path"].as_str())
        .and_then(|m| Path::new(m).parent())
        .map(Path::to_path_buf)
        .ok_or_else(|| "datafusion-sqllogictest is not among the dependencies".to_string())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// DataFusion's default file set: every `.slt` under `test_files/` but `tpch/` and
/// `encrypted_parquet.slt`, in its runner's order (longest-running files first).
fn test_files(upstream: &Path, filters: &[Filter]) -> std::result::Result<Vec<TestFile>, String> {
    let root = upstream.join("test_files");
    let paths = read_dir_recursive(&root).map_err(|e| e.to_string())?;
    let mut files: Vec<TestFile> = paths
        .into_iter()
        .filter_map(|path| {
            let relative_path = path.strip_prefix(&root).ok()?.to_path_buf();
            Some(TestFile {
                path,
                relative_path,
            })
        })
        .filter(TestFile::is_slt_file)
        .filter(|f| !should_skip_file(&f.path, filters))
        .filter(|f| !f.relative_path_starts_with("tpch"))
        .filter(|f| !f.relative_path_starts_with("encrypted_parquet.slt"))
        .collect();
    files.sort_unstable();
    Ok(files)
}

/// Test-harness style arguments: `--test-threads N`, `--list` (prints nothing), `--verbose`
/// (a line per file, not only per failure), filters.
struct Args {
    list: bool,
    verbose: bool,
    threads: usize,
    filters: Vec<Filter>,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut args = Args {
        list: false,
        verbose: false,
        threads: std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
        filters: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let threads = if arg == "--test-threads" {
            it.next()
        } else {
            arg.strip_prefix("--test-threads=").map(str::to_string)
        };
        if let Some(n) = threads {
            args.threads = n
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("--test-threads wants a positive number, not {n:?}"))?;
        } else if arg == "--list" {
            args.list = true;
        } else if arg == "--verbose" || arg == "-v" {
            args.verbose = true;
        } else if !arg.starts_with('-') {
            args.filters.push(Filter::from_str(&arg)?);
        }
    }
    Ok(args)
}

/// An error in one line: its first line and where the record is (`…/file.slt:LINE`).
fn one_line(error: &str) -> String {
    let first = error
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let line = error
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("at "))
        .and_then(|at| at.rsplit_once(':'))
        .map(|(_, line)| line);
    match line {
        Some(line) => format!("line {line}: {}", first.trim_end_matches(':')),
        None => first.to_string(),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("upstream slt: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.list {
        return ExitCode::SUCCESS;
    }
    let upstream = match upstream_crate_dir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("upstream slt: {e}");
            return ExitCode::FAILURE;
        }
    };
    let files = match test_files(&upstream, &args.filters) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("upstream slt: cannot list {}: {e}", upstream.display());
            return ExitCode::FAILURE;
        }
    };

    // The files' relative paths (`data/…`, `test_files/scratch/…`, `../core/…`) resolve as in
    // DataFusion's repository, where the crate is `datafusion/sqllogictest`.
    let work = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("upstream slt: cannot make a work directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let crate_dir = work.path().join("datafusion").join("sqllogictest");
    let prepared = copy_dir(&upstream.join("data"), &crate_dir.join("data"))
        .and_then(|()| std::fs::create_dir_all(crate_dir.join("test_files").join("scratch")))
        .and_then(|()| std::env::set_current_dir(&crate_dir));
    if let Err(e) = prepared {
        eprintln!("upstream slt: cannot prepare {}: {e}", crate_dir.display());
        return ExitCode::FAILURE;
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("upstream slt: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let failed = runtime.block_on(run_all(files, args));
    drop(runtime);
    drop(work);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs every file both ways and reports; true when a file passes plain and fails with the
/// extension.
async fn run_all(files: Vec<TestFile>, args: Args) -> bool {
    let start = Instant::now();
    let total = files.len();
    println!(
        "upstream slt: {total} files, {} at a time, {} s limit per file and way",
        args.threads,
        FILE_TIMEOUT.as_secs()
    );
    let filters = Arc::new(args.filters);
    let mut scratch_locks: HashMap<OsString, Arc<tokio::sync::Mutex<()>>> = HashMap::new();
    let jobs: Vec<_> = files
        .into_iter()
        .map(|file| {
            let stem = file.path.file_stem().unwrap_or_default().to_os_string();
            let scratch_lock = Arc::clone(scratch_locks.entry(stem).or_default());
            run_both(file, Arc::clone(&filters), scratch_lock)
        })
        .collect();
    let mut results: Vec<FileResult> = futures::stream::iter(jobs)
        .buffer_unordered(args.threads)
        .enumerate()
        .inspect(|(done, r)| {
            let verdict = match (&r.plain, &r.extension) {
                (Outcome::NotRun, _) => "not run",
                (Outcome::Failed(_), _) => "skipped (fails plain)",
                (_, Some(Outcome::Failed(_))) => "FAILED with the extension",
                _ => "ok",
            };
            if args.verbose || verdict.starts_with("FAILED") {
                println!("{verdict:<25} {}  {}", r.times(), r.relative_path.display());
            }
            if (done + 1) % 50 == 0 || done + 1 == total {
                println!(
                    "{}/{total} files done in {:.0} s",
                    done + 1,
                    start.elapsed().as_secs_f64()
                );
            }
        })
        .map(|(_, r)| r)
        .collect()
        .await;
    results.sort_by(|a, b| a.relative_path.cmp(&b.relative_path));

    let mut passed = 0;
    let mut not_run = 0;
    let mut skipped = Vec::new();
    let mut failed = Vec::new();
    for r in &results {
        match (&r.plain, &r.extension) {
            (Outcome::NotRun, _) => not_run += 1,
            (Outcome::Failed(errors), _) => skipped.push((r, errors)),
            (_, Some(Outcome::Failed(errors))) => failed.push((r, errors)),
            _ => passed += 1,
        }
    }

    if !skipped.is_empty() {
        println!("\nskipped, failing plain ({}):", skipped.len());
        for (r, errors) in &skipped {
            println!(
                "  {} ({} errors), the first at {}",
                r.relative_path.display(),
                errors.len(),
                errors.first().map(|e| one_line(e)).unwrap_or_default()
            );
        }
    }
    for (r, errors) in &failed {
        println!(
            "\nFAILED with the extension: {} ({} errors, passes plain); the first:\n{}",
            r.relative_path.display(),
            errors.len(),
            errors.first().map_or("", String::as_str).trim_end()
        );
    }
    let mut slowest: Vec<&FileResult> = results.iter().collect();
    slowest.sort_by_key(|r| std::cmp::Reverse(r.elapsed()));
    println!("\nslowest files (plain + extension):");
    for r in slowest.iter().take(10) {
        println!("  {}  {}", r.times(), r.relative_path.display());
    }
    let plain_total: Duration = results.iter().map(|r| r.plain_time).sum();
    let extension_total: Duration = results.iter().map(|r| r.extension_time).sum();
    println!(
        "time summed over files: {:.0} s plain, {:.0} s with the extension",
        plain_total.as_secs_f64(),
        extension_total.as_secs_f64()
    );
    println!();
    println!("upstream slt: {passed} passed, {} failed", failed.len());
    println!(
        "upstream slt: {} skipped (fail plain), {not_run} not run (need a feature this build lacks), in {:.0} s",
        skipped.len(),
        start.elapsed().as_secs_f64()
    );
    !failed.is_empty()
}
