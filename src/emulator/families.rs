//! Native `InvokeModel` bodies of the text families: request schemas, responses, stream chunks.

use serde_json::{Value, json};

use super::answer::{Conversation, Reply, Role, StopReason, Turn, fnv1a, stream_pieces};
use super::catalog::{CatalogModel, Family};
use super::converse;
use super::json::Obj;
use super::wire::ApiError;

/// A validated native text-generation request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InvokeRequest {
    pub conversation: Conversation,
    pub max_tokens: Option<u32>,
    pub stop_sequences: Vec<String>,
}

/// Timings reported in `amazon-bedrock-invocationMetrics`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Timings {
    pub latency_ms: u64,
    pub first_byte_ms: u64,
}

fn metrics(reply: &Reply, t: Timings) -> Value {
    json!({
        "inputTokenCount": reply.input_tokens,
        "outputTokenCount": reply.output_tokens,
        "invocationLatency": t.latency_ms,
        "firstByteLatency": t.first_byte_ms,
    })
}

/// Reads a text family's native body.
pub(crate) fn parse(model: &CatalogModel, body: &Value) -> Result<InvokeRequest, ApiError> {
    let o = Obj::root(body)?;
    let max = model.max_output_tokens;
    match model.family {
        Family::TitanText => parse_titan_text(&o, max),
        Family::Nova => parse_nova(&o, max),
        Family::Claude => parse_claude(&o, max),
        Family::Llama => {
            o.allow_only(&["prompt", "temperature", "top_p", "max_gen_len", "images"])?;
            let prompt = o.req_str("prompt")?;
            o.opt_f64("temperature", 0.0, 1.0)?;
            o.opt_f64("top_p", 0.0, 1.0)?;
            Ok(InvokeRequest {
                conversation: llama_conversation(prompt),
                max_tokens: o.opt_u32("max_gen_len", 1, max)?,
                stop_sequences: Vec::new(),
            })
        }
        Family::Mistral => {
            o.allow_only(&[
                "prompt",
                "max_tokens",
                "stop",
                "temperature",
                "top_p",
                "top_k",
            ])?;
            let prompt = o.req_str("prompt")?;
            o.opt_f64("temperature", 0.0, 1.0)?;
            o.opt_f64("top_p", 0.0, 1.0)?;
            o.opt_u32("top_k", 0, 200)?;
            Ok(InvokeRequest {
                conversation: mistral_conversation(prompt),
                max_tokens: o.opt_u32("max_tokens", 1, max)?,
                stop_sequences: o.opt_str_list("stop")?,
            })
        }
        Family::CohereCommandR => parse_cohere(&o, max),
        Family::Jamba => parse_jamba(&o, max),
        Family::TitanEmbed | Family::CohereEmbed | Family::MetadataOnly => Err(
            ApiError::validation("The provided model doesn't support text generation."),
        ),
    }
}

fn parse_titan_text(o: &Obj<'_>, max: u32) -> Result<InvokeRequest, ApiError> {
    o.allow_only(&["inputText", "textGenerationConfig"])?;
    let input = o.req_str("inputText")?;
    if input.is_empty() {
        return Err(ApiError::malformed("expected minLength: 1, actual: 0"));
    }
    let mut request = InvokeRequest {
        conversation: Conversation::single(input),
        max_tokens: None,
        stop_sequences: Vec::new(),
    };
    if let Some(config) = o.opt_obj("textGenerationConfig")? {
        config.allow_only(&["temperature", "topP", "maxTokenCount", "stopSequences"])?;
        config.opt_f64("temperature", 0.0, 1.0)?;
        config.opt_f64("topP", 0.0, 1.0)?;
        request.max_tokens = config.opt_u32("maxTokenCount", 0, max)?;
        request.stop_sequences = config.opt_str_list("stopSequences")?;
    }
    Ok(request)
}

