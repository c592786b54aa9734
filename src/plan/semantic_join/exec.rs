//! The operator of the semantic join: reads both sides whole, embeds each side's part of the
//! prompt (one embedding per distinct text, through the model-call core), keeps for each left
//! row its nearest right rows, and gives those pairs (or every pair) as rows of both sides.
//!
//! EXPLAIN names the embedding model, the candidates per left row and the key expressions;
//! EXPLAIN ANALYZE counts `left_rows`, `right_rows`, `every_pair` (N × M), `candidate_pairs`,
//! `embedded_texts` (the distinct texts asked for) and the embedding calls' own counters
//! (`requests`, `cache_hits`, tokens, `estimated_cost_usd`, …).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricType, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    apply_expression_roots,
};
use futures::{StreamExt, TryStreamExt};

use super::nearest::{Unit, nearest};
use super::node::{Pairs, describe};
use crate::bedrock::budget::Budget;
use crate::inference::CallMetrics;
use crate::inference::text::text_rows;
use crate::plan::options::BedrockOptions;

/// The key expressions of a nearest-pairs join, evaluated on each side.
#[derive(Debug, Clone)]
pub struct PhysicalKeys {
    /// On the left side's rows.
    pub left: Arc<dyn PhysicalExpr>,
    /// On the right side's rows.
    pub right: Arc<dyn PhysicalExpr>,
}

/// The operator of [`super::node::SemanticJoin`].
#[derive(Debug)]
pub struct SemanticJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    pairs: Pairs,
    keys: Option<PhysicalKeys>,
    schema: SchemaRef,
    budget: Arc<Budget>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl SemanticJoinExec {
    /// The pairs of `left` and `right` chosen by `pairs` (whose keys are `keys` when it keeps
    /// nearest pairs), under the query's `budget`.
    ///
    /// # Errors
    /// Nearest pairs without their keys.
    pub fn try_new(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        pairs: Pairs,
        keys: Option<PhysicalKeys>,
        schema: SchemaRef,
        budget: Arc<Budget>,
    ) -> Result<Self> {
        if matches!(pairs, Pairs::Nearest(_)) && keys.is_none() {
            return Err(DataFusionError::Internal(
                "SemanticJoinExec: nearest pairs need their key expressions".into(),
            ));
        }
        let boundedness = if left.properties().boundedness.is_unbounded()
            || right.properties().boundedness.is_unbounded()
        {
            left.properties().boundedness
        } else {
            Boundedness::Bounded
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            boundedness,
        );
        Ok(Self {
            left,
            right,
            pairs,
            keys,
            schema,
            budget,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The query's budget, shared with the AI functions above.
    #[must_use]
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }
}

impl DisplayAs for SemanticJoinExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys = self
            .keys
            .as_ref()
            .map(|k| (k.left.to_string(), k.right.to_string()));
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "SemanticJoinExec: ")?;
                describe(&self.pairs, keys, f)?;
                if let Pairs::Nearest(c) = &self.pairs {
                    write!(f, ", embedding=[{}]", c.embedding.describe())?;
                }
                Ok(())
            }
            DisplayFormatType::TreeRender => {
                describe(&self.pairs, keys, f)?;
                writeln!(f)
            }
        }
    }
}

/// Every partition of `plan`, read concurrently, as one batch (partitions in order).
async fn whole(plan: Arc<dyn ExecutionPlan>, context: Arc<TaskContext>) -> Result<RecordBatch> {
    let streams = (0..plan.properties().partitioning.partition_count())
        .map(|p| plan.execute(p, Arc::clone(&context)))
        .collect::<Result<Vec<_>>>()?;
    let parts: Vec<Vec<RecordBatch>> =
        futures::future::try_join_all(streams.into_iter().map(TryStreamExt::try_collect)).await?;
    Ok(concat_batches(&plan.schema(), parts.iter().flatten())?)
}

/// The counters of EXPLAIN ANALYZE.
struct PairMetrics {
    left_rows: Count,
    right_rows: Count,
    every_pair: Count,
    candidate_pairs: Count,
    embedded_texts: Count,
}

impl PairMetrics {
    fn new(set: &ExecutionPlanMetricsSet) -> Self {
        let count = |name: &'static str| {
            MetricBuilder::new(set)
                .with_type(MetricType::Summary)
                .counter(name, 0)
        };
        Self {
            left_rows: count("left_rows"),
            right_rows: count("right_rows"),
            every_pair: count("every_pair"),
            candidate_pairs: count("candidate_pairs"),
            embedded_texts: count("embedded_texts"),
        }
    }
}

/// What the computation of the pairs needs.
struct Work {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    pairs: Pairs,
    keys: Option<PhysicalKeys>,
    schema: SchemaRef,
    budget: Arc<Budget>,
    options: BedrockOptions,
    counters: PairMetrics,
    calls: CallMetrics,
    batch_size: usize,
}

