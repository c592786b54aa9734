//! Models as relations: `FROM model WHERE …` and `FROM data JOIN model`.

use datafusion_bedrock::BedrockContext;

use crate::support::{converse_calls, run};
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig};

const TITAN: &str = "amazon.titan-text-premier-v1:0";

async fn setup(emulator: &Emulator) -> (BedrockContext, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "dfb-relations-{}-{}",
        std::process::id(),
        fastrand_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("unrelated_questions.csv"),
        "question\nWhat is the capital of Sweden?\nWhat is the second planet in the solar system?\n",
    )
    .expect("csv");
    let ctx = BedrockContext::new().with_default_endpoint(emulator.url());
    ctx.register_files_dir(&dir).await.expect("files");
    ctx.sql("CREATE ML_ENGINE bedrock_engine FROM bedrock USING aws_access_key_id = 'AKIDTEST', aws_secret_access_key = 'test', region_name = 'us-east-1'")
        .await
        .expect("engine");
    ctx.sql("CREATE MODEL bedrock_default_model\nPREDICT answer\nUSING\n    engine = 'bedrock_engine',\n    prompt_template = 'Answer the users input in a helpful way: {{question}}';")
        .await
        .expect("model");
    (ctx, dir)
}

fn fastrand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn answer(question: &str) -> String {
    format!(
        "Emulated {TITAN} (messages: 1, blocks: 1): Answer the users input in a helpful way: {question}"
    )
}

/// A pretty table of (question, answer) rows.
fn qa_table(header: (&str, &str), rows: &[(&str, String)]) -> String {
    let w0 = rows
        .iter()
        .map(|r| r.0.len())
        .chain([header.0.len()])
        .max()
        .unwrap_or(0);
    let w1 = rows
        .iter()
        .map(|r| r.1.len())
        .chain([header.1.len()])
        .max()
        .unwrap_or(0);
    let border = format!("+{}+{}+", "-".repeat(w0 + 2), "-".repeat(w1 + 2));
    let line = |a: &str, b: &str| format!("| {a:<w0$} | {b:<w1$} |");
    let mut out = vec![border.clone(), line(header.0, header.1), border.clone()];
    out.extend(rows.iter().map(|(a, b)| line(a, b)));
    out.push(border);
    out.join("\n")
}

#[tokio::test]
async fn the_seed_queries_answer_each_row() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let (ctx, dir) = setup(&emulator).await;
    let sweden = "What is the capital of Sweden?";
    let venus = "What is the second planet in the solar system?";
    assert_eq!(
        run(&ctx, "SELECT *\nFROM bedrock_default_model\nWHERE question = 'What is the capital of Sweden?';").await,
        qa_table(("question", "answer"), &[(sweden, answer(sweden))])
    );
    assert_eq!(
        run(
            &ctx,
            "SELECT *\nFROM files.unrelated_questions AS d\nJOIN bedrock_default_model AS m"
        )
        .await,
        qa_table(
            ("question", "answer"),
            &[(sweden, answer(sweden)), (venus, answer(venus))]
        )
    );
    assert_eq!(
        run(&ctx, "SELECT d.question, m.answer FROM files.unrelated_questions d, bedrock_default_model m ORDER BY d.question DESC").await,
        qa_table(("question", "answer"), &[(venus, answer(venus)), (sweden, answer(sweden))])
    );
    // Two distinct questions, each asked once although queried three times.
    assert_eq!(converse_calls(&emulator, TITAN), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_limit_reaches_the_scan_so_only_needed_rows_are_sent() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let (ctx, dir) = setup(&emulator).await;
    let out = run(&ctx, "SELECT m.answer FROM files.unrelated_questions AS d JOIN bedrock_default_model AS m LIMIT 1").await;
    assert_eq!(out.lines().count(), 5, "{out}");
    assert_eq!(converse_calls(&emulator, TITAN), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn model_relations_explain_what_they_need() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let (ctx, dir) = setup(&emulator).await;
    let err = |sql: &'static str| {
        let ctx = &ctx;
        async move {
            match ctx.sql(sql).await {
                Err(e) => e.strip_backtrace(),
                Ok(df) => df.collect().await.expect_err("fails").strip_backtrace(),
            }
        }
    };
    assert_eq!(
        err("SELECT * FROM bedrock_default_model WHERE answer = 'x'").await,
        "Error during planning: Model 'bedrock_default_model' needs its input(s) question: add WHERE question = '…'"
    );
    assert_eq!(
        err("SELECT * FROM (SELECT 1 AS x) d JOIN bedrock_default_model m").await,
        "Error during planning: Model 'bedrock_default_model' needs the column 'question' from the data it is joined with, which has: x. Rename a column (SELECT x AS question …) or recreate the model with other inputs"
    );
    assert_eq!(
        err("SELECT * FROM bedrock_default_model").await,
        "Error during planning: Model 'bedrock_default_model' answers rows it is given: join it with data (SELECT * FROM data AS d JOIN bedrock_default_model AS m) or give its inputs (SELECT * FROM bedrock_default_model WHERE question = '…')"
    );
    assert_eq!(
        emulator
            .stats()
            .snapshot()
            .count(None, Some("Converse"), None),
        0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn conversational_modes_carry_context_between_rows() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let (ctx, dir) = setup(&emulator).await;
    std::fs::write(
        dir.join("related_questions.csv"),
        "question\nWhat is the capital of Sweden?\nWhat are some cool places to visit there?\n",
    )
    .expect("csv");
    ctx.register_files_dir(&dir).await.expect("files");
    ctx.sql("CREATE MODEL bedrock_conversational_model\nPREDICT answer\nUSING\n    engine = 'bedrock_engine',\n    mode = 'conversational',\n    question_column = 'question';")
        .await
        .expect("model");
    let sweden = "What is the capital of Sweden?";
    let places = "What are some cool places to visit there?";
    let q = |s: &str| s.to_string();
    assert_eq!(
        rows(
            &ctx,
            "SELECT * FROM files.related_questions AS d JOIN bedrock_conversational_model AS m"
        )
        .await,
        vec![
            (q(sweden), None),
            (
                q(places),
                Some(format!(
                    "Emulated {TITAN} (messages: 1, blocks: 2): {sweden}\n{places}"
                ))
            ),
        ]
    );
    ctx.sql("CREATE MODEL full_model PREDICT answer USING engine = 'bedrock_engine', mode = 'conversational-full', question_column = 'question'")
        .await
        .expect("model");
    assert_eq!(
        rows(
            &ctx,
            "SELECT * FROM files.related_questions AS d JOIN full_model AS m"
        )
        .await,
        vec![
            (
                q(sweden),
                Some(format!(
                    "Emulated {TITAN} (messages: 1, blocks: 1): {sweden}"
                ))
            ),
            (
                q(places),
                Some(format!(
                    "Emulated {TITAN} (messages: 3, blocks: 3): {places}"
                ))
            ),
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The (question, answer) rows of a query, NULL answers as `None`.
async fn rows(ctx: &BedrockContext, sql: &str) -> Vec<(String, Option<String>)> {
    use datafusion::arrow::array::{Array, AsArray};
    let batches = ctx
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    let mut out = Vec::new();
    for batch in batches {
        let questions = batch.column(0).as_string::<i32>();
        let answers = batch.column(1).as_string::<i32>();
        for i in 0..batch.num_rows() {
            let answer = (!answers.is_null(i)).then(|| answers.value(i).to_string());
            out.push((questions.value(i).to_string(), answer));
        }
    }
    out
}
