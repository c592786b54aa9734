//! Named arguments of a model's table function: `SELECT * FROM my_model(country => 'Sweden',
//! city => 'Oslo')` is the positional call in the order of the model's inputs.
//!
//! DataFusion's SQL planner takes table functions' arguments by position only, so the
//! extension's SQL front rewrites the statement before planning: positional arguments first,
//! then named ones (`=>`, or `=` / `:=` where the dialect reads them), each name an input of the
//! model (ignoring case), each input given once.

use std::ops::ControlFlow;

use datafusion::error::{DataFusionError, Result};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    FunctionArg, FunctionArgExpr, TableFactor, VisitMut, VisitorMut,
};

use crate::bedrock::params::did_you_mean;
use crate::catalog::Catalog;

/// Rewrites the named arguments of every model table function in `statement` to positional
/// ones.
///
/// # Errors
/// A name that is not an input of the model, an input given twice or not at all, or a
/// positional argument after a named one.
pub fn name_model_arguments(statement: &mut DfStatement, catalog: &Catalog) -> Result<()> {
    let DfStatement::Statement(statement) = statement else {
        return Ok(());
    };
    let mut visitor = NamedArguments { catalog };
    match statement.visit(&mut visitor) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct NamedArguments<'a> {
    catalog: &'a Catalog,
}

impl VisitorMut for NamedArguments<'_> {
    type Break = DataFusionError;

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Self::Break> {
        let TableFactor::Table {
            name,
            args: Some(args),
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let named = |a: &FunctionArg| {
            matches!(a, FunctionArg::Named { .. } | FunctionArg::ExprNamed { .. })
        };
        if !args.args.iter().any(named) {
            return ControlFlow::Continue(());
        }
        let Some(ident) = name.0.last().and_then(|part| part.as_ident()) else {
            return ControlFlow::Continue(());
        };
        let model = self
            .catalog
            .model(&ident.value)
            .or_else(|| self.catalog.model(&ident.value.to_lowercase()));
        let Some(model) = model else {
            return ControlFlow::Continue(());
        };
        let inputs = model.spec.input_columns();
        match positional(&model.spec.name, &inputs, std::mem::take(&mut args.args)) {
            Ok(positional) => {
                args.args = positional;
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }
}

/// The arguments in the order of `inputs`.
fn positional(model: &str, inputs: &[String], args: Vec<FunctionArg>) -> Result<Vec<FunctionArg>> {
    let error = |m: String| DataFusionError::Plan(format!("Model '{model}': {m}"));
    let mut slots: Vec<Option<FunctionArgExpr>> = vec![None; inputs.len()];
    let mut seen_named = false;
    let mut next = 0;
    for arg in args {
        let (name, value) = match arg {
            FunctionArg::Unnamed(value) => {
                if seen_named {
                    return Err(error(
                        "a positional argument follows a named one: give the positional ones first"
                            .into(),
                    ));
                }
                (None, value)
            }
            FunctionArg::Named { name, arg, .. } => (Some(name.value), arg),
            FunctionArg::ExprNamed { name, arg, .. } => (Some(name.to_string()), arg),
        };
        let at = match name {
            None => {
                next += 1;
                next - 1
            }
            Some(name) => {
                seen_named = true;
                let names: Vec<&str> = inputs.iter().map(String::as_str).collect();
                inputs
                    .iter()
                    .position(|i| i.eq_ignore_ascii_case(&name))
                    .ok_or_else(|| {
                        let hint = did_you_mean(&name, &names)
                            .unwrap_or_else(|| format!(" — its inputs are: {}", names.join(", ")));
                        error(format!("'{name}' is not one of its inputs{hint}"))
                    })?
            }
        };
        let Some(slot) = slots.get_mut(at) else {
            return Err(error(format!(
                "it takes {} input(s) ({}), got more",
                inputs.len(),
                inputs.join(", ")
            )));
        };
        if slot.is_some() {
            return Err(error(format!("the input '{}' is given twice", inputs[at])));
        }
        *slot = Some(value);
    }
    slots
        .into_iter()
        .zip(inputs)
        .map(|(value, input)| {
            value
                .map(FunctionArg::Unnamed)
                .ok_or_else(|| error(format!("the input '{input}' is missing")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::{Expr, Ident, Value};

    fn text(s: &str) -> FunctionArgExpr {
        FunctionArgExpr::Expr(Expr::value(Value::SingleQuotedString(s.into())))
    }

    fn named(name: &str, value: &str) -> FunctionArg {
        FunctionArg::Named {
            name: Ident::new(name),
            arg: text(value),
            operator: datafusion::sql::sqlparser::ast::FunctionArgOperator::RightArrow,
        }
    }

    #[test]
    fn named_arguments_take_their_inputs_places() {
        let inputs = vec!["city".to_string(), "country".to_string()];
        let order = |args| {
            positional("m", &inputs, args)
                .map(|a| a.iter().map(ToString::to_string).collect::<Vec<_>>())
                .map_err(|e| e.strip_backtrace())
        };
        assert_eq!(
            order(vec![named("COUNTRY", "Sweden"), named("city", "Oslo")]),
            Ok(vec!["'Oslo'".to_string(), "'Sweden'".to_string()])
        );
        assert_eq!(
            order(vec![
                FunctionArg::Unnamed(text("Oslo")),
                named("country", "Sweden")
            ]),
            Ok(vec!["'Oslo'".to_string(), "'Sweden'".to_string()])
        );
        assert_eq!(
            order(vec![named("country", "Sweden"), FunctionArg::Unnamed(text("Oslo"))]),
            Err("Error during planning: Model 'm': a positional argument follows a named one: give the positional ones first".into())
        );
        assert_eq!(
            order(vec![named("contry", "Sweden"), named("city", "Oslo")]),
            Err("Error during planning: Model 'm': 'contry' is not one of its inputs — did you mean 'country'?".into())
        );
        assert_eq!(
            order(vec![named("city", "Oslo"), named("city", "Bergen")]),
            Err("Error during planning: Model 'm': the input 'city' is given twice".into())
        );
        assert_eq!(
            order(vec![named("city", "Oslo")]),
            Err("Error during planning: Model 'm': the input 'country' is missing".into())
        );
    }
}
