//! The bound call of the text AI functions — `ai_complete`, `ai_filter`, `ai_classify`: each
//! row's text is the prompt, sent through the model-call core; what differs is the fixed
//! instruction, the check of each answer and the type of the result.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;

use super::ai_classify::{self, labels_from_scalar, parse_label};
use super::ai_filter::{self, parse_verdict};
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
            TextKind::Classify(_) => DataType::Utf8,
        }
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
        let prompts = text_argument(self.function, args, 1, rows)?;
        match &self.kind {
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
            TextKind::Classify(_) => Ok(Arc::new(StringArray::from(
                Self::texts(answers).collect::<Vec<_>>(),
            ))),
        }
    }
}
