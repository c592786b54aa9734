//! The extension installed into sessions that applications build themselves: their own
//! configuration, tables, analyzer rules and query planner stay in place, the seed document's
//! SQL runs verbatim, and every clone of the session sees the same engines and models.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::assert_batches_eq;
use datafusion::catalog::Session;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig};
use datafusion_bedrock::{
    BedrockExtension, SessionContextBedrock, SessionStateBuilderBedrock, execute_sql,
    register_files_dir,
};

use crate::support::collect;

/// An application's own analyzer rule: it counts the plans it sees.
#[derive(Debug, Default)]
struct AuditRule {
    plans: AtomicUsize,
}

impl AnalyzerRule for AuditRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        self.plans.fetch_add(1, Ordering::SeqCst);
        Ok(plan)
    }

    fn name(&self) -> &'static str {
        "app_audit"
    }
}

/// An application's own query planner: DataFusion's, counting the plans it plans.
#[derive(Debug, Default)]
struct CountingPlanner {
    plans: AtomicUsize,
}

#[async_trait]
impl QueryPlanner for CountingPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.plans.fetch_add(1, Ordering::SeqCst);
        DefaultPhysicalPlanner::default()
            .create_physical_plan(logical_plan, session)
            .await
    }
}

fn app_table() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("city", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec!["Stockholm", "Oslo"])),
        ],
    )
    .expect("a valid batch")
}

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts")
}

/// Points the session's engines without `endpoint_url` at the emulator.
fn use_emulator(ctx: &SessionContext, emulator: &Emulator) {
    BedrockExtension::of_session(ctx)
        .expect("the extension is installed")
        .set_default_endpoint(Some(emulator.url().to_string()));
}

/// A new session built with the extension.
fn bedrock_session() -> SessionContext {
    SessionStateBuilder::new()
        .with_default_features()
        .with_bedrock()
        .build()
        .into()
}

