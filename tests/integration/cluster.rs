//! The extension on a Ballista cluster in this process: one scheduler, two executors on
//! loopback ports, each executor with its own engines. The same SQL gives the same rows as on
//! one machine; every row is answered once; both executors call the model; a conversation
//! keeps the data's order; the budget holds across tasks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::execution::SessionStateBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_bedrock::distributed::{LocalCluster, cluster_session};
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig};
use datafusion_bedrock::{BedrockExtension, SessionStateBuilderBedrock, execute_sql};

use crate::support::{converse_calls, pretty};

const TITAN: &str = "amazon.titan-text-premier-v1:0";

/// The seed document's engine and model, and a Parquet table of questions.
fn setup(dir: &Path) -> Vec<String> {
    vec![
        "CREATE ML_ENGINE bedrock_engine FROM bedrock USING aws_access_key_id = 'AQAXEQK89OX07YS34OP', aws_secret_access_key = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', aws_session_token = 'FwoGZXIvYXdzEJr...', region_name = 'us-east-1'".to_string(),
        "CREATE MODEL bedrock_default_model PREDICT answer USING engine = 'bedrock_engine', prompt_template = 'Answer the users input in a helpful way: {{question}}'".to_string(),
        format!(
            "CREATE EXTERNAL TABLE questions STORED AS PARQUET LOCATION '{}/'",
            dir.display()
        ),
    ]
}

/// `files` Parquet files of `rows` rows each: `id` and a distinct `question`.
fn parquet_dataset(name: &str, files: usize, rows: usize) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("dfb-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("question", DataType::Utf8, false),
    ]));
    for file in 0..files {
        let ids: Vec<i64> = (0..rows)
            .map(|r| i64::try_from(file * rows + r).expect("id"))
            .collect();
        let questions: Vec<String> = ids.iter().map(|id| format!("question {id}")).collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(questions)),
            ],
        )
        .expect("batch");
        let out = std::fs::File::create(dir.join(format!("part-{file}.parquet"))).expect("file");
        let mut writer = ArrowWriter::try_new(out, Arc::clone(&schema), None).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
    }
    dir
}

/// A session with the extension, its engines pointed at the emulator.
fn state(emulator: &Emulator, partitions: usize) -> datafusion::execution::SessionState {
    let ext = Arc::new(BedrockExtension::new());
    ext.set_default_endpoint(Some(emulator.url().to_string()));
    SessionStateBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(partitions))
        .with_default_features()
        .with_bedrock_extension(ext)
        .build()
}

/// A cluster of `executors` executors (2 task slots each) and a client session of it whose
/// engines point at `emulator` and whose tables have `partitions` partitions.
async fn cluster_of(
    emulator: &Emulator,
    executors: usize,
    partitions: usize,
) -> (LocalCluster, SessionContext) {
    let cluster = LocalCluster::start(executors, 2).await.expect("cluster");
    let remote = cluster_session(cluster.address(), state(emulator, partitions))
        .await
        .expect("cluster session");
    (cluster, remote)
}

