//! Cohere Command R / R+ (chat) and Cohere Embed.
//!
//! Chat request: `{"message", "chat_history": [{"role": "USER"|"CHATBOT", "message"}],
//! "preamble", "max_tokens", "temperature", "p", "stop_sequences"}`; response: `{"text",
//! "finish_reason"}` (token counts only when the body carries `meta.billed_units`).
//!
//! Embed request: `{"texts", "input_type", "truncate": "END"}`; response: `{"embeddings":
//! [[..]]}` or `{"embeddings": {"float": [[..]]}}`.

use serde_json::{Map, Value, json};

use super::common::{self, Body, ParamKeys};
use super::{EmbedOptions, ModelFamily};
use crate::bedrock::request::{ChatRole, TextRequest, TextResponse};
use crate::{Error, Result};

const CHAT: ModelFamily = ModelFamily::CohereCommandR;
const EMBED: ModelFamily = ModelFamily::CohereEmbed;

/// `input_type`s Cohere Embed takes for texts.
const INPUT_TYPES: [&str; 4] = [
    "search_document",
    "search_query",
    "classification",
    "clustering",
];

/// `output_dimension`s Cohere Embed v4 takes.
const DIMENSIONS: [u32; 4] = [256, 512, 1024, 1536];

/// The Command R request body.
pub(super) fn encode_chat(request: &TextRequest) -> Result<Value> {
    common::check_conversation(CHAT, request, false)?;
    let Some((last, history)) = request.messages.split_last() else {
        // check_conversation refuses an empty conversation; stay safe regardless.
        return Err(Error::InvalidInput(format!(
            "{} request has no messages; add at least one user message",
            CHAT.name()
        )));
    };
    let mut body = Map::new();
    body.insert("message".into(), last.joined().into());
    if !history.is_empty() {
        let history: Vec<Value> = history
            .iter()
            .map(|message| {
                let role = match message.role {
                    ChatRole::User => "USER",
                    ChatRole::Assistant => "CHATBOT",
                };
                json!({"role": role, "message": message.joined()})
            })
            .collect();
        body.insert("chat_history".into(), history.into());
    }
    if let Some(system) = &request.system {
        body.insert("preamble".into(), system.as_str().into());
    }
    common::put_params(
        CHAT,
        &mut body,
        &request.params,
        &ParamKeys {
            max_tokens: "max_tokens",
            temperature: "temperature",
            top_p: "p",
            stop: Some("stop_sequences"),
        },
    )?;
    common::with_extra(CHAT, body, request.params.extra.as_ref())
}

/// Parses a Command R response body.
pub(super) fn decode_chat(raw: &[u8]) -> Result<TextResponse> {
    let body = Body::parse(CHAT, raw)?;
    let text = body.str("/text")?.to_owned();
    let stop_reason = match body.opt_str("/finish_reason") {
        Some("COMPLETE") => "end_turn".into(),
        Some("MAX_TOKENS") => "max_tokens".into(),
        Some("STOP_SEQUENCE") => "stop_sequence".into(),
        Some("ERROR_TOXIC") => "content_filtered".into(),
        Some("ERROR_LIMIT") => "model_context_window_exceeded".into(),
        Some("TOOL_CALL") => "tool_use".into(),
        other => common::other_reason(other),
    };
    Ok(body.response(
        text,
        body.tokens("/meta/billed_units/input_tokens"),
        body.tokens("/meta/billed_units/output_tokens"),
        stop_reason,
    ))
}

/// The Cohere Embed request body (up to 96 texts).
pub(super) fn encode_embed(texts: &[&str], options: &EmbedOptions) -> Result<Value> {
    common::check_embed_texts(EMBED, texts)?;
    let name = EMBED.name();
    if let Some(normalize) = options.normalize {
        return Err(Error::InvalidInput(format!(
            "{name} has no normalize option (got normalize = {normalize}); remove it, which \
             only Titan Text Embeddings v2 takes"
        )));
    }
    let input_type = options.input_type.as_deref().unwrap_or("search_document");
    if !INPUT_TYPES.contains(&input_type) {
        return Err(Error::InvalidInput(format!(
            "{name} input_type '{input_type}' is not one of {}; use search_document for \
             texts to search, search_query for queries",
            INPUT_TYPES.join(", ")
        )));
    }
    let mut body = Map::new();
    body.insert("texts".into(), texts.into());
    body.insert("input_type".into(), input_type.into());
    body.insert("truncate".into(), "END".into());
    if let Some(dimensions) = options.dimensions {
        if !DIMENSIONS.contains(&dimensions) {
            return Err(Error::InvalidInput(format!(
                "{name} v4 produces vectors of 256, 512, 1024 or 1536 dimensions, not \
                 {dimensions}; choose one of those (Cohere Embed v3 models take no dimensions)"
            )));
        }
        body.insert("output_dimension".into(), dimensions.into());
    }
    Ok(Value::Object(body))
}

