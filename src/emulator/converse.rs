//! The Converse API: request validation, responses, and `converse-stream` events.

use serde_json::{Value, json};

use super::answer::{Conversation, Reply, Role, StopReason, Turn, fnv1a, stream_pieces};
use super::catalog::CatalogModel;
use super::prompt_cache::{CachePlan, CachePoints, CacheUse, cache_point};
use super::wire::ApiError;

/// A forced tool call (`toolChoice` `any` or `tool`): the model answers with `toolUse`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolRequest {
    pub name: String,
    pub schema: Value,
}

/// A validated Converse request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConverseRequest {
    pub conversation: Conversation,
    pub max_tokens: Option<u32>,
    pub stop_sequences: Vec<String>,
    pub tool: Option<ToolRequest>,
    /// The service tier and latency asked for (`serviceTier`, `performanceConfig`).
    pub tiering: Tiering,
    /// The prompt caching asked for (`cachePoint` blocks); `None` when the request has none.
    pub cache: Option<CachePlan>,
}

/// A Bedrock service tier (`serviceTier.type` in Converse, the `X-Amzn-Bedrock-Service-Tier`
/// header in `InvokeModel`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum ServiceTier {
    /// The tier of a request that names none.
    #[default]
    Default,
    /// Cheaper and slower: the response waits `LoadModel::latency` once more.
    Flex,
    /// Served like `default`.
    Priority,
    /// Always refused: the emulated account has no reserved capacity.
    Reserved,
}

impl ServiceTier {
    const ALL: [Self; 4] = [Self::Default, Self::Flex, Self::Priority, Self::Reserved];

    /// The wire name (`default`, `flex`, `priority`, `reserved`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Flex => "flex",
            Self::Priority => "priority",
            Self::Reserved => "reserved",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// The latency a request asks for (`performanceConfig.latency` in Converse, the
/// `X-Amzn-Bedrock-PerformanceConfig-Latency` header in `InvokeModel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Latency {
    Standard,
    Optimized,
}

impl Latency {
    const ALL: [Self; 2] = [Self::Standard, Self::Optimized];

    /// The wire name (`standard`, `optimized`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Optimized => "optimized",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == name)
    }
}

/// The header naming the service tier of an `InvokeModel` request and response.
pub(crate) const SERVICE_TIER_HEADER: &str = "X-Amzn-Bedrock-Service-Tier";
/// The header naming the latency of an `InvokeModel` request and response.
pub(crate) const LATENCY_HEADER: &str = "X-Amzn-Bedrock-PerformanceConfig-Latency";

/// The service tier and latency of a request, validated for its model. The default is what a
/// request naming neither gets: tier `default`, no `performanceConfig`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tiering {
    pub tier: ServiceTier,
    /// `None` when the request had no `performanceConfig` (nothing is echoed then).
    pub latency: Option<Latency>,
}

/// The enum constraint error, quoting a JSON string without its quotes.
pub(crate) fn enum_error(value: &Value, path: &str, set: &str) -> ApiError {
    let shown = value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_string);
    ApiError::constraint(
        shown,
        path,
        &format!("Member must satisfy enum value set: {set}"),
    )
}

const TIER_SET: &str = "[default, flex, priority, reserved]";
const LATENCY_SET: &str = "[standard, optimized]";

impl Tiering {
    /// Reads `serviceTier` and `performanceConfig` from a Converse body (enum values only; see
    /// [`Tiering::check`]). A `performanceConfig` without `latency` is `standard`, the service's
    /// default.
    pub(crate) fn from_body(body: &Value) -> Result<Self, ApiError> {
        let tier = match body.get("serviceTier").filter(|v| !v.is_null()) {
            None => ServiceTier::Default,
            Some(object) => match object.get("type").filter(|v| !v.is_null()) {
                None => return Err(null_member("serviceTier.type")),
                Some(value) => value
                    .as_str()
                    .and_then(ServiceTier::from_name)
                    .ok_or_else(|| enum_error(value, "serviceTier.type", TIER_SET))?,
            },
        };
        let latency = match body.get("performanceConfig").filter(|v| !v.is_null()) {
            None => None,
            Some(object) => Some(match object.get("latency").filter(|v| !v.is_null()) {
                None => Latency::Standard,
                Some(value) => value
                    .as_str()
                    .and_then(Latency::from_name)
                    .ok_or_else(|| enum_error(value, "performanceConfig.latency", LATENCY_SET))?,
            }),
        };
        Ok(Self { tier, latency })
    }

    /// Reads the `X-Amzn-Bedrock-Service-Tier` and `X-Amzn-Bedrock-PerformanceConfig-Latency`
    /// header values of an `InvokeModel` request (enum values only; see [`Tiering::check`]).
    pub(crate) fn from_headers(
        tier: Option<&str>,
        latency: Option<&str>,
    ) -> Result<Self, ApiError> {
        let tier = match tier {
            None => ServiceTier::Default,
            Some(name) => ServiceTier::from_name(name)
                .ok_or_else(|| enum_error(&json!(name), "serviceTier", TIER_SET))?,
        };
        let latency = match latency {
            None => None,
            Some(name) => Some(Latency::from_name(name).ok_or_else(|| {
                enum_error(&json!(name), "performanceConfigLatency", LATENCY_SET)
            })?),
        };
        Ok(Self { tier, latency })
    }

