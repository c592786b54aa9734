//! Usage accounting per engine and model, and estimated cost from a price table.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::families::base_model_id;
use super::prompt_cache::{CacheTtl, cached_tokens_usd};

/// On-demand list prices in USD per 1,000 tokens (input, output), us-east-1. Estimates only:
/// override them with [`Usage::set_price`] for your region, tier or discounts.
const PRICES: &[(&str, f64, f64)] = &[
    ("amazon.titan-text-premier-v1:0", 0.0005, 0.0015),
    ("amazon.titan-text-express-v1", 0.0002, 0.0006),
    ("amazon.titan-text-lite-v1", 0.000_15, 0.0002),
    ("amazon.nova-micro-v1:0", 0.000_035, 0.000_14),
    ("amazon.nova-lite-v1:0", 0.000_06, 0.000_24),
    ("amazon.nova-pro-v1:0", 0.0008, 0.0032),
    ("anthropic.claude-3-haiku-20240307-v1:0", 0.000_25, 0.001_25),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", 0.0008, 0.004),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", 0.003, 0.015),
    ("anthropic.claude-3-7-sonnet-20250219-v1:0", 0.003, 0.015),
    ("anthropic.claude-sonnet-4-20250514-v1:0", 0.003, 0.015),
    ("meta.llama3-8b-instruct-v1:0", 0.0003, 0.0006),
    ("meta.llama3-70b-instruct-v1:0", 0.002_65, 0.0035),
    ("meta.llama3-1-8b-instruct-v1:0", 0.000_22, 0.000_22),
    ("meta.llama3-1-70b-instruct-v1:0", 0.000_72, 0.000_72),
    ("meta.llama3-3-70b-instruct-v1:0", 0.000_72, 0.000_72),
    ("mistral.mistral-7b-instruct-v0:2", 0.000_15, 0.0002),
    ("mistral.mixtral-8x7b-instruct-v0:1", 0.000_45, 0.0007),
    ("mistral.mistral-large-2402-v1:0", 0.004, 0.012),
    ("mistral.mistral-small-2402-v1:0", 0.001, 0.003),
    ("cohere.command-r-v1:0", 0.0005, 0.0015),
    ("cohere.command-r-plus-v1:0", 0.003, 0.015),
    ("ai21.jamba-1-5-mini-v1:0", 0.0002, 0.0004),
    ("ai21.jamba-1-5-large-v1:0", 0.002, 0.008),
    ("amazon.titan-embed-text-v2:0", 0.000_02, 0.0),
    ("amazon.titan-embed-text-v1", 0.0001, 0.0),
    ("cohere.embed-english-v3", 0.0001, 0.0),
    ("cohere.embed-multilingual-v3", 0.0001, 0.0),
];

/// USD of tokens at a price per 1K input and per 1K output tokens.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn tokens_usd((input, output): (f64, f64), input_tokens: u64, output_tokens: u64) -> f64 {
    (input_tokens as f64 * input + output_tokens as f64 * output) / 1000.0
}

/// `tokens` divided among `rows` rows, the remainder to the first, so the shares add up
/// (a request's tokens shared by the rows it answered).
pub fn token_shares(tokens: u64, rows: usize) -> impl Iterator<Item = u64> {
    let n = u64::try_from(rows).unwrap_or(u64::MAX).max(1);
    let (share, remainder) = (tokens / n, tokens % n);
    (0..rows).map(move |i| if i == 0 { share + remainder } else { share })
}

/// The built-in price (USD per 1K input tokens, per 1K output tokens) of a model, if known.
#[must_use]
pub fn list_price(model_id: &str) -> Option<(f64, f64)> {
    let base = base_model_id(model_id);
    PRICES
        .iter()
        .find(|(id, ..)| *id == base)
        .map(|(_, i, o)| (*i, *o))
}

/// Live counters of one model.
#[derive(Debug, Default)]
pub struct ModelCounters {
    requests: AtomicU64,
    retries: AtomicU64,
    throttles: AtomicU64,
    failures: AtomicU64,
    cache_hits: AtomicU64,
    deduplicated: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    cache_read_tokens: AtomicU64,
    cache_write_tokens: AtomicU64,
    cache_write_1h_tokens: AtomicU64,
    latency_ms: AtomicU64,
    batch_jobs: AtomicU64,
    batch_jobs_running: AtomicU64,
    batch_records: AtomicU64,
    batch_processed: AtomicU64,
    batch_errors: AtomicU64,
    batch_input_tokens: AtomicU64,
    batch_output_tokens: AtomicU64,
    batch_status: Mutex<Option<String>>,
}

