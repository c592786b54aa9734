//! The operator that runs AI functions: DataFusion plans async functions into its own
//! `AsyncFuncExec`; the physical rule [`RunAiFunctions`] puts this operator in its place when an
//! AI function is among them. It evaluates the same expressions on the same (coalesced) batches,
//! and for AI functions it adds what the model relation's operator has: the query's budget
//! (`bedrock.max_requests`, `bedrock.max_cost_usd`), the counters of EXPLAIN ANALYZE
//! (requests, dedup and cache hits, retries, throttles, tokens, failed rows, estimated USD) and,
//! in EXPLAIN, the model each call is bound to. Two batches are answered at a time, so a slow
//! row of one batch does not idle the next.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::async_scalar_function::AsyncFuncExpr;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::async_func::AsyncFuncExec;
use datafusion::physical_plan::coalesce::LimitedBatchCoalescer;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, apply_expression_roots,
};
use futures::{FutureExt, StreamExt, TryStreamExt};

use super::model_exec::ModelExec;
use super::only_child;
use super::options::BedrockOptions;
use super::semantic_join::exec::SemanticJoinExec;
use crate::bedrock::batch::Execution;
use crate::bedrock::budget::Budget;
use crate::bedrock::engine::CallOptions;
use crate::inference::CallMetrics;
use crate::udf::function::{AiCall, AiFunction, output_array};

/// One async expression: an AI function bound to its model, or another async function.
#[derive(Debug, Clone)]
struct Evaluated {
    expr: Arc<AsyncFuncExpr>,
    call: Option<Arc<dyn AiCall>>,
}

impl Evaluated {
    fn of(expr: Arc<AsyncFuncExpr>) -> Self {
        let call = expr
            .func
            .downcast_ref::<ScalarFunctionExpr>()
            .and_then(|f| AiFunction::of(f.fun()))
            .and_then(|f| f.call().cloned());
        Self { expr, call }
    }

    fn function(&self) -> Result<&ScalarFunctionExpr> {
        self.expr
            .func
            .downcast_ref::<ScalarFunctionExpr>()
            .ok_or_else(|| {
                DataFusionError::Internal("an async expression is not a function".into())
            })
    }
}

/// Runs the async functions of a projection or filter, AI functions under the query's budget.
#[derive(Debug)]
pub struct AiFunctionExec {
    exprs: Vec<Evaluated>,
    input: Arc<dyn ExecutionPlan>,
    budget: Arc<Budget>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// Decoded from another process's plan (a cluster's task): counters Ballista can carry.
    portable_metrics: bool,
    /// The session's `bedrock.execution` when planned: with it, whether a function runs in
    /// batch or auto execution, which gathers the whole input first.
    session_execution: Execution,
    /// Batch and auto execution: the answers of every partition, made once per plan (as a
    /// hash join's build side is; a new plan, such as each run of a query, starts empty).
    gathered: Arc<std::sync::Mutex<Option<Gathered>>>,
}

impl AiFunctionExec {
    /// The operator in place of `exec`, when one of its functions is an AI function.
    ///
    /// # Errors
    /// When DataFusion cannot compute the properties of the same expressions over `input`.
    pub(crate) fn replacing(
        exprs: Vec<Arc<AsyncFuncExpr>>,
        input: Arc<dyn ExecutionPlan>,
        budget: Arc<Budget>,
    ) -> Result<Option<Self>> {
        let evaluated: Vec<Evaluated> = exprs.iter().cloned().map(Evaluated::of).collect();
        if evaluated.iter().all(|e| e.call.is_none()) {
            return Ok(None);
        }
        // The same output as DataFusion's operator: its properties are computed by it.
        let same = AsyncFuncExec::try_new(exprs, Arc::clone(&input))?;
        Ok(Some(Self {
            exprs: evaluated,
            input,
            budget,
            properties: Arc::clone(same.properties()),
            metrics: ExecutionPlanMetricsSet::new(),
            portable_metrics: false,
            session_execution: Execution::OnDemand,
            gathered: Arc::default(),
        }))
    }

    /// The same operator under the session's `bedrock.execution` (what EXPLAIN shows; the
    /// session's setting when the query runs is what counts).
    #[must_use]
    pub fn under(mut self, session_execution: Execution) -> Self {
        self.session_execution = session_execution;
        self
    }

    /// The execution its AI functions run in: batch if one of them does, else auto if one
    /// does, else on demand.
    fn execution(&self, session: Execution) -> Execution {
        let mut chosen = Execution::OnDemand;
        for call in self.exprs.iter().filter_map(|e| e.call.as_ref()) {
            match call.execution().unwrap_or(session) {
                Execution::Batch => return Execution::Batch,
                Execution::Auto => chosen = Execution::Auto,
                Execution::OnDemand => {}
            }
        }
        chosen
    }

