//! Bedrock batch inference end to end: the real SDK's control-plane client submits jobs to the
//! emulator, `object_store`'s S3 client writes their JSONL to the emulator's S3 endpoint and
//! reads their (shuffled) output back, and the rows get their own answers, in order.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::Array;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::SessionContext;
use datafusion_bedrock::BedrockContext;
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig, StatsSnapshot};

use crate::support::pretty;

const TITAN: &str = "amazon.titan-text-premier-v1:0";
const ROLE: &str = "arn:aws:iam::123456789012:role/BedrockBatch";

/// An emulator with an S3 root, and a session whose engines default to both of its endpoints.
struct Setup {
    emulator: Emulator,
    session: SessionContext,
    _root: tempfile::TempDir,
}

async fn setup(config: EmulatorConfig) -> Setup {
    let root = tempfile::tempdir().expect("temp dir");
    let emulator = Emulator::start(EmulatorConfig {
        s3_root: Some(root.path().to_path_buf()),
        ..config
    })
    .await
    .expect("emulator");
    let ctx = BedrockContext::new()
        .with_default_endpoint(emulator.url())
        .with_default_s3_endpoint(emulator.s3_url().expect("an S3 endpoint"));
    Setup {
        session: ctx.session().clone(),
        emulator,
        _root: root,
    }
}

impl Setup {
    /// Runs statements one after another, each to completion.
    async fn run(&self, statements: &[&str]) {
        for sql in statements {
            pretty(&self.session, sql).await;
        }
    }
}

fn engine_sql(extra: &str) -> String {
    format!(
        "CREATE ML_ENGINE e FROM bedrock USING batch_role_arn = '{ROLE}', batch_s3_uri = 's3://bedrock-batch/jobs/'{extra}"
    )
}

fn answer(prompt: &str) -> String {
    format!("Emulated {TITAN} (messages: 1, blocks: 1): {prompt}")
}

fn converse_calls(stats: &StatsSnapshot) -> u64 {
    stats.count(None, Some("Converse"), None)
}

/// Every row of a query, each cell as Arrow displays it (`None` for NULL).
async fn cells(session: &SessionContext, sql: &str) -> Vec<Vec<Option<String>>> {
    let batches = datafusion_bedrock::execute_sql(session, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| {
                        c.is_valid(row)
                            .then(|| array_value_to_string(c, row).expect("displayable"))
                    })
                    .collect(),
            );
        }
    }
    rows
}

/// Every row of a query as (id, text) pairs.
async fn id_texts(session: &SessionContext, sql: &str) -> Vec<(i64, Option<String>)> {
    cells(session, sql)
        .await
        .into_iter()
        .map(|row| {
            let id = row[0]
                .as_deref()
                .and_then(|v| v.parse().ok())
                .expect("an id");
            (id, row[1].clone())
        })
        .collect()
}

