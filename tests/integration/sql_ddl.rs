//! The extension's statements through `BedrockContext::sql`, against the emulator.

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use datafusion_bedrock::BedrockContext;
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig, StaticCredential};

/// The seed document's (made-up) credentials, which the emulator is told to accept.
const SEED_KEY: &str = "AQAXEQK89OX07YS34OP";
const SEED_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const SEED_TOKEN: &str = "FwoGZXIvYXdzEJr...";

const SEED_ENGINE: &str = "CREATE ML_ENGINE bedrock_engine
FROM bedrock
USING
    aws_access_key_id = 'AQAXEQK89OX07YS34OP',
    aws_secret_access_key = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    aws_session_token = 'FwoGZXIvYXdzEJr...',
    region_name = 'us-east-1';";

async fn seed_emulator() -> Emulator {
    Emulator::start(EmulatorConfig {
        credentials: vec![
            StaticCredential::new(SEED_KEY, SEED_SECRET).with_session_token(SEED_TOKEN),
        ],
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator")
}

async fn run(ctx: &BedrockContext, sql: &str) -> String {
    let df = ctx.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batches = df.collect().await.expect("collect");
    pretty_format_batches(&batches).expect("format").to_string()
}

async fn error(ctx: &BedrockContext, sql: &str) -> String {
    ctx.sql(sql)
        .await
        .expect_err("the statement fails")
        .to_string()
}

fn table(lines: &[&str]) -> String {
    lines.join("\n")
}

#[tokio::test]
async fn the_seed_ddl_runs_verbatim() {
    let emulator = seed_emulator().await;
    let ctx = BedrockContext::new().with_default_endpoint(emulator.url());
    assert_eq!(
        run(&ctx, SEED_ENGINE).await,
        table(&[
            "+----------------+---------+---------+",
            "| name           | handler | status  |",
            "+----------------+---------+---------+",
            "| bedrock_engine | bedrock | created |",
            "+----------------+---------+---------+",
        ])
    );
    assert_eq!(
        run(&ctx, "CREATE MODEL bedrock_model\nPREDICT answer\nUSING\n    engine = 'bedrock_engine',\n    question_column = 'question',\n    max_tokens = 100,\n    temperature = 0.3;").await,
        table(&[
            "+---------------+----------------+--------------------------------+---------+--------+----------+--------+",
            "| name          | engine         | model_id                       | mode    | target | inputs   | status |",
            "+---------------+----------------+--------------------------------+---------+--------+----------+--------+",
            "| bedrock_model | bedrock_engine | amazon.titan-text-premier-v1:0 | default | answer | question | ready  |",
            "+---------------+----------------+--------------------------------+---------+--------+----------+--------+",
        ])
    );
    run(&ctx, "CREATE MODEL bedrock_default_model\nPREDICT answer\nUSING\n    engine = 'bedrock_engine',\n    prompt_template = 'Answer the users input in a helpful way: {{question}}';").await;
    run(&ctx, "CREATE MODEL bedrock_conversational_model\nPREDICT answer\nUSING\n    engine = 'bedrock_engine',\n    mode = 'conversational',\n    question_column = 'question';").await;
    assert_eq!(
        run(&ctx, "SHOW MODELS").await,
        table(&[
            "+------------------------------+----------------+--------------------------------+----------------+--------+----------+--------+",
            "| name                         | engine         | model_id                       | mode           | target | inputs   | status |",
            "+------------------------------+----------------+--------------------------------+----------------+--------+----------+--------+",
            "| bedrock_conversational_model | bedrock_engine | amazon.titan-text-premier-v1:0 | conversational | answer | question | ready  |",
            "| bedrock_default_model        | bedrock_engine | amazon.titan-text-premier-v1:0 | default        | answer | question | ready  |",
            "| bedrock_model                | bedrock_engine | amazon.titan-text-premier-v1:0 | default        | answer | question | ready  |",
            "+------------------------------+----------------+--------------------------------+----------------+--------+----------+--------+",
        ])
    );
    let engines = run(&ctx, "SHOW ML_ENGINES").await;
    assert_eq!(
        engines,
        table(&[
            "+----------------+---------+-----------+------------------------+-----------------------------+-----------------+---------+",
            "| name           | handler | region    | endpoint_url           | credentials                 | max_concurrency | default |",
            "+----------------+---------+-----------+------------------------+-----------------------------+-----------------+---------+",
            &format!(
                "| bedrock_engine | bedrock | us-east-1 | {} | static keys + session token | 32              | false   |",
                emulator.url()
            ),
            "+----------------+---------+-----------+------------------------+-----------------------------+-----------------+---------+",
        ])
    );
    assert!(!engines.contains(SEED_SECRET) && !engines.contains(SEED_TOKEN));
    assert_eq!(
        run(&ctx, "DESCRIBE bedrock_default_model").await,
        table(&[
            "+-----------------+-------------------------------------------------------+",
            "| parameter       | value                                                 |",
            "+-----------------+-------------------------------------------------------+",
            "| name            | bedrock_default_model                                 |",
            "| engine          | bedrock_engine                                        |",
            "| model_id        | amazon.titan-text-premier-v1:0                        |",
            "| mode            | default                                               |",
            "| api             | converse                                              |",
            "| target          | answer                                                |",
            "| inputs          | question                                              |",
            "| prompt_template | Answer the users input in a helpful way: {{question}} |",
            "| status          | ready                                                 |",
            "+-----------------+-------------------------------------------------------+",
        ])
    );
    assert_eq!(
        run(&ctx, "DESCRIBE bedrock_model.metadata").await,
        table(&[
            "+--------------------+----------------------------------------------------------------------------+",
            "| property           | value                                                                      |",
            "+--------------------+----------------------------------------------------------------------------+",
            "| model_id           | amazon.titan-text-premier-v1:0                                             |",
            "| model_arn          | arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-premier-v1:0 |",
            "| name               | Titan Text G1 - Premier                                                    |",
            "| provider           | Amazon                                                                     |",
            "| input_modalities   | TEXT                                                                       |",
            "| output_modalities  | TEXT                                                                       |",
            "| response_streaming | true                                                                       |",
            "| inference_types    | ON_DEMAND                                                                  |",
            "| lifecycle          | ACTIVE                                                                     |",
            "+--------------------+----------------------------------------------------------------------------+",
        ])
    );
}

#[tokio::test]
async fn ddl_errors_name_the_problem_and_the_fix() {
    let emulator = seed_emulator().await;
    let ctx = BedrockContext::new().with_default_endpoint(emulator.url());
    run(&ctx, SEED_ENGINE).await;
    assert_eq!(
        error(&ctx, SEED_ENGINE).await,
        "Error during planning: ML engine 'bedrock_engine' already exists: DROP ML_ENGINE bedrock_engine first, or write CREATE ML_ENGINE IF NOT EXISTS"
    );
    assert_eq!(
        run(
            &ctx,
            "CREATE ML_ENGINE IF NOT EXISTS bedrock_engine FROM bedrock"
        )
        .await,
        table(&[
            "+----------------+---------+--------+",
            "| name           | handler | status |",
            "+----------------+---------+--------+",
            "| bedrock_engine | bedrock | exists |",
            "+----------------+---------+--------+",
        ])
    );
    let wrong = error(&ctx, "CREATE ML_ENGINE other FROM bedrock USING aws_access_key_id = 'AQAXEQK89OX07YS34OP', aws_secret_access_key = 'not-the-secret', aws_session_token = 'FwoGZXIvYXdzEJr...'").await;
    assert!(wrong.starts_with("Error during planning: Engine 'other': Bedrock in us-east-1 rejected its temporary keys (aws_access_key_id, aws_secret_access_key, aws_session_token) — InvalidSignatureException"), "{wrong}");
    assert!(!wrong.contains("not-the-secret"));
    assert_eq!(
        error(&ctx, "CREATE ML_ENGINE e FROM openai").await,
        "Error during planning: Unknown ML engine handler 'openai': this extension serves FROM bedrock"
    );
    assert_eq!(
        error(
            &ctx,
            "CREATE ML_ENGINE e FROM bedrock USING aws_region = 'us-east-1'"
        )
        .await,
        "Error during planning: Unknown engine parameter 'aws_region' — did you mean 'region_name'?"
    );
    assert_eq!(
        error(
            &ctx,
            "CREATE MODEL m PREDICT answer USING engine = 'bedrock_engin', question_column = 'q'"
        )
        .await,
        "Error during planning: Model 'm' uses ML engine 'bedrock_engin', which does not exist — did you mean 'bedrock_engine'?"
    );
    assert_eq!(
        error(&ctx, "CREATE MODEL m PREDICT answer USING engine = 'bedrock_engine', question_column = 'q', model_id = 'amazon.titan-embed-text-v2:0'").await,
        "Error during planning: Model 'amazon.titan-embed-text-v2:0' produces EMBEDDING output, not TEXT: choose a text model (for example amazon.titan-text-premier-v1:0) to generate answers"
    );
    assert_eq!(
        error(&ctx, "CREATE MODEL m PREDICT answer USING engine = 'bedrock_engine', question_column = 'q', model_id = 'amazon.nope-v1'").await,
        "Error during planning: Model 'amazon.nope-v1' is not available through engine 'bedrock_engine' in us-east-1 (ResourceNotFoundException: The model identifier amazon.nope-v1 is not found). Check model_id against https://docs.aws.amazon.com/bedrock/latest/userguide/model-ids.html and the models enabled for the account."
    );
    run(
        &ctx,
        "CREATE MODEL m PREDICT answer USING engine = 'bedrock_engine', question_column = 'q'",
    )
    .await;
    assert_eq!(
        error(
            &ctx,
            "CREATE MODEL m PREDICT answer USING engine = 'bedrock_engine', question_column = 'q'"
        )
        .await,
        "Error during planning: Model 'm' already exists: DROP MODEL m first, or write CREATE OR REPLACE MODEL"
    );
    run(&ctx, "CREATE OR REPLACE MODEL m PREDICT reply USING engine = 'bedrock_engine', prompt_template = '{{a}} {{b}}'").await;
    assert_eq!(
        error(&ctx, "DROP ML_ENGINE bedrock_engine").await,
        "Error during planning: ML engine 'bedrock_engine' is used by model(s) m: drop them first"
    );
    assert_eq!(
        run(&ctx, "DROP MODEL m; DROP MODEL IF EXISTS m").await,
        table(&[
            "+------+--------+",
            "| name | status |",
            "+------+--------+",
            "| m    | absent |",
            "+------+--------+",
        ])
    );
    assert_eq!(
        error(&ctx, "DROP MODEL m").await,
        "Error during planning: Model 'm' does not exist"
    );
    run(&ctx, "DROP ML_ENGINE bedrock_engine").await;
    assert_eq!(
        error(&ctx, "DROP ML_ENGINE bedrock_engine").await,
        "Error during planning: ML engine 'bedrock_engine' does not exist"
    );
    assert_eq!(
        error(&ctx, "CREATE MODEL m PREDICT a USING engine 'e'").await,
        "Error during planning: Expected '=' after 'engine', found ''e'' at line 1, column 39: write engine = value"
    );
}

#[tokio::test]
async fn plain_datafusion_sql_runs_as_before() {
    let ctx = BedrockContext::new();
    assert_eq!(
        run(&ctx, "CREATE TABLE t AS VALUES (1, 'a'), (2, 'b'); SELECT column1 * 10 AS x, upper(column2) AS y FROM t ORDER BY x").await,
        table(&[
            "+----+---+",
            "| x  | y |",
            "+----+---+",
            "| 10 | A |",
            "| 20 | B |",
            "+----+---+",
        ])
    );
    // DESCRIBE of a table (not a model) stays DataFusion's: the same as a plain session's.
    let plain = SessionContext::new();
    plain
        .sql("CREATE TABLE t AS VALUES (1, 'a'), (2, 'b')")
        .await
        .expect("create")
        .collect()
        .await
        .expect("run");
    let plain_describe = pretty_format_batches(
        &plain
            .sql("DESCRIBE t")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run"),
    )
    .expect("format")
    .to_string();
    assert_eq!(run(&ctx, "DESCRIBE t").await, plain_describe);
    assert_eq!(
        run(&ctx, "DESCRIBE t").await,
        table(&[
            "+-------------+-----------+-------------+",
            "| column_name | data_type | is_nullable |",
            "+-------------+-----------+-------------+",
            "| column1     | Int64     | NO          |",
            "| column2     | Utf8      | NO          |",
            "+-------------+-----------+-------------+",
        ])
    );
}

#[tokio::test]
async fn the_files_schema_serves_a_directory() {
    let dir = std::env::temp_dir().join(format!("dfb-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("unrelated_questions.csv"),
        "question\nWhat is the capital of Sweden?\nWhat is the second planet in the solar system?\n",
    )
    .expect("csv");
    std::fs::write(
        dir.join("Related.json"),
        "{\"question\": \"a\"}\n{\"question\": \"b\"}\n",
    )
    .expect("json");
    std::fs::write(dir.join("notes.txt"), "not a table").expect("txt");
    let parquet = dir.join("numbers.parquet");
    SessionContext::new()
        .sql(&format!(
            "COPY (VALUES (1), (2)) TO '{}' STORED AS PARQUET",
            parquet.display()
        ))
        .await
        .expect("plan")
        .collect()
        .await
        .expect("write parquet");

    let ctx = BedrockContext::new();
    let registered = ctx.register_files_dir(&dir).await.expect("registered");
    assert_eq!(
        registered.tables,
        vec!["numbers", "related", "unrelated_questions"]
    );
    assert!(registered.skipped.is_empty(), "{:?}", registered.skipped);
    assert_eq!(
        run(&ctx, "SELECT * FROM files.unrelated_questions").await,
        table(&[
            "+------------------------------------------------+",
            "| question                                       |",
            "+------------------------------------------------+",
            "| What is the capital of Sweden?                 |",
            "| What is the second planet in the solar system? |",
            "+------------------------------------------------+",
        ])
    );
    assert_eq!(
        run(&ctx, "SELECT r.question, n.column1 FROM files.related r JOIN files.numbers n ON n.column1 = length(r.question) ORDER BY 1").await,
        table(&[
            "+----------+---------+",
            "| question | column1 |",
            "+----------+---------+",
            "| a        | 1       |",
            "| b        | 1       |",
            "+----------+---------+",
        ])
    );
    std::fs::write(dir.join("NUMBERS.csv"), "x\n1\n").expect("csv");
    let err = ctx
        .register_files_dir(&dir)
        .await
        .expect_err("two files named numbers");
    assert!(
        err.to_string()
            .contains("would both be files.numbers: rename one"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