fn parse_nova(o: &Obj<'_>, max: u32) -> Result<InvokeRequest, ApiError> {
    o.allow_only(&[
        "schemaVersion",
        "system",
        "messages",
        "inferenceConfig",
        "toolConfig",
    ])?;
    let messages = o.req_array("messages")?;
    let conversation = Conversation {
        system: converse::parse_system(o.get("system"))?,
        turns: converse::parse_messages(messages)?,
    };
    let mut request = InvokeRequest {
        conversation,
        max_tokens: None,
        stop_sequences: Vec::new(),
    };
    if let Some(config) = o.opt_obj("inferenceConfig")? {
        config.allow_only(&[
            "max_new_tokens",
            "temperature",
            "top_p",
            "top_k",
            "stopSequences",
        ])?;
        config.opt_f64("temperature", 0.0, 1.0)?;
        config.opt_f64("top_p", 0.0, 1.0)?;
        config.opt_u32("top_k", 0, 128)?;
        request.max_tokens = config.opt_u32("max_new_tokens", 1, max)?;
        request.stop_sequences = config.opt_str_list("stopSequences")?;
    }
    Ok(request)
}

fn parse_claude(o: &Obj<'_>, max: u32) -> Result<InvokeRequest, ApiError> {
    o.allow_only(&[
        "anthropic_version",
        "anthropic_beta",
        "max_tokens",
        "messages",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
    ])?;
    let version = o.req_str("anthropic_version")?;
    if version != "bedrock-2023-05-31" {
        return Err(ApiError::malformed(format!(
            "#/anthropic_version: {version} is not a valid enum value"
        )));
    }
    let max_tokens = o.req_u32("max_tokens", 1, max)?;
    o.opt_f64("temperature", 0.0, 1.0)?;
    o.opt_f64("top_p", 0.0, 1.0)?;
    o.opt_u32("top_k", 0, 500)?;
    let mut turns = Vec::new();
    for (i, m) in o.req_array("messages")?.iter().enumerate() {
        let m = o.item("messages", i, m)?;
        let role = match m.req_str("role")? {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(ApiError::malformed(format!(
                    "{}: {other} is not a valid enum value",
                    m.path_of("role")
                )));
            }
        };
        turns.push(claude_turn(role, m.get("content"), &m.path_of("content"))?);
    }
    let system = match o.get("system") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(blocks) => blocks
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b.get("text").and_then(Value::as_str).map(str::to_string))
            .collect(),
    };
    Ok(InvokeRequest {
        conversation: Conversation { system, turns },
        max_tokens: Some(max_tokens),
        stop_sequences: o.opt_str_list("stop_sequences")?,
    })
}

fn claude_turn(role: Role, content: Option<&Value>, path: &str) -> Result<Turn, ApiError> {
    match content {
        Some(Value::String(text)) => Ok(Turn {
            role,
            texts: vec![text.clone()],
            blocks: 1,
            media: Vec::new(),
        }),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            for block in blocks {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = block.get("text").and_then(Value::as_str) {
                            texts.push(t.to_string());
                        }
                    }
                    Some("tool_result") => match block.get("content") {
                        Some(Value::String(t)) => texts.push(t.clone()),
                        Some(Value::Array(parts)) => texts.extend(
                            parts
                                .iter()
                                .filter_map(|p| p.get("text").and_then(Value::as_str))
                                .map(str::to_string),
                        ),
                        _ => {}
                    },
                    _ => {}
                }
            }
            Ok(Turn {
                role,
                texts,
                blocks: blocks.len(),
                media: Vec::new(),
            })
        }
        Some(other) => Err(ApiError::malformed(format!(
            "{path}: expected type: JSONArray, found: {}",
            super::json::type_name(other)
        ))),
        None => Err(ApiError::malformed(format!(
            "{}: required key [content] not found",
            path.trim_end_matches("/content")
        ))),
    }
}

