//! The optimizer rule that plans an AI function over two relations as a [`SemanticJoin`]:
//!
//! ```text
//! Inner Join: Filter: ai_filter(…)           Filter: ai_filter(…)
//!   left                              →        SemanticJoin: candidates=10 per left row, …
//!   right                                        left
//!                                                right
//! ```
//!
//! It matches an inner join without equality keys (a cross join, or `JOIN … ON` a condition
//! that is not `column = expression`) whose condition calls an AI function, or a filter that
//! calls one directly above a cross join. DataFusion's own rules run first, so each side's own
//! conditions are already below the join. The rule runs last among the optimizer's rules, in
//! every pass; its output has no join left for it to match again.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::Transformed;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{Expr, Extension, Filter, Join, JoinType, LogicalPlan};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::node::{Candidates, Pairs, SemanticJoin};
use super::split::split;
use crate::catalog::Catalog;
use crate::plan::options::BedrockOptions;
use crate::udf::ai_embed::AiEmbed;
use crate::udf::ai_filter;
use crate::udf::calls_async;
use crate::udf::function::{AiBinder, AiFunction, BindArgs};

/// What an EXPLAIN says when the rewrite is off.
pub const OFF: &str = "bedrock.semantic_join_embedding_model is not set";

/// What an EXPLAIN says when no `ai_filter` prompt splits into a left and a right part.
pub const NO_SPLIT: &str =
    "no ai_filter prompt of the form '…' || left columns || '…' || right columns";

/// Plans an AI function over two relations as a [`SemanticJoin`] (see the module docs).
#[derive(Debug)]
pub struct SemanticJoinRule {
    catalog: Arc<Catalog>,
}

impl SemanticJoinRule {
    /// The rule of a session whose engines are in `catalog` (the embedding model is called
    /// through its default engine, as `ai_embed`'s is).
    #[must_use]
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }

    /// The pairs to ask about under the session's options.
    fn pairs(&self, predicate: &Expr, join: &Join, options: &BedrockOptions) -> Result<Pairs> {
        let model = options.semantic_join_embedding_model.trim();
        if model.is_empty() {
            return Ok(Pairs::Every(OFF.to_string()));
        }
        let Some(keys) = split_conjunction(predicate)
            .into_iter()
            .find_map(|conjunct| {
                let prompt = ai_filter_prompt(conjunct)?;
                split(prompt, join.left.schema(), join.right.schema())
            })
        else {
            return Ok(Pairs::Every(NO_SPLIT.to_string()));
        };
        let args = BindArgs {
            scalars: vec![Some(ScalarValue::Utf8(Some(model.to_string()))), None],
            types: vec![DataType::Utf8, DataType::Utf8],
        };
        let embedding = AiEmbed.bind(&self.catalog, &args).map_err(|e| {
            let why = match e {
                DataFusionError::Plan(message) => message,
                other => other.strip_backtrace(),
            };
            DataFusionError::Plan(format!(
                "The semantic join's embedding model (SET bedrock.semantic_join_embedding_model = '{model}') does not resolve: {why}; or RESET bedrock.semantic_join_embedding_model to ask about every pair"
            ))
        })?;
        Ok(Pairs::Nearest(Box::new(Candidates {
            left_key: keys.left,
            right_key: keys.right,
            model: model.to_string(),
            embedding,
            k: usize::try_from(options.semantic_join_candidates).unwrap_or(usize::MAX),
        })))
    }

    /// `Filter(predicate)` over the semantic join of `join`'s sides.
    fn rewrite_join(
        &self,
        join: &Join,
        predicate: Expr,
        options: &BedrockOptions,
    ) -> Result<LogicalPlan> {
        let pairs = self.pairs(&predicate, join, options)?;
        let node = SemanticJoin::try_new(
            Arc::unwrap_or_clone(Arc::clone(&join.left)),
            Arc::unwrap_or_clone(Arc::clone(&join.right)),
            pairs,
        )?;
        let pairs = LogicalPlan::Extension(Extension {
            node: Arc::new(node),
        });
        Ok(LogicalPlan::Filter(Filter::try_new(
            predicate,
            Arc::new(pairs),
        )?))
    }
}

/// The text argument of `expr` when it is an `ai_filter(model, text, …)` call.
fn ai_filter_prompt(expr: &Expr) -> Option<&Expr> {
    let Expr::ScalarFunction(ScalarFunction { func, args }) = expr else {
        return None;
    };
    let function = AiFunction::of(func)?;
    (function.name() == ai_filter::NAME).then(|| args.get(1))?
}

/// An inner join without equality keys.
fn is_cross(join: &Join) -> bool {
    join.join_type == JoinType::Inner && join.on.is_empty()
}

impl OptimizerRule for SemanticJoinRule {
    fn name(&self) -> &'static str {
        "bedrock_semantic_join"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let options = || BedrockOptions::of_config(&config.options());
        if let LogicalPlan::Join(join) = &plan
            && is_cross(join)
            && let Some(predicate) = &join.filter
            && calls_async(predicate)
        {
            return self
                .rewrite_join(join, predicate.clone(), &options())
                .map(Transformed::yes);
        }
        if let LogicalPlan::Filter(filter) = &plan
            && calls_async(&filter.predicate)
            && let LogicalPlan::Join(join) = filter.input.as_ref()
            && is_cross(join)
        {
            let predicate =
                conjunction(std::iter::once(filter.predicate.clone()).chain(join.filter.clone()))
                    .unwrap_or_else(|| filter.predicate.clone());
            return self
                .rewrite_join(join, predicate, &options())
                .map(Transformed::yes);
        }
        Ok(Transformed::no(plan))
    }
}
