//! The AI aggregates — `ai_agg`, `ai_summarize_agg`, `ai_rank` — and how a query runs them.
//!
//! DataFusion's aggregates are synchronous, and a model call is not. So each AI aggregate is
//! registered as an aggregate only so that SQL resolves it; the analyzer rule
//! [`PlanAiAggregates`] rewrites every aggregation that calls one into
//!
//! ```text
//! Projection: <group columns>, <other aggregates>, ai_agg(model, __bedrock_ai_agg_0, …) AS "ai_agg(…)"
//!   Aggregate: groupBy=[…], aggr=[array_agg(text) AS __bedrock_ai_agg_0, <other aggregates>]
//! ```
//!
//! so the group's texts are collected by DataFusion's `array_agg` (its `DISTINCT`, `FILTER` and
//! `ORDER BY` kept) and reduced by an AI function in the projection above, which runs through
//! the model-call core like every other AI function (budget, cache, limiter, usage, EXPLAIN).

use std::any::Any;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::functions_aggregate::array_agg::array_agg_udaf;
use datafusion::logical_expr::expr::{AggregateFunction, ScalarFunction};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{
    Accumulator, Aggregate, AggregateUDF, AggregateUDFImpl, Expr, LogicalPlan, Projection,
    Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use super::ai_agg::{self, Reduction};
use super::ai_complete::{MODEL_EXAMPLE, OPTIONS_EXAMPLE};
use super::ai_filter::resolve_worded;
use super::ai_rank::{self, Ranking};
use super::function::{AiBinder, AiCall, AiFunction, BindArgs};
use super::options::{COMPLETION_OPTIONS, option_error, option_pairs, unknown_option};
use super::text_call::{TextCall, TextKind};
use crate::bedrock::context_window::context_tokens;
use crate::catalog::Catalog;

/// Which AI aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateKind {
    /// `ai_agg(model, text, instruction [, options]) → Utf8`.
    Agg,
    /// `ai_summarize_agg(model, text [, options]) → Utf8`.
    Summarize,
    /// `ai_rank(model, text, criterion, k [, options]) → List<Utf8>`.
    Rank,
}

impl AggregateKind {
    /// The function's name in SQL.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Agg => ai_agg::NAME,
            Self::Summarize => ai_agg::SUMMARIZE_NAME,
            Self::Rank => ai_rank::NAME,
        }
    }

    /// Its arguments, as errors name them.
    fn usage(self) -> &'static str {
        match self {
            Self::Agg => "model, text, instruction [, options]",
            Self::Summarize => "model, text [, options]",
            Self::Rank => "model, text, criterion, k [, options]",
        }
    }

    /// How many arguments it takes.
    fn counts(self) -> std::ops::RangeInclusive<usize> {
        match self {
            Self::Agg => 3..=4,
            Self::Summarize => 2..=3,
            Self::Rank => 4..=5,
        }
    }

    /// The type of its answer.
    fn value_type(self) -> DataType {
        match self {
            Self::Agg | Self::Summarize => DataType::Utf8,
            Self::Rank => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        }
    }
}

/// An AI aggregate as registered: resolved by SQL, rewritten by [`PlanAiAggregates`] before it
/// could run.
#[derive(Debug)]
pub struct AiAggregate {
    kind: AggregateKind,
    catalog: Arc<Catalog>,
    signature: Signature,
}

impl AiAggregate {
    /// The aggregate `kind` of a session whose models are in `catalog`.
    #[must_use]
    pub fn udaf(kind: AggregateKind, catalog: &Arc<Catalog>) -> AggregateUDF {
        AggregateUDF::new_from_impl(Self {
            kind,
            catalog: Arc::clone(catalog),
            signature: Signature::variadic_any(Volatility::Volatile),
        })
    }

    /// The AI aggregate behind `udaf`, if it is one.
    fn of(udaf: &AggregateUDF) -> Option<&Self> {
        let inner: &dyn Any = udaf.inner().as_ref();
        inner.downcast_ref::<Self>()
    }
}

impl PartialEq for AiAggregate {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && Arc::ptr_eq(&self.catalog, &other.catalog)
    }
}

impl Eq for AiAggregate {}

