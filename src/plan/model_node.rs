//! The plan node of a model relation: a model answering the rows of its input.
//!
//! - `default`: batches are answered as they arrive (two in flight, so a slow row of one batch
//!   does not idle the next), row *i* of the output answering row *i* of the input; a LIMIT
//!   above is pushed below, so only the needed rows are sent.
//! - `conversational` (MindsDB's semantics): the prompts of all rows form one user message of
//!   one request; the answer goes to the last row, every other row gets NULL. Batches stream
//!   through with NULL answers; only the last one is held until the answer arrives.
//! - `conversational-full`: every row is answered in turn, with the earlier rows and their
//!   answers sent as prior turns (the latest `max_history_rows` of them).
//!
//! A LIMIT bounds the requests of every mode: the default mode lets it through to its input;
//! a conversation takes only its first rows (`fetch`), so `conversational-full` sends one
//! request per row taken and `conversational` one request for them.
//!
//! The conversational modes see every row in the data's order, however many files,
//! partitions and batches it spans. EXPLAIN names the model, its mode and concurrency, and
//! estimates requests and cost when the input's size is known; EXPLAIN ANALYZE shows requests,
//! dedup and cache hits, retries, throttles, tokens and estimated USD. A query's budget
//! (`SET bedrock.max_requests / bedrock.max_cost_usd`) is shared by all its model nodes.
//!
//! [`ModelNode`] is the logical node that [`super::rewrite::ModelRelationRule`] puts in place
//! of a model relation, [`ModelExec`] its operator, and [`BedrockQueryPlanner`] the query
//! planner that knows how to plan it.

use std::any::Any;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DFSchemaRef, TableReference};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{CardinalityEffect, EmissionType};
use datafusion::physical_plan::limit::LimitStream;
use datafusion::physical_plan::metrics::BaselineMetrics;
use datafusion::physical_plan::metrics::{
    ExecutionPlanMetricsSet, MetricsSet,
};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    InputDistributionRequirements, Partitioning, PlanProperties, StatisticsArgs, StatisticsContext,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::{StreamExt, TryStreamExt};

use super::options::BedrockOptions;
use crate::bedrock::budget::Budget;
use crate::bedrock::engine::{CallOptions, DEFAULT_TOKEN_RESERVATION};
use crate::bedrock::request::ChatMessage;
use crate::catalog::model::{Mode, PromptSource, TemplatePart};
use crate::inference::{Ask, CallMetrics, CreatedModel, RowAnswer};

/// A model answering the rows of its input: the input's columns, then the model's target
/// column and, with `provenance`, `<target>_meta` (qualified by the model's alias).
#[derive(Debug, Clone)]
pub struct ModelNode {
    call: CreatedModel,
    input: LogicalPlan,
    args: Vec<Expr>,
    qualifier: TableReference,
    schema: DFSchemaRef,
}

impl ModelNode {
    /// The node answering `input`'s rows, whose prompts come from `args` (the model's inputs,
    /// in [`crate::catalog::model::ModelSpec::input_columns`] order).
    ///
    /// # Errors
    /// When an output column's name clashes with a column of the input.
    pub fn try_new(
        call: CreatedModel,
        input: LogicalPlan,
        args: Vec<Expr>,
        qualifier: TableReference,
    ) -> Result<Self> {
        let outputs = Schema::new(call.output_fields());
        let outputs = DFSchema::try_from_qualified_schema(qualifier.clone(), &outputs)?;
        let schema = Arc::new(input.schema().join(&outputs)?);
        Ok(Self {
            call,
            input,
            args,
            qualifier,
            schema,
        })
    }

    /// The model and its engine.
    pub fn call(&self) -> &CreatedModel {
        &self.call
    }

    fn fingerprint(&self) -> String {
        self.call.fingerprint()
    }
}

impl PartialEq for ModelNode {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint() == other.fingerprint()
            && self.input == other.input
            && self.args == other.args
            && self.qualifier == other.qualifier
    }
}

impl Eq for ModelNode {}

impl Hash for ModelNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.fingerprint().hash(state);
        self.input.hash(state);
        self.args.hash(state);
        self.qualifier.hash(state);
    }
}