    /// The same operator, its counters ones that Ballista carries from executors (estimated
    /// USD in millionths of a dollar): for a plan decoded in a cluster's task.
    #[must_use]
    pub fn with_portable_metrics(mut self) -> Self {
        self.portable_metrics = true;
        self
    }

    /// The async expressions it evaluates, in output order.
    #[must_use]
    pub fn async_exprs(&self) -> Vec<Arc<AsyncFuncExpr>> {
        self.exprs.iter().map(|e| Arc::clone(&e.expr)).collect()
    }

    /// The query's budget.
    #[must_use]
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    fn with_input(&self, input: Arc<dyn ExecutionPlan>) -> Result<Self> {
        let exprs: Vec<Arc<AsyncFuncExpr>> =
            self.exprs.iter().map(|e| Arc::clone(&e.expr)).collect();
        let same = AsyncFuncExec::try_new(exprs, Arc::clone(&input))?;
        Ok(Self {
            exprs: self.exprs.clone(),
            input,
            budget: Arc::clone(&self.budget),
            properties: Arc::clone(same.properties()),
            metrics: ExecutionPlanMetricsSet::new(),
            portable_metrics: self.portable_metrics,
            session_execution: self.session_execution,
            gathered: Arc::default(),
        })
    }
}

/// The physical rule that puts an [`AiFunctionExec`] in place of every `AsyncFuncExec` that runs
/// an AI function. The AI functions of a query share the budget of its model relations (the
/// budget of the plan's first `ModelExec` or `SemanticJoinExec`), or get one from the session's `bedrock.*` options.
/// It runs for every physical plan, EXPLAIN's included.
#[derive(Debug, Default)]
pub struct RunAiFunctions;

impl PhysicalOptimizerRule for RunAiFunctions {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut budget = None;
        plan.apply(|node| {
            if let Some(model) = node.downcast_ref::<ModelExec>() {
                budget = Some(Arc::clone(model.budget()));
                return Ok(TreeNodeRecursion::Stop);
            }
            if let Some(join) = node.downcast_ref::<SemanticJoinExec>() {
                budget = Some(Arc::clone(join.budget()));
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let session = BedrockOptions::of_config(config);
        let budget = budget.unwrap_or_else(|| Arc::new(session.budget()));
        plan.transform_up(|node| {
            let Some(exec) = node.downcast_ref::<AsyncFuncExec>() else {
                return Ok(Transformed::no(node));
            };
            #[expect(deprecated)]
            let exprs = exec.async_exprs().to_vec();
            match AiFunctionExec::replacing(exprs, Arc::clone(exec.input()), Arc::clone(&budget))? {
                Some(ours) => Ok(Transformed::yes(
                    Arc::new(ours.under(session.execution)) as Arc<dyn ExecutionPlan>
                )),
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &'static str {
        "bedrock_run_ai_functions"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

impl DisplayAs for AiFunctionExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let calls: Vec<String> = self
            .exprs
            .iter()
            .map(|e| match &e.call {
                Some(call) => format!("{} AS {} [{}]", e.expr.func, e.expr.name(), call.describe()),
                None => e.expr.to_string(),
            })
            .collect();
        let mut division = super::model_exec::budget_division(&self.budget)
            .map(|d| format!(", {d}"))
            .unwrap_or_default();
        let execution = self.execution(self.session_execution);
        if execution.gathers() {
            division = format!(
                ", execution={execution}, input=every partition answered at once{division}"
            );
        }
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "AiFunctionExec: calls=[{}]{division}", calls.join(", "))
            }
            DisplayFormatType::TreeRender => writeln!(f, "calls={}{division}", calls.join(", ")),
        }
    }
}

impl ExecutionPlan for AiFunctionExec {
    fn name(&self) -> &'static str {
        "AiFunctionExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        apply_expression_roots(
            self.exprs
                .iter()
                .map(|e| Arc::clone(&e.expr) as Arc<dyn PhysicalExpr>),
            f,
        )
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(
            self.with_input(only_child("AiFunctionExec", children)?)?,
        ))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let config = Arc::clone(context.session_config().options());
        let session = BedrockOptions::of_config(&config);
        let execution = self.execution(session.execution);
        let batch_size = config.execution.batch_size.get();
        let coalescer = LimitedBatchCoalescer::new(self.input.schema(), batch_size, None);
        let worker = Arc::new(Worker {
            exprs: self.exprs.clone(),
            schema: self.schema(),
            options: session
                .call_options(&self.budget)
                .executed(execution)
                .reading(context.runtime_env()),
            budget: Arc::clone(&self.budget),
            calls: {
                let calls = if self.portable_metrics {
                    CallMetrics::portable(&self.metrics, partition)
                } else {
                    CallMetrics::new(&self.metrics, partition)
                };
                let calls = if execution.gathers() {
                    calls.with_batch(&self.metrics, partition)
                } else {
                    calls
                };
                if self
                    .exprs
                    .iter()
                    .any(|e| e.call.as_ref().is_some_and(|c| c.reduces()))
                {
                    calls.with_reduction(&self.metrics, partition)
                } else {
                    calls
                }
            },
            config,
        });
        if execution.gathers() {
            // Batch and auto execution: every partition's rows are answered at once (one set
            // of jobs for the query), by whichever partition runs first; each partition then
            // gives back its own rows, so the input's partitioning still holds.
            let gathered = {
                let mut slot = self
                    .gathered
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                slot.get_or_insert_with(|| {
                    let (input, context) = (Arc::clone(&self.input), Arc::clone(&context));
                    async move {
                        answer_every_partition(input, context, worker, batch_size)
                            .await
                            .map(Arc::new)
                            .map_err(Arc::new)
                    }
                    .boxed()
                    .shared()
                })
                .clone()
            };
            let stream = futures::stream::once(async move {
                match gathered.await {
                    Ok(partitions) => futures::stream::iter(
                        partitions
                            .get(partition)
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .map(Ok),
                    )
                    .left_stream(),
                    Err(e) => {
                        futures::stream::iter(vec![Err(DataFusionError::Shared(e))]).right_stream()
                    }
                }
            })
            .flatten();
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                self.schema(),
                stream,
            )));
        }
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let batches = coalesced(input, coalescer)
            .map(move |batch| {
                let worker = Arc::clone(&worker);
                async move { worker.evaluate(batch?).await }
            })
            .buffered(2);
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            batches,
        )))
    }
}

