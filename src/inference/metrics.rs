//! What EXPLAIN ANALYZE shows of an operator that calls models: the same counters for a model
//! relation's operator and for the operator that runs AI functions.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::physical_plan::metrics::{
    Count, CustomMetricValue, ExecutionPlanMetricsSet, Gauge, MetricBuilder, MetricType,
    MetricValue,
};

use super::answer::{CallStats, RowAnswer};
use crate::bedrock::budget::Budget;

/// Estimated USD, shown by EXPLAIN ANALYZE.
#[derive(Debug, Default)]
struct UsdMetric(Mutex<f64>);

impl UsdMetric {
    fn add(&self, usd: f64) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += usd;
    }

    fn value(&self) -> f64 {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl fmt::Display for UsdMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${:.6}", self.value())
    }
}

impl CustomMetricValue for UsdMetric {
    fn new_empty(&self) -> Arc<dyn CustomMetricValue> {
        Arc::new(Self::default())
    }

    fn aggregate(&self, other: Arc<dyn CustomMetricValue + 'static>) {
        if let Some(other) = other.as_any().downcast_ref::<Self>() {
            self.add(other.value());
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn is_eq(&self, other: &Arc<dyn CustomMetricValue>) -> bool {
        other
            .as_any()
            .downcast_ref::<Self>()
            .is_some_and(|o| o.value().to_bits() == self.value().to_bits())
    }
}

/// The counters of one partition of an operator that calls models (requests, dedup and cache
/// hits, retries, throttles, tokens, failed rows and estimated USD), for EXPLAIN ANALYZE.
pub struct CallMetrics {
    requests: Count,
    dedup_hits: Count,
    cache_hits: Count,
    retries: Count,
    throttles: Count,
    input_tokens: Count,
    output_tokens: Count,
    cache_read_tokens: Count,
    cache_write_tokens: Count,
    failed_rows: Count,
    cost: Cost,
    /// Batch execution's counters: records answered by jobs, and the jobs.
    batch: Option<(Count, Count)>,
    /// An aggregate's counters (`ai_agg`): first-level chunks, and the most reduce levels.
    reduction: Option<(Count, Gauge)>,
}

/// Where the estimated USD goes.
enum Cost {
    /// `estimated_cost_usd=$0.001300`.
    Usd(Arc<UsdMetric>),
    /// `estimated_cost_micro_usd=1300`: a plain counter, which Ballista carries from
    /// executors to the scheduler (it refuses custom metrics).
    MicroUsd(Count),
}

impl CallMetrics {
    /// The counters of partition `partition` in `set`.
    #[must_use]
    pub fn new(set: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        Self::with_cost(set, partition, false)
    }

    /// The counters of partition `partition` in `set`, estimated USD counted in millionths of
    /// a dollar: what a cluster's executors report.
    #[must_use]
    pub fn portable(set: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        Self::with_cost(set, partition, true)
    }

    fn with_cost(set: &ExecutionPlanMetricsSet, partition: usize, portable: bool) -> Self {
        let count = |name: &'static str| {
            MetricBuilder::new(set)
                .with_type(MetricType::Summary)
                .counter(name, partition)
        };
        let cost = if portable {
            Cost::MicroUsd(count("estimated_cost_micro_usd"))
        } else {
            let usd = Arc::new(UsdMetric::default());
            MetricBuilder::new(set)
                .with_type(MetricType::Summary)
                .with_partition(partition)
                .build(MetricValue::Custom {
                    name: "estimated_cost_usd".into(),
                    value: Arc::clone(&usd) as Arc<dyn CustomMetricValue>,
                });
            Cost::Usd(usd)
        };
        Self {
            requests: count("requests"),
            dedup_hits: count("dedup_hits"),
            cache_hits: count("cache_hits"),
            retries: count("retries"),
            throttles: count("throttles"),
            input_tokens: count("input_tokens"),
            output_tokens: count("output_tokens"),
            cache_read_tokens: count("cache_read_tokens"),
            cache_write_tokens: count("cache_write_tokens"),
            failed_rows: count("failed_rows"),
            cost,
            batch: None,
            reduction: None,
        }
    }

    /// The same counters plus `batch_records` and `batch_jobs`, for an operator running in
    /// batch or auto execution.
    #[must_use]
    pub fn with_batch(mut self, set: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        let count = |name: &'static str| {
            MetricBuilder::new(set)
                .with_type(MetricType::Summary)
                .counter(name, partition)
        };
        self.batch = Some((count("batch_records"), count("batch_jobs")));
        self
    }

    /// The same counters plus `chunks` and `reduce_levels`, for an operator running an
    /// aggregate's reduction (`ai_agg`).
    #[must_use]
    pub fn with_reduction(mut self, set: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        let builder = || MetricBuilder::new(set).with_type(MetricType::Summary);
        self.reduction = Some((
            builder().counter("chunks", partition),
            builder().gauge("reduce_levels", partition),
        ));
        self
    }

    /// Adds a batch's answers, and counts the rows answered in the query's budget.
    pub fn record(&self, answers: &[RowAnswer], budget: Option<&Budget>) {
        if let Some(budget) = budget {
            budget.rows_answered(answers.iter().filter(|a| a.meta.is_some()).count() as u64);
        }
        let mut stats = CallStats::default();
        for answer in answers {
            stats.add(answer);
        }
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        self.requests.add(n(stats.requests));
        self.dedup_hits.add(n(stats.dedup_hits));
        self.cache_hits.add(n(stats.cache_hits));
        self.retries.add(n(stats.retries));
        self.throttles.add(n(stats.throttles));
        self.input_tokens.add(n(stats.input_tokens));
        self.output_tokens.add(n(stats.output_tokens));
        self.cache_read_tokens.add(n(stats.cache_read_tokens));
        self.cache_write_tokens.add(n(stats.cache_write_tokens));
        self.failed_rows.add(n(stats.failed_rows));
        if let Some((records, jobs)) = &self.batch {
            records.add(n(stats.batch_records));
            let distinct: std::collections::BTreeSet<&str> = answers
                .iter()
                .filter_map(|a| a.meta.as_ref()?.batch_job.as_deref())
                .collect();
            jobs.add(distinct.len());
        }
        if let Some((chunks, levels)) = &self.reduction {
            chunks.add(n(stats.chunks));
            levels.set_max(n(stats.reduce_levels));
        }
        match &self.cost {
            Cost::Usd(usd) => usd.add(stats.cost_usd),
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Cost::MicroUsd(micros) => micros.add((stats.cost_usd * 1e6).round().max(0.0) as usize),
        }
    }
}
