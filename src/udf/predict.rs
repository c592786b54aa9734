//! The async UDF behind a model relation: one answer per row, computed a batch at a time
//! through the engine's limiter, dedup and cache.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::model_call::{ModelCall, RowAnswer};
use crate::bedrock::engine::CallOptions;
use crate::bedrock::engine::Engine;
use crate::catalog::model::{Mode, ModelSpec};

/// `predict_<model>(input, …)`: the model's answer for each row (Utf8), NULL where every
/// input is NULL. Arguments are the model's input columns in
/// [`ModelSpec::input_columns`] order, cast to text as DataFusion displays them.
///
/// Model relations (`FROM data JOIN model`) call it for `default` models. Conversational
/// models are answered by [`crate::plan::conversation`]'s plan node, which sees every row; called
/// directly, this function answers them one batch at a time
/// (`datafusion.execution.batch_size` rows): `conversational` sends the rows of a batch as one
/// conversation and puts the answer in its last row, `conversational-full` answers every row
/// with the earlier rows of the batch as history.
#[derive(Debug)]
pub struct PredictUdf {
    name: String,
    call: ModelCall,
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
            call: ModelCall::new(spec, engine),
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
        self.call.spec()
    }

    /// The model and its engine.
    pub fn model_call(&self) -> &ModelCall {
        &self.call
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
        Ok(self.call.target_type())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(DataFusionError::Internal(format!(
            "{} is asynchronous and runs through AsyncFuncExec",
            self.name
        )))
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for PredictUdf {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let columns: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let prompts = self.call.render(&columns, rows)?;
        let options = CallOptions::default();
        let answers = match self.call.spec().mode {
            Mode::Default => self.call.answer_each(&prompts, &options).await?,
            Mode::Conversational => {
                let mut answers = vec![RowAnswer::default(); rows];
                if let Some(last) = answers.last_mut() {
                    *last = self.call.answer_conversation(&prompts, &options).await?;
                }
                answers
            }
            Mode::ConversationalFull => {
                self.call
                    .answer_turns(&mut Vec::new(), &prompts, &options)
                    .await?
            }
        };
        Ok(ColumnarValue::Array(self.call.target_array(&answers)?))
    }
}
