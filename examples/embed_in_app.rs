//! The extension inside an application: the application builds its own DataFusion session
//! (its configuration, its table), adds the extension with one builder call, creates models
//! with `execute_sql`, queries them with DataFusion's own `ctx.sql`, and refines the results
//! with the DataFrame API.
//!
//! ```sh
//! cargo run --example embed_in_app                              # the built-in emulator
//! BEDROCK_EXAMPLES_REAL=1 AWS_PROFILE=… cargo run --example embed_in_app   # Amazon Bedrock
//! ```

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext, col, lit};
use datafusion_bedrock::{BedrockExtension, SessionStateBuilderBedrock, execute_sql};

#[path = "shared/bedrock.rs"]
mod shared;
use shared::bedrock_endpoint;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The application's session, with the extension added by one builder call.
    let state = SessionStateBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(4))
        .with_default_features()
        .with_bedrock()
        .build();
    let ctx = SessionContext::new_with_state(state);
    let extension = BedrockExtension::of_session(&ctx)?;
    let (emulator, using) = bedrock_endpoint(&extension).await?;

    // The application's own data: any table DataFusion can read.
    let reviews = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("review", DataType::Utf8, false),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec![
                "Arrived on time and works perfectly.",
                "The strap broke after two days.",
                "Does what it says.",
            ])),
        ],
    )?;
    ctx.register_batch("reviews", reviews)?;

    // The extension's statements run through `execute_sql`.
    execute_sql(
        &ctx,
        &format!("CREATE ML_ENGINE bedrock FROM bedrock USING {using}"),
    )
    .await?
    .show()
    .await?;
    execute_sql(
        &ctx,
        "CREATE MODEL sentiment PREDICT sentiment USING
             engine = 'bedrock',
             model_id = 'amazon.nova-micro-v1:0',
             prompt_template = 'Answer positive, negative or neutral. The review: {{review}}',
             max_tokens = 40",
    )
    .await?
    .show()
    .await?;

    // DataFusion's own SQL: every review joined with the model, one answer per row.
    let answers = ctx
        .sql("SELECT r.id, m.sentiment FROM reviews AS r JOIN sentiment AS m")
        .await?;

    // The DataFrame API on top of it.
    answers
        .filter(col("id").gt_eq(lit(2)))?
        .sort(vec![col("id").sort(true, false)])?
        .show()
        .await?;

    if let Some(emulator) = emulator {
        emulator.shutdown().await;
    }
    Ok(())
}
