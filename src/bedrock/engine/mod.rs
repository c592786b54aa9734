//! An engine: AWS clients for one identity and region, with the limiter, cache and usage
//! counters that every query using it shares.
//!
//! How a batch of rows becomes answers, file by file:
//!
//! - `connect.rs`: building an engine — its SDK configuration, clients and credential check.
//! - `models.rs`: what the control plane says of a model, checked before a query pays for it.
//! - `fan_out.rs`: a batch of rows grouped by cache key, repeats answered once, cached answers
//!   served, the rest sent through a window of the limiter's concurrency and spread back to
//!   their rows.
//! - [`retry`](super::retry): each distinct request's attempts (limiter slot, budget,
//!   classification of failures), with the waits between them in [`backoff`](super::backoff).
//! - `sdk.rs`: one attempt of one SDK call — Converse, `InvokeModel`, an embedding call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::budget::Budget;
use super::cache::{CacheScope, ResponseCache};
use super::config::EngineConfig;
use super::identity::Identity;
use super::limiter::Limiter;
use super::request::TextResponse;
use super::retry::{CallFailure, RetryPolicy};
use super::usage::{Usage, UsageSnapshot};

mod blocks;
mod connect;
mod fan_out;
mod in_batch;
mod models;
mod sdk;

pub(crate) use blocks::has_media as request_has_media;
pub(crate) use sdk::MEDIA_NEEDS_CONVERSE;

pub use super::families::EmbedOptions;
pub use models::FoundationModelInfo;

/// The region used when neither the engine nor the environment names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Output tokens reserved against a tokens-per-minute budget when a request sets no maximum.
pub const DEFAULT_TOKEN_RESERVATION: u64 = 512;

/// How a model is called.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Api {
    /// The Converse API: one request shape for every chat model (the default).
    #[default]
    Converse,
    /// `InvokeModel` with the model family's native body.
    Invoke,
}

impl Api {
    /// `converse` or `invoke`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Converse => "converse",
            Self::Invoke => "invoke",
        }
    }
}

/// A model to call and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelTarget {
    /// A model id, inference-profile id or ARN.
    pub model_id: String,
    /// The API to call it with.
    pub api: Api,
}

/// One result per input row: `None` where the input was NULL.
pub type RowResults<T> = Vec<Option<std::result::Result<T, CallFailure>>>;