async fn run_all(ctx: &SessionContext, statements: &[String]) {
    for sql in statements {
        execute_sql(ctx, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// The rows of a query of `(id, answer)`, by id.
async fn answers(ctx: &SessionContext, sql: &str) -> BTreeMap<i64, Option<String>> {
    let batches = execute_sql(ctx, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = BTreeMap::new();
    for batch in batches {
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("id column");
        let answers = datafusion::arrow::compute::cast(batch.column(1), &DataType::Utf8)
            .expect("answer as text");
        let answers = answers
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("answer column");
        for row in 0..batch.num_rows() {
            let answer = (!answers.is_null(row)).then(|| answers.value(row).to_string());
            assert!(
                rows.insert(ids.value(row), answer).is_none(),
                "{sql}: id {} came twice",
                ids.value(row)
            );
        }
    }
    rows
}

const JOIN: &str = "SELECT d.id, m.answer FROM questions AS d JOIN bedrock_default_model AS m";
const AI_COMPLETE: &str =
    "SELECT id, ai_complete('bedrock_default_model', question) AS answer FROM questions";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_executors_answer_the_seed_join_and_ai_complete_as_one_machine_does() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let (files, rows_per_file) = (8, 2_500);
    let rows = files * rows_per_file;
    let dir = parquet_dataset("cluster", files, rows_per_file);
    let statements = setup(&dir);

    let local = SessionContext::new_with_state(state(&emulator, 4));
    run_all(&local, &statements).await;
    let local_join = answers(&local, JOIN).await;
    let local_complete = answers(&local, AI_COMPLETE).await;
    assert_eq!(local_join.len(), rows);
    assert_eq!(local_complete.len(), rows);
    assert_eq!(
        local_join.get(&7).cloned().flatten().as_deref(),
        Some(
            "Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): Answer the users input in a helpful way: question 7"
        )
    );
    assert_eq!(
        local_complete.get(&7).cloned().flatten().as_deref(),
        Some("Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): question 7")
    );

    let (cluster, remote) = cluster_of(&emulator, 2, 8).await;
    run_all(&remote, &statements).await;
    let before = converse_calls(&emulator, TITAN);
    let remote_join = answers(&remote, JOIN).await;
    let after_join = converse_calls(&emulator, TITAN);
    let remote_complete = answers(&remote, AI_COMPLETE).await;
    let after_complete = converse_calls(&emulator, TITAN);

    assert_eq!(remote_join, local_join);
    assert_eq!(remote_complete, local_complete);
    // Every row's prompt is distinct: each was sent once, by one executor.
    let expected = u64::try_from(rows).expect("rows");
    assert_eq!(after_join - before, expected);
    assert_eq!(after_complete - after_join, expected);
    let per_executor = cluster.executor_requests();
    assert_eq!(per_executor.len(), 2);
    assert!(
        per_executor.iter().all(|requests| *requests > 0),
        "both executors call the model: {per_executor:?}"
    );
    assert_eq!(per_executor.iter().sum::<u64>(), 2 * expected);
    std::fs::remove_dir_all(&dir).ok();
}

/// Three CSV files of two rows each.
fn three_csv_files() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("dfb-cluster-talk-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for (file, rows) in [
        ("a.csv", "1,q1\n2,q2"),
        ("b.csv", "3,q3\n4,q4"),
        ("c.csv", "5,q5\n6,q6"),
    ] {
        std::fs::write(dir.join(file), format!("id,q\n{rows}\n")).expect("csv");
    }
    dir
}

/// The rows of an EXPLAIN: each plan by its type.
async fn explained(ctx: &SessionContext, sql: &str) -> BTreeMap<String, String> {
    let batches = execute_sql(ctx, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut plans = BTreeMap::new();
    for batch in batches {
        let column = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("text column")
                .clone()
        };
        let (types, texts) = (column(0), column(1));
        for row in 0..batch.num_rows() {
            plans.insert(types.value(row).to_string(), texts.value(row).to_string());
        }
    }
    plans
}

/// The error of a statement that must fail.
async fn error(ctx: &SessionContext, sql: &str) -> String {
    match execute_sql(ctx, sql).await {
        Ok(df) => match df.collect().await {
            Ok(_) => panic!("{sql}: succeeded"),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    }
}

fn talk_statements(dir: &Path) -> Vec<String> {
    let mut statements = setup(dir);
    statements.pop();
    statements.extend([
        format!(
            "CREATE EXTERNAL TABLE talk STORED AS CSV LOCATION '{}/' OPTIONS ('format.has_header' 'true')",
            dir.display()
        ),
        "CREATE MODEL chat PREDICT answer USING engine = 'bedrock_engine', mode = 'conversational', prompt_template = '{{q}}'".to_string(),
        "CREATE MODEL chat_full PREDICT answer USING engine = 'bedrock_engine', mode = 'conversational-full', prompt_template = '{{q}}'".to_string(),
    ]);
    statements
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conversations_on_a_cluster_follow_the_data_order_in_one_task() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let dir = three_csv_files();
    let statements = talk_statements(&dir);
    let local = SessionContext::new_with_state(state(&emulator, 3));
    run_all(&local, &statements).await;
    let (_cluster, remote) = cluster_of(&emulator, 2, 3).await;
    run_all(&remote, &statements).await;

    // The conversation's input is read in its task, one file after another: no stage ends
    // under the model.
    let plan = explained(
        &remote,
        "EXPLAIN SELECT d.id, m.answer FROM talk AS d JOIN chat AS m",
    )
    .await;
    let distributed = plan.get("distributed_plan").expect("a distributed plan");
    let operators: Vec<&str> = distributed
        .lines()
        .map(|line| line.trim().split([':', '[']).next().unwrap_or_default())
        .filter(|op| !op.is_empty())
        .collect();
    assert_eq!(
        operators,
        [
            "=========ResolvedStage",
            "ShuffleWriterExec",
            "ProjectionExec",
            "Model",
            "DataSourceExec"
        ],
        "{distributed}"
    );
    assert!(
        distributed.contains("mode=conversational, max_concurrency=32, inputs=[q@1], input=one partition in the data's order"),
        "{distributed}"
    );

    for model in ["chat", "chat_full"] {
        let sql = format!("SELECT d.id, m.answer FROM talk AS d JOIN {model} AS m");
        for _ in 0..3 {
            assert_eq!(
                answers(&remote, &sql).await,
                answers(&local, &sql).await,
                "{sql}"
            );
        }
    }
    let last = |rows: BTreeMap<i64, Option<String>>| rows.get(&6).cloned().flatten();
    assert_eq!(
        last(
            answers(
                &remote,
                "SELECT d.id, m.answer FROM talk AS d JOIN chat AS m"
            )
            .await
        )
        .as_deref(),
        Some(
            "Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 6): q1\nq2\nq3\nq4\nq5\nq6"
        )
    );
    assert_eq!(
        last(
            answers(
                &remote,
                "SELECT d.id, m.answer FROM talk AS d JOIN chat_full AS m"
            )
            .await
        )
        .as_deref(),
        Some("Emulated amazon.titan-text-premier-v1:0 (messages: 11, blocks: 11): q6")
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_budget_is_divided_over_the_tasks_and_holds_across_the_cluster() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let dir = parquet_dataset("cluster-budget", 8, 50);
    let (_cluster, remote) = cluster_of(&emulator, 2, 8).await;
    run_all(&remote, &setup(&dir)).await;
    run_all(&remote, &["SET bedrock.max_requests = 100".to_string()]).await;
    let plan = pretty(&remote, &format!("EXPLAIN {JOIN}")).await;
    assert!(
        plan.contains("budget=max_requests 100 divided over 8 partitions (a task gets its partitions' part, rounded down)"),
        "{plan}"
    );
    let before = converse_calls(&emulator, TITAN);
    let failed = error(&remote, JOIN).await;
    let sent = converse_calls(&emulator, TITAN) - before;
    assert!(
        failed.starts_with("Execution error: A task on the cluster failed (job "),
        "{failed}"
    );
    // A task running k of the 8 partitions may send 100 * k / 8 requests, rounded down
    // (Ballista gives a task one or more partitions): 100 at most in all.
    let share = failed
        .split("this task's share (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no task share in: {failed}"));
    assert!(
        [12, 25, 37, 50].contains(&share),
        "a share of 100 over 8 partitions: {failed}"
    );
    assert!(
        failed.contains(&format!(
            "BudgetExceeded: the query stopped before a request that would pass this task's share ({share}) of bedrock.max_requests = 100; it had sent {share} request(s)"
        )),
        "{failed}"
    );
    assert!(sent > 0 && sent <= 100, "sent {sent}: {failed}");

    // Within the budget, the query runs.
    run_all(&remote, &["SET bedrock.max_requests = 800".to_string()]).await;
    assert_eq!(answers(&remote, JOIN).await.len(), 400);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tables_of_the_client_stay_on_the_client() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let dir = parquet_dataset("cluster-local", 2, 3);
    let (_cluster, remote) = cluster_of(&emulator, 1, 2).await;
    run_all(&remote, &setup(&dir)).await;
    assert_eq!(
        pretty(&remote, "SHOW MODELS").await,
        [
            "+-----------------------+----------------+--------------------------------+---------+--------+----------+--------+",
            "| name                  | engine         | model_id                       | mode    | target | inputs   | status |",
            "+-----------------------+----------------+--------------------------------+---------+--------+----------+--------+",
            "| bedrock_default_model | bedrock_engine | amazon.titan-text-premier-v1:0 | default | answer | question | ready  |",
            "+-----------------------+----------------+--------------------------------+---------+--------+----------+--------+",
        ]
        .join("\n")
    );
    run_all(
        &remote,
        &["CREATE TABLE memo AS VALUES (1, 'kept here')".to_string()],
    )
    .await;
    assert_eq!(
        pretty(&remote, "SELECT column2 FROM memo").await,
        "+-----------+\n| column2   |\n+-----------+\n| kept here |\n+-----------+"
    );
    assert_eq!(
        error(
            &remote,
            "SELECT * FROM memo JOIN questions ON memo.column1 = questions.id"
        )
        .await,
        "Error during planning: Table 'memo' lives in this process (an in-memory table or a table of the extension), and the query also reads files on the cluster: write the table to a file (COPY … TO 'file.parquet', then CREATE EXTERNAL TABLE) so that executors can read it, or query it on its own"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inline_keys_stay_on_the_client_and_an_executor_without_credentials_says_so() {
    // An endpoint that verifies signatures, as Bedrock does: unsigned requests are refused.
    let emulator = crate::support::signed_emulator(EmulatorConfig::default()).await;
    let dir = parquet_dataset("cluster-keys", 2, 3);
    let (_cluster, remote) = cluster_of(&emulator, 1, 2).await;
    let statements = [
        format!(
            "CREATE ML_ENGINE keyed FROM bedrock USING aws_access_key_id = '{}', aws_secret_access_key = '{}'",
            crate::support::ACCESS_KEY,
            crate::support::SECRET_KEY
        ),
        "CREATE MODEL keyed_model PREDICT answer USING engine = 'keyed', question_column = 'question'".to_string(),
        format!(
            "CREATE EXTERNAL TABLE questions STORED AS PARQUET LOCATION '{}/'",
            dir.display()
        ),
    ];
    // The client has the keys: creating the engine checks them there.
    run_all(&remote, &statements).await;
    let failed = error(
        &remote,
        "SELECT d.id, m.answer FROM questions AS d JOIN keyed_model AS m",
    )
    .await;
    assert!(
        failed.contains("Engine 'keyed' was created with inline keys (aws_access_key_id, aws_secret_access_key), which never leave the process they were given to, and this process has no credentials of its own: "),
        "{failed}"
    );
    assert!(
        failed.contains("Give this executor credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance or container role), or create the engine without inline keys"),
        "{failed}"
    );
    assert!(!failed.contains(crate::support::SECRET_KEY), "{failed}");
    assert_eq!(crate::support::converse_calls(&emulator, TITAN), 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn explain_analyze_sums_the_model_counters_of_every_task() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let dir = parquet_dataset("cluster-analyze", 4, 5);
    let (_cluster, remote) = cluster_of(&emulator, 2, 4).await;
    run_all(&remote, &setup(&dir)).await;
    for (sql, operator) in [(JOIN, "Model: "), (AI_COMPLETE, "AiFunctionExec: ")] {
        let before = converse_calls(&emulator, TITAN);
        let plan = pretty(&remote, &format!("EXPLAIN ANALYZE {sql}")).await;
        assert_eq!(converse_calls(&emulator, TITAN) - before, 20, "{plan}");
        let line = plan
            .lines()
            .find(|line| line.contains(operator))
            .unwrap_or_else(|| panic!("no {operator} in {plan}"));
        // 20 rows in 4 tasks: the counters of all of them.
        for counter in [
            "requests=20,",
            "cache_hits=0,",
            "dedup_hits=0,",
            "failed_rows=0,",
        ] {
            assert!(line.contains(counter), "{counter} in {line}");
        }
        assert!(line.contains("estimated_cost_micro_usd="), "{line}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_model_on_a_cluster_sends_one_job_from_one_task() {
    let root = tempfile::tempdir().expect("S3 root");
    let emulator = Emulator::start(EmulatorConfig {
        s3_root: Some(root.path().to_path_buf()),
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let dir = parquet_dataset("batch", 4, 50);
    let cluster = LocalCluster::start(2, 2).await.expect("cluster");
    let client = state(&emulator, 4);
    BedrockExtension::of_state(&client)
        .expect("the extension")
        .set_default_s3_endpoint(emulator.s3_url().map(str::to_string));
    let remote = cluster_session(cluster.address(), client)
        .await
        .expect("cluster session");
    run_all(
        &remote,
        &[
            // No identity: the client and the executors send unsigned requests to the emulator.
            "CREATE ML_ENGINE e FROM bedrock USING batch_role_arn = 'arn:aws:iam::123456789012:role/BedrockBatch', batch_s3_uri = 's3://bedrock-batch/cluster/'".to_string(),
            "CREATE MODEL m PREDICT answer USING engine = 'e', question_column = 'question', execution = 'batch'".to_string(),
            format!(
                "CREATE EXTERNAL TABLE questions STORED AS PARQUET LOCATION '{}/'",
                dir.display()
            ),
        ],
    )
    .await;
    let expected: BTreeMap<i64, Option<String>> = (0..200)
        .map(|id| {
            (
                id,
                Some(format!(
                    "Emulated {TITAN} (messages: 1, blocks: 1): question {id}"
                )),
            )
        })
        .collect();
    assert_eq!(
        answers(&remote, "SELECT d.id, m.answer FROM questions AS d JOIN m").await,
        expected
    );
    let stats = emulator.stats().snapshot();
    assert_eq!(stats.batch_jobs_submitted(), 1);
    assert_eq!(stats.batch_jobs[0].records, 200);
    assert_eq!(converse_calls(&emulator, TITAN), 0);
    let _ = std::fs::remove_dir_all(&dir);
    emulator.shutdown().await;
}
