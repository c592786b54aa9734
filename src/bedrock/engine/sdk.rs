//! One attempt of one SDK call: Converse, `InvokeModel` with a family's native body, and an
//! embedding call. Retries, limits and caching are the callers' business.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    CachePointBlock, CachePointType, CacheTtl as SdkCacheTtl, ContentBlock, ConversationRole,
    ConverseTokensRequest, CountTokensInput, InferenceConfiguration, Message,
    PerformanceConfigLatency, PerformanceConfiguration, ServiceTier, ServiceTierType,
    SpecificToolChoice, SystemContentBlock, Tool, ToolChoice, ToolConfiguration, ToolInputSchema,
    ToolSpecification,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::Document;
use aws_smithy_types::config_bag::ConfigBag;

use super::{Api, Engine, ModelTarget, blocks};
use crate::bedrock::families::{self, ModelFamily};
use crate::bedrock::prompt_cache::{CachePoints, CacheSpot, CacheTtl};
use crate::bedrock::request::{
    CallInfo, ChatRole, Latency, ServiceTier as ServiceTierChoice, TextRequest, TextResponse,
};
use crate::bedrock::retry::{CallFailure, FailureKind};
use crate::error::Error;

/// Why a request with images or documents is not sent through `InvokeModel`.
pub(crate) const MEDIA_NEEDS_CONVERSE: &str = "images and documents are sent as Converse content blocks, and this model uses api = 'invoke': recreate it with api = 'converse'";

impl Engine {
    /// One attempt of a text request through the target's API.
    pub(super) async fn call_text_once(
        &self,
        target: &ModelTarget,
        request: &TextRequest,
    ) -> std::result::Result<TextResponse, CallFailure> {
        match target.api {
            Api::Converse => self.converse_once(&target.model_id, request).await,
            Api::Invoke if blocks::has_media(request) => {
                Err(CallFailure::fatal("InvalidRequest", MEDIA_NEEDS_CONVERSE))
            }
            Api::Invoke if request.tool.is_some() => Err(CallFailure::fatal(
                "InvalidRequest",
                "structured output (a forced tool) needs the Converse API: use api = 'converse'",
            )),
            Api::Invoke => {
                let family = ModelFamily::from_model_id(&target.model_id).ok_or_else(|| {
                    CallFailure::fatal(
                        "UnsupportedModel",
                        format!(
                            "model '{}' has no native InvokeModel codec here: use api = 'converse'",
                            target.model_id
                        ),
                    )
                })?;
                let body = families::encode_text_request(family, request)
                    .map_err(|e| CallFailure::fatal("InvalidRequest", e.to_string()))?;
                let call = self
                    .runtime
                    .invoke_model()
                    .model_id(&target.model_id)
                    .content_type("application/json")
                    .accept("application/json")
                    .body(Blob::new(body.to_string()))
                    .set_service_tier(request.params.service_tier.map(tier_type))
                    .set_performance_config_latency(request.params.latency.map(latency_type))
                    .send();
                let out = Box::pin(call)
                    .await
                    .map_err(|e| CallFailure::from_sdk(&e))?;
                let mut response = families::decode_text_response(family, out.body().as_ref())
                    .map_err(|e| unreadable(&e))?;
                response.call.service_tier = out.service_tier().map(|t| Arc::from(t.as_str()));
                Ok(response)
            }
        }
    }

