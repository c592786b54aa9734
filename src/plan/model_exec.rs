//! The operator of a model relation ([`super::model_node::ModelNode`]): batches answered as
//! they arrive in the default mode, rows in order through one conversation in the
//! conversational modes, the query's budget shared, and the counters of EXPLAIN ANALYZE.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{CardinalityEffect, EmissionType};
use datafusion::physical_plan::limit::LimitStream;
use datafusion::physical_plan::metrics::BaselineMetrics;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    InputDistributionRequirements, Partitioning, PlanProperties, StatisticsArgs, StatisticsContext,
    apply_expression_roots,
};
use futures::{StreamExt, TryStreamExt};

use super::options::BedrockOptions;
use crate::bedrock::batch::{DEFAULT_BATCH_MIN_ROWS, Execution};
use crate::bedrock::budget::Budget;
use crate::bedrock::engine::{CallOptions, DEFAULT_TOKEN_RESERVATION};
use crate::bedrock::request::ChatMessage;
use crate::catalog::model::{Mode, PromptSource, TemplatePart};
use crate::inference::{Ask, CallMetrics, CreatedModel, RowAnswer};

use super::model_node::describe;
use super::only_child;

/// The operator of [`ModelNode`](super::model_node::ModelNode).
#[derive(Debug)]
pub struct ModelExec {
    call: CreatedModel,
    pub(super) input: Arc<dyn ExecutionPlan>,
    args: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    budget: Arc<Budget>,
    /// A conversation's LIMIT: only its first rows are read and answered.
    fetch: Option<usize>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// Decoded from another process's plan (a cluster's task): counters Ballista can carry.
    portable_metrics: bool,
    /// How its requests are sent, as planned (the model's own `execution`, else the
    /// session's): batch and auto gather the whole input first.
    execution: Execution,
    /// `bedrock.batch_min_rows` when planned (for EXPLAIN's estimate under `auto`).
    batch_min_rows: u64,
    /// `SET bedrock.count_tokens = true`: what `CountTokens` said of a sample of prompts.
    counted: Option<Counted>,
}

/// What Bedrock's `CountTokens` said of a sample of a model relation's rendered prompts.
#[derive(Debug, Clone, PartialEq)]
enum Counted {
    /// The prompts counted and their input tokens in all.
    Sample { prompts: usize, tokens: u64 },
    /// Why nothing could be counted.
    Unavailable(String),
}

/// The most prompts `bedrock.count_tokens` counts for EXPLAIN.
pub const COUNT_TOKENS_SAMPLE: usize = 20;

impl ModelExec {
    /// The operator answering `input`'s rows; `args` evaluate to the model's inputs; `budget`
    /// is the query's.
    pub fn new(
        call: CreatedModel,
        input: Arc<dyn ExecutionPlan>,
        args: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
        budget: Arc<Budget>,
    ) -> Self {
        let execution = call.spec().execution.unwrap_or_default();
        Self {
            properties: Arc::new(Self::properties_of(&call, &input, &schema, execution)),
            call,
            input,
            args,
            schema,
            budget,
            fetch: None,
            metrics: ExecutionPlanMetricsSet::new(),
            portable_metrics: false,
            execution,
            batch_min_rows: DEFAULT_BATCH_MIN_ROWS,
            counted: None,
        }
    }

    /// The same operator under the session's options: `bedrock.execution` for a model without
    /// an `execution` of its own, and `bedrock.batch_min_rows`.
    #[must_use]
    pub fn under(mut self, options: &BedrockOptions) -> Self {
        // A conversation's requests depend on each other: always on demand.
        self.execution = if self.is_conversation() {
            Execution::OnDemand
        } else {
            self.call.spec().execution.unwrap_or(options.execution)
        };
        self.batch_min_rows = options.batch_min_rows;
        self.properties = Arc::new(Self::properties_of(
            &self.call,
            &self.input,
            &self.schema,
            self.execution,
        ));
        self
    }

