//! The analyzer rule that turns model relations into [`super::model_node::ModelNode`]s:
//!
//! - `FROM data [AS d] JOIN model [AS m]` (no ON), or `FROM data, model` →
//!   `Projection(data.*, m.<inputs> (the data's columns), m.<target>)` over a `ModelNode`;
//! - `FROM model [AS m] WHERE input = 'literal' AND …` → the same over a one-row relation,
//!   the other conditions kept as a filter on top.
//!
//! A `SELECT *` over a join then lists each input column once: the model's copy of a data
//! column is dropped when the data's own column is selected beside it.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::config::ConfigOptions;
use datafusion::datasource::source_as_provider;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::BinaryExpr;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{
    Expr, Extension, JoinType, LogicalPlan, LogicalPlanBuilder, Operator, Projection,
};
use datafusion::optimizer::AnalyzerRule;

use super::model_node::ModelNode;
use super::model_table::ModelTable;
use crate::catalog::model::ModelSpec;
use crate::inference::CreatedModel;
use crate::sql::parser::quote_ident;

/// Rewrites model relations (see the module docs).
#[derive(Debug, Default)]
pub struct ModelRelationRule;

/// A model relation found in a plan: its spec, UDF and qualifier (alias or name).
struct Found {
    spec: ModelSpec,
    call: CreatedModel,
    qualifier: TableReference,
}

fn model_of(plan: &LogicalPlan) -> Option<Found> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source).ok()?;
            let table = provider.downcast_ref::<ModelTable>()?;
            Some(Found {
                spec: table.spec().clone(),
                call: table.call().clone(),
                qualifier: scan.table_name.clone(),
            })
        }
        LogicalPlan::SubqueryAlias(alias) => model_of(&alias.input).map(|found| Found {
            qualifier: alias.alias.clone(),
            ..found
        }),
        _ => None,
    }
}

/// `exprs` (the data's columns and the model's copies of its inputs) plus the model's output
/// columns, over a [`ModelNode`] answering `input`'s rows from `args`.
fn answer(
    input: Arc<LogicalPlan>,
    mut exprs: Vec<Expr>,
    args: Vec<Expr>,
    found: &Found,
) -> Result<LogicalPlan> {
    let node = ModelNode::try_new(
        found.call.clone(),
        Arc::unwrap_or_clone(input),
        args,
        found.qualifier.clone(),
    )?;
    for field in found.call.output_fields() {
        exprs.push(Expr::Column(Column::new(
            Some(found.qualifier.clone()),
            field.name().clone(),
        )));
    }
    LogicalPlanBuilder::from(LogicalPlan::Extension(Extension {
        node: Arc::new(node),
    }))
    .project(exprs)?
    .build()
}

/// A model's prompts are text: text, numbers, booleans, dates, times and lists render as text;
/// structs, maps and binary values do not, and are refused at planning with the fix (binary
/// values are welcome in `{{image:col}}` and `{{document:col}}`, checked by the caller).
fn check_text_input(model: &str, input: &str, data_type: &DataType) -> Result<()> {
    let fix = match data_type {
        DataType::Struct(_) | DataType::Map(..) | DataType::Union(..) => format!(
            "select a field of it ({input}['field'] AS {input}) in a subquery, or pass it as JSON text"
        ),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => format!(
            "send it as an image or document with {{{{image:{input}}}}} or {{{{document:{input}}}}} in the template, or decode it to text in a subquery (CAST({input} AS VARCHAR) AS {input} for UTF-8 bytes, encode({input}, 'base64') AS {input} otherwise)"
        ),
        _ => return Ok(()),
    };
    Err(DataFusionError::Plan(format!(
        "Model '{model}' renders its input '{input}' as text, and that column is {data_type}: {fix}"
    )))
}

