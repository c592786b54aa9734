//! Helpers shared by the family codecs: conversation checks, parameter encoding, merging of
//! extra fields, and reading response bodies with precise errors.

use serde_json::{Map, Number, Value};

use super::ModelFamily;
use crate::bedrock::request::{CallInfo, ChatRole, InferenceParams, TextRequest, TextResponse};
use crate::{Error, Result};

/// How many characters of a response body an error message quotes.
const SNIPPET_CHARS: usize = 200;

/// Checks the conversation every text family needs: at least one message, every message with
/// at least one text block, and (unless the family can continue an assistant turn) a user
/// message last.
pub(super) fn check_conversation(
    family: ModelFamily,
    request: &TextRequest,
    trailing_assistant_ok: bool,
) -> Result<()> {
    let name = family.name();
    let Some(last) = request.messages.last() else {
        return Err(Error::InvalidInput(format!(
            "{name} request has no messages; add at least one user message"
        )));
    };
    if let Some(i) = request.messages.iter().position(|m| m.texts.is_empty()) {
        return Err(Error::InvalidInput(format!(
            "{name} request: message {i} has no text blocks; give every message at least one text"
        )));
    }
    if last.role == ChatRole::Assistant && !trailing_assistant_ok {
        return Err(Error::InvalidInput(format!(
            "{name} request ends with an assistant message, which {name}'s native InvokeModel \
             API cannot continue; end the conversation with a user message"
        )));
    }
    Ok(())
}

/// Errors unless the conversation starts with a user message (families with strict turns).
pub(super) fn require_user_first(family: ModelFamily, request: &TextRequest) -> Result<()> {
    match request.messages.first() {
        Some(first) if first.role == ChatRole::Assistant => {
            let name = family.name();
            Err(Error::InvalidInput(format!(
                "{name} request starts with an assistant message, but {name}'s native \
                 InvokeModel API requires the conversation to start with a user message; \
                 add the user's message first"
            )))
        }
        _ => Ok(()),
    }
}

/// One turn of a conversation whose consecutive same-role messages have been merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Turn<'a> {
    /// Who speaks.
    pub role: ChatRole,
    /// All text blocks of the merged messages, in order.
    pub texts: Vec<&'a str>,
}

impl Turn<'_> {
    /// The blocks joined by newlines.
    pub fn joined(&self) -> String {
        self.texts.join("\n")
    }
}

/// The conversation as strictly alternating turns: consecutive messages of one role merged.
pub(super) fn merged_turns(request: &TextRequest) -> Vec<Turn<'_>> {
    let mut turns: Vec<Turn<'_>> = Vec::new();
    for message in &request.messages {
        let texts = message.texts.iter().map(String::as_str);
        match turns.last_mut() {
            Some(turn) if turn.role == message.role => turn.texts.extend(texts),
            _ => turns.push(Turn {
                role: message.role,
                texts: texts.collect(),
            }),
        }
    }
    turns
}

/// The JSON number for an `f32` parameter, written with its shortest decimal form (0.7, not
/// 0.699999988079071). Errors for NaN and infinities, which JSON cannot carry.
pub(super) fn number(family: ModelFamily, field: &str, value: f32) -> Result<Value> {
    let invalid = || {
        Error::InvalidInput(format!(
            "{field} must be a finite number, got {value} ({} request); set it to a value \
             such as 0.5",
            family.name()
        ))
    };
    if !value.is_finite() {
        return Err(invalid());
    }
    let shortest: f64 = value.to_string().parse().unwrap_or(f64::from(value));
    Number::from_f64(shortest)
        .map(Value::Number)
        .ok_or_else(invalid)
}

/// The native key names of the common inference parameters.
pub(super) struct ParamKeys {
    /// Key of the most tokens to generate.
    pub max_tokens: &'static str,
    /// Key of the temperature.
    pub temperature: &'static str,
    /// Key of nucleus sampling.
    pub top_p: &'static str,
    /// Key of the stop sequences; `None` when the family has none.
    pub stop: Option<&'static str>,
}

