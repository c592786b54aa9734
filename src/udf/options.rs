//! The JSON options of AI functions (`'{"max_tokens": 50, "on_error": "null"}'`): read,
//! checked, and unknown keys answered with a did-you-mean.

use datafusion::error::{DataFusionError, Result};

use crate::bedrock::params::{ParamValue, did_you_mean};
use crate::catalog::model::OnError;
use crate::catalog::output_schema::OutputSchema;
use crate::inference::BoundModel;

fn plan_error(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(message.into())
}

/// A JSON options string as `(key, value)` pairs, keys lower-cased.
///
/// # Errors
/// A planning error, prefixed with `function`, when `json` is not valid JSON, is not an object,
/// or has a value that is not a string, number, boolean or list of them.
pub fn option_pairs(function: &str, json: &str) -> Result<Vec<(String, ParamValue)>> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        plan_error(format!(
            "{function}: the options are not valid JSON ({e}): write them as a JSON object such as '{{\"max_tokens\": 50, \"temperature\": 0.2}}'"
        ))
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err(plan_error(format!(
            "{function}: the options must be a JSON object such as '{{\"max_tokens\": 50}}', got {json}"
        )));
    };
    map.into_iter()
        .map(|(key, value)| {
            let value = param_value(&value).ok_or_else(|| {
                plan_error(format!(
                    "{function}: option '{key}' = {value} is not a string, number, boolean or list of them"
                ))
            })?;
            Ok((key.to_lowercase(), value))
        })
        .collect()
}

fn param_value(value: &serde_json::Value) -> Option<ParamValue> {
    match value {
        serde_json::Value::String(s) => Some(ParamValue::String(s.clone())),
        serde_json::Value::Number(n) => n.as_f64().map(ParamValue::Number),
        serde_json::Value::Bool(b) => Some(ParamValue::Bool(*b)),
        serde_json::Value::Array(items) => items
            .iter()
            .map(param_value)
            .collect::<Option<Vec<_>>>()
            .map(ParamValue::List),
        serde_json::Value::Null | serde_json::Value::Object(_) => None,
    }
}

/// The error for an option nobody knows, with a suggestion when there is one.
#[must_use]
pub fn unknown_option(function: &str, key: &str, known: &[&str]) -> DataFusionError {
    let hint = did_you_mean(key, known)
        .unwrap_or_else(|| format!(" — the options are: {}", known.join(", ")));
    plan_error(format!("{function}: unknown option '{key}'{hint}"))
}

/// An option error, prefixed with the function's name.
#[must_use]
pub fn option_error(function: &str, e: &crate::Error) -> DataFusionError {
    plan_error(format!("{function}: {e}"))
}

/// What every AI function's options may say of failed rows and provenance; unset, the model's
/// own settings apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowHandling {
    /// `on_error`: `'fail'` (the query fails, naming the row) or `'null'` (the row's answer is
    /// NULL and the query goes on).
    pub on_error: Option<OnError>,
    /// `provenance`: the answer becomes `{value, meta}`.
    pub provenance: Option<bool>,
}