/// `FROM data JOIN model`: one prediction per data row.
fn rewrite_join(data: Arc<LogicalPlan>, found: &Found) -> Result<LogicalPlan> {
    let schema = Arc::clone(data.schema());
    let columns = schema.columns();
    let mut exprs: Vec<Expr> = columns.iter().cloned().map(Expr::Column).collect();
    let mut args = Vec::new();
    for input in found.spec.input_columns() {
        let matches: Vec<&Column> = columns.iter().filter(|c| c.name == input).collect();
        let column = match matches.as_slice() {
            [one] => (*one).clone(),
            [] => {
                let available: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
                return Err(DataFusionError::Plan(format!(
                    "Model '{}' needs the column '{input}' from the data it is joined with, which has: {}. Rename a column (SELECT x AS {} …) or recreate the model with other inputs",
                    found.spec.name,
                    available.join(", "),
                    quote_ident(&input)
                )));
            }
            _ => {
                return Err(DataFusionError::Plan(format!(
                    "Model '{}' needs the column '{input}', and the data it is joined with has several: select one in a subquery",
                    found.spec.name
                )));
            }
        };
        let data_type = schema.qualified_field_from_column(&column)?.1.data_type();
        if found.spec.media_input(&input).is_none()
            || !crate::inference::media_column::is_binary(data_type)
        {
            check_text_input(&found.spec.name, &input, data_type)?;
        }
        args.push(Expr::Column(column.clone()));
        exprs.push(Expr::Column(column).alias_qualified(Some(found.qualifier.clone()), input));
    }
    answer(data, exprs, args, found)
}

/// `FROM model WHERE input = 'value' AND …`: one prediction from the given inputs.
fn rewrite_filter(predicate: Expr, found: &Found) -> Result<LogicalPlan> {
    let inputs = found.spec.input_columns();
    let mut values: HashMap<String, ScalarValue> = HashMap::new();
    let mut rest = Vec::new();
    for condition in split_conjunction_owned(predicate) {
        if let Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) = &condition
        {
            let pair = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => {
                    Some((c.name.clone(), v.clone()))
                }
                _ => None,
            };
            if let Some((name, value)) = pair
                && inputs.contains(&name)
                && !values.contains_key(&name)
            {
                values.insert(name, value);
                continue;
            }
        }
        rest.push(condition);
    }
    let missing: Vec<&String> = inputs.iter().filter(|i| !values.contains_key(*i)).collect();
    if !missing.is_empty() {
        let example: Vec<String> = missing
            .iter()
            .map(|m| format!("{} = '…'", quote_ident(m)))
            .collect();
        return Err(DataFusionError::Plan(format!(
            "Model '{}' needs its input(s) {}: add WHERE {}",
            found.spec.name,
            missing
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            example.join(" AND ")
        )));
    }
    let mut exprs = Vec::new();
    let mut args = Vec::new();
    for input in &inputs {
        let value = Expr::Literal(
            values.remove(input).unwrap_or(ScalarValue::Utf8(None)),
            None,
        );
        args.push(value.clone());
        exprs.push(value.alias_qualified(Some(found.qualifier.clone()), input.clone()));
    }
    // `input = NULL` is never true: no row, and no request.
    let any_null = args
        .iter()
        .any(|a| matches!(a, Expr::Literal(v, _) if v.is_null()));
    let one_row = LogicalPlanBuilder::empty(!any_null).build()?;
    let mut builder = LogicalPlanBuilder::from(answer(Arc::new(one_row), exprs, args, found)?);
    if let Some(rest) = conjunction(rest) {
        builder = builder.filter(rest)?;
    }
    builder.build()
}