    /// One Converse call.
    async fn converse_once(
        &self,
        model_id: &str,
        request: &TextRequest,
    ) -> std::result::Result<TextResponse, CallFailure> {
        let invalid =
            |e: &dyn std::fmt::Display| CallFailure::fatal("InvalidRequest", e.to_string());
        let mut call = self.runtime.converse().model_id(model_id);
        let point = cache_point(request.cache.as_ref()).map_err(|e| invalid(&e))?;
        for message in messages(request, point.as_ref()).map_err(|e| invalid(&e))? {
            call = call.messages(message);
        }
        for block in system(request, point.as_ref()) {
            call = call.system(block);
        }
        let p = &request.params;
        if p.max_tokens.is_some()
            || p.temperature.is_some()
            || p.top_p.is_some()
            || !p.stop.is_empty()
        {
            call = call.inference_config(
                InferenceConfiguration::builder()
                    .set_max_tokens(p.max_tokens.map(|m| i32::try_from(m).unwrap_or(i32::MAX)))
                    .set_temperature(p.temperature)
                    .set_top_p(p.top_p)
                    .set_stop_sequences((!p.stop.is_empty()).then(|| p.stop.clone()))
                    .build(),
            );
        }
        if let Some(extra) = &p.extra {
            call = call.additional_model_request_fields(to_document(extra));
        }
        call = with_tier_and_latency(call, p).map_err(|e| invalid(&e))?;
        if let Some(tool) = &request.tool {
            let spec = ToolSpecification::builder()
                .name(&tool.name)
                .description(&tool.description)
                .input_schema(ToolInputSchema::Json(to_document(&tool.schema)))
                .build()
                .map_err(|e| invalid(&e))?;
            let choice = SpecificToolChoice::builder()
                .name(&tool.name)
                .build()
                .map_err(|e| invalid(&e))?;
            let mut config = ToolConfiguration::builder().tools(Tool::ToolSpec(spec));
            if let Some(point) = point
                .as_ref()
                .filter(|_| has_spot(request, CacheSpot::Tools))
            {
                config = config.tools(Tool::CachePoint(point.clone()));
            }
            let config = config
                .tool_choice(ToolChoice::Tool(choice))
                .build()
                .map_err(|e| invalid(&e))?;
            call = call.tool_config(config);
        }
        // Every SDK call is boxed where it is made: its future is kilobytes, and each future
        // that held it inline (retries, cache, the request window) would copy it again.
        let out = Box::pin(call.send())
            .await
            .map_err(|e| CallFailure::from_sdk(&e))?;
        let tool_input = out
            .output()
            .and_then(|o| o.as_message().ok())
            .and_then(|m| m.content().iter().find_map(|c| c.as_tool_use().ok()))
            .map(|t| from_document(t.input()));
        let text = out
            .output()
            .and_then(|o| o.as_message().ok())
            .map(|m| {
                m.content()
                    .iter()
                    .filter_map(|c| c.as_text().ok().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join("")
            })
            .unwrap_or_default();
        let count = |n: i32| u64::try_from(n).unwrap_or(0);
        let (input_tokens, output_tokens) = out.usage().map_or((0, 0), |u| {
            (count(u.input_tokens()), count(u.output_tokens()))
        });
        let (cache_read_tokens, cache_write_tokens) = out.usage().map_or((0, 0), |u| {
            (
                u.cache_read_input_tokens().map_or(0, count),
                u.cache_write_input_tokens().map_or(0, count),
            )
        });
        Ok(TextResponse {
            text,
            input_tokens,
            output_tokens,
            stop_reason: out.stop_reason().as_str().to_string(),
            tool_input,
            call: CallInfo {
                service_tier: out.service_tier().map(|t| Arc::from(t.r#type().as_str())),
                cache_read_tokens,
                cache_write_tokens,
                ..CallInfo::default()
            },
        })
    }

    /// Bedrock's count of a request's input tokens (`CountTokens`, free): its messages and
    /// system prompt as Converse would send them, without checkpoints.
    pub(super) async fn count_tokens_once(
        &self,
        model_id: &str,
        request: &TextRequest,
    ) -> std::result::Result<u64, CallFailure> {
        let invalid =
            |e: &dyn std::fmt::Display| CallFailure::fatal("InvalidRequest", e.to_string());
        let body = ConverseTokensRequest::builder()
            .set_messages(Some(messages(request, None).map_err(|e| invalid(&e))?))
            .set_system(Some(system(request, None)))
            .build();
        let call = self
            .runtime
            .count_tokens()
            .model_id(model_id)
            .input(CountTokensInput::Converse(body))
            .send();
        let out = Box::pin(call)
            .await
            .map_err(|e| CallFailure::from_sdk(&e))?;
        Ok(u64::try_from(out.input_tokens()).unwrap_or(0))
    }

    /// One `InvokeModel` call of an embedding model with a chunk's native body: the vectors, in
    /// the order of the chunk's texts, and the input tokens the service counted (the body's
    /// count, else the response header's).
    pub(super) async fn embed_once(
        &self,
        model_id: &str,
        family: ModelFamily,
        body: &str,
    ) -> std::result::Result<(Vec<Vec<f32>>, u64), CallFailure> {
        let header = Arc::new(AtomicU64::new(NO_COUNT));
        let call = self
            .runtime
            .invoke_model()
            .model_id(model_id)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(body.to_string()))
            .customize()
            .interceptor(InputTokenHeader(Arc::clone(&header)))
            .send();
        let out = Box::pin(call)
            .await
            .map_err(|e| CallFailure::from_sdk(&e))?;
        let (vectors, tokens) = families::decode_embed_response(family, out.body().as_ref())
            .map_err(|e| unreadable(&e))?;
        // Cohere's body has no token count: Bedrock gives it in a response header.
        let counted = header.load(Ordering::Relaxed);
        let tokens = if tokens == 0 && counted != NO_COUNT {
            counted
        } else {
            tokens
        };
        Ok((vectors, tokens))
    }
}

/// A Converse call with the request's service tier and latency, when it names them.
fn with_tier_and_latency(
    call: aws_sdk_bedrockruntime::operation::converse::builders::ConverseFluentBuilder,
    params: &crate::bedrock::request::InferenceParams,
) -> std::result::Result<
    aws_sdk_bedrockruntime::operation::converse::builders::ConverseFluentBuilder,
    aws_sdk_bedrockruntime::error::BuildError,
> {
    let call = match params.service_tier {
        Some(tier) => call.service_tier(ServiceTier::builder().r#type(tier_type(tier)).build()?),
        None => call,
    };
    Ok(match params.latency {
        Some(latency) => call.performance_config(
            PerformanceConfiguration::builder()
                .latency(latency_type(latency))
                .build(),
        ),
        None => call,
    })
}

/// Whether a request has a checkpoint at `spot`.
fn has_spot(request: &TextRequest, spot: CacheSpot) -> bool {
    request
        .cache
        .as_ref()
        .is_some_and(|c| c.spots.contains(&spot))
}

/// A request's messages as Converse messages, each text read into its text, image and
/// document blocks; with `point`, the checkpoint after the prompt's shared head splits the
/// last message's first text in two around it (the model reads them as one text).
fn messages(
    request: &TextRequest,
    point: Option<&CachePointBlock>,
) -> std::result::Result<Vec<Message>, String> {
    let head = request.cache.as_ref().and_then(|c| {
        c.spots.iter().find_map(|s| match s {
            CacheSpot::PromptHead(at) => Some(*at),
            _ => None,
        })
    });
    let last = request.messages.len().saturating_sub(1);
    let mut out = Vec::with_capacity(request.messages.len());
    for (i, message) in request.messages.iter().enumerate() {
        let role = match message.role {
            ChatRole::User => ConversationRole::User,
            ChatRole::Assistant => ConversationRole::Assistant,
        };
        let mut builder = Message::builder().role(role);
        for (j, text) in message.texts.iter().enumerate() {
            match (point, head) {
                (Some(point), Some(at))
                    if i == last && j == 0 && text.is_char_boundary(at) && at < text.len() =>
                {
                    // A head never ends inside a marker (see `prompt_cache`).
                    for block in blocks::content_blocks(&text[..at])? {
                        builder = builder.content(block);
                    }
                    builder = builder.content(ContentBlock::CachePoint(point.clone()));
                    for block in blocks::content_blocks(&text[at..])? {
                        builder = builder.content(block);
                    }
                }
                _ => {
                    for block in blocks::content_blocks(text)? {
                        builder = builder.content(block);
                    }
                }
            }
        }
        out.push(builder.build().map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// A request's system blocks: its system prompt, then the checkpoint after it when it has one.
fn system(request: &TextRequest, point: Option<&CachePointBlock>) -> Vec<SystemContentBlock> {
    let mut blocks = Vec::new();
    if let Some(system) = &request.system {
        blocks.push(SystemContentBlock::Text(system.clone()));
        if let Some(point) = point.filter(|_| has_spot(request, CacheSpot::System)) {
            blocks.push(SystemContentBlock::CachePoint(point.clone()));
        }
    }
    blocks
}

/// The `cachePoint` block of a request's checkpoints, when it has any.
fn cache_point(
    cache: Option<&CachePoints>,
) -> std::result::Result<Option<CachePointBlock>, aws_sdk_bedrockruntime::error::BuildError> {
    let Some(cache) = cache.filter(|c| !c.spots.is_empty()) else {
        return Ok(None);
    };
    let ttl = cache.ttl.map(|ttl| match ttl {
        CacheTtl::FiveMinutes => SdkCacheTtl::FiveMinutes,
        CacheTtl::OneHour => SdkCacheTtl::OneHour,
    });
    CachePointBlock::builder()
        .r#type(CachePointType::Default)
        .set_ttl(ttl)
        .build()
        .map(Some)
}

/// The SDK's value of a service tier.
fn tier_type(tier: ServiceTierChoice) -> ServiceTierType {
    match tier {
        ServiceTierChoice::Default => ServiceTierType::Default,
        ServiceTierChoice::Flex => ServiceTierType::Flex,
        ServiceTierChoice::Priority => ServiceTierType::Priority,
    }
}

/// The SDK's value of a latency setting.
fn latency_type(latency: Latency) -> PerformanceConfigLatency {
    match latency {
        Latency::Standard => PerformanceConfigLatency::Standard,
        Latency::Optimized => PerformanceConfigLatency::Optimized,
    }
}

/// The header in which `InvokeModel` reports the input tokens it counted.
const INPUT_TOKEN_HEADER: &str = "x-amzn-bedrock-input-token-count";

/// No [`INPUT_TOKEN_HEADER`] was seen.
const NO_COUNT: u64 = u64::MAX;

/// Reads [`INPUT_TOKEN_HEADER`] of a response into a shared cell.
#[derive(Debug)]
struct InputTokenHeader(Arc<AtomicU64>);

impl Intercept for InputTokenHeader {
    fn name(&self) -> &'static str {
        "InputTokenHeader"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        if let Some(count) = context
            .response()
            .headers()
            .get(INPUT_TOKEN_HEADER)
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            self.0.store(count.min(NO_COUNT - 1), Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A response body the codec could not read: retried like a dropped connection.
fn unreadable(e: &Error) -> CallFailure {
    CallFailure {
        kind: FailureKind::Transient,
        code: "ResponseError".into(),
        message: e.to_string(),
    }
}

/// A JSON value as a Smithy document (Converse's `additionalModelRequestFields`).
pub(crate) fn to_document(value: &serde_json::Value) -> Document {
    use aws_smithy_types::Number;
    match value {
        serde_json::Value::Null => Document::Null,
        serde_json::Value::Bool(b) => Document::Bool(*b),
        serde_json::Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or_default())
        }),
        serde_json::Value::String(s) => Document::String(s.clone()),
        serde_json::Value::Array(items) => Document::Array(items.iter().map(to_document).collect()),
        serde_json::Value::Object(map) => Document::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_document(v)))
                .collect(),
        ),
    }
}

/// The JSON value of a Smithy document.
pub(crate) fn from_document(document: &Document) -> serde_json::Value {
    use aws_smithy_types::Number;
    match document {
        Document::Null => serde_json::Value::Null,
        Document::Bool(b) => serde_json::Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => serde_json::Value::from(*u),
        Document::Number(Number::NegInt(i)) => serde_json::Value::from(*i),
        Document::Number(Number::Float(f)) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Document::String(s) => serde_json::Value::String(s.clone()),
        Document::Array(items) => {
            serde_json::Value::Array(items.iter().map(from_document).collect())
        }
        Document::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), from_document(v)))
                .collect(),
        ),
    }
}