impl Hash for AiAggregate {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        Arc::as_ptr(&self.catalog).hash(state);
    }
}

impl AggregateUDFImpl for AiAggregate {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.kind.value_type())
    }

    fn accumulator(&self, _acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Err(DataFusionError::Plan(format!(
            "{} runs as an aggregate of a query in a session with the Bedrock extension; it cannot run here (as a window function, or in a session without the extension's analyzer rule)",
            self.kind.name()
        )))
    }
}

/// The name of the column collecting an AI aggregate's texts.
fn collected_name(kind: AggregateKind, index: usize) -> String {
    format!("__bedrock_{}_{index}", kind.name())
}

/// The analyzer rule that plans AI aggregates (see the module documentation).
#[derive(Debug, Default)]
pub struct PlanAiAggregates;

impl AnalyzerRule for PlanAiAggregates {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::Aggregate(aggregate) if calls_ai_aggregate(&aggregate.aggr_expr) => {
                rewrite(&aggregate).map(Transformed::yes)
            }
            LogicalPlan::Window(window) if calls_ai_aggregate(&window.window_expr) => {
                let name = first_ai_aggregate(&window.window_expr).unwrap_or("ai_agg");
                Err(DataFusionError::Plan(format!(
                    "{name} cannot be a window function: use it with GROUP BY (in a subquery, and join its result back if every row needs it)"
                )))
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &'static str {
        "bedrock_plan_ai_aggregates"
    }
}

/// The AI aggregate an expression calls, if any.
fn first_ai_aggregate(exprs: &[Expr]) -> Option<&'static str> {
    let mut found = None;
    for expr in exprs {
        let _ = expr.apply(|e| {
            match e {
                Expr::AggregateFunction(f) => {
                    if let Some(a) = AiAggregate::of(&f.func) {
                        found = Some(a.kind.name());
                    }
                }
                Expr::WindowFunction(w) => {
                    if let datafusion::logical_expr::WindowFunctionDefinition::AggregateUDF(f) =
                        &w.fun
                        && let Some(a) = AiAggregate::of(f)
                    {
                        found = Some(a.kind.name());
                    }
                }
                _ => {}
            }
            Ok(if found.is_some() {
                datafusion::common::tree_node::TreeNodeRecursion::Stop
            } else {
                datafusion::common::tree_node::TreeNodeRecursion::Continue
            })
        });
        if found.is_some() {
            break;
        }
    }
    found
}

fn calls_ai_aggregate(exprs: &[Expr]) -> bool {
    first_ai_aggregate(exprs).is_some()
}

/// Whether a plan (its subqueries included) calls an AI aggregate.
pub(crate) fn has_ai_aggregate(plan: &LogicalPlan) -> bool {
    let mut any = false;
    let _ = plan.apply_with_subqueries(|node| {
        any = calls_ai_aggregate(&node.expressions());
        Ok(if any {
            datafusion::common::tree_node::TreeNodeRecursion::Stop
        } else {
            datafusion::common::tree_node::TreeNodeRecursion::Continue
        })
    });
    any
}

/// An aggregate expression without its alias, and the alias.
fn unaliased(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => unaliased(&alias.expr),
        other => other,
    }
}

/// The aggregation with its AI aggregates collecting texts, under a projection reducing them.
fn rewrite(aggregate: &Aggregate) -> Result<LogicalPlan> {
    let groups = aggregate.group_expr.len();
    let mut collected = Vec::with_capacity(aggregate.aggr_expr.len());
    // For each aggregate expression: the reduction to put above, if it is an AI aggregate.
    let mut reductions: Vec<Option<Expr>> = Vec::with_capacity(aggregate.aggr_expr.len());
    for (index, expr) in aggregate.aggr_expr.iter().enumerate() {
        let ours = match unaliased(expr) {
            Expr::AggregateFunction(f) => AiAggregate::of(&f.func).map(|a| (a, f)),
            _ => None,
        };
        let Some((ai, function)) = ours else {
            if let Some(name) = first_ai_aggregate(std::slice::from_ref(expr)) {
                return Err(DataFusionError::Plan(format!(
                    "{name} must be a whole aggregate expression, not inside another aggregate"
                )));
            }
            collected.push(expr.clone());
            reductions.push(None);
            continue;
        };
        let (qualifier, field) = aggregate.schema.qualified_field(groups + index);
        let (collecting, reduction) = collect_and_reduce(ai, function, index)?;
        collected.push(collecting);
        reductions.push(Some(
            reduction.alias_qualified(qualifier.cloned(), field.name()),
        ));
    }
    let input = Arc::clone(&aggregate.input);
    let collecting = Aggregate::try_new(input, aggregate.group_expr.clone(), collected)?;
    let column = |i: usize| Expr::Column(Column::from(collecting.schema.qualified_field(i)));
    let mut exprs: Vec<Expr> = (0..groups).map(column).collect();
    for (index, reduction) in reductions.into_iter().enumerate() {
        exprs.push(reduction.unwrap_or_else(|| column(groups + index)));
    }
    Ok(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(LogicalPlan::Aggregate(collecting)),
    )?))
}