/// Writes the set parameters of `params` into `map` under the family's keys; unset ones are
/// left out. Errors when stop sequences are given to a family without them.
pub(super) fn put_params(
    family: ModelFamily,
    map: &mut Map<String, Value>,
    params: &InferenceParams,
    keys: &ParamKeys,
) -> Result<()> {
    if let Some(max_tokens) = params.max_tokens {
        map.insert(keys.max_tokens.into(), max_tokens.into());
    }
    if let Some(temperature) = params.temperature {
        map.insert(
            keys.temperature.into(),
            number(family, "temperature", temperature)?,
        );
    }
    if let Some(top_p) = params.top_p {
        map.insert(keys.top_p.into(), number(family, "top_p", top_p)?);
    }
    if !params.stop.is_empty() {
        let Some(key) = keys.stop else {
            let name = family.name();
            return Err(Error::InvalidInput(format!(
                "{name}'s native InvokeModel API has no stop sequences; remove the stop \
                 sequences, or call the model through the Converse API, which supports them"
            )));
        };
        map.insert(key.into(), params.stop.clone().into());
    }
    Ok(())
}

/// The finished request body: `body` with the request's `extra` fields merged in (objects
/// merged key by key, any other value replacing the body's).
pub(super) fn with_extra(
    family: ModelFamily,
    mut body: Map<String, Value>,
    extra: Option<&Value>,
) -> Result<Value> {
    match extra {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) => merge(&mut body, fields),
        Some(other) => {
            return Err(Error::InvalidInput(format!(
                "extra model fields for {} must be a JSON object of fields to merge into the \
                 native request body, got {}; wrap them in an object such as {{\"top_k\": 50}}",
                family.name(),
                json_kind(other)
            )));
        }
    }
    Ok(Value::Object(body))
}

/// Merges `extra` into `body`, recursing where both sides hold objects.
fn merge(body: &mut Map<String, Value>, extra: &Map<String, Value>) {
    for (key, value) in extra {
        match (body.get_mut(key), value) {
            (Some(Value::Object(inner)), Value::Object(more)) => merge(inner, more),
            _ => {
                body.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The kind of a JSON value, for messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Validates the number of texts of an embedding call.
pub(super) fn check_embed_texts(family: ModelFamily, texts: &[&str]) -> Result<()> {
    let name = family.name();
    let max = family.max_texts_per_call();
    if texts.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{name} embedding request has no texts; pass at least one text"
        )));
    }
    if texts.len() > max {
        return Err(Error::InvalidInput(format!(
            "{name} embeds at most {max} text(s) per call, got {}; split the texts into \
             batches of at most {max}",
            texts.len()
        )));
    }
    Ok(())
}

/// A parsed response body, with the raw bytes kept for error messages.
pub(super) struct Body<'a> {
    family: ModelFamily,
    raw: &'a [u8],
    json: Value,
}

impl<'a> Body<'a> {
    /// Parses `raw` as the JSON object a native response must be.
    pub fn parse(family: ModelFamily, raw: &'a [u8]) -> Result<Self> {
        let name = family.name();
        let json: Value = serde_json::from_slice(raw).map_err(|e| {
            Error::InvalidInput(format!(
                "{name} response body is not JSON ({e}); check that the model id belongs to \
                 the {name} family. Body: {}",
                snippet(raw)
            ))
        })?;
        if !json.is_object() {
            return Err(Error::InvalidInput(format!(
                "{name} response body is {}, not a JSON object; check that the model id \
                 belongs to the {name} family. Body: {}",
                json_kind(&json),
                snippet(raw)
            )));
        }
        Ok(Self { family, raw, json })
    }

    /// The error for a body without `what` (a description such as "string at
    /// `results[0].outputText`").
    pub fn missing(&self, what: &str) -> Error {
        let name = self.family.name();
        Error::InvalidInput(format!(
            "{name} response body has no {what}, so it is not in the {name} InvokeModel \
             response format; check that the model id belongs to the {name} family. Body: {}",
            snippet(self.raw)
        ))
    }

