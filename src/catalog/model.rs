//! Model specifications: what `CREATE MODEL … PREDICT column USING …` holds, validated.

use std::fmt;

use super::output_schema::OutputSchema;
use crate::bedrock::batch::Execution;
use crate::bedrock::engine::Api;
use crate::bedrock::params::{ParamValue, unknown_parameter};
use crate::bedrock::prompt_cache::PromptCache;
use crate::bedrock::request::{InferenceParams, Latency, ServiceTier};
use crate::error::{Error, Result};
use crate::inference::packing::{self, MAX_ROWS_PER_REQUEST};

/// The model id used when `model_id` is not given (MindsDB's default).
pub const DEFAULT_MODEL_ID: &str = "amazon.titan-text-premier-v1:0";

/// Every model parameter, as written in `USING`.
pub const MODEL_PARAMETERS: &[&str] = &[
    "engine",
    "mode",
    "model_id",
    "question_column",
    "context_column",
    "prompt_template",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "system_prompt",
    "api",
    "output_schema",
    "on_error",
    "provenance",
    "max_history_rows",
    "execution",
    "service_tier",
    "latency",
    "prompt_cache",
    "rows_per_request",
];

/// Prior turns (a row's prompt and its answer) a `conversational-full` request carries when
/// `max_history_rows` is not given.
pub const DEFAULT_MAX_HISTORY_ROWS: usize = 50;

/// The largest `max_history_rows` accepted.
pub const MAX_HISTORY_ROWS_LIMIT: u64 = 10_000;

/// What a row whose call failed gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum OnError {
    /// The query fails, naming the row's input and the Bedrock error.
    #[default]
    Fail,
    /// The row's answer is NULL (its provenance says why) and the query goes on.
    Null,
}

impl OnError {
    /// Reads `'fail'` or `'null'` (any case).
    ///
    /// # Errors
    /// Any other value, with the two that are allowed.
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_lowercase().as_str() {
            "fail" => Ok(Self::Fail),
            "null" => Ok(Self::Null),
            other => Err(Error::InvalidInput(format!(
                "Parameter 'on_error' = '{other}' is not supported: use 'fail' (the default: the query fails, naming the row) or 'null' (the row's answer is NULL)"
            ))),
        }
    }

    /// The name used in SQL.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Null => "null",
        }
    }
}

/// How rows become requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// One request per distinct row; no context between rows.
    #[default]
    Default,
    /// All rows form one conversation and one request; the answer is in the last row.
    Conversational,
    /// Every row is answered, with the earlier rows as prior turns.
    ConversationalFull,
}

impl Mode {
    /// Reads `'default'`, `'conversational'` or `'conversational-full'` (any case; also
    /// `conversational_full`).
    fn parse(text: &str) -> Result<Self> {
        match text.to_lowercase().as_str() {
            "default" => Ok(Self::Default),
            "conversational" => Ok(Self::Conversational),
            "conversational-full" | "conversational_full" => Ok(Self::ConversationalFull),
            other => Err(Error::InvalidInput(format!(
                "Parameter 'mode' = '{other}' is not supported: use 'default', 'conversational' or 'conversational-full'"
            ))),
        }
    }

    /// The name used in SQL.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Conversational => "conversational",
            Self::ConversationalFull => "conversational-full",
        }
    }
}

/// A piece of a prompt template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TemplatePart {
    /// Text sent as written.
    Literal(String),
    /// `{{ column }}`: the column's value.
    Column(String),
    /// `{{image:column}}` or `{{document:column}}`: the column's value (bytes, a URL, or a
    /// document's text) as an image or document block.
    Media {
        /// Image or document.
        kind: crate::bedrock::media::MediaKind,
        /// The column.
        column: String,
    },
}

/// A parsed `prompt_template`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Template {
    /// The template as written.
    pub text: String,
    /// Its pieces, in order.
    pub parts: Vec<TemplatePart>,
}

