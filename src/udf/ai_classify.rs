//! `ai_classify(model, text, labels)`: the one label a model picks for each row.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use super::completion::{
    Completion, CompletionOptions, plan_error, planning_text, preview, runtime_text, text_rows,
};
use crate::catalog::Catalog;

/// The function's name in SQL.
pub const NAME: &str = "ai_classify";

/// The first line of the system prompt; the labels follow on a line `Labels: ["a","b"]` (a
/// JSON array, so labels may hold commas and quotes).
pub const INSTRUCTION: &str =
    "Classify the user's message. Reply with exactly one of the labels below, and nothing else.";

const MODEL_EXAMPLE: &str =
    "'amazon.nova-micro-v1:0' or the name of a model created with CREATE MODEL";
const LABELS_EXAMPLE: &str = "['billing', 'shipping', 'other'] or 'billing, shipping, other'";

/// `ai_classify(model, text, labels) → Utf8`: the label the model picks for each row's text.
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
pub struct AiClassify {
    catalog: Arc<Catalog>,
    signature: Signature,
}

impl AiClassify {
    /// The function, resolving model names against a session's catalog.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self {
            catalog,
            signature: Signature::any(3, Volatility::Volatile),
        }
    }

    /// The function ready to register with a session.
    pub fn into_scalar_udf(self) -> ScalarUDF {
        AsyncScalarUDF::new(Arc::new(self)).into_scalar_udf()
    }
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
                return Err(plan_error(format!(
                    "{NAME}: the labels (argument 3) must be a constant list of strings or a comma-separated string such as {LABELS_EXAMPLE}, got {other}"
                )));
            }
        },
    };
    let mut labels: Vec<String> = Vec::with_capacity(raw.len());
    for label in raw {
        let label = label.map(|l| l.trim().to_string()).unwrap_or_default();
        if label.is_empty() {
            return Err(plan_error(format!(
                "{NAME}: the labels hold an empty label or NULL: write them as {LABELS_EXAMPLE}"
            )));
        }
        if labels.contains(&label) {
            return Err(plan_error(format!(
                "{NAME}: the label '{label}' is given twice: keep one"
            )));
        }
        labels.push(label);
    }
    if labels.is_empty() {
        return Err(plan_error(format!(
            "{NAME}: there are no labels to choose from: write them as {LABELS_EXAMPLE}"
        )));
    }
    Ok(labels)
}

fn list_strings(values: &dyn Array) -> Result<Vec<Option<String>>> {
    let strings = cast(values, &DataType::Utf8)?;
    let strings = strings
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Internal("a text cast did not produce Utf8".into()))?;
    Ok((0..strings.len())
        .map(|i| (!strings.is_null(i)).then(|| strings.value(i).to_string()))
        .collect())
}

/// The system prompt for a set of labels.
pub fn instruction(labels: &[String]) -> String {
    let json = serde_json::Value::from(labels.to_vec());
    format!("{INSTRUCTION}\nLabels: {json}")
}

/// Reads an answer strictly: the label it names, or `None`.
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

super::completion::bound_to_catalog!(AiClassify);

impl ScalarUDFImpl for AiClassify {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    /// Checks at planning time that the model is a constant that resolves, and the labels
    /// when they are already a literal (an array literal becomes one during optimization).
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if args.scalar_arguments.len() != 3 {
            return Err(plan_error(format!(
                "{NAME} takes 3 arguments (model, text, labels), got {}",
                args.scalar_arguments.len()
            )));
        }
        let model = planning_text(NAME, "model", 1, args.scalar_arguments[0], MODEL_EXAMPLE)?;
        Completion::resolve(&self.catalog, NAME, &model, &CompletionOptions::default())?;
        if let Some(labels) = args.scalar_arguments[2] {
            labels_from_scalar(labels)?;
        } else if !matches!(
            args.arg_fields[2].data_type(),
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
        ) {
            return Err(plan_error(format!(
                "{NAME}: the labels (argument 3) must be a constant such as {LABELS_EXAMPLE}, not a column or an expression"
            )));
        }
        Ok(Arc::new(Field::new(NAME, DataType::Utf8, true)))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(DataFusionError::Internal(format!(
            "{NAME} is asynchronous and runs through AsyncFuncExec"
        )))
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for AiClassify {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.len() != 3 {
            return Err(plan_error(format!(
                "{NAME} takes 3 arguments (model, text, labels), got {}",
                args.args.len()
            )));
        }
        let model = runtime_text(NAME, "model", 1, &args.args[0], MODEL_EXAMPLE)?;
        let ColumnarValue::Scalar(labels) = &args.args[2] else {
            return Err(plan_error(format!(
                "{NAME}: the labels (argument 3) must be a constant such as {LABELS_EXAMPLE}, not a column or an expression"
            )));
        };
        let labels = labels_from_scalar(labels)?;
        let completion =
            Completion::resolve(&self.catalog, NAME, &model, &CompletionOptions::default())?;
        let texts = text_rows(&args.args[1], args.number_rows)?;
        let answers = completion
            .answers(NAME, &texts, Some(&instruction(&labels)))
            .await?;
        let chosen = answers
            .iter()
            .zip(&texts)
            .map(|(answer, text)| match answer {
                None => Ok(None),
                Some(answer) => parse_label(answer, &labels)
                    .map(|l| Some(l.to_string()))
                    .ok_or_else(|| {
                        DataFusionError::Execution(format!(
                            "{NAME}: {} answered \"{}\" for the row whose text is \"{}\", which is not exactly one of the labels {}",
                            completion.label,
                            preview(answer),
                            preview(text.as_deref().unwrap_or_default()),
                            serde_json::Value::from(labels.clone())
                        ))
                    }),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(chosen))))
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
