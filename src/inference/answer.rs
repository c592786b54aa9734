//! One row's answer and how it was obtained (its provenance), the totals EXPLAIN ANALYZE shows,
//! and the Arrow columns they become: a model's `<target>_meta` column, or an AI function's
//! `{value, meta}` struct.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, StringArray, StructArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::error::Result;

/// One row's answer, before it becomes Arrow values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowAnswer {
    /// The text answer (models without `output_schema`).
    pub text: Option<String>,
    /// The structured answer, validated (models with `output_schema`).
    pub value: Option<serde_json::Value>,
    /// The embedding vector (`ai_embed`).
    pub vector: Option<Arc<Vec<f32>>>,
    /// How it was obtained; `None` when no call concerned the row.
    pub meta: Option<RowMeta>,
}

/// How one row's answer was obtained: the `<target>_meta` column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowMeta {
    /// The Bedrock model id.
    pub model_id: String,
    /// Input tokens billed (0 for a cached or repeated answer).
    pub input_tokens: u64,
    /// Output tokens billed (0 for a cached or repeated answer).
    pub output_tokens: u64,
    /// Milliseconds of the request that answered.
    pub latency_ms: u64,
    /// Why generation stopped.
    pub stop_reason: Option<String>,
    /// No request was sent for this row (cache, request in flight, or a repeated input).
    pub cache_hit: bool,
    /// A repeat of an earlier input of the same batch.
    pub deduplicated: bool,
    /// Attempts retried (throttling, errors, and a structured-output correction).
    pub retries: u32,
    /// Attempts refused by throttling.
    pub throttles: u32,
    /// Estimated USD (`None` when the model's price is unknown).
    pub cost_usd: Option<f64>,
    /// `Code: message` of a failed row (with `on_error = 'null'`).
    pub error: Option<String>,
    /// The batch inference job that answered (its cost is at the batch price).
    pub batch_job: Option<String>,
    /// The service tier Bedrock says it used for the request (`default`, `flex`, `priority`).
    pub service_tier: Option<String>,
    /// This row's share of the input tokens Bedrock read from its prompt cache.
    pub cache_read_tokens: u64,
    /// This row's share of the input tokens Bedrock wrote to its prompt cache.
    pub cache_write_tokens: u64,
    /// How many rows the request that answered this one carried (1 unless rows were packed
    /// with `rows_per_request`; 0 when no request was sent for the row).
    pub packed_rows: u32,
    /// Requests sent for this row besides the one counted for it: an aggregate's row
    /// (`ai_agg`) is answered by several.
    pub extra_requests: u64,
    /// `ai_agg`: the chunks its rows were split into (0 for other calls).
    pub chunks: u32,
    /// `ai_agg`: the levels of requests that reduced them to one answer (0 for other calls).
    pub reduce_levels: u32,
    /// Whether this row counts its request in EXPLAIN ANALYZE: the first row of a packed
    /// request (every row of an unpacked one).
    pub counts_request: bool,
}

/// Totals over answered rows, for EXPLAIN ANALYZE.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallStats {
    /// Requests sent (retries included).
    pub requests: u64,
    /// Rows answered by an earlier identical row of their batch.
    pub dedup_hits: u64,
    /// Rows answered from the cache.
    pub cache_hits: u64,
    /// Retried attempts.
    pub retries: u64,
    /// Throttled attempts.
    pub throttles: u64,
    /// Input tokens billed.
    pub input_tokens: u64,
    /// Output tokens billed.
    pub output_tokens: u64,
    /// Input tokens read from Bedrock's prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to Bedrock's prompt cache.
    pub cache_write_tokens: u64,
    /// Estimated USD.
    pub cost_usd: f64,
    /// `ai_agg`: chunks of the first level, over every group.
    pub chunks: u64,
    /// `ai_agg`: the most levels a group needed.
    pub reduce_levels: u64,
    /// Rows whose call failed (NULL with `on_error = 'null'`).
    pub failed_rows: u64,
    /// Rows answered by a batch job's record.
    pub batch_records: u64,
}

impl CallStats {
    /// Adds one row's answer.
    pub fn add(&mut self, answer: &RowAnswer) {
        let Some(meta) = &answer.meta else {
            return;
        };
        if meta.error.is_some() {
            self.failed_rows += 1;
        }
        if meta.deduplicated {
            self.dedup_hits += 1;
        } else if meta.cache_hit {
            self.cache_hits += 1;
        } else if meta.batch_job.is_some() {
            self.batch_records += 1;
        } else if meta.error.is_none() && meta.counts_request {
            self.requests += 1 + u64::from(meta.retries) + meta.extra_requests;
        }
        if meta.counts_request {
            self.retries += u64::from(meta.retries);
            self.throttles += u64::from(meta.throttles);
        }
        self.input_tokens += meta.input_tokens;
        self.output_tokens += meta.output_tokens;
        self.cache_read_tokens += meta.cache_read_tokens;
        self.cache_write_tokens += meta.cache_write_tokens;
        self.cost_usd += meta.cost_usd.unwrap_or(0.0);
        self.chunks += u64::from(meta.chunks);
        self.reduce_levels = self.reduce_levels.max(u64::from(meta.reduce_levels));
    }
}