impl PartialOrd for ModelNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (self == other).then_some(Ordering::Equal)
    }
}

/// `Model: model=…, model_id=…, mode=…, max_concurrency=…, inputs=[…]`, for EXPLAIN
/// (`conversational-full` adds `max_history_rows=…` after the concurrency).
fn describe(call: &CreatedModel, inputs: &str, f: &mut fmt::Formatter) -> fmt::Result {
    let spec = call.spec();
    write!(
        f,
        "Model: model={}, model_id={}, mode={}, max_concurrency={}",
        spec.name,
        spec.model_id,
        spec.mode.name(),
        call.engine().config().max_concurrency
    )?;
    if spec.mode == Mode::ConversationalFull {
        write!(f, ", max_history_rows={}", spec.max_history_rows)?;
    }
    write!(f, ", inputs=[{inputs}]")
}

impl UserDefinedLogicalNodeCore for ModelNode {
    fn name(&self) -> &str {
        "Model"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        self.args.clone()
    }

    fn prevent_predicate_push_down_columns(&self) -> HashSet<String> {
        // A filter on the data's columns chooses the rows to answer (and the rows of a
        // conversation, as MindsDB's WHERE on the data side does); a filter on the answer
        // must stay above.
        self.call
            .output_fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let inputs: Vec<String> = self.args.iter().map(ToString::to_string).collect();
        describe(&self.call, &inputs.join(", "), f)
    }

    fn with_exprs_and_inputs(
        &self,
        exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        if inputs.len() != 1 {
            return Err(DataFusionError::Internal(format!(
                "Model takes one input, got {}",
                inputs.len()
            )));
        }
        Self::try_new(
            self.call.clone(),
            inputs.swap_remove(0),
            exprs,
            self.qualifier.clone(),
        )
    }

    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        let input_schema = self.input.schema();
        let width = input_schema.fields().len();
        let mut needed: Vec<usize> = output_columns
            .iter()
            .copied()
            .filter(|i| *i < width)
            .collect();
        for arg in &self.args {
            for column in arg.column_refs() {
                needed.push(input_schema.index_of_column(column).ok()?);
            }
        }
        needed.sort_unstable();
        needed.dedup();
        Some(vec![needed])
    }

    fn supports_limit_pushdown(&self) -> bool {
        // One answer per row, independent of the others: LIMIT n needs only n rows.
        self.call.spec().mode == Mode::Default
    }
}

/// The operator of [`ModelNode`].
#[derive(Debug)]
pub struct ModelExec {
    call: CreatedModel,
    input: Arc<dyn ExecutionPlan>,
    args: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    budget: Arc<Budget>,
    /// A conversation's LIMIT: only its first rows are read and answered.
    fetch: Option<usize>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

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
        let boundedness = input.properties().boundedness;
        let properties = if call.spec().mode == Mode::Default {
            let mut equivalence = EquivalenceProperties::new(Arc::clone(&schema));
            // The input's columns keep their positions and their order.
            if let Some(ordering) = input.output_ordering() {
                equivalence.add_ordering(ordering.iter().cloned());
            }
            PlanProperties::new(
                equivalence,
                input.output_partitioning().clone(),
                EmissionType::Incremental,
                boundedness,
            )
        } else {
            let emission = if call.spec().mode == Mode::Conversational {
                // The last batch waits for the one answer.
                EmissionType::Both
            } else {
                EmissionType::Incremental
            };
            PlanProperties::new(
                EquivalenceProperties::new(Arc::clone(&schema)),
                Partitioning::UnknownPartitioning(1),
                emission,
                boundedness,
            )
        };
        Self {
            call,
            input,
            args,
            schema,
            budget,
            fetch: None,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The query's budget.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    fn is_conversation(&self) -> bool {
        self.call.spec().mode != Mode::Default
    }

    fn with_input(&self, input: Arc<dyn ExecutionPlan>) -> Self {
        let mut exec = Self::new(
            self.call.clone(),
            input,
            self.args.clone(),
            Arc::clone(&self.schema),
            Arc::clone(&self.budget),
        );
        exec.fetch = self.fetch;
        exec
    }