    /// Refuses what the model or the account cannot serve: the `reserved` tier (no reserved
    /// capacity), `optimized` latency on a model without a latency-optimized version.
    pub(crate) fn check(self, model: &CatalogModel) -> Result<Self, ApiError> {
        if self.tier == ServiceTier::Reserved {
            return Err(ApiError::validation(format!(
                "This account has no reserved capacity for the model {}. Try again with service tier 'default', 'flex' or 'priority'.",
                model.id
            )));
        }
        if self.latency == Some(Latency::Optimized) && !model.latency_optimized {
            return Err(ApiError::validation(format!(
                "The model {} does not support latency-optimized inference: use performanceConfig latency 'standard'.",
                model.id
            )));
        }
        Ok(self)
    }

    /// The time a request of this tier waits on top of the load model's first-byte delay:
    /// `flex` waits `latency` once more, the other tiers nothing.
    pub(crate) fn extra_delay(self, latency: std::time::Duration) -> std::time::Duration {
        if self.tier == ServiceTier::Flex {
            latency
        } else {
            std::time::Duration::ZERO
        }
    }

    /// Adds `serviceTier` (always) and `performanceConfig` (when the request had one) to a
    /// Converse response body or `converse-stream` metadata event.
    pub(crate) fn echo(self, object: &mut Value) {
        object["serviceTier"] = json!({ "type": self.tier.as_str() });
        if let Some(latency) = self.latency {
            object["performanceConfig"] = json!({ "latency": latency.as_str() });
        }
    }

    /// The `InvokeModel` response headers: the tier (always) and the latency (when the request
    /// named one).
    pub(crate) fn headers(self) -> Vec<(&'static str, &'static str)> {
        let mut headers = vec![(SERVICE_TIER_HEADER, self.tier.as_str())];
        if let Some(latency) = self.latency {
            headers.push((LATENCY_HEADER, latency.as_str()));
        }
        headers
    }
}

/// The constraint error of a missing member.
pub(crate) fn null_member(path: &str) -> ApiError {
    ApiError::constraint("null", path, "Member must not be null")
}

fn range(value: f64, path: &str, min: f64, max: f64) -> Result<(), ApiError> {
    if value < min {
        return Err(ApiError::constraint(
            value,
            path,
            &format!("Member must have value greater than or equal to {min}"),
        ));
    }
    if value > max {
        return Err(ApiError::constraint(
            value,
            path,
            &format!("Member must have value less than or equal to {max}"),
        ));
    }
    Ok(())
}

/// Reads and validates a `Converse` (or `ConverseStream`) body for a model.
pub(crate) fn parse(body: &Value, model: &CatalogModel) -> Result<ConverseRequest, ApiError> {
    if !model.family.supports_converse() {
        return Err(ApiError::validation(
            "This action doesn't support the model that you provided. Try again with a supported text or chat model.",
        ));
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| null_member("messages"))?;
    let tiering = Tiering::from_body(body)?;
    let mut turns = parse_messages(messages)?;
    join_at_cache_points(&mut turns, messages);
    let conversation = Conversation {
        system: parse_system(body.get("system"))?,
        turns,
    };
    super::media::check_model(&conversation, model)?;
    let tool = parse_tool_choice(body.get("toolConfig"))?;
    let cache_points = CachePoints::read(body, model.id)?;
    let mut request = ConverseRequest {
        conversation,
        max_tokens: None,
        stop_sequences: Vec::new(),
        tool,
        tiering,
        cache: None,
    };
    if let Some(config) = body.get("inferenceConfig") {
        if let Some(v) = config.get("maxTokens").and_then(Value::as_f64) {
            range(v, "inferenceConfig.maxTokens", 1.0, f64::from(i32::MAX))?;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let v = v as u32;
            if v > model.max_output_tokens {
                let max = model.max_output_tokens;
                return Err(ApiError::validation(format!(
                    "The maximum tokens you requested exceeds the model limit of {max}. Try again with a maximum tokens value that is lower than {max}."
                )));
            }
            request.max_tokens = Some(v);
        }
        for (key, path) in [
            ("temperature", "inferenceConfig.temperature"),
            ("topP", "inferenceConfig.topP"),
        ] {
            if let Some(v) = config.get(key).and_then(Value::as_f64) {
                range(v, path, 0.0, 1.0)?;
            }
        }
        if let Some(stops) = config.get("stopSequences").and_then(Value::as_array) {
            if stops.len() > 2500 {
                return Err(ApiError::constraint(
                    stops.len(),
                    "inferenceConfig.stopSequences",
                    "Member must have length less than or equal to 2500",
                ));
            }
            request.stop_sequences = stops
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
        }
    }
    tiering.check(model)?;
    request.cache = cache_points.check(model)?;
    Ok(request)
}