/// Parses a Cohere Embed response body (`embeddings` as a list of vectors, or by type with
/// a `float` list).
pub(super) fn decode_embed(raw: &[u8]) -> Result<(Vec<Vec<f32>>, u64)> {
    let body = Body::parse(EMBED, raw)?;
    let pointer = match body.get("/embeddings") {
        Some(Value::Object(_)) => "/embeddings/float",
        _ => "/embeddings",
    };
    let vectors = body
        .get(pointer)
        .and_then(Value::as_array)
        .ok_or_else(|| {
            body.missing(
                "`embeddings` (an array of float vectors, or an object with a `float` array \
                 of vectors; request float embeddings)",
            )
        })?
        .iter()
        .enumerate()
        .map(|(i, vector)| body.vector(vector, &format!("{pointer}/{i}")))
        .collect::<Result<Vec<_>>>()?;
    Ok((vectors, body.tokens("/meta/billed_units/input_tokens")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::families::common::tests::chat_fixture;
    use crate::bedrock::families::{
        decode_embed_response, decode_text_response, encode_embed_request, encode_text_request,
    };
    use crate::bedrock::request::{CallInfo, InferenceParams};

    #[test]
    fn chat_requests_encode() {
        let request = chat_fixture(InferenceParams {
            max_tokens: Some(300),
            temperature: Some(0.3),
            top_p: Some(0.75),
            stop: vec!["END".into()],
            extra: Some(json!({"k": 10})),
            service_tier: None,
            latency: None,
            prompt_cache: None,
            rows_per_request: None,
        });
        assert_eq!(
            encode_text_request(CHAT, &request).unwrap(),
            json!({
                "message": "Sky?\nOne word.",
                "chat_history": [
                    {"role": "USER", "message": "Hi"},
                    {"role": "CHATBOT", "message": "Hello."}
                ],
                "preamble": "Be terse.",
                "max_tokens": 300,
                "temperature": 0.3,
                "p": 0.75,
                "stop_sequences": ["END"],
                "k": 10
            })
        );
        let request = TextRequest::prompt("Hi", InferenceParams::default());
        assert_eq!(
            encode_text_request(CHAT, &request).unwrap(),
            json!({"message": "Hi"})
        );
    }

    #[test]
    fn chat_responses_decode() {
        let body = br#"{"response_id":"r1","text":"Blue.","generation_id":"g1","chat_history":[{"role":"USER","message":"Sky?"},{"role":"CHATBOT","message":"Blue."}],"finish_reason":"COMPLETE"}"#;
        assert_eq!(
            decode_text_response(CHAT, body).unwrap(),
            TextResponse {
                tool_input: None,
                call: CallInfo::default(),
                text: "Blue.".into(),
                input_tokens: 0,
                output_tokens: 0,
                stop_reason: "end_turn".into(),
            }
        );
        let body = br#"{"text":"The sky","finish_reason":"MAX_TOKENS","meta":{"billed_units":{"input_tokens":6,"output_tokens":2}}}"#;
        assert_eq!(
            decode_text_response(CHAT, body).unwrap(),
            TextResponse {
                tool_input: None,
                call: CallInfo::default(),
                text: "The sky".into(),
                input_tokens: 6,
                output_tokens: 2,
                stop_reason: "max_tokens".into(),
            }
        );
        for (native, converse) in [
            ("ERROR_TOXIC", "content_filtered"),
            ("ERROR_LIMIT", "model_context_window_exceeded"),
            ("ERROR", "error"),
        ] {
            let body = json!({"text": "", "finish_reason": native});
            let decoded = decode_text_response(CHAT, body.to_string().as_bytes()).unwrap();
            assert_eq!(decoded.stop_reason, converse, "{native}");
        }
        assert_eq!(
            decode_text_response(CHAT, br#"{"generation":"x"}"#)
                .unwrap_err()
                .to_string(),
            "Cohere Command R response body has no string at `text`, so it is not in the \
             Cohere Command R InvokeModel response format; check that the model id belongs \
             to the Cohere Command R family. Body: {\"generation\":\"x\"}"
        );
    }

    #[test]
    fn embed_requests_encode() {
        assert_eq!(
            encode_embed_request(EMBED, &["a", "b"], &EmbedOptions::default()).unwrap(),
            json!({"texts": ["a", "b"], "input_type": "search_document", "truncate": "END"})
        );
        let options = EmbedOptions {
            dimensions: Some(1024),
            normalize: None,
            input_type: Some("search_query".into()),
        };
        assert_eq!(
            encode_embed_request(EMBED, &["q"], &options).unwrap(),
            json!({
                "texts": ["q"],
                "input_type": "search_query",
                "truncate": "END",
                "output_dimension": 1024
            })
        );
        let many = vec!["t"; 96];
        assert!(encode_embed_request(EMBED, &many, &EmbedOptions::default()).is_ok());
        let too_many = vec!["t"; 97];
        assert_eq!(
            encode_embed_request(EMBED, &too_many, &EmbedOptions::default())
                .unwrap_err()
                .to_string(),
            "Cohere Embed embeds at most 96 text(s) per call, got 97; split the texts into \
             batches of at most 96"
        );
    }

    #[test]
    fn embed_options_are_checked() {
        let normalize = EmbedOptions {
            normalize: Some(true),
            ..Default::default()
        };
        assert_eq!(
            encode_embed_request(EMBED, &["a"], &normalize)
                .unwrap_err()
                .to_string(),
            "Cohere Embed has no normalize option (got normalize = true); remove it, which \
             only Titan Text Embeddings v2 takes"
        );
        let typed = EmbedOptions {
            input_type: Some("query".into()),
            ..Default::default()
        };
        assert_eq!(
            encode_embed_request(EMBED, &["a"], &typed)
                .unwrap_err()
                .to_string(),
            "Cohere Embed input_type 'query' is not one of search_document, search_query, \
             classification, clustering; use search_document for texts to search, \
             search_query for queries"
        );
        let sized = EmbedOptions {
            dimensions: Some(768),
            ..Default::default()
        };
        assert_eq!(
            encode_embed_request(EMBED, &["a"], &sized)
                .unwrap_err()
                .to_string(),
            "Cohere Embed v4 produces vectors of 256, 512, 1024 or 1536 dimensions, not 768; \
             choose one of those (Cohere Embed v3 models take no dimensions)"
        );
    }

    #[test]
    fn embed_responses_decode() {
        let floats = br#"{"id":"e1","texts":["a","b"],"embeddings":[[0.5,-0.25],[1.0,0.0]],"response_type":"embeddings_floats"}"#;
        assert_eq!(
            decode_embed_response(EMBED, floats).unwrap(),
            (vec![vec![0.5, -0.25], vec![1.0, 0.0]], 0)
        );
        let by_type = br#"{"id":"e2","texts":["a"],"embeddings":{"float":[[0.125]]},"response_type":"embeddings_by_type","meta":{"billed_units":{"input_tokens":3}}}"#;
        assert_eq!(
            decode_embed_response(EMBED, by_type).unwrap(),
            (vec![vec![0.125]], 3)
        );
    }

    #[test]
    fn foreign_embed_responses_are_refused() {
        assert_eq!(
            decode_embed_response(EMBED, br#"{"embeddings":{"int8":[[1]]}}"#)
                .unwrap_err()
                .to_string(),
            "Cohere Embed response body has no `embeddings` (an array of float vectors, or an \
             object with a `float` array of vectors; request float embeddings), so it is not \
             in the Cohere Embed InvokeModel response format; check that the model id belongs \
             to the Cohere Embed family. Body: {\"embeddings\":{\"int8\":[[1]]}}"
        );
        assert_eq!(
            decode_embed_response(EMBED, br#"{"embeddings":[[0.1],[null]]}"#)
                .unwrap_err()
                .to_string(),
            "Cohere Embed response body has no array of numbers at `embeddings[1]`, so it is \
             not in the Cohere Embed InvokeModel response format; check that the model id \
             belongs to the Cohere Embed family. Body: {\"embeddings\":[[0.1],[null]]}"
        );
    }
}
