//! The one path of every model call — a model relation's rows and every AI function's rows:
//!
//! 1. the caller renders each row's prompt (`None` for a row that asks nothing);
//! 2. [`ModelCall`] builds one request per row from the bound model (system prompt, inference
//!    parameters, the forced answer tool of structured output);
//! 3. the engine groups identical requests (dedup), serves cached answers, admits each attempt
//!    through the query's budget and the model's limiter, sends and retries
//!    ([`Engine::generate_with`](crate::bedrock::engine::Engine::generate_with));
//! 4. structured answers are checked against `output_schema` and asked for once more when
//!    wrong; a caller's own check (a yes/no verdict, a label) is applied;
//! 5. each row gets its answer or its failure, `on_error` decides whether a failure stops the
//!    query, and every answer carries its [`RowMeta`] (provenance, and what EXPLAIN ANALYZE and
//!    the budget count).

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use std::sync::Arc;

use super::answer::{RowAnswer, RowMeta};
use super::bound::BoundModel;
use super::text::preview;
use crate::bedrock::budget::BUDGET_EXCEEDED;
use crate::bedrock::engine::CallOptions;
use crate::bedrock::families::EmbedOptions;
use crate::bedrock::request::{ChatMessage, ChatRole, TextRequest, TextResponse, ToolSpec};
use crate::bedrock::retry::CallFailure;
use crate::catalog::model::OnError;
use crate::catalog::output_schema::OutputSchema;

/// The name of the tool a structured-output model is forced to call.
pub const ANSWER_TOOL: &str = "answer";

/// The Bedrock-style code of an answer that did not match `output_schema`, twice.
pub const INVALID_OUTPUT: &str = "InvalidStructuredOutput";

/// The code of an answer a caller's check refused (not yes/no, not one of the labels, a vector
/// of the wrong size).
pub const INVALID_ANSWER: &str = "InvalidAnswer";

/// A caller's check of a text answer: `Err(why)` (e.g. `which is neither yes nor no: …`) makes
/// the row fail.
pub type AnswerCheck<'a> = dyn Fn(&str) -> std::result::Result<(), String> + Send + Sync + 'a;

/// How a caller asks: who is asking (errors name it), what a row's input is called, a fixed
/// instruction and a check of each answer.
#[derive(Clone, Copy)]
pub struct Ask<'a> {
    /// The AI function asking (`ai_filter`), named first in errors; `None` for a model relation.
    pub caller: Option<&'a str>,
    /// What errors call a row's input: `prompt` or `text`.
    pub input: &'a str,
    /// A fixed system instruction, sent before the model's own system prompt.
    pub instruction: Option<&'a str>,
    /// A check of each text answer.
    pub check: Option<&'a AnswerCheck<'a>>,
}

impl Default for Ask<'_> {
    fn default() -> Self {
        Self {
            caller: None,
            input: "prompt",
            instruction: None,
            check: None,
        }
    }
}

impl<'a> Ask<'a> {
    /// An AI function's ask.
    #[must_use]
    pub fn by(function: &'a str) -> Self {
        Self {
            caller: Some(function),
            ..Self::default()
        }
    }

    /// How errors begin: `ai_filter: model 'm' (id)` or `Model 'm' (id)`.
    fn who(&self, model: &BoundModel) -> String {
        if let Some(function) = self.caller {
            return format!("{function}: {}", model.label);
        }
        let mut chars = model.label.chars();
        chars.next().map_or_else(String::new, |first| {
            first.to_uppercase().chain(chars).collect()
        })
    }

    /// The error of a row whose call failed for good.
    #[must_use]
    pub fn row_error(
        &self,
        model: &BoundModel,
        input: &str,
        failure: &CallFailure,
    ) -> DataFusionError {
        DataFusionError::Execution(format!(
            "{} failed for the row whose {} is \"{}\": {failure}",
            self.who(model),
            self.input,
            preview(input)
        ))
    }