/// The error of a statement or query.
async fn error_of(session: &SessionContext, sql: &str) -> String {
    match datafusion_bedrock::execute_sql(session, sql).await {
        Ok(df) => df.collect().await.expect_err(sql).to_string(),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_thousand_rows_with_600_distinct_prompts_are_one_job_of_600_records() {
    let s = setup(EmulatorConfig::default()).await;
    s.run(&[
        "CREATE TABLE questions AS SELECT v AS id, 'Question ' || (v % 600) AS question FROM generate_series(0, 999) AS t(v)",
        &engine_sql(""),
        "CREATE MODEL m PREDICT answer USING engine = 'e', question_column = 'question', execution = 'batch'",
    ])
    .await;
    let query = "SELECT d.id, m.answer FROM questions AS d JOIN m";
    let expected: Vec<(i64, Option<String>)> = (0..1000)
        .map(|id| (id, Some(answer(&format!("Question {}", id % 600)))))
        .collect();
    assert_eq!(id_texts(&s.session, query).await, expected);
    let stats = s.emulator.stats().snapshot();
    assert_eq!(converse_calls(&stats), 0);
    assert_eq!(stats.batch_jobs_submitted(), 1);
    assert_eq!(stats.batch_jobs[0].records, 600);
    assert_eq!(stats.batch_jobs[0].model_id, TITAN);

    // A re-run is answered by the cache: no job, no request.
    assert_eq!(id_texts(&s.session, query).await, expected);
    let stats = s.emulator.stats().snapshot();
    assert_eq!(
        (converse_calls(&stats), stats.batch_jobs_submitted()),
        (0, 1)
    );

    // Batch tokens are counted apart and priced at half the on-demand price.
    assert_eq!(
        pretty(
            &s.session,
            "SELECT model, requests, cache_hits, batch_jobs, batch_records, batch_errors, batch_input_tokens, batch_output_tokens, round(batch_estimated_usd, 9) AS batch_usd, round((batch_input_tokens * 0.0005 + batch_output_tokens * 0.0015) / 1000 / 2, 9) AS half_list_price FROM bedrock_usage()"
        )
        .await,
        [
            "+--------------------------------+----------+------------+------------+---------------+--------------+--------------------+---------------------+-----------+-----------------+",
            "| model                          | requests | cache_hits | batch_jobs | batch_records | batch_errors | batch_input_tokens | batch_output_tokens | batch_usd | half_list_price |",
            "+--------------------------------+----------+------------+------------+---------------+--------------+--------------------+---------------------+-----------+-----------------+",
            "| amazon.titan-text-premier-v1:0 | 0        | 600        | 1          | 600           | 0            | 1800               | 11990               | 0.0094425 | 0.0094425       |",
            "+--------------------------------+----------+------------+------------+---------------+--------------+--------------------+---------------------+-----------+-----------------+",
        ]
        .join("\n")
    );
    s.emulator.shutdown().await;
}

#[tokio::test]
async fn auto_runs_on_demand_below_the_threshold_and_batch_from_it() {
    let s = setup(EmulatorConfig::default()).await;
    s.run(&[
        "CREATE TABLE t AS SELECT v AS id, 'Prompt ' || v AS p FROM generate_series(1, 150) AS t(v)",
        &engine_sql(""),
        "SET bedrock.execution = 'auto'",
    ])
    .await;
    let query = "SELECT id, ai_complete('amazon.titan-text-premier-v1:0', p) FROM t ORDER BY id";
    let expected: Vec<(i64, Option<String>)> = (1..=150)
        .map(|id| (id, Some(answer(&format!("Prompt {id}")))))
        .collect();
    // 150 distinct requests, below the default threshold of 1,000: on demand.
    assert_eq!(id_texts(&s.session, query).await, expected);
    let stats = s.emulator.stats().snapshot();
    assert_eq!(
        (converse_calls(&stats), stats.batch_jobs_submitted()),
        (150, 0)
    );

    // From 100 distinct requests on, new prompts go to a job.
    pretty(&s.session, "SET bedrock.batch_min_rows = 100").await;
    let query = "SELECT id, ai_complete('amazon.titan-text-premier-v1:0', 'Again: ' || p) FROM t ORDER BY id";
    let expected: Vec<(i64, Option<String>)> = (1..=150)
        .map(|id| (id, Some(answer(&format!("Again: Prompt {id}")))))
        .collect();
    assert_eq!(id_texts(&s.session, query).await, expected);
    let stats = s.emulator.stats().snapshot();
    assert_eq!(
        (converse_calls(&stats), stats.batch_jobs_submitted()),
        (150, 1)
    );
    assert_eq!(stats.batch_jobs[0].records, 150);
    s.emulator.shutdown().await;
}

#[tokio::test]
async fn failed_records_follow_on_error() {
    let s = setup(EmulatorConfig::default()).await;
    s.run(&[
        "CREATE TABLE t AS SELECT v AS id, CASE WHEN v % 50 = 7 THEN 'Break [[emulate:ValidationException]] ' || v ELSE 'Fine ' || v END AS p FROM generate_series(1, 200) AS t(v)",
        &engine_sql(""),
        "CREATE MODEL lenient PREDICT answer USING engine = 'e', prompt_template = '{{p}}', execution = 'batch', on_error = 'null', provenance = true",
        "CREATE MODEL strict PREDICT answer USING engine = 'e', prompt_template = 'Strictly: {{p}}', execution = 'batch'",
    ])
    .await;
    // Each row: its answer, or NULL and the record's error; answers name their job.
    let expected: Vec<Vec<Option<String>>> = (1..=200)
        .map(|id| {
            let failed = id % 50 == 7;
            vec![
                Some(id.to_string()),
                (!failed).then(|| answer(&format!("Fine {id}"))),
                failed.then(|| {
                    "BatchRecordError: The request failed validation (error code 400)".to_string()
                }),
                Some((!failed).to_string()),
            ]
        })
        .collect();
    assert_eq!(
        cells(
            &s.session,
            "SELECT d.id, m.answer, m.answer_meta['error'], m.answer_meta['batch_job'] IS NOT NULL FROM t AS d JOIN lenient AS m"
        )
        .await,
        expected
    );
    let stats = s.emulator.stats().snapshot();
    assert_eq!(converse_calls(&stats), 0);
    assert_eq!(stats.batch_jobs_submitted(), 1);
    assert_eq!(stats.batch_jobs[0].errors, 4);
    assert_eq!(stats.batch_jobs[0].status, "PartiallyCompleted");

    // 'fail' stops the query at the first failed row, naming it and the record's error.
    let error = error_of(
        &s.session,
        "SELECT d.id, m.answer FROM t AS d JOIN strict AS m",
    )
    .await;
    assert_eq!(
        error,
        "Execution error: Model 'strict' (amazon.titan-text-premier-v1:0) failed for the row whose prompt is \"Strictly: Break [[emulate:ValidationException]] 7\": BatchRecordError: The request failed validation (error code 400)"
    );
    assert_eq!(s.emulator.stats().snapshot().batch_jobs_submitted(), 2);
    s.emulator.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_query_stops_its_job_and_a_rerun_submits_the_next_one() {
    // 200 records at 40 a second: the job runs for about five seconds.
    let s = setup(EmulatorConfig {
        batch_records_per_second: Some(40),
        ..EmulatorConfig::default()
    })
    .await;
    s.run(&[
        "CREATE TABLE t AS SELECT v AS id, 'Slow ' || v AS p FROM generate_series(1, 200) AS t(v)",
        &engine_sql(""),
    ])
    .await;
    let query = "SELECT id, ai_complete('amazon.titan-text-premier-v1:0', p, '{\"execution\": \"batch\"}') FROM t ORDER BY id";
    let session = s.session.clone();
    let running = tokio::spawn(async move { id_texts(&session, query).await });
    let stats = s.emulator.shared_stats();
    let in_progress = wait_for(&stats, |s| {
        s.batch_jobs
            .first()
            .is_some_and(|j| j.status == "InProgress")
    })
    .await;
    assert!(
        in_progress,
        "the job never ran: {:?}",
        stats.snapshot().batch_jobs
    );
    running.abort();
    let stopped = wait_for(&stats, |s| {
        s.batch_jobs.first().is_some_and(|j| j.status == "Stopped")
    })
    .await;
    assert!(
        stopped,
        "the job was not stopped: {:?}",
        stats.snapshot().batch_jobs
    );
    assert_eq!(
        stats
            .snapshot()
            .count(None, Some("StopModelInvocationJob"), Some(200)),
        1
    );

    // The stopped job answered nothing: the re-run submits the next generation and waits for
    // it.
    s.emulator.set_batch_records_per_second(None);
    let expected: Vec<(i64, Option<String>)> = (1..=200)
        .map(|id| (id, Some(answer(&format!("Slow {id}")))))
        .collect();
    assert_eq!(id_texts(&s.session, query).await, expected);
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.batch_jobs_submitted(), 2);
    assert_eq!(converse_calls(&snapshot), 0);
    s.emulator.shutdown().await;
}

/// Polls the emulator's counters (every 20 ms, for at most 20 s) until `done` holds.
async fn wait_for(
    stats: &Arc<datafusion_bedrock::emulator::EmulatorStats>,
    done: impl Fn(&StatsSnapshot) -> bool,
) -> bool {
    for _ in 0..1000 {
        if done(&stats.snapshot()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_hundred_and_twenty_thousand_prompts_are_split_into_jobs_within_the_limits() {
    let s = setup(EmulatorConfig::default()).await;
    pretty(&s.session, &engine_sql("")).await;
    let rows = id_texts(
        &s.session,
        "SELECT v, ai_complete('amazon.titan-text-premier-v1:0', 'N' || v, '{\"execution\": \"batch\"}') FROM generate_series(1, 120000) AS t(v) ORDER BY v",
    )
    .await;
    let expected: Vec<(i64, Option<String>)> = (1..=120_000)
        .map(|v| (v, Some(answer(&format!("N{v}")))))
        .collect();
    if let Some(wrong) = rows.iter().zip(&expected).position(|(a, b)| a != b) {
        panic!(
            "row {wrong} is {:?}, not {:?} ({} rows)",
            rows[wrong],
            expected[wrong],
            rows.len()
        );
    }
    assert_eq!(rows.len(), expected.len());
    let stats = s.emulator.stats().snapshot();
    let records: Vec<u64> = stats.batch_jobs.iter().map(|j| j.records).collect();
    assert_eq!(records, [40_000, 40_000, 40_000]);
    assert_eq!(converse_calls(&stats), 0);
    s.emulator.shutdown().await;
}

#[tokio::test]
async fn batch_settings_are_checked_with_errors_that_say_what_to_write() {
    let s = setup(EmulatorConfig::default()).await;
    let error = |sql: &'static str| error_of(&s.session, sql);
    assert_eq!(
        error("CREATE ML_ENGINE bad FROM bedrock USING batch_role_arn = 'BedrockBatch'").await,
        "Error during planning: Parameter 'batch_role_arn' = 'BedrockBatch' is not an IAM role ARN: write batch_role_arn = 'arn:aws:iam::123456789012:role/BedrockBatch' (a role Bedrock may assume, allowed to read and write batch_s3_uri)"
    );
    assert_eq!(
        error("CREATE ML_ENGINE bad FROM bedrock USING batch_s3_uri = 'bucket/prefix'").await,
        "Error during planning: Parameter 'batch_s3_uri' = 'bucket/prefix' is not an S3 prefix: write batch_s3_uri = 's3://bucket/prefix/'"
    );
    assert_eq!(
        error("CREATE ML_ENGINE bad FROM bedrock USING batch_timeout_hours = 12").await,
        "Error during planning: Parameter 'batch_timeout_hours' = 12 is out of range: it must be between 24 and 168"
    );
    pretty(&s.session, "CREATE ML_ENGINE plain FROM bedrock").await;
    assert_eq!(
        error("CREATE MODEL m PREDICT a USING engine = 'plain', question_column = 'q', execution = 'batch'").await,
        "Error during planning: Model 'm' asks for execution = 'batch', but engine 'plain' has no batch_role_arn and batch_s3_uri: batch inference needs an IAM role Bedrock can assume and an S3 prefix for the jobs' files. Create the engine with USING batch_role_arn = 'arn:aws:iam::123456789012:role/BedrockBatch', batch_s3_uri = 's3://bucket/prefix/' (see docs/batch.md), or run it with execution = 'on_demand'"
    );
    assert_eq!(
        error("SELECT ai_complete('amazon.titan-text-premier-v1:0', 'x', '{\"execution\": \"batch\"}')").await,
        "Error during planning: ai_complete asks for execution = 'batch', but engine 'plain' has no batch_role_arn and batch_s3_uri: batch inference needs an IAM role Bedrock can assume and an S3 prefix for the jobs' files. Create the engine with USING batch_role_arn = 'arn:aws:iam::123456789012:role/BedrockBatch', batch_s3_uri = 's3://bucket/prefix/' (see docs/batch.md), or run it with execution = 'on_demand'"
    );
    assert_eq!(
        error("CREATE MODEL m PREDICT a USING engine = 'plain', question_column = 'q', execution = 'batch', mode = 'conversational'").await,
        "Error during planning: Parameter 'execution' = 'batch' runs each row's request on its own, but mode 'conversational' makes each request depend on the rows before it: remove execution, or use the default mode"
    );
    assert_eq!(
        error("SET bedrock.batch_min_rows = 99").await,
        "Invalid or Unsupported Configuration: bedrock.batch_min_rows must be a whole number of at least 100 (Bedrock takes no batch job of fewer records), not '99': e.g. SET bedrock.batch_min_rows = 1000"
    );
    // An API key is Bedrock's alone: the jobs' files could not go to S3 with it.
    assert_eq!(
        error("CREATE ML_ENGINE keyed FROM bedrock USING api_key = 'k', batch_role_arn = 'arn:aws:iam::123456789012:role/BedrockBatch', batch_s3_uri = 's3://bedrock-batch/jobs/'").await,
        "Error during planning: Parameters 'batch_role_arn' and 'batch_s3_uri' need AWS credentials: batch inference writes its files to S3, which does not take a Bedrock api_key. Give the engine keys (aws_access_key_id and aws_secret_access_key) or profile_name instead of api_key, or leave the batch parameters out"
    );
    assert_eq!(s.emulator.stats().snapshot().batch_jobs_submitted(), 0);
    s.emulator.shutdown().await;
}

/// A shell killed while it waits for its job leaves the job running; the next run of the same
/// query, with the engine's `cache_dir`, re-attaches to that job instead of paying for another.
#[cfg(feature = "cli")]
#[tokio::test]
async fn a_rerun_after_a_kill_reattaches_to_the_running_job() {
    // 200 records at 20 a second: the job runs for about ten seconds.
    let s = setup(EmulatorConfig {
        batch_records_per_second: Some(20),
        ..EmulatorConfig::default()
    })
    .await;
    let home = tempfile::tempdir().expect("home");
    let cache = home.path().join("cache");
    let engine = format!(
        "CREATE ML_ENGINE e FROM bedrock USING endpoint_url = '{}', batch_s3_endpoint_url = '{}', batch_role_arn = '{ROLE}', batch_s3_uri = 's3://bedrock-batch/jobs/', cache_dir = '{}'",
        s.emulator.url(),
        s.emulator.s3_url().expect("S3"),
        cache.display()
    );
    let query = "SELECT count(*) AS answered FROM (SELECT ai_complete('amazon.titan-text-premier-v1:0', 'Kill ' || v, '{\"execution\": \"batch\"}') AS a FROM generate_series(1, 200) AS t(v)) WHERE a LIKE 'Emulated %'";
    let mut first = crate::cli::command(home.path(), &["-q", "-c", &engine, "-c", query])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the shell starts");
    let stats = s.emulator.shared_stats();
    let running = wait_for(&stats, |s| {
        s.batch_jobs
            .first()
            .is_some_and(|j| j.status == "InProgress")
    })
    .await;
    assert!(running, "no job ran: {:?}", stats.snapshot().batch_jobs);
    first.kill().await.expect("killed");
    // Killed, the shell could not stop its job: it runs on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stats.snapshot().batch_jobs[0].status, "InProgress");

    s.emulator.set_batch_records_per_second(None);
    let second = crate::cli::command(home.path(), &["-q", "--format", "csv", "-c", query])
        .output()
        .await
        .expect("the shell runs");
    assert_eq!(
        (
            String::from_utf8_lossy(&second.stdout).as_ref(),
            String::from_utf8_lossy(&second.stderr).as_ref()
        ),
        ("answered\n200\n", "")
    );
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.batch_jobs_submitted(), 1);
    assert_eq!(snapshot.batch_jobs[0].status, "Completed");
    assert_eq!(converse_calls(&snapshot), 0);
    s.emulator.shutdown().await;
}