    fn properties_of(
        call: &CreatedModel,
        input: &Arc<dyn ExecutionPlan>,
        schema: &SchemaRef,
        execution: Execution,
    ) -> PlanProperties {
        let boundedness = input.properties().boundedness;
        if call.spec().mode == Mode::Default {
            let mut equivalence = EquivalenceProperties::new(Arc::clone(schema));
            // The input's columns keep their positions and their order.
            if let Some(ordering) = input.output_ordering() {
                equivalence.add_ordering(ordering.iter().cloned());
            }
            let (partitioning, emission) = if execution.gathers() {
                // The whole input, answered at once: one partition, after the last row.
                (Partitioning::UnknownPartitioning(1), EmissionType::Final)
            } else {
                (
                    input.output_partitioning().clone(),
                    EmissionType::Incremental,
                )
            };
            PlanProperties::new(equivalence, partitioning, emission, boundedness)
        } else {
            let emission = if call.spec().mode == Mode::Conversational {
                // The last batch waits for the one answer.
                EmissionType::Both
            } else {
                EmissionType::Incremental
            };
            PlanProperties::new(
                EquivalenceProperties::new(Arc::clone(schema)),
                Partitioning::UnknownPartitioning(1),
                emission,
                boundedness,
            )
        }
    }

    /// The query's budget.
    #[must_use]
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// The model and its engine.
    #[must_use]
    pub fn call(&self) -> &CreatedModel {
        &self.call
    }

    /// The expressions giving the model's inputs.
    #[must_use]
    pub fn args(&self) -> &[Arc<dyn PhysicalExpr>] {
        &self.args
    }

