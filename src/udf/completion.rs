//! What the AI functions share: constant arguments, JSON options, resolving a model name or a
//! raw Bedrock model id to an engine and a request template, and the completion path through
//! [`Engine::generate`] (limiter, dedup, cache, usage).

use std::sync::Arc;

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;

use crate::bedrock::engine::{Api, Engine, ModelTarget};
use crate::bedrock::families::ModelFamily;
use crate::bedrock::params::{ParamValue, suggest};
use crate::bedrock::request::{ChatMessage, InferenceParams, TextRequest};
use crate::catalog::Catalog;
use crate::catalog::model::{Mode, ModelSpec, OnError, PromptSource, Template};
use crate::catalog::output_schema::OutputSchema;
use crate::udf::model_call::ModelCall;
pub(crate) use crate::udf::model_call::preview;

/// `PartialEq`, `Eq` and `Hash` of a function bound to a session's catalog: two are equal when
/// they have the same name (the module's `NAME`) and the same catalog.
macro_rules! bound_to_catalog {
    ($function:ty) => {
        impl PartialEq for $function {
            fn eq(&self, other: &Self) -> bool {
                std::sync::Arc::ptr_eq(&self.catalog, &other.catalog)
            }
        }

        impl Eq for $function {}

        impl std::hash::Hash for $function {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                NAME.hash(state);
                std::sync::Arc::as_ptr(&self.catalog).hash(state);
            }
        }
    };
}
pub(crate) use bound_to_catalog;

pub(crate) fn plan_error(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(message.into())
}

/// A text argument that must be a constant: its value at planning time (`None` when the
/// argument is not a literal).
pub(crate) fn planning_text(
    function: &str,
    what: &str,
    position: usize,
    scalar: Option<&ScalarValue>,
    example: &str,
) -> Result<String> {
    match scalar.map(ScalarValue::try_as_str) {
        Some(Some(Some(text))) => Ok(text.to_string()),
        Some(Some(None)) => Err(plan_error(format!(
            "{function}: the {what} (argument {position}) is NULL: write a constant such as {example}"
        ))),
        _ => Err(plan_error(format!(
            "{function}: the {what} (argument {position}) must be a constant string such as {example}, not a column or an expression"
        ))),
    }
}

/// A text argument that must be a constant, at execution time.
pub(crate) fn runtime_text(
    function: &str,
    what: &str,
    position: usize,
    value: &ColumnarValue,
    example: &str,
) -> Result<String> {
    match value {
        ColumnarValue::Scalar(s) => planning_text(function, what, position, Some(s), example),
        ColumnarValue::Array(_) => planning_text(function, what, position, None, example),
    }
}

/// A column of text (any type DataFusion can cast to Utf8), one entry per row.
pub(crate) fn text_rows(value: &ColumnarValue, rows: usize) -> Result<Vec<Option<String>>> {
    let array = cast(&value.to_array(rows)?, &DataType::Utf8)?;
    let strings = array
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Internal("a text cast did not produce Utf8".into()))?;
    Ok((0..rows)
        .map(|i| (!strings.is_null(i)).then(|| strings.value(i).to_string()))
        .collect())
}

/// A JSON options string as `(key, value)` pairs, keys lower-cased.
pub(crate) fn option_pairs(function: &str, json: &str) -> Result<Vec<(String, ParamValue)>> {
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
pub(crate) fn unknown_option(function: &str, key: &str, known: &[&str]) -> DataFusionError {
    let hint = match suggest(key, known) {
        Some(s) => format!(" — did you mean '{s}'?"),
        None => format!(" — the options are: {}", known.join(", ")),
    };
    plan_error(format!("{function}: unknown option '{key}'{hint}"))
}

/// An option error, prefixed with the function's name.
pub(crate) fn option_error(function: &str, e: &crate::Error) -> DataFusionError {
    plan_error(format!("{function}: {e}"))
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
                _ => return Err(unknown_option(function, &key, COMPLETION_OPTIONS)),
            }
        }
        Ok(options)
    }
}