impl ModelCounters {
    /// A batch job of `records` records submitted (or re-attached to) and now waited for.
    pub fn batch_job_started(&self, records: u64) {
        self.batch_jobs.fetch_add(1, Ordering::Relaxed);
        self.batch_jobs_running.fetch_add(1, Ordering::Relaxed);
        self.batch_records.fetch_add(records, Ordering::Relaxed);
    }
    /// `n` more records of a running job processed; its status as the last poll saw it.
    pub fn batch_progress(&self, n: u64, status: &str) {
        self.batch_processed.fetch_add(n, Ordering::Relaxed);
        *self
            .batch_status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status.to_string());
    }
    /// A job waited for ended (answered, failed, or its query went away).
    pub fn batch_job_ended(&self) {
        let _ = self
            .batch_jobs_running
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
    /// A batch record answered, with its tokens.
    pub fn batch_answer(&self, input_tokens: u64, output_tokens: u64) {
        self.batch_input_tokens
            .fetch_add(input_tokens, Ordering::Relaxed);
        self.batch_output_tokens
            .fetch_add(output_tokens, Ordering::Relaxed);
    }
    /// A batch record that failed.
    pub fn batch_error(&self) {
        self.batch_errors.fetch_add(1, Ordering::Relaxed);
    }
    /// One attempt sent to Bedrock (first tries and retries alike).
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
    /// One retry (also counted as a request).
    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    /// One throttled attempt.
    pub fn throttle(&self) {
        self.throttles.fetch_add(1, Ordering::Relaxed);
    }
    /// One input whose call failed for good.
    pub fn failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
    /// One input answered from the cache or by another request in flight.
    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }
    /// `n` inputs that repeated another input of the same batch.
    pub fn deduplicated(&self, n: u64) {
        self.deduplicated.fetch_add(n, Ordering::Relaxed);
    }
    /// Prompt-cache tokens of a successful attempt: read, and written (with a 1-hour time
    /// to live when `one_hour`).
    pub fn prompt_cache(&self, read: u64, written: u64, one_hour: bool) {
        self.cache_read_tokens.fetch_add(read, Ordering::Relaxed);
        self.cache_write_tokens
            .fetch_add(written, Ordering::Relaxed);
        if one_hour {
            self.cache_write_1h_tokens
                .fetch_add(written, Ordering::Relaxed);
        }
    }
    /// Tokens and latency of a successful attempt.
    pub fn success(&self, input_tokens: u64, output_tokens: u64, latency_ms: u64) {
        self.input_tokens.fetch_add(input_tokens, Ordering::Relaxed);
        self.output_tokens
            .fetch_add(output_tokens, Ordering::Relaxed);
        self.latency_ms.fetch_add(latency_ms, Ordering::Relaxed);
    }
}

/// A copy of one model's counters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UsageSnapshot {
    /// The model id.
    pub model: String,
    /// Attempts sent to Bedrock (including retries).
    pub requests: u64,
    /// Retries among them.
    pub retries: u64,
    /// Attempts refused by throttling.
    pub throttles: u64,
    /// Inputs whose call failed for good.
    pub failures: u64,
    /// Inputs answered from the cache or by an identical request in flight.
    pub cache_hits: u64,
    /// Inputs that repeated another input of the same batch.
    pub deduplicated: u64,
    /// Input tokens billed.
    pub input_tokens: u64,
    /// Output tokens billed.
    pub output_tokens: u64,
    /// Input tokens read from Bedrock's prompt cache (not in `input_tokens`).
    pub cache_read_tokens: u64,
    /// Input tokens written to Bedrock's prompt cache (not in `input_tokens`).
    pub cache_write_tokens: u64,
    /// Total latency of successful attempts, in milliseconds.
    pub latency_ms: u64,
    /// Estimated cost in USD of the on-demand calls (`None` when the model's price is
    /// unknown).
    pub estimated_cost_usd: Option<f64>,
    /// Batch inference jobs submitted or re-attached to.
    pub batch_jobs: u64,
    /// Jobs still waited for.
    pub batch_jobs_running: u64,
    /// Records of those jobs.
    pub batch_records: u64,
    /// Records the jobs had processed at their last poll.
    pub batch_processed: u64,
    /// Records that came back as errors.
    pub batch_errors: u64,
    /// Input tokens of the answered records.
    pub batch_input_tokens: u64,
    /// Output tokens of the answered records.
    pub batch_output_tokens: u64,
    /// Estimated USD of the batch records at the batch price (`None` when the model's price
    /// is unknown).
    pub batch_cost_usd: Option<f64>,
    /// The status of the latest job as last polled (`InProgress`, `Completed`, …).
    pub batch_status: Option<String>,
}

/// Usage of every model of an engine.
#[derive(Debug, Default)]
pub struct Usage {
    models: Mutex<BTreeMap<String, Arc<ModelCounters>>>,
    prices: Mutex<BTreeMap<String, (f64, f64)>>,
}

impl Usage {
    /// The counters of a model, created on first use.
    pub fn model(&self, model_id: &str) -> Arc<ModelCounters> {
        let mut models = self
            .models
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(models.entry(model_id.to_string()).or_default())
    }

    /// Overrides a model's price (USD per 1K input tokens, per 1K output tokens).
    pub fn set_price(&self, model_id: &str, input_per_1k: f64, output_per_1k: f64) {
        self.prices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(model_id.to_string(), (input_per_1k, output_per_1k));
    }

    /// The batch price of a model: [`BATCH_PRICE_FACTOR`](super::batch::BATCH_PRICE_FACTOR)
    /// times its on-demand price (override or list price).
    pub fn batch_price(&self, model_id: &str) -> Option<(f64, f64)> {
        let factor = super::batch::BATCH_PRICE_FACTOR;
        self.price(model_id).map(|(i, o)| (i * factor, o * factor))
    }

