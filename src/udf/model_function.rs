//! Every model as a table function: `SELECT * FROM bedrock_default_model('What is the capital of
//! Sweden?')` answers one row of the model's inputs, given positionally in the order of the
//! model's inputs (or by name, `two(country => 'Sweden', city => 'Oslo')`, through the
//! extension's SQL front: [`crate::sql::named_args`]), with the same columns as
//! `SELECT * FROM model WHERE input = '…'`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::catalog::model::Mode;
use crate::inference::{Ask, CreatedModel, RowAnswer};
use crate::plan::model_table::ModelTable;
use crate::plan::options::BedrockOptions;

/// `<model>(input, …)`: a model called as a table function.
#[derive(Debug)]
pub struct ModelFunction {
    model: CreatedModel,
}

impl ModelFunction {
    /// The table function of a created model.
    #[must_use]
    pub fn new(model: CreatedModel) -> Self {
        Self { model }
    }
}

impl TableFunctionImpl for ModelFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let spec = self.model.spec();
        let inputs = spec.input_columns();
        let usage = || {
            let placeholders = inputs
                .iter()
                .map(|i| format!("'<{i}>'"))
                .collect::<Vec<_>>()
                .join(", ");
            format!("SELECT * FROM {}({placeholders})", spec.name)
        };
        if args.exprs().len() != inputs.len() {
            return Err(DataFusionError::Plan(format!(
                "Model '{}' takes {} input(s) ({}), got {}: write {}",
                spec.name,
                inputs.len(),
                inputs.join(", "),
                args.exprs().len(),
                usage()
            )));
        }
        let values = args
            .exprs()
            .iter()
            .zip(&inputs)
            .map(|(expr, input)| match expr {
                Expr::Literal(ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v), _) => {
                    Ok(v.clone())
                }
                Expr::Literal(ScalarValue::Null, _) => Ok(None),
                Expr::Literal(other, _) => Ok(Some(other.to_string())),
                other => Err(DataFusionError::Plan(format!(
                    "Model '{}': input '{input}' must be a literal value, not {other}: write {} (to answer a table's rows, JOIN the model instead)",
                    spec.name,
                    usage()
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(ModelAnswer {
            schema: ModelTable::new(self.model.clone()).schema(),
            inputs: values
                .into_iter()
                .map(|v| Arc::new(StringArray::from(vec![v])) as ArrayRef)
                .collect(),
            model: self.model.clone(),
        }))
    }
}

/// One row of a model's inputs, answered when the table is scanned.
#[derive(Debug)]
struct ModelAnswer {
    model: CreatedModel,
    /// The row's inputs, one single-value column each.
    inputs: Vec<ArrayRef>,
    /// The model relation's columns: the inputs, then the answer.
    schema: SchemaRef,
}

impl ModelAnswer {
    async fn answer(
        &self,
        options: &BedrockOptions,
        stores: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    ) -> Result<RowAnswer> {
        let prompts = self.model.render(&self.inputs, 1)?;
        let budget = Arc::new(options.budget());
        let call_options = options.call_options(&budget).reading(stores);
        let call = self.model.call();
        let answer = match self.model.spec().mode {
            Mode::Default | Mode::ConversationalFull => call
                .answer_each(&prompts, &Ask::default(), &call_options)
                .await?
                .pop(),
            Mode::Conversational => Some(call.answer_conversation(&prompts, &call_options).await?),
        };
        Ok(answer.unwrap_or_default())
    }
}

#[async_trait]
impl TableProvider for ModelAnswer {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let answer = self
            .answer(
                &BedrockOptions::of_config(state.config_options()),
                Arc::clone(state.runtime_env()),
            )
            .await?;
        let mut columns = self.inputs.clone();
        columns.extend(self.model.output_arrays(&[answer])?);
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        super::scan_batch(state, batch, projection, filters, limit).await
    }
}
