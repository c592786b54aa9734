//! How a model answers rows: prompts rendered from input columns, one of the three modes
//! (`default`, `conversational`, `conversational-full`) sent through the model's engine, then
//! structured output checked (one corrective retry), `on_error` applied, and the answers turned
//! into the target column (text or struct) and, with `provenance`, the `<target>_meta` column.
//!
//! Shared by the model plan node and the predict UDF.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, StringArray, StructArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::error::{DataFusionError, Result};

use crate::bedrock::budget::BUDGET_EXCEEDED;
use crate::bedrock::engine::{CallOptions, Engine, ModelTarget};
use crate::bedrock::request::{ChatMessage, ChatRole, TextRequest, TextResponse, ToolSpec};
use crate::bedrock::retry::CallFailure;
use crate::catalog::model::{ModelSpec, OnError};

/// The name of the tool a structured-output model is forced to call.
pub const ANSWER_TOOL: &str = "answer";

/// The Bedrock-style code of an answer that did not match `output_schema`, twice.
pub const INVALID_OUTPUT: &str = "InvalidStructuredOutput";

/// A model bound to the engine that calls it.
#[derive(Debug, Clone)]
pub struct ModelCall {
    spec: ModelSpec,
    engine: Arc<Engine>,
}

/// One row's answer, before it becomes Arrow values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowAnswer {
    /// The text answer (models without `output_schema`).
    pub text: Option<String>,
    /// The structured answer, validated (models with `output_schema`).
    pub value: Option<serde_json::Value>,
    /// How it was obtained; `None` when no call concerned the row.
    pub meta: Option<RowMeta>,
}

/// How one row's answer was obtained: the `<target>_meta` column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowMeta {
    /// The Bedrock model id.
    pub model_id: String,
    /// Input tokens billed (0 for a cached or repeated answer).
    pub input_tokens: u64,
    /// Output tokens billed (0 for a cached or repeated answer).
    pub output_tokens: u64,
    /// Milliseconds of the request that answered.
    pub latency_ms: u64,
    /// Why generation stopped.
    pub stop_reason: Option<String>,
    /// No request was sent for this row (cache, request in flight, or a repeated input).
    pub cache_hit: bool,
    /// A repeat of an earlier input of the same batch.
    pub deduplicated: bool,
    /// Attempts retried (throttling, errors, and a structured-output correction).
    pub retries: u32,
    /// Attempts refused by throttling.
    pub throttles: u32,
    /// Estimated USD (`None` when the model's price is unknown).
    pub cost_usd: Option<f64>,
    /// `Code: message` of a failed row (with `on_error = 'null'`).
    pub error: Option<String>,
}

/// Totals over answered rows, for EXPLAIN ANALYZE.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallStats {
    /// Requests sent (retries included).
    pub requests: u64,
    /// Rows answered by an earlier identical row of their batch.
    pub dedup_hits: u64,
    /// Rows answered from the cache.
    pub cache_hits: u64,
    /// Retried attempts.
    pub retries: u64,
    /// Throttled attempts.
    pub throttles: u64,
    /// Input tokens billed.
    pub input_tokens: u64,
    /// Output tokens billed.
    pub output_tokens: u64,
    /// Estimated USD.
    pub cost_usd: f64,
    /// Rows whose call failed (NULL with `on_error = 'null'`).
    pub failed_rows: u64,
}

impl CallStats {
    /// Adds one row's answer.
    pub fn add(&mut self, answer: &RowAnswer) {
        let Some(meta) = &answer.meta else {
            return;
        };
        if meta.error.is_some() {
            self.failed_rows += 1;
        }
        if meta.deduplicated {
            self.dedup_hits += 1;
        } else if meta.cache_hit {
            self.cache_hits += 1;
        } else if meta.error.is_none() {
            self.requests += 1 + u64::from(meta.retries);
        }
        self.retries += u64::from(meta.retries);
        self.throttles += u64::from(meta.throttles);
        self.input_tokens += meta.input_tokens;
        self.output_tokens += meta.output_tokens;
        self.cost_usd += meta.cost_usd.unwrap_or(0.0);
    }
}

