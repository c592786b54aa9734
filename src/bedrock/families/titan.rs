//! Amazon Titan Text and Titan Text Embeddings.
//!
//! Text request: `{"inputText", "textGenerationConfig": {"maxTokenCount", "temperature",
//! "topP", "stopSequences"}}`; response: `{"inputTextTokenCount", "results": [{"tokenCount",
//! "outputText", "completionReason"}]}`.
//!
//! Embedding request: `{"inputText", "dimensions", "normalize"}` (v2; v1 takes only
//! `inputText`); response: `{"embedding": [..], "inputTextTokenCount"}`.

use serde_json::{Map, Value};

use super::common::{self, Body, ParamKeys};
use super::{EmbedOptions, ModelFamily};
use crate::bedrock::request::{ChatRole, TextRequest, TextResponse};
use crate::{Error, Result};

const TEXT: ModelFamily = ModelFamily::TitanText;
const EMBED: ModelFamily = ModelFamily::TitanEmbed;

/// Vector lengths Titan Text Embeddings v2 produces.
const DIMENSIONS: [u32; 3] = [256, 512, 1024];

/// The Titan Text request body.
pub(super) fn encode_text(request: &TextRequest) -> Result<Value> {
    common::check_conversation(TEXT, request, false)?;
    let input_text = match (request.system.as_deref(), request.messages.as_slice()) {
        (None, [only]) => only.joined(),
        _ => transcript(request),
    };
    let mut config = Map::new();
    common::put_params(
        TEXT,
        &mut config,
        &request.params,
        &ParamKeys {
            max_tokens: "maxTokenCount",
            temperature: "temperature",
            top_p: "topP",
            stop: Some("stopSequences"),
        },
    )?;
    let mut body = Map::new();
    body.insert("inputText".into(), input_text.into());
    if !config.is_empty() {
        body.insert("textGenerationConfig".into(), Value::Object(config));
    }
    common::with_extra(TEXT, body, request.params.extra.as_ref())
}

/// The conversation in Titan's chat format: the system prompt, a blank line, then
/// `User: …` / `Bot: …` lines, ending with `Bot:` for the model to continue.
fn transcript(request: &TextRequest) -> String {
    let mut text = String::new();
    if let Some(system) = &request.system {
        text.push_str(system);
        text.push_str("\n\n");
    }
    for message in &request.messages {
        text.push_str(match message.role {
            ChatRole::User => "User: ",
            ChatRole::Assistant => "Bot: ",
        });
        text.push_str(&message.joined());
        text.push('\n');
    }
    text.push_str("Bot:");
    text
}

/// Parses a Titan Text response body.
pub(super) fn decode_text(raw: &[u8]) -> Result<TextResponse> {
    let body = Body::parse(TEXT, raw)?;
    let text = body.str("/results/0/outputText")?.to_owned();
    let stop_reason = match body.opt_str("/results/0/completionReason") {
        Some("FINISH") => "end_turn".into(),
        Some("LENGTH") => "max_tokens".into(),
        Some("STOP_CRITERIA_MET") => "stop_sequence".into(),
        Some("CONTENT_FILTERED") => "content_filtered".into(),
        other => common::other_reason(other),
    };
    Ok(body.response(
        text,
        body.tokens("/inputTextTokenCount"),
        body.tokens("/results/0/tokenCount"),
        stop_reason,
    ))
}

/// The Titan Text Embeddings request body (one text).
pub(super) fn encode_embed(texts: &[&str], options: &EmbedOptions) -> Result<Value> {
    common::check_embed_texts(EMBED, texts)?;
    let name = EMBED.name();
    if let Some(input_type) = &options.input_type {
        return Err(Error::InvalidInput(format!(
            "{name} has no input_type (got '{input_type}'); remove input_type, which only \
             Cohere Embed takes"
        )));
    }
    let mut body = Map::new();
    body.insert("inputText".into(), texts[0].into());
    if let Some(dimensions) = options.dimensions {
        if !DIMENSIONS.contains(&dimensions) {
            return Err(Error::InvalidInput(format!(
                "{name} v2 produces vectors of 256, 512 or 1024 dimensions, not {dimensions}; \
                 choose one of those (Titan Text Embeddings v1 takes no dimensions)"
            )));
        }
        body.insert("dimensions".into(), dimensions.into());
    }
    if let Some(normalize) = options.normalize {
        body.insert("normalize".into(), normalize.into());
    }
    Ok(Value::Object(body))
}

