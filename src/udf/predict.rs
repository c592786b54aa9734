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
use crate::bedrock::request::{ChatMessage, TextRequest};
use crate::catalog::model::ModelSpec;

/// `predict_<model>(input, …)`: the model's answer for each row (Utf8), NULL where every
/// input is NULL. Arguments are the model's input columns in
/// [`ModelSpec::input_columns`] order, cast to text as DataFusion displays them.
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
        let requests: Vec<Option<TextRequest>> = prompts
            .iter()
            .map(|p| {
                p.as_ref().map(|prompt| TextRequest {
                    system: self.spec.system_prompt.clone(),
                    messages: vec![ChatMessage::user(prompt.clone())],
                    params: self.spec.params.clone(),
                })
            })
            .collect();
        let target = ModelTarget {
            model_id: self.spec.model_id.clone(),
            api: self.spec.api,
        };
        let results = self.engine.generate(&target, &requests).await;
        let mut answers: Vec<Option<String>> = Vec::with_capacity(rows);
        for (row, result) in results.into_iter().enumerate() {
            match result {
                None => answers.push(None),
                Some(Ok(response)) => answers.push(Some(response.text)),
                Some(Err(failure)) => {
                    let prompt = prompts[row].as_deref().unwrap_or_default();
                    return Err(DataFusionError::Execution(format!(
                        "Model '{}' ({}) failed for the row whose prompt is \"{}\": {failure}",
                        self.spec.name,
                        self.spec.model_id,
                        preview(prompt)
                    )));
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(answers))))
    }
}