    /// The value at a JSON pointer.
    pub fn get(&self, pointer: &str) -> Option<&Value> {
        self.json.pointer(pointer)
    }

    /// The string at a JSON pointer, or an error naming it.
    pub fn str(&self, pointer: &str) -> Result<&str> {
        self.get(pointer)
            .and_then(Value::as_str)
            .ok_or_else(|| self.missing(&format!("string at `{}`", path(pointer))))
    }

    /// The array at a JSON pointer, or an error naming it.
    pub fn array(&self, pointer: &str) -> Result<&'_ Vec<Value>> {
        self.get(pointer)
            .and_then(Value::as_array)
            .ok_or_else(|| self.missing(&format!("array at `{}`", path(pointer))))
    }

    /// The string at a JSON pointer, if there is one.
    pub fn opt_str(&self, pointer: &str) -> Option<&str> {
        self.get(pointer).and_then(Value::as_str)
    }

    /// The token count at a JSON pointer; 0 when absent or not a count.
    pub fn tokens(&self, pointer: &str) -> u64 {
        self.get(pointer).and_then(Value::as_u64).unwrap_or(0)
    }

    /// The float vector `value` (found at `pointer`), or an error naming it.
    // Embedding models produce `f32` vectors, which JSON carries as decimals: rounding each
    // back to the nearest `f32` is the intended reading, not a loss.
    #[allow(clippy::cast_possible_truncation)]
    pub fn vector(&self, value: &Value, pointer: &str) -> Result<Vec<f32>> {
        let numbers = || self.missing(&format!("array of numbers at `{}`", path(pointer)));
        value
            .as_array()
            .ok_or_else(numbers)?
            .iter()
            .map(|x| x.as_f64().map(|x| x as f32).ok_or_else(numbers))
            .collect()
    }

    /// The text response, its stop reason replaced by `guardrail_intervened` when the body
    /// says a guardrail intervened (`amazon-bedrock-guardrailAction: INTERVENED`).
    pub fn response(
        &self,
        text: String,
        input_tokens: u64,
        output_tokens: u64,
        stop_reason: String,
    ) -> TextResponse {
        let intervened = self.opt_str("/amazon-bedrock-guardrailAction") == Some("INTERVENED");
        TextResponse {
            tool_input: None,
            call: CallInfo::default(),
            text,
            input_tokens,
            output_tokens,
            stop_reason: if intervened {
                "guardrail_intervened".into()
            } else {
                stop_reason
            },
        }
    }
}

/// A stop reason outside a family's known vocabulary: lower-cased; `end_turn` when absent.
pub(super) fn other_reason(reason: Option<&str>) -> String {
    reason.map_or_else(|| "end_turn".into(), str::to_ascii_lowercase)
}

/// A JSON pointer as a readable path: `/results/0/outputText` -> `results[0].outputText`.
fn path(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(segment);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment.replace("~1", "/").replace("~0", "~"));
        }
    }
    out
}

