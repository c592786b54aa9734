//! `ai_filter(model, predicate_text)`: a model's yes/no verdict on each row, as a Boolean.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
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
pub const NAME: &str = "ai_filter";

/// The system prompt sent before the model's own: it asks for a bare yes or no.
pub const INSTRUCTION: &str = "Answer the question, or judge the statement, in the user's message. Reply with yes or no, and nothing else.";

const MODEL_EXAMPLE: &str =
    "'amazon.nova-micro-v1:0' or the name of a model created with CREATE MODEL";

/// `ai_filter(model, predicate_text) → Boolean`: whether the model answers yes to each row's
/// question or statement.
///
/// `model` is resolved like [`ai_complete`](super::ai_complete::AiComplete)'s. Each row's
/// text is sent as the user message, with the fixed system prompt [`INSTRUCTION`] before the
/// model's own. The answer is parsed strictly: after trimming whitespace and a trailing `.` or
/// `!`, `yes`/`true` (any case) is TRUE and `no`/`false` is FALSE; any other answer fails the
/// query with an error naming the row and the answer. A NULL text gives NULL (so WHERE drops
/// the row) and sends no request.
///
/// ```sql
/// SELECT id, review FROM reviews
/// WHERE ai_filter('amazon.nova-micro-v1:0', 'Is this review about shipping? ' || review);
/// ```
#[derive(Debug)]
pub struct AiFilter {
    catalog: Arc<Catalog>,
    signature: Signature,
}

impl AiFilter {
    /// The function, resolving model names against a session's catalog.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self {
            catalog,
            signature: Signature::any(2, Volatility::Volatile),
        }
    }

    /// The function ready to register with a session.
    pub fn into_scalar_udf(self) -> ScalarUDF {
        AsyncScalarUDF::new(Arc::new(self)).into_scalar_udf()
    }
}

/// Reads a yes/no answer strictly: `Some(verdict)`, or `None` when it is neither.
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

super::completion::bound_to_catalog!(AiFilter);

impl ScalarUDFImpl for AiFilter {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    /// Checks at planning time that the model is a constant that resolves.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if args.scalar_arguments.len() != 2 {
            return Err(plan_error(format!(
                "{NAME} takes 2 arguments (model, predicate_text), got {}",
                args.scalar_arguments.len()
            )));
        }
        let model = planning_text(NAME, "model", 1, args.scalar_arguments[0], MODEL_EXAMPLE)?;
        Completion::resolve(&self.catalog, NAME, &model, &CompletionOptions::default())?;
        Ok(Arc::new(Field::new(NAME, DataType::Boolean, true)))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(DataFusionError::Internal(format!(
            "{NAME} is asynchronous and runs through AsyncFuncExec"
        )))
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for AiFilter {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.len() != 2 {
            return Err(plan_error(format!(
                "{NAME} takes 2 arguments (model, predicate_text), got {}",
                args.args.len()
            )));
        }
        let model = runtime_text(NAME, "model", 1, &args.args[0], MODEL_EXAMPLE)?;
        let completion =
            Completion::resolve(&self.catalog, NAME, &model, &CompletionOptions::default())?;
        let texts = text_rows(&args.args[1], args.number_rows)?;
        let answers = completion.answers(NAME, &texts, Some(INSTRUCTION)).await?;
        let verdicts = answers
            .iter()
            .zip(&texts)
            .map(|(answer, text)| match answer {
                None => Ok(None),
                Some(answer) => parse_verdict(answer).map(Some).ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "{NAME}: {} answered \"{}\" for the row whose text is \"{}\", which is neither yes nor no: phrase the text as a yes/no question",
                        completion.label,
                        preview(answer),
                        preview(text.as_deref().unwrap_or_default())
                    ))
                }),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(verdicts))))
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
