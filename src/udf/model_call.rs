//! How a model answers rows: prompts rendered from input columns, then one of the three modes
//! (`default`, `conversational`, `conversational-full`) sent through the model's engine.
//!
//! Shared by the predict UDF (per batch) and the conversation plan node (across batches).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};

use crate::bedrock::engine::{Engine, ModelTarget};
use crate::bedrock::request::{ChatMessage, ChatRole, TextRequest};
use crate::bedrock::retry::CallFailure;
use crate::catalog::model::ModelSpec;

/// A model bound to the engine that calls it.
#[derive(Debug, Clone)]
pub struct ModelCall {
    spec: ModelSpec,
    engine: Arc<Engine>,
}

/// A row's input, shortened for error messages.
pub(crate) fn preview(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

impl ModelCall {
    /// `spec` answered through `engine`.
    pub fn new(spec: ModelSpec, engine: Arc<Engine>) -> Self {
        Self { spec, engine }
    }

    /// The model.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The prompts of `rows` rows from the model's input columns (in
    /// [`ModelSpec::input_columns`] order), each cast to text as DataFusion displays it. `None`
    /// where every input is NULL.
    ///
    /// # Errors
    /// A wrong number of columns, or a column that cannot be shown as text.
    pub fn render(&self, columns: &[ArrayRef], rows: usize) -> Result<Vec<Option<String>>> {
        let inputs = self.spec.input_columns();
        if columns.len() != inputs.len() {
            return Err(DataFusionError::Plan(format!(
                "Model '{}' takes {} input(s) ({}), got {}",
                self.spec.name,
                inputs.len(),
                inputs.join(", "),
                columns.len()
            )));
        }
        let texts: Vec<ArrayRef> = columns
            .iter()
            .map(|c| Ok(cast(c, &DataType::Utf8)?))
            .collect::<Result<_>>()?;
        let texts: Vec<&StringArray> = texts
            .iter()
            .map(|c| {
                c.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                    DataFusionError::Internal("a text cast did not produce Utf8".into())
                })
            })
            .collect::<Result<_>>()?;
        Ok((0..rows)
            .map(|row| {
                let values: Vec<Option<&str>> = texts
                    .iter()
                    .map(|c| (!c.is_null(row)).then(|| c.value(row)))
                    .collect();
                self.spec.render(&values)
            })
            .collect())
    }

    fn target(&self) -> ModelTarget {
        ModelTarget {
            model_id: self.spec.model_id.clone(),
            api: self.spec.api,
        }
    }

    fn request(&self, messages: Vec<ChatMessage>) -> TextRequest {
        TextRequest {
            tool: None,
            system: self.spec.system_prompt.clone(),
            messages,
            params: self.spec.params.clone(),
        }
    }

    fn row_error(&self, prompt: &str, failure: &CallFailure) -> DataFusionError {
        DataFusionError::Execution(format!(
            "Model '{}' ({}) failed for the row whose prompt is \"{}\": {failure}",
            self.spec.name,
            self.spec.model_id,
            preview(prompt)
        ))
    }

    /// `default`: one request per distinct prompt, answers aligned to rows.
    ///
    /// # Errors
    /// The first row that failed, with its prompt and the Bedrock error.
    pub async fn answer_each(&self, prompts: &[Option<String>]) -> Result<Vec<Option<String>>> {
        let requests: Vec<Option<TextRequest>> = prompts
            .iter()
            .map(|p| {
                p.as_ref()
                    .map(|p| self.request(vec![ChatMessage::user(p.clone())]))
            })
            .collect();
        let results = self.engine.generate(&self.target(), &requests).await;
        results
            .into_iter()
            .enumerate()
            .map(|(row, result)| match result {
                None => Ok(None),
                Some(Ok(response)) => Ok(Some(response.text)),
                Some(Err(failure)) => {
                    Err(self.row_error(prompts[row].as_deref().unwrap_or_default(), &failure))
                }
            })
            .collect()
    }

    /// `conversational`: every prompt is one block of a single user message, sent as one
    /// request; returns its answer (`None` when every prompt is NULL: nothing is sent).
    ///
    /// # Errors
    /// The Bedrock error of the one request.
    pub async fn answer_conversation(&self, prompts: &[Option<String>]) -> Result<Option<String>> {
        let turns: Vec<String> = prompts.iter().flatten().cloned().collect();
        if turns.is_empty() {
            return Ok(None);
        }
        let message = ChatMessage {
            role: ChatRole::User,
            texts: turns,
        };
        let request = self.request(vec![message]);
        let result = self.engine.generate(&self.target(), &[Some(request)]).await;
        match result.into_iter().next().flatten() {
            Some(Ok(response)) => Ok(Some(response.text)),
            Some(Err(failure)) => Err(self.row_error("(the whole conversation)", &failure)),
            None => Ok(None),
        }
    }

    /// `conversational-full`: every prompt answered in turn, `history` (the earlier prompts
    /// and answers, carried from one call to the next) sent as prior turns.
    ///
    /// # Errors
    /// The first row that failed, with its prompt and the Bedrock error.
    pub async fn answer_turns(
        &self,
        history: &mut Vec<ChatMessage>,
        prompts: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let mut answers = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let Some(prompt) = prompt else {
                answers.push(None);
                continue;
            };
            let mut messages = history.clone();
            messages.push(ChatMessage::user(prompt.clone()));
            let request = self.request(messages);
            let result = self.engine.generate(&self.target(), &[Some(request)]).await;
            match result.into_iter().next().flatten() {
                Some(Ok(response)) => {
                    history.push(ChatMessage::user(prompt.clone()));
                    history.push(ChatMessage::assistant(response.text.clone()));
                    answers.push(Some(response.text));
                }
                Some(Err(failure)) => return Err(self.row_error(prompt, &failure)),
                None => answers.push(None),
            }
        }
        Ok(answers)
    }
}

#[cfg(test)]
mod tests {
    use super::preview;

    #[test]
    fn previews_are_cut_at_80_characters() {
        assert_eq!(preview("short"), "short");
        let long = "x".repeat(100);
        assert_eq!(preview(&long), format!("{}…", "x".repeat(80)));
    }
}