/// One AI aggregate call as `array_agg` of its texts (named for the aggregate's `index`) and
/// the AI function reducing that list, its other arguments (constants) carried over.
fn collect_and_reduce(
    ai: &AiAggregate,
    function: &AggregateFunction,
    index: usize,
) -> Result<(Expr, Expr)> {
    let kind = ai.kind;
    let name = kind.name();
    let params = &function.params;
    let count = params.args.len();
    if !kind.counts().contains(&count) {
        BindArgs {
            scalars: vec![None; count],
            types: vec![DataType::Null; count],
        }
        .check_count(name, kind.counts(), kind.usage())?;
    }
    let column = collected_name(kind, index);
    let mut args: Vec<Expr> = Vec::with_capacity(count);
    for (position, arg) in params.args.iter().enumerate() {
        match arg {
            // The texts: the list array_agg collects.
            _ if position == 1 => args.push(Expr::Column(Column::from_name(&column))),
            Expr::Literal(value, _) => args.push(Expr::Literal(value.clone(), None)),
            _ => {
                return Err(DataFusionError::Plan(format!(
                    "{name}: argument {} must be a constant ({}), not a column or an expression",
                    position + 1,
                    kind.usage()
                )));
            }
        }
    }
    let collecting = Expr::AggregateFunction(AggregateFunction::new_udf(
        array_agg_udaf(),
        vec![params.args[1].clone()],
        params.distinct,
        params.filter.clone(),
        params.order_by.clone(),
        None,
    ))
    .alias(&column);
    let reducer = AiFunction::unbound(
        Arc::new(Reducer {
            kind,
            ordered: !params.order_by.is_empty(),
        }),
        &ai.catalog,
    );
    let reduction = Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(reducer), args));
    Ok((collecting, reduction))
}

/// The AI function reducing a group's collected texts: `ai_agg(model, texts, instruction
/// [, options])` and the others', argument 2 being the list `array_agg` collected.
#[derive(Debug)]
struct Reducer {
    kind: AggregateKind,
    ordered: bool,
}

/// The options an AI aggregate reads: `ai_complete`'s without `output_schema` and
/// `provenance`, and for `ai_agg` and `ai_summarize_agg` `context_tokens` in place of
/// `rows_per_request`.
fn aggregate_options(function: &str) -> Vec<&'static str> {
    let mut known: Vec<&'static str> = COMPLETION_OPTIONS
        .iter()
        .copied()
        .filter(|k| *k != "output_schema" && *k != "provenance")
        .filter(|k| function == ai_rank::NAME || *k != "rows_per_request")
        .collect();
    if function != ai_rank::NAME {
        known.push("context_tokens");
    }
    known
}