/// The first characters of a body, for error messages.
fn snippet(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(SNIPPET_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bedrock::request::{ChatMessage, ChatRole, InferenceParams};

    /// A system prompt and a three-turn conversation whose last turn has two blocks: the
    /// request most family tests encode.
    pub(crate) fn chat_fixture(params: InferenceParams) -> TextRequest {
        TextRequest {
            tool: None,
            cache: None,
            system: Some("Be terse.".into()),
            messages: vec![
                ChatMessage::user("Hi"),
                ChatMessage::assistant("Hello."),
                ChatMessage {
                    role: ChatRole::User,
                    texts: vec!["Sky?".into(), "One word.".into()],
                },
            ],
            params,
        }
    }
    use serde_json::json;

    #[test]
    fn paths_read_like_field_accesses() {
        assert_eq!(path("/results/0/outputText"), "results[0].outputText");
        assert_eq!(path("/usage/input_tokens"), "usage.input_tokens");
        assert_eq!(path("/a~1b"), "a/b");
    }

    #[test]
    fn snippets_stop_at_200_characters() {
        let long = "é".repeat(300);
        let s = snippet(long.as_bytes());
        assert_eq!(s.chars().count(), 201);
        assert!(s.ends_with('…'));
        assert_eq!(snippet(b"{}"), "{}");
    }

    #[test]
    fn numbers_use_their_shortest_decimal_form() {
        let f = ModelFamily::Claude;
        assert_eq!(number(f, "temperature", 0.7).unwrap(), json!(0.7));
        assert_eq!(number(f, "top_p", 1.0).unwrap(), json!(1.0));
        let err = number(f, "temperature", f32::NAN).unwrap_err().to_string();
        assert_eq!(
            err,
            "temperature must be a finite number, got NaN (Anthropic Claude request); set it \
             to a value such as 0.5"
        );
    }

    #[test]
    fn extra_fields_merge_deeply() {
        let mut body = Map::new();
        body.insert("a".into(), json!({"x": 1, "y": 2}));
        body.insert("b".into(), json!(1));
        let extra = json!({"a": {"y": 3, "z": 4}, "b": [1], "c": "new"});
        assert_eq!(
            with_extra(ModelFamily::Nova, body, Some(&extra)).unwrap(),
            json!({"a": {"x": 1, "y": 3, "z": 4}, "b": [1], "c": "new"})
        );
        let err = with_extra(ModelFamily::Nova, Map::new(), Some(&json!([1])))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "extra model fields for Amazon Nova must be a JSON object of fields to merge into \
             the native request body, got an array; wrap them in an object such as \
             {\"top_k\": 50}"
        );
    }

    #[test]
    fn turns_merge_consecutive_roles() {
        let request = TextRequest {
            tool: None,
            cache: None,
            messages: vec![
                ChatMessage::user("a"),
                ChatMessage::user("b"),
                ChatMessage::assistant("c"),
                ChatMessage::user("d"),
            ],
            ..Default::default()
        };
        let turns = merged_turns(&request);
        assert_eq!(
            turns,
            vec![
                Turn {
                    role: ChatRole::User,
                    texts: vec!["a", "b"]
                },
                Turn {
                    role: ChatRole::Assistant,
                    texts: vec!["c"]
                },
                Turn {
                    role: ChatRole::User,
                    texts: vec!["d"]
                },
            ]
        );
        assert_eq!(turns[0].joined(), "a\nb");
    }

    #[test]
    fn conversations_are_checked() {
        let f = ModelFamily::Mistral;
        let empty = TextRequest::default();
        assert_eq!(
            check_conversation(f, &empty, false)
                .unwrap_err()
                .to_string(),
            "Mistral AI request has no messages; add at least one user message"
        );
        let blank = TextRequest {
            tool: None,
            cache: None,
            messages: vec![ChatMessage {
                role: ChatRole::User,
                texts: vec![],
            }],
            ..Default::default()
        };
        assert_eq!(
            check_conversation(f, &blank, false)
                .unwrap_err()
                .to_string(),
            "Mistral AI request: message 0 has no text blocks; give every message at least \
             one text"
        );
        let prefill = TextRequest {
            tool: None,
            cache: None,
            messages: vec![ChatMessage::user("q"), ChatMessage::assistant("a")],
            ..Default::default()
        };
        assert!(check_conversation(ModelFamily::Claude, &prefill, true).is_ok());
        assert_eq!(
            check_conversation(f, &prefill, false)
                .unwrap_err()
                .to_string(),
            "Mistral AI request ends with an assistant message, which Mistral AI's native \
             InvokeModel API cannot continue; end the conversation with a user message"
        );
    }

    #[test]
    fn bodies_must_be_json_objects() {
        let err = Body::parse(ModelFamily::Llama, b"[1]").err().unwrap();
        assert_eq!(
            err.to_string(),
            "Meta Llama response body is an array, not a JSON object; check that the model id \
             belongs to the Meta Llama family. Body: [1]"
        );
        let err = Body::parse(ModelFamily::Llama, b"nope").err().unwrap();
        assert!(
            err.to_string()
                .starts_with("Meta Llama response body is not JSON (expected ident"),
            "{err}"
        );
    }
}
