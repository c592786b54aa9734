//! What a query may spend: a LIMIT bounds the requests of every mode, a conversation's
//! history is bounded by `max_history_rows`, and a budget's first refusal stops every request
//! after it. Every count is the emulator's.

use std::fmt::Write as _;
use std::time::Duration;

use datafusion::prelude::{CsvReadOptions, SessionConfig};
use datafusion_bedrock::BedrockContext;
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig, LoadModel};

use crate::support::{converse_calls, run};

const TITAN: &str = "amazon.titan-text-premier-v1:0";
const NOVA: &str = "amazon.nova-micro-v1:0";

async fn context(emulator: &Emulator, config: SessionConfig, engine: &str) -> BedrockContext {
    let ctx = BedrockContext::with_config(config).with_default_endpoint(emulator.url());
    ctx.sql(&format!(
        "CREATE ML_ENGINE e FROM bedrock USING aws_access_key_id = 'AKIDTEST', aws_secret_access_key = 'test'{engine}"
    ))
    .await
    .expect("engine");
    ctx
}

/// A 10,000-row CSV file, `q` = `row 1` … `row 10000`.
fn ten_thousand_rows() -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("dfb-bounds-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut csv = String::from("q\n");
    for i in 1..=10_000 {
        writeln!(csv, "row {i}").expect("writing to a String cannot fail");
    }
    let file = dir.join("data.csv");
    std::fs::write(&file, csv).expect("csv");
    file
}

/// A context whose table `data` is a 10,000-row CSV file read as four partitions, and the
/// file (to remove its directory at the end).
async fn ten_thousand_row_table(emulator: &Emulator) -> (BedrockContext, std::path::PathBuf) {
    let file = ten_thousand_rows();
    let ctx = context(emulator, SessionConfig::new().with_target_partitions(4), "").await;
    ctx.session()
        .register_csv(
            "data",
            file.to_str().expect("utf-8 path"),
            CsvReadOptions::new(),
        )
        .await
        .expect("table");
    (ctx, file)
}

fn answers(lines: &[(&str, usize)]) -> String {
    let width = lines
        .iter()
        .map(|(q, n)| answer(q, *n).len())
        .max()
        .unwrap_or(0);
    let qw = lines.iter().map(|(q, _)| q.len()).max().unwrap_or(0).max(1);
    let rule = format!("+-{}-+-{}-+", "-".repeat(qw), "-".repeat(width));
    let mut out = vec![
        rule.clone(),
        format!("| {:qw$} | {:width$} |", "q", "answer"),
        rule.clone(),
    ];
    for (q, n) in lines {
        out.push(format!("| {q:qw$} | {:width$} |", answer(q, *n)));
    }
    out.push(rule);
    out.join("\n")
}

fn answer(q: &str, messages: usize) -> String {
    format!("Emulated {TITAN} (messages: {messages}, blocks: {messages}): {q}")
}

/// Regression: `conversational-full` ignored LIMIT and read the whole input, sending a
/// request per row with an ever longer history (905 requests in 30 s for `LIMIT 3`).
#[tokio::test]
async fn conversational_full_under_limit_sends_one_request_per_row_taken() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let ctx = context(&emulator, SessionConfig::new(), "").await;
    ctx.sql("CREATE MODEL chat PREDICT answer USING engine = 'e', mode = 'conversational-full', prompt_template = '{{q}}', max_tokens = 100")
        .await
        .expect("model");
    let got = run(
        &ctx,
        "SELECT d.q, m.answer FROM (SELECT 'row ' || value AS q FROM range(1, 10001)) AS d JOIN chat AS m LIMIT 3",
    )
    .await;
    // The third request carries two prior turns: 2 × 2 messages + its own.
    assert_eq!(got, answers(&[("row 1", 1), ("row 2", 3), ("row 3", 5)]));
    assert_eq!(converse_calls(&emulator, TITAN), 3);

    // The same over a 10,000-row CSV file read as several partitions: the first rows of the
    // file, three requests.
    emulator.stats().reset();
    let (ctx, file) = ten_thousand_row_table(&emulator).await;
    ctx.sql("CREATE MODEL c PREDICT answer USING engine = 'e', mode = 'conversational-full', prompt_template = '{{q}}', max_tokens = 100")
        .await
        .expect("model");
    let got = run(
        &ctx,
        "SELECT data.q, x.answer FROM data JOIN c AS x LIMIT 3",
    )
    .await;
    assert_eq!(got, answers(&[("row 1", 1), ("row 2", 3), ("row 3", 5)]));
    assert_eq!(converse_calls(&emulator, TITAN), 3);
    // An OFFSET needs the rows before it too: LIMIT 2 OFFSET 1 answers rows 1 to 3.
    emulator.stats().reset();
    let got = run(
        &ctx,
        "SELECT data.q, x.answer FROM data JOIN c AS x LIMIT 2 OFFSET 1",
    )
    .await;
    assert_eq!(got, answers(&[("row 2", 3), ("row 3", 5)]));
    assert_eq!(converse_calls(&emulator, TITAN), 0, "all three were cached");
    emulator.shutdown().await;
    let _ = std::fs::remove_dir_all(file.parent().expect("dir"));
}

