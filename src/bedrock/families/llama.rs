//! Meta Llama (3 and later), prompt with the Llama 3 chat template.
//!
//! Request: `{"prompt", "max_gen_len", "temperature", "top_p"}` (no stop sequences); response:
//! `{"generation", "prompt_token_count", "generation_token_count", "stop_reason"}`.

use serde_json::{Map, Value};

use super::ModelFamily;
use super::common::{self, Body, ParamKeys};
use crate::Result;
use crate::bedrock::request::{ChatRole, TextRequest, TextResponse};

const LLAMA: ModelFamily = ModelFamily::Llama;

/// The Llama request body.
pub(super) fn encode(request: &TextRequest) -> Result<Value> {
    common::check_conversation(LLAMA, request, false)?;
    let mut body = Map::new();
    body.insert("prompt".into(), prompt(request).into());
    common::put_params(
        LLAMA,
        &mut body,
        &request.params,
        &ParamKeys {
            max_tokens: "max_gen_len",
            temperature: "temperature",
            top_p: "top_p",
            stop: None,
        },
    )?;
    common::with_extra(LLAMA, body, request.params.extra.as_ref())
}

/// The conversation in the Llama 3 chat template, ending with an open assistant header.
fn prompt(request: &TextRequest) -> String {
    let mut prompt = String::from("<|begin_of_text|>");
    let mut turn = |role: &str, text: &str| {
        prompt.push_str("<|start_header_id|>");
        prompt.push_str(role);
        prompt.push_str("<|end_header_id|>\n\n");
        prompt.push_str(text);
        prompt.push_str("<|eot_id|>");
    };
    if let Some(system) = &request.system {
        turn("system", system);
    }
    for message in &request.messages {
        let role = match message.role {
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        };
        turn(role, &message.joined());
    }
    prompt.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
    prompt
}

/// Parses a Llama response body.
pub(super) fn decode(raw: &[u8]) -> Result<TextResponse> {
    let body = Body::parse(LLAMA, raw)?;
    let text = body.str("/generation")?.to_owned();
    let stop_reason = match body.opt_str("/stop_reason") {
        Some("stop") => "end_turn".into(),
        Some("length") => "max_tokens".into(),
        other => common::other_reason(other),
    };
    Ok(body.response(
        text,
        body.tokens("/prompt_token_count"),
        body.tokens("/generation_token_count"),
        stop_reason,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::families::common::tests::chat_fixture;
    use crate::bedrock::families::{decode_text_response, encode_text_request};
    use crate::bedrock::request::{CallInfo, InferenceParams};
    use serde_json::json;

    #[test]
    fn a_prompt_uses_the_chat_template() {
        let request = TextRequest::prompt(
            "Sky colour?",
            InferenceParams {
                max_tokens: Some(512),
                temperature: Some(0.5),
                top_p: Some(0.9),
                stop: vec![],
                extra: None,
                service_tier: None,
                latency: None,
                prompt_cache: None,
                rows_per_request: None,
            },
        );
        assert_eq!(
            encode_text_request(LLAMA, &request).unwrap(),
            json!({
                "prompt": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nSky colour?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                "max_gen_len": 512,
                "temperature": 0.5,
                "top_p": 0.9
            })
        );
    }

    #[test]
    fn system_and_history_become_turns() {
        let request = chat_fixture(InferenceParams::default());
        assert_eq!(
            encode_text_request(LLAMA, &request).unwrap(),
            json!({
                "prompt": "<|begin_of_text|>\
                    <|start_header_id|>system<|end_header_id|>\n\nBe terse.<|eot_id|>\
                    <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
                    <|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>\
                    <|start_header_id|>user<|end_header_id|>\n\nSky?\nOne word.<|eot_id|>\
                    <|start_header_id|>assistant<|end_header_id|>\n\n"
            })
        );
    }

    #[test]
    fn stop_sequences_are_refused() {
        let request = TextRequest::prompt(
            "Hi",
            InferenceParams {
                stop: vec!["END".into()],
                ..Default::default()
            },
        );
        assert_eq!(
            encode_text_request(LLAMA, &request)
                .unwrap_err()
                .to_string(),
            "Meta Llama's native InvokeModel API has no stop sequences; remove the stop \
             sequences, or call the model through the Converse API, which supports them"
        );
    }

    #[test]
    fn responses_decode() {
        let body = br#"{"generation":"Blue.","prompt_token_count":21,"generation_token_count":3,"stop_reason":"stop"}"#;
        assert_eq!(
            decode_text_response(LLAMA, body).unwrap(),
            TextResponse {
                tool_input: None,
                call: CallInfo::default(),
                text: "Blue.".into(),
                input_tokens: 21,
                output_tokens: 3,
                stop_reason: "end_turn".into(),
            }
        );
        let body = br#"{"generation":"The sky is","prompt_token_count":21,"generation_token_count":3,"stop_reason":"length"}"#;
        assert_eq!(
            decode_text_response(LLAMA, body).unwrap(),
            TextResponse {
                tool_input: None,
                call: CallInfo::default(),
                text: "The sky is".into(),
                input_tokens: 21,
                output_tokens: 3,
                stop_reason: "max_tokens".into(),
            }
        );
    }

    #[test]
    fn foreign_responses_are_refused() {
        assert_eq!(
            decode_text_response(LLAMA, br#"{"text":"Hi"}"#)
                .unwrap_err()
                .to_string(),
            "Meta Llama response body has no string at `generation`, so it is not in the Meta \
             Llama InvokeModel response format; check that the model id belongs to the Meta \
             Llama family. Body: {\"text\":\"Hi\"}"
        );
    }
}