/// Reads each turn again around its `cachePoint` blocks: they mark the prompt for caching and
/// are no content, so they count as no block (a message of `cachePoint` blocks only counts as
/// empty), and the texts on both sides of one are one text, as the model reads them — so a
/// prompt split for caching gets the answer it gets whole.
fn join_at_cache_points(turns: &mut [Turn], messages: &[Value]) {
    for (turn, message) in turns.iter_mut().zip(messages) {
        let Some(content) = message.get("content").and_then(Value::as_array) else {
            continue;
        };
        if !content.iter().any(|b| cache_point(b).is_some()) {
            continue;
        }
        let mut texts: Vec<String> = Vec::new();
        let mut blocks = 0;
        let mut seen_media = 0;
        // Whether the last content block was a text, and whether a cachePoint followed it.
        let (mut after_text, mut after_point) = (false, false);
        for block in content {
            if cache_point(block).is_some() {
                after_point = after_text;
                continue;
            }
            match block_text(block) {
                Some(text) if after_point && block.get("text").is_some() => {
                    if let Some(last) = texts.last_mut() {
                        last.push_str(&text);
                    }
                }
                Some(text) => {
                    blocks += 1;
                    after_text = block.get("text").is_some();
                    texts.push(text);
                }
                None => {
                    if block.get("image").is_some() || block.get("document").is_some() {
                        if let Some(media) = turn.media.get_mut(seen_media) {
                            media.after = texts.len();
                        }
                        seen_media += 1;
                    }
                    blocks += 1;
                    after_text = false;
                }
            }
            after_point = false;
        }
        turn.texts = texts;
        turn.blocks = blocks;
    }
}

pub(crate) fn parse_system(system: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let mut texts = Vec::new();
    for (i, block) in system
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(text) = block.get("text").and_then(Value::as_str) {
            if text.trim().is_empty() {
                return Err(ApiError::validation(format!(
                    "The text field in the SystemContentBlock object at system.{i} is blank. Add text to the text field, and try again."
                )));
            }
            texts.push(text.to_string());
        }
    }
    Ok(texts)
}

pub(crate) fn parse_messages(messages: &[Value]) -> Result<Vec<Turn>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::validation(
            "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
        ));
    }
    let mut turns: Vec<Turn> = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let role = match message.get("role").and_then(Value::as_str) {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some(other) => {
                return Err(ApiError::constraint(
                    other,
                    &format!("messages.{i}.member.role"),
                    "Member must satisfy enum value set: [user, assistant]",
                ));
            }
            None => return Err(null_member(&format!("messages.{i}.member.role"))),
        };
        if i == 0 && role != Role::User {
            return Err(ApiError::validation(
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
            ));
        }
        if turns.last().is_some_and(|t| t.role == role) {
            return Err(ApiError::validation(
                "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.",
            ));
        }
        let content = message
            .get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| null_member(&format!("messages.{i}.member.content")))?;
        let mut texts = Vec::new();
        let mut media = Vec::new();
        for (j, block) in content.iter().enumerate() {
            if let Some(text) = block_text(block) {
                if text.trim().is_empty() {
                    return Err(ApiError::validation(format!(
                        "The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to the text field, and try again."
                    )));
                }
                texts.push(text);
            } else if let Some(note) = super::media::block(block, role, i, j, texts.len()) {
                media.push(note?);
            }
        }
        super::media::check_message(&media, !texts.is_empty(), i)?;
        turns.push(Turn {
            role,
            texts,
            blocks: content.len(),
            media,
        });
    }
    Ok(turns)
}

/// The text a content block carries: `text`, guarded text, or a tool result's text.
pub(crate) fn block_text(block: &Value) -> Option<String> {
    if let Some(text) = block.get("text").and_then(Value::as_str) {
        return Some(text.to_string());
    }
    if let Some(text) = block
        .pointer("/guardContent/text/text")
        .and_then(Value::as_str)
    {
        return Some(text.to_string());
    }
    let results = block.pointer("/toolResult/content")?.as_array()?;
    let texts: Vec<String> = results
        .iter()
        .filter_map(|r| {
            r.get("text")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| r.get("json").map(Value::to_string))
        })
        .collect();
    Some(texts.join("\n"))
}

fn parse_tool_choice(config: Option<&Value>) -> Result<Option<ToolRequest>, ApiError> {
    let Some(config) = config else {
        return Ok(None);
    };
    let tools: Vec<(&str, &Value)> = config
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let spec = t.get("toolSpec")?;
            Some((
                spec.get("name")?.as_str()?,
                spec.pointer("/inputSchema/json").unwrap_or(&Value::Null),
            ))
        })
        .collect();
    if tools.is_empty() {
        return Err(ApiError::validation(
            "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
        ));
    }
    let choice = config.get("toolChoice");
    let forced = if let Some(name) = choice
        .and_then(|c| c.pointer("/tool/name"))
        .and_then(Value::as_str)
    {
        Some(tools.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            ApiError::validation(format!(
                "The tool {name} named in toolChoice is not defined in toolConfig.tools."
            ))
        })?)
    } else if choice.and_then(|c| c.get("any")).is_some() {
        tools.first()
    } else {
        None
    };
    Ok(forced.map(|(name, schema)| ToolRequest {
        name: (*name).to_string(),
        schema: (*schema).clone(),
    }))
}

/// A deterministic value that satisfies a JSON schema, derived from the user's text: strings are
/// the text, integers its word count, booleans whether that count is even, enums a choice
/// hashed from the text, arrays two items, objects every property.
pub(crate) fn value_for_schema(schema: &Value, text: &str) -> Value {
    let words = text.split_whitespace().count();
    if let Some(options) = schema
        .get("enum")
        .and_then(Value::as_array)
        .filter(|o| !o.is_empty())
    {
        let pick = usize::try_from(fnv1a(&[text.as_bytes()]) % options.len() as u64).unwrap_or(0);
        return options[pick].clone();
    }
    let kind = match schema.get("type") {
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null"),
        Some(Value::String(k)) => Some(k.as_str()),
        _ => None,
    };
    match kind {
        Some("object") | None if schema.get("properties").is_some() => {
            let mut object = serde_json::Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    object.insert(name.clone(), value_for_schema(sub, text));
                }
            }
            Value::Object(object)
        }
        Some("object") => json!({}),
        Some("array") => {
            let item = schema.get("items").unwrap_or(&Value::Null);
            json!([value_for_schema(item, text), value_for_schema(item, text)])
        }
        Some("integer") => json!(words),
        // A word count is far below 2^52: the conversion is exact.
        #[allow(clippy::cast_precision_loss)]
        Some("number") => json!(words as f64 + 0.5),
        Some("boolean") => json!(words.is_multiple_of(2)),
        Some("null") => Value::Null,
        _ => json!(text),
    }
}

