//! `bedrock_models([engine])`: the foundation models an engine's account and region offer, as
//! the control plane lists them.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, ListBuilder, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::resolve::choose_engine;
use crate::bedrock::engine::{Engine, FoundationModelInfo};
use crate::catalog::Catalog;

/// The function's name in SQL.
pub const NAME: &str = "bedrock_models";

/// `bedrock_models([engine])`: one row per foundation model the engine can reach (the engine
/// named, else the default or only engine), listed by `ListFoundationModels` when the query
/// runs, sorted by model id.
///
/// Columns: `engine`, `model_id`, `name`, `provider`, `input_modalities` and
/// `output_modalities` (lists such as `[TEXT, IMAGE]`), `streaming`, `inference_types`
/// (`ON_DEMAND`, `INFERENCE_PROFILE`, …) and `lifecycle` (`ACTIVE`, `LEGACY`).
///
/// ```sql
/// SELECT model_id FROM bedrock_models() WHERE provider = 'Anthropic';
/// SELECT model_id, output_modalities FROM bedrock_models('bedrock_engine');
/// ```
#[derive(Debug)]
pub struct BedrockModels {
    catalog: Arc<Catalog>,
}

impl BedrockModels {
    /// The table function over a session's engines.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }

    /// The table's schema.
    #[must_use]
    pub fn schema() -> SchemaRef {
        let text = |name: &str| Field::new(name, DataType::Utf8, false);
        let list = |name: &str| {
            Field::new(
                name,
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                false,
            )
        };
        Arc::new(Schema::new(vec![
            text("engine"),
            text("model_id"),
            text("name"),
            text("provider"),
            list("input_modalities"),
            list("output_modalities"),
            Field::new("streaming", DataType::Boolean, false),
            list("inference_types"),
            text("lifecycle"),
        ]))
    }
}

impl TableFunctionImpl for BedrockModels {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let named = match args.exprs() {
            [] => None,
            [Expr::Literal(ScalarValue::Utf8(Some(name)), _)] => Some(name.as_str()),
            _ => {
                return Err(DataFusionError::Plan(format!(
                    "{NAME}() takes at most one argument, an engine's name as a string: write SELECT * FROM {NAME}() or {NAME}('bedrock_engine')"
                )));
            }
        };
        let engine = choose_engine(&self.catalog, NAME, named)?;
        Ok(Arc::new(ModelList { engine }))
    }
}

/// The models of one engine, listed when the table is scanned.
#[derive(Debug)]
struct ModelList {
    engine: Arc<Engine>,
}

/// A list column from each model's strings.
fn list_column(
    models: &[FoundationModelInfo],
    items: fn(&FoundationModelInfo) -> &[String],
) -> ArrayRef {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for model in models {
        for item in items(model) {
            builder.values().append_value(item);
        }
        builder.append(true);
    }
    Arc::new(builder.finish())
}

impl ModelList {
    fn batch(&self, mut models: Vec<FoundationModelInfo>) -> Result<RecordBatch> {
        models.sort_by(|a, b| a.model_id.cmp(&b.model_id));
        let text = |f: fn(&FoundationModelInfo) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(models.iter().map(f)))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                models.iter().map(|_| self.engine.name()),
            )),
            text(|m| &m.model_id),
            text(|m| &m.name),
            text(|m| &m.provider),
            list_column(&models, |m| &m.input_modalities),
            list_column(&models, |m| &m.output_modalities),
            Arc::new(
                models
                    .iter()
                    .map(|m| Some(m.streaming))
                    .collect::<BooleanArray>(),
            ),
            list_column(&models, |m| &m.inference_types),
            text(|m| &m.lifecycle),
        ];
        Ok(RecordBatch::try_new(BedrockModels::schema(), columns)?)
    }
}

#[async_trait]
impl TableProvider for ModelList {
    fn schema(&self) -> SchemaRef {
        BedrockModels::schema()
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
        let models = self
            .engine
            .list_foundation_models()
            .await
            .map_err(|e| DataFusionError::Plan(format!("{NAME}: {e}")))?;
        super::scan_batch(state, self.batch(models)?, projection, filters, limit).await
    }
}
