//! The extension on a Ballista cluster: a scheduler and two executors started in this process
//! (`LocalCluster`), a client session that sends its queries to them (`cluster_session`), the
//! seed document's JOIN over `examples/files` and an AI function, and how many requests each
//! executor made. Separate processes work the same way: `datafusion-bedrock scheduler`,
//! `datafusion-bedrock executor` and `datafusion-bedrock --cluster df://HOST:PORT`.
//!
//! ```sh
//! cargo run --example cluster                                   # the built-in emulator
//! BEDROCK_EXAMPLES_REAL=1 AWS_PROFILE=… cargo run --example cluster   # Amazon Bedrock
//! ```

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionConfig;
use datafusion_bedrock::distributed::{LocalCluster, cluster_session};
use datafusion_bedrock::{BedrockExtension, SessionStateBuilderBedrock, execute_sql};

#[path = "shared/bedrock.rs"]
mod shared;
use shared::bedrock_endpoint;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Two executors with two task slots each; every executor builds its own engines from the
    // specs in the plans it runs.
    let cluster = LocalCluster::start(2, 2).await?;

    // The client's session: the extension, then the cluster.
    let state = SessionStateBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(4))
        .with_default_features()
        .with_bedrock()
        .build();
    let extension = BedrockExtension::of_state(&state)?;
    let (emulator, using) = bedrock_endpoint(&extension).await?;
    let ctx = cluster_session(cluster.address(), state).await?;

    let files = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/files");
    for sql in [
        format!("CREATE ML_ENGINE bedrock_engine FROM bedrock USING {using}"),
        "CREATE MODEL bedrock_default_model PREDICT answer USING engine = 'bedrock_engine', prompt_template = 'Answer the users input in a helpful way: {{question}}'".to_string(),
        format!("CREATE EXTERNAL TABLE questions STORED AS CSV LOCATION '{files}/unrelated_questions.csv' OPTIONS ('format.has_header' 'true')"),
    ] {
        execute_sql(&ctx, &sql).await?.collect().await?;
    }

    // Planned by the scheduler, answered by the executors.
    execute_sql(
        &ctx,
        "SELECT d.question, m.answer FROM questions AS d JOIN bedrock_default_model AS m",
    )
    .await?
    .show()
    .await?;
    execute_sql(
        &ctx,
        "SELECT question, ai_classify('bedrock_default_model', question, ['capital', 'planet', 'other']) AS topic FROM questions",
    )
    .await?
    .show()
    .await?;
    println!(
        "requests made by each executor: {:?}",
        cluster.executor_requests()
    );
    if let Some(emulator) = emulator {
        emulator.shutdown().await;
    }
    Ok(())
}
