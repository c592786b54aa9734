//! A semantic join in plain SQL: every support question is matched with the help article whose
//! embedding is closest, using `ai_embed` and `cosine_similarity` against the built-in Bedrock
//! emulator (its embeddings are a bag of words, so texts sharing words are close).
//!
//! ```sh
//! cargo run --example semantic_join
//! ```

use datafusion::prelude::SessionContext;
use datafusion_bedrock::BedrockContext;
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig, StaticCredential};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The emulator verifies SigV4 signatures made with this (made-up) key pair.
    let emulator = Emulator::start(EmulatorConfig {
        credentials: vec![StaticCredential::new("AKIDEXAMPLE", "emulator-secret")],
        ..EmulatorConfig::default()
    })
    .await?;
    let ctx = BedrockContext::new(SessionContext::new()).with_default_endpoint(emulator.url());

    let setup = [
        "CREATE ML_ENGINE bedrock_engine FROM bedrock USING \
         aws_access_key_id = 'AKIDEXAMPLE', aws_secret_access_key = 'emulator-secret', \
         region_name = 'us-east-1', default = true",
        "CREATE TABLE articles(article_id INT, title VARCHAR) AS VALUES \
         (1, 'How to reset a forgotten password'), \
         (2, 'Shipping times for international parcels'), \
         (3, 'Refund policy for damaged items')",
        "CREATE TABLE questions(question_id INT, question VARCHAR) AS VALUES \
         (10, 'I forgot my password, how do I reset it?'), \
         (20, 'My parcel was damaged: can I get a refund?'), \
         (30, 'What are shipping times to Canada?')",
    ];
    for statement in setup {
        ctx.sql(statement).await?.collect().await?;
    }

    let matches = ctx
        .sql(
            "WITH a AS (SELECT article_id, title, \
                    ai_embed('amazon.titan-embed-text-v2:0', title, '{\"dimensions\": 256}') AS v \
                    FROM articles), \
                  q AS (SELECT question_id, question, \
                    ai_embed('amazon.titan-embed-text-v2:0', question, '{\"dimensions\": 256}') AS v \
                    FROM questions), \
                  scored AS (SELECT question, title, cosine_similarity(q.v, a.v) AS score, \
                    row_number() OVER (PARTITION BY question_id \
                                       ORDER BY cosine_similarity(q.v, a.v) DESC) AS rank \
                    FROM q CROSS JOIN a) \
             SELECT question, title AS best_article, round(score, 3) AS score \
             FROM scored WHERE rank = 1 ORDER BY question",
        )
        .await?;
    matches.show().await?;

    ctx.sql("SELECT engine, model, requests, input_tokens, estimated_usd FROM bedrock_usage()")
        .await?
        .show()
        .await?;

    emulator.shutdown().await;
    Ok(())
}