/// The model's call of a forced tool.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    pub id: String,
    pub name: String,
    pub input: Value,
}

/// Test directive: a first user message containing it gets tool input that ignores the
/// schema (`{"unexpected": …}`), always.
const OFF_SCHEMA: &str = "[[emulate:off-schema]]";
/// Test directive: the same, but only while the conversation is that one message — a model
/// that gets it right once it is told what was wrong (any later turn). The corrected input is
/// derived from the first message without the directive.
const OFF_SCHEMA_ONCE: &str = "[[emulate:off-schema-once]]";

/// The tool call answering a forced tool choice: input derived from the last user text and
/// the tool's schema (see [`value_for_schema`]), or off-schema under a test directive.
pub(crate) fn tool_use(tool: &ToolRequest, conversation: &Conversation) -> ToolCall {
    let first = conversation
        .turns
        .iter()
        .find(|t| t.role == Role::User)
        .map(|t| t.texts.join("\n"))
        .unwrap_or_default();
    let (text, input) = if first.contains(OFF_SCHEMA)
        || (first.contains(OFF_SCHEMA_ONCE) && conversation.turns.len() == 1)
    {
        (first.clone(), json!({ "unexpected": first }))
    } else if first.contains(OFF_SCHEMA_ONCE) {
        let text = first.replace(OFF_SCHEMA_ONCE, "").trim().to_string();
        let input = value_for_schema(&tool.schema, &text);
        (text, input)
    } else {
        let text = conversation.last_user_text();
        let input = value_for_schema(&tool.schema, &text);
        (text, input)
    };
    ToolCall {
        id: format!(
            "tooluse_{:016x}",
            fnv1a(&[tool.name.as_bytes(), text.as_bytes()])
        ),
        name: tool.name.clone(),
        input,
    }
}

/// The `stopReason` of a tool call: `tool_use`, or `max_tokens` when generation was cut
/// short inside it (a packed answer that did not fit).
fn tool_stop(stop: &StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens => "max_tokens",
        _ => "tool_use",
    }
}

/// Converse's `stopReason` string.
pub(crate) fn stop_reason(stop: &StopReason) -> &'static str {
    match stop {
        StopReason::EndTurn => "end_turn",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence(_) => "stop_sequence",
    }
}

/// The `usage` object: with `cache` (a request that carried a `cachePoint`), `inputTokens` is
/// the uncached part of the input and the cache fields are added.
fn usage(reply: &Reply, cache: Option<&CacheUse>) -> Value {
    let Some(cache) = cache else {
        return json!({
            "inputTokens": reply.input_tokens,
            "outputTokens": reply.output_tokens,
            "totalTokens": reply.input_tokens + reply.output_tokens,
        });
    };
    let input = cache.uncached(reply.input_tokens);
    let total = input
        .saturating_add(reply.output_tokens)
        .saturating_add(cache.read)
        .saturating_add(cache.write);
    let mut usage = json!({
        "inputTokens": input,
        "outputTokens": reply.output_tokens,
        "totalTokens": total,
    });
    cache.add_to_usage(&mut usage);
    usage
}

/// The body of a Converse response; with `tiering`, it says the service tier used (and the
/// latency, when the request named one); with `cache`, its usage says what the prompt cache
/// served.
pub(crate) fn response(
    reply: &Reply,
    tool: Option<&ToolCall>,
    latency_ms: u64,
    tiering: Option<Tiering>,
    cache: Option<&CacheUse>,
) -> Value {
    let (content, stop) = match tool {
        Some(call) => (
            json!([{ "toolUse": { "toolUseId": call.id, "name": call.name, "input": call.input } }]),
            tool_stop(&reply.stop),
        ),
        None => (json!([{ "text": reply.text }]), stop_reason(&reply.stop)),
    };
    let mut body = json!({
        "output": { "message": { "role": "assistant", "content": content } },
        "stopReason": stop,
        "usage": usage(reply, cache),
        "metrics": { "latencyMs": latency_ms },
    });
    if let Some(tiering) = tiering {
        tiering.echo(&mut body);
    }
    body
}

