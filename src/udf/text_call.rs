//! The bound call of the text AI functions — `ai_complete`, `ai_filter`, `ai_classify`: each
//! row's text is the prompt, sent through the model-call core; what differs is the fixed
//! instruction, the check of each answer and the type of the result.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, ListBuilder, StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;

use super::ai_agg::{self, Reduction};
use super::ai_classify::{self, labels_from_scalar, parse_label};
use super::ai_filter::{self, parse_verdict};
use super::ai_rank::{self, Ranking};
use super::ai_score::{self, parse_score};
use super::call_spec::CallSpec;
use super::function::{AiCall, text_argument};
use crate::bedrock::engine::CallOptions;
use crate::inference::{Ask, ModelCall, RowAnswer};

/// What a text AI function makes of a model's answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TextKind {
    /// `ai_complete`: the answer as it is (text, or the struct of `output_schema`).
    Complete,
    /// `ai_filter`: yes or no, as a Boolean.
    Filter,
    /// `ai_classify`: one of the labels (known at planning, or read from the constant list
    /// argument at execution when it is an expression such as `['a', 'b']`). Answers are
    /// replaced by the label they name.
    Classify(Option<Vec<String>>),
    /// `ai_score`: a number from 0 to 1, as a Float64.
    Score,
    /// `ai_agg` and `ai_summarize_agg`: each row is a group's texts (a list), reduced to one
    /// answer.
    Aggregate(Reduction),
    /// `ai_rank`: each row is a group's texts (a list); the answer is the best `k`, as a list.
    Rank(Ranking),
}

/// A text AI function bound to its model.
#[derive(Debug)]
pub struct TextCall {
    function: &'static str,
    call: ModelCall,
    kind: TextKind,
}

impl TextCall {
    /// `function`'s call of `call`'s model.
    #[must_use]
    pub fn bound(function: &'static str, call: ModelCall, kind: TextKind) -> Arc<dyn AiCall> {
        Arc::new(Self {
            function,
            call,
            kind,
        })
    }

    /// The labels of `ai_classify`, from the binding or from the call's third argument.
    fn labels(&self, args: &[ColumnarValue]) -> Result<Option<Vec<String>>> {
        match &self.kind {
            TextKind::Classify(Some(labels)) => Ok(Some(labels.clone())),
            TextKind::Classify(None) => match args.get(2) {
                Some(ColumnarValue::Scalar(labels)) => labels_from_scalar(labels).map(Some),
                _ => Err(DataFusionError::Plan(ai_classify::labels_not_constant())),
            },
            _ => Ok(None),
        }
    }

    /// The answers' texts, as the model gave them.
    fn texts(answers: &[RowAnswer]) -> impl Iterator<Item = Option<&str>> {
        answers.iter().map(|a| a.text.as_deref())
    }
}

#[async_trait]
impl AiCall for TextCall {
    fn value_type(&self) -> DataType {
        match self.kind {
            TextKind::Complete => self.call.answer_type(),
            TextKind::Filter => DataType::Boolean,
            TextKind::Classify(_) | TextKind::Aggregate(_) => DataType::Utf8,
            TextKind::Score => DataType::Float64,
            TextKind::Rank(_) => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        }
    }

    fn reduces(&self) -> bool {
        matches!(self.kind, TextKind::Aggregate(_))
    }

    fn provenance(&self) -> bool {
        self.call.model().provenance
    }

    fn describe(&self) -> String {
        match &self.kind {
            TextKind::Classify(Some(labels)) => format!(
                "{}, labels={}",
                self.call.model(),
                serde_json::Value::from(labels.clone())
            ),
            TextKind::Aggregate(r) => format!(
                "{}, instruction={}, context_tokens={}{}",
                self.call.model(),
                serde_json::Value::from(r.instruction.clone()),
                r.context_tokens,
                if r.ordered { ", ordered" } else { "" }
            ),
            TextKind::Rank(r) => format!(
                "{}, criterion={}, k={}",
                self.call.model(),
                serde_json::Value::from(r.criterion.clone()),
                r.k
            ),
            _ => self.call.model().to_string(),
        }
    }

    fn engine(&self) -> Arc<crate::bedrock::engine::Engine> {
        Arc::clone(&self.call.model().engine)
    }

    fn execution(&self) -> Option<crate::bedrock::batch::Execution> {
        self.call.model().execution
    }

    fn spec(&self) -> CallSpec {
        CallSpec::Text {
            function: self.function.to_string(),
            kind: self.kind.clone(),
            model: self.call.model().spec(),
        }
    }

    fn fingerprint(&self) -> String {
        format!(
            "{}|{:?}|{}",
            self.function,
            self.kind,
            self.call.model().fingerprint()
        )
    }

