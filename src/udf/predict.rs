//! The async UDF behind a model relation: one answer per row, computed a batch at a time
//! through the engine's limiter, dedup and cache.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::bedrock::engine::{Engine, ModelTarget};
use crate::bedrock::request::{ChatMessage, ChatRole, TextRequest};
use crate::bedrock::retry::CallFailure;
use crate::catalog::model::{Mode, ModelSpec};

/// `predict_<model>(input, …)`: the model's answer for each row (Utf8), NULL where every
/// input is NULL. Arguments are the model's input columns in
/// [`ModelSpec::input_columns`] order, cast to text as DataFusion displays them.
///
/// Modes: `default` answers each row (one request per distinct prompt); `conversational`
/// sends the rows of a batch as one conversation and puts the answer in its last row;
/// `conversational-full` answers every row with the earlier rows and answers as history.
/// The conversational modes see one batch at a time (`datafusion.execution.batch_size` rows,
/// 8192 by default).
#[derive(Debug)]
pub struct PredictUdf {
    name: String,
    spec: ModelSpec,
    engine: Arc<Engine>,
    signature: Signature,
    fingerprint: String,
}

impl PredictUdf {
    /// The UDF of a model, calling through its engine.
    pub fn new(spec: ModelSpec, engine: Arc<Engine>) -> Self {
        Self {
            name: Self::udf_name(&spec),
            signature: Signature::variadic_any(Volatility::Volatile),
            fingerprint: format!("{spec:?}@{}", engine.name()),
            spec,
            engine,
        }
    }

    /// The UDF's name for a model: `predict_<model>` (dots become underscores).
    pub fn udf_name(spec: &ModelSpec) -> String {
        format!("predict_{}", spec.name.replace('.', "_"))
    }

    /// The UDF ready to register with a session.
    pub fn into_scalar_udf(self) -> ScalarUDF {
        AsyncScalarUDF::new(Arc::new(self)).into_scalar_udf()
    }

    /// The model this UDF answers for.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }
}

impl PartialEq for PredictUdf {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for PredictUdf {}

impl Hash for PredictUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.fingerprint.hash(state);
    }
}

impl ScalarUDFImpl for PredictUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(DataFusionError::Internal(format!(
            "{} is asynchronous and runs through AsyncFuncExec",
            self.name
        )))
    }
}

/// A row's input, shortened for error messages.
fn preview(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

impl PredictUdf {
    fn target(&self) -> ModelTarget {
        ModelTarget {
            model_id: self.spec.model_id.clone(),
            api: self.spec.api,
        }
    }

    fn request(&self, messages: Vec<ChatMessage>) -> TextRequest {
        TextRequest {
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
    async fn answer_each(&self, prompts: &[Option<String>]) -> Result<Vec<Option<String>>> {
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

    /// `conversational`: every row's prompt is one block of a single user message; the one
    /// answer goes to the last row, the others are NULL (MindsDB's semantics).
    async fn answer_conversation(&self, prompts: &[Option<String>]) -> Result<Vec<Option<String>>> {
        let mut answers = vec![None; prompts.len()];
        let turns: Vec<String> = prompts.iter().flatten().cloned().collect();
        if turns.is_empty() {
            return Ok(answers);
        }
        let message = ChatMessage {
            role: ChatRole::User,
            texts: turns,
        };
        let request = self.request(vec![message]);
        let result = self.engine.generate(&self.target(), &[Some(request)]).await;
        match result.into_iter().next().flatten() {
            Some(Ok(response)) => {
                if let Some(last) = answers.last_mut() {
                    *last = Some(response.text);
                }
                Ok(answers)
            }
            Some(Err(failure)) => Err(self.row_error("(the whole conversation)", &failure)),
            None => Ok(answers),
        }
    }

    /// `conversational-full`: every row answered in turn, the earlier rows and their answers
    /// sent as prior turns.
    async fn answer_with_history(&self, prompts: &[Option<String>]) -> Result<Vec<Option<String>>> {
        let mut history: Vec<ChatMessage> = Vec::new();
        let mut answers = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let Some(prompt) = prompt else {
                answers.push(None);
                continue;
            };
            history.push(ChatMessage::user(prompt.clone()));
            let request = self.request(history.clone());
            let result = self.engine.generate(&self.target(), &[Some(request)]).await;
            match result.into_iter().next().flatten() {
                Some(Ok(response)) => {
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

#[async_trait]
impl AsyncScalarUDFImpl for PredictUdf {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let inputs = self.spec.input_columns();
        if args.args.len() != inputs.len() {
            return Err(DataFusionError::Plan(format!(
                "{} takes {} argument(s) ({}), got {}",
                self.name,
                inputs.len(),
                inputs.join(", "),
                args.args.len()
            )));
        }
        let rows = args.number_rows;
        let columns: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| {
                a.to_array(rows)
                    .and_then(|a| Ok(cast(&a, &DataType::Utf8)?))
            })
            .collect::<Result<_>>()?;
        let columns: Vec<&StringArray> = columns
            .iter()
            .map(|c| {
                c.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                    DataFusionError::Internal("a text cast did not produce Utf8".into())
                })
            })
            .collect::<Result<_>>()?;
        let prompts: Vec<Option<String>> = (0..rows)
            .map(|row| {
                let values: Vec<Option<&str>> = columns
                    .iter()
                    .map(|c| (!c.is_null(row)).then(|| c.value(row)))
                    .collect();
                self.spec.render(&values)
            })
            .collect();
        let answers = match self.spec.mode {
            Mode::Default => self.answer_each(&prompts).await?,
            Mode::Conversational => self.answer_conversation(&prompts).await?,
            Mode::ConversationalFull => self.answer_with_history(&prompts).await?,
        };
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(answers))))
    }
}
