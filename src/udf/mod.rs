//! User-defined functions that call Bedrock.
//!
//! - [`function`]: what every AI function is (unbound as registered, bound to its model when a
//!   query is planned); [`text_call`], [`options`], [`resolve`]: what the text functions share;
//! - [`predict`]: `predict_<model>`, a created model as a function.
//! - AI functions, added to a session by [`crate::SessionStateBuilderBedrock::with_bedrock`]:
//!   [`ai_complete`], [`ai_embed`], [`ai_filter`], [`ai_classify`] (async UDFs),
//!   [`cosine_similarity`] (a plain scalar UDF), [`ai_media`]'s `ai_image` and `ai_document`
//!   (plain scalar UDFs that put images and documents in prompts) and the [`bedrock_usage`]
//!   table function.

pub mod aggregates;
pub mod ai_agg;
pub mod ai_classify;
pub mod ai_complete;
pub mod ai_embed;
pub mod ai_filter;
pub mod ai_media;
pub mod ai_rank;
pub mod ai_score;
pub mod bedrock_models;
pub mod bedrock_usage;
pub mod call_spec;
pub mod cosine_similarity;
pub mod function;
pub mod model_function;
pub mod options;
pub mod predict;
pub mod resolve;
pub mod text_call;

use std::sync::Arc;

use datafusion::catalog::TableFunction;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::logical_expr::ScalarUDF;
use datafusion::logical_expr::{Expr, LogicalPlan};

use crate::catalog::Catalog;

/// `ai_complete`, `ai_embed`, `ai_filter`, `ai_classify`, `ai_score`, `cosine_similarity`,
/// `ai_image` and `ai_document`; the AI functions find models and engines in `catalog`.
pub fn scalar_functions(catalog: &Arc<Catalog>) -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ai_complete::AiComplete::udf(catalog)),
        Arc::new(ai_embed::AiEmbed::udf(catalog)),
        Arc::new(ai_filter::AiFilter::udf(catalog)),
        Arc::new(ai_classify::AiClassify::udf(catalog)),
        Arc::new(ai_score::AiScore::udf(catalog)),
        Arc::new(cosine_similarity::CosineSimilarity::udf()),
        Arc::new(ai_media::AiMedia::image()),
        Arc::new(ai_media::AiMedia::document()),
    ]
}

/// The AI aggregates `ai_agg`, `ai_summarize_agg` and `ai_rank`, planned by
/// [`aggregates::PlanAiAggregates`].
pub fn aggregate_functions(
    catalog: &Arc<Catalog>,
) -> Vec<Arc<datafusion::logical_expr::AggregateUDF>> {
    use aggregates::{AggregateKind, AiAggregate};
    [
        AggregateKind::Agg,
        AggregateKind::Summarize,
        AggregateKind::Rank,
    ]
    .into_iter()
    .map(|kind| Arc::new(AiAggregate::udaf(kind, catalog)))
    .collect()
}

/// The extension's table functions: `bedrock_usage()` and `bedrock_models([engine])`.
pub fn table_functions(catalog: &Arc<Catalog>) -> Vec<Arc<TableFunction>> {
    vec![
        bedrock_usage_function(catalog),
        Arc::new(TableFunction::new(
            bedrock_models::NAME.to_string(),
            Arc::new(bedrock_models::BedrockModels::new(Arc::clone(catalog))),
        )),
    ]
}

/// The `bedrock_usage()` table function over the engines of `catalog`.
pub fn bedrock_usage_function(catalog: &Arc<Catalog>) -> Arc<TableFunction> {
    Arc::new(TableFunction::new(
        bedrock_usage::NAME.to_string(),
        Arc::new(bedrock_usage::BedrockUsage::new(Arc::clone(catalog))),
    ))
}

/// Scans one batch a table function computed when its table was scanned.
///
/// # Errors
/// What DataFusion's in-memory table reports.
pub(crate) async fn scan_batch(
    state: &dyn datafusion::catalog::Session,
    batch: datafusion::arrow::record_batch::RecordBatch,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
    use datafusion::catalog::TableProvider;
    let table = datafusion::datasource::MemTable::try_new(batch.schema(), vec![vec![batch]])?;
    table.scan(state, projection, filters, limit).await
}

