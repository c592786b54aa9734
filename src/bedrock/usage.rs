//! Usage accounting per engine and model, and estimated cost from a price table.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::families::base_model_id;

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
    latency_ms: AtomicU64,
}

impl ModelCounters {
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
    /// Total latency of successful attempts, in milliseconds.
    pub latency_ms: u64,
    /// Estimated cost in USD (`None` when the model's price is unknown).
    pub estimated_cost_usd: Option<f64>,
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
                    latency_ms: load(&c.latency_ms),
                    estimated_cost_usd: self
                        .price(model)
                        .map(|(i, o)| (input as f64 * i + output as f64 * o) / 1000.0),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
