//! One request as a batch record and one output line back: a Converse body (without the model
//! id) for Converse jobs, the model family's native body for `InvokeModel` jobs; an output line
//! holds the response body (`modelOutput`) or the record's error.

use serde_json::{Value, json};

use crate::bedrock::engine::Api;
use crate::bedrock::families::{self, ModelFamily};
use crate::bedrock::request::{ChatRole, TextRequest, TextResponse};
use crate::bedrock::retry::CallFailure;

/// The code of a record the batch job answered with an error.
pub const RECORD_ERROR: &str = "BatchRecordError";

/// Characters of a record id: `REC` and eight digits.
pub const RECORD_ID_LEN: usize = 11;

/// The record id of the `n`th record of a job: `REC00000000`, `REC00000001`, …
#[must_use]
pub fn record_id(n: usize) -> String {
    format!("REC{n:08}")
}

/// The job type of an API: `Converse` or `InvokeModel`.
pub(crate) fn invocation_type(api: Api) -> aws_sdk_bedrock::types::ModelInvocationType {
    match api {
        Api::Converse => aws_sdk_bedrock::types::ModelInvocationType::Converse,
        Api::Invoke => aws_sdk_bedrock::types::ModelInvocationType::InvokeModel,
    }
}

/// Why a request cannot be a batch record: structured output needs a forced tool, which
/// batch jobs do not take.
pub(crate) const NO_TOOLS: &str = "structured output (output_schema) needs a forced tool, which Bedrock batch jobs do not take: run this model with execution = 'on_demand'";

/// The `modelInput` of a request.
///
/// # Errors
/// A failure for a request with a tool, and for one the model family cannot express natively.
pub(crate) fn model_input(
    api: Api,
    model_id: &str,
    request: &TextRequest,
) -> Result<Value, CallFailure> {
    if request.tool.is_some() {
        return Err(CallFailure::fatal("InvalidRequest", NO_TOOLS));
    }
    match api {
        Api::Converse => {
            converse_body(request).map_err(|e| CallFailure::fatal("InvalidRequest", e))
        }
        Api::Invoke if crate::bedrock::engine::request_has_media(request) => {
            Err(CallFailure::fatal(
                "InvalidRequest",
                crate::bedrock::engine::MEDIA_NEEDS_CONVERSE,
            ))
        }
        Api::Invoke => {
            let family = ModelFamily::from_model_id(model_id).ok_or_else(|| {
                CallFailure::fatal(
                    "UnsupportedModel",
                    format!(
                        "model '{model_id}' has no native InvokeModel codec here: use api = 'converse'"
                    ),
                )
            })?;
            families::encode_text_request(family, request)
                .map_err(|e| CallFailure::fatal("InvalidRequest", e.to_string()))
        }
    }
}

/// A text's Converse content blocks as JSON: text, and its images and documents with their
/// bytes in base64 (as the Converse API's JSON carries them).
fn content(text: &str) -> Result<Vec<Value>, String> {
    use crate::bedrock::media::MediaKind;
    use crate::bedrock::media::marker::{self, Piece};
    if !marker::has_media(text) {
        return Ok(vec![json!({ "text": text })]);
    }
    let mut blocks = Vec::new();
    for piece in marker::pieces(text)? {
        match piece {
            Piece::Text(t) if t.trim().is_empty() => {}
            Piece::Text(t) => blocks.push(json!({ "text": t })),
            Piece::Reference(r) => return Err(format!("{} was not read before sending", r.url)),
            Piece::Inline(b) => blocks.push(match b.kind {
                MediaKind::Image => json!({ "image": {
                    "format": b.format.name(), "source": { "bytes": b.data } } }),
                MediaKind::Document => json!({ "document": {
                    "format": b.format.name(), "name": b.name.unwrap_or("document"),
                    "source": { "bytes": b.data } } }),
            }),
        }
    }
    Ok(blocks)
}

/// A Converse request body without `modelId`, as Converse batch jobs take it.
fn converse_body(request: &TextRequest) -> Result<Value, String> {
    let mut messages: Vec<Value> = Vec::with_capacity(request.messages.len());
    for m in &request.messages {
        let mut blocks = Vec::new();
        for text in &m.texts {
            blocks.extend(content(text)?);
        }
        messages.push(json!({
            "role": match m.role { ChatRole::User => "user", ChatRole::Assistant => "assistant" },
            "content": blocks,
        }));
    }
    let mut body = json!({ "messages": messages });
    if let Some(system) = &request.system {
        body["system"] = json!([{ "text": system }]);
    }
    let p = &request.params;
    let mut config = serde_json::Map::new();
    if let Some(m) = p.max_tokens {
        config.insert("maxTokens".into(), json!(m));
    }
    if let Some(t) = p.temperature {
        config.insert("temperature".into(), json!(t));
    }
    if let Some(t) = p.top_p {
        config.insert("topP".into(), json!(t));
    }
    if !p.stop.is_empty() {
        config.insert("stopSequences".into(), json!(p.stop));
    }
    if !config.is_empty() {
        body["inferenceConfig"] = Value::Object(config);
    }
    if let Some(extra) = &p.extra {
        body["additionalModelRequestFields"] = extra.clone();
    }
    Ok(body)
}

