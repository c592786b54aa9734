//! Mistral AI, text completion with the `[INST]` instruction template.
//!
//! Request: `{"prompt", "max_tokens", "temperature", "top_p", "stop"}`; response:
//! `{"outputs": [{"text", "stop_reason"}]}`. The chat-completion response shape of newer
//! Mistral models (`{"choices": [{"message": {"content"}, "finish_reason"}]}`) is read too.

use serde_json::{Map, Value};

use super::ModelFamily;
use super::common::{self, Body, ParamKeys};
use crate::Result;
use crate::bedrock::request::{ChatRole, TextRequest, TextResponse};

const MISTRAL: ModelFamily = ModelFamily::Mistral;

/// The Mistral request body.
pub(super) fn encode(request: &TextRequest) -> Result<Value> {
    common::check_conversation(MISTRAL, request, false)?;
    common::require_user_first(MISTRAL, request)?;
    let mut body = Map::new();
    body.insert("prompt".into(), prompt(request).into());
    common::put_params(
        MISTRAL,
        &mut body,
        &request.params,
        &ParamKeys {
            max_tokens: "max_tokens",
            temperature: "temperature",
            top_p: "top_p",
            stop: Some("stop"),
        },
    )?;
    common::with_extra(MISTRAL, body, request.params.extra.as_ref())
}

/// The conversation in Mistral's instruction template:
/// `<s>[INST] {system}\n\n{u1} [/INST] {a1}</s>[INST] {u2} [/INST]` (the system prompt leads
/// the first user turn; consecutive messages of one role form one turn).
fn prompt(request: &TextRequest) -> String {
    let mut prompt = String::from("<s>");
    let mut system = request.system.as_deref();
    for turn in common::merged_turns(request) {
        match turn.role {
            ChatRole::User => {
                prompt.push_str("[INST] ");
                if let Some(system) = system.take() {
                    prompt.push_str(system);
                    prompt.push_str("\n\n");
                }
                prompt.push_str(&turn.joined());
                prompt.push_str(" [/INST]");
            }
            ChatRole::Assistant => {
                prompt.push(' ');
                prompt.push_str(&turn.joined());
                prompt.push_str("</s>");
            }
        }
    }
    prompt
}

/// Parses a Mistral response body (text-completion or chat-completion shape).
pub(super) fn decode(raw: &[u8]) -> Result<TextResponse> {
    let body = Body::parse(MISTRAL, raw)?;
    let (text, reason) = if body.get("/outputs").is_none() && body.get("/choices").is_some() {
        (
            body.str("/choices/0/message/content")?,
            body.opt_str("/choices/0/finish_reason"),
        )
    } else {
        (
            body.str("/outputs/0/text")?,
            body.opt_str("/outputs/0/stop_reason"),
        )
    };
    let stop_reason = match reason {
        Some("stop") => "end_turn".into(),
        Some("length" | "model_length") => "max_tokens".into(),
        Some("tool_calls") => "tool_use".into(),
        other => common::other_reason(other),
    };
    Ok(body.response(
        text.to_owned(),
        body.tokens("/usage/prompt_tokens"),
        body.tokens("/usage/completion_tokens"),
        stop_reason,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::families::{decode_text_response, encode_text_request};
    use crate::bedrock::request::{CallInfo, ChatMessage, InferenceParams};
    use serde_json::json;

    #[test]
    fn a_prompt_uses_the_instruction_template() {
        let request = TextRequest::prompt(
            "Sky colour?",
            InferenceParams {
                max_tokens: Some(400),
                temperature: Some(0.7),
                top_p: Some(0.9),
                stop: vec!["\n\n".into()],
                extra: Some(json!({"top_k": 50})),
                service_tier: None,
                latency: None,
                prompt_cache: None,
                rows_per_request: None,
            },
        );
        assert_eq!(
            encode_text_request(MISTRAL, &request).unwrap(),
            json!({
                "prompt": "<s>[INST] Sky colour? [/INST]",
                "max_tokens": 400,
                "temperature": 0.7,
                "top_p": 0.9,
                "stop": ["\n\n"],
                "top_k": 50
            })
        );
    }

    #[test]
    fn system_and_history() {
        let request = TextRequest {
            tool: None,
            cache: None,
            system: Some("Be terse.".into()),
            ..TextRequest::prompt("Sky colour?", InferenceParams::default())
        };
        assert_eq!(
            encode_text_request(MISTRAL, &request).unwrap(),
            json!({"prompt": "<s>[INST] Be terse.\n\nSky colour? [/INST]"})
        );
        let request = TextRequest {
            tool: None,
            cache: None,
            system: Some("Be terse.".into()),
            messages: vec![
                ChatMessage::user("u1"),
                ChatMessage::assistant("a1"),
                ChatMessage::user("u2"),
                ChatMessage::user("u3"),
            ],
            params: InferenceParams::default(),
        };
        assert_eq!(
            encode_text_request(MISTRAL, &request).unwrap(),
            json!({"prompt": "<s>[INST] Be terse.\n\nu1 [/INST] a1</s>[INST] u2\nu3 [/INST]"})
        );
    }

    #[test]
    fn responses_decode() {
        let body = br#"{"outputs":[{"text":" Blue.","stop_reason":"stop"}]}"#;
        assert_eq!(
            decode_text_response(MISTRAL, body).unwrap(),
            TextResponse {
                tool_input: None,
                call: CallInfo::default(),
                text: " Blue.".into(),
                input_tokens: 0,
                output_tokens: 0,
                stop_reason: "end_turn".into(),
            }
        );
        let body = br#"{"outputs":[{"text":" The sky","stop_reason":"length"}]}"#;
        assert_eq!(
            decode_text_response(MISTRAL, body).unwrap().stop_reason,
            "max_tokens"
        );
        let chat = br#"{"id":"b1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Blue."},"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":3,"total_tokens":11}}"#;
        assert_eq!(
            decode_text_response(MISTRAL, chat).unwrap(),
            TextResponse {
                tool_input: None,
                call: CallInfo::default(),
                text: "Blue.".into(),
                input_tokens: 8,
                output_tokens: 3,
                stop_reason: "end_turn".into(),
            }
        );
    }

    #[test]
    fn foreign_responses_are_refused() {
        assert_eq!(
            decode_text_response(MISTRAL, br#"{"outputs":[]}"#)
                .unwrap_err()
                .to_string(),
            "Mistral AI response body has no string at `outputs[0].text`, so it is not in the \
             Mistral AI InvokeModel response format; check that the model id belongs to the \
             Mistral AI family. Body: {\"outputs\":[]}"
        );
    }
}
