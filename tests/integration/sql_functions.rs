//! The AI functions through `BedrockContext`: what reaches Bedrock (system prompts, inference
//! parameters, Cohere batches), whole result tables, and secrets kept out of errors.

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::assert_batches_eq;
use datafusion_bedrock::BedrockContext;
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig};
use datafusion_bedrock::udf::{ai_classify, ai_filter};
use serde_json::json;

const SECRET: &str = "functions-secret-value";

async fn context(emulator: &Emulator) -> BedrockContext {
    let ctx = BedrockContext::new().with_default_endpoint(emulator.url());
    ctx.sql(&format!("CREATE ML_ENGINE e FROM bedrock USING aws_access_key_id = 'AKIDTEST', aws_secret_access_key = '{SECRET}', region_name = 'us-east-1'"))
        .await
        .expect("engine");
    ctx
}

async fn run(ctx: &BedrockContext, sql: &str) -> Vec<datafusion::arrow::record_batch::RecordBatch> {
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test]
async fn ai_complete_sends_the_models_settings_overridden_by_the_options() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let ctx = context(&emulator).await;
    run(&ctx, "CREATE MODEL brief PREDICT answer USING engine = 'e', question_column = 'q', model_id = 'amazon.nova-micro-v1:0', system_prompt = 'Be brief.', max_tokens = 100, temperature = 0.5").await;
    let batches = run(
        &ctx,
        r#"SELECT q, ai_complete('brief', q, '{"max_tokens": 50, "top_p": 0.5}') AS answer FROM (VALUES ('Why?'), (NULL)) AS t(q)"#,
    )
    .await;
    assert_batches_eq!(
        [
            "+------+---------------------------------------------------------------------------+",
            "| q    | answer                                                                    |",
            "+------+---------------------------------------------------------------------------+",
            "| Why? | Emulated amazon.nova-micro-v1:0 (messages: 1, blocks: 1, system: 1): Why? |",
            "|      |                                                                           |",
            "+------+---------------------------------------------------------------------------+",
        ],
        &batches
    );
    let recent = emulator.stats().snapshot().recent;
    assert_eq!(recent.len(), 1, "the NULL row sends nothing");
    assert_eq!(recent[0].operation, "Converse");
    assert_eq!(recent[0].body["system"], json!([{"text": "Be brief."}]));
    assert_eq!(
        recent[0].body["inferenceConfig"],
        json!({"maxTokens": 50, "temperature": 0.5, "topP": 0.5})
    );
}

#[tokio::test]
async fn ai_filter_and_ai_classify_send_their_fixed_instructions() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let ctx = context(&emulator).await;
    let batches = run(
        &ctx,
        "SELECT ai_filter('amazon.nova-micro-v1:0', 'Is it true?') AS verdict, ai_classify('amazon.nova-micro-v1:0', 'a refund, please', ['shipping', 'refund']) AS topic",
    )
    .await;
    assert_batches_eq!(
        [
            "+---------+--------+",
            "| verdict | topic  |",
            "+---------+--------+",
            "| true    | refund |",
            "+---------+--------+",
        ],
        &batches
    );
    let mut systems: Vec<serde_json::Value> = emulator
        .stats()
        .snapshot()
        .recent
        .iter()
        .map(|r| r.body["system"].clone())
        .collect();
    systems.sort_by_key(ToString::to_string);
    let mut expected = vec![
        json!([{"text": ai_filter::INSTRUCTION}]),
        json!([{"text": format!("{}\nLabels: [\"shipping\",\"refund\"]", ai_classify::INSTRUCTION)}]),
    ];
    expected.sort_by_key(ToString::to_string);
    assert_eq!(systems, expected);
}

#[tokio::test]
async fn cohere_embeddings_go_96_texts_a_request_and_align_with_rows() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let ctx = context(&emulator).await;
    let batches = run(
        &ctx,
        "SELECT count(*) AS n, sum(CASE WHEN round(cosine_similarity(v, ai_embed('cohere.embed-english-v3', 'text ' || id)), 9) = 1 THEN 1 ELSE 0 END) AS aligned FROM (SELECT value AS id, ai_embed('cohere.embed-english-v3', 'text ' || value) AS v FROM range(100))",
    )
    .await;
    assert_batches_eq!(
        [
            "+-----+---------+",
            "| n   | aligned |",
            "+-----+---------+",
            "| 100 | 100     |",
            "+-----+---------+",
        ],
        &batches
    );
    let mut sizes: Vec<usize> = emulator
        .stats()
        .snapshot()
        .recent
        .iter()
        .map(|r| r.body["texts"].as_array().map_or(0, Vec::len))
        .collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        vec![4, 96],
        "the second embedding pass is served from the cache"
    );
}