/// One output line: its record id and the answer or the record's failure.
///
/// # Errors
/// `Err` with what is wrong when the line is not an output record (no JSON, no `recordId`).
pub(crate) fn read_output_line(
    api: Api,
    model_id: &str,
    line: &str,
) -> Result<(String, Result<TextResponse, CallFailure>), String> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| format!("a line is not JSON ({e})"))?;
    let id = value
        .get("recordId")
        .and_then(Value::as_str)
        .ok_or("a line has no recordId")?
        .to_string();
    if let Some(error) = value.get("error") {
        let message = error
            .get("errorMessage")
            .and_then(Value::as_str)
            .unwrap_or("the record failed without a message");
        let message = match error.get("errorCode") {
            Some(Value::Number(n)) => format!("{} (error code {n})", message.trim_end_matches('.')),
            Some(Value::String(s)) => format!("{} (error code {s})", message.trim_end_matches('.')),
            _ => message.to_string(),
        };
        return Ok((id, Err(CallFailure::fatal(RECORD_ERROR, message))));
    }
    let Some(output) = value.get("modelOutput") else {
        return Ok((
            id,
            Err(CallFailure::fatal(
                "ResponseError",
                "the record's output has neither modelOutput nor error",
            )),
        ));
    };
    let answer = match api {
        Api::Converse => converse_answer(output),
        Api::Invoke => ModelFamily::from_model_id(model_id)
            .ok_or_else(|| "no native codec".to_string())
            .and_then(|family| {
                families::decode_text_response(family, output.to_string().as_bytes())
                    .map_err(|e| e.to_string())
            }),
    };
    Ok((
        id,
        answer.map_err(|why| {
            CallFailure::fatal(
                "ResponseError",
                format!("the record's modelOutput is not an answer: {why}"),
            )
        }),
    ))
}

/// A Converse response body as an answer.
fn converse_answer(output: &Value) -> Result<TextResponse, String> {
    let content = output
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or("no output.message.content")?;
    let text: Vec<&str> = content
        .iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let count = |name: &str| {
        output
            .pointer(&format!("/usage/{name}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(TextResponse {
        text: text.join(""),
        input_tokens: count("inputTokens"),
        output_tokens: count("outputTokens"),
        stop_reason: output
            .get("stopReason")
            .and_then(Value::as_str)
            .unwrap_or("end_turn")
            .to_string(),
        tool_input: None,
        call: crate::bedrock::request::CallInfo::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::request::{InferenceParams, ToolSpec};

    #[test]
    fn a_converse_record_is_the_request_without_model_id() {
        let mut request = TextRequest::prompt(
            "What is the capital of Sweden?",
            InferenceParams {
                max_tokens: Some(100),
                temperature: Some(0.5),
                stop: vec!["\n\n".into()],
                ..InferenceParams::default()
            },
        );
        request.system = Some("Be brief.".into());
        let body = model_input(Api::Converse, "amazon.nova-micro-v1:0", &request).unwrap();
        assert_eq!(
            body,
            json!({
                "messages": [{"role": "user", "content": [{"text": "What is the capital of Sweden?"}]}],
                "system": [{"text": "Be brief."}],
                "inferenceConfig": {"maxTokens": 100, "temperature": 0.5, "stopSequences": ["\n\n"]},
            })
        );
        request.tool = Some(ToolSpec {
            name: "answer".into(),
            description: String::new(),
            schema: json!({}),
        });
        let refused = model_input(Api::Converse, "amazon.nova-micro-v1:0", &request).unwrap_err();
        assert_eq!(refused.message, NO_TOOLS);
        assert_eq!(record_id(7), "REC00000007");
        assert_eq!(record_id(7).len(), RECORD_ID_LEN);
    }

    #[test]
    fn output_lines_become_answers_or_failures() {
        let (id, answer) = read_output_line(
            Api::Converse,
            "m",
            r#"{"recordId":"REC00000001","modelInput":{},"modelOutput":{"output":{"message":{"role":"assistant","content":[{"text":"Stockholm"}]}},"stopReason":"end_turn","usage":{"inputTokens":9,"outputTokens":2,"totalTokens":11}}}"#,
        )
        .unwrap();
        let answer = answer.unwrap();
        assert_eq!(
            (
                id.as_str(),
                answer.text.as_str(),
                answer.input_tokens,
                answer.output_tokens
            ),
            ("REC00000001", "Stockholm", 9, 2)
        );
        let (_, failed) = read_output_line(
            Api::Converse,
            "m",
            r#"{"recordId":"REC00000002","modelInput":{},"error":{"errorCode":400,"errorMessage":"Malformed input request"}}"#,
        )
        .unwrap();
        let failed = failed.unwrap_err();
        assert_eq!(
            (failed.code.as_str(), failed.message.as_str()),
            (
                "BatchRecordError",
                "Malformed input request (error code 400)"
            )
        );
        assert_eq!(
            read_output_line(Api::Converse, "m", "{}").unwrap_err(),
            "a line has no recordId"
        );
    }
}
