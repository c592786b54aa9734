//! A semantic join: support tickets matched to the team whose description is nearest in
//! meaning (Titan Embeddings v2 vectors, cosine similarity), then a model drafts a reply for
//! each routed ticket. The join itself is SQL over a similarity table.
//!
//! ```sh
//! cargo run --example semantic_join                              # the built-in emulator
//! BEDROCK_EXAMPLES_REAL=1 AWS_PROFILE=… cargo run --example semantic_join   # Amazon Bedrock
//! ```
//!
//! The emulator's vectors are deterministic and reflect the words texts share, so tickets are
//! routed by shared vocabulary there; Amazon Bedrock's models route by meaning.

use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::SessionContext;
use datafusion_bedrock::BedrockContext;
use datafusion_bedrock::bedrock::families::EmbedOptions;
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig};

const EMBEDDING_MODEL: &str = "amazon.titan-embed-text-v2:0";

/// A context whose engines reach the emulator, unless `BEDROCK_EXAMPLES_REAL` is set; and the
/// engine's `USING` clause for that choice.
async fn bedrock() -> Result<(BedrockContext, Option<Emulator>, String), Box<dyn std::error::Error>>
{
    let ctx = BedrockContext::new(SessionContext::new());
    if std::env::var_os("BEDROCK_EXAMPLES_REAL").is_some() {
        eprintln!("Calling Amazon Bedrock with your AWS credentials: this is billed.");
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        return Ok((ctx, None, format!("region_name = '{region}'")));
    }
    let emulator = Emulator::start(EmulatorConfig::default()).await?;
    eprintln!(
        "Answers are emulated by the built-in Bedrock emulator at {}.",
        emulator.url()
    );
    let ctx = ctx.with_default_endpoint(emulator.url());
    Ok((
        ctx,
        Some(emulator),
        "api_key = 'emulated', region_name = 'us-east-1'".into(),
    ))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator == 0.0 {
        0.0
    } else {
        dot / denominator
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (ctx, emulator, using) = bedrock().await?;
    ctx.sql(&format!(
        "CREATE ML_ENGINE bedrock FROM bedrock USING {using}"
    ))
    .await?
    .collect()
    .await?;
    let engine = ctx
        .catalog()
        .engine("bedrock")
        .ok_or("the engine was just created")?;

    let tickets = [
        "I was charged twice on my last invoice",
        "The mobile app crashes when I upload a photo",
        "I cannot reset my password to log in",
    ];
    let teams = [
        (
            "billing",
            "billing: invoice, charged twice, refund, payment",
        ),
        ("mobile", "mobile: the app crashes, upload a photo, phone"),
        ("accounts", "accounts: reset my password, log in, sign in"),
    ];

    // One embedding call per distinct text (the engine batches, deduplicates and caches).
    let texts: Vec<Option<String>> = tickets
        .iter()
        .map(|t| Some((*t).to_string()))
        .chain(teams.iter().map(|(_, d)| Some((*d).to_string())))
        .collect();
    let vectors = engine
        .embed(EMBEDDING_MODEL, &texts, &EmbedOptions::default())
        .await?
        .into_iter()
        .map(|v| match v {
            Some(Ok(vector)) => Ok(vector),
            Some(Err(failure)) => Err(failure.to_string()),
            None => Err("no vector".to_string()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (ticket_vectors, team_vectors) = vectors.split_at(tickets.len());

    // The similarity of every (ticket, team) pair, as a table.
    let (mut ticket_col, mut team_col, mut score_col) = (Vec::new(), Vec::new(), Vec::new());
    for (ticket, tv) in tickets.iter().zip(ticket_vectors) {
        for ((team, _), mv) in teams.iter().zip(team_vectors) {
            ticket_col.push(*ticket);
            team_col.push(*team);
            score_col.push(cosine(tv, mv));
        }
    }
    let similarity = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("ticket", DataType::Utf8, false),
            Field::new("team", DataType::Utf8, false),
            Field::new("score", DataType::Float64, false),
        ])),
        vec![
            Arc::new(StringArray::from(ticket_col)),
            Arc::new(StringArray::from(team_col)),
            Arc::new(Float64Array::from(score_col)),
        ],
    )?;
    ctx.session().register_batch("similarity", similarity)?;

    // The semantic join: each ticket with its nearest team.
    ctx.sql(
        "CREATE VIEW routed AS
         SELECT ticket, team FROM (
             SELECT ticket, team,
                    row_number() OVER (PARTITION BY ticket ORDER BY score DESC) AS rank
             FROM similarity)
         WHERE rank = 1",
    )
    .await?
    .collect()
    .await?;
    ctx.sql("SELECT * FROM routed ORDER BY team")
        .await?
        .show()
        .await?;

    // And a drafted reply per routed ticket.
    ctx.sql(
        "CREATE MODEL reply PREDICT draft USING
             engine = 'bedrock',
             model_id = 'amazon.nova-micro-v1:0',
             prompt_template = 'As the {{team}} team, draft a two-line reply to: {{ticket}}',
             max_tokens = 120",
    )
    .await?
    .collect()
    .await?;
    ctx.sql("SELECT d.team, m.draft FROM routed AS d JOIN reply AS m")
        .await?
        .show()
        .await?;

    if let Some(emulator) = emulator {
        emulator.shutdown().await;
    }
    Ok(())
}