impl RowHandling {
    /// Reads `key` when it is `on_error` or `provenance`; `false` for any other key.
    ///
    /// # Errors
    /// A value of the wrong type, or an `on_error` other than `'fail'` and `'null'`.
    pub fn read(&mut self, key: &str, value: &ParamValue) -> crate::Result<bool> {
        match key {
            "on_error" => self.on_error = Some(OnError::parse(&value.as_text(key)?)?),
            "provenance" => self.provenance = Some(value.as_bool(key)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The settings given, over `model`'s own.
    pub fn apply(&self, model: &mut BoundModel) {
        if let Some(on_error) = self.on_error {
            model.on_error = on_error;
        }
        if let Some(provenance) = self.provenance {
            model.provenance = provenance;
        }
    }
}

/// The options of a completion call (`ai_complete`'s third argument).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompletionOptions {
    /// `max_tokens`: the most tokens to generate (1..=1000000).
    pub max_tokens: Option<u32>,
    /// `temperature`: 0..=1.
    pub temperature: Option<f32>,
    /// `top_p`: 0..=1.
    pub top_p: Option<f32>,
    /// `stop`: a stop sequence or a list of them.
    pub stop: Option<Vec<String>>,
    /// `system_prompt`: replaces the model's system prompt.
    pub system_prompt: Option<String>,
    /// `engine`: the engine to call a raw model id through (instead of the default engine).
    pub engine: Option<String>,
    /// `output_schema`: typed structured output (`'name STRING, age INT'` or a JSON Schema as
    /// text); the answer is a struct.
    pub output_schema: Option<OutputSchema>,
    /// `on_error` and `provenance`.
    pub handling: RowHandling,
    /// `execution`: `'on_demand'`, `'batch'` or `'auto'` (unset: the model's, else the
    /// session's `bedrock.execution`).
    pub execution: Option<crate::bedrock::batch::Execution>,
    /// `service_tier`: `'default'`, `'flex'` or `'priority'` (unset: the model's).
    pub service_tier: Option<crate::bedrock::request::ServiceTier>,
    /// `latency`: `'standard'` or `'optimized'` (unset: the model's).
    pub latency: Option<crate::bedrock::request::Latency>,
    /// `prompt_cache`: `'auto'`, `'5m'`, `'1h'` or `'off'` (unset: the model's, else `auto`).
    pub prompt_cache: Option<crate::bedrock::prompt_cache::PromptCache>,
    /// `rows_per_request`: rows packed into one request, 1 to 100 (unset: the model's, else 1).
    pub rows_per_request: Option<u32>,
}

/// The keys [`CompletionOptions`] reads.
pub const COMPLETION_OPTIONS: &[&str] = &[
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "system_prompt",
    "engine",
    "output_schema",
    "on_error",
    "provenance",
    "execution",
    "service_tier",
    "latency",
    "prompt_cache",
    "rows_per_request",
];

impl CompletionOptions {
    /// Reads a JSON object of options; unknown keys get a did-you-mean.
    ///
    /// # Errors
    /// Invalid JSON, an unknown key, or a value out of range; each names the option.
    pub fn parse(function: &str, json: &str) -> Result<Self> {
        let mut options = Self::default();
        for (key, value) in option_pairs(function, json)? {
            let e = |e: crate::Error| option_error(function, &e);
            match key.as_str() {
                "max_tokens" => {
                    options.max_tokens = Some(
                        u32::try_from(value.as_integer_in(&key, 1, 1_000_000).map_err(e)?)
                            .unwrap_or(u32::MAX),
                    );
                }
                #[allow(clippy::cast_possible_truncation)]
                "temperature" => {
                    options.temperature =
                        Some(value.as_number_in(&key, 0.0, 1.0).map_err(e)? as f32);
                }
                #[allow(clippy::cast_possible_truncation)]
                "top_p" => {
                    options.top_p = Some(value.as_number_in(&key, 0.0, 1.0).map_err(e)? as f32);
                }
                "stop" => options.stop = Some(value.as_string_list(&key).map_err(e)?),
                "system_prompt" => options.system_prompt = Some(value.as_text(&key).map_err(e)?),
                "engine" => options.engine = Some(value.as_text(&key).map_err(e)?),
                "output_schema" => {
                    let text = value.as_text(&key).map_err(e)?;
                    options.output_schema = Some(OutputSchema::parse(&text).map_err(e)?);
                }
                "service_tier" => {
                    let text = value.as_text(&key).map_err(e)?;
                    options.service_tier =
                        Some(crate::bedrock::request::ServiceTier::parse(&text, &key).map_err(e)?);
                }
                "latency" => {
                    let text = value.as_text(&key).map_err(e)?;
                    options.latency =
                        Some(crate::bedrock::request::Latency::parse(&text, &key).map_err(e)?);
                }
                "prompt_cache" => {
                    let text = value.as_text(&key).map_err(e)?;
                    options.prompt_cache = Some(
                        crate::bedrock::prompt_cache::PromptCache::parse(&text, &key).map_err(e)?,
                    );
                }
                "rows_per_request" => {
                    let max = crate::inference::packing::MAX_ROWS_PER_REQUEST;
                    options.rows_per_request = Some(
                        u32::try_from(value.as_integer_in(&key, 1, max).map_err(e)?).unwrap_or(1),
                    );
                }
                "execution" => {
                    let text = value.as_text(&key).map_err(e)?;
                    options.execution =
                        Some(crate::bedrock::batch::Execution::parse(&text, &key).map_err(e)?);
                }
                _ if options.handling.read(&key, &value).map_err(e)? => {}
                _ => return Err(unknown_option(function, &key, COMPLETION_OPTIONS)),
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_read_and_checked() {
        let o = CompletionOptions::parse(
            "ai_complete",
            r#"{"max_tokens": 50, "temperature": 0.2, "stop": ["\n"], "System_Prompt": "Be brief."}"#,
        )
        .unwrap();
        assert_eq!(
            o,
            CompletionOptions {
                max_tokens: Some(50),
                temperature: Some(0.2),
                top_p: None,
                stop: Some(vec!["\n".into()]),
                system_prompt: Some("Be brief.".into()),
                engine: None,
                output_schema: None,
                execution: None,
                service_tier: None,
                latency: None,
                prompt_cache: None,
                rows_per_request: None,
                handling: RowHandling::default(),
            }
        );
        let err = |json: &str| {
            CompletionOptions::parse("ai_complete", json)
                .unwrap_err()
                .strip_backtrace()
        };
        assert_eq!(
            err(r#"{"max_token": 5}"#),
            "Error during planning: ai_complete: unknown option 'max_token' — did you mean 'max_tokens'?"
        );
        assert_eq!(
            err(r#"{"temperature": 3}"#),
            "Error during planning: ai_complete: Parameter 'temperature' = 3 is out of range: it must be between 0 and 1"
        );
        assert_eq!(
            err("[1]"),
            "Error during planning: ai_complete: the options must be a JSON object such as '{\"max_tokens\": 50}', got [1]"
        );
        assert_eq!(
            err(r#"{"on_error": "skip"}"#),
            "Error during planning: ai_complete: Parameter 'on_error' = 'skip' is not supported: use 'fail' (the default: the query fails, naming the row) or 'null' (the row's answer is NULL)"
        );
        let o =
            CompletionOptions::parse("ai_complete", r#"{"on_error": "NULL", "provenance": true}"#)
                .unwrap();
        assert_eq!(
            o.handling,
            RowHandling {
                on_error: Some(OnError::Null),
                provenance: Some(true)
            }
        );
        assert!(err("{max_tokens: 1}").starts_with(
            "Error during planning: ai_complete: the options are not valid JSON (key must be a string"
        ));
    }
}
