//! What every example shares: a `BedrockContext` reaching the built-in emulator, or Amazon
//! Bedrock when `BEDROCK_EXAMPLES_REAL` is set.

#![allow(dead_code)] // Each example uses one of the two.

use datafusion_bedrock::emulator::{Emulator, EmulatorConfig};
use datafusion_bedrock::{BedrockContext, BedrockExtension};

/// Points the session's engines at the emulator, unless `BEDROCK_EXAMPLES_REAL` is set; returns
/// the emulator and the engine's `USING` clause for that choice.
pub async fn bedrock_endpoint(
    extension: &BedrockExtension,
) -> Result<(Option<Emulator>, String), Box<dyn std::error::Error>> {
    if std::env::var_os("BEDROCK_EXAMPLES_REAL").is_some() {
        eprintln!("Calling Amazon Bedrock with your AWS credentials: this is billed.");
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        return Ok((None, format!("region_name = '{region}'")));
    }
    let emulator = Emulator::start(EmulatorConfig::default()).await?;
    eprintln!(
        "Answers are emulated by the built-in Bedrock emulator at {}.",
        emulator.url()
    );
    extension.set_default_endpoint(Some(emulator.url().to_string()));
    Ok((
        Some(emulator),
        "api_key = 'emulated', region_name = 'us-east-1'".into(),
    ))
}

/// A new session with the extension whose engines reach the emulator, unless
/// `BEDROCK_EXAMPLES_REAL` is set; and the engine's `USING` clause for that choice.
pub async fn bedrock()
-> Result<(BedrockContext, Option<Emulator>, String), Box<dyn std::error::Error>> {
    let ctx = BedrockContext::new();
    let (emulator, using) = bedrock_endpoint(ctx.extension()).await?;
    Ok((ctx, emulator, using))
}
