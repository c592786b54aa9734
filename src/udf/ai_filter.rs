//! `ai_filter(model, predicate_text [, options])`: a model's yes/no verdict on each row, as a
//! Boolean.

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ScalarUDF;

use super::ai_complete::{MODEL_EXAMPLE, OPTIONS_EXAMPLE};
use super::function::{AiBinder, AiCall, AiFunction, BindArgs};
use super::options::CompletionOptions;
use super::resolve::resolve_model;
use super::text_call::{TextCall, TextKind};
use crate::catalog::Catalog;
use crate::inference::ModelCall;

/// The function's name in SQL.
pub const NAME: &str = "ai_filter";

/// The system prompt sent before the model's own: it asks for a bare yes or no.
pub const INSTRUCTION: &str = "Answer the question, or judge the statement, in the user's message. Reply with yes or no, and nothing else.";

/// What an error says of an answer that is not a verdict.
pub const NOT_A_VERDICT: &str = "which is neither yes nor no: phrase the text as a yes/no question";

/// `ai_filter(model, predicate_text [, options]) → Boolean`: whether the model answers yes to each row's
/// question or statement.
///
/// `model` is resolved like [`ai_complete`](super::ai_complete::AiComplete)'s. Each row's
/// text is sent as the user message, with the fixed system prompt [`INSTRUCTION`] before the
/// model's own. The answer is parsed strictly: after trimming whitespace and a trailing `.` or
/// `!`, `yes`/`true` (any case) is TRUE and `no`/`false` is FALSE; any other answer fails the
/// query with an error naming the row and the answer (or, with `on_error = 'null'`, gives
/// NULL). `options` are `ai_complete`'s, without `output_schema`. A NULL text gives NULL (so WHERE drops
/// the row) and sends no request.
///
/// ```sql
/// SELECT id, review FROM reviews
/// WHERE ai_filter('amazon.nova-micro-v1:0', 'Is this review about shipping? ' || review);
/// ```
#[derive(Debug)]
pub struct AiFilter;

impl AiFilter {
    /// The function as registered in a session whose models are in `catalog`.
    pub fn udf(catalog: &Arc<Catalog>) -> ScalarUDF {
        AiFunction::unbound(Arc::new(Self), catalog)
    }
}

/// Reads a yes/no answer strictly: `Some(verdict)`, or `None` when it is neither.
#[must_use]
pub fn parse_verdict(answer: &str) -> Option<bool> {
    let word = answer
        .trim()
        .trim_end_matches(['.', '!'])
        .trim()
        .to_lowercase();
    match word.as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

/// The model of a text function that answers in words of its own (a verdict, a label): the
/// options without `output_schema`, and the model's `output_schema` left aside.
///
/// # Errors
/// As [`resolve_model`], and an `output_schema` option.
pub(crate) fn resolve_worded(
    catalog: &Catalog,
    function: &str,
    model: &str,
    options: Option<String>,
) -> Result<ModelCall> {
    let options = options.map_or_else(
        || Ok(CompletionOptions::default()),
        |t| CompletionOptions::parse(function, &t),
    )?;
    if options.output_schema.is_some() {
        return Err(DataFusionError::Plan(format!(
            "{function}: the option output_schema does not apply: {function} answers with its own type; use ai_complete for structured output"
        )));
    }
    let mut model = resolve_model(catalog, function, model, &options)?;
    model.output_schema = None;
    Ok(ModelCall::new(model))
}

impl AiBinder for AiFilter {
    fn name(&self) -> &str {
        NAME
    }

    fn bind(&self, catalog: &Catalog, args: &BindArgs) -> Result<Arc<dyn AiCall>> {
        args.check_count(NAME, 2..=3, "model, predicate_text [, options]")?;
        let model = args.text(NAME, "model", 1, MODEL_EXAMPLE)?;
        let options = args.optional_text(NAME, "options", 3, OPTIONS_EXAMPLE)?;
        let call = resolve_worded(catalog, NAME, &model, options)?;
        Ok(TextCall::bound(NAME, call, TextKind::Filter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_read_strictly() {
        let read: Vec<Option<bool>> = [
            "yes",
            "Yes.",
            " NO ",
            "true",
            "False!",
            "no.",
            "Yes, it is",
            "maybe",
            "",
            "y",
        ]
        .iter()
        .map(|a| parse_verdict(a))
        .collect();
        assert_eq!(
            read,
            vec![
                Some(true),
                Some(true),
                Some(false),
                Some(true),
                Some(false),
                Some(false),
                None,
                None,
                None,
                None
            ]
        );
    }
}
