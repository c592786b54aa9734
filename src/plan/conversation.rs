//! The plan node of the conversational modes: it sees every row of its input, in order, however
//! many batches they arrive in.
//!
//! - `conversational` (MindsDB's semantics): the prompts of all rows form one user message of
//!   one request; the answer goes to the last row, every other row gets NULL. Batches stream
//!   through with NULL answers; only the last one is held until the answer arrives.
//! - `conversational-full`: every row is answered in turn, with all earlier rows and their
//!   answers sent as prior turns; each batch is emitted as soon as its rows are answered.
//!
//! [`ConversationNode`] is the logical node that [`super::rewrite::ModelRelationRule`] puts in
//! place of a conversational model relation, [`ConversationExec`] its physical operator, and
//! [`BedrockQueryPlanner`] the query planner that knows how to plan it.

use std::any::Any;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DFSchemaRef, TableReference};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    InputDistributionRequirements, Partitioning, PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::{StreamExt, TryStreamExt};

use crate::bedrock::request::ChatMessage;
use crate::catalog::model::Mode;
use crate::udf::model_call::ModelCall;

/// A conversational model answering the rows of its input: the input's columns, then the
/// model's target column (qualified by the model's alias).
#[derive(Debug, Clone)]
pub struct ConversationNode {
    call: ModelCall,
    input: LogicalPlan,
    args: Vec<Expr>,
    qualifier: TableReference,
    schema: DFSchemaRef,
}

impl ConversationNode {
    /// The node answering `input`'s rows, whose prompts come from `args` (the model's inputs,
    /// in [`crate::catalog::model::ModelSpec::input_columns`] order).
    ///
    /// # Errors
    /// When the target column's name clashes with a column of the input.
    pub fn try_new(
        call: ModelCall,
        input: LogicalPlan,
        args: Vec<Expr>,
        qualifier: TableReference,
    ) -> Result<Self> {
        let target = Schema::new(vec![Field::new(
            call.spec().target.as_str(),
            DataType::Utf8,
            true,
        )]);
        let target = DFSchema::try_from_qualified_schema(qualifier.clone(), &target)?;
        let schema = Arc::new(input.schema().join(&target)?);
        Ok(Self {
            call,
            input,
            args,
            qualifier,
            schema,
        })
    }

    /// The model and its engine.
    pub fn call(&self) -> &ModelCall {
        &self.call
    }

    fn fingerprint(&self) -> String {
        format!("{:?}@{}", self.call.spec(), self.call.engine().name())
    }
}

impl PartialEq for ConversationNode {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint() == other.fingerprint()
            && self.input == other.input
            && self.args == other.args
            && self.qualifier == other.qualifier
    }
}

impl Eq for ConversationNode {}

impl Hash for ConversationNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.fingerprint().hash(state);
        self.input.hash(state);
        self.args.hash(state);
        self.qualifier.hash(state);
    }
}

impl PartialOrd for ConversationNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (self == other).then_some(Ordering::Equal)
    }
}

/// `Conversation: model=…, model_id=…, mode=…, inputs=[…]`, for EXPLAIN.
fn describe(call: &ModelCall, inputs: &str, f: &mut fmt::Formatter) -> fmt::Result {
    let spec = call.spec();
    write!(
        f,
        "Conversation: model={}, model_id={}, mode={}, inputs=[{inputs}]",
        spec.name,
        spec.model_id,
        spec.mode.name()
    )
}

impl UserDefinedLogicalNodeCore for ConversationNode {
    fn name(&self) -> &str {
        "Conversation"
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
        // A filter on the data's columns chooses the rows of the conversation (as MindsDB's
        // WHERE on the data side does); a filter on the answer must stay above.
        HashSet::from([self.call.spec().target.clone()])
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
                "Conversation takes one input, got {}",
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
}

/// The physical operator of [`ConversationNode`]: one output partition, rows in input order.
#[derive(Debug)]
pub struct ConversationExec {
    call: ModelCall,
    input: Arc<dyn ExecutionPlan>,
    args: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl ConversationExec {
    /// The operator answering `input`'s rows; `args` evaluate to the model's inputs.
    pub fn new(
        call: ModelCall,
        input: Arc<dyn ExecutionPlan>,
        args: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    ) -> Self {
        let emission = match call.spec().mode {
            // The last batch waits for the one answer.
            Mode::Conversational => EmissionType::Both,
            _ => EmissionType::Incremental,
        };
        let boundedness = input.properties().boundedness;
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            emission,
            boundedness,
        );
        Self {
            call,
            input,
            args,
            schema,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for ConversationExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let inputs: Vec<String> = self.args.iter().map(ToString::to_string).collect();
        describe(&self.call, &inputs.join(", "), f)
    }
}

impl ExecutionPlan for ConversationExec {
    fn name(&self) -> &'static str {
        "ConversationExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        // An ordered input is merged in order; any other input is read one partition after
        // another (see `ConversationInputOrder`), never interleaved.
        InputDistributionRequirements::new(vec![if self.input.output_ordering().is_some() {
            Distribution::SinglePartition
        } else {
            Distribution::UnspecifiedDistribution
        }])
    }