fn parse_cohere(o: &Obj<'_>, max: u32) -> Result<InvokeRequest, ApiError> {
    o.allow_only(&[
        "message",
        "chat_history",
        "documents",
        "search_queries_only",
        "preamble",
        "max_tokens",
        "temperature",
        "p",
        "k",
        "prompt_truncation",
        "frequency_penalty",
        "presence_penalty",
        "seed",
        "return_prompt",
        "tools",
        "tool_results",
        "stop_sequences",
        "raw_prompting",
    ])?;
    let message = o.req_str("message")?;
    o.opt_f64("temperature", 0.0, 1.0)?;
    o.opt_f64("p", 0.01, 0.99)?;
    o.opt_u32("k", 0, 500)?;
    let mut system: Vec<String> = o
        .opt_str("preamble")?
        .map(str::to_string)
        .into_iter()
        .collect();
    let mut turns = Vec::new();
    for (i, entry) in o.opt_array("chat_history")?.iter().enumerate() {
        let entry = o.item("chat_history", i, entry)?;
        let text = entry.req_str("message")?.to_string();
        match entry.req_str("role")? {
            "USER" => turns.push(Turn::user(text)),
            "CHATBOT" => turns.push(Turn::assistant(text)),
            "SYSTEM" => system.push(text),
            other => {
                return Err(ApiError::malformed(format!(
                    "{}: {other} is not a valid enum value",
                    entry.path_of("role")
                )));
            }
        }
    }
    turns.push(Turn::user(message));
    Ok(InvokeRequest {
        conversation: Conversation { system, turns },
        max_tokens: o.opt_u32("max_tokens", 1, max)?,
        stop_sequences: o.opt_str_list("stop_sequences")?,
    })
}

fn parse_jamba(o: &Obj<'_>, max: u32) -> Result<InvokeRequest, ApiError> {
    o.allow_only(&[
        "messages",
        "max_tokens",
        "temperature",
        "top_p",
        "stop",
        "n",
        "frequency_penalty",
        "presence_penalty",
        "tools",
        "response_format",
        "documents",
    ])?;
    o.opt_f64("temperature", 0.0, 2.0)?;
    o.opt_f64("top_p", 0.0, 1.0)?;
    o.opt_u32("n", 1, 16)?;
    let mut conversation = Conversation::default();
    for (i, m) in o.req_array("messages")?.iter().enumerate() {
        let m = o.item("messages", i, m)?;
        let text = m.req_str("content")?.to_string();
        match m.req_str("role")? {
            "system" => conversation.system.push(text),
            "user" | "tool" => conversation.turns.push(Turn::user(text)),
            "assistant" => conversation.turns.push(Turn::assistant(text)),
            other => {
                return Err(ApiError::malformed(format!(
                    "{}: {other} is not a valid enum value",
                    m.path_of("role")
                )));
            }
        }
    }
    Ok(InvokeRequest {
        conversation,
        max_tokens: o.opt_u32("max_tokens", 1, max)?,
        stop_sequences: o.opt_str_list("stop")?,
    })
}

/// Reads a Llama 3 chat template (`<|start_header_id|>role<|end_header_id|>…<|eot_id|>`);
/// a prompt without one is a single user message.
fn llama_conversation(prompt: &str) -> Conversation {
    if !prompt.contains("<|start_header_id|>") {
        return Conversation::single(prompt.trim_start_matches("<|begin_of_text|>"));
    }
    let mut conversation = Conversation::default();
    for segment in prompt.split("<|start_header_id|>").skip(1) {
        let Some((role, rest)) = segment.split_once("<|end_header_id|>") else {
            continue;
        };
        let text = rest.split("<|eot_id|>").next().unwrap_or_default().trim();
        match role.trim() {
            "system" => conversation.system.push(text.to_string()),
            "assistant" if text.is_empty() => {}
            "assistant" => conversation.turns.push(Turn::assistant(text)),
            _ => conversation.turns.push(Turn::user(text)),
        }
    }
    conversation
}

/// Reads Mistral's `<s>[INST] … [/INST] answer</s>[INST] … [/INST]` template; a prompt
/// without one is a single user message.
fn mistral_conversation(prompt: &str) -> Conversation {
    if !prompt.contains("[INST]") {
        return Conversation::single(prompt.trim_start_matches("<s>"));
    }
    let mut conversation = Conversation::default();
    for segment in prompt.split("[INST]").skip(1) {
        let (user, answer) = segment.split_once("[/INST]").unwrap_or((segment, ""));
        conversation.turns.push(Turn::user(user.trim()));
        let answer = answer
            .trim()
            .trim_end_matches("<s>")
            .trim_end_matches("</s>")
            .trim();
        if !answer.is_empty() {
            conversation.turns.push(Turn::assistant(answer));
        }
    }
    conversation
}