/// Parses a Titan Text Embeddings response body.
pub(super) fn decode_embed(raw: &[u8]) -> Result<(Vec<Vec<f32>>, u64)> {
    let body = Body::parse(EMBED, raw)?;
    let embedding = body
        .get("/embedding")
        .ok_or_else(|| body.missing("array of numbers at `embedding`"))?;
    let vector = body.vector(embedding, "/embedding")?;
    Ok((vec![vector], body.tokens("/inputTextTokenCount")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::families::{
        decode_embed_response, decode_text_response, encode_embed_request, encode_text_request,
    };
    use crate::bedrock::request::{CallInfo, ChatMessage, InferenceParams};
    use serde_json::json;

    #[test]
    fn a_single_prompt_is_sent_as_is() {
        let request = TextRequest::prompt(
            "Name a colour.",
            InferenceParams {
                max_tokens: Some(64),
                temperature: Some(0.2),
                top_p: Some(0.9),
                stop: vec!["|".into()],
                extra: None,
                service_tier: None,
                latency: None,
                prompt_cache: None,
                rows_per_request: None,
            },
        );
        assert_eq!(
            encode_text_request(TEXT, &request).unwrap(),
            json!({
                "inputText": "Name a colour.",
                "textGenerationConfig": {
                    "maxTokenCount": 64,
                    "temperature": 0.2,
                    "topP": 0.9,
                    "stopSequences": ["|"]
                }
            })
        );
    }

    #[test]
    fn unset_parameters_are_left_out() {
        let request = TextRequest::prompt("Hi", InferenceParams::default());
        assert_eq!(
            encode_text_request(TEXT, &request).unwrap(),
            json!({"inputText": "Hi"})
        );
        let request = TextRequest::prompt(
            "Hi",
            InferenceParams {
                max_tokens: Some(10),
                ..Default::default()
            },
        );
        assert_eq!(
            encode_text_request(TEXT, &request).unwrap(),
            json!({"inputText": "Hi", "textGenerationConfig": {"maxTokenCount": 10}})
        );
    }

    #[test]
    fn conversations_become_chat_transcripts() {
        let request = TextRequest {
            tool: None,
            cache: None,
            system: Some("Answer in one word.".into()),
            messages: vec![
                ChatMessage::user("Sky colour?"),
                ChatMessage::assistant("Blue."),
                ChatMessage {
                    role: ChatRole::User,
                    texts: vec!["And grass?".into(), "Be brief.".into()],
                },
            ],
            params: InferenceParams {
                extra: Some(json!({"textGenerationConfig": {"topK": 5}})),
                ..Default::default()
            },
        };
        assert_eq!(
            encode_text_request(TEXT, &request).unwrap(),
            json!({
                "inputText": "Answer in one word.\n\nUser: Sky colour?\nBot: Blue.\nUser: And grass?\nBe brief.\nBot:",
                "textGenerationConfig": {"topK": 5}
            })
        );
        let with_system = TextRequest {
            tool: None,
            cache: None,
            system: Some("Be terse.".into()),
            ..TextRequest::prompt("Hi", InferenceParams::default())
        };
        assert_eq!(
            encode_text_request(TEXT, &with_system).unwrap(),
            json!({"inputText": "Be terse.\n\nUser: Hi\nBot:"})
        );
        let history = TextRequest {
            tool: None,
            cache: None,
            messages: vec![
                ChatMessage::user("Hi"),
                ChatMessage::assistant("Hello!"),
                ChatMessage::user("Bye"),
            ],
            ..Default::default()
        };
        assert_eq!(
            encode_text_request(TEXT, &history).unwrap(),
            json!({"inputText": "User: Hi\nBot: Hello!\nUser: Bye\nBot:"})
        );
    }

    #[test]
    fn a_trailing_assistant_message_is_refused() {
        let request = TextRequest {
            tool: None,
            cache: None,
            messages: vec![ChatMessage::user("Hi"), ChatMessage::assistant("Hel")],
            ..Default::default()
        };
        assert_eq!(
            encode_text_request(TEXT, &request).unwrap_err().to_string(),
            "Amazon Titan Text request ends with an assistant message, which Amazon Titan \
             Text's native InvokeModel API cannot continue; end the conversation with a user \
             message"
        );
    }

    #[test]
    fn responses_decode() {
        let body = br#"{"inputTextTokenCount":5,"results":[{"tokenCount":3,"outputText":"\nBlue.","completionReason":"FINISH"}]}"#;
        assert_eq!(
            decode_text_response(TEXT, body).unwrap(),
            TextResponse {
                tool_input: None,
                call: CallInfo::default(),
                text: "\nBlue.".into(),
                input_tokens: 5,
                output_tokens: 3,
                stop_reason: "end_turn".into(),
            }
        );
        let reasons = [
            ("LENGTH", "max_tokens"),
            ("STOP_CRITERIA_MET", "stop_sequence"),
            ("CONTENT_FILTERED", "content_filtered"),
            ("RAG_QUERY_WHEN_RAG_DISABLED", "rag_query_when_rag_disabled"),
        ];
        for (native, converse) in reasons {
            let body = json!({"inputTextTokenCount": 1, "results": [
                {"tokenCount": 2, "outputText": "x", "completionReason": native}
            ]});
            let decoded = decode_text_response(TEXT, body.to_string().as_bytes()).unwrap();
            assert_eq!(decoded.stop_reason, converse, "{native}");
        }
        let guarded = br#"{"inputTextTokenCount":4,"results":[{"tokenCount":9,"outputText":"Sorry, I cannot help.","completionReason":"FINISH"}],"amazon-bedrock-guardrailAction":"INTERVENED"}"#;
        assert_eq!(
            decode_text_response(TEXT, guarded).unwrap(),
            TextResponse {
                tool_input: None,
                call: CallInfo::default(),
                text: "Sorry, I cannot help.".into(),
                input_tokens: 4,
                output_tokens: 9,
                stop_reason: "guardrail_intervened".into(),
            }
        );
    }

    #[test]
    fn foreign_responses_are_refused() {
        let body = br#"{"generation":"Hi","prompt_token_count":1}"#;
        assert_eq!(
            decode_text_response(TEXT, body).unwrap_err().to_string(),
            "Amazon Titan Text response body has no string at `results[0].outputText`, so it \
             is not in the Amazon Titan Text InvokeModel response format; check that the \
             model id belongs to the Amazon Titan Text family. Body: {\"generation\":\"Hi\",\"prompt_token_count\":1}"
        );
    }

    #[test]
    fn embedding_requests() {
        let f = EMBED;
        assert_eq!(
            encode_embed_request(f, &["hello"], &EmbedOptions::default()).unwrap(),
            json!({"inputText": "hello"})
        );
        let options = EmbedOptions {
            dimensions: Some(512),
            normalize: Some(true),
            input_type: None,
        };
        assert_eq!(
            encode_embed_request(f, &["hello"], &options).unwrap(),
            json!({"inputText": "hello", "dimensions": 512, "normalize": true})
        );
        let bad = EmbedOptions {
            dimensions: Some(384),
            ..Default::default()
        };
        assert_eq!(
            encode_embed_request(f, &["hello"], &bad)
                .unwrap_err()
                .to_string(),
            "Amazon Titan Text Embeddings v2 produces vectors of 256, 512 or 1024 dimensions, \
             not 384; choose one of those (Titan Text Embeddings v1 takes no dimensions)"
        );
        let typed = EmbedOptions {
            input_type: Some("search_query".into()),
            ..Default::default()
        };
        assert_eq!(
            encode_embed_request(f, &["hello"], &typed)
                .unwrap_err()
                .to_string(),
            "Amazon Titan Text Embeddings has no input_type (got 'search_query'); remove \
             input_type, which only Cohere Embed takes"
        );
        assert_eq!(
            encode_embed_request(f, &["a", "b"], &EmbedOptions::default())
                .unwrap_err()
                .to_string(),
            "Amazon Titan Text Embeddings embeds at most 1 text(s) per call, got 2; split the \
             texts into batches of at most 1"
        );
        assert_eq!(
            encode_embed_request(f, &[], &EmbedOptions::default())
                .unwrap_err()
                .to_string(),
            "Amazon Titan Text Embeddings embedding request has no texts; pass at least one text"
        );
    }

    #[test]
    fn embedding_responses() {
        let body = br#"{"embedding":[0.125,-0.5,1.0],"inputTextTokenCount":2}"#;
        assert_eq!(
            decode_embed_response(EMBED, body).unwrap(),
            (vec![vec![0.125, -0.5, 1.0]], 2)
        );
        let v2 =
            br#"{"embedding":[0.25],"embeddingsByType":{"float":[0.25]},"inputTextTokenCount":7}"#;
        assert_eq!(
            decode_embed_response(EMBED, v2).unwrap(),
            (vec![vec![0.25]], 7)
        );
        assert_eq!(
            decode_embed_response(EMBED, br#"{"embedding":[0.1,"x"]}"#)
                .unwrap_err()
                .to_string(),
            "Amazon Titan Text Embeddings response body has no array of numbers at \
             `embedding`, so it is not in the Amazon Titan Text Embeddings InvokeModel response \
             format; check that the model id belongs to the Amazon Titan Text Embeddings family. \
             Body: {\"embedding\":[0.1,\"x\"]}"
        );
        assert!(
            decode_embed_response(EMBED, br#"{"embeddings":[[0.1]]}"#)
                .unwrap_err()
                .to_string()
                .starts_with(
                    "Amazon Titan Text Embeddings response body has no array of numbers at \
                     `embedding`"
                )
        );
    }
}