    /// The same operator over `input` (a plan decoded elsewhere), with the output schema the
    /// model gives that input, a LIMIT of a conversation and its own budget.
    #[must_use]
    pub fn rebuilt(
        call: CreatedModel,
        input: Arc<dyn ExecutionPlan>,
        args: Vec<Arc<dyn PhysicalExpr>>,
        fetch: Option<usize>,
        budget: Arc<Budget>,
    ) -> Self {
        let input_schema = input.schema();
        let fields: Vec<datafusion::arrow::datatypes::FieldRef> = input_schema
            .fields()
            .iter()
            .cloned()
            .chain(call.output_fields().into_iter().map(Arc::new))
            .collect();
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new_with_metadata(
            fields,
            input_schema.metadata().clone(),
        ));
        let mut exec = Self::new(call, input, args, schema, budget);
        exec.fetch = fetch;
        exec.portable_metrics = true;
        exec
    }

    /// How many partitions of this operator run model calls.
    #[must_use]
    pub fn calling_partitions(&self) -> usize {
        self.properties.output_partitioning().partition_count()
    }

    pub(super) fn is_conversation(&self) -> bool {
        self.call.spec().mode != Mode::Default
    }

    /// Whether it reads its whole input as one partition: a conversation, or batch and auto
    /// execution (one set of jobs for the query).
    fn single_input(&self) -> bool {
        self.is_conversation() || self.execution.gathers()
    }

    pub(super) fn with_input(&self, input: Arc<dyn ExecutionPlan>) -> Self {
        let mut exec = Self::new(
            self.call.clone(),
            input,
            self.args.clone(),
            Arc::clone(&self.schema),
            Arc::clone(&self.budget),
        );
        exec.fetch = self.fetch;
        exec.portable_metrics = self.portable_metrics;
        exec.execution = self.execution;
        exec.batch_min_rows = self.batch_min_rows;
        exec.counted.clone_from(&self.counted);
        exec.properties = Arc::new(Self::properties_of(
            &exec.call,
            &exec.input,
            &exec.schema,
            exec.execution,
        ));
        exec
    }

    /// The same operator with Bedrock's `CountTokens` asked about the prompts of the first rows
    /// of its input (up to [`COUNT_TOKENS_SAMPLE`]), for EXPLAIN (`bedrock.count_tokens`).
    /// Only the default mode's prompts are counted: a conversation's requests grow row by row.
    pub(super) async fn with_counted_sample(mut self, task: Arc<TaskContext>) -> Self {
        if self.is_conversation() {
            return self;
        }
        self.counted = Some(match self.count_sample(task).await {
            Ok(counted) => counted,
            Err(e) => Counted::Unavailable(e.to_string()),
        });
        self
    }

    async fn count_sample(&self, task: Arc<TaskContext>) -> Result<Counted> {
        let mut prompts = Vec::new();
        if self.input.output_partitioning().partition_count() > 0 {
            let mut stream = self.input.execute(0, task)?;
            while prompts.len() < COUNT_TOKENS_SAMPLE {
                let Some(batch) = stream.next().await.transpose()? else {
                    break;
                };
                let rows = batch.num_rows();
                let columns: Vec<ArrayRef> = self
                    .args
                    .iter()
                    .map(|arg| arg.evaluate(&batch)?.into_array(rows))
                    .collect::<Result<_>>()?;
                prompts.extend(self.call.render(&columns, rows)?.into_iter().flatten());
            }
        }
        prompts.truncate(COUNT_TOKENS_SAMPLE);
        if prompts.is_empty() {
            return Ok(Counted::Unavailable("no rows to sample".into()));
        }
        let requests = self.call.call().requests_for(&prompts);
        let target = &self.call.call().model().target;
        match self
            .call
            .engine()
            .count_input_tokens(target, &requests)
            .await
        {
            Ok(counts) => Ok(Counted::Sample {
                prompts: counts.len(),
                tokens: counts.iter().sum(),
            }),
            Err(failure) => Ok(Counted::Unavailable(failure.to_string())),
        }
    }

    /// `counted_input_tokens~N (CountTokens on a sample of K prompts: T tokens)`: the sample's
    /// mean times the rows (when their number is known), or why nothing was counted.
    fn counted(&self, rows: Option<usize>) -> Option<String> {
        Some(match self.counted.as_ref()? {
            Counted::Unavailable(why) => format!("counted_input_tokens=unavailable ({why})"),
            Counted::Sample { prompts, tokens } => {
                let sample =
                    format!("CountTokens on a sample of {prompts} prompts: {tokens} tokens");
                match rows {
                    Some(rows) => {
                        // The sample's mean per prompt, times the rows, rounded.
                        let (tokens, prompts) = (u128::from(*tokens), (*prompts).max(1) as u128);
                        let total = (tokens * rows as u128 + prompts / 2) / prompts;
                        format!("counted_input_tokens~{total} ({sample})")
                    }
                    None => format!("counted_input_tokens=? ({sample})"),
                }
            }
        })
    }

    /// `estimated_requests<=N, estimated_input_tokens=lo..hi, estimated_cost_usd=lo..hi` when
    /// the input's row count (or a LIMIT) is known: every row sent (dedup and the cache only
    /// lower it), from the prompt's fixed text plus the input's bytes per row and one output
    /// token, up to `max_tokens` (512 when unset) output tokens. A `conversational-full`
    /// request also carries up to `max_history_rows` prior turns, each a prompt and an answer.
    /// The rows the input will give, when its statistics (or a LIMIT) say.
    fn row_count(&self) -> Option<usize> {
        let stats = StatisticsContext::new()
            .compute(self.input.as_ref(), &StatisticsArgs::new())
            .ok()?;
        match (stats.num_rows.get_value(), self.fetch) {
            (Some(rows), fetch) => Some(fetch.map_or(*rows, |f| f.min(*rows))),
            (None, fetch) => fetch,
        }
    }

    fn estimate(&self) -> Option<String> {
        let stats = StatisticsContext::new()
            .compute(self.input.as_ref(), &StatisticsArgs::new())
            .ok()?;
        let (rows, exact) = match (stats.num_rows.get_value(), self.fetch) {
            (Some(rows), fetch) => (
                fetch.map_or(*rows, |f| f.min(*rows)),
                matches!(stats.num_rows, Precision::Exact(_)),
            ),
            (None, Some(fetch)) => (fetch, false),
            (None, None) => return None,
        };
        let spec = self.call.spec();
        let packed = spec
            .params
            .rows_per_request
            .map_or(1, |k| k.max(1) as usize);
        let (requests, rows_per_request) = match spec.mode {
            Mode::Default if packed > 1 => (rows.div_ceil(packed), packed),
            Mode::Default | Mode::ConversationalFull => (rows, 1),
            Mode::Conversational => (usize::from(rows > 0), rows),
        };
        let mut fixed: usize = spec.system_prompt.as_ref().map_or(0, |s| s.chars().count());
        let (shared, per_row_markup) = crate::inference::packing::overhead_chars(packed);
        fixed += match &spec.prompt {
            PromptSource::Template(t) => t
                .parts
                .iter()
                .map(|p| match p {
                    TemplatePart::Literal(text) => text.chars().count(),
                    TemplatePart::Column(_) | TemplatePart::Media { .. } => 0,
                })
                .sum(),
            PromptSource::Question { context: None, .. } => 0,
            PromptSource::Question { .. } => "Context: \nQuestion: \nAnswer: ".len(),
        };
        let bytes_per_row = match stats.total_byte_size {
            Precision::Exact(b) | Precision::Inexact(b) if rows > 0 => {
                b / (*stats.num_rows.get_value().unwrap_or(&rows)).max(1)
            }
            _ => 0,
        };
        let tokens = |chars: usize| u64::try_from(chars.div_ceil(4)).unwrap_or(u64::MAX);
        let max_output = spec
            .params
            .max_tokens
            .map_or(DEFAULT_TOKEN_RESERVATION, u64::from);
        let n = u64::try_from(requests).unwrap_or(u64::MAX);
        let low_input = tokens(shared + (fixed + per_row_markup) * rows_per_request).max(1);
        let high_input =
            tokens(shared + (fixed + per_row_markup + bytes_per_row) * rows_per_request).max(1);
        // Prior turns over all requests: request i carries min(i, max_history_rows).
        let turns = if spec.mode == Mode::ConversationalFull {
            history_turns(n, spec.max_history_rows as u64)
        } else {
            0
        };
        let input = (
            n.saturating_mul(low_input)
                .saturating_add(turns.saturating_mul(tokens(fixed).saturating_add(1))),
            n.saturating_mul(high_input).saturating_add(
                turns.saturating_mul(tokens(fixed + bytes_per_row).saturating_add(max_output)),
            ),
        );
        let output = (
            n,
            n.saturating_mul(max_output)
                .saturating_mul(if packed > 1 { packed as u64 } else { 1 }),
        );
        let bound = if exact { "<=" } else { "~<=" };
        let engine = self.call.engine();
        let batch = self.execution.uses_jobs(requests, self.batch_min_rows);
        let price = |i, o| {
            if batch {
                engine.batch_cost_usd(&spec.model_id, i, o)
            } else {
                engine.cost_usd(&spec.model_id, i, o)
            }
        };
        let unpriced_tier = spec
            .params
            .service_tier
            .filter(|t| !batch && *t != crate::bedrock::request::ServiceTier::Default);
        let cost = match (price(input.0, output.0), price(input.1, output.1)) {
            _ if let Some(tier) = unpriced_tier => {
                format!("unknown (no price for the {} tier)", tier.name())
            }
            (Some(low), Some(high)) => format!("{low:.6}..{high:.6}"),
            _ => "unknown (no price for this model)".to_string(),
        };
        let calls = if batch {
            format!(
                "estimated_batch_records{bound}{requests} in {} job(s) at the batch price",
                crate::bedrock::batch::jobs_for(requests)
            )
        } else {
            format!("estimated_requests{bound}{requests}")
        };
        Some(format!(
            "{calls}, estimated_input_tokens={}..{}, estimated_cost_usd={cost}",
            input.0, input.1
        ))
    }
}