fn response_id(prefix: &str, model: &CatalogModel, reply: &Reply) -> String {
    format!(
        "{prefix}{:016x}",
        fnv1a(&[model.id.as_bytes(), reply.text.as_bytes()])
    )
}

/// The native response body.
pub(crate) fn response(model: &CatalogModel, reply: &Reply) -> Value {
    let stop = &reply.stop;
    let text = &reply.text;
    match model.family {
        Family::TitanText => json!({
            "inputTextTokenCount": reply.input_tokens,
            "results": [{
                "tokenCount": reply.output_tokens,
                "outputText": text,
                "completionReason": titan_reason(stop),
            }]
        }),
        Family::Nova => json!({
            "output": { "message": { "role": "assistant", "content": [{ "text": text }] } },
            "stopReason": converse::stop_reason(stop),
            "usage": {
                "inputTokens": reply.input_tokens,
                "outputTokens": reply.output_tokens,
                "totalTokens": reply.input_tokens + reply.output_tokens,
            }
        }),
        Family::Claude => json!({
            "id": response_id("msg_bdrk_", model, reply),
            "type": "message",
            "role": "assistant",
            "model": model.id,
            "content": [{ "type": "text", "text": text }],
            "stop_reason": converse::stop_reason(stop),
            "stop_sequence": stop_sequence(stop),
            "usage": { "input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens }
        }),
        Family::Llama => json!({
            "generation": text,
            "prompt_token_count": reply.input_tokens,
            "generation_token_count": reply.output_tokens,
            "stop_reason": short_reason(stop),
        }),
        Family::Mistral => json!({
            "outputs": [{ "text": text, "stop_reason": short_reason(stop) }]
        }),
        Family::CohereCommandR => json!({
            "response_id": response_id("", model, reply),
            "generation_id": response_id("gen-", model, reply),
            "text": text,
            "finish_reason": cohere_reason(stop),
            "chat_history": [],
        }),
        Family::Jamba => json!({
            "id": response_id("chatcmpl-", model, reply),
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "finish_reason": short_reason(stop),
            }],
            "usage": {
                "prompt_tokens": reply.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
            }
        }),
        Family::TitanEmbed | Family::CohereEmbed | Family::MetadataOnly => Value::Null,
    }
}

fn titan_reason(stop: &StopReason) -> &'static str {
    match stop {
        StopReason::EndTurn => "FINISH",
        StopReason::MaxTokens => "LENGTH",
        StopReason::StopSequence(_) => "STOP_CRITERIA_MET",
    }
}

fn short_reason(stop: &StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens => "length",
        _ => "stop",
    }
}

fn cohere_reason(stop: &StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens => "MAX_TOKENS",
        _ => "COMPLETE",
    }
}

fn stop_sequence(stop: &StopReason) -> Value {
    match stop {
        StopReason::StopSequence(s) => json!(s),
        _ => Value::Null,
    }
}