/// Regression (same report): under LIMIT, `conversational` sends one request for the rows
/// taken, and the default mode one request per row taken.
#[tokio::test]
async fn a_limit_bounds_the_requests_of_every_mode() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let ctx = context(&emulator, SessionConfig::new(), "").await;
    ctx.sql("CREATE MODEL conv PREDICT answer USING engine = 'e', mode = 'conversational', prompt_template = '{{q}}'")
        .await
        .expect("model");
    ctx.sql("CREATE MODEL each PREDICT answer USING engine = 'e', prompt_template = '{{q}}'")
        .await
        .expect("model");
    let got = run(
        &ctx,
        "SELECT d.q, replace(m.answer, chr(10), ' ') AS answer FROM (SELECT 'row ' || value AS q FROM range(1, 10001)) AS d JOIN conv AS m LIMIT 3",
    )
    .await;
    let expected = [
        "+-------+-------------------------------------------------------------------------------------+",
        "| q     | answer                                                                              |",
        "+-------+-------------------------------------------------------------------------------------+",
        "| row 1 |                                                                                     |",
        "| row 2 |                                                                                     |",
        "| row 3 | Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 3): row 1 row 2 row 3 |",
        "+-------+-------------------------------------------------------------------------------------+",
    ]
    .join("\n");
    assert_eq!(got, expected);
    assert_eq!(converse_calls(&emulator, TITAN), 1);

    emulator.stats().reset();
    let got = run(
        &ctx,
        "SELECT count(*) AS answered FROM (SELECT m.answer FROM (SELECT 'each ' || value AS q FROM range(1, 10001)) AS d JOIN each AS m LIMIT 3)",
    )
    .await;
    assert!(got.contains("| 3        |"), "{got}");
    assert_eq!(converse_calls(&emulator, TITAN), 3);

    // The same over a 10,000-row CSV file read as four partitions.
    emulator.stats().reset();
    let (ctx, file) = ten_thousand_row_table(&emulator).await;
    ctx.sql("CREATE MODEL each PREDICT answer USING engine = 'e', prompt_template = 'csv {{q}}'")
        .await
        .expect("model");
    ctx.sql("CREATE MODEL conv PREDICT answer USING engine = 'e', mode = 'conversational', prompt_template = 'csv {{q}}'")
        .await
        .expect("model");
    let plan = run(
        &ctx,
        "EXPLAIN SELECT data.q, x.answer FROM data JOIN each AS x LIMIT 3",
    )
    .await;
    let got = run(
        &ctx,
        "SELECT count(x.answer) AS answered FROM (SELECT x.answer FROM data JOIN each AS x LIMIT 3)",
    )
    .await;
    assert!(got.contains("| 3        |"), "{got}");
    assert_eq!(converse_calls(&emulator, TITAN), 3, "{plan}");
    emulator.stats().reset();
    let got = run(
        &ctx,
        "SELECT count(x.answer) AS answered FROM (SELECT x.answer FROM data JOIN conv AS x LIMIT 3)",
    )
    .await;
    assert!(got.contains("| 1        |"), "{got}");
    assert_eq!(converse_calls(&emulator, TITAN), 1);
    emulator.shutdown().await;
    let _ = std::fs::remove_dir_all(file.parent().expect("dir"));
}