    fn required_input_ordering(
        &self,
    ) -> Vec<Option<datafusion::physical_expr::OrderingRequirements>> {
        vec![self.input.output_ordering().cloned().map(Into::into)]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        // It does keep the order, but a sort above must not be pushed below it: that would
        // change the order of the conversation itself.
        vec![false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
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
                "ConversationExec takes one input, got {}",
                children.len()
            )));
        }
        Ok(Arc::new(Self::new(
            self.call.clone(),
            children.swap_remove(0),
            self.args.clone(),
            Arc::clone(&self.schema),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "ConversationExec has one partition, asked for partition {partition}"
            )));
        }
        // The input's partitions one after another, in order.
        let partitions = self.input.output_partitioning().partition_count();
        let child = Arc::clone(&self.input);
        let input_schema = child.schema();
        let batches = futures::stream::iter(0..partitions)
            .map(move |p| child.execute(p, Arc::clone(&context)))
            .try_flatten();
        let input: SendableRecordBatchStream =
            Box::pin(RecordBatchStreamAdapter::new(input_schema, batches));
        let state = State {
            call: self.call.clone(),
            args: self.args.clone(),
            schema: Arc::clone(&self.schema),
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

/// The progress of one execution.
struct State {
    call: ModelCall,
    args: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    input: SendableRecordBatchStream,
    /// `conversational`: the latest batch, held until it is known whether it is the last.
    held: Option<RecordBatch>,
    /// `conversational`: every row's prompt so far.
    prompts: Vec<Option<String>>,
    /// `conversational-full`: the turns so far.
    history: Vec<ChatMessage>,
    done: bool,
}

impl State {
    fn prompts_of(&self, batch: &RecordBatch) -> Result<Vec<Option<String>>> {
        let rows = batch.num_rows();
        let columns: Vec<ArrayRef> = self
            .args
            .iter()
            .map(|arg| arg.evaluate(batch)?.into_array(rows))
            .collect::<Result<_>>()?;
        self.call.render(&columns, rows)
    }

    fn with_answers(
        &self,
        batch: &RecordBatch,
        answers: Vec<Option<String>>,
    ) -> Result<RecordBatch> {
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(StringArray::from(answers)));
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

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
            let prompts = self.prompts_of(&batch)?;
            if self.call.spec().mode == Mode::ConversationalFull {
                let answers = self.call.answer_turns(&mut self.history, &prompts).await?;
                return self.with_answers(&batch, answers).map(Some);
            }
            self.prompts.extend(prompts);
            if let Some(previous) = self.held.replace(batch) {
                let nulls = vec![None; previous.num_rows()];
                return self.with_answers(&previous, nulls).map(Some);
            }
        }
    }

    /// `conversational`: the one request, its answer in the last row of the held batch.
    async fn finish(&mut self) -> Result<Option<RecordBatch>> {
        let Some(last) = self.held.take() else {
            return Ok(None);
        };
        let mut answers = vec![None; last.num_rows()];
        let prompts = std::mem::take(&mut self.prompts);
        if let Some(slot) = answers.last_mut() {
            *slot = self.call.answer_conversation(&prompts).await?;
        }
        self.with_answers(&last, answers).map(Some)
    }
}

/// Keeps the rows of a conversation in the data's order: removes the round-robin
/// repartitioning that DataFusion adds for parallelism under a [`ConversationExec`] (it
/// interleaves batches) and the merge of partitions right under it, which it replaces by reading
/// the partitions one after another. Ordered merges (`SortPreservingMergeExec`) are kept.
#[derive(Debug, Default)]
pub struct ConversationInputOrder;

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

impl PhysicalOptimizerRule for ConversationInputOrder {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            let Some(conversation) = (node.as_ref() as &dyn Any).downcast_ref::<ConversationExec>()
            else {
                return Ok(Transformed::no(node));
            };
            let mut input = Arc::clone(&conversation.input);
            if input.output_ordering().is_none() {
                if let Some(merge) =
                    (input.as_ref() as &dyn Any).downcast_ref::<CoalescePartitionsExec>()
                {
                    input = Arc::clone(merge.input());
                }
                input = without_round_robin(input)?;
            }
            if Arc::ptr_eq(&input, &conversation.input) {
                return Ok(Transformed::no(node));
            }
            let replaced = Arc::new(ConversationExec::new(
                conversation.call.clone(),
                input,
                conversation.args.clone(),
                Arc::clone(&conversation.schema),
            )) as Arc<dyn ExecutionPlan>;
            Ok(Transformed::yes(replaced))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "bedrock_conversation_input_order"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Plans [`ConversationNode`]s as [`ConversationExec`]s.
#[derive(Debug, Default)]
pub struct ConversationPlanner;

#[async_trait]
impl ExtensionPlanner for ConversationPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<ConversationNode>() else {
            return Ok(None);
        };
        let (Some(logical), Some(physical)) = (logical_inputs.first(), physical_inputs.first())
        else {
            return Err(DataFusionError::Internal(
                "Conversation was planned without its input".into(),
            ));
        };
        let args = node
            .args
            .iter()
            .map(|arg| planner.create_physical_expr(arg, logical.schema(), session, planning_ctx))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Arc::new(ConversationExec::new(
            node.call.clone(),
            Arc::clone(physical),
            args,
            Arc::new(node.schema.as_arrow().clone()),
        ))))
    }
}

/// DataFusion's query planner plus the extension's plan nodes.
#[derive(Debug, Default)]
pub struct BedrockQueryPlanner;

#[async_trait]
impl QueryPlanner for BedrockQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let planner =
            DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(ConversationPlanner)]);
        planner.create_physical_plan(logical_plan, session).await
    }
}