/// The stream chunks of the Anthropic Messages API.
fn claude_chunks(model: &CatalogModel, reply: &Reply, pieces: &[&str]) -> Vec<Value> {
    let stop = &reply.stop;
    let mut chunks = vec![
        json!({
            "type": "message_start",
            "message": {
                "id": response_id("msg_bdrk_", model, reply), "type": "message", "role": "assistant",
                "model": model.id, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": { "input_tokens": reply.input_tokens, "output_tokens": 1 }
            }
        }),
        json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
    ];
    for piece in pieces {
        chunks.push(json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": piece } }));
    }
    chunks.push(json!({ "type": "content_block_stop", "index": 0 }));
    chunks.push(json!({
        "type": "message_delta",
        "delta": { "stop_reason": converse::stop_reason(stop), "stop_sequence": stop_sequence(stop) },
        "usage": { "output_tokens": reply.output_tokens }
    }));
    chunks.push(json!({ "type": "message_stop" }));
    chunks
}

/// The chunks of `invoke-with-response-stream`, each a JSON document the service base64-wraps
/// in `{"bytes": …}`. The last chunk carries `amazon-bedrock-invocationMetrics`.
pub(crate) fn stream_chunks(model: &CatalogModel, reply: &Reply, t: Timings) -> Vec<Value> {
    let pieces = stream_pieces(&reply.text);
    let last = pieces.len().saturating_sub(1);
    let stop = &reply.stop;
    let mut chunks: Vec<Value> = Vec::new();
    match model.family {
        Family::TitanText => {
            for (i, piece) in pieces.iter().enumerate() {
                let done = i == last;
                chunks.push(json!({
                    "outputText": piece,
                    "index": 0,
                    "totalOutputTextTokenCount": if done { json!(reply.output_tokens) } else { Value::Null },
                    "completionReason": if done { json!(titan_reason(stop)) } else { Value::Null },
                    "inputTextTokenCount": if i == 0 { json!(reply.input_tokens) } else { Value::Null },
                }));
            }
        }
        Family::Nova => {
            chunks.push(json!({ "messageStart": { "role": "assistant" } }));
            for piece in &pieces {
                chunks.push(json!({ "contentBlockDelta": { "delta": { "text": piece }, "contentBlockIndex": 0 } }));
            }
            chunks.push(json!({ "contentBlockStop": { "contentBlockIndex": 0 } }));
            chunks.push(json!({ "messageStop": { "stopReason": converse::stop_reason(stop) } }));
            chunks.push(json!({ "metadata": { "usage": { "inputTokens": reply.input_tokens, "outputTokens": reply.output_tokens } } }));
        }
        Family::Claude => chunks.extend(claude_chunks(model, reply, &pieces)),
        Family::Llama => {
            let mut generated = 0;
            for (i, piece) in pieces.iter().enumerate() {
                generated += super::answer::count_text_tokens(piece);
                chunks.push(json!({
                    "generation": piece,
                    "prompt_token_count": if i == 0 { json!(reply.input_tokens) } else { Value::Null },
                    "generation_token_count": generated,
                    "stop_reason": if i == last { json!(short_reason(stop)) } else { Value::Null },
                }));
            }
        }
        Family::Mistral => {
            for (i, piece) in pieces.iter().enumerate() {
                let reason = if i == last {
                    json!(short_reason(stop))
                } else {
                    Value::Null
                };
                chunks.push(json!({ "outputs": [{ "text": piece, "stop_reason": reason }] }));
            }
        }
        Family::CohereCommandR => {
            chunks.push(json!({ "is_finished": false, "event_type": "stream-start", "generation_id": response_id("gen-", model, reply) }));
            for piece in &pieces {
                chunks.push(
                    json!({ "is_finished": false, "event_type": "text-generation", "text": piece }),
                );
            }
            chunks.push(json!({
                "is_finished": true,
                "event_type": "stream-end",
                "finish_reason": cohere_reason(stop),
                "response": response(model, reply),
            }));
        }
        Family::Jamba => {
            let id = response_id("chatcmpl-", model, reply);
            chunks.push(json!({ "id": id, "choices": [{ "index": 0, "delta": { "role": "assistant" }, "finish_reason": null }] }));
            for piece in &pieces {
                chunks.push(json!({ "id": id, "choices": [{ "index": 0, "delta": { "content": piece }, "finish_reason": null }] }));
            }
            chunks.push(json!({
                "id": id,
                "choices": [{ "index": 0, "delta": {}, "finish_reason": short_reason(stop) }],
                "usage": {
                    "prompt_tokens": reply.input_tokens,
                    "completion_tokens": reply.output_tokens,
                    "total_tokens": reply.input_tokens + reply.output_tokens,
                }
            }));
        }
        Family::TitanEmbed | Family::CohereEmbed | Family::MetadataOnly => {}
    }
    if let Some(Value::Object(last_chunk)) = chunks.last_mut() {
        last_chunk.insert("amazon-bedrock-invocationMetrics".into(), metrics(reply, t));
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::answer::reply;
    use crate::emulator::catalog;

    fn model(id: &str) -> &'static CatalogModel {
        catalog::find(id).unwrap()
    }

    fn parsed(id: &str, body: &Value) -> Result<InvokeRequest, String> {
        parse(model(id), body).map_err(|e| e.message)
    }

    #[test]
    fn templates_become_conversations() {
        let llama = llama_conversation(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhy?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        );
        assert_eq!(llama.system, vec!["Be brief.".to_string()]);
        assert_eq!(
            llama.turns,
            vec![
                Turn::user("Hi"),
                Turn::assistant("Hello"),
                Turn::user("Why?")
            ]
        );
        let mistral = mistral_conversation("<s>[INST] Hi [/INST] Hello</s>[INST] Why? [/INST]");
        assert_eq!(
            mistral.turns,
            vec![
                Turn::user("Hi"),
                Turn::assistant("Hello"),
                Turn::user("Why?")
            ]
        );
        assert_eq!(llama_conversation("plain").turns, vec![Turn::user("plain")]);
    }

    #[test]
    fn each_family_reads_its_native_body() {
        let cases = [
            (
                "amazon.titan-text-premier-v1:0",
                json!({"inputText": "q", "textGenerationConfig": {"maxTokenCount": 7, "stopSequences": ["|"]}}),
                Some(7),
            ),
            (
                "amazon.nova-micro-v1:0",
                json!({"messages": [{"role": "user", "content": [{"text": "q"}]}], "inferenceConfig": {"max_new_tokens": 7}}),
                Some(7),
            ),
            (
                "anthropic.claude-3-haiku-20240307-v1:0",
                json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 7, "messages": [{"role": "user", "content": "q"}]}),
                Some(7),
            ),
            (
                "meta.llama3-8b-instruct-v1:0",
                json!({"prompt": "q", "max_gen_len": 7}),
                Some(7),
            ),
            (
                "mistral.mistral-7b-instruct-v0:2",
                json!({"prompt": "<s>[INST] q [/INST]", "max_tokens": 7}),
                Some(7),
            ),
            (
                "cohere.command-r-v1:0",
                json!({"message": "q", "max_tokens": 7}),
                Some(7),
            ),
            (
                "ai21.jamba-1-5-mini-v1:0",
                json!({"messages": [{"role": "user", "content": "q"}], "max_tokens": 7}),
                Some(7),
            ),
        ];
        for (id, body, max) in cases {
            let r = parsed(id, &body).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(
                (r.conversation.last_user_text().as_str(), r.max_tokens),
                ("q", max),
                "{id}"
            );
        }
    }

    #[test]
    fn schema_violations_are_malformed_input() {
        let claude = "anthropic.claude-3-haiku-20240307-v1:0";
        assert_eq!(
            parsed(claude, &json!({"anthropic_version": "bedrock-2023-05-31", "messages": [{"role": "user", "content": "q"}]})),
            Err("Malformed input request: #: required key [max_tokens] not found, please reformat your input and try again.".into())
        );
        assert_eq!(
            parsed("amazon.titan-text-premier-v1:0", &json!({"texts": ["q"], "input_type": "search_document"})),
            Err("Malformed input request: #: extraneous key [input_type] is not permitted, please reformat your input and try again.".into())
        );
        assert_eq!(
            parsed("meta.llama3-8b-instruct-v1:0", &json!({"prompt": "q", "max_gen_len": 4096})),
            Err("Malformed input request: #/max_gen_len: 4096 is not less or equal to 2048, please reformat your input and try again.".into())
        );
        assert_eq!(
            parsed("amazon.titan-embed-text-v2:0", &json!({"inputText": "q"})),
            Err("The provided model doesn't support text generation.".into())
        );
    }

    #[test]
    fn stream_chunks_carry_the_whole_answer_and_metrics() {
        let m = model("ai21.jamba-1-5-mini-v1:0");
        let r = reply(
            m.id,
            &Conversation::single("one two three four five six"),
            100,
            &[],
        );
        let chunks = stream_chunks(m, &r, Timings::default());
        let text: String = chunks
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(text, r.text);
        let last = chunks.last().unwrap();
        assert_eq!(
            last["amazon-bedrock-invocationMetrics"]["outputTokenCount"],
            json!(r.output_tokens)
        );
        assert_eq!(last["choices"][0]["finish_reason"], json!("stop"));
    }
}