/// A row's input, shortened for error messages.
pub(crate) fn preview(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

/// The fields of the `<target>_meta` struct.
pub fn meta_fields() -> Fields {
    Fields::from(vec![
        Field::new("model_id", DataType::Utf8, true),
        Field::new("input_tokens", DataType::UInt64, true),
        Field::new("output_tokens", DataType::UInt64, true),
        Field::new("latency_ms", DataType::UInt64, true),
        Field::new("stop_reason", DataType::Utf8, true),
        Field::new("cache_hit", DataType::Boolean, true),
        Field::new("retries", DataType::UInt32, true),
        Field::new("estimated_cost_usd", DataType::Float64, true),
        Field::new("error", DataType::Utf8, true),
    ])
}

/// A result of the client layer for one row: no call, an answer, or a failure.
type Outcome = Option<std::result::Result<TextResponse, CallFailure>>;

impl ModelCall {
    /// `spec` answered through `engine`.
    pub fn new(spec: ModelSpec, engine: Arc<Engine>) -> Self {
        Self { spec, engine }
    }

    /// The model.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The Arrow type of the target column: text, or the struct of `output_schema`.
    pub fn target_type(&self) -> DataType {
        self.spec
            .output_schema
            .as_ref()
            .map_or(DataType::Utf8, |s| s.arrow_type())
    }

    /// The fields this model adds to a row: the target, and `<target>_meta` with provenance.
    pub fn output_fields(&self) -> Vec<Field> {
        let mut fields = vec![Field::new(
            self.spec.target.as_str(),
            self.target_type(),
            true,
        )];
        if self.spec.provenance {
            fields.push(Field::new(
                self.spec.meta_column(),
                DataType::Struct(meta_fields()),
                true,
            ));
        }
        fields
    }

    /// The prompts of `rows` rows from the model's input columns (in
    /// [`ModelSpec::input_columns`] order), each cast to text as DataFusion displays it. `None`
    /// where every input is NULL.
    ///
    /// # Errors
    /// A wrong number of columns, or a column that cannot be shown as text.
    pub fn render(&self, columns: &[ArrayRef], rows: usize) -> Result<Vec<Option<String>>> {
        let inputs = self.spec.input_columns();
        if columns.len() != inputs.len() {
            return Err(DataFusionError::Plan(format!(
                "Model '{}' takes {} input(s) ({}), got {}",
                self.spec.name,
                inputs.len(),
                inputs.join(", "),
                columns.len()
            )));
        }
        let texts: Vec<ArrayRef> = columns
            .iter()
            .map(|c| Ok(cast(c, &DataType::Utf8)?))
            .collect::<Result<_>>()?;
        let texts: Vec<&StringArray> = texts
            .iter()
            .map(|c| {
                c.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                    DataFusionError::Internal("a text cast did not produce Utf8".into())
                })
            })
            .collect::<Result<_>>()?;
        Ok((0..rows)
            .map(|row| {
                let values: Vec<Option<&str>> = texts
                    .iter()
                    .map(|c| (!c.is_null(row)).then(|| c.value(row)))
                    .collect();
                self.spec.render(&values)
            })
            .collect())
    }

    fn target(&self) -> ModelTarget {
        ModelTarget {
            model_id: self.spec.model_id.clone(),
            api: self.spec.api,
        }
    }

    fn request(&self, messages: Vec<ChatMessage>) -> TextRequest {
        TextRequest {
            system: self.spec.system_prompt.clone(),
            messages,
            params: self.spec.params.clone(),
            tool: self.spec.output_schema.as_ref().map(|schema| ToolSpec {
                name: ANSWER_TOOL.to_string(),
                description: "Give the answer in this exact structure.".to_string(),
                schema: schema.json_schema(),
            }),
        }
    }

    fn row_error(&self, prompt: &str, failure: &CallFailure) -> DataFusionError {
        DataFusionError::Execution(format!(
            "Model '{}' ({}) failed for the row whose prompt is \"{}\": {failure}",
            self.spec.name,
            self.spec.model_id,
            preview(prompt)
        ))
    }

    /// Why a structured answer is not acceptable, if it is not.
    fn schema_problem(&self, response: &TextResponse) -> Option<String> {
        let schema = self.spec.output_schema.as_ref()?;
        match &response.tool_input {
            None => Some(format!(
                "the model answered with text instead of calling the '{ANSWER_TOOL}' tool"
            )),
            Some(value) => schema.validate(value).err(),
        }
    }

    /// Structured output: every answer that does not match the schema is asked for again
    /// once, with the problem explained; an answer still wrong becomes a failure.
    async fn correct(
        &self,
        conversations: &[Option<Vec<ChatMessage>>],
        mut outcomes: Vec<Outcome>,
        options: &CallOptions,
    ) -> Vec<Outcome> {
        if self.spec.output_schema.is_none() {
            return outcomes;
        }
        let mut retry: Vec<Option<TextRequest>> = vec![None; outcomes.len()];
        for (row, outcome) in outcomes.iter().enumerate() {
            if let (Some(Ok(response)), Some(messages)) = (outcome, &conversations[row])
                && let Some(problem) = self.schema_problem(response)
            {
                let mut messages = messages.clone();
                let said = response
                    .tool_input
                    .as_ref()
                    .map_or_else(|| response.text.clone(), ToString::to_string);
                messages.push(ChatMessage::assistant(said));
                messages.push(ChatMessage::user(format!(
                    "That answer does not match the required structure: {problem}. Call the '{ANSWER_TOOL}' tool again with input that matches its schema exactly."
                )));
                retry[row] = Some(self.request(messages));
            }
        }
        if retry.iter().all(Option::is_none) {
            return outcomes;
        }
        let second = self
            .engine
            .generate_with(&self.target(), &retry, options)
            .await;
        for (row, result) in second.into_iter().enumerate() {
            let Some(result) = result else { continue };
            let first_retries = match &outcomes[row] {
                Some(Ok(first)) => first.call.retries,
                _ => 0,
            };
            outcomes[row] = Some(result.and_then(
                |mut response| match self.schema_problem(&response) {
                    Some(problem) => Err(CallFailure::fatal(
                        INVALID_OUTPUT,
                        format!("the answer did not match output_schema, twice: {problem}"),
                    )),
                    None => {
                        response.call.retries += first_retries + 1;
                        Ok(response)
                    }
                },
            ));
        }
        outcomes
    }

    /// Puts a budget's final refusal (see [`crate::bedrock::budget::Budget::refusal`]: it
    /// waits for the requests still in flight and counts them) in place of what each refused
    /// row was told when it was refused.
    async fn settle_refusals(outcomes: &mut [Outcome], options: &CallOptions) {
        let refused = |o: &Outcome| matches!(o, Some(Err(f)) if f.code == BUDGET_EXCEEDED);
        if !outcomes.iter().any(refused) {
            return;
        }
        let Some(budget) = &options.budget else {
            return;
        };
        let Some(last) = budget.refusal().await else {
            return;
        };
        for outcome in outcomes.iter_mut() {
            if let Some(Err(failure)) = outcome
                && failure.code == BUDGET_EXCEEDED
            {
                *failure = last.clone();
            }
        }
    }

    /// Turns outcomes into answers, applying `on_error`.
    fn finish(&self, prompts: &[Option<&str>], outcomes: Vec<Outcome>) -> Result<Vec<RowAnswer>> {
        outcomes
            .into_iter()
            .enumerate()
            .map(|(row, outcome)| match outcome {
                None => Ok(RowAnswer::default()),
                Some(Ok(response)) => Ok(self.answered(response)),
                Some(Err(failure)) => {
                    if self.spec.on_error == OnError::Fail || failure.code == BUDGET_EXCEEDED {
                        return Err(self.row_error(prompts[row].unwrap_or_default(), &failure));
                    }
                    Ok(RowAnswer {
                        text: None,
                        value: None,
                        meta: Some(RowMeta {
                            model_id: self.spec.model_id.clone(),
                            error: Some(failure.to_string()),
                            ..RowMeta::default()
                        }),
                    })
                }
            })
            .collect()
    }

    fn answered(&self, response: TextResponse) -> RowAnswer {
        let call = response.call;
        let free = call.cache_hit || call.deduplicated;
        let (input_tokens, output_tokens) = if free {
            (0, 0)
        } else {
            (response.input_tokens, response.output_tokens)
        };
        let meta = RowMeta {
            model_id: self.spec.model_id.clone(),
            input_tokens,
            output_tokens,
            latency_ms: call.latency_ms,
            stop_reason: Some(response.stop_reason.clone()),
            cache_hit: free,
            deduplicated: call.deduplicated,
            retries: call.retries,
            throttles: call.throttles,
            cost_usd: self
                .engine
                .cost_usd(&self.spec.model_id, input_tokens, output_tokens),
            error: None,
        };
        if self.spec.output_schema.is_some() {
            RowAnswer {
                text: None,
                value: response.tool_input,
                meta: Some(meta),
            }
        } else {
            RowAnswer {
                text: Some(response.text),
                value: None,
                meta: Some(meta),
            }
        }
    }

    /// `default`: one request per distinct prompt, answers aligned to rows.
    ///
    /// # Errors
    /// With `on_error = 'fail'`, the first row that failed, with its prompt and the Bedrock
    /// error; a spent budget whatever `on_error` says.
    pub async fn answer_each(
        &self,
        prompts: &[Option<String>],
        options: &CallOptions,
    ) -> Result<Vec<RowAnswer>> {
        let conversations: Vec<Option<Vec<ChatMessage>>> = prompts
            .iter()
            .map(|p| p.as_ref().map(|p| vec![ChatMessage::user(p.clone())]))
            .collect();
        let requests: Vec<Option<TextRequest>> = conversations
            .iter()
            .map(|c| c.clone().map(|c| self.request(c)))
            .collect();
        let outcomes = self
            .engine
            .generate_with(&self.target(), &requests, options)
            .await;
        let mut outcomes = self.correct(&conversations, outcomes, options).await;
        Self::settle_refusals(&mut outcomes, options).await;
        let prompts: Vec<Option<&str>> = prompts.iter().map(Option::as_deref).collect();
        self.finish(&prompts, outcomes)
    }

    /// `conversational`: every prompt is one block of a single user message, sent as one
    /// request; returns its answer (empty when every prompt is NULL: nothing is sent).
    ///
    /// # Errors
    /// As [`ModelCall::answer_each`], for the one request.
    pub async fn answer_conversation(
        &self,
        prompts: &[Option<String>],
        options: &CallOptions,
    ) -> Result<RowAnswer> {
        let turns: Vec<String> = prompts.iter().flatten().cloned().collect();
        if turns.is_empty() {
            return Ok(RowAnswer::default());
        }
        let messages = vec![ChatMessage {
            role: ChatRole::User,
            texts: turns,
        }];
        self.answer_one(messages, "(the whole conversation)", options)
            .await
    }

    /// One request of `messages`, corrected if its structure is wrong, and finished as the row
    /// whose prompt is `shown` (what errors quote).
    async fn answer_one(
        &self,
        messages: Vec<ChatMessage>,
        shown: &str,
        options: &CallOptions,
    ) -> Result<RowAnswer> {
        let request = self.request(messages.clone());
        let outcomes = self
            .engine
            .generate_with(&self.target(), &[Some(request)], options)
            .await;
        let mut outcomes = self.correct(&[Some(messages)], outcomes, options).await;
        Self::settle_refusals(&mut outcomes, options).await;
        Ok(self
            .finish(&[Some(shown)], outcomes)?
            .pop()
            .unwrap_or_default())
    }

    /// `conversational-full`: every prompt answered in turn, `history` (the earlier prompts
    /// and answers, carried from one call to the next) sent as prior turns — the latest
    /// [`ModelSpec::max_history_rows`] of them; `history` keeps no more than that.
    ///
    /// # Errors
    /// As [`ModelCall::answer_each`], row by row.
    pub async fn answer_turns(
        &self,
        history: &mut Vec<ChatMessage>,
        prompts: &[Option<String>],
        options: &CallOptions,
    ) -> Result<Vec<RowAnswer>> {
        // A turn is two messages: the row's prompt and its answer.
        let kept = self.spec.max_history_rows.saturating_mul(2);
        let mut answers = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let Some(prompt) = prompt else {
                answers.push(RowAnswer::default());
                continue;
            };
            let oldest = history.len().saturating_sub(kept);
            history.drain(..oldest);
            let mut messages = history.clone();
            messages.push(ChatMessage::user(prompt.clone()));
            let answer = self.answer_one(messages, prompt, options).await?;
            let said = match (&answer.text, &answer.value) {
                (Some(text), _) => Some(text.clone()),
                (None, Some(value)) => Some(value.to_string()),
                (None, None) => None,
            };
            if let Some(said) = said {
                history.push(ChatMessage::user(prompt.clone()));
                history.push(ChatMessage::assistant(said));
            }
            answers.push(answer);
        }
        Ok(answers)
    }

    /// The target column of answered rows (text, or the struct of `output_schema`).
    ///
    /// # Errors
    /// A structured answer Arrow cannot decode.
    pub fn target_array(&self, answers: &[RowAnswer]) -> Result<ArrayRef> {
        match &self.spec.output_schema {
            None => Ok(Arc::new(StringArray::from(
                answers.iter().map(|a| a.text.clone()).collect::<Vec<_>>(),
            ))),
            Some(schema) => {
                let values: Vec<Option<serde_json::Value>> =
                    answers.iter().map(|a| a.value.clone()).collect();
                Ok(schema.to_array(&values)?)
            }
        }
    }

    /// The columns a model adds: the target and, with provenance, `<target>_meta`.
    ///
    /// # Errors
    /// As [`ModelCall::target_array`].
    pub fn output_arrays(&self, answers: &[RowAnswer]) -> Result<Vec<ArrayRef>> {
        let mut arrays = vec![self.target_array(answers)?];
        if self.spec.provenance {
            arrays.push(meta_array(answers)?);
        }
        Ok(arrays)
    }
}