/// The `context_tokens` option of `ai_agg` taken out of the options, and the others.
fn split_context_tokens(
    function: &str,
    options: Option<String>,
) -> Result<(Option<u32>, Option<String>)> {
    let Some(json) = options else {
        return Ok((None, None));
    };
    let mut context = None;
    let mut rest = serde_json::Map::new();
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap_or(serde_json::Value::Null);
    let serde_json::Value::Object(map) = parsed else {
        // Not an object: the common parser says what is wrong.
        option_pairs(function, &json)?;
        return Ok((None, Some(json)));
    };
    let known = aggregate_options(function);
    for (key, value) in map {
        let lower = key.to_lowercase();
        if !known.contains(&lower.as_str()) && lower != "provenance" && lower != "rows_per_request"
        {
            return Err(unknown_option(function, &key, &known));
        }
        match lower.as_str() {
            "context_tokens" if function == ai_rank::NAME => {
                return Err(DataFusionError::Plan(format!(
                    "{function}: the option context_tokens does not apply: it sizes the requests of ai_agg and ai_summarize_agg"
                )));
            }
            "context_tokens" => {
                let pairs = option_pairs(
                    function,
                    &serde_json::json!({ "context_tokens": value }).to_string(),
                )?;
                let number = pairs
                    .first()
                    .map(|(k, v)| v.as_integer_in(k, 100, 10_000_000))
                    .transpose()
                    .map_err(|e| option_error(function, &e))?;
                context = number.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
            }
            "provenance" => {
                return Err(DataFusionError::Plan(format!(
                    "{function}: the option provenance does not apply to an aggregate: EXPLAIN ANALYZE shows its requests, tokens, cost, chunks and reduce_levels, and bedrock_usage() its totals"
                )));
            }
            "rows_per_request" if function != ai_rank::NAME => {
                return Err(DataFusionError::Plan(format!(
                    "{function}: the option rows_per_request does not apply: {function} packs its rows into requests itself (see context_tokens)"
                )));
            }
            _ => {
                rest.insert(key, value);
            }
        }
    }
    let rest = (!rest.is_empty()).then(|| serde_json::Value::Object(rest).to_string());
    Ok((context, rest))
}

impl AiBinder for Reducer {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn bind(&self, catalog: &Catalog, args: &BindArgs) -> Result<Arc<dyn AiCall>> {
        let name = self.kind.name();
        args.check_count(name, self.kind.counts(), self.kind.usage())?;
        let model = args.text(name, "model", 1, MODEL_EXAMPLE)?;
        let options_at = *self.kind.counts().end();
        let options = args.optional_text(name, "options", options_at, OPTIONS_EXAMPLE)?;
        let kind = match self.kind {
            AggregateKind::Agg | AggregateKind::Summarize => {
                let instruction = match self.kind {
                    AggregateKind::Agg => args.text(
                        name,
                        "instruction",
                        3,
                        "'List the complaints these rows share.'",
                    )?,
                    _ => ai_agg::SUMMARIZE_INSTRUCTION.to_string(),
                };
                let (context, options) = split_context_tokens(name, options)?;
                let call = resolve_worded(catalog, name, &model, options)?;
                let context_tokens =
                    context.unwrap_or_else(|| context_tokens(call.model().model_id()));
                return Ok(TextCall::bound(
                    name,
                    call,
                    TextKind::Aggregate(Reduction {
                        instruction,
                        context_tokens,
                        ordered: self.ordered,
                    }),
                ));
            }
            AggregateKind::Rank => {
                let criterion = args.text(name, "criterion", 3, "'mentions a late delivery'")?;
                let k = match args.scalar(3) {
                    Some(value) => rank_k(value),
                    None => None,
                }
                .ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "{name}: k (argument 4) must be a constant whole number from 1 to 10000, such as 5"
                    ))
                })?;
                TextKind::Rank(Ranking { criterion, k })
            }
        };
        let (_, options) = split_context_tokens(name, options)?;
        let call = resolve_worded(catalog, name, &model, options)?;
        Ok(TextCall::bound(name, call, kind))
    }
}

/// `ai_rank`'s k: a whole number from 1 to 10,000.
fn rank_k(value: &ScalarValue) -> Option<usize> {
    let k = match value {
        ScalarValue::Int8(Some(v)) => i64::from(*v),
        ScalarValue::Int16(Some(v)) => i64::from(*v),
        ScalarValue::Int32(Some(v)) => i64::from(*v),
        ScalarValue::Int64(Some(v)) => *v,
        ScalarValue::UInt8(Some(v)) => i64::from(*v),
        ScalarValue::UInt16(Some(v)) => i64::from(*v),
        ScalarValue::UInt32(Some(v)) => i64::from(*v),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok()?,
        _ => return None,
    };
    usize::try_from(k).ok().filter(|k| (1..=10_000).contains(k))
}
