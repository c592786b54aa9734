//! A semantic join in plain SQL: every support question is matched with the help article whose
//! embedding is closest, with `ai_embed` and `cosine_similarity`; then the same join asked of a
//! model with `ai_filter`, which the semantic-join rewrite
//! (`SET bedrock.semantic_join_embedding_model`) asks only about each question's nearest article
//! instead of every pair.
//!
//! ```sh
//! cargo run --example semantic_join                              # the built-in emulator
//! BEDROCK_EXAMPLES_REAL=1 AWS_PROFILE=… cargo run --example semantic_join   # Amazon Bedrock
//! ```
//!
//! The emulator's embeddings are bags of words, so there texts sharing words are close; Amazon
//! Bedrock's models match by meaning. The emulator answers Yes to a prompt with the word "yes",
//! so there the `ai_filter` keeps every candidate pair; a real model judges each one.

use datafusion_bedrock::BedrockContext;
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig, StaticCredential};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ctx = BedrockContext::new();
    let (ctx, emulator, using) = if std::env::var_os("BEDROCK_EXAMPLES_REAL").is_some() {
        eprintln!("Calling Amazon Bedrock with your AWS credentials: this is billed.");
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        (ctx, None, format!("region_name = '{region}'"))
    } else {
        // The emulator verifies SigV4 signatures made with this (made-up) key pair.
        let emulator = Emulator::start(EmulatorConfig {
            credentials: vec![StaticCredential::new("AKIDEXAMPLE", "emulator-secret")],
            ..EmulatorConfig::default()
        })
        .await?;
        eprintln!(
            "Answers are emulated by the built-in Bedrock emulator at {}.",
            emulator.url()
        );
        let ctx = ctx.with_default_endpoint(emulator.url());
        let using = "aws_access_key_id = 'AKIDEXAMPLE', aws_secret_access_key = 'emulator-secret', region_name = 'us-east-1'".to_string();
        (ctx, Some(emulator), using)
    };

    let setup = [
        format!("CREATE ML_ENGINE bedrock_engine FROM bedrock USING {using}, default = true"),
        "CREATE TABLE articles(article_id INT, title VARCHAR) AS VALUES \
         (1, 'How to reset a forgotten password'), \
         (2, 'Shipping times for international parcels'), \
         (3, 'Refund policy for damaged items')"
            .to_string(),
        "CREATE TABLE questions(question_id INT, question VARCHAR) AS VALUES \
         (10, 'I forgot my password, how do I reset it?'), \
         (20, 'My parcel was damaged: can I get a refund?'), \
         (30, 'What are shipping times to Canada?')"
            .to_string(),
    ];
    for statement in &setup {
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

    // One candidate article per question: 3 ai_filter requests instead of 3 × 3.
    for statement in [
        "SET bedrock.semantic_join_embedding_model = 'amazon.titan-embed-text-v2:0'",
        "SET bedrock.semantic_join_candidates = 1",
    ] {
        ctx.sql(statement).await?.collect().await?;
    }
    ctx.sql(
        "SELECT question, title AS answering_article FROM questions q JOIN articles a \
         ON ai_filter('amazon.nova-micro-v1:0', 'Does the article ' || a.title || \
                      ' answer the question ' || q.question || '? Say yes or no.') \
         ORDER BY question",
    )
    .await?
    .show()
    .await?;

    ctx.sql("SELECT engine, model, requests, input_tokens, estimated_usd FROM bedrock_usage()")
        .await?
        .show()
        .await?;

    if let Some(emulator) = emulator {
        emulator.shutdown().await;
    }
    Ok(())
}