impl Template {
    /// Parses `{{column}}` placeholders (whitespace inside the braces tolerated); `\{{` and
    /// `\}}` are literal braces (JSON in a prompt: `'{"a": \{{ "b": {{x}} \}} }'`).
    ///
    /// # Errors
    /// Unbalanced braces, an empty, nested or qualified placeholder, or no placeholder at all;
    /// positions are counted in characters.
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while let Some(c) = text[i..].chars().next() {
            let rest = &text[i..];
            if let Some(braces) = ["\\{{", "\\}}"].iter().find(|e| rest.starts_with(**e)) {
                literal.push_str(&braces[1..]);
                i += braces.len();
            } else if rest.starts_with("}}") {
                return Err(unbalanced("'}}' without a '{{' before it", text, i));
            } else if let Some(after) = rest.strip_prefix("{{") {
                let close = after
                    .find("}}")
                    .ok_or_else(|| unbalanced("'{{' that is never closed", text, i))?;
                let placeholder = after[..close].trim();
                let (kind, name) = media_placeholder(placeholder, text, i)?;
                if name.is_empty() || name.contains("{{") {
                    return Err(unbalanced("an empty or nested placeholder", text, i));
                }
                if let Some((_, column)) = name.rsplit_once('.') {
                    return Err(Error::InvalidInput(format!(
                        "Parameter 'prompt_template' has the placeholder {{{{{name}}}}} at character {}: name the column alone, {{{{{}}}}} — the model reads it from the data it is joined with, whatever that data's alias",
                        position(text, i),
                        column.trim()
                    )));
                }
                if !literal.is_empty() {
                    parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
                }
                parts.push(match kind {
                    None => TemplatePart::Column(name.to_string()),
                    Some(kind) => TemplatePart::Media {
                        kind,
                        column: name.to_string(),
                    },
                });
                i += 2 + close + 2;
            } else {
                literal.push(c);
                i += c.len_utf8();
            }
        }
        if !literal.is_empty() {
            parts.push(TemplatePart::Literal(literal));
        }
        if let Some(column) = parts.iter().find_map(|p| match p {
            TemplatePart::Media { column, .. }
                if parts
                    .iter()
                    .any(|q| matches!(q, TemplatePart::Column(c) if c == column)) =>
            {
                Some(column)
            }
            _ => None,
        }) {
            return Err(Error::InvalidInput(format!(
                "Parameter 'prompt_template' uses the column '{column}' both as text, {{{{{column}}}}}, and as an image or document: a column is one or the other (select it twice under two names)"
            )));
        }
        if !parts
            .iter()
            .any(|p| matches!(p, TemplatePart::Column(_) | TemplatePart::Media { .. }))
        {
            return Err(Error::InvalidInput(
                "Parameter 'prompt_template' has no {{column}} placeholder, so every row would send the same prompt: write e.g. prompt_template = 'Answer this: {{question}}'".into(),
            ));
        }
        Ok(Self {
            text: text.to_string(),
            parts,
        })
    }

    /// The distinct placeholder columns, in order of first use.
    #[must_use]
    pub fn columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = Vec::new();
        for part in &self.parts {
            if let TemplatePart::Column(c) | TemplatePart::Media { column: c, .. } = part
                && !columns.contains(c)
            {
                columns.push(c.clone());
            }
        }
        columns
    }

    /// Whether `column` is an image or a document (`{{image:column}}`, `{{document:column}}`).
    #[must_use]
    pub fn media(&self, column: &str) -> Option<crate::bedrock::media::MediaKind> {
        self.parts.iter().find_map(|p| match p {
            TemplatePart::Media { kind, column: c } if c == column => Some(*kind),
            _ => None,
        })
    }
}

/// A placeholder's kind and column: `image:photo` → (image, `photo`); `photo` → (none,
/// `photo`).
fn media_placeholder<'a>(
    placeholder: &'a str,
    text: &str,
    at: usize,
) -> Result<(Option<crate::bedrock::media::MediaKind>, &'a str)> {
    use crate::bedrock::media::MediaKind;
    let Some((kind, column)) = placeholder.split_once(':') else {
        return Ok((None, placeholder));
    };
    match kind.trim().to_ascii_lowercase().as_str() {
        "image" => Ok((Some(MediaKind::Image), column.trim())),
        "document" => Ok((Some(MediaKind::Document), column.trim())),
        other => Err(Error::InvalidInput(format!(
            "Parameter 'prompt_template' has the placeholder {{{{{placeholder}}}}} at character {}: '{other}' is not a kind of placeholder; write {{{{column}}}}, {{{{image:column}}}} or {{{{document:column}}}}",
            position(text, at)
        ))),
    }
}

