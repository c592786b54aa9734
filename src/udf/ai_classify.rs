//! `ai_classify(model, text, labels [, options])`: the one label a model picks for each row.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ScalarUDF;

use super::ai_complete::{MODEL_EXAMPLE, OPTIONS_EXAMPLE};
use super::ai_filter::resolve_worded;
use super::function::{AiBinder, AiCall, AiFunction, BindArgs};
use super::text_call::{TextCall, TextKind};
use crate::catalog::Catalog;
use crate::inference::text::text_column;

/// The function's name in SQL.
pub const NAME: &str = "ai_classify";

/// The first line of the system prompt; the labels follow on a line `Labels: ["a","b"]` (a
/// JSON array, so labels may hold commas and quotes).
pub const INSTRUCTION: &str =
    "Classify the user's message. Reply with exactly one of the labels below, and nothing else.";

const LABELS_EXAMPLE: &str = "['billing', 'shipping', 'other'] or 'billing, shipping, other'";

/// `ai_classify(model, text, labels [, options]) → Utf8`: the label the model picks for each row's text.
///
/// `model` is resolved like [`ai_complete`](super::ai_complete::AiComplete)'s. `labels` is a
/// constant: an array literal `['billing', 'shipping']` or a comma-separated string
/// `'billing, shipping'` (labels are trimmed; empty and repeated labels are errors). Each
/// row's text is sent as the user message; the system prompt is [`INSTRUCTION`] and a line
/// `Labels: [...]` (a JSON array), before the model's own system prompt.
///
/// The answer is parsed strictly: after trimming whitespace, surrounding quotes and a trailing
/// `.`, it must equal one label exactly, or match exactly one label ignoring case; the label is
/// returned as given. Any other answer fails the query with an error naming the row, the answer
/// and the labels. A NULL text gives NULL and sends no request.
///
/// ```sql
/// SELECT id, ai_classify('amazon.nova-micro-v1:0', message, ['billing', 'shipping', 'other'])
///        AS topic
/// FROM tickets;
/// ```
#[derive(Debug)]
pub struct AiClassify;

impl AiClassify {
    /// The function as registered in a session whose models are in `catalog`.
    pub fn udf(catalog: &Arc<Catalog>) -> ScalarUDF {
        AiFunction::unbound(Arc::new(Self), catalog)
    }
}

/// The error of labels that are not a constant.
pub(crate) fn labels_not_constant() -> String {
    format!(
        "{NAME}: the labels (argument 3) must be a constant such as {LABELS_EXAMPLE}, not a column or an expression"
    )
}

/// What an error says of an answer that is none of `labels`.
pub(crate) fn not_a_label(labels: &[String]) -> String {
    format!(
        "which is not exactly one of the labels {}",
        serde_json::Value::from(labels.to_vec())
    )
}

/// The labels of a constant: a comma-separated string or a list of strings.
///
/// # Errors
/// NULL, a non-text value, an empty or repeated label, or no label at all.
pub fn labels_from_scalar(value: &ScalarValue) -> Result<Vec<String>> {
    let raw: Vec<Option<String>> = match value {
        ScalarValue::List(list) if !list.is_empty() && !list.is_null(0) => {
            list_strings(&list.value(0))?
        }
        ScalarValue::LargeList(list) if !list.is_empty() && !list.is_null(0) => {
            list_strings(&list.value(0))?
        }
        ScalarValue::FixedSizeList(list) if !list.is_empty() && !list.is_null(0) => {
            list_strings(&list.value(0))?
        }
        other => match other.try_as_str() {
            Some(Some(text)) => text.split(',').map(|l| Some(l.to_string())).collect(),
            _ => {
                return Err(DataFusionError::Plan(format!(
                    "{NAME}: the labels (argument 3) must be a constant list of strings or a comma-separated string such as {LABELS_EXAMPLE}, got {other}"
                )));
            }
        },
    };
    let mut labels: Vec<String> = Vec::with_capacity(raw.len());
    for label in raw {
        let label = label.map(|l| l.trim().to_string()).unwrap_or_default();
        if label.is_empty() {
            return Err(DataFusionError::Plan(format!(
                "{NAME}: the labels hold an empty label or NULL: write them as {LABELS_EXAMPLE}"
            )));
        }
        if labels.contains(&label) {
            return Err(DataFusionError::Plan(format!(
                "{NAME}: the label '{label}' is given twice: keep one"
            )));
        }
        labels.push(label);
    }
    if labels.is_empty() {
        return Err(DataFusionError::Plan(format!(
            "{NAME}: there are no labels to choose from: write them as {LABELS_EXAMPLE}"
        )));
    }
    Ok(labels)
}

