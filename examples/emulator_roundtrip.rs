//! Starts the built-in Bedrock emulator and makes a Converse round trip with the real AWS SDK.
//!
//! ```sh
//! cargo run --example emulator_roundtrip
//! ```

use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message,
};
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig, StaticCredential};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The emulator verifies SigV4 signatures made with this (made-up) key pair.
    let config = EmulatorConfig {
        credentials: vec![StaticCredential::new("AKIDEXAMPLE", "emulator-secret")],
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::start(config).await?;
    println!(
        "Bedrock emulator listening on {} (answers are emulated)",
        emulator.url()
    );

    let sdk_config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
        .region(aws_sdk_bedrockruntime::config::Region::new("us-east-1"))
        .endpoint_url(emulator.url())
        .credentials_provider(aws_sdk_bedrockruntime::config::Credentials::new(
            "AKIDEXAMPLE",
            "emulator-secret",
            None,
            None,
            "example",
        ))
        .build();
    let client = aws_sdk_bedrockruntime::Client::from_conf(sdk_config);

    let question = "What is the capital of Sweden?";
    let response = client
        .converse()
        .model_id("amazon.titan-text-premier-v1:0")
        .messages(
            Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text(question.to_string()))
                .build()?,
        )
        .inference_config(
            InferenceConfiguration::builder()
                .max_tokens(100)
                .temperature(0.3)
                .build(),
        )
        .send()
        .await?;
    let answer = response
        .output()
        .and_then(|o| o.as_message().ok())
        .and_then(|m| m.content().first())
        .and_then(|c| c.as_text().ok())
        .ok_or("the response carried no text")?;
    let usage = response.usage().ok_or("the response carried no usage")?;
    println!("question: {question}");
    println!("answer:   {answer}");
    println!(
        "tokens:   {} in, {} out; stop reason: {}",
        usage.input_tokens(),
        usage.output_tokens(),
        response.stop_reason()
    );
    let stats = emulator.stats().snapshot();
    println!("emulator: {} request(s) served", stats.total());
    emulator.shutdown().await;
    Ok(())
}