/// On a cluster, how the query's budget is divided:
/// `budget=max_requests 100 divided over 4 partitions (a task gets its partitions' part, rounded down)`.
pub(super) fn budget_division(budget: &Budget) -> Option<String> {
    let total = budget.divided_over()?;
    let (max_requests, max_cost) = budget.limits();
    let limits: Vec<String> = max_requests
        .map(|max| format!("max_requests {max}"))
        .into_iter()
        .chain(max_cost.map(|max| format!("max_cost_usd {max}")))
        .collect();
    if limits.is_empty() {
        return None;
    }
    let partitions = if total == 1 {
        "partition"
    } else {
        "partitions"
    };
    Some(format!(
        "budget={} divided over {total} {partitions} (a task gets its partitions' part, rounded down)",
        limits.join(", ")
    ))
}

/// Prior turns sent by `requests` requests of a `conversational-full` model keeping `max`:
/// the sum of `min(i, max)` for i below `requests`.
fn history_turns(requests: u64, max: u64) -> u64 {
    let ramp = requests.min(max.saturating_add(1));
    let ramp_turns = ramp.saturating_mul(ramp.saturating_sub(1)) / 2;
    ramp_turns.saturating_add((requests - ramp).saturating_mul(max))
}

impl DisplayAs for ModelExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let inputs: Vec<String> = self.args.iter().map(ToString::to_string).collect();
        describe(&self.call, &inputs.join(", "), f)?;
        if self.execution != Execution::OnDemand {
            write!(f, ", execution={}", self.execution)?;
        }
        if self.single_input() {
            write!(f, ", input=one partition in the data's order")?;
        }
        if let Some(fetch) = self.fetch {
            write!(f, ", fetch={fetch}")?;
        }
        if let Some(estimate) = self.estimate() {
            write!(f, ", {estimate}")?;
        }
        if let Some(counted) = self.counted(self.row_count()) {
            write!(f, ", {counted}")?;
        }
        if let Some(division) = budget_division(&self.budget) {
            write!(f, ", {division}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ModelExec {
    fn name(&self) -> &'static str {
        "ModelExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        // A conversation consumes its whole input as one partition: an ordered input is
        // merged in order; the partitions of an unordered one, which DataFusion gathers with
        // a `CoalescePartitionsExec`, are read one after another in the data's order (see
        // `execute`). On a cluster, this is what makes the conversation's task read every
        // partition, not only its own.
        let distribution = if self.single_input() {
            Distribution::SinglePartition
        } else {
            Distribution::UnspecifiedDistribution
        };
        InputDistributionRequirements::new(vec![distribution])
    }

    fn required_input_ordering(
        &self,
    ) -> Vec<Option<datafusion::physical_expr::OrderingRequirements>> {
        if self.is_conversation() {
            vec![self.input.output_ordering().cloned().map(Into::into)]
        } else {
            vec![None]
        }
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        // A conversation does keep the order, but a sort above must not be pushed below it:
        // that would change the order of the conversation itself.
        vec![!self.is_conversation()]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn supports_limit_pushdown(&self) -> bool {
        !self.is_conversation()
    }

    fn fetch(&self) -> Option<usize> {
        self.fetch
    }

    fn with_fetch(&self, limit: Option<usize>) -> Option<Arc<dyn ExecutionPlan>> {
        // A conversation takes its first rows in order, and row i's answer depends only on
        // the rows before it (`conversational-full`) or on the rows taken (`conversational`):
        // a LIMIT n reads n rows and sends n requests, or one. (The default mode lets the
        // LIMIT through to its input instead.)
        if !self.is_conversation() {
            return None;
        }
        let mut exec = self.with_input(Arc::clone(&self.input));
        exec.fetch = limit;
        Some(Arc::new(exec))
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        CardinalityEffect::Equal
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        apply_expression_roots(&self.args, f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(
            self.with_input(only_child("ModelExec", children)?),
        ))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let session = BedrockOptions::of_config(context.session_config().options());
        let execution = self.call.spec().execution.unwrap_or(session.execution);
        let metrics = if self.portable_metrics {
            CallMetrics::portable(&self.metrics, partition)
        } else {
            CallMetrics::new(&self.metrics, partition)
        };
        let metrics = Arc::new(if execution.gathers() && !self.is_conversation() {
            metrics.with_batch(&self.metrics, partition)
        } else {
            metrics
        });
        let execution = if self.is_conversation() {
            Execution::OnDemand
        } else {
            execution
        };
        let options = session.call_options(&self.budget).executed(execution);
        let batch_size = context.session_config().batch_size();
        let worker = Worker {
            call: self.call.clone(),
            args: self.args.clone(),
            schema: Arc::clone(&self.schema),
            options: options.reading(context.runtime_env()),
            budget: Arc::clone(&self.budget),
            metrics,
        };
        if !self.is_conversation() && execution.gathers() {
            if partition != 0 {
                return Err(DataFusionError::Internal(format!(
                    "ModelExec in {execution} execution has one partition, asked for partition {partition}"
                )));
            }
            return Ok(gathered(
                &self.input,
                &context,
                Arc::clone(&self.schema),
                batch_size,
                move |batch| async move { worker.answer_batch(batch).await },
            ));
        }
        if !self.is_conversation() {
            let input = self.input.execute(partition, context)?;
            let worker = Arc::new(worker);
            let stream = input
                .map(move |batch| {
                    let worker = Arc::clone(&worker);
                    async move { worker.answer_batch(batch?).await }
                })
                .buffered(2);
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&self.schema),
                stream,
            )));
        }
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "ModelExec of a conversation has one partition, asked for partition {partition}"
            )));
        }
        // The input's partitions one after another, in order: those under a merge of
        // partitions are read in turn, not interleaved as the merge would.
        let child = in_order(&self.input);
        let partitions = child.output_partitioning().partition_count();
        let input_schema = child.schema();
        let batches = futures::stream::iter(0..partitions)
            .map(move |p| child.execute(p, Arc::clone(&context)))
            .try_flatten();
        let mut input: SendableRecordBatchStream =
            Box::pin(RecordBatchStreamAdapter::new(input_schema, batches));
        if let Some(fetch) = self.fetch {
            // Stops reading the input once the rows are taken.
            input = Box::pin(LimitStream::new(
                input,
                0,
                Some(fetch),
                // Its own metrics: EXPLAIN ANALYZE shows the model's.
                BaselineMetrics::new(&ExecutionPlanMetricsSet::new(), partition),
            ));
        }
        let state = Conversation {
            worker,
            input,
            held: None,
            prompts: Vec::new(),
            history: Vec::new(),
            done: false,
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            match state.next().await {
                Ok(Some(batch)) => Some((Ok(batch), state)),
                Ok(None) => None,
                Err(e) => {
                    state.done = true;
                    Some((Err(e), state))
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        )))
    }
}