/// `max_history_rows = 2`: from the third row on, a request carries exactly two prior turns.
#[tokio::test]
async fn max_history_rows_bounds_the_prior_turns_sent() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let ctx = context(&emulator, SessionConfig::new(), "").await;
    ctx.sql("CREATE MODEL chat PREDICT answer USING engine = 'e', mode = 'conversational-full', prompt_template = '{{q}}', max_tokens = 100, max_history_rows = 2")
        .await
        .expect("model");
    let got = run(
        &ctx,
        "SELECT d.q, m.answer FROM (SELECT 'turn ' || value AS q FROM range(1, 6)) AS d JOIN chat AS m",
    )
    .await;
    assert_eq!(
        got,
        answers(&[
            ("turn 1", 1),
            ("turn 2", 3),
            ("turn 3", 5),
            ("turn 4", 5),
            ("turn 5", 5),
        ])
    );
    assert_eq!(converse_calls(&emulator, TITAN), 5);

    // EXPLAIN shows the bound, the LIMIT taken and an estimate that counts the prior turns:
    // 5 requests carrying 0 + 1 + 2 + 2 + 2 = 7 prior turns (the input size being unknown, a
    // prior turn counts one answer token at least and `max_tokens` at most).
    let plan = run(
        &ctx,
        "EXPLAIN SELECT d.q, m.answer FROM (SELECT 'turn ' || value AS q FROM range(1, 1001)) AS d JOIN chat AS m LIMIT 5",
    )
    .await;
    assert!(
        plan.contains("mode=conversational-full, max_concurrency=32, max_history_rows=2, inputs=[q@0], input=one partition in the data's order, fetch=5, estimated_requests~<=5, estimated_input_tokens=12..705, "),
        "{plan}"
    );
    emulator.shutdown().await;
}

/// The `it had sent N request(s)` of a budget error.
fn sent_in(message: &str) -> u64 {
    let (_, rest) = message
        .split_once("it had sent ")
        .unwrap_or_else(|| panic!("no count in: {message}"));
    rest.split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in: {message}"))
}

/// Regression: after a budget refused a request, the query's other batches and partitions
/// went on sending (111 requests received where the error said 6), and the error did not
/// count what was in flight.
#[tokio::test]
async fn after_a_budget_refusal_nothing_more_is_sent_and_the_error_counts_every_request() {
    let emulator = Emulator::start(EmulatorConfig {
        load: LoadModel {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(20),
            seed: 5,
            ..LoadModel::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let ctx = context(
        &emulator,
        SessionConfig::new()
            .with_target_partitions(4)
            .with_batch_size(64),
        ", max_concurrency = 8",
    )
    .await;
    ctx.sql(&format!("CREATE MODEL m PREDICT answer USING engine = 'e', prompt_template = '{{{{q}}}}', model_id = '{NOVA}', max_tokens = 100"))
        .await
        .expect("model");
    let query = |prefix: &str| {
        format!(
            "SELECT d.q, m.answer FROM (SELECT '{prefix} ' || value AS q FROM range(1, 10001)) AS d JOIN m"
        )
    };
    let failed = |sql: String| {
        let ctx = &ctx;
        async move {
            let df = ctx.sql(&sql).await.expect("plan");
            df.collect().await.expect_err("over budget").to_string()
        }
    };
    let settled = || async {
        // Nothing arrives late either.
        tokio::time::sleep(Duration::from_millis(200)).await;
        converse_calls(&emulator, NOVA)
    };

    ctx.sql("SET bedrock.max_requests = 5").await.expect("set");
    let message = failed(query("requests")).await;
    assert!(message.contains("BudgetExceeded"), "{message}");
    assert_eq!(sent_in(&message), 5, "{message}");
    // The requests in flight at the refusal were waited for: all five were answered.
    assert!(message.contains("received 5 answer(s)"), "{message}");
    assert_eq!(settled().await, 5, "{message}");
    ctx.sql("RESET bedrock.max_requests").await.expect("reset");

    // About $0.000014 reserved per request: a handful fit, the rest are never sent.
    emulator.stats().reset();
    ctx.sql("SET bedrock.max_cost_usd = 0.0001")
        .await
        .expect("set");
    let message = failed(query("cost")).await;
    assert!(
        message.contains("bedrock.max_cost_usd = 0.0001"),
        "{message}"
    );
    let sent = sent_in(&message);
    assert!((1..=10).contains(&sent), "{message}");
    assert!(
        message.contains(&format!("received {sent} answer(s)")),
        "{message}"
    );
    assert_eq!(settled().await, sent, "{message}");
    emulator.shutdown().await;
}