/// An engine: `CREATE ML_ENGINE name FROM bedrock USING …`.
pub struct Engine {
    name: String,
    config: EngineConfig,
    region: String,
    /// Where requests go: `endpoint_url`, else the environment's, else `AWS`.
    endpoint: String,
    identity: Identity,
    scope: tokio::sync::OnceCell<CacheScope>,
    runtime: aws_sdk_bedrockruntime::Client,
    control: aws_sdk_bedrock::Client,
    limiters: Mutex<HashMap<String, Arc<Limiter>>>,
    text_cache: ResponseCache<TextResponse>,
    /// Batch jobs submitted, by the digest of their records (see `in_batch.rs`).
    jobs: ResponseCache<super::batch::JobRecord>,
    /// What its S3 requests (the batch jobs' files) are signed with.
    s3_identity: super::batch::storage::S3Identity,
    embed_cache: ResponseCache<Vec<f32>>,
    usage: Usage,
    retry: RetryPolicy,
    /// For an engine built from a plan of another process: the spec it was built from, which
    /// it travels as again (its credential kind included).
    origin: std::sync::OnceLock<crate::inference::spec::EngineSpec>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.name)
            .field("region", &self.region)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// What its requests really carry, as `SHOW ML_ENGINES` says it: `default chain`,
    /// `profile 'dev'`, `static keys`, `static keys + session token`, `api key`,
    /// `default chain (AWS_BEARER_TOKEN_BEDROCK)`, or `none (emulator)` when they go unsigned
    /// to the built-in emulator.
    pub fn credentials_used(&self) -> &str {
        self.identity.shown()
    }

    /// The scope of its cache keys: endpoint, region and identity. When credentials left for
    /// the first call cannot be resolved, a scope of this call alone (its answer is shared
    /// with no one).
    async fn cache_scope(&self) -> CacheScope {
        if let Some(scope) = self.scope.get() {
            return *scope;
        }
        match self.identity.fingerprint().await {
            Some(identity) => {
                *self
                    .scope
                    .get_or_init(|| async {
                        CacheScope::new(&self.endpoint, &self.region, &identity)
                    })
                    .await
            }
            None => CacheScope::unique(),
        }
    }

    /// The spec of the plan this engine was built for, when it was built for one.
    pub fn origin(&self) -> Option<&crate::inference::spec::EngineSpec> {
        self.origin.get()
    }

    /// A failure to load credentials in an engine built from another process's plan, told
    /// with what its spec says of them (keys given inline never travel).
    pub(super) fn explained(&self, mut failure: CallFailure) -> CallFailure {
        if failure.code == "CredentialsError"
            && let Some(origin) = self.origin()
        {
            failure.message = origin
                .credentials
                .missing_here(&self.name, failure.message.trim_end_matches('.'));
        }
        failure
    }

    /// Records the spec this engine was built from (the first one recorded stays).
    pub fn set_origin(&self, spec: crate::inference::spec::EngineSpec) {
        let _ = self.origin.set(spec);
    }

    /// The engine's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The region its clients use.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Its configuration (secrets redacted in `Debug`).
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Usage of every model called through this engine.
    pub fn usage(&self) -> Vec<UsageSnapshot> {
        self.usage.snapshot()
    }

    /// A model's price (USD per 1K input tokens, per 1K output tokens): the override, else
    /// the built-in on-demand list price, else `None`.
    pub fn price(&self, model_id: &str) -> Option<(f64, f64)> {
        self.usage.price(model_id)
    }

    /// A model's batch price: half its on-demand price (see [`Engine::price`]).
    pub fn batch_price(&self, model_id: &str) -> Option<(f64, f64)> {
        self.usage.batch_price(model_id)
    }

    /// Estimated USD of a batch record's tokens at the model's batch price.
    #[allow(clippy::cast_precision_loss)]
    pub fn batch_cost_usd(
        &self,
        model_id: &str,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Option<f64> {
        self.batch_price(model_id)
            .map(|price| cost_usd(Some(price), input_tokens, output_tokens))
    }

    /// Estimated USD of a call's tokens at the model's price (`None` when it is unknown).
    #[allow(clippy::cast_precision_loss)]
    pub fn cost_usd(&self, model_id: &str, input_tokens: u64, output_tokens: u64) -> Option<f64> {
        self.price(model_id)
            .map(|price| cost_usd(Some(price), input_tokens, output_tokens))
    }

    /// Estimated USD of prompt-cache tokens at the model's price (reads and writes at their
    /// multiples of the input price, see [`prompt_cache`](super::prompt_cache); `None` when
    /// the price is unknown).
    pub fn cached_cost_usd(
        &self,
        model_id: &str,
        ttl: Option<super::prompt_cache::CacheTtl>,
        read_tokens: u64,
        write_tokens: u64,
    ) -> Option<f64> {
        self.price(model_id).map(|(input, _)| {
            super::prompt_cache::cached_tokens_usd(model_id, input, ttl, read_tokens, write_tokens)
        })
    }

    /// Overrides a model's price (USD per 1K input tokens, per 1K output tokens).
    pub fn set_price(&self, model_id: &str, input_per_1k: f64, output_per_1k: f64) {
        self.usage.set_price(model_id, input_per_1k, output_per_1k);
    }

    /// The limiter shared by every query calling `model_id` through this engine.
    pub fn limiter(&self, model_id: &str) -> Arc<Limiter> {
        let mut limiters = self
            .limiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(limiters.entry(model_id.to_string()).or_insert_with(|| {
            Arc::new(Limiter::new(
                self.config.max_concurrency,
                self.config.requests_per_minute,
                self.config.tokens_per_minute,
            ))
        }))
    }
}

/// What a query asks of the calls it makes.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// The query's spending limits, shared by all its calls.
    pub budget: Option<Arc<Budget>>,
    /// How the requests are sent: on demand (the default), in batch jobs, or batch from
    /// `batch_min_rows` distinct uncached requests.
    pub execution: super::batch::Execution,
    /// `bedrock.batch_min_rows`: the distinct uncached requests from which `auto` runs batch
    /// jobs (never below the service's 100; 0 here means the default, 1,000).
    pub batch_min_rows: u64,
    /// `SET bedrock.reorder_requests = false`: send a batch's requests in input order
    /// instead of grouped by shared prefix.
    pub keep_order: bool,
    /// The session's object stores, which read the URLs of `ai_image` and `ai_document`
    /// (`None`: a call outside a session, which cannot read URLs).
    pub stores: Option<Arc<datafusion::execution::runtime_env::RuntimeEnv>>,
}

impl CallOptions {
    /// The same options under another execution.
    #[must_use]
    pub fn executed(&self, execution: super::batch::Execution) -> Self {
        Self {
            execution,
            ..self.clone()
        }
    }

    /// The same options reading URLs through `stores` (a session's runtime environment).
    #[must_use]
    pub fn reading(mut self, stores: Arc<datafusion::execution::runtime_env::RuntimeEnv>) -> Self {
        self.stores = Some(stores);
        self
    }

    /// The threshold of `auto`.
    #[must_use]
    pub fn min_batch_rows(&self) -> u64 {
        if self.batch_min_rows == 0 {
            super::batch::DEFAULT_BATCH_MIN_ROWS
        } else {
            self.batch_min_rows
        }
    }
}

/// Estimated USD of tokens at a price per 1K input and output tokens (0 when unknown).
fn cost_usd(price: Option<(f64, f64)>, input_tokens: u64, output_tokens: u64) -> f64 {
    price.map_or(0.0, |p| {
        super::usage::tokens_usd(p, input_tokens, output_tokens)
    })
}