/// Every input partition read (concurrently), all their rows answered in one call, and each
/// partition's answered rows given back in batches of `batch_size`, partition by partition.
async fn answer_every_partition(
    input: Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
    worker: Arc<Worker>,
    batch_size: usize,
) -> Result<Vec<Vec<RecordBatch>>> {
    let streams = (0..input.properties().partitioning.partition_count())
        .map(|p| input.execute(p, Arc::clone(&context)))
        .collect::<Result<Vec<_>>>()?;
    let parts: Vec<Vec<RecordBatch>> =
        futures::future::try_join_all(streams.into_iter().map(TryStreamExt::try_collect)).await?;
    let whole = concat_batches(&input.schema(), parts.iter().flatten())?;
    let answered = worker.evaluate(whole).await?;
    let mut offset = 0;
    Ok(parts
        .iter()
        .map(|part| {
            let rows: usize = part.iter().map(RecordBatch::num_rows).sum();
            let own = super::model_exec::in_batches(&answered, offset, rows, batch_size);
            offset += rows;
            own
        })
        .collect())
}

/// The answered rows of every input partition, computed once for all of them.
type Gathered = futures::future::Shared<
    futures::future::BoxFuture<
        'static,
        std::result::Result<Arc<Vec<Vec<RecordBatch>>>, Arc<DataFusionError>>,
    >,
>;

/// The input's batches gathered to `batch_size` rows, as DataFusion's operator does, so that
/// every call sends a full batch's rows at once.
fn coalesced(
    input: SendableRecordBatchStream,
    coalescer: LimitedBatchCoalescer,
) -> impl futures::Stream<Item = Result<RecordBatch>> + Send {
    futures::stream::unfold(
        (input, coalescer, false),
        |(mut input, mut coalescer, mut finished)| async move {
            loop {
                if let Some(batch) = coalescer.next_completed_batch() {
                    return Some((Ok(batch), (input, coalescer, finished)));
                }
                if finished {
                    return None;
                }
                let pushed = match input.next().await {
                    Some(Ok(batch)) => coalescer.push_batch(batch).map(|_| ()),
                    Some(Err(e)) => Err(e),
                    None => {
                        finished = true;
                        coalescer.finish()
                    }
                };
                if let Err(e) = pushed {
                    return Some((Err(e), (input, coalescer, true)));
                }
            }
        },
    )
}

/// What every batch of one partition needs.
struct Worker {
    exprs: Vec<Evaluated>,
    schema: SchemaRef,
    options: CallOptions,
    budget: Arc<Budget>,
    calls: CallMetrics,
    config: Arc<ConfigOptions>,
}

impl Worker {
    /// The batch with one column more per expression.
    async fn evaluate(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        let mut columns = batch.columns().to_vec();
        for e in &self.exprs {
            let column = match &e.call {
                Some(call) => {
                    let args = e
                        .function()?
                        .args()
                        .iter()
                        .map(|a| a.evaluate(&batch))
                        .collect::<Result<Vec<_>>>()?;
                    let answers = call.answer(&args, rows, &self.options).await?;
                    self.calls.record(&answers, Some(&self.budget));
                    output_array(call.as_ref(), &answers)?
                }
                None => e
                    .expr
                    .invoke_with_args(&batch, Arc::clone(&self.config))
                    .await?
                    .to_array(rows)?,
            };
            columns.push(column);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}
