//! `predict_<model>(inputs…)`: a model created with `CREATE MODEL` as an AI function, bound to
//! the model when it is created.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use super::call_spec::CallSpec;
use super::function::{AiCall, AiFunction};
use crate::bedrock::engine::{CallOptions, Engine};
use crate::catalog::model::{Mode, ModelSpec};
use crate::inference::{Ask, CreatedModel, RowAnswer};

/// `predict_<model>(input, …)`: the model's answer for each row (Utf8), NULL where every
/// input is NULL. Arguments are the model's input columns in
/// [`ModelSpec::input_columns`] order, cast to text as DataFusion displays them.
///
/// Model relations (`FROM data JOIN model`) are answered by the model plan node
/// ([`crate::plan::model_node`]), which sees every row; called directly, this function answers
/// conversational models one batch at a time
/// (`datafusion.execution.batch_size` rows): `conversational` sends the rows of a batch as one
/// conversation and puts the answer in its last row, `conversational-full` answers every row
/// with the earlier rows of the batch as history.
#[derive(Debug)]
pub struct PredictCall {
    model: CreatedModel,
}

impl PredictCall {
    /// The function of a model, calling through its engine.
    pub fn udf(spec: ModelSpec, engine: Arc<Engine>) -> ScalarUDF {
        let name = Self::udf_name(&spec);
        let call = Arc::new(Self::new(CreatedModel::new(spec, engine)));
        AiFunction::bound(&name, call)
    }

    /// The call of `model`.
    #[must_use]
    pub fn new(model: CreatedModel) -> Self {
        Self { model }
    }

    /// The function's name for a model: `predict_<model>` (dots become underscores).
    #[must_use]
    pub fn udf_name(spec: &ModelSpec) -> String {
        format!("predict_{}", spec.name.replace('.', "_"))
    }
}

#[async_trait]
impl AiCall for PredictCall {
    fn value_type(&self) -> DataType {
        self.model.call().answer_type()
    }

    fn provenance(&self) -> bool {
        // The model's provenance is its `<target>_meta` column, which only a model relation
        // has.
        false
    }

    fn describe(&self) -> String {
        format!(
            "{}, mode={}",
            self.model.call().model(),
            self.model.spec().mode.name()
        )
    }

    fn fingerprint(&self) -> String {
        self.model.fingerprint()
    }

    fn engine(&self) -> Arc<Engine> {
        Arc::clone(self.model.engine())
    }

    fn execution(&self) -> Option<crate::bedrock::batch::Execution> {
        self.model.spec().execution
    }

    fn spec(&self) -> CallSpec {
        CallSpec::Predict {
            model: self.model.wire(),
        }
    }

    async fn answer(
        &self,
        args: &[ColumnarValue],
        rows: usize,
        options: &CallOptions,
    ) -> Result<Vec<RowAnswer>> {
        let columns: Vec<ArrayRef> = args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let prompts = self.model.render(&columns, rows)?;
        let call = self.model.call();
        match self.model.spec().mode {
            Mode::Default => call.answer_each(&prompts, &Ask::default(), options).await,
            Mode::Conversational => {
                let mut answers = vec![RowAnswer::default(); rows];
                if let Some(last) = answers.last_mut() {
                    *last = call.answer_conversation(&prompts, options).await?;
                }
                Ok(answers)
            }
            Mode::ConversationalFull => {
                call.answer_turns(
                    &mut Vec::new(),
                    &prompts,
                    self.model.spec().max_history_rows,
                    options,
                )
                .await
            }
        }
    }

    fn values(&self, answers: &[RowAnswer]) -> Result<ArrayRef> {
        self.model.call().answer_array(answers)
    }
}