    /// The error of a row whose answer the check refused.
    fn refused_error(
        &self,
        model: &BoundModel,
        input: &str,
        answer: &str,
        why: &str,
    ) -> DataFusionError {
        DataFusionError::Execution(format!(
            "{} answered \"{}\" for the row whose {} is \"{}\", {why}",
            self.who(model),
            preview(answer),
            self.input,
            preview(input)
        ))
    }
}

/// Whether the price table prices answers of this tier: the default tier (or none reported).
/// Flex and priority prices are not in the table, so their cost is unknown.
fn tier_priced(tier: Option<&str>) -> bool {
    tier.is_none_or(|t| t == "default")
}

/// A result of the client layer for one row: no call, an answer, or a failure.
pub(super) type Outcome = Option<std::result::Result<TextResponse, CallFailure>>;

/// A bound model answering rows.
#[derive(Debug, Clone)]
pub struct ModelCall {
    model: BoundModel,
}

impl ModelCall {
    /// Calls to `model`.
    #[must_use]
    pub fn new(model: BoundModel) -> Self {
        Self { model }
    }

    /// The bound model.
    #[must_use]
    pub fn model(&self) -> &BoundModel {
        &self.model
    }

    /// The Arrow type of an answer: text, or the struct of `output_schema`.
    #[must_use]
    pub fn answer_type(&self) -> DataType {
        self.model
            .output_schema
            .as_ref()
            .map_or(DataType::Utf8, OutputSchema::arrow_type)
    }

    fn request(&self, messages: Vec<ChatMessage>, instruction: Option<&str>) -> TextRequest {
        let system = match (instruction, &self.model.system_prompt) {
            (Some(i), Some(s)) => Some(format!("{i}\n\n{s}")),
            (Some(i), None) => Some(i.to_string()),
            (None, s) => s.clone(),
        };
        TextRequest {
            system,
            messages,
            params: self.model.params.clone(),
            tool: self.model.output_schema.as_ref().map(|schema| ToolSpec {
                name: ANSWER_TOOL.to_string(),
                description: "Give the answer in this structure.".to_string(),
                schema: schema.json_schema(),
            }),
            cache: None,
        }
    }

    /// The requests a model relation sends for `prompts` (without checkpoints), e.g. to count
    /// their tokens.
    #[must_use]
    pub fn requests_for(&self, prompts: &[String]) -> Vec<TextRequest> {
        prompts
            .iter()
            .map(|p| self.request(vec![ChatMessage::user(p.clone())], None))
            .collect()
    }

    /// Gives requests their prompt-cache checkpoints under the model's `prompt_cache` (Converse
    /// only: `InvokeModel` bodies carry none).
    pub(super) fn place_cache_points(&self, requests: &mut [Option<TextRequest>]) {
        if self.model.target.api == crate::bedrock::engine::Api::Converse {
            crate::bedrock::prompt_cache::place(
                requests,
                self.model.model_id(),
                self.model.params.prompt_cache.unwrap_or_default(),
            );
        }
    }