fn list_strings(values: &ArrayRef) -> Result<Vec<Option<String>>> {
    let strings = text_column(values)?;
    Ok((0..strings.len())
        .map(|i| (!strings.is_null(i)).then(|| strings.value(i).to_string()))
        .collect())
}

/// The system prompt for a set of labels.
#[must_use]
pub fn instruction(labels: &[String]) -> String {
    let json = serde_json::Value::from(labels.to_vec());
    format!("{INSTRUCTION}\nLabels: {json}")
}

/// Reads an answer strictly: the label it names, or `None`.
#[must_use]
pub fn parse_label<'a>(answer: &str, labels: &'a [String]) -> Option<&'a str> {
    let answer = answer.trim().trim_end_matches('.').trim();
    let answer = answer
        .strip_prefix('"')
        .and_then(|a| a.strip_suffix('"'))
        .or_else(|| answer.strip_prefix('\'').and_then(|a| a.strip_suffix('\'')))
        .unwrap_or(answer)
        .trim();
    if let Some(exact) = labels.iter().find(|l| *l == answer) {
        return Some(exact);
    }
    let mut folded = labels.iter().filter(|l| l.eq_ignore_ascii_case(answer));
    match (folded.next(), folded.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

impl AiBinder for AiClassify {
    fn name(&self) -> &str {
        NAME
    }

    fn bind(&self, catalog: &Catalog, args: &BindArgs) -> Result<Arc<dyn AiCall>> {
        args.check_count(NAME, 3..=4, "model, text, labels [, options]")?;
        let model = args.text(NAME, "model", 1, MODEL_EXAMPLE)?;
        let labels = match args.scalar(2) {
            Some(labels) => Some(labels_from_scalar(labels)?),
            None if matches!(
                args.types[2],
                DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
            ) =>
            {
                None
            }
            None => return Err(DataFusionError::Plan(labels_not_constant())),
        };
        let options = args.optional_text(NAME, "options", 4, OPTIONS_EXAMPLE)?;
        let call = resolve_worded(catalog, NAME, &model, options)?;
        Ok(TextCall::bound(NAME, call, TextKind::Classify(labels)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(items: &[&str]) -> Vec<String> {
        items.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn labels_come_from_strings_and_lists() {
        assert_eq!(
            labels_from_scalar(&ScalarValue::from(" billing, shipping ,other")).unwrap(),
            labels(&["billing", "shipping", "other"])
        );
        let list = ScalarValue::new_list_nullable(
            &[ScalarValue::from("a, b"), ScalarValue::from("c")],
            &DataType::Utf8,
        );
        assert_eq!(
            labels_from_scalar(&ScalarValue::List(list)).unwrap(),
            labels(&["a, b", "c"])
        );
        let err = |v: ScalarValue| labels_from_scalar(&v).unwrap_err().strip_backtrace();
        assert_eq!(
            err(ScalarValue::from("a,,b")),
            "Error during planning: ai_classify: the labels hold an empty label or NULL: write them as ['billing', 'shipping', 'other'] or 'billing, shipping, other'"
        );
        assert_eq!(
            err(ScalarValue::from("a, b, a")),
            "Error during planning: ai_classify: the label 'a' is given twice: keep one"
        );
        assert_eq!(
            err(ScalarValue::Int64(Some(3))),
            "Error during planning: ai_classify: the labels (argument 3) must be a constant list of strings or a comma-separated string such as ['billing', 'shipping', 'other'] or 'billing, shipping, other', got 3"
        );
    }

    #[test]
    fn answers_are_read_strictly() {
        let l = labels(&["billing", "Shipping", "other"]);
        let read: Vec<Option<&str>> = [
            "billing",
            " shipping.",
            "\"other\"",
            "BILLING",
            "billing or shipping",
            "It is billing",
            "",
        ]
        .iter()
        .map(|a| parse_label(a, &l))
        .collect();
        assert_eq!(
            read,
            vec![
                Some("billing"),
                Some("Shipping"),
                Some("other"),
                Some("billing"),
                None,
                None,
                None
            ]
        );
        let ambiguous = labels(&["a", "A"]);
        assert_eq!(parse_label("A", &ambiguous), Some("A"));
        assert_eq!(parse_label(" a ", &ambiguous), Some("a"));
        let folded = labels(&["Ab", "aB"]);
        assert_eq!(parse_label("ab", &folded), None);
        assert_eq!(
            instruction(&l),
            "Classify the user's message. Reply with exactly one of the labels below, and nothing else.\nLabels: [\"billing\",\"Shipping\",\"other\"]"
        );
    }
}
