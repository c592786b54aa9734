//! The semantic join at 200 × 200: with `bedrock.semantic_join_embedding_model` set, an
//! `ai_filter` over two tables asks about 200 × 10 pairs plus one embedding per distinct text,
//! instead of 200 × 200 pairs, and finds the same matches.
//!
//! The data is built for the emulator's rules: its yes/no rule answers Yes when the prompt has
//! the word `yes` or `true`, and it embeds a text as a bag of words. Every question ends with
//! the first letters of `yes` or `true` (one of five splits, the question's class); ten answers,
//! two per class, begin with the rest, so a question's prompt reads `yes`/`true` exactly with the
//! two answers of its class. Those two share four words with the question (its topic and field
//! among them), the other answers of its class two, the rest at most two: embeddings rank the
//! two matches among the ten nearest of every question.

use std::collections::BTreeSet;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig};
use datafusion_bedrock::{BedrockExtension, SessionStateBuilderBedrock};

use crate::support::{collect, converse_calls};

const NOVA: &str = "amazon.nova-micro-v1:0";
const TITAN: &str = "amazon.titan-embed-text-v2:0";
const ROWS: usize = 200;

/// The five ways to split `yes` and `true` at a question's end and its answer's start.
const SPLITS: [(&str, &str); 5] = [
    ("y", "es"),
    ("ye", "s"),
    ("t", "rue"),
    ("tr", "ue"),
    ("tru", "e"),
];

fn session(emulator: &Emulator) -> SessionContext {
    let ctx: SessionContext = SessionStateBuilder::new()
        .with_default_features()
        .with_bedrock()
        .build()
        .into();
    BedrockExtension::of_session(&ctx)
        .expect("the extension is installed")
        .set_default_endpoint(Some(emulator.url().to_string()));
    ctx
}

/// `VALUES (id, 'text'), …` of the questions and the answers.
fn tables() -> (String, String) {
    let questions: Vec<String> = (0..ROWS)
        .map(|i| {
            let c = i % 5;
            format!(
                "({i}, 'Question q{i} on topic{c} and field{c}: {}')",
                SPLITS[c].0
            )
        })
        .collect();
    let answers: Vec<String> = (0..ROWS)
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

const QUERY: &str = "SELECT q.id AS q, a.id AS a FROM questions q JOIN answers a ON ai_filter('amazon.nova-micro-v1:0', 'Does ' || q.text || a.text || ' answer it?') ORDER BY q, a";

async fn prepared(emulator: &Emulator) -> SessionContext {
    let ctx = session(emulator);
    let (questions, answers) = tables();
    for sql in [
        "CREATE ML_ENGINE e FROM bedrock USING aws_access_key_id = 'AQAXEQK89OX07YS34OP', aws_secret_access_key = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'".to_string(),
        format!("CREATE TABLE questions(id BIGINT, text VARCHAR) AS VALUES {questions}"),
        format!("CREATE TABLE answers(id BIGINT, text VARCHAR) AS VALUES {answers}"),
    ] {
        collect(&ctx, &sql).await;
    }
    ctx
}

fn pairs(batches: &[RecordBatch]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for batch in batches {
        let q = batch.column(0).as_primitive::<Int64Type>();
        let a = batch.column(1).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            assert!(q.is_valid(row) && a.is_valid(row));
            out.push((q.value(row), a.value(row)));
        }
    }
    out
}

fn embedding_calls(emulator: &Emulator) -> u64 {
    emulator
        .stats()
        .snapshot()
        .count(Some(TITAN), Some("InvokeModel"), None)
}

#[tokio::test]
async fn two_hundred_by_two_hundred_asks_ten_pairs_a_row_and_finds_every_match() {
    let emulator = Emulator::start(EmulatorConfig {
        request_log_capacity: 0,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    // Each question matches the two answers of its class, and nothing else.
    let expected: Vec<(i64, i64)> = (0..ROWS)
        .flat_map(|i| (0..10).filter(move |j| j % 5 == i % 5).map(move |j| (i, j)))
        .map(|(i, j)| (i64::try_from(i).unwrap(), i64::try_from(j).unwrap()))
        .collect();
    assert_eq!(expected.len(), 2 * ROWS);

    // The rewrite: 200 + 200 distinct texts embedded (Titan takes one a request), and
    // 200 × 10 pairs asked about.
    let ctx = prepared(&emulator).await;
    collect(
        &ctx,
        &format!("SET bedrock.semantic_join_embedding_model = '{TITAN}'"),
    )
    .await;
    let plan = datafusion::arrow::util::pretty::pretty_format_batches(
        &collect(&ctx, &format!("EXPLAIN {QUERY}")).await,
    )
    .expect("format")
    .to_string();
    assert!(
        plan.contains("SemanticJoin: candidates=10 per left row by cosine similarity, embedding_model=amazon.titan-embed-text-v2:0, left_key=CAST(q.text AS Utf8), right_key=CAST(a.text AS Utf8)"),
        "{plan}"
    );
    let rewritten = pairs(&collect(&ctx, QUERY).await);
    assert_eq!(rewritten, expected);
    assert_eq!(converse_calls(&emulator, NOVA), 2_000);
    assert_eq!(embedding_calls(&emulator), 400);

    // The full cross product, in a new session (its own cache): 40,000 pairs asked about, the
    // same matches found.
    let ctx = prepared(&emulator).await;
    let every = pairs(&collect(&ctx, QUERY).await);
    assert_eq!(every, rewritten);
    assert_eq!(converse_calls(&emulator, NOVA), 2_000 + 40_000);
    assert_eq!(embedding_calls(&emulator), 400);
    let distinct: BTreeSet<_> = every.iter().collect();
    assert_eq!(distinct.len(), every.len());
}
