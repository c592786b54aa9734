//! Query planning: models as relations, rewritten into a plan node that answers the rows of
//! its input ([`model_node::ModelNode`]); an AI function over two relations, planned as a
//! [`semantic_join`]; and the extension's session options.

pub mod ai_function_exec;
pub mod input_order;
pub mod model_exec;
pub mod model_node;
pub mod model_table;
pub mod options;
pub mod planner;
pub mod rewrite;
pub mod semantic_join;

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::ExecutionPlan;

/// The one input of an operator that takes one, from `with_new_children`.
///
/// # Errors
/// Any other number of children.
pub(crate) fn only_child(
    operator: &str,
    mut children: Vec<Arc<dyn ExecutionPlan>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    if children.len() == 1 {
        Ok(children.swap_remove(0))
    } else {
        Err(DataFusionError::Internal(format!(
            "{operator} takes one input, got {}",
            children.len()
        )))
    }
}
