//! The physical rule that keeps a conversation's rows in the data's order.

use std::any::Any;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{
    Distribution, ExecutionPlan, ExecutionPlanProperties, Partitioning,
};

use super::model_exec::ModelExec;

/// Keeps the rows of a conversation in the data's order: removes the round-robin
/// repartitioning that DataFusion adds for parallelism under a conversation's [`ModelExec`]
/// (it interleaves batches) and the merge of partitions that DataFusion puts right under it
/// for its one-partition requirement (it interleaves partitions): the operator reads its
/// input's partitions one after another itself. Ordered merges (`SortPreservingMergeExec`)
/// are kept.
///
/// It runs after DataFusion's sanity check, which the merge satisfied. On a Ballista cluster
/// this also keeps the conversation's input in its task: a merge would end a stage there, and
/// the one-partition requirement makes the task read every partition of its input.
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

    fn name(&self) -> &'static str {
        "bedrock_model_input_order"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
