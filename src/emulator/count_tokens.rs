//! `POST /model/{modelId}/count-tokens`: input tokens of a Converse or native body.

use serde_json::{Value, json};

use super::answer::Conversation;
use super::catalog::CatalogModel;
use super::wire::ApiError;
use super::{converse, embed, families};

/// The `{"inputTokens": n}` response for a `CountTokens` body.
pub(crate) fn count(model: &CatalogModel, body: &Value) -> Result<Value, ApiError> {
    let input = body
        .get("input")
        .ok_or_else(|| ApiError::constraint("null", "input", "Member must not be null"))?;
    let tokens = if let Some(request) = input.get("converse") {
        let messages = request
            .get("messages")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ApiError::constraint("null", "input.converse.messages", "Member must not be null")
            })?;
        Conversation {
            system: converse::parse_system(request.get("system"))?,
            turns: converse::parse_messages(messages)?,
        }
        .input_tokens()
    } else if let Some(encoded) = input.pointer("/invokeModel/body").and_then(Value::as_str) {
        let raw = aws_smithy_types::base64::decode(encoded)
            .map_err(|_| ApiError::validation("The invokeModel body is not valid base64."))?;
        let native: Value = serde_json::from_slice(&raw)
            .map_err(|_| ApiError::malformed("#: expected type: JSONObject, found: String"))?;
        if model.family.is_embedding() {
            embed::input_tokens(model, &native)?
        } else {
            families::parse(model, &native)?.conversation.input_tokens()
        }
    } else {
        return Err(ApiError::validation(
            "CountTokens input must be either 'converse' or 'invokeModel'.",
        ));
    };
    Ok(json!({ "inputTokens": tokens }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::catalog;

    #[test]
    fn counts_converse_and_native_bodies() {
        let m = catalog::find("anthropic.claude-3-haiku-20240307-v1:0").unwrap();
        let conv = json!({"input": {"converse": {"messages": [{"role": "user", "content": [{"text": "12345678"}]}], "system": [{"text": "abcd"}]}}});
        assert_eq!(count(m, &conv).unwrap(), json!({"inputTokens": 3}));
        let native = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": [{"role": "user", "content": "12345678"}]});
        let body = json!({"input": {"invokeModel": {"body": aws_smithy_types::base64::encode(native.to_string())}}});
        assert_eq!(count(m, &body).unwrap(), json!({"inputTokens": 2}));
    }
}