impl Work {
    /// Each left row's candidates (right row indices), nearest first; `None`: every pair.
    async fn nearest(
        &self,
        left: &RecordBatch,
        right: &RecordBatch,
    ) -> Result<Option<Vec<Vec<usize>>>> {
        let (Pairs::Nearest(c), Some(keys)) = (&self.pairs, &self.keys) else {
            return Ok(None);
        };
        let mut texts = text_rows(&keys.left.evaluate(left)?, left.num_rows())?;
        texts.extend(text_rows(&keys.right.evaluate(right)?, right.num_rows())?);
        let distinct: HashSet<&str> = texts.iter().flatten().map(String::as_str).collect();
        self.counters.embedded_texts.add(distinct.len());
        let rows = texts.len();
        let args = [
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(c.model.clone()))),
            ColumnarValue::Array(Arc::new(StringArray::from(texts)) as ArrayRef),
        ];
        let options = self.options.call_options(&self.budget);
        let answers = c.embedding.answer(&args, rows, &options).await?;
        self.calls.record(&answers, Some(&self.budget));
        let mut units: Vec<Option<Unit>> = answers
            .iter()
            .map(|a| a.vector.as_deref().and_then(|v| Unit::of(v)))
            .collect();
        let right_units = units.split_off(left.num_rows().min(units.len()));
        Ok(Some(nearest(&units, &right_units, c.k)))
    }

    /// The pairs as batches of the rows of both sides, left row by left row.
    async fn run(self, context: Arc<TaskContext>) -> Result<Vec<RecordBatch>> {
        let (left, right) = futures::try_join!(
            whole(Arc::clone(&self.left), Arc::clone(&context)),
            whole(Arc::clone(&self.right), context)
        )?;
        let (n, m) = (left.num_rows(), right.num_rows());
        self.counters.left_rows.add(n);
        self.counters.right_rows.add(m);
        self.counters.every_pair.add(n.saturating_mul(m));
        if n == 0 || m == 0 {
            return Ok(Vec::new());
        }
        let candidates = self.nearest(&left, &right).await?;
        let total = candidates
            .as_ref()
            .map_or(n.saturating_mul(m), |c| c.iter().map(Vec::len).sum());
        self.counters.candidate_pairs.add(total);
        let index = |i: usize| {
            u32::try_from(i).map_err(|_| {
                DataFusionError::Execution(format!(
                    "SemanticJoin: a side has more than {} rows",
                    u32::MAX
                ))
            })
        };
        let mut pairs: Box<dyn Iterator<Item = (usize, usize)> + Send> = match candidates {
            Some(candidates) => Box::new(
                candidates
                    .into_iter()
                    .enumerate()
                    .flat_map(|(i, js)| js.into_iter().map(move |j| (i, j))),
            ),
            None => Box::new((0..n).flat_map(move |i| (0..m).map(move |j| (i, j)))),
        };
        let mut batches = Vec::new();
        loop {
            let chunk: Vec<(usize, usize)> = pairs.by_ref().take(self.batch_size).collect();
            if chunk.is_empty() {
                break;
            }
            let li = UInt32Array::from(
                chunk
                    .iter()
                    .map(|(i, _)| index(*i))
                    .collect::<Result<Vec<_>>>()?,
            );
            let ri = UInt32Array::from(
                chunk
                    .iter()
                    .map(|(_, j)| index(*j))
                    .collect::<Result<Vec<_>>>()?,
            );
            let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
            for column in left.columns() {
                columns.push(take(column, &li, None)?);
            }
            for column in right.columns() {
                columns.push(take(column, &ri, None)?);
            }
            batches.push(RecordBatch::try_new(Arc::clone(&self.schema), columns)?);
        }
        Ok(batches)
    }
}

impl ExecutionPlan for SemanticJoinExec {
    fn name(&self) -> &'static str {
        "SemanticJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.left, &self.right]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        apply_expression_roots(
            self.keys
                .iter()
                .flat_map(|k| [Arc::clone(&k.left), Arc::clone(&k.right)]),
            f,
        )
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [left, right]: [Arc<dyn ExecutionPlan>; 2] =
            children.try_into().map_err(|c: Vec<_>| {
                DataFusionError::Internal(format!(
                    "SemanticJoinExec takes two inputs, got {}",
                    c.len()
                ))
            })?;
        Ok(Arc::new(Self::try_new(
            left,
            right,
            self.pairs.clone(),
            self.keys.clone(),
            Arc::clone(&self.schema),
            Arc::clone(&self.budget),
        )?))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "SemanticJoinExec has one partition, asked for partition {partition}"
            )));
        }
        let work = Work {
            left: Arc::clone(&self.left),
            right: Arc::clone(&self.right),
            pairs: self.pairs.clone(),
            keys: self.keys.clone(),
            schema: Arc::clone(&self.schema),
            budget: Arc::clone(&self.budget),
            options: BedrockOptions::of_config(context.session_config().options()),
            counters: PairMetrics::new(&self.metrics),
            calls: CallMetrics::new(&self.metrics, 0),
            batch_size: context
                .session_config()
                .options()
                .execution
                .batch_size
                .get(),
        };
        let stream = futures::stream::once(work.run(context))
            .map(|result| match result {
                Ok(batches) => futures::stream::iter(batches.into_iter().map(Ok)).left_stream(),
                Err(e) => futures::stream::iter(vec![Err(e)]).right_stream(),
            })
            .flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        )))
    }
}