/// The fields of the `<target>_meta` struct.
#[must_use]
pub fn meta_fields() -> Fields {
    Fields::from(vec![
        Field::new("model_id", DataType::Utf8, true),
        Field::new("input_tokens", DataType::UInt64, true),
        Field::new("output_tokens", DataType::UInt64, true),
        Field::new("latency_ms", DataType::UInt64, true),
        Field::new("stop_reason", DataType::Utf8, true),
        Field::new("cache_hit", DataType::Boolean, true),
        Field::new("retries", DataType::UInt32, true),
        Field::new("estimated_cost_usd", DataType::Float64, true),
        Field::new("error", DataType::Utf8, true),
        Field::new("batch_job", DataType::Utf8, true),
        Field::new("service_tier", DataType::Utf8, true),
        Field::new("cache_read_tokens", DataType::UInt64, true),
        Field::new("cache_write_tokens", DataType::UInt64, true),
        Field::new("packed_rows", DataType::UInt32, true),
    ])
}

/// The `<target>_meta` column: NULL where no call concerned the row.
///
/// # Errors
/// Arrow's, were the columns built here not to fit [`meta_fields`] (they are built from it).
pub fn meta_array(answers: &[RowAnswer]) -> Result<ArrayRef> {
    let metas: Vec<Option<&RowMeta>> = answers.iter().map(|a| a.meta.as_ref()).collect();
    let text = |f: &dyn Fn(&RowMeta) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(
            metas.iter().map(|m| m.and_then(f)).collect::<Vec<_>>(),
        ))
    };
    let count = |f: &dyn Fn(&RowMeta) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from(
            metas.iter().map(|m| m.map(f)).collect::<Vec<_>>(),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|m| Some(m.model_id.clone())),
        count(&|m| m.input_tokens),
        count(&|m| m.output_tokens),
        count(&|m| m.latency_ms),
        text(&|m| m.stop_reason.clone()),
        Arc::new(BooleanArray::from(
            metas
                .iter()
                .map(|m| m.map(|m| m.cache_hit))
                .collect::<Vec<_>>(),
        )),
        Arc::new(UInt32Array::from(
            metas
                .iter()
                .map(|m| m.map(|m| m.retries))
                .collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            metas
                .iter()
                .map(|m| m.and_then(|m| m.cost_usd))
                .collect::<Vec<_>>(),
        )),
        text(&|m| m.error.clone()),
        text(&|m| m.batch_job.clone()),
        text(&|m| m.service_tier.clone()),
        count(&|m| m.cache_read_tokens),
        count(&|m| m.cache_write_tokens),
        Arc::new(UInt32Array::from(
            metas
                .iter()
                .map(|m| m.map(|m| m.packed_rows))
                .collect::<Vec<_>>(),
        )),
    ];
    let nulls = NullBuffer::from(metas.iter().map(Option::is_some).collect::<Vec<_>>());
    Ok(Arc::new(StructArray::try_new(
        meta_fields(),
        columns,
        Some(nulls),
    )?))
}

/// The type of an AI function's answer with provenance: `{value, meta}`.
#[must_use]
pub fn with_meta_type(value: DataType) -> DataType {
    DataType::Struct(with_meta_fields(value))
}

fn with_meta_fields(value: DataType) -> Fields {
    Fields::from(vec![
        Field::new("value", value, true),
        Field::new("meta", DataType::Struct(meta_fields()), true),
    ])
}

/// An AI function's answers with provenance: `{value, meta}` per row, NULL where no call
/// concerned the row (a NULL input).
///
/// # Errors
/// When `values` does not have one entry per answer.
pub fn with_meta_array(values: ArrayRef, answers: &[RowAnswer]) -> Result<ArrayRef> {
    let fields = with_meta_fields(values.data_type().clone());
    let nulls = NullBuffer::from(answers.iter().map(|a| a.meta.is_some()).collect::<Vec<_>>());
    Ok(Arc::new(StructArray::try_new(
        fields,
        vec![values, meta_array(answers)?],
        Some(nulls),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_count_requests_hits_and_failures() {
        let mut stats = CallStats::default();
        let meta = |f: fn(&mut RowMeta)| {
            let mut m = RowMeta {
                input_tokens: 10,
                output_tokens: 5,
                cost_usd: Some(0.5),
                counts_request: true,
                ..RowMeta::default()
            };
            f(&mut m);
            RowAnswer {
                meta: Some(m),
                ..RowAnswer::default()
            }
        };
        stats.add(&meta(|m| m.retries = 2));
        stats.add(&meta(|m| m.throttles = 1));
        stats.add(&meta(|m| {
            m.cache_hit = true;
            m.deduplicated = true;
        }));
        stats.add(&meta(|m| m.cache_hit = true));
        stats.add(&meta(|m| m.error = Some("X: y".into())));
        stats.add(&RowAnswer::default());
        // Two rows of one packed request, retried once: one request, one retry.
        stats.add(&meta(|m| {
            m.packed_rows = 2;
            m.retries = 1;
            m.cache_read_tokens = 7;
            m.cache_write_tokens = 3;
        }));
        stats.add(&meta(|m| {
            m.packed_rows = 2;
            m.retries = 1;
            m.cache_read_tokens = 7;
            m.cache_write_tokens = 3;
            m.counts_request = false;
        }));
        assert_eq!(
            stats,
            CallStats {
                requests: 6,
                dedup_hits: 1,
                cache_hits: 1,
                retries: 3,
                throttles: 1,
                input_tokens: 70,
                output_tokens: 35,
                cache_read_tokens: 14,
                cache_write_tokens: 6,
                cost_usd: 3.5,
                chunks: 0,
                reduce_levels: 0,
                failed_rows: 1,
                batch_records: 0,
            }
        );
    }
}
