//! AI21 Labs Jamba, chat completions.
//!
//! Request: `{"messages": [{"role": "system"|"user"|"assistant", "content"}], "max_tokens",
//! "temperature", "top_p", "stop"}`; response: `{"choices": [{"message": {"content"},
//! "finish_reason"}], "usage": {"prompt_tokens", "completion_tokens"}}`.

use serde_json::{Map, Value, json};

use super::ModelFamily;
use super::common::{self, Body, ParamKeys};
use crate::Result;
use crate::bedrock::request::{ChatRole, TextRequest, TextResponse};

const JAMBA: ModelFamily = ModelFamily::Jamba;

/// The Jamba request body.
pub(super) fn encode(request: &TextRequest) -> Result<Value> {
    common::check_conversation(JAMBA, request, false)?;
    let system = request
        .system
        .iter()
        .map(|system| json!({"role": "system", "content": system}));
    let conversation = request.messages.iter().map(|message| {
        let role = match message.role {
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        };
        json!({"role": role, "content": message.joined()})
    });
    let mut body = Map::new();
    body.insert(
        "messages".into(),
        system.chain(conversation).collect::<Vec<_>>().into(),
    );
    common::put_params(
        JAMBA,
        &mut body,
        &request.params,
        &ParamKeys {
            max_tokens: "max_tokens",
            temperature: "temperature",
            top_p: "top_p",
            stop: Some("stop"),
        },
    )?;
    common::with_extra(JAMBA, body, request.params.extra.as_ref())
}

/// Parses a Jamba response body.
pub(super) fn decode(raw: &[u8]) -> Result<TextResponse> {
    let body = Body::parse(JAMBA, raw)?;
    let text = body.str("/choices/0/message/content")?.to_owned();
    let stop_reason = match body.opt_str("/choices/0/finish_reason") {
        Some("stop") => "end_turn".into(),
        Some("length") => "max_tokens".into(),
        other => common::other_reason(other),
    };
    Ok(body.response(
        text,
        body.tokens("/usage/prompt_tokens"),
        body.tokens("/usage/completion_tokens"),
        stop_reason,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::families::common::tests::chat_fixture;
    use crate::bedrock::families::{decode_text_response, encode_text_request};
    use crate::bedrock::request::{CallInfo, InferenceParams};

    #[test]
    fn requests_encode() {
        let request = chat_fixture(InferenceParams {
            max_tokens: Some(100),
            temperature: Some(0.4),
            top_p: Some(0.8),
            stop: vec!["##".into()],
            extra: Some(json!({"n": 1})),
            service_tier: None,
            latency: None,
            prompt_cache: None,
            rows_per_request: None,
        });
        assert_eq!(
            encode_text_request(JAMBA, &request).unwrap(),
            json!({
                "messages": [
                    {"role": "system", "content": "Be terse."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello."},
                    {"role": "user", "content": "Sky?\nOne word."}
                ],
                "max_tokens": 100,
                "temperature": 0.4,
                "top_p": 0.8,
                "stop": ["##"],
                "n": 1
            })
        );
        let request = TextRequest::prompt("Hi", InferenceParams::default());
        assert_eq!(
            encode_text_request(JAMBA, &request).unwrap(),
            json!({"messages": [{"role": "user", "content": "Hi"}]})
        );
    }

    #[test]
    fn responses_decode() {
        let body = br#"{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"Blue.","tool_calls":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":17,"completion_tokens":4,"total_tokens":21},"meta":{"requestDurationMillis":120},"model":"jamba-1.5-mini"}"#;
        assert_eq!(
            decode_text_response(JAMBA, body).unwrap(),
            TextResponse {
                tool_input: None,
                call: CallInfo::default(),
                text: "Blue.".into(),
                input_tokens: 17,
                output_tokens: 4,
                stop_reason: "end_turn".into(),
            }
        );
        let body = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"The"},"finish_reason":"length"}],"usage":{"prompt_tokens":17,"completion_tokens":1}}"#;
        assert_eq!(
            decode_text_response(JAMBA, body).unwrap(),
            TextResponse {
                tool_input: None,
                call: CallInfo::default(),
                text: "The".into(),
                input_tokens: 17,
                output_tokens: 1,
                stop_reason: "max_tokens".into(),
            }
        );
    }

    #[test]
    fn foreign_responses_are_refused() {
        assert_eq!(
            decode_text_response(JAMBA, br#"{"choices":[{"text":"Hi"}]}"#)
                .unwrap_err()
                .to_string(),
            "AI21 Labs Jamba response body has no string at `choices[0].message.content`, so \
             it is not in the AI21 Labs Jamba InvokeModel response format; check that the \
             model id belongs to the AI21 Labs Jamba family. Body: {\"choices\":[{\"text\":\"Hi\"}]}"
        );
    }
}