/// The SQL of MindsDB's "Amazon Bedrock" document, verbatim, with the answers the emulator
/// gives.
async fn run_the_seed(ctx: &SessionContext) {
    let engine = collect(
        ctx,
        "CREATE ML_ENGINE bedrock_engine\nFROM bedrock\nUSING\n    aws_access_key_id = 'AQAXEQK89OX07YS34OP',\n    aws_secret_access_key = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',\n    aws_session_token = 'FwoGZXIvYXdzEJr...',\n    region_name = 'us-east-1';",
    )
    .await;
    assert_batches_eq!(
        [
            "+----------------+---------+---------+",
            "| name           | handler | status  |",
            "+----------------+---------+---------+",
            "| bedrock_engine | bedrock | created |",
            "+----------------+---------+---------+",
        ],
        &engine
    );
    let model = collect(
        ctx,
        "CREATE MODEL bedrock_model\nPREDICT answer\nUSING\n    engine = 'bedrock_engine',\n    question_column = 'question',\n    max_tokens = 100,\n    temperature = 0.3;",
    )
    .await;
    assert_batches_eq!(
        [
            "+---------------+----------------+--------------------------------+---------+--------+----------+--------+",
            "| name          | engine         | model_id                       | mode    | target | inputs   | status |",
            "+---------------+----------------+--------------------------------+---------+--------+----------+--------+",
            "| bedrock_model | bedrock_engine | amazon.titan-text-premier-v1:0 | default | answer | question | ready  |",
            "+---------------+----------------+--------------------------------+---------+--------+----------+--------+",
        ],
        &model
    );
    collect(
        ctx,
        "CREATE MODEL bedrock_default_model\nPREDICT answer\nUSING\n    engine = 'bedrock_engine',\n    prompt_template = 'Answer the users input in a helpful way: {{question}}';",
    )
    .await;
    let one = collect(
        ctx,
        "SELECT *\nFROM bedrock_default_model\nWHERE question = 'What is the capital of Sweden?';",
    )
    .await;
    assert_batches_eq!(
        [
            "+--------------------------------+-------------------------------------------------------------------------------------------------------------------------------------------+",
            "| question                       | answer                                                                                                                                    |",
            "+--------------------------------+-------------------------------------------------------------------------------------------------------------------------------------------+",
            "| What is the capital of Sweden? | Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): Answer the users input in a helpful way: What is the capital of Sweden? |",
            "+--------------------------------+-------------------------------------------------------------------------------------------------------------------------------------------+",
        ],
        &one
    );
    let joined = collect(
        ctx,
        "SELECT *\nFROM files.unrelated_questions AS d\nJOIN bedrock_default_model AS m;",
    )
    .await;
    assert_batches_eq!(
        [
            "+------------------------------------------------+-----------------------------------------------------------------------------------------------------------------------------------------------------------+",
            "| question                                       | answer                                                                                                                                                    |",
            "+------------------------------------------------+-----------------------------------------------------------------------------------------------------------------------------------------------------------+",
            "| What is the capital of Sweden?                 | Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): Answer the users input in a helpful way: What is the capital of Sweden?                 |",
            "| What is the second planet in the solar system? | Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): Answer the users input in a helpful way: What is the second planet in the solar system? |",
            "+------------------------------------------------+-----------------------------------------------------------------------------------------------------------------------------------------------------------+",
        ],
        &joined
    );
    collect(
        ctx,
        "CREATE MODEL bedrock_conversational_model\nPREDICT answer\nUSING\n    engine = 'bedrock_engine',\n    mode = 'conversational',\n    question_column = 'question';",
    )
    .await;
    let conversation = collect(
        ctx,
        "SELECT *\nFROM files.related_questions AS d\nJOIN bedrock_conversational_model AS m;",
    )
    .await;
    assert_batches_eq!(
        [
            "+-------------------------------------------+--------------------------------------------------------------------------------------------------+",
            "| question                                  | answer                                                                                           |",
            "+-------------------------------------------+--------------------------------------------------------------------------------------------------+",
            "| What is the capital of Sweden?            |                                                                                                  |",
            "| What are some cool places to visit there? | Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 2): What is the capital of Sweden? |",
            "|                                           | What are some cool places to visit there?                                                        |",
            "+-------------------------------------------+--------------------------------------------------------------------------------------------------+",
        ],
        &conversation
    );
}

#[tokio::test]
async fn an_applications_own_session_gets_the_extension_with_one_call_and_runs_the_seed() {
    let emulator = emulator().await;
    // The application's session: its configuration, its table, its analyzer rule.
    let config = SessionConfig::new()
        .with_target_partitions(3)
        .with_information_schema(true);
    let audit = Arc::new(AuditRule::default());
    let app = SessionContext::new_with_config(config);
    app.register_batch("app_cities", app_table())
        .expect("the table registers");
    app.add_analyzer_rule(Arc::clone(&audit) as _);

    // The one call.
    let ctx = app.with_bedrock();

    use_emulator(&ctx, &emulator);
    register_files_dir(&ctx, "sql-tests/files")
        .await
        .expect("the files register");
    run_the_seed(&ctx).await;

    // What the application had is still there and still works.
    assert_eq!(ctx.state().config().target_partitions(), 3);
    let cities = collect(&ctx, "SELECT city FROM app_cities ORDER BY id").await;
    assert_batches_eq!(
        [
            "+-----------+",
            "| city      |",
            "+-----------+",
            "| Stockholm |",
            "| Oslo      |",
            "+-----------+",
        ],
        &cities
    );
    assert!(
        audit.plans.load(Ordering::SeqCst) >= 6,
        "the application's analyzer rule saw {} plans",
        audit.plans.load(Ordering::SeqCst)
    );
    // The rewrite, the planning of AI aggregates and the binding of AI functions run before
    // type coercion; the application's
    // rule keeps its place after.
    let rules: Vec<String> = ctx
        .state()
        .analyzer()
        .rules
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    assert_eq!(
        rules,
        [
            "resolve_grouping_function",
            "bedrock_model_relations",
            "bedrock_plan_ai_aggregates",
            "bedrock_bind_ai_functions",
            "type_coercion",
            "app_audit"
        ]
    );
}

