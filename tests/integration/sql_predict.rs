//! The predict UDF in plain SQL: answers aligned to rows, NULLs, dedup, and per-row errors.

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion_bedrock::BedrockContext;
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig};

async fn context_with_model(emulator: &Emulator) -> BedrockContext {
    let ctx = BedrockContext::new().with_default_endpoint(emulator.url());
    ctx.sql("CREATE ML_ENGINE e FROM bedrock USING aws_access_key_id = 'AKIDTEST', aws_secret_access_key = 'test-secret', region_name = 'us-east-1'")
        .await
        .expect("engine");
    ctx.sql("CREATE MODEL m PREDICT answer USING engine = 'e', prompt_template = 'Q: {{question}}', max_tokens = 200")
        .await
        .expect("model");
    // CREATE MODEL registers predict_m.
    ctx
}

#[tokio::test]
async fn every_row_gets_its_own_answer_and_nulls_cost_nothing() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let ctx = context_with_model(&emulator).await;
    let batches = ctx
        .sql("SELECT question, predict_m(question) AS answer FROM (VALUES ('a'), (NULL), ('b'), ('a')) AS t(question)")
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    assert_eq!(
        pretty_format_batches(&batches).expect("format").to_string(),
        [
            "+----------+------------------------------------------------------------------------+",
            "| question | answer                                                                 |",
            "+----------+------------------------------------------------------------------------+",
            "| a        | Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): Q: a |",
            "|          |                                                                        |",
            "| b        | Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): Q: b |",
            "| a        | Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): Q: a |",
            "+----------+------------------------------------------------------------------------+",
        ]
        .join("\n")
    );
    let stats = emulator.stats().snapshot();
    assert_eq!(
        stats.count(
            Some("amazon.titan-text-premier-v1:0"),
            Some("Converse"),
            None
        ),
        2
    );
    assert_eq!(
        stats
            .recent
            .last()
            .map(|r| r.body["inferenceConfig"].clone()),
        Some(serde_json::json!({"maxTokens": 200}))
    );
}

#[tokio::test]
async fn a_failing_row_names_its_prompt_and_the_bedrock_error() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let ctx = context_with_model(&emulator).await;
    let err = ctx
        .sql("SELECT predict_m(question) FROM (VALUES ('fine'), ('bad [[emulate:ValidationException]]')) AS t(question)")
        .await
        .expect("plan")
        .collect()
        .await
        .expect_err("the bad row fails the query");
    assert_eq!(
        err.strip_backtrace(),
        "Execution error: Model 'm' (amazon.titan-text-premier-v1:0) failed for the row whose prompt is \"Q: bad [[emulate:ValidationException]]\": ValidationException: The request failed validation"
    );
}