/// The 1-based number of the character at byte offset `at` of `text`.
fn position(text: &str, at: usize) -> usize {
    text.get(..at).map_or(0, |before| before.chars().count()) + 1
}

fn unbalanced(what: &str, text: &str, at: usize) -> Error {
    Error::InvalidInput(format!(
        "Parameter 'prompt_template' has {what} at character {}: placeholders are written {{{{column}}}}, literal braces \\{{{{ and \\}}}}",
        position(text, at)
    ))
}

/// Where a model's prompt comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PromptSource {
    /// `prompt_template` with `{{column}}` placeholders.
    Template(Template),
    /// `question_column`, with an optional `context_column`.
    Question {
        /// The column holding the user's input.
        question: String,
        /// The column holding context for it.
        context: Option<String>,
    },
}

impl PromptSource {
    /// The prompt of model `name` from its `prompt_template`, `question_column` and
    /// `context_column` parameters: a template alone, or a question with an optional context.
    fn from_params(
        name: &str,
        template: Option<String>,
        question: Option<String>,
        context: Option<String>,
    ) -> Result<Self> {
        match (template, question, context) {
            (Some(t), None, None) => Ok(Self::Template(Template::parse(&t)?)),
            (None, Some(question), context) => Ok(Self::Question { question, context }),
            (Some(_), Some(_), _) => Err(Error::InvalidInput(
                "Give either prompt_template or question_column, not both".into(),
            )),
            (_, None, Some(_)) => Err(Error::InvalidInput(
                "Parameter 'context_column' goes with question_column: add question_column = '…', or put the context into prompt_template".into(),
            )),
            (None, None, None) => Err(Error::InvalidInput(format!(
                "Model '{name}' needs a prompt: add prompt_template = '… {{{{column}}}} …' or question_column = 'column' (with an optional context_column)"
            ))),
        }
    }
}

/// Reads `api`: `'converse'` or `'invoke'` (any case).
fn parse_api(text: &str) -> Result<Api> {
    match text.to_lowercase().as_str() {
        "converse" => Ok(Api::Converse),
        "invoke" => Ok(Api::Invoke),
        other => Err(Error::InvalidInput(format!(
            "Parameter 'api' = '{other}' is not supported: use 'converse' (the default) or 'invoke'"
        ))),
    }
}

/// A validated model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelSpec {
    /// The model's name.
    pub name: String,
    /// The column it predicts.
    pub target: String,
    /// The engine's name.
    pub engine: String,
    /// The Bedrock model id, inference profile or ARN.
    pub model_id: String,
    /// How rows become requests.
    pub mode: Mode,
    /// Where the prompt comes from.
    pub prompt: PromptSource,
    /// Inference parameters.
    pub params: InferenceParams,
    /// A system prompt sent with every request.
    pub system_prompt: Option<String>,
    /// Converse or `InvokeModel`.
    pub api: Api,
    /// Typed structured output: the answer is a struct of these fields.
    pub output_schema: Option<OutputSchema>,
    /// What a failed row gets.
    pub on_error: OnError,
    /// Whether a `<target>_meta` column describes each answer.
    pub provenance: bool,
    /// `conversational-full`: how many prior turns (the latest rows' prompts and answers) a
    /// request carries at most; older turns are not sent.
    pub max_history_rows: usize,
    /// `execution`: on demand, batch jobs, or batch from `bedrock.batch_min_rows` distinct
    /// requests; `None` follows the session's `bedrock.execution`.
    #[serde(default)]
    pub execution: Option<Execution>,
}

/// Batch and auto execution send each row's request on its own, without tools: not for the
/// conversational modes, nor for structured output.
fn check_execution(execution: Option<Execution>, mode: Mode, structured: bool) -> Result<()> {
    let Some(execution) = execution.filter(|e| e.gathers()) else {
        return Ok(());
    };
    if mode != Mode::Default {
        return Err(Error::InvalidInput(format!(
            "Parameter 'execution' = '{execution}' runs each row's request on its own, but mode '{}' makes each request depend on the rows before it: remove execution, or use the default mode",
            mode.name()
        )));
    }
    if structured {
        return Err(Error::InvalidInput(format!(
            "Parameter 'execution' = '{execution}' cannot run this model: {}",
            crate::bedrock::batch::record::NO_TOOLS
        )));
    }
    Ok(())
}