#[tokio::test]
async fn a_session_built_with_the_builder_call_runs_the_seed_through_datafusions_own_sql() {
    let emulator = emulator().await;
    let ctx = bedrock_session();
    use_emulator(&ctx, &emulator);
    register_files_dir(&ctx, "sql-tests/files")
        .await
        .expect("the files register");
    run_the_seed(&ctx).await;
    // Queries over models need no wrapper: DataFusion's own `sql` plans them.
    let answers = ctx
        .sql("SELECT m.answer FROM (VALUES ('Hi')) AS d(question) JOIN bedrock_model AS m")
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    assert_batches_eq!(
        [
            "+----------------------------------------------------------------------+",
            "| answer                                                               |",
            "+----------------------------------------------------------------------+",
            "| Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): Hi |",
            "+----------------------------------------------------------------------+",
        ],
        &answers
    );
}

#[tokio::test]
async fn engines_and_models_created_through_one_clone_are_seen_by_every_other() {
    let emulator = emulator().await;
    let first = bedrock_session();
    let second = first.clone();
    let from_state = SessionContext::new_with_state(first.state());
    use_emulator(&first, &emulator);

    collect(
        &first,
        "CREATE ML_ENGINE e FROM bedrock USING region_name = 'us-east-1', api_key = 'k'",
    )
    .await;
    collect(
        &second,
        "CREATE MODEL m PREDICT answer USING engine = 'e', prompt_template = 'Say {{word}}'",
    )
    .await;
    for ctx in [&first, &second, &from_state] {
        let models = collect(ctx, "SHOW MODELS").await;
        assert_batches_eq!(
            [
                "+------+--------+--------------------------------+---------+--------+--------+--------+",
                "| name | engine | model_id                       | mode    | target | inputs | status |",
                "+------+--------+--------------------------------+---------+--------+--------+--------+",
                "| m    | e      | amazon.titan-text-premier-v1:0 | default | answer | word   | ready  |",
                "+------+--------+--------------------------------+---------+--------+--------+--------+",
            ],
            &models
        );
    }
    // A DataFrame made through one clone runs the model created through another.
    let df = first
        .sql("SELECT m.answer FROM (VALUES ('yes')) AS d(word) JOIN m")
        .await
        .expect("plans");
    let answers = df.collect().await.expect("runs");
    assert_batches_eq!(
        [
            "+---------------------------------------------------------------------------+",
            "| answer                                                                    |",
            "+---------------------------------------------------------------------------+",
            "| Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): Say yes |",
            "+---------------------------------------------------------------------------+",
        ],
        &answers
    );
    let ext = |ctx: &SessionContext| BedrockExtension::of_session(ctx).expect("installed");
    assert!(Arc::ptr_eq(&ext(&first), &ext(&second)));
    assert!(Arc::ptr_eq(&ext(&first), &ext(&from_state)));
}

#[tokio::test]
async fn the_applications_query_planner_still_plans_its_queries() {
    let emulator = emulator().await;
    let planner = Arc::new(CountingPlanner::default());
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_query_planner(Arc::clone(&planner) as _)
        .with_bedrock()
        // Installing twice installs once.
        .with_bedrock()
        .build();
    let ctx = SessionContext::new_with_state(state);
    use_emulator(&ctx, &emulator);

    let plain = collect(&ctx, "SELECT 1 + 1 AS two").await;
    assert_batches_eq!(
        ["+-----+", "| two |", "+-----+", "| 2   |", "+-----+"],
        &plain
    );
    assert_eq!(planner.plans.load(Ordering::SeqCst), 1);

    collect(
        &ctx,
        "CREATE ML_ENGINE e FROM bedrock USING region_name = 'us-east-1', api_key = 'k'",
    )
    .await;
    collect(
        &ctx,
        "CREATE MODEL c PREDICT answer USING engine = 'e', mode = 'conversational', question_column = 'q'",
    )
    .await;
    // A model node (conversational mode) is planned by the extension's planner.
    let answers = collect(
        &ctx,
        "SELECT m.answer FROM (VALUES ('a'), ('b')) AS d(q) JOIN c AS m",
    )
    .await;
    assert_batches_eq!(
        [
            "+---------------------------------------------------------------------+",
            "| answer                                                              |",
            "+---------------------------------------------------------------------+",
            "|                                                                     |",
            "| Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 2): a |",
            "| b                                                                   |",
            "+---------------------------------------------------------------------+",
        ],
        &answers
    );
    let rules = ctx
        .state()
        .analyzer()
        .rules
        .iter()
        .filter(|r| r.name() == "bedrock_model_relations")
        .count();
    assert_eq!(rules, 1, "the rewrite is installed once");
}

