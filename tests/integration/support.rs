//! Shared helpers: starting the emulator and building SDK clients pointed at it.

use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use aws_smithy_types::retry::RetryConfig;
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig, StaticCredential};

pub const ACCESS_KEY: &str = "AKIDEMULATOR";
pub const SECRET_KEY: &str = "emulator/secret/key";

/// An emulator that verifies signatures made with [`ACCESS_KEY`] / [`SECRET_KEY`].
pub async fn signed_emulator(mut config: EmulatorConfig) -> Emulator {
    config.credentials = vec![StaticCredential::new(ACCESS_KEY, SECRET_KEY)];
    Emulator::start(config).await.expect("emulator starts")
}

/// Static credentials for the SDK.
pub fn credentials(key: &str, secret: &str, token: Option<&str>) -> Credentials {
    Credentials::new(key, secret, token.map(str::to_string), None, "tests")
}

/// A runtime client with the given credentials and SDK retries off, so every attempt the
/// emulator sees is one the test made.
pub fn runtime_with(url: &str, creds: Credentials) -> aws_sdk_bedrockruntime::Client {
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(creds)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(config)
}

/// A runtime client signing with the emulator's configured key pair.
pub fn runtime(url: &str) -> aws_sdk_bedrockruntime::Client {
    runtime_with(url, credentials(ACCESS_KEY, SECRET_KEY, None))
}

/// A control-plane client signing with the emulator's configured key pair.
pub fn control(url: &str) -> aws_sdk_bedrock::Client {
    let config = aws_sdk_bedrock::Config::builder()
        .behavior_version(aws_sdk_bedrock::config::BehaviorVersion::latest())
        .region(aws_sdk_bedrock::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(credentials(ACCESS_KEY, SECRET_KEY, None))
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_bedrock::Client::from_conf(config)
}

/// A one-block user message.
pub fn user(text: &str) -> Message {
    turn(ConversationRole::User, text)
}

/// A one-block message of a role.
pub fn turn(role: ConversationRole, text: &str) -> Message {
    Message::builder()
        .role(role)
        .content(ContentBlock::Text(text.to_string()))
        .build()
        .expect("role and content are set")
}

/// The text of a Converse response.
pub fn converse_text(out: &aws_sdk_bedrockruntime::operation::converse::ConverseOutput) -> String {
    out.output()
        .and_then(|o| o.as_message().ok())
        .map(|m| {
            m.content()
                .iter()
                .filter_map(|c| c.as_text().ok().cloned())
                .collect::<String>()
        })
        .expect("a message output")
}

/// The emulator's answer format, for expected values.
pub fn expected_answer(
    model: &str,
    messages: usize,
    blocks: usize,
    system: usize,
    text: &str,
) -> String {
    let system = if system > 0 {
        format!(", system: {system}")
    } else {
        String::new()
    };
    format!("Emulated {model} (messages: {messages}, blocks: {blocks}{system}): {text}")
}

/// Runs one statement and formats its result as a pretty table (panics naming the SQL).
pub async fn run(ctx: &datafusion_bedrock::BedrockContext, sql: &str) -> String {
    let df = ctx.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batches = df.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .expect("format")
        .to_string()
}

/// Runs one statement through the extension's SQL front on any session and formats its result
/// as a pretty table (panics naming the SQL).
pub async fn pretty(ctx: &datafusion::prelude::SessionContext, sql: &str) -> String {
    let batches = datafusion_bedrock::execute_sql(ctx, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .expect("format")
        .to_string()
}

/// Runs one statement through the extension's SQL front on any session and collects its
/// batches (panics naming the SQL).
pub async fn collect(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
) -> Vec<datafusion::arrow::record_batch::RecordBatch> {
    datafusion_bedrock::execute_sql(ctx, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Converse calls the emulator has served for a model.
pub fn converse_calls(emulator: &Emulator, model: &str) -> u64 {
    emulator
        .stats()
        .snapshot()
        .count(Some(model), Some("Converse"), None)
}