    /// Why a structured answer is not acceptable, if it is not.
    fn schema_problem(&self, response: &TextResponse) -> Option<String> {
        let schema = self.model.output_schema.as_ref()?;
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
        requests: &[Option<TextRequest>],
        mut outcomes: Vec<Outcome>,
        ask: &Ask<'_>,
        options: &CallOptions,
    ) -> Vec<Outcome> {
        if self.model.output_schema.is_none() {
            return outcomes;
        }
        let mut retry: Vec<Option<TextRequest>> = vec![None; outcomes.len()];
        for (row, outcome) in outcomes.iter().enumerate() {
            if let (Some(Ok(response)), Some(Some(first))) = (outcome, requests.get(row))
                && let Some(problem) = self.schema_problem(response)
            {
                let mut messages = first.messages.clone();
                let said = response
                    .tool_input
                    .as_ref()
                    .map_or_else(|| response.text.clone(), ToString::to_string);
                messages.push(ChatMessage::assistant(said));
                messages.push(ChatMessage::user(format!(
                    "That answer does not match the required structure: {problem}. Call the '{ANSWER_TOOL}' tool again with input that matches its schema exactly."
                )));
                retry[row] = Some(self.request(messages, ask.instruction));
            }
        }
        if retry.iter().all(Option::is_none) {
            return outcomes;
        }
        let second = self
            .model
            .engine
            .generate_with(&self.model.target, &retry, options)
            .await;
        for (row, result) in second.into_iter().enumerate() {
            let Some(result) = result else { continue };
            let first_retries = match &outcomes[row] {
                Some(Ok(first)) => first.call.retries,
                _ => 0,
            };
            outcomes[row] = Some(result.and_then(|mut response| {
                if let Some(problem) = self.schema_problem(&response) {
                    return Err(CallFailure::fatal(
                        INVALID_OUTPUT,
                        format!("the answer did not match output_schema, twice: {problem}"),
                    ));
                }
                response.call.retries += first_retries + 1;
                Ok(response)
            }));
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

    /// Turns outcomes into answers: a caller's check, then `on_error`.
    fn finish(
        &self,
        inputs: &[Option<&str>],
        outcomes: Vec<Outcome>,
        ask: &Ask<'_>,
    ) -> Result<Vec<RowAnswer>> {
        outcomes
            .into_iter()
            .enumerate()
            .map(|(row, outcome)| {
                let input = inputs.get(row).copied().flatten().unwrap_or_default();
                match outcome {
                    None => Ok(RowAnswer::default()),
                    Some(Ok(response)) => {
                        if let (Some(check), false) = (ask.check, response.tool_input.is_some())
                            && let Err(why) = check(&response.text)
                        {
                            if self.model.on_error == OnError::Fail {
                                return Err(ask.refused_error(
                                    &self.model,
                                    input,
                                    &response.text,
                                    &why,
                                ));
                            }
                            let failure = CallFailure::fatal(
                                INVALID_ANSWER,
                                format!("answered \"{}\", {why}", preview(&response.text)),
                            );
                            return Ok(self.failed(&failure));
                        }
                        Ok(self.answered(response))
                    }
                    Some(Err(failure)) => {
                        if self.model.on_error == OnError::Fail || failure.code == BUDGET_EXCEEDED {
                            return Err(ask.row_error(&self.model, input, &failure));
                        }
                        Ok(self.failed(&failure))
                    }
                }
            })
            .collect()
    }

    /// A failed row's answer under `on_error = 'null'`: NULL, its provenance saying why.
    #[must_use]
    pub fn failed(&self, failure: &CallFailure) -> RowAnswer {
        RowAnswer {
            meta: Some(RowMeta {
                model_id: self.model.model_id().to_string(),
                error: Some(failure.to_string()),
                ..RowMeta::default()
            }),
            ..RowAnswer::default()
        }
    }

    /// The provenance of an answer from `call`, for `input_tokens` and `output_tokens`.
    fn meta(
        &self,
        call: &crate::bedrock::request::CallInfo,
        input_tokens: u64,
        output_tokens: u64,
        stop_reason: Option<String>,
    ) -> RowMeta {
        let free = call.cache_hit || call.deduplicated;
        let (input_tokens, output_tokens, read, written) = if free {
            (0, 0, 0, 0)
        } else {
            (
                input_tokens,
                output_tokens,
                call.cache_read_tokens,
                call.cache_write_tokens,
            )
        };
        let engine = &self.model.engine;
        let model_id = self.model.model_id();
        let ttl = self
            .model
            .params
            .prompt_cache
            .and_then(crate::bedrock::prompt_cache::PromptCache::ttl);
        RowMeta {
            model_id: model_id.to_string(),
            input_tokens,
            output_tokens,
            latency_ms: call.latency_ms,
            stop_reason,
            cache_hit: free,
            deduplicated: call.deduplicated,
            retries: call.retries,
            throttles: call.throttles,
            cost_usd: if call.batch_job.is_some() {
                engine.batch_cost_usd(model_id, input_tokens, output_tokens)
            } else if tier_priced(call.service_tier.as_deref()) {
                engine
                    .cost_usd(model_id, input_tokens, output_tokens)
                    .zip(engine.cached_cost_usd(model_id, ttl, read, written))
                    .map(|(tokens, cached)| tokens + cached)
            } else {
                // No published price of that tier in the table: unknown, not a guess.
                None
            },
            error: None,
            batch_job: call.batch_job.as_deref().map(str::to_string),
            service_tier: call.service_tier.as_deref().map(str::to_string),
            cache_read_tokens: read,
            cache_write_tokens: written,
            packed_rows: if free { 0 } else { call.packed_rows.max(1) },
            counts_request: call.packed_rows <= 1 || call.packed_first,
            ..RowMeta::default()
        }
    }

    fn answered(&self, response: TextResponse) -> RowAnswer {
        let meta = self.meta(
            &response.call,
            response.input_tokens,
            response.output_tokens,
            Some(response.stop_reason.clone()),
        );
        if self.model.output_schema.is_some() {
            RowAnswer {
                value: response.tool_input,
                meta: Some(meta),
                ..RowAnswer::default()
            }
        } else {
            RowAnswer {
                text: Some(response.text),
                meta: Some(meta),
                ..RowAnswer::default()
            }
        }
    }

    /// One request per distinct prompt, answers aligned to rows (`None` prompts ask nothing).
    ///
    /// # Errors
    /// With `on_error = 'fail'`, the first row that failed, with its input and the Bedrock
    /// error; a spent budget whatever `on_error` says.
    pub async fn answer_each(
        &self,
        prompts: &[Option<String>],
        ask: &Ask<'_>,
        options: &CallOptions,
    ) -> Result<Vec<RowAnswer>> {
        let options = &options.executed(self.model.execution.unwrap_or(options.execution));
        let ready = super::media::ready(prompts, self.model.target.api, options).await;
        let mut requests: Vec<Option<TextRequest>> = ready
            .prompts
            .iter()
            .map(|p| {
                p.as_ref()
                    .map(|p| self.request(vec![ChatMessage::user(p.clone())], ask.instruction))
            })
            .collect();
        self.place_cache_points(&mut requests);
        // Rows with images or documents are not packed: a packed request is one text.
        let packing = match self.model.params.rows_per_request.unwrap_or(1) {
            _ if ready.any => 1,
            k => k,
        };
        let mut outcomes = if packing > 1 {
            let k = usize::try_from(packing).unwrap_or(usize::MAX);
            self.generate_packed(&requests, k, options).await
        } else {
            self.model
                .engine
                .generate_with(&self.model.target, &requests, options)
                .await
        };
        for (outcome, failure) in outcomes.iter_mut().zip(ready.failures) {
            if let Some(failure) = failure {
                *outcome = Some(Err(failure));
            }
        }
        let mut outcomes = self.correct(&requests, outcomes, ask, options).await;
        Self::settle_refusals(&mut outcomes, options).await;
        let inputs: Vec<Option<&str>> = prompts.iter().map(Option::as_deref).collect();
        self.finish(&inputs, outcomes, ask)
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
        let mut turns: Vec<String> = Vec::new();
        for prompt in prompts.iter().flatten() {
            turns.push(self.ready_turn(prompt, options).await?);
        }
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

    /// A conversation's prompt with its images and documents read and checked.
    ///
    /// # Errors
    /// The row's error when they cannot be sent (a conversation has no row to leave NULL).
    async fn ready_turn(&self, prompt: &str, options: &CallOptions) -> Result<String> {
        if !crate::bedrock::media::marker::has_media(prompt) {
            return Ok(prompt.to_string());
        }
        super::media::ready_one(prompt, self.model.target.api, options)
            .await
            .map_err(|failure| Ask::default().row_error(&self.model, prompt, &failure))
    }

    /// One request of `messages`, corrected if its structure is wrong, and finished as the row
    /// whose prompt is `shown` (what errors quote).
    async fn answer_one(
        &self,
        messages: Vec<ChatMessage>,
        shown: &str,
        options: &CallOptions,
    ) -> Result<RowAnswer> {
        // A conversation's requests depend on each other: they are sent one by one.
        let options = &options.executed(crate::bedrock::batch::Execution::OnDemand);
        let ask = Ask::default();
        let requests = [Some(self.request(messages, None))];
        let outcomes = self
            .model
            .engine
            .generate_with(&self.model.target, &requests, options)
            .await;
        let mut outcomes = self.correct(&requests, outcomes, &ask, options).await;
        Self::settle_refusals(&mut outcomes, options).await;
        Ok(self
            .finish(&[Some(shown)], outcomes, &ask)?
            .pop()
            .unwrap_or_default())
    }

    /// `conversational-full`: every prompt answered in turn, `history` (the earlier prompts
    /// and answers, carried from one call to the next) sent as prior turns — the latest
    /// `max_history_rows` of them; `history` keeps no more than that.
    ///
    /// # Errors
    /// As [`ModelCall::answer_each`], row by row.
    pub async fn answer_turns(
        &self,
        history: &mut Vec<ChatMessage>,
        prompts: &[Option<String>],
        max_history_rows: usize,
        options: &CallOptions,
    ) -> Result<Vec<RowAnswer>> {
        // A turn is two messages: the row's prompt and its answer.
        let kept = max_history_rows.saturating_mul(2);
        let mut answers = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let Some(prompt) = prompt else {
                answers.push(RowAnswer::default());
                continue;
            };
            let oldest = history.len().saturating_sub(kept);
            history.drain(..oldest);
            let mut messages = history.clone();
            let prompt = &self.ready_turn(prompt, options).await?;
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

    /// Each text's embedding (`None` texts ask nothing), every vector of `dimensions` values.
    ///
    /// # Errors
    /// As [`ModelCall::answer_each`]; a vector of another size is a failed row.
    pub async fn embed_each(
        &self,
        texts: &[Option<String>],
        embed: &EmbedOptions,
        dimensions: usize,
        ask: &Ask<'_>,
        options: &CallOptions,
    ) -> Result<Vec<RowAnswer>> {
        let results = self
            .model
            .engine
            .embed_with(self.model.model_id(), texts, embed, options)
            .await
            .map_err(|e| DataFusionError::Plan(format!("{}: {e}", ask.who(&self.model))))?;
        let mut outcomes: Vec<Option<std::result::Result<RowAnswer, CallFailure>>> = results
            .into_iter()
            .map(|result| {
                result.map(|r| match r {
                    Ok(response) if response.vector.len() != dimensions => Err(CallFailure::fatal(
                        INVALID_ANSWER,
                        format!(
                            "the model returned {} dimensions instead of {dimensions}",
                            response.vector.len()
                        ),
                    )),
                    Ok(response) => Ok(RowAnswer {
                        meta: Some(self.meta(&response.call, response.input_tokens, 0, None)),
                        vector: Some(response.vector),
                        ..RowAnswer::default()
                    }),
                    Err(failure) => Err(failure),
                })
            })
            .collect();
        if outcomes
            .iter()
            .any(|o| matches!(o, Some(Err(f)) if f.code == BUDGET_EXCEEDED))
            && let Some(budget) = &options.budget
            && let Some(last) = budget.refusal().await
        {
            for outcome in &mut outcomes {
                if let Some(Err(failure)) = outcome
                    && failure.code == BUDGET_EXCEEDED
                {
                    *failure = last.clone();
                }
            }
        }
        outcomes
            .into_iter()
            .zip(texts)
            .map(|(outcome, text)| match outcome {
                None => Ok(RowAnswer::default()),
                Some(Ok(answer)) => Ok(answer),
                Some(Err(failure)) => {
                    if self.model.on_error == OnError::Fail || failure.code == BUDGET_EXCEEDED {
                        Err(ask.row_error(
                            &self.model,
                            text.as_deref().unwrap_or_default(),
                            &failure,
                        ))
                    } else {
                        Ok(self.failed(&failure))
                    }
                }
            })
            .collect()
    }

    /// The answers as one column: text, or the struct of `output_schema`.
    ///
    /// # Errors
    /// A structured answer Arrow cannot decode.
    pub fn answer_array(&self, answers: &[RowAnswer]) -> Result<ArrayRef> {
        match &self.model.output_schema {
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
}