/// A statement's result as text: the pretty table, or the error.
async fn outcome(result: Result<datafusion::dataframe::DataFrame>) -> String {
    let batches = match result {
        Ok(df) => df.collect().await,
        Err(e) => Err(e),
    };
    match batches {
        Ok(batches) => datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .map_or_else(|e| format!("format error: {e}"), |t| t.to_string()),
        Err(e) => format!("Error: {e}"),
    }
}

#[tokio::test]
async fn plain_sql_through_the_extension_is_plain_datafusion() {
    // Statement sequences of DataFusion's own sqllogictest files that once behaved differently
    // through the extension's parser front; each runs on a fresh session both ways.
    let cases: &[&[&str]] = &[
        &[
            "SET datafusion.sql_parser.dialect = databricks",
            "SELECT array_filter([1, 2, 3, 4, 5], v -> v > 2) AS big",
        ],
        &[
            "SET datafusion.sql_parser.dialect = 'mysql'",
            "select interval '1' + '1' month AS m",
        ],
        &[
            "SET datafusion.sql_parser.enable_ident_normalization = false",
            "CREATE TABLE TABLE_WITHOUT_NORMALIZATION (FIELD1 BIGINT, FIELD2 BIGINT)",
            "DESCRIBE TABLE_WITHOUT_NORMALIZATION",
        ],
        &[
            "CREATE TABLE t (s1 struct(a int, b varchar)) AS VALUES (struct(1, 'x'))",
            "SELECT s1['b'] AS b FROM t",
        ],
        &["SELECT substr(str => 'hello world', start_pos => 7, length => 5)"],
        &["SELECT substr('hello world', 7, 5) AS s"],
        &["SELEC 1"],
        &[""],
        &[" ; "],
        &["DESCRIBE no_such_table"],
        &[
            "CREATE TABLE models (a INT)",
            "DESCRIBE models",
            "SELECT * FROM models",
        ],
        &[
            "SET datafusion.sql_parser.dialect = 'no_such_dialect'",
            "SELECT 1",
        ],
    ];
    for statements in cases {
        let plain = SessionContext::new();
        let ours = bedrock_session();
        for sql in *statements {
            let expected = outcome(plain.sql(sql).await).await;
            let actual = outcome(execute_sql(&ours, sql).await).await;
            assert_eq!(actual, expected, "{statements:?}: {sql}");
        }
    }
}

#[tokio::test]
async fn several_statements_in_one_text_run_in_order() {
    // Where `SessionContext::sql` takes one statement, `execute_sql` runs a script.
    let ctx = bedrock_session();
    let last = collect(
        &ctx,
        "CREATE TABLE t AS VALUES (1), (2); INSERT INTO t VALUES (3); SELECT sum(column1) AS total FROM t",
    )
    .await;
    assert_batches_eq!(
        [
            "+-------+",
            "| total |",
            "+-------+",
            "| 6     |",
            "+-------+"
        ],
        &last
    );
}

/// A scalar function that answers its own name, for telling functions apart.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Named {
    name: &'static str,
    aliases: Vec<String>,
    signature: datafusion::logical_expr::Signature,
}