/// The `<target>_meta` column: NULL where no call concerned the row.
fn meta_array(answers: &[RowAnswer]) -> Result<ArrayRef> {
    let metas: Vec<Option<&RowMeta>> = answers.iter().map(|a| a.meta.as_ref()).collect();
    let text = |f: &dyn Fn(&RowMeta) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(
            metas.iter().map(|m| m.and_then(f)).collect::<Vec<_>>(),
        ))
    };
    let count = |f: &dyn Fn(&RowMeta) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from(
            metas.iter().map(|m| m.map(f)).collect::<Vec<_>>(),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|m| Some(m.model_id.clone())),
        count(&|m| m.input_tokens),
        count(&|m| m.output_tokens),
        count(&|m| m.latency_ms),
        text(&|m| m.stop_reason.clone()),
        Arc::new(BooleanArray::from(
            metas
                .iter()
                .map(|m| m.map(|m| m.cache_hit))
                .collect::<Vec<_>>(),
        )),
        Arc::new(UInt32Array::from(
            metas
                .iter()
                .map(|m| m.map(|m| m.retries))
                .collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            metas
                .iter()
                .map(|m| m.and_then(|m| m.cost_usd))
                .collect::<Vec<_>>(),
        )),
        text(&|m| m.error.clone()),
    ];
    let nulls = NullBuffer::from(metas.iter().map(Option::is_some).collect::<Vec<_>>());
    Ok(Arc::new(StructArray::try_new(
        meta_fields(),
        columns,
        Some(nulls),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_cut_at_80_characters() {
        assert_eq!(preview("short"), "short");
        let long = "x".repeat(100);
        assert_eq!(preview(&long), format!("{}…", "x".repeat(80)));
    }

    #[test]
    fn stats_count_requests_hits_and_failures() {
        let mut stats = CallStats::default();
        let meta = |f: fn(&mut RowMeta)| {
            let mut m = RowMeta {
                input_tokens: 10,
                output_tokens: 5,
                cost_usd: Some(0.5),
                ..RowMeta::default()
            };
            f(&mut m);
            RowAnswer {
                meta: Some(m),
                ..RowAnswer::default()
            }
        };
        stats.add(&meta(|m| m.retries = 2));
        stats.add(&meta(|m| m.throttles = 1));
        stats.add(&meta(|m| {
            m.cache_hit = true;
            m.deduplicated = true;
        }));
        stats.add(&meta(|m| m.cache_hit = true));
        stats.add(&meta(|m| m.error = Some("X: y".into())));
        stats.add(&RowAnswer::default());
        assert_eq!(
            stats,
            CallStats {
                requests: 4,
                dedup_hits: 1,
                cache_hits: 1,
                retries: 2,
                throttles: 1,
                input_tokens: 50,
                output_tokens: 25,
                cost_usd: 2.5,
                failed_rows: 1,
            }
        );
    }
}