#[tokio::test]
async fn usage_and_errors_never_show_the_secret() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let ctx = context(&emulator).await;
    let err = ctx
        .sql("SELECT ai_complete('amazon.nova-micro-v1:0', 'x [[emulate:AccessDeniedException]]')")
        .await
        .expect("plan")
        .collect()
        .await
        .expect_err("access denied");
    let message = err.strip_backtrace();
    assert_eq!(
        message,
        "Execution error: ai_complete: model 'amazon.nova-micro-v1:0' via engine 'e' failed for the row whose prompt is \"x [[emulate:AccessDeniedException]]\": AccessDeniedException: You don't have access to the model with the specified model ID"
    );
    let usage = run(
        &ctx,
        "SELECT engine, model, requests, failures FROM bedrock_usage()",
    )
    .await;
    let shown = pretty_format_batches(&usage).expect("format").to_string();
    assert!(!shown.contains(SECRET) && !message.contains(SECRET));
    assert_batches_eq!(
        [
            "+--------+------------------------+----------+----------+",
            "| engine | model                  | requests | failures |",
            "+--------+------------------------+----------+----------+",
            "| e      | amazon.nova-micro-v1:0 | 1        | 1        |",
            "+--------+------------------------+----------+----------+",
        ],
        &usage
    );
    assert!(!format!("{ctx:?}").contains(SECRET));
}

/// An AI function's model is bound when the query is planned: the spec travels in the plan,
/// so a plan made before `DROP MODEL` still runs with the model's settings, through
/// DataFusion's own `ctx.sql` on a session built with the builder, and through the extension's
/// SQL front. A query planned after the drop is refused.
#[tokio::test]
async fn a_planned_ai_function_keeps_its_model_after_drop_model() {
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::SessionContext;
    use datafusion_bedrock::{SessionStateBuilderBedrock, execute_sql};

    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_bedrock()
        .build();
    let ctx = SessionContext::new_with_state(state);
    let setup = format!(
        "CREATE ML_ENGINE e FROM bedrock USING endpoint_url = '{}', aws_access_key_id = 'AKIDTEST', aws_secret_access_key = '{SECRET}', region_name = 'us-east-1'; \
         CREATE MODEL brief PREDICT answer USING engine = 'e', question_column = 'q', model_id = 'amazon.nova-micro-v1:0', system_prompt = 'Be brief.'",
        emulator.url()
    );
    execute_sql(&ctx, &setup).await.expect("engine and model");
    let query = "SELECT ai_complete('brief', q) AS answer FROM (VALUES ('Why?')) AS t(q)";

    // DataFusion's own path: planned (analyzed, optimized, physical plan made), then dropped.
    let plan = ctx
        .sql(query)
        .await
        .expect("sql")
        .create_physical_plan()
        .await
        .expect("plan");
    // Our SQL front binds the model when it makes the logical plan.
    let bctx = BedrockContext::try_new(ctx.clone()).expect("extension");
    let frame = bctx.sql(query).await.expect("planned");
    execute_sql(&ctx, "DROP MODEL brief")
        .await
        .expect("drop")
        .collect()
        .await
        .expect("dropped");

    let expected = [
        "+---------------------------------------------------------------------------+",
        "| answer                                                                    |",
        "+---------------------------------------------------------------------------+",
        "| Emulated amazon.nova-micro-v1:0 (messages: 1, blocks: 1, system: 1): Why? |",
        "+---------------------------------------------------------------------------+",
    ];
    let batches = collect(plan, ctx.task_ctx()).await.expect("runs");
    assert_batches_eq!(expected, &batches);
    let batches = frame.collect().await.expect("runs");
    assert_batches_eq!(expected, &batches);
    let recent = emulator.stats().snapshot().recent;
    assert_eq!(recent.len(), 1, "the second run is a cache hit");
    assert_eq!(recent[0].body["system"], json!([{"text": "Be brief."}]));

    let after = ctx.sql(query).await.expect_err("the model is gone");
    assert_eq!(
        after.strip_backtrace(),
        "Error during planning: ai_complete: 'brief' is neither a model created with CREATE MODEL nor a Bedrock model id: write a model's name or a model id such as 'amazon.nova-micro-v1:0', an inference profile such as 'us.anthropic.claude-3-haiku-20240307-v1:0', or an ARN"
    );
}