impl datafusion::logical_expr::ScalarUDFImpl for Named {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        _args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> Result<datafusion::logical_expr::ColumnarValue> {
        Ok(datafusion::logical_expr::ColumnarValue::Scalar(
            datafusion::common::ScalarValue::from(self.name),
        ))
    }
}

fn named(name: &'static str, aliases: &[&str]) -> datafusion::logical_expr::ScalarUDF {
    datafusion::logical_expr::ScalarUDF::new_from_impl(Named {
        name,
        aliases: aliases.iter().map(|a| (*a).to_string()).collect(),
        signature: datafusion::logical_expr::Signature::nullary(
            datafusion::logical_expr::Volatility::Immutable,
        ),
    })
}

#[tokio::test]
async fn adding_the_extension_to_an_existing_context_keeps_its_functions_and_settings() {
    // Regression: rebuilding a state re-registers functions in hash order, so a name that is
    // one function's name and another's alias (Spark's `array` and DataFusion's `make_array`
    // have this shape) could resolve to either, differently from run to run.
    for _ in 0..20 {
        let app = SessionContext::new();
        app.register_udf(named("first", &["shared", "other"]));
        app.register_udf(named("shared", &[]));
        let before = app
            .state()
            .config()
            .options()
            .catalog
            .create_default_catalog_and_schema;
        let ctx = app.with_bedrock();
        let answers = collect(&ctx, "SELECT shared() AS s, other() AS o, first() AS f").await;
        assert_batches_eq!(
            [
                "+--------+-------+-------+",
                "| s      | o     | f     |",
                "+--------+-------+-------+",
                "| shared | first | first |",
                "+--------+-------+-------+",
            ],
            &answers
        );
        let after = ctx
            .state()
            .config()
            .options()
            .catalog
            .create_default_catalog_and_schema;
        assert!(before, "a new session creates its default catalog");
        assert_eq!(after, before);
    }
}

#[tokio::test]
async fn ai_aggregates_and_scores_run_through_datafusions_own_sql() {
    let emulator = emulator().await;
    let ctx = bedrock_session();
    use_emulator(&ctx, &emulator);
    let statement = "CREATE ML_ENGINE e FROM bedrock USING aws_access_key_id = 'AKIDEXAMPLE', aws_secret_access_key = 'emulator-secret'";
    collect(&ctx, statement).await;
    ctx.sql(
        "CREATE TABLE reviews(product VARCHAR, review VARCHAR) AS VALUES \
         ('phone', 'late delivery'), ('phone', 'screen cracked'), ('phone', 'late late delivery'), \
         ('laptop', 'fan is loud')",
    )
    .await
    .expect("plans")
    .collect()
    .await
    .expect("runs");
    // DataFusion's own `sql`: the analyzer rules plan the aggregates, nothing else is needed.
    let answers = ctx
        .sql(
            "SELECT product, count(*) AS n, \
                    ai_agg('amazon.nova-micro-v1:0', review, 'List the complaints.') AS summary, \
                    ai_rank('amazon.nova-micro-v1:0', review, 'late delivery', 2) AS worst, \
                    max(ai_score('amazon.nova-micro-v1:0', review, 'late delivery')) AS score \
             FROM reviews GROUP BY product ORDER BY product",
        )
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    assert_batches_eq!(
        [
            "+---------+---+-------------+-------------------------------------+-------+",
            "| product | n | summary     | worst                               | score |",
            "+---------+---+-------------+-------------------------------------+-------+",
            "| laptop  | 1 | all: 1 rows | [fan is loud]                       | 0.0   |",
            "| phone   | 3 | all: 3 rows | [late late delivery, late delivery] | 1.0   |",
            "+---------+---+-------------+-------------------------------------+-------+",
        ],
        &answers
    );
    // One ai_agg request per group; one score per distinct text (ai_rank's pre-scores ask
    // what ai_score asked, in the same words, and are served by the cache); one refinement,
    // for the group with more than one text.
    assert_eq!(
        crate::support::converse_calls(&emulator, "amazon.nova-micro-v1:0"),
        2 + 4 + 1
    );
}