    async fn answer(
        &self,
        args: &[ColumnarValue],
        rows: usize,
        options: &CallOptions,
    ) -> Result<Vec<RowAnswer>> {
        match &self.kind {
            TextKind::Aggregate(reduction) => {
                let groups = list_argument(self.function, args, rows)?;
                return ai_agg::reduce(&self.call, reduction, groups, options).await;
            }
            TextKind::Rank(ranking) => {
                let groups = list_argument(self.function, args, rows)?;
                return ai_rank::rank(&self.call, ranking, groups, options).await;
            }
            _ => {}
        }
        let prompts = text_argument(self.function, args, 1, rows)?;
        match &self.kind {
            TextKind::Score => {
                let criteria = text_argument(self.function, args, 2, rows)?;
                let prompts: Vec<Option<String>> = prompts
                    .iter()
                    .zip(&criteria)
                    .map(|(text, criterion)| {
                        Some(ai_score::prompt(text.as_ref()?, criterion.as_ref()?))
                    })
                    .collect();
                ai_score::score_each(&self.call, self.function, &prompts, options).await
            }
            TextKind::Aggregate(_) | TextKind::Rank(_) => Err(DataFusionError::Internal(format!(
                "{} reads lists of texts",
                self.function
            ))),
            TextKind::Complete => {
                let ask = Ask::by(self.function);
                self.call.answer_each(&prompts, &ask, options).await
            }
            TextKind::Filter => {
                let check = |answer: &str| match parse_verdict(answer) {
                    Some(_) => Ok(()),
                    None => Err(ai_filter::NOT_A_VERDICT.to_string()),
                };
                let ask = Ask {
                    input: "text",
                    instruction: Some(ai_filter::INSTRUCTION),
                    check: Some(&check),
                    ..Ask::by(self.function)
                };
                self.call.answer_each(&prompts, &ask, options).await
            }
            TextKind::Classify(_) => {
                let labels = self.labels(args)?.unwrap_or_default();
                let instruction = ai_classify::instruction(&labels);
                let check = |answer: &str| match parse_label(answer, &labels) {
                    Some(_) => Ok(()),
                    None => Err(ai_classify::not_a_label(&labels)),
                };
                let ask = Ask {
                    input: "text",
                    instruction: Some(&instruction),
                    check: Some(&check),
                    ..Ask::by(self.function)
                };
                let mut answers = self.call.answer_each(&prompts, &ask, options).await?;
                // Each answer becomes the label it names, as the label is written.
                for answer in &mut answers {
                    answer.text = answer
                        .text
                        .take()
                        .and_then(|t| parse_label(&t, &labels).map(str::to_string));
                }
                Ok(answers)
            }
        }
    }

    fn values(&self, answers: &[RowAnswer]) -> Result<ArrayRef> {
        match &self.kind {
            TextKind::Complete => self.call.answer_array(answers),
            TextKind::Filter => Ok(Arc::new(BooleanArray::from(
                Self::texts(answers)
                    .map(|t| t.and_then(parse_verdict))
                    .collect::<Vec<_>>(),
            ))),
            TextKind::Classify(_) | TextKind::Aggregate(_) => Ok(Arc::new(StringArray::from(
                Self::texts(answers).collect::<Vec<_>>(),
            ))),
            TextKind::Score => Ok(Arc::new(Float64Array::from(
                Self::texts(answers)
                    .map(|t| t.and_then(parse_score))
                    .collect::<Vec<_>>(),
            ))),
            TextKind::Rank(_) => {
                let mut list = ListBuilder::new(StringBuilder::new());
                for answer in answers {
                    match &answer.value {
                        Some(serde_json::Value::Array(items)) => {
                            for item in items {
                                list.values().append_option(item.as_str());
                            }
                            list.append(true);
                        }
                        _ => list.append(false),
                    }
                }
                Ok(Arc::new(list.finish()))
            }
        }
    }
}

/// An aggregate's collected texts (argument 2, a list per group) for `rows` groups, NULL
/// entries left out; `None` for a NULL list.
///
/// # Errors
/// An argument that is not a list, or values with no text form.
fn list_argument(
    function: &str,
    args: &[ColumnarValue],
    rows: usize,
) -> Result<Vec<Option<Vec<String>>>> {
    use datafusion::arrow::array::AsArray;
    let Some(value) = args.get(1) else {
        return Err(DataFusionError::Internal(format!(
            "{function} was called without its texts"
        )));
    };
    let array = value.to_array(rows)?;
    let lists: Vec<Option<ArrayRef>> = match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().iter().collect(),
        DataType::LargeList(_) => array.as_list::<i64>().iter().collect(),
        other => {
            return Err(DataFusionError::Internal(format!(
                "{function} expected a list of texts, got {other}"
            )));
        }
    };
    lists
        .into_iter()
        .map(|list| {
            list.map(|values| {
                let texts = crate::inference::text::text_column(&values)?;
                Ok(texts.iter().flatten().map(str::to_string).collect())
            })
            .transpose()
        })
        .collect()
}
