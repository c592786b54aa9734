//! What every example shares: a `BedrockContext` reaching the built-in emulator, or Amazon
//! Bedrock when `BEDROCK_EXAMPLES_REAL` is set.

use datafusion_bedrock::BedrockContext;
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig};

/// A context whose engines reach the emulator, unless `BEDROCK_EXAMPLES_REAL` is set; and the
/// engine's `USING` clause for that choice.
pub async fn bedrock()
-> Result<(BedrockContext, Option<Emulator>, String), Box<dyn std::error::Error>> {
    let ctx = BedrockContext::new();
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
