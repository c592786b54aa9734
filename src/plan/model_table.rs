//! A model as a relation: its schema is its input columns, its target column (text, or a struct
//! with `output_schema`) and, with `provenance`, `<target>_meta`. It is never scanned:
//! [`super::rewrite::ModelRelationRule`] replaces it by a model node.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::catalog::model::ModelSpec;
use crate::inference::CreatedModel;

/// The relation of a model.
#[derive(Debug)]
pub struct ModelTable {
    call: CreatedModel,
    schema: SchemaRef,
}

impl ModelTable {
    /// The relation of a model, answered by `udf` (its predict UDF) or, in the
    /// conversational modes, by `call` directly.
    #[must_use]
    pub fn new(call: CreatedModel) -> Self {
        let fields: Vec<Field> = call
            .spec()
            .input_columns()
            .into_iter()
            .map(|name| Field::new(name, DataType::Utf8, true))
            .chain(call.output_fields())
            .collect();
        Self {
            schema: Arc::new(Schema::new(fields)),
            call,
        }
    }

    /// The model.
    #[must_use]
    pub fn spec(&self) -> &ModelSpec {
        self.call.spec()
    }

    /// The model and its engine.
    #[must_use]
    pub fn call(&self) -> &CreatedModel {
        &self.call
    }
}

#[async_trait]
impl TableProvider for ModelTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let name = &self.spec().name;
        let inputs: Vec<String> = self
            .spec()
            .input_columns()
            .iter()
            .map(|i| format!("{} = '…'", crate::sql::parser::quote_ident(i)))
            .collect();
        Err(DataFusionError::Plan(format!(
            "Model '{name}' answers rows it is given: join it with data (SELECT * FROM data AS d JOIN {name} AS m) or give its inputs (SELECT * FROM {name} WHERE {})",
            inputs.join(" AND ")
        )))
    }
}