/// Reads a parameter of how requests are sent (`service_tier`, `latency`, `prompt_cache`,
/// `rows_per_request`) into `inference`; `false` when `key` is none of them.
fn read_sending(inference: &mut InferenceParams, key: &str, value: &ParamValue) -> Result<bool> {
    match key {
        "service_tier" => {
            inference.service_tier = Some(ServiceTier::parse(&value.as_text(key)?, key)?);
        }
        "latency" => inference.latency = Some(Latency::parse(&value.as_text(key)?, key)?),
        "prompt_cache" => {
            inference.prompt_cache = Some(PromptCache::parse(&value.as_text(key)?, key)?);
        }
        "rows_per_request" => {
            inference.rows_per_request = Some(
                u32::try_from(value.as_integer_in(key, 1, MAX_ROWS_PER_REQUEST)?).unwrap_or(1),
            );
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// `rows_per_request` above 1 needs the default mode, Converse and on-demand requests.
fn check_packing(
    inference: &InferenceParams,
    mode: Mode,
    api: Api,
    execution: Option<Execution>,
) -> Result<()> {
    packing::check(
        "Parameter 'rows_per_request'",
        inference.rows_per_request.unwrap_or(1),
        (mode != Mode::Default).then(|| mode.name()),
        api,
        execution.filter(|e| e.gathers()).map(Execution::name),
    )
    .map_err(Error::InvalidInput)
}

impl ModelSpec {
    /// Reads and validates `USING` parameters (no engine or model-id lookups: those need the
    /// catalog and the control plane).
    ///
    /// # Errors
    /// Each names the parameter and the fix.
    pub fn from_params(name: &str, target: &str, params: &[(String, ParamValue)]) -> Result<Self> {
        let mut engine = None;
        let mut mode = Mode::Default;
        let mut model_id = DEFAULT_MODEL_ID.to_string();
        let (mut question, mut context, mut template) = (None, None, None);
        let mut inference = InferenceParams::default();
        let mut system_prompt = None;
        let mut api = Api::Converse;
        let mut output_schema = None;
        let mut on_error = OnError::Fail;
        let mut provenance = false;
        let mut max_history_rows = None;
        let mut execution = None;
        for (raw_key, value) in params {
            let key = raw_key.to_lowercase();
            match key.as_str() {
                "engine" => engine = Some(value.as_text(&key)?),
                "mode" => mode = Mode::parse(&value.as_text(&key)?)?,
                "model_id" => {
                    let id = value.as_text(&key)?;
                    if id.trim().is_empty() {
                        return Err(Error::InvalidInput(
                            "Parameter 'model_id' is empty: write e.g. model_id = 'amazon.titan-text-premier-v1:0'".into(),
                        ));
                    }
                    model_id = id;
                }
                "question_column" => question = Some(value.as_text(&key)?),
                "context_column" => context = Some(value.as_text(&key)?),
                "prompt_template" => template = Some(value.as_text(&key)?),
                "max_tokens" => {
                    inference.max_tokens = Some(
                        u32::try_from(value.as_integer_in(&key, 1, 1_000_000)?).unwrap_or(u32::MAX),
                    );
                }
                // Checked to lie in [0, 1]: the cast to `f32` rounds, it cannot overflow.
                #[allow(clippy::cast_possible_truncation)]
                "temperature" => {
                    inference.temperature = Some(value.as_number_in(&key, 0.0, 1.0)? as f32);
                }
                // Checked to lie in [0, 1], as temperature.
                #[allow(clippy::cast_possible_truncation)]
                "top_p" => inference.top_p = Some(value.as_number_in(&key, 0.0, 1.0)? as f32),
                "stop" => inference.stop = value.as_string_list(&key)?,
                "system_prompt" => system_prompt = Some(value.as_text(&key)?),
                "api" => api = parse_api(&value.as_text(&key)?)?,
                "output_schema" => {
                    output_schema = Some(OutputSchema::parse(&value.as_text(&key)?)?);
                }
                "on_error" => on_error = OnError::parse(&value.as_text(&key)?)?,
                "provenance" => provenance = value.as_bool(&key)?,
                "max_history_rows" => {
                    max_history_rows = Some(
                        usize::try_from(value.as_integer_in(&key, 0, MAX_HISTORY_ROWS_LIMIT)?)
                            .unwrap_or(DEFAULT_MAX_HISTORY_ROWS),
                    );
                }
                "execution" => execution = Some(Execution::parse(&value.as_text(&key)?, &key)?),
                _ if read_sending(&mut inference, &key, value)? => {}
                _ => return Err(unknown_parameter("model", raw_key, MODEL_PARAMETERS)),
            }
        }
        check_execution(execution, mode, output_schema.is_some())?;
        check_packing(&inference, mode, api, execution)?;
        if max_history_rows.is_some() && mode != Mode::ConversationalFull {
            return Err(Error::InvalidInput(format!(
                "Parameter 'max_history_rows' bounds the prior turns of mode = 'conversational-full', but this model's mode is '{}': remove max_history_rows, or add mode = 'conversational-full'",
                mode.name()
            )));
        }
        if output_schema.is_some() && api == Api::Invoke {
            return Err(Error::InvalidInput(
                "Parameter 'output_schema' needs the Converse API (structured output is a forced tool call): remove api = 'invoke'".into(),
            ));
        }
        let engine = engine.ok_or_else(|| {
            Error::InvalidInput(format!(
                "Model '{name}' needs an engine: add USING engine = 'bedrock_engine' (create one first with CREATE ML_ENGINE bedrock_engine FROM bedrock USING …)"
            ))
        })?;
        let prompt = PromptSource::from_params(name, template, question, context)?;
        Ok(Self {
            name: name.to_string(),
            target: target.to_string(),
            engine,
            model_id,
            mode,
            prompt,
            params: inference,
            system_prompt,
            api,
            output_schema,
            on_error,
            provenance,
            max_history_rows: max_history_rows.unwrap_or(DEFAULT_MAX_HISTORY_ROWS),
            execution,
        })
    }

    /// The name of the provenance column: `<target>_meta`.
    #[must_use]
    pub fn meta_column(&self) -> String {
        format!("{}_meta", self.target)
    }

    /// The input columns a row must provide, in order.
    #[must_use]
    pub fn input_columns(&self) -> Vec<String> {
        match &self.prompt {
            PromptSource::Template(t) => t.columns(),
            PromptSource::Question { question, context } => std::iter::once(question.clone())
                .chain(context.clone())
                .collect(),
        }
    }

    /// Whether the input `column` is an image or a document of the template.
    #[must_use]
    pub fn media_input(&self, column: &str) -> Option<crate::bedrock::media::MediaKind> {
        match &self.prompt {
            PromptSource::Template(t) => t.media(column),
            PromptSource::Question { .. } => None,
        }
    }

    /// The prompt of one row from its input values (in [`ModelSpec::input_columns`] order):
    /// `None` when every input is NULL (no request is sent); NULL inputs among others render as
    /// empty text.
    pub fn render(&self, values: &[Option<&str>]) -> Option<String> {
        if values.iter().all(Option::is_none) {
            return None;
        }
        let columns = self.input_columns();
        let value_of = |column: &str| {
            columns
                .iter()
                .position(|c| c == column)
                .and_then(|i| values.get(i).copied().flatten())
                .unwrap_or("")
        };
        Some(match &self.prompt {
            PromptSource::Template(t) => t
                .parts
                .iter()
                .map(|p| match p {
                    TemplatePart::Literal(text) => text.as_str(),
                    TemplatePart::Column(c) | TemplatePart::Media { column: c, .. } => value_of(c),
                })
                .collect(),
            PromptSource::Question {
                question,
                context: None,
            } => value_of(question).to_string(),
            PromptSource::Question {
                question,
                context: Some(context),
            } => format!(
                "Context: {}\nQuestion: {}\nAnswer: ",
                value_of(context),
                value_of(question)
            ),
        })
    }

    /// The parameters as `(name, value)` pairs for DESCRIBE, in a fixed order.
    #[must_use]
    pub fn describe(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            ("engine".to_string(), self.engine.clone()),
            ("model_id".to_string(), self.model_id.clone()),
            ("mode".to_string(), self.mode.name().to_string()),
            ("api".to_string(), self.api.name().to_string()),
            ("target".to_string(), self.target.clone()),
            ("inputs".to_string(), self.input_columns().join(", ")),
        ];
        match &self.prompt {
            PromptSource::Template(t) => rows.push(("prompt_template".into(), t.text.clone())),
            PromptSource::Question { question, context } => {
                rows.push(("question_column".into(), question.clone()));
                if let Some(c) = context {
                    rows.push(("context_column".into(), c.clone()));
                }
            }
        }
        let p = &self.params;
        let optional = [
            ("max_tokens", p.max_tokens.map(|v| v.to_string())),
            ("temperature", p.temperature.map(|v| v.to_string())),
            ("top_p", p.top_p.map(|v| v.to_string())),
            (
                "stop",
                (!p.stop.is_empty()).then(|| format!("{:?}", p.stop)),
            ),
            ("system_prompt", self.system_prompt.clone()),
            (
                "output_schema",
                self.output_schema.as_ref().map(|o| o.text.clone()),
            ),
            (
                "on_error",
                (self.on_error != OnError::Fail).then(|| self.on_error.name().to_string()),
            ),
            ("provenance", self.provenance.then(|| "true".to_string())),
            ("execution", self.execution.map(|e| e.name().to_string())),
            ("service_tier", p.service_tier.map(|t| t.name().to_string())),
            ("latency", p.latency.map(|l| l.name().to_string())),
            ("prompt_cache", p.prompt_cache.map(|c| c.name().to_string())),
            (
                "rows_per_request",
                p.rows_per_request.map(|k| k.to_string()),
            ),
            (
                "max_history_rows",
                (self.mode == Mode::ConversationalFull).then(|| self.max_history_rows.to_string()),
            ),
        ];
        rows.extend(
            optional
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_string(), v))),
        );
        rows
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} via {})", self.name, self.model_id, self.engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> ParamValue {
        ParamValue::String(v.into())
    }

    fn spec(params: &[(&str, ParamValue)]) -> Result<ModelSpec> {
        let owned: Vec<(String, ParamValue)> = params
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect();
        ModelSpec::from_params("m", "answer", &owned)
    }

    #[test]
    fn reads_the_seed_models() {
        let m = spec(&[
            ("engine", s("bedrock_engine")),
            ("question_column", s("question")),
            ("max_tokens", ParamValue::Number(100.0)),
            ("temperature", ParamValue::Number(0.3)),
        ])
        .unwrap();
        assert_eq!(m.model_id, DEFAULT_MODEL_ID);
        assert_eq!(m.input_columns(), vec!["question".to_string()]);
        assert_eq!(m.params.max_tokens, Some(100));
        assert_eq!(
            m.render(&[Some("What is the capital of Sweden?")])
                .as_deref(),
            Some("What is the capital of Sweden?")
        );

        let t = spec(&[
            ("engine", s("bedrock_engine")),
            (
                "prompt_template",
                s("Answer the users input in a helpful way: {{question}}"),
            ),
        ])
        .unwrap();
        assert_eq!(
            t.render(&[Some("What is the capital of Sweden?")])
                .as_deref(),
            Some("Answer the users input in a helpful way: What is the capital of Sweden?")
        );
        let c = spec(&[
            ("engine", s("e")),
            ("mode", s("conversational")),
            ("question_column", s("question")),
        ])
        .unwrap();
        assert_eq!(c.mode, Mode::Conversational);
    }

    #[test]
    fn media_placeholders_are_inputs_of_their_kind() {
        use crate::bedrock::media::MediaKind;
        let t = Template::parse("Compare {{ image: photo }} with {{document:notes}} for {{who}}")
            .unwrap();
        assert_eq!(t.columns(), vec!["photo", "notes", "who"]);
        assert_eq!(t.media("photo"), Some(MediaKind::Image));
        assert_eq!(t.media("notes"), Some(MediaKind::Document));
        assert_eq!(t.media("who"), None);
        assert_eq!(
            Template::parse("{{image:x}} and {{x}}")
                .unwrap_err()
                .to_string(),
            "Parameter 'prompt_template' uses the column 'x' both as text, {{x}}, and as an image or document: a column is one or the other (select it twice under two names)"
        );
        assert_eq!(
            Template::parse("See {{video:x}}").unwrap_err().to_string(),
            "Parameter 'prompt_template' has the placeholder {{video:x}} at character 5: 'video' is not a kind of placeholder; write {{column}}, {{image:column}} or {{document:column}}"
        );
        assert!(Template::parse("{{image:}}").is_err());
    }

    #[test]
    fn templates_render_several_columns_and_nulls() {
        let m = spec(&[
            ("engine", s("e")),
            ("prompt_template", s("{{ a }} and {{b}} then {{a}}")),
        ])
        .unwrap();
        assert_eq!(m.input_columns(), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(
            m.render(&[Some("x"), Some("y")]).as_deref(),
            Some("x and y then x")
        );
        assert_eq!(
            m.render(&[None, Some("y")]).as_deref(),
            Some(" and y then ")
        );
        assert_eq!(m.render(&[None, None]), None);
        let q = spec(&[
            ("engine", s("e")),
            ("question_column", s("q")),
            ("context_column", s("c")),
        ])
        .unwrap();
        assert_eq!(
            q.render(&[Some("Why?"), Some("Sky")]).as_deref(),
            Some("Context: Sky\nQuestion: Why?\nAnswer: ")
        );
    }

    #[test]
    fn validation_errors_name_the_parameter_and_the_fix() {
        let err = |params: &[(&str, ParamValue)]| spec(params).unwrap_err().to_string();
        assert_eq!(
            err(&[("question_column", s("q"))]),
            "Model 'm' needs an engine: add USING engine = 'bedrock_engine' (create one first with CREATE ML_ENGINE bedrock_engine FROM bedrock USING …)"
        );
        assert_eq!(
            err(&[("engine", s("e")), ("question_colum", s("q"))]),
            "Unknown model parameter 'question_colum' — did you mean 'question_column'?"
        );
        assert_eq!(
            err(&[
                ("engine", s("e")),
                ("mode", s("chat")),
                ("question_column", s("q"))
            ]),
            "Parameter 'mode' = 'chat' is not supported: use 'default', 'conversational' or 'conversational-full'"
        );
        assert_eq!(
            err(&[
                ("engine", s("e")),
                ("prompt_template", s("{{q}}")),
                ("question_column", s("q"))
            ]),
            "Give either prompt_template or question_column, not both"
        );
        assert_eq!(
            err(&[("engine", s("e")), ("context_column", s("c"))]),
            "Parameter 'context_column' goes with question_column: add question_column = '…', or put the context into prompt_template"
        );
        assert_eq!(
            err(&[("engine", s("e"))]),
            "Model 'm' needs a prompt: add prompt_template = '… {{column}} …' or question_column = 'column' (with an optional context_column)"
        );
    }

    #[test]
    fn template_errors_say_where_and_how_to_write_it() {
        let err = |params: &[(&str, ParamValue)]| spec(params).unwrap_err().to_string();
        assert_eq!(
            err(&[
                ("engine", s("e")),
                ("prompt_template", s("no placeholders"))
            ]),
            "Parameter 'prompt_template' has no {{column}} placeholder, so every row would send the same prompt: write e.g. prompt_template = 'Answer this: {{question}}'"
        );
        assert_eq!(
            err(&[("engine", s("e")), ("prompt_template", s("Hi {{name"))]),
            "Parameter 'prompt_template' has '{{' that is never closed at character 4: placeholders are written {{column}}, literal braces \\{{ and \\}}"
        );
        // Literal braces: `\{{` and `\}}` (JSON in a prompt).
        let json = Template::parse(r#"{"a": \{{ "b": {{x}} \}} }"#).unwrap();
        assert_eq!(
            json.parts,
            [
                TemplatePart::Literal(r#"{"a": {{ "b": "#.into()),
                TemplatePart::Column("x".into()),
                TemplatePart::Literal(" }} }".into()),
            ]
        );
        // Positions count characters, not bytes.
        assert_eq!(
            err(&[("engine", s("e")), ("prompt_template", s("Här {{namn"))]),
            "Parameter 'prompt_template' has '{{' that is never closed at character 5: placeholders are written {{column}}, literal braces \\{{ and \\}}"
        );
        assert_eq!(
            err(&[
                ("engine", s("e")),
                ("prompt_template", s("Say {{d.question}}"))
            ]),
            "Parameter 'prompt_template' has the placeholder {{d.question}} at character 5: name the column alone, {{question}} — the model reads it from the data it is joined with, whatever that data's alias"
        );
        assert_eq!(
            err(&[
                ("engine", s("e")),
                ("prompt_template", s("Hi name}} {{x}}"))
            ]),
            "Parameter 'prompt_template' has '}}' without a '{{' before it at character 8: placeholders are written {{column}}, literal braces \\{{ and \\}}"
        );
    }

    #[test]
    fn out_of_range_and_unknown_values_are_refused() {
        let err = |params: &[(&str, ParamValue)]| spec(params).unwrap_err().to_string();
        assert_eq!(
            err(&[
                ("engine", s("e")),
                ("question_column", s("q")),
                ("temperature", ParamValue::Number(2.0))
            ]),
            "Parameter 'temperature' = 2 is out of range: it must be between 0 and 1"
        );
        assert_eq!(
            err(&[
                ("engine", s("e")),
                ("question_column", s("q")),
                ("max_tokens", ParamValue::Number(0.0))
            ]),
            "Parameter 'max_tokens' = 0 is out of range: it must be between 1 and 1000000"
        );
        assert_eq!(
            err(&[
                ("engine", s("e")),
                ("question_column", s("q")),
                ("stop", ParamValue::Bool(true))
            ]),
            "Parameter 'stop' must be a string or a list of strings, got a boolean: write stop = ['\\n\\n', 'Human:']"
        );
        assert_eq!(
            err(&[
                ("engine", s("e")),
                ("question_column", s("q")),
                ("api", s("rest"))
            ]),
            "Parameter 'api' = 'rest' is not supported: use 'converse' (the default) or 'invoke'"
        );
    }

    #[test]
    fn max_history_rows_is_validated_and_described() {
        let full = |extra: &[(&str, ParamValue)]| {
            let mut params = vec![
                ("engine", s("e")),
                ("prompt_template", s("{{q}}")),
                ("mode", s("conversational-full")),
            ];
            params.extend_from_slice(extra);
            spec(&params)
        };
        let default = full(&[]).unwrap();
        assert_eq!(default.max_history_rows, DEFAULT_MAX_HISTORY_ROWS);
        assert!(
            default
                .describe()
                .contains(&("max_history_rows".to_string(), "50".to_string()))
        );
        let two = full(&[("max_history_rows", ParamValue::Number(2.0))]).unwrap();
        assert_eq!(two.max_history_rows, 2);
        assert_eq!(
            full(&[("max_history_rows", ParamValue::Number(0.0))])
                .unwrap()
                .max_history_rows,
            0
        );
        assert_eq!(
            full(&[("max_history_rows", ParamValue::Number(-1.0))])
                .unwrap_err()
                .to_string(),
            "Parameter 'max_history_rows' = -1 is out of range: it must be between 0 and 10000"
        );
        assert_eq!(
            full(&[("max_history_rows", ParamValue::Number(2.5))])
                .unwrap_err()
                .to_string(),
            "Parameter 'max_history_rows' = 2.5 must be a whole number"
        );
        let not_full = spec(&[
            ("engine", s("e")),
            ("prompt_template", s("{{q}}")),
            ("max_history_rows", ParamValue::Number(3.0)),
        ]);
        assert_eq!(
            not_full.unwrap_err().to_string(),
            "Parameter 'max_history_rows' bounds the prior turns of mode = 'conversational-full', but this model's mode is 'default': remove max_history_rows, or add mode = 'conversational-full'"
        );
        // Only conversational-full models show it.
        let plain = spec(&[("engine", s("e")), ("prompt_template", s("{{q}}"))]).unwrap();
        assert!(
            !plain
                .describe()
                .iter()
                .any(|(k, _)| k == "max_history_rows")
        );
    }
}