/// The `converse-stream` events, as (event type, payload) pairs; the metadata event says the
/// service tier used (and the latency, when the request named one) and, with `cache`, what the
/// prompt cache served.
pub(crate) fn stream_events(
    reply: &Reply,
    tool: Option<&ToolCall>,
    latency_ms: u64,
    tiering: Tiering,
    cache: Option<&CacheUse>,
) -> Vec<(&'static str, Value)> {
    let mut events = vec![("messageStart", json!({ "role": "assistant" }))];
    let stop = if let Some(call) = tool {
        events.push((
            "contentBlockStart",
            json!({ "contentBlockIndex": 0, "start": { "toolUse": { "toolUseId": call.id, "name": call.name } } }),
        ));
        events.push((
            "contentBlockDelta",
            json!({ "contentBlockIndex": 0, "delta": { "toolUse": { "input": call.input.to_string() } } }),
        ));
        tool_stop(&reply.stop)
    } else {
        for piece in stream_pieces(&reply.text) {
            events.push((
                "contentBlockDelta",
                json!({ "contentBlockIndex": 0, "delta": { "text": piece } }),
            ));
        }
        stop_reason(&reply.stop)
    };
    events.push(("contentBlockStop", json!({ "contentBlockIndex": 0 })));
    events.push(("messageStop", json!({ "stopReason": stop })));
    let mut metadata =
        json!({ "usage": usage(reply, cache), "metrics": { "latencyMs": latency_ms } });
    tiering.echo(&mut metadata);
    events.push(("metadata", metadata));
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::catalog;

    fn titan() -> &'static CatalogModel {
        catalog::find("amazon.titan-text-premier-v1:0").unwrap()
    }

    fn err(body: &Value) -> String {
        parse(body, titan())
            .expect_err("expected a validation error")
            .message
    }

    #[test]
    fn reads_messages_system_and_parameters() {
        let body = json!({
            "messages": [
                {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
                {"role": "assistant", "content": [{"text": "c"}]},
                {"role": "user", "content": [{"text": "d"}, {"document": {"format": "txt", "name": "x", "source": {"bytes": "eHl6"}}}]}
            ],
            "system": [{"text": "s"}],
            "inferenceConfig": {"maxTokens": 10, "temperature": 0.5, "stopSequences": ["x"]}
        });
        let r = parse(&body, titan()).unwrap();
        assert_eq!(r.conversation.turns.len(), 3);
        assert_eq!(r.conversation.blocks(), 5);
        assert_eq!(r.conversation.system, vec!["s".to_string()]);
        assert_eq!(
            r.conversation.last_user_text(),
            "d [document: txt \"x\", 3 bytes]"
        );
        assert_eq!(
            (r.max_tokens, r.stop_sequences),
            (Some(10), vec!["x".to_string()])
        );
    }

    #[test]
    fn images_and_documents_are_validated_and_described() {
        let png = aws_smithy_types::base64::encode(
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x01\x00\x00\x00\x01",
        );
        let pdf = aws_smithy_types::base64::encode(b"%PDF-1.7 tiny");
        let image = json!({"image": {"format": "png", "source": {"bytes": png}}});
        let doc = |name: &str| json!({"document": {"format": "pdf", "name": name, "source": {"bytes": pdf}}});
        let asked = |content: Value| json!({"messages": [{"role": "user", "content": content}]});
        let nova = catalog::find("amazon.nova-lite-v1:0").unwrap();
        let r = parse(
            &asked(json!([{"text": "Describe this "}, image, doc("report")])),
            nova,
        )
        .unwrap();
        assert_eq!(
            parse(&asked(json!([{"text": "x"}, image])), titan())
                .unwrap_err()
                .message,
            "This model doesn't support the image content block that you provided. Try again with a model that supports image input."
        );
        assert_eq!(
            super::super::answer::compose("m", &r.conversation),
            "Emulated m (messages: 1, blocks: 3): Describe this [image: png, 24 bytes] [document: pdf \"report\", 13 bytes]"
        );
        // 3 text tokens, 1 for a 1×1 image, 2 for 13 bytes of PDF.
        assert_eq!(r.conversation.input_tokens(), 4 + 1 + 2);
        assert_eq!(
            err(&asked(json!([{"text": "x"}, doc("a.b")]))),
            "The document file name can only contain alphanumeric characters, whitespace characters, hyphens, parentheses, and square brackets. The name can't contain more than one consecutive whitespace character."
        );
        assert_eq!(
            err(&asked(json!([doc("a")]))),
            "messages.0 has a document block but no text block. A message with a document must also include a text block."
        );
        assert_eq!(
            err(&asked(
                json!([{"text": "x"}, {"image": {"format": "jpeg", "source": {"bytes": png}}}])
            )),
            "The image at messages.0.content.1 does not match its format 'jpeg'. Check the format and the bytes and try again."
        );
        assert_eq!(
            err(&asked(
                json!([{"text": "x"}, {"image": {"format": "tiff", "source": {"bytes": png}}}])
            )),
            "1 validation error detected: Value 'tiff' at 'messages.0.member.content.1.member.image.format' failed to satisfy constraint: Member must satisfy enum value set: [png, jpeg, gif, webp]"
        );
        assert_eq!(
            err(&asked(
                json!([{"text": "x"}, {"image": {"format": "png", "source": {"bytes": "*"}}}])
            )),
            "The image bytes at messages.0.content.1 are not valid base64. Encode the bytes and try again."
        );
        let many: Vec<Value> = std::iter::repeat_n(image.clone(), 21).collect();
        assert_eq!(
            err(&asked(Value::Array(many))),
            "Too many images in messages.0: 21. A message can include up to 20 images."
        );
    }

    #[test]
    fn validation_messages_match_the_service() {
        let user = json!([{"role": "user", "content": [{"text": "hi"}]}]);
        assert_eq!(
            err(&json!({"messages": user, "inferenceConfig": {"temperature": 1.5}})),
            "1 validation error detected: Value '1.5' at 'inferenceConfig.temperature' failed to satisfy constraint: Member must have value less than or equal to 1"
        );
        assert_eq!(
            err(&json!({"messages": user, "inferenceConfig": {"topP": -0.1}})),
            "1 validation error detected: Value '-0.1' at 'inferenceConfig.topP' failed to satisfy constraint: Member must have value greater than or equal to 0"
        );
        assert_eq!(
            err(&json!({"messages": user, "inferenceConfig": {"maxTokens": 0}})),
            "1 validation error detected: Value '0' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1"
        );
        assert_eq!(
            err(&json!({"messages": user, "inferenceConfig": {"maxTokens": 5000}})),
            "The maximum tokens you requested exceeds the model limit of 3072. Try again with a maximum tokens value that is lower than 3072."
        );
        assert_eq!(
            err(&json!({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]})),
            "A conversation must start with a user message. Try again with a conversation that starts with a user message."
        );
        assert_eq!(
            err(
                &json!({"messages": [{"role": "user", "content": [{"text": "x"}]}, {"role": "user", "content": [{"text": "y"}]}]})
            ),
            "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again."
        );
        assert_eq!(
            err(&json!({"messages": [{"role": "user", "content": [{"text": "  "}]}]})),
            "The text field in the ContentBlock object at messages.0.content.0 is blank. Add text to the text field, and try again."
        );
        assert_eq!(
            err(&json!({})),
            "1 validation error detected: Value 'null' at 'messages' failed to satisfy constraint: Member must not be null"
        );
        let embed = catalog::find("amazon.titan-embed-text-v2:0").unwrap();
        assert_eq!(
            parse(&json!({"messages": user}), embed)
                .unwrap_err()
                .message,
            "This action doesn't support the model that you provided. Try again with a supported text or chat model."
        );
    }

    #[test]
    fn forced_tools_get_schema_shaped_input() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "ok": {"type": "boolean"},
                "mood": {"enum": ["happy", "sad"]}
            }
        });
        let v = value_for_schema(&schema, "Ada is 36");
        assert_eq!(v["name"], json!("Ada is 36"));
        assert_eq!(v["age"], json!(3));
        assert_eq!(v["tags"], json!(["Ada is 36", "Ada is 36"]));
        assert_eq!(v["ok"], json!(false));
        assert!(v["mood"] == json!("happy") || v["mood"] == json!("sad"));
        let body = json!({
            "messages": [{"role": "user", "content": [{"text": "Ada is 36"}]}],
            "toolConfig": {"tools": [{"toolSpec": {"name": "out", "inputSchema": {"json": schema}}}], "toolChoice": {"tool": {"name": "out"}}}
        });
        let r = parse(&body, titan()).unwrap();
        assert_eq!(r.tool.map(|t| t.name), Some("out".to_string()));
    }

    fn user_hi() -> Value {
        json!([{"role": "user", "content": [{"text": "Hi"}]}])
    }

    fn model(id: &str) -> &'static CatalogModel {
        catalog::find(id).unwrap()
    }

    #[test]
    fn service_tiers_and_latency_are_read_from_the_body() {
        let nova = model("amazon.nova-pro-v1:0");
        let tiering = |body: Value| parse(&body, nova).map(|r| r.tiering);
        assert_eq!(
            tiering(json!({"messages": user_hi()})),
            Ok(Tiering {
                tier: ServiceTier::Default,
                latency: None
            })
        );
        assert_eq!(
            tiering(json!({"messages": user_hi(), "serviceTier": {"type": "flex"}})),
            Ok(Tiering {
                tier: ServiceTier::Flex,
                latency: None
            })
        );
        assert_eq!(
            tiering(json!({
                "messages": user_hi(),
                "serviceTier": {"type": "priority"},
                "performanceConfig": {"latency": "optimized"}
            })),
            Ok(Tiering {
                tier: ServiceTier::Priority,
                latency: Some(Latency::Optimized)
            })
        );
        // `latency` defaults to `standard`, as in the service's model.
        assert_eq!(
            tiering(json!({"messages": user_hi(), "performanceConfig": {}})),
            Ok(Tiering {
                tier: ServiceTier::Default,
                latency: Some(Latency::Standard)
            })
        );
    }

    #[test]
    fn service_tier_and_latency_errors_match_the_service() {
        let message = |body: Value, id: &str| parse(&body, model(id)).unwrap_err().message;
        let nova = "amazon.nova-pro-v1:0";
        assert_eq!(
            message(
                json!({"messages": user_hi(), "serviceTier": {"type": "turbo"}}),
                nova
            ),
            "1 validation error detected: Value 'turbo' at 'serviceTier.type' failed to satisfy constraint: Member must satisfy enum value set: [default, flex, priority, reserved]"
        );
        assert_eq!(
            message(json!({"messages": user_hi(), "serviceTier": {}}), nova),
            "1 validation error detected: Value 'null' at 'serviceTier.type' failed to satisfy constraint: Member must not be null"
        );
        assert_eq!(
            message(
                json!({"messages": user_hi(), "performanceConfig": {"latency": "fast"}}),
                nova
            ),
            "1 validation error detected: Value 'fast' at 'performanceConfig.latency' failed to satisfy constraint: Member must satisfy enum value set: [standard, optimized]"
        );
        assert_eq!(
            message(
                json!({"messages": user_hi(), "serviceTier": {"type": "reserved"}}),
                nova
            ),
            "This account has no reserved capacity for the model amazon.nova-pro-v1:0. Try again with service tier 'default', 'flex' or 'priority'."
        );
        assert_eq!(
            message(
                json!({"messages": user_hi(), "performanceConfig": {"latency": "optimized"}}),
                "amazon.titan-text-premier-v1:0"
            ),
            "The model amazon.titan-text-premier-v1:0 does not support latency-optimized inference: use performanceConfig latency 'standard'."
        );
        // An enum error comes before the body's other errors are looked at, a refused tier
        // after them.
        assert_eq!(
            message(
                json!({"messages": user_hi(), "serviceTier": {"type": "x"}, "inferenceConfig": {"topP": 2}}),
                nova
            ),
            "1 validation error detected: Value 'x' at 'serviceTier.type' failed to satisfy constraint: Member must satisfy enum value set: [default, flex, priority, reserved]"
        );
        assert_eq!(
            message(
                json!({"messages": user_hi(), "serviceTier": {"type": "reserved"}, "inferenceConfig": {"topP": 2}}),
                nova
            ),
            "1 validation error detected: Value '2' at 'inferenceConfig.topP' failed to satisfy constraint: Member must have value less than or equal to 1"
        );
    }

    #[test]
    fn invoke_model_headers_are_validated_like_the_body() {
        let titan = model("amazon.titan-text-premier-v1:0");
        assert_eq!(Tiering::from_headers(None, None), Ok(Tiering::default()));
        assert_eq!(
            Tiering::from_headers(Some("flex"), Some("standard")).and_then(|t| t.check(titan)),
            Ok(Tiering {
                tier: ServiceTier::Flex,
                latency: Some(Latency::Standard)
            })
        );
        assert_eq!(
            Tiering::from_headers(Some("Flex"), None)
                .unwrap_err()
                .message,
            "1 validation error detected: Value 'Flex' at 'serviceTier' failed to satisfy constraint: Member must satisfy enum value set: [default, flex, priority, reserved]"
        );
        assert_eq!(
            Tiering::from_headers(None, Some("low"))
                .unwrap_err()
                .message,
            "1 validation error detected: Value 'low' at 'performanceConfigLatency' failed to satisfy constraint: Member must satisfy enum value set: [standard, optimized]"
        );
        assert_eq!(
            Tiering::from_headers(None, Some("optimized"))
                .and_then(|t| t.check(titan))
                .unwrap_err()
                .message,
            "The model amazon.titan-text-premier-v1:0 does not support latency-optimized inference: use performanceConfig latency 'standard'."
        );
        let tiering = Tiering {
            tier: ServiceTier::Priority,
            latency: Some(Latency::Optimized),
        };
        assert_eq!(
            tiering.headers(),
            [
                ("X-Amzn-Bedrock-Service-Tier", "priority"),
                ("X-Amzn-Bedrock-PerformanceConfig-Latency", "optimized"),
            ]
        );
        assert_eq!(
            Tiering::default().headers(),
            [("X-Amzn-Bedrock-Service-Tier", "default")]
        );
    }

    #[test]
    fn only_flex_waits_longer() {
        let latency = std::time::Duration::from_millis(40);
        for (tier, extra) in [
            (ServiceTier::Default, 0),
            (ServiceTier::Flex, 40),
            (ServiceTier::Priority, 0),
        ] {
            let tiering = Tiering {
                tier,
                latency: Some(Latency::Optimized),
            };
            assert_eq!(
                tiering.extra_delay(latency),
                std::time::Duration::from_millis(extra),
                "{tier:?}"
            );
        }
    }

    #[test]
    fn responses_and_stream_metadata_echo_the_tier() {
        let reply = Reply {
            text: "Hello".into(),
            input_tokens: 1,
            output_tokens: 2,
            stop: StopReason::EndTurn,
        };
        let flex = Tiering {
            tier: ServiceTier::Flex,
            latency: None,
        };
        assert_eq!(
            response(&reply, None, 7, Some(flex), None),
            json!({
                "output": {"message": {"role": "assistant", "content": [{"text": "Hello"}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3},
                "metrics": {"latencyMs": 7},
                "serviceTier": {"type": "flex"},
            })
        );
        let optimized = Tiering {
            tier: ServiceTier::Default,
            latency: Some(Latency::Optimized),
        };
        assert_eq!(
            response(&reply, None, 7, Some(optimized), None),
            json!({
                "output": {"message": {"role": "assistant", "content": [{"text": "Hello"}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3},
                "metrics": {"latencyMs": 7},
                "serviceTier": {"type": "default"},
                "performanceConfig": {"latency": "optimized"},
            })
        );
        // Batch inference answers carry neither.
        assert_eq!(
            response(&reply, None, 0, None, None).get("serviceTier"),
            None
        );
        let events = stream_events(&reply, None, 7, optimized, None);
        assert_eq!(
            events.last(),
            Some(&(
                "metadata",
                json!({
                    "usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3},
                    "metrics": {"latencyMs": 7},
                    "serviceTier": {"type": "default"},
                    "performanceConfig": {"latency": "optimized"},
                })
            ))
        );
    }

    #[test]
    fn cache_points_are_no_blocks_and_leave_the_answer_unchanged() {
        let nova = model("amazon.nova-pro-v1:0");
        let with_points = json!({
            "system": [{"text": "s"}, {"cachePoint": {"type": "default"}}],
            "messages": [
                {"role": "user", "content": [{"text": "a"}, {"cachePoint": {"type": "default"}}, {"text": "b"}]},
                {"role": "assistant", "content": [{"text": "c"}]},
                {"role": "user", "content": [{"text": "d"}, {"cachePoint": {"type": "default", "ttl": "5m"}}]}
            ]
        });
        let without = json!({
            "system": [{"text": "s"}],
            "messages": [
                {"role": "user", "content": [{"text": "ab"}]},
                {"role": "assistant", "content": [{"text": "c"}]},
                {"role": "user", "content": [{"text": "d"}]}
            ]
        });
        let cached = parse(&with_points, nova).unwrap();
        let plain = parse(&without, nova).unwrap();
        assert_eq!(cached.conversation, plain.conversation);
        assert_eq!(cached.conversation.blocks(), 3);
        assert_eq!(
            crate::emulator::answer::compose(nova.id, &cached.conversation),
            "Emulated amazon.nova-pro-v1:0 (messages: 3, blocks: 3, system: 1): d"
        );
        assert_eq!(
            cached.cache.map(|plan| plan.checkpoints.len()),
            Some(0),
            "every checkpoint is below the minimum"
        );
        assert_eq!(plain.cache, None);
        // A message of cache points only counts as an empty message does.
        let only_points = json!({"messages": [{"role": "user", "content": [{"cachePoint": {"type": "default"}}]}]});
        let empty = json!({"messages": [{"role": "user", "content": []}]});
        assert_eq!(
            parse(&only_points, nova).map(|r| r.conversation),
            parse(&empty, nova).map(|r| r.conversation)
        );
    }

    #[test]
    fn a_tools_array_with_a_cache_point_still_forces_the_tool() {
        let nova = model("amazon.nova-pro-v1:0");
        let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}});
        let body = json!({
            "messages": [{"role": "user", "content": [{"text": "Ada"}]}],
            "toolConfig": {
                "tools": [
                    {"toolSpec": {"name": "first", "inputSchema": {"json": schema}}},
                    {"cachePoint": {"type": "default"}},
                    {"toolSpec": {"name": "out", "inputSchema": {"json": schema}}}
                ],
                "toolChoice": {"tool": {"name": "out"}}
            }
        });
        let r = parse(&body, nova).unwrap();
        assert_eq!(
            r.tool,
            Some(ToolRequest {
                name: "out".into(),
                schema: schema.clone()
            })
        );
        let mut any = body.clone();
        any["toolConfig"]["toolChoice"] = json!({"any": {}});
        assert_eq!(
            parse(&any, nova).unwrap().tool.map(|t| t.name),
            Some("first".into())
        );
        // A cache point in the tools is refused where the model does not cache prompts.
        assert_eq!(
            parse(&body, titan()).unwrap_err().message,
            "You invoked an unsupported model or your request did not allow prompt caching. See the documentation for more information."
        );
    }

    #[test]
    fn cache_point_errors_come_from_the_body_and_the_model() {
        let user = |block: Value| json!({"messages": [{"role": "user", "content": [{"text": "Hi"}, block]}]});
        let nova = model("amazon.nova-pro-v1:0");
        assert_eq!(
            parse(
                &user(json!({"cachePoint": {"type": "default", "ttl": "1d"}})),
                nova
            )
            .unwrap_err()
            .message,
            "1 validation error detected: Value '1d' at 'messages.0.member.content.1.member.cachePoint.ttl' failed to satisfy constraint: Member must satisfy enum value set: [5m, 1h]"
        );
        assert_eq!(
            parse(
                &user(json!({"cachePoint": {"type": "default", "ttl": "1h"}})),
                nova
            )
            .unwrap_err()
            .message,
            "The model amazon.nova-pro-v1:0 does not support the 1h TTL for prompt caching. Try again with ttl 5m or without a ttl."
        );
    }

    #[test]
    fn responses_and_stream_metadata_carry_the_cache_usage() {
        use crate::emulator::prompt_cache::Ttl;
        let reply = Reply {
            text: "Hello".into(),
            input_tokens: 3000,
            output_tokens: 2,
            stop: StopReason::EndTurn,
        };
        let cache = CacheUse {
            read: 1000,
            write: 1500,
            details: vec![(Ttl::FiveMinutes, 1500)],
        };
        let usage = json!({
            "inputTokens": 500,
            "outputTokens": 2,
            "totalTokens": 3002,
            "cacheReadInputTokens": 1000,
            "cacheWriteInputTokens": 1500,
            "cacheDetails": [{"ttl": "5m", "inputTokens": 1500}],
        });
        assert_eq!(
            response(&reply, None, 7, None, Some(&cache)),
            json!({
                "output": {"message": {"role": "assistant", "content": [{"text": "Hello"}]}},
                "stopReason": "end_turn",
                "usage": usage,
                "metrics": {"latencyMs": 7},
            })
        );
        let events = stream_events(&reply, None, 7, Tiering::default(), Some(&cache));
        assert_eq!(
            events.last(),
            Some(&(
                "metadata",
                json!({
                    "usage": usage,
                    "metrics": {"latencyMs": 7},
                    "serviceTier": {"type": "default"},
                })
            ))
        );
        // Nothing cached: the fields are there, with zeros, and no details.
        let nothing = CacheUse::default();
        assert_eq!(
            response(&reply, None, 7, None, Some(&nothing))["usage"],
            json!({
                "inputTokens": 3000,
                "outputTokens": 2,
                "totalTokens": 3002,
                "cacheReadInputTokens": 0,
                "cacheWriteInputTokens": 0,
            })
        );
    }
}