/// Batch and auto execution: every row of the input (its partitions in the data's order) in
/// one batch, `answer` run once on it, and its rows given back in batches of `batch_size`.
fn gathered<F, Fut>(
    input: &Arc<dyn ExecutionPlan>,
    context: &Arc<TaskContext>,
    schema: SchemaRef,
    batch_size: usize,
    answer: F,
) -> SendableRecordBatchStream
where
    F: FnOnce(RecordBatch) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<RecordBatch>> + Send + 'static,
{
    let child = in_order(input);
    let partitions = child.output_partitioning().partition_count();
    let input_schema = child.schema();
    let context = Arc::clone(context);
    let all = async move {
        let batches: Vec<RecordBatch> = futures::stream::iter(0..partitions)
            .map(|p| child.execute(p, Arc::clone(&context)))
            .try_flatten()
            .try_collect()
            .await?;
        let whole = datafusion::arrow::compute::concat_batches(&input_schema, &batches)?;
        let answered = answer(whole).await?;
        let rows = answered.num_rows();
        Ok::<_, DataFusionError>(
            in_batches(&answered, 0, rows, batch_size)
                .into_iter()
                .map(Ok)
                .collect::<Vec<_>>(),
        )
    };
    let stream = futures::stream::once(all)
        .map(|result| match result {
            Ok(batches) => futures::stream::iter(batches).left_stream(),
            Err(e) => futures::stream::iter(vec![Err(e)]).right_stream(),
        })
        .flatten();
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

/// Rows `offset..offset + rows` of `batch`, in batches of at most `batch_size` rows.
pub(super) fn in_batches(
    batch: &RecordBatch,
    offset: usize,
    rows: usize,
    batch_size: usize,
) -> Vec<RecordBatch> {
    let step = batch_size.max(1);
    (0..rows)
        .step_by(step)
        .map(|start| batch.slice(offset + start, step.min(rows - start)))
        .collect()
}

/// What a conversation reads in order: the partitions under a `CoalescePartitionsExec` (which
/// would interleave them), else the input itself.
fn in_order(input: &Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    match input.downcast_ref::<CoalescePartitionsExec>() {
        Some(merge) if merge.fetch().is_none() => Arc::clone(merge.input()),
        _ => Arc::clone(input),
    }
}

/// What every batch of one partition needs.
struct Worker {
    call: CreatedModel,
    args: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    options: CallOptions,
    budget: Arc<Budget>,
    metrics: Arc<CallMetrics>,
}

impl Worker {
    fn prompts_of(&self, batch: &RecordBatch) -> Result<Vec<Option<String>>> {
        let rows = batch.num_rows();
        let columns: Vec<ArrayRef> = self
            .args
            .iter()
            .map(|arg| arg.evaluate(batch)?.into_array(rows))
            .collect::<Result<_>>()?;
        self.call.render(&columns, rows)
    }

    fn with_answers(&self, batch: &RecordBatch, answers: &[RowAnswer]) -> Result<RecordBatch> {
        self.metrics.record(answers, Some(&self.budget));
        let mut columns = batch.columns().to_vec();
        columns.extend(self.call.output_arrays(answers)?);
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    fn without_answers(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let mut columns = batch.columns().to_vec();
        for field in self.call.output_fields() {
            columns.push(new_null_array(field.data_type(), batch.num_rows()));
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// `default`: every row of a batch answered, concurrently.
    async fn answer_batch(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let prompts = self.prompts_of(&batch)?;
        let answers = self
            .call
            .call()
            .answer_each(&prompts, &Ask::default(), &self.options)
            .await?;
        self.with_answers(&batch, &answers)
    }
}

/// The progress of a conversation.
struct Conversation {
    worker: Worker,
    input: SendableRecordBatchStream,
    /// `conversational`: the latest batch, held until it is known whether it is the last.
    held: Option<RecordBatch>,
    /// `conversational`: every row's prompt so far.
    prompts: Vec<Option<String>>,
    /// `conversational-full`: the turns so far.
    history: Vec<ChatMessage>,
    done: bool,
}

impl Conversation {
    /// The next output batch, `None` at the end.
    async fn next(&mut self) -> Result<Option<RecordBatch>> {
        if self.done {
            return Ok(None);
        }
        loop {
            let Some(batch) = self.input.next().await.transpose()? else {
                self.done = true;
                return self.finish().await;
            };
            if batch.num_rows() == 0 {
                continue;
            }
            let prompts = self.worker.prompts_of(&batch)?;
            if self.worker.call.spec().mode == Mode::ConversationalFull {
                let answers = self
                    .worker
                    .call
                    .call()
                    .answer_turns(
                        &mut self.history,
                        &prompts,
                        self.worker.call.spec().max_history_rows,
                        &self.worker.options,
                    )
                    .await?;
                return self.worker.with_answers(&batch, &answers).map(Some);
            }
            self.prompts.extend(prompts);
            if let Some(previous) = self.held.replace(batch) {
                return self.worker.without_answers(&previous).map(Some);
            }
        }
    }

    /// `conversational`: the one request, its answer in the last row of the held batch.
    async fn finish(&mut self) -> Result<Option<RecordBatch>> {
        let Some(last) = self.held.take() else {
            return Ok(None);
        };
        let mut answers = vec![RowAnswer::default(); last.num_rows()];
        let prompts = std::mem::take(&mut self.prompts);
        if let Some(slot) = answers.last_mut() {
            *slot = self
                .worker
                .call
                .call()
                .answer_conversation(&prompts, &self.worker.options)
                .await?;
        }
        self.worker.with_answers(&last, &answers).map(Some)
    }
}