/// The engine a raw model id is called through: the one named, else the engine created with
/// `default = true`, else the only engine.
///
/// # Errors
/// No engine, an unknown engine name, or several engines and none marked default.
pub(crate) fn choose_engine(
    catalog: &Catalog,
    function: &str,
    named: Option<&str>,
) -> Result<Arc<Engine>> {
    let names = catalog.engine_names();
    if let Some(name) = named {
        return catalog.engine(name).ok_or_else(|| {
            let hint = suggest(name, &names.iter().map(String::as_str).collect::<Vec<_>>())
                .map(|s| format!(" — did you mean '{s}'?"))
                .unwrap_or_default();
            plan_error(format!(
                "{function}: ML engine '{name}' does not exist{hint}"
            ))
        });
    }
    let engines = catalog.engines();
    let defaults: Vec<&Arc<Engine>> = engines.iter().filter(|e| e.config().is_default).collect();
    match (defaults.as_slice(), engines.as_slice()) {
        ([only], _) => Ok(Arc::clone(only)),
        ([], [only]) => Ok(Arc::clone(only)),
        ([], []) => Err(plan_error(format!(
            "{function}: there is no ML engine to call Bedrock through: create one with CREATE ML_ENGINE bedrock_engine FROM bedrock USING …"
        ))),
        ([], _) => Err(plan_error(format!(
            "{function}: several ML engines exist ({}) and none is the default: create one with USING default = true, or name it in the options as '{{\"engine\": \"{}\"}}'",
            names.join(", "),
            names.first().map_or("", String::as_str)
        ))),
        (several, _) => Err(plan_error(format!(
            "{function}: several ML engines are marked default ({}): keep default = true on one of them",
            several
                .iter()
                .map(|e| e.name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Whether a string looks like a Bedrock model id, inference profile or ARN this crate can
/// call, rather than a misspelt model name.
pub(crate) fn is_bedrock_model_id(id: &str) -> bool {
    id.starts_with("arn:") || ModelFamily::from_model_id(id).is_some()
}

/// A model resolved for a completion call: where and how to send each row.
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    /// The engine.
    pub engine: Arc<Engine>,
    /// The model and API.
    pub target: ModelTarget,
    /// The inference parameters (the model's, overridden by the options).
    pub params: InferenceParams,
    /// The system prompt.
    pub system: Option<String>,
    /// How errors name the model: `model 'm' (id)` or `model 'id' via engine 'e'`.
    pub label: String,
    /// The structure of the answer: the option's, else the model's `output_schema`.
    pub output_schema: Option<OutputSchema>,
    /// The model's name, or the model id for a raw id.
    pub name: String,
}

impl Completion {
    /// Resolves `model` — a model created with CREATE MODEL (its engine, model id, API,
    /// inference parameters and system prompt apply) or a raw Bedrock model id, inference
    /// profile or ARN (called with the Converse API through the default engine) — and applies
    /// the options.
    ///
    /// # Errors
    /// An unknown model name, a text that is no model id, or no engine to call it through.
    pub(crate) fn resolve(
        catalog: &Catalog,
        function: &str,
        model: &str,
        options: &CompletionOptions,
    ) -> Result<Self> {
        let mut completion = if let Some(entry) = catalog.model(model) {
            let spec = &entry.spec;
            if let Some(engine) = &options.engine
                && *engine != spec.engine
            {
                return Err(plan_error(format!(
                    "{function}: model '{model}' runs on ML engine '{}', so the option engine = '{engine}' does not apply: remove it, or pass a raw model id",
                    spec.engine
                )));
            }
            let engine = catalog.engine(&spec.engine).ok_or_else(|| {
                plan_error(format!(
                    "{function}: model '{model}' uses ML engine '{}', which no longer exists",
                    spec.engine
                ))
            })?;
            Self {
                engine,
                target: ModelTarget {
                    model_id: spec.model_id.clone(),
                    api: spec.api,
                },
                params: spec.params.clone(),
                system: spec.system_prompt.clone(),
                label: format!("model '{model}' ({})", spec.model_id),
                output_schema: spec.output_schema.clone(),
                name: model.to_string(),
            }
        } else if is_bedrock_model_id(model) {
            let engine = choose_engine(catalog, function, options.engine.as_deref())?;
            Self {
                label: format!("model '{model}' via engine '{}'", engine.name()),
                engine,
                target: ModelTarget {
                    model_id: model.to_string(),
                    api: Api::Converse,
                },
                params: InferenceParams::default(),
                system: None,
                output_schema: None,
                name: model.to_string(),
            }
        } else {
            let models: Vec<String> = catalog
                .models()
                .iter()
                .map(|m| m.spec.name.clone())
                .collect();
            let hint = suggest(
                model,
                &models.iter().map(String::as_str).collect::<Vec<_>>(),
            )
            .map(|s| format!("did you mean '{s}'? Otherwise "))
            .unwrap_or_default();
            return Err(plan_error(format!(
                "{function}: '{model}' is neither a model created with CREATE MODEL nor a Bedrock model id: {hint}write a model's name or a model id such as 'amazon.nova-micro-v1:0', an inference profile such as 'us.anthropic.claude-3-haiku-20240307-v1:0', or an ARN"
            )));
        };
        if options.output_schema.is_some() {
            completion.output_schema.clone_from(&options.output_schema);
        }
        let p = &mut completion.params;
        if let Some(v) = options.max_tokens {
            p.max_tokens = Some(v);
        }
        if let Some(v) = options.temperature {
            p.temperature = Some(v);
        }
        if let Some(v) = options.top_p {
            p.top_p = Some(v);
        }
        if let Some(v) = &options.stop {
            p.stop.clone_from(v);
        }
        if let Some(v) = &options.system_prompt {
            completion.system = Some(v.clone());
        }
        Ok(completion)
    }

    /// For structured output: the completion as a one-input model (its prompt is the row's
    /// text) whose answers are validated against the schema and corrected once.
    ///
    /// # Errors
    /// The model is called with InvokeModel, which has no forced tools.
    pub(crate) fn structured(&self, function: &str) -> Result<Option<ModelCall>> {
        let Some(schema) = &self.output_schema else {
            return Ok(None);
        };
        if self.target.api != Api::Converse {
            return Err(plan_error(format!(
                "{function}: output_schema needs the Converse API, and {} uses api = 'invoke'",
                self.label
            )));
        }
        let template = Template::parse("{{prompt}}").map_err(|e| option_error(function, &e))?;
        let spec = ModelSpec {
            name: self.name.clone(),
            target: function.to_string(),
            engine: self.engine.name().to_string(),
            model_id: self.target.model_id.clone(),
            mode: Mode::Default,
            prompt: PromptSource::Template(template),
            params: self.params.clone(),
            system_prompt: self.system.clone(),
            api: Api::Converse,
            output_schema: Some(schema.clone()),
            on_error: OnError::Fail,
            provenance: false,
            max_history_rows: crate::catalog::model::DEFAULT_MAX_HISTORY_ROWS,
        };
        Ok(Some(ModelCall::new(spec, Arc::clone(&self.engine))))
    }

    /// The request for one row. `instruction` (the fixed system prompt of `ai_filter` and
    /// `ai_classify`) comes before the model's own system prompt.
    fn request(&self, prompt: &str, instruction: Option<&str>) -> TextRequest {
        let system = match (instruction, &self.system) {
            (Some(i), Some(s)) => Some(format!("{i}\n\n{s}")),
            (Some(i), None) => Some(i.to_string()),
            (None, s) => s.clone(),
        };
        TextRequest {
            system,
            messages: vec![ChatMessage::user(prompt)],
            params: self.params.clone(),
            tool: None,
        }
    }

    /// One answer per row (NULL where the prompt is NULL, with no request), through the
    /// engine's limiter, dedup and cache.
    ///
    /// # Errors
    /// The first row whose call failed for good, named by its prompt and the Bedrock error.
    pub(crate) async fn answers(
        &self,
        function: &str,
        prompts: &[Option<String>],
        instruction: Option<&str>,
    ) -> Result<Vec<Option<String>>> {
        let requests: Vec<Option<TextRequest>> = prompts
            .iter()
            .map(|p| p.as_deref().map(|p| self.request(p, instruction)))
            .collect();
        let results = self.engine.generate(&self.target, &requests).await;
        results
            .into_iter()
            .zip(prompts)
            .map(|(result, prompt)| match result {
                None => Ok(None),
                Some(Ok(response)) => Ok(Some(response.text)),
                Some(Err(failure)) => Err(DataFusionError::Execution(format!(
                    "{function}: {} failed for the row whose prompt is \"{}\": {failure}",
                    self.label,
                    preview(prompt.as_deref().unwrap_or_default())
                ))),
            })
            .collect()
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
        assert!(err("{max_tokens: 1}").starts_with(
            "Error during planning: ai_complete: the options are not valid JSON (key must be a string"
        ));
    }

    #[test]
    fn raw_model_ids_are_told_from_misspelt_names() {
        assert!(is_bedrock_model_id("amazon.nova-micro-v1:0"));
        assert!(is_bedrock_model_id(
            "us.anthropic.claude-3-haiku-20240307-v1:0"
        ));
        assert!(is_bedrock_model_id(
            "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0"
        ));
        assert!(!is_bedrock_model_id("my_modle"));
    }

    #[test]
    fn no_engine_is_a_clear_error() {
        let catalog = Catalog::default();
        assert_eq!(
            Completion::resolve(
                &catalog,
                "ai_complete",
                "amazon.nova-micro-v1:0",
                &CompletionOptions::default()
            )
            .unwrap_err()
            .strip_backtrace(),
            "Error during planning: ai_complete: there is no ML engine to call Bedrock through: create one with CREATE ML_ENGINE bedrock_engine FROM bedrock USING …"
        );
        assert_eq!(
            Completion::resolve(
                &catalog,
                "ai_complete",
                "my_modle",
                &CompletionOptions::default()
            )
            .unwrap_err()
            .strip_backtrace(),
            "Error during planning: ai_complete: 'my_modle' is neither a model created with CREATE MODEL nor a Bedrock model id: write a model's name or a model id such as 'amazon.nova-micro-v1:0', an inference profile such as 'us.anthropic.claude-3-haiku-20240307-v1:0', or an ARN"
        );
    }
}