/// The name of the first async function call in an expression.
fn async_call(expr: &Expr) -> Option<String> {
    let mut found = None;
    // The closure never fails.
    let _ = expr.apply(|e| {
        if let Expr::ScalarFunction(f) = e
            && f.func.as_async().is_some()
        {
            found = Some(f.func.name().to_string());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Whether an expression calls an async function (an AI function or a model's predict
/// function).
pub(crate) fn calls_async(expr: &Expr) -> bool {
    async_call(expr).is_some()
}

/// The first plan node that calls an async function where DataFusion cannot evaluate it (it
/// can in projections, filters, aggregate arguments and equi-join keys), with the function's
/// name.
fn misplaced_async_call(plan: &LogicalPlan) -> Option<((&'static str, &'static str), String)> {
    let mut found = None;
    let _ = plan.apply(|node| {
        let call = match node {
            LogicalPlan::Projection(_) | LogicalPlan::Filter(_) => None,
            // Aggregate arguments are computed below the aggregation; grouping keys are not.
            LogicalPlan::Aggregate(aggregate) => aggregate.group_expr.iter().find_map(async_call),
            // Equi-join keys are computed below the join; a join filter is not.
            LogicalPlan::Join(join) => join.filter.as_ref().and_then(async_call),
            _ => node.expressions().iter().find_map(async_call),
        };
        if let Some(name) = call {
            let place = match node {
                LogicalPlan::Sort(_) => ("ORDER BY", "ORDER BY answer"),
                LogicalPlan::Aggregate(_) => ("GROUP BY", "GROUP BY answer"),
                LogicalPlan::Join(_) => (
                    "a JOIN condition other than column = expression",
                    "JOIN … ON answer < …",
                ),
                LogicalPlan::Window(_) => ("a window function", "… OVER (ORDER BY answer)"),
                _ => ("this part of the query", "ORDER BY answer"),
            };
            found = Some((place, name));
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// An AI function's own planning error, without the name of the analyzer rule that found it
/// (`type_coercion caused by …`); other errors unchanged.
fn without_rule_context(e: DataFusionError) -> DataFusionError {
    const OURS: [&str; 8] = [
        ai_complete::NAME,
        ai_embed::NAME,
        ai_filter::NAME,
        ai_classify::NAME,
        ai_score::NAME,
        ai_agg::NAME,
        ai_agg::SUMMARIZE_NAME,
        ai_rank::NAME,
    ];
    match e {
        DataFusionError::Context(context, inner) => match *inner {
            DataFusionError::Plan(message)
                if OURS.iter().any(|f| {
                    message.starts_with(&format!("{f}:")) || message.starts_with(&format!("{f} "))
                }) =>
            {
                DataFusionError::Plan(message)
            }
            other => DataFusionError::Context(context, Box::new(other)),
        },
        other => other,
    }
}

/// Whether a plan (its subqueries included) calls an async function (an AI function or a
/// model's predict function).
pub(crate) fn has_async_call(plan: &LogicalPlan) -> bool {
    let mut any = false;
    let _ = plan.apply_with_subqueries(|node| {
        any = node.expressions().iter().any(|e| async_call(e).is_some());
        Ok(if any {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    any
}

/// DataFusion evaluates async functions (the AI functions and models' predict functions) only
/// in projections and filters; elsewhere a query would fail at execution with "async functions
/// should not be called directly". This finds such a query at planning time and says how to
/// rewrite it. Plans without async functions are not optimized twice.
///
/// # Errors
/// A plan error naming the function, where it is, and the rewrite.
pub fn check_async_placement(plan: &LogicalPlan, state: &SessionState) -> Result<()> {
    if !has_async_call(plan) {
        return Ok(());
    }
    let optimized = state.optimize(plan).map_err(without_rule_context)?;
    match misplaced_async_call(&optimized) {
        None => Ok(()),
        Some(((place, clause), name)) => Err(DataFusionError::Plan(format!(
            "{name}(…) cannot be evaluated in {place}: DataFusion evaluates AI functions only in SELECT lists, WHERE clauses and aggregate arguments. Compute it in a subquery or CTE and use its alias, e.g. WITH t AS (SELECT *, {name}(…) AS answer FROM …) SELECT … FROM t {clause}"
        ))),
    }
}