    /// The price used for a model: an override, else the built-in list price.
    pub fn price(&self, model_id: &str) -> Option<(f64, f64)> {
        let prices = self
            .prices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        prices
            .get(model_id)
            .copied()
            .or_else(|| list_price(model_id))
    }

    /// Every model's counters, sorted by model id.
    #[allow(clippy::cast_precision_loss)]
    pub fn snapshot(&self) -> Vec<UsageSnapshot> {
        let models = self
            .models
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        models
            .iter()
            .map(|(model, c)| {
                let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let (input, output) = (load(&c.input_tokens), load(&c.output_tokens));
                let (read, written, written_1h) = (
                    load(&c.cache_read_tokens),
                    load(&c.cache_write_tokens),
                    load(&c.cache_write_1h_tokens),
                );
                let (batch_input, batch_output) =
                    (load(&c.batch_input_tokens), load(&c.batch_output_tokens));
                UsageSnapshot {
                    model: model.clone(),
                    requests: load(&c.requests),
                    retries: load(&c.retries),
                    throttles: load(&c.throttles),
                    failures: load(&c.failures),
                    cache_hits: load(&c.cache_hits),
                    deduplicated: load(&c.deduplicated),
                    input_tokens: input,
                    output_tokens: output,
                    cache_read_tokens: read,
                    cache_write_tokens: written,
                    latency_ms: load(&c.latency_ms),
                    estimated_cost_usd: self.price(model).map(|p| {
                        tokens_usd(p, input, output)
                            + cached_tokens_usd(model, p.0, None, read, written - written_1h)
                            + cached_tokens_usd(model, p.0, Some(CacheTtl::OneHour), 0, written_1h)
                    }),
                    batch_jobs: load(&c.batch_jobs),
                    batch_jobs_running: load(&c.batch_jobs_running),
                    batch_records: load(&c.batch_records),
                    batch_processed: load(&c.batch_processed),
                    batch_errors: load(&c.batch_errors),
                    batch_input_tokens: batch_input,
                    batch_output_tokens: batch_output,
                    batch_cost_usd: self
                        .batch_price(model)
                        .map(|p| tokens_usd(p, batch_input, batch_output)),
                    batch_status: c
                        .batch_status
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shares_add_up_with_the_remainder_first() {
        assert_eq!(token_shares(11, 3).collect::<Vec<_>>(), vec![5, 3, 3]);
        assert_eq!(token_shares(6, 3).collect::<Vec<_>>(), vec![2, 2, 2]);
        assert_eq!(token_shares(2, 3).collect::<Vec<_>>(), vec![2, 0, 0]);
        assert_eq!(token_shares(7, 1).collect::<Vec<_>>(), vec![7]);
        assert_eq!(token_shares(7, 0).count(), 0);
    }

    #[test]
    fn prompt_cache_tokens_are_counted_apart_and_priced_by_ttl() {
        let usage = Usage::default();
        let m = usage.model("anthropic.claude-3-7-sonnet-20250219-v1:0");
        m.success(1000, 0, 1);
        m.prompt_cache(10_000, 2_000, false);
        m.prompt_cache(0, 1_000, true);
        let snap = &usage.snapshot()[0];
        assert_eq!(
            (
                snap.input_tokens,
                snap.cache_read_tokens,
                snap.cache_write_tokens
            ),
            (1000, 10_000, 3_000)
        );
        // $3/M input: 1,000 uncached, 10,000 read at 0.1×, 2,000 written at 1.25× and 1,000
        // at 2× (1 hour).
        let expected = (1000.0 + 1000.0 + 2500.0 + 2000.0) * 0.003 / 1000.0;
        let cost = snap.estimated_cost_usd.unwrap();
        assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    }

    #[test]
    fn cost_follows_tokens_and_prices() {
        let usage = Usage::default();
        let m = usage.model("us.anthropic.claude-3-haiku-20240307-v1:0");
        m.request();
        m.success(2000, 1000, 120);
        let snap = usage.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(
            (
                snap[0].requests,
                snap[0].input_tokens,
                snap[0].output_tokens
            ),
            (1, 2000, 1000)
        );
        let cost = snap[0].estimated_cost_usd.unwrap();
        assert!((cost - (2.0 * 0.000_25 + 0.001_25)).abs() < 1e-12, "{cost}");
        usage.set_price("us.anthropic.claude-3-haiku-20240307-v1:0", 1.0, 2.0);
        assert_eq!(usage.snapshot()[0].estimated_cost_usd, Some(4.0));
        usage.model("custom.model");
        let costs: Vec<_> = usage
            .snapshot()
            .into_iter()
            .map(|s| (s.model, s.estimated_cost_usd))
            .collect();
        assert_eq!(
            costs,
            vec![
                ("custom.model".to_string(), None),
                (
                    "us.anthropic.claude-3-haiku-20240307-v1:0".to_string(),
                    Some(4.0)
                )
            ]
        );
    }
}