/// Drops the model's copy of an input column from a projection that also selects the data's.
fn drop_duplicate_inputs(
    projection: Projection,
    rewritten: &[(TableReference, Vec<String>)],
) -> Result<Transformed<LogicalPlan>> {
    let selected: Vec<Column> = projection
        .expr
        .iter()
        .filter_map(|e| match e {
            Expr::Column(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let is_duplicate = |e: &Expr| match e {
        Expr::Column(c) => rewritten.iter().any(|(qualifier, inputs)| {
            c.relation.as_ref() == Some(qualifier)
                && inputs.contains(&c.name)
                && selected
                    .iter()
                    .any(|other| other.name == c.name && other.relation.as_ref() != Some(qualifier))
        }),
        _ => false,
    };
    if !projection.expr.iter().any(is_duplicate) {
        return Ok(Transformed::no(LogicalPlan::Projection(projection)));
    }
    let exprs: Vec<Expr> = projection
        .expr
        .iter()
        .filter(|e| !is_duplicate(e))
        .cloned()
        .collect();
    let input = Arc::unwrap_or_clone(projection.input);
    Ok(Transformed::yes(
        LogicalPlanBuilder::from(input).project(exprs)?.build()?,
    ))
}

/// `ON true`: a join without a condition, written out.
fn is_true(filter: &Expr) -> bool {
    matches!(filter, Expr::Literal(ScalarValue::Boolean(Some(true)), _))
}

/// A join with a model that the rewrite leaves alone, as an error saying what is not
/// supported and what to write instead.
fn unsupported_model_join(plan: &LogicalPlan) -> Option<DataFusionError> {
    let mut error = None;
    let _ = plan.apply_with_subqueries(|node| {
        let LogicalPlan::Join(join) = node else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let (left, right) = (model_of(&join.left), model_of(&join.right));
        let message = match (&left, &right) {
            (None, None) => return Ok(TreeNodeRecursion::Continue),
            (Some(a), Some(b)) => format!(
                "Model '{}' is joined with model '{}': a model answers the rows of data, not of another model. Join each model with the data (FROM data AS d JOIN {} AS m), in separate queries or CTEs",
                a.spec.name, b.spec.name, a.spec.name
            ),
            (Some(found), None) | (None, Some(found)) if join.join_type != JoinType::Inner => {
                format!(
                    "Model '{}' is in a {} JOIN: a model relation is joined with a plain JOIN (every row of the data gets its answer). Write FROM data AS d JOIN {} AS m",
                    found.spec.name,
                    join.join_type.to_string().to_uppercase(),
                    found.spec.name
                )
            }
            (Some(found), None) | (None, Some(found)) => format!(
                "Model '{}' is joined with a condition (ON …): a model answers every row of the data it is joined with, and its inputs come from the data's columns of the same names. Drop the ON (FROM data AS d JOIN {} AS m) and filter the answers in WHERE",
                found.spec.name, found.spec.name
            ),
        };
        error = Some(DataFusionError::Plan(message));
        Ok(TreeNodeRecursion::Stop)
    });
    error
}

impl AnalyzerRule for ModelRelationRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let mut rewritten: Vec<(TableReference, Vec<String>)> = Vec::new();
        let result = plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::Join(join)
                if join.on.is_empty()
                    && join.filter.as_ref().is_none_or(is_true)
                    && join.join_type == JoinType::Inner =>
            {
                let (data, found) = match (model_of(&join.left), model_of(&join.right)) {
                    (None, Some(found)) => (Arc::clone(&join.left), found),
                    (Some(found), None) => (Arc::clone(&join.right), found),
                    _ => return Ok(Transformed::no(LogicalPlan::Join(join))),
                };
                let plan = rewrite_join(data, &found)?;
                rewritten.push((found.qualifier.clone(), found.spec.input_columns()));
                Ok(Transformed::yes(plan))
            }
            LogicalPlan::Filter(filter) => match model_of(&filter.input) {
                Some(found) => Ok(Transformed::yes(rewrite_filter(filter.predicate, &found)?)),
                None => Ok(Transformed::no(LogicalPlan::Filter(filter))),
            },
            LogicalPlan::Projection(projection) if !rewritten.is_empty() => {
                drop_duplicate_inputs(projection, &rewritten)
            }
            other => Ok(Transformed::no(other)),
        })?;
        if let Some(error) = unsupported_model_join(&result.data) {
            return Err(error);
        }
        Ok(result.data)
    }

    fn name(&self) -> &'static str {
        "bedrock_model_relations"
    }
}
