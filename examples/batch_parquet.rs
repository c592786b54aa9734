//! A batch job over Parquet: a model writes one line per product, and the results are written
//! back to Parquet with `COPY … TO`. Duplicate prompts are sent once, so 1,000 rows with 50
//! distinct products cost 50 requests.
//!
//! ```sh
//! cargo run --example batch_parquet                              # the built-in emulator
//! BEDROCK_EXAMPLES_REAL=1 AWS_PROFILE=… cargo run --example batch_parquet   # Amazon Bedrock
//! ```

use datafusion::prelude::ParquetReadOptions;

#[path = "shared/bedrock.rs"]
mod shared;
use shared::bedrock;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (ctx, emulator, using) = bedrock().await?;
    let dir = std::env::temp_dir().join(format!("datafusion-bedrock-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("products.parquet");
    let output = dir.join("ads.parquet");

    // The input: 1,000 rows over 50 distinct products, written as Parquet.
    ctx.sql(&format!(
        "COPY (SELECT n AS id, 'product ' || (n % 50) AS product FROM generate_series(1, 1000) AS t(n))
         TO '{}' STORED AS PARQUET",
        input.display()
    ))
    .await?
    .collect()
    .await?;
    ctx.session()
        .register_parquet(
            "products",
            input.display().to_string(),
            ParquetReadOptions::default(),
        )
        .await?;

    ctx.sql(&format!(
        "CREATE ML_ENGINE bedrock FROM bedrock USING {using}, max_concurrency = 16"
    ))
    .await?
    .collect()
    .await?;
    ctx.sql(
        "CREATE MODEL ad_writer PREDICT ad USING
             engine = 'bedrock',
             model_id = 'amazon.nova-micro-v1:0',
             prompt_template = 'Write a one-line ad for {{product}}.',
             max_tokens = 60",
    )
    .await?
    .collect()
    .await?;

    // The job: every row through the model, straight to Parquet.
    ctx.sql(&format!(
        "COPY (SELECT p.id, p.product, m.ad FROM products AS p JOIN ad_writer AS m)
         TO '{}' STORED AS PARQUET",
        output.display()
    ))
    .await?
    .show()
    .await?;

    ctx.session()
        .register_parquet(
            "ads",
            output.display().to_string(),
            ParquetReadOptions::default(),
        )
        .await?;
    ctx.sql("SELECT count(*) AS rows, count(DISTINCT ad) AS distinct_ads FROM ads")
        .await?
        .show()
        .await?;
    ctx.sql("SELECT id, ad FROM ads ORDER BY id LIMIT 3")
        .await?
        .show()
        .await?;

    let engine = ctx
        .catalog()
        .engine("bedrock")
        .ok_or("the engine was just created")?;
    for usage in engine.usage() {
        println!(
            "{}: {} requests, {} cache hits, {} deduplicated rows, {} input + {} output tokens, estimated ${:.4}",
            usage.model,
            usage.requests,
            usage.cache_hits,
            usage.deduplicated,
            usage.input_tokens,
            usage.output_tokens,
            usage.estimated_cost_usd.unwrap_or_default()
        );
        // 50 distinct prompts: 50 requests, whatever the row count.
        if usage.requests != 50 {
            return Err(format!("expected 50 requests, made {}", usage.requests).into());
        }
    }
    std::fs::remove_dir_all(&dir)?;
    if let Some(emulator) = emulator {
        emulator.shutdown().await;
    }
    Ok(())
}