    /// `estimated_requests<=N, estimated_input_tokens=lo..hi, estimated_cost_usd=lo..hi` when
    /// the input's row count (or a LIMIT) is known: every row sent (dedup and the cache only
    /// lower it), from the prompt's fixed text plus the input's bytes per row and one output
    /// token, up to `max_tokens` (512 when unset) output tokens. A `conversational-full`
    /// request also carries up to `max_history_rows` prior turns, each a prompt and an answer.
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
        let (requests, rows_per_request) = match spec.mode {
            Mode::Default | Mode::ConversationalFull => (rows, 1),
            Mode::Conversational => (usize::from(rows > 0), rows),
        };
        let mut fixed: usize = spec.system_prompt.as_ref().map_or(0, |s| s.chars().count());
        fixed += match &spec.prompt {
            PromptSource::Template(t) => t
                .parts
                .iter()
                .map(|p| match p {
                    TemplatePart::Literal(text) => text.chars().count(),
                    TemplatePart::Column(_) => 0,
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
        let low_input = tokens(fixed * rows_per_request).max(1);
        let high_input = tokens((fixed + bytes_per_row) * rows_per_request).max(1);
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
        let output = (n, n.saturating_mul(max_output));
        let bound = if exact { "<=" } else { "~<=" };
        let engine = self.call.engine();
        let cost = match (
            engine.cost_usd(&spec.model_id, input.0, output.0),
            engine.cost_usd(&spec.model_id, input.1, output.1),
        ) {
            (Some(low), Some(high)) => format!("{low:.6}..{high:.6}"),
            _ => "unknown (no price for this model)".to_string(),
        };
        Some(format!(
            "estimated_requests{bound}{requests}, estimated_input_tokens={}..{}, estimated_cost_usd={cost}",
            input.0, input.1
        ))
    }
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
        if let Some(fetch) = self.fetch {
            write!(f, ", fetch={fetch}")?;
        }
        if let Some(estimate) = self.estimate() {
            write!(f, ", {estimate}")?;
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
        // A conversation's ordered input is merged in order; any other input of a
        // conversation is read one partition after another (see `ModelInputOrder`).
        let distribution = if self.is_conversation() && self.input.output_ordering().is_some() {
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
        for arg in &self.args {
            if f(arg)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(format!(
                "ModelExec takes one input, got {}",
                children.len()
            )));
        }
        Ok(Arc::new(self.with_input(children.swap_remove(0))))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let metrics = Arc::new(CallMetrics::new(&self.metrics, partition));
        let options = CallOptions {
            budget: self.budget.is_limited().then(|| Arc::clone(&self.budget)),
        };
        let worker = Worker {
            call: self.call.clone(),
            args: self.args.clone(),
            schema: Arc::clone(&self.schema),
            options,
            budget: Arc::clone(&self.budget),
            metrics,
        };
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
        // The input's partitions one after another, in order.
        let partitions = self.input.output_partitioning().partition_count();
        let child = Arc::clone(&self.input);
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

/// Keeps the rows of a conversation in the data's order: removes the round-robin
/// repartitioning that DataFusion adds for parallelism under a conversation's [`ModelExec`]
/// (it interleaves batches) and the merge of partitions right under it, which it replaces by
/// reading the partitions one after another. Ordered merges (`SortPreservingMergeExec`) are
/// kept.
#[derive(Debug, Default)]
pub struct ModelInputOrder;

/// `plan` without round-robin repartitioning, down to the first operator that needs its
/// input's distribution (a join, an aggregate, a sort…), where parallelism may matter again.
fn without_round_robin(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(repartition) = (plan.as_ref() as &dyn Any).downcast_ref::<RepartitionExec>()
        && matches!(repartition.partitioning(), Partitioning::RoundRobinBatch(_))
    {
        return without_round_robin(Arc::clone(repartition.input()));
    }
    let passes_rows_through = plan.children().len() == 1
        && plan
            .maintains_input_order()
            .first()
            .copied()
            .unwrap_or(false)
        && matches!(
            plan.input_distribution_requirements().child_distribution(0),
            None | Some(Distribution::UnspecifiedDistribution)
        );
    if !passes_rows_through {
        return Ok(plan);
    }
    let child = without_round_robin(Arc::clone(plan.children()[0]))?;
    if Arc::ptr_eq(&child, plan.children()[0]) {
        return Ok(plan);
    }
    #[expect(deprecated)]
    plan.with_new_children(vec![child])
}

impl PhysicalOptimizerRule for ModelInputOrder {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            let Some(model) = (node.as_ref() as &dyn Any).downcast_ref::<ModelExec>() else {
                return Ok(Transformed::no(node));
            };
            if !model.is_conversation() {
                return Ok(Transformed::no(node));
            }
            let mut input = Arc::clone(&model.input);
            if input.output_ordering().is_none() {
                if let Some(merge) =
                    (input.as_ref() as &dyn Any).downcast_ref::<CoalescePartitionsExec>()
                {
                    input = Arc::clone(merge.input());
                }
                input = without_round_robin(input)?;
            }
            if Arc::ptr_eq(&input, &model.input) {
                return Ok(Transformed::no(node));
            }
            let replaced = Arc::new(model.with_input(input)) as Arc<dyn ExecutionPlan>;
            Ok(Transformed::yes(replaced))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "bedrock_model_input_order"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Plans [`ModelNode`]s as [`ModelExec`]s, all under one query's budget.
#[derive(Debug)]
pub struct ModelPlanner {
    budget: Arc<Budget>,
}

#[async_trait]
impl ExtensionPlanner for ModelPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<ModelNode>() else {
            return Ok(None);
        };
        let (Some(logical), Some(physical)) = (logical_inputs.first(), physical_inputs.first())
        else {
            return Err(DataFusionError::Internal(
                "Model was planned without its input".into(),
            ));
        };
        let args = node
            .args
            .iter()
            .map(|arg| planner.create_physical_expr(arg, logical.schema(), session, planning_ctx))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Arc::new(ModelExec::new(
            node.call.clone(),
            Arc::clone(physical),
            args,
            Arc::new(node.schema.as_arrow().clone()),
            Arc::clone(&self.budget),
        ))))
    }
}

/// DataFusion's query planner plus the extension's plan nodes. Every query gets its own
/// [`Budget`] from the session's `bedrock.*` options.
///
/// It wraps the query planner the session had: plans without model relations go to that
/// planner unchanged (DataFusion's default one, or an application's own), and plans with them
/// are planned by DataFusion's physical planner with [`ModelPlanner`] added (an application
/// whose own planner must see those plans too adds [`ModelPlanner::for_session`] to its
/// extension planners).
#[derive(Debug, Default)]
pub struct BedrockQueryPlanner {
    inner: Option<Arc<dyn QueryPlanner + Send + Sync>>,
}

impl BedrockQueryPlanner {
    /// A planner around the session's current one (`None`: DataFusion's default). Wrapping a
    /// `BedrockQueryPlanner` again returns a copy of it, so the extension is installed once.
    pub fn wrapping(inner: Option<Arc<dyn QueryPlanner + Send + Sync>>) -> Self {
        let Some(inner) = inner else {
            return Self { inner: None };
        };
        let any = inner.as_ref() as &dyn Any;
        if let Some(ours) = any.downcast_ref::<Self>() {
            return Self {
                inner: ours.inner.clone(),
            };
        }
        Self { inner: Some(inner) }
    }
}

impl ModelPlanner {
    /// The extension planner of one query, with the budget of the session's `bedrock.*`
    /// options.
    pub fn for_session(session: &dyn Session) -> Self {
        Self {
            budget: Arc::new(BedrockOptions::of_config(session.config_options()).budget()),
        }
    }
}

/// Whether a plan (its subqueries included) has a model node.
fn has_model_node(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        found = matches!(node, LogicalPlan::Extension(e) if e.node.as_any().is::<ModelNode>());
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

#[async_trait]
impl QueryPlanner for BedrockQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(inner) = &self.inner
            && !has_model_node(logical_plan)
        {
            return inner.create_physical_plan(logical_plan, session).await;
        }
        let planner = DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(
            ModelPlanner::for_session(session),
        )]);
        planner.create_physical_plan(logical_plan, session).await
    }
}
