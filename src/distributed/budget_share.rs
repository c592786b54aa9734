//! How a query's budget is kept on a cluster. Ballista gives tasks no way to share state while
//! they run, so the limits are divided: the scheduler counts the partitions that run model
//! calls (every partition of every model operator and AI-function operator of the query) and
//! each task gets the limits times its partitions over that count, rounded down. The tasks
//! together never pass the limits; a task that reaches its share stops as a whole query would.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

use crate::bedrock::budget::Budget;
use crate::plan::ai_function_exec::AiFunctionExec;
use crate::plan::model_exec::ModelExec;

/// The scheduler's physical rule that divides each budget of a plan over the partitions that
/// call models under it (see the module's documentation). It runs after the extension's other
/// rules; EXPLAIN on a cluster shows the division.
#[derive(Debug, Default)]
pub struct DivideBudget;

impl PhysicalOptimizerRule for DivideBudget {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut partitions: HashMap<*const Budget, (Arc<Budget>, usize)> = HashMap::new();
        plan.apply(|node| {
            let found = if let Some(model) = node.downcast_ref::<ModelExec>() {
                Some((model.budget(), model.calling_partitions()))
            } else {
                node.downcast_ref::<AiFunctionExec>().map(|exec| {
                    (
                        exec.budget(),
                        exec.properties().output_partitioning().partition_count(),
                    )
                })
            };
            if let Some((budget, count)) = found {
                partitions
                    .entry(Arc::as_ptr(budget))
                    .or_insert_with(|| (Arc::clone(budget), 0))
                    .1 += count;
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        for (budget, count) in partitions.into_values() {
            budget.divide_over(count);
        }
        Ok(plan)
    }

    fn name(&self) -> &'static str {
        "bedrock_divide_budget"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
