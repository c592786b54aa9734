//! Query planning: models as relations, rewritten into a plan node that answers the rows of
//! its input ([`model_node::ModelNode`]), and the extension's session options.

pub mod ai_function_exec;
pub mod input_order;
pub mod model_exec;
pub mod model_node;
pub mod model_table;
pub mod options;
pub mod planner;
pub mod rewrite;
