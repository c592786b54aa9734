//! `bedrock_usage()`: what the session's Bedrock calls cost so far, per engine and model.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};

use crate::catalog::Catalog;

/// The function's name in SQL.
pub const NAME: &str = "bedrock_usage";

/// `bedrock_usage()`: one row per engine and model called in this session, sorted by engine
/// and model, as of when the query is planned.
///
/// Columns: `engine`, `model`, `requests` (attempts sent, retries included), `retries`,
/// `throttles`, `failures` (inputs that failed for good), `cache_hits` (inputs answered from
/// the cache or by an identical request in flight), `deduplicated` (inputs that repeated
/// another of their batch), `input_tokens` (uncached), `output_tokens`, `cache_read_tokens` and
/// `cache_write_tokens` (Bedrock's prompt cache), `latency_ms` (total of successful attempts)
/// and `estimated_usd` (from on-demand list prices, cache reads and writes at the model's
/// cache prices; NULL when the price is unknown),
/// then batch inference apart: `batch_jobs`, `batch_records`, `batch_errors`,
/// `batch_input_tokens`, `batch_output_tokens` and `batch_estimated_usd` (at the batch price,
/// half the on-demand price).
///
/// ```sql
/// SELECT engine, model, requests, input_tokens, output_tokens, estimated_usd
/// FROM bedrock_usage();
/// ```
#[derive(Debug)]
pub struct BedrockUsage {
    catalog: Arc<Catalog>,
}

impl BedrockUsage {
    /// The table function over a session's engines.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }

    /// The table's schema.
    #[must_use]
    pub fn schema() -> SchemaRef {
        let count = |name: &str| Field::new(name, DataType::Int64, false);
        Arc::new(Schema::new(vec![
            Field::new("engine", DataType::Utf8, false),
            Field::new("model", DataType::Utf8, false),
            count("requests"),
            count("retries"),
            count("throttles"),
            count("failures"),
            count("cache_hits"),
            count("deduplicated"),
            count("input_tokens"),
            count("output_tokens"),
            count("cache_read_tokens"),
            count("cache_write_tokens"),
            count("latency_ms"),
            Field::new("estimated_usd", DataType::Float64, true),
            count("batch_jobs"),
            count("batch_records"),
            count("batch_errors"),
            count("batch_input_tokens"),
            count("batch_output_tokens"),
            Field::new("batch_estimated_usd", DataType::Float64, true),
        ]))
    }

    /// The current usage as one batch.
    ///
    /// # Errors
    /// Only if Arrow refuses the batch (it does not for this schema).
    pub fn batch(&self) -> Result<RecordBatch> {
        let rows: Vec<(String, crate::bedrock::usage::UsageSnapshot)> = self
            .catalog
            .engines()
            .iter()
            .flat_map(|e| {
                let name = e.name().to_string();
                e.usage().into_iter().map(move |u| (name.clone(), u))
            })
            .collect();
        let count = |f: fn(&crate::bedrock::usage::UsageSnapshot) -> u64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(
                rows.iter()
                    .map(|(_, u)| i64::try_from(f(u)).unwrap_or(i64::MAX)),
            ))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|(e, _)| e))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(_, u)| &u.model),
            )),
            count(|u| u.requests),
            count(|u| u.retries),
            count(|u| u.throttles),
            count(|u| u.failures),
            count(|u| u.cache_hits),
            count(|u| u.deduplicated),
            count(|u| u.input_tokens),
            count(|u| u.output_tokens),
            count(|u| u.cache_read_tokens),
            count(|u| u.cache_write_tokens),
            count(|u| u.latency_ms),
            Arc::new(Float64Array::from(
                rows.iter()
                    .map(|(_, u)| u.estimated_cost_usd)
                    .collect::<Vec<_>>(),
            )),
            count(|u| u.batch_jobs),
            count(|u| u.batch_records),
            count(|u| u.batch_errors),
            count(|u| u.batch_input_tokens),
            count(|u| u.batch_output_tokens),
            Arc::new(Float64Array::from(
                rows.iter()
                    .map(|(_, u)| u.batch_cost_usd)
                    .collect::<Vec<_>>(),
            )),
        ];
        Ok(RecordBatch::try_new(Self::schema(), columns)?)
    }
}

impl TableFunctionImpl for BedrockUsage {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        if !args.exprs().is_empty() {
            return Err(DataFusionError::Plan(format!(
                "{NAME}() takes no arguments, got {}: write SELECT * FROM {NAME}()",
                args.exprs().len()
            )));
        }
        let table = MemTable::try_new(Self::schema(), vec![vec![self.batch()?]])?;
        Ok(Arc::new(table))
    }
}
