//! A local, wire-faithful Amazon Bedrock emulator (feature `emulator`).
//!
//! A real HTTP/1.1 server on `127.0.0.1` that speaks Bedrock's REST-JSON protocol, so the real
//! `aws-sdk-bedrockruntime` and `aws-sdk-bedrock` clients can be pointed at it with
//! `endpoint_url`. It was written from AWS's API documentation and shares no request or response
//! types with the client code of this crate: if the two disagreed about the wire format, tests
//! would catch it.
//!
//! What it serves:
//! - Runtime: `POST /model/{modelId}/converse`, `/converse-stream`, `/invoke`,
//!   `/invoke-with-response-stream` (the native body of each model family) and `/count-tokens`.
//!   Converse prompt caching (`cachePoint` blocks) as the service does it, per model
//!   ([`CatalogModel::prompt_cache`]), in a cache of [`EmulatorConfig::prompt_cache_entries`].
//! - Control plane: `GET /foundation-models` and `GET /foundation-models/{modelId}`.
//! - Batch inference (model invocation jobs): `POST /model-invocation-job` (create),
//!   `GET /model-invocation-job/{jobIdentifier}`, `GET /model-invocation-jobs` (list) and
//!   `POST /model-invocation-job/{jobIdentifier}/stop`. A job walks `Submitted`, `Validating`,
//!   `Scheduled`, `InProgress` to `Completed`, `PartiallyCompleted` or `Failed`, one
//!   [`EmulatorConfig::batch_step`] each; it reads its JSONL input from and writes its output to
//!   the S3 root ([`EmulatorConfig::s3_root`], served by an [`S3Server`] at
//!   [`Emulator::s3_url`]), answering each record as the runtime route would.
//! - Test routes: `GET /_emulator/stats` (the [`StatsSnapshot`] as JSON) and
//!   `POST /_emulator/reset` (zeroes the counters, forgets the jobs, directives and the prompt
//!   cache).
//! - `GET /_emulator/identity`, unauthenticated:
//!   `{"service": "datafusion-bedrock-emulator", "version": "…", "accepts_unsigned_requests": true}`.
//!   `accepts_unsigned_requests` is true when no credentials and no API keys are configured (the
//!   default). An engine without credentials whose `endpoint_url` is on the loopback interface
//!   asks this route, and when the answer is true it sends its requests unsigned.
//!
//! Answers are deterministic: a pure function of the model id and the request, revealing what the
//! model received (the rules are in `docs/emulator.md`): for example
//! `Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): What is the capital of
//! Sweden?`. A [`LoadModel`] adds latency, quotas and seeded faults.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use datafusion_bedrock::emulator::{Emulator, EmulatorConfig};
//! let emulator = Emulator::start(EmulatorConfig::default()).await?;
//! println!("Bedrock emulator listening on {}", emulator.url());
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```

mod answer;
mod auth;
mod batch;
mod catalog;
mod control;
mod converse;
mod count_tokens;
mod directive;
mod embed;
mod eventstream;
mod families;
mod json;
mod judgement;
mod listener;
mod load;
mod media;
mod model_id;
mod packed;
mod prompt_cache;
mod s3;
mod server;
mod stats;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use answer::{count_text_tokens, embedding_for};
pub use catalog::{CatalogModel, Family, PromptCaching, catalog};
pub use load::{Fault, FaultRates, LoadModel};
pub use s3::S3Server;
pub use stats::{BatchJobRecord, EmulatorStats, LoggedRequest, RequestCount, StatsSnapshot};

/// A key pair (and optional session token) the emulator accepts in SigV4 signatures.
#[derive(Clone)]
pub struct StaticCredential {
    /// The access key id (`AKIA…` / `ASIA…`).
    pub access_key_id: String,
    /// The secret access key. Never printed by `Debug`.
    pub secret_access_key: String,
    /// When set, requests signed with this key must carry this `x-amz-security-token`.
    pub session_token: Option<String>,
}

impl StaticCredential {
    /// A long-term key pair.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }

    /// Temporary credentials: the key pair plus the session token that must accompany it.
    #[must_use]
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }
}

impl std::fmt::Debug for StaticCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredential")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

/// How the emulator is started.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// TCP port on 127.0.0.1; `0` (the default) picks a free one.
    pub port: u16,
    /// SigV4 credentials to verify. Empty (the default): any well-formed or missing signature is
    /// accepted.
    pub credentials: Vec<StaticCredential>,
    /// Bedrock API keys accepted as `Authorization: Bearer <key>`. Empty (the default): any
    /// bearer token is accepted.
    pub api_keys: Vec<String>,
    /// Latency, quotas and injected faults. Default: none of them.
    pub load: LoadModel,
    /// How many recent runtime requests (operation, model id, body) are kept for tests.
    /// Default 256.
    pub request_log_capacity: usize,
    /// A directory served as S3 alongside the emulator (an [`S3Server`], at
    /// [`Emulator::s3_url`]), where batch inference jobs read `s3://bucket/key` as the file
    /// `<s3_root>/bucket/key` and write their output. Default `None`: no S3 endpoint, and
    /// `CreateModelInvocationJob` is refused.
    pub s3_root: Option<PathBuf>,
    /// The buckets created in `s3_root` (directories). Default `["bedrock-batch"]`.
    pub s3_buckets: Vec<String>,
    /// How long each status of a batch inference job lasts (`Submitted`, `Validating`,
    /// `Scheduled`, `InProgress` at least, `Stopping`). Default 20 ms.
    pub batch_step: Duration,
    /// How many records a second a batch inference job answers while `InProgress`, so a poller
    /// sees `processedRecordCount` grow. Default `None`: as fast as possible.
    pub batch_records_per_second: Option<u32>,
    /// How many prompt prefixes the Converse prompt cache holds (each `cachePoint` written is
    /// one); the least recently used is evicted to make room, as the service evicts too.
    /// Default 1024. See [`Emulator::set_prompt_cache_entries`].
    pub prompt_cache_entries: usize,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            port: 0,
            credentials: Vec::new(),
            api_keys: Vec::new(),
            load: LoadModel::default(),
            request_log_capacity: 256,
            s3_root: None,
            s3_buckets: vec!["bedrock-batch".to_string()],
            batch_step: Duration::from_millis(20),
            batch_records_per_second: None,
            prompt_cache_entries: 1024,
        }
    }
}

/// A running emulator. Dropping it stops the server; [`Emulator::shutdown`] also waits for it.
pub struct Emulator {
    url: String,
    state: Arc<server::State>,
    listening: listener::Listening,
    s3: Option<S3Server>,
}

impl Emulator {
    /// Binds 127.0.0.1 and serves in the background on the current tokio runtime; with
    /// [`EmulatorConfig::s3_root`], also starts an [`S3Server`] over that directory, which
    /// accepts its own key pair and the emulator's `credentials`.
    ///
    /// # Errors
    /// When the port cannot be bound, or the S3 root or a bucket cannot be created.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Self> {
        let port = config.port;
        let s3 = match &config.s3_root {
            Some(root) => {
                let buckets: Vec<&str> = config.s3_buckets.iter().map(String::as_str).collect();
                Some(S3Server::start_accepting(root, &buckets, &config.credentials).await?)
            }
            None => None,
        };
        let state = Arc::new(server::State::new(config));
        let serving = Arc::clone(&state);
        let listening = listener::Listening::start(port, "Bedrock emulator", move || {
            server::service(Arc::clone(&serving))
        })
        .await?;
        Ok(Self {
            url: format!("http://{}", listening.addr()),
            state,
            listening,
            s3,
        })
    }

    /// The base URL to give the AWS SDK as `endpoint_url`, e.g. `http://127.0.0.1:41234`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The S3 endpoint serving [`EmulatorConfig::s3_root`] (`http://127.0.0.1:PORT`, signed
    /// with [`S3Server::ACCESS_KEY_ID`] / [`S3Server::SECRET_ACCESS_KEY`], region `us-east-1`),
    /// or `None` when the emulator was started without one.
    #[must_use]
    pub fn s3_url(&self) -> Option<&str> {
        self.s3.as_ref().map(S3Server::url)
    }

    /// The socket address the server listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.listening.addr()
    }

    /// The live counters.
    #[must_use]
    pub fn stats(&self) -> &EmulatorStats {
        &self.state.stats
    }

    /// The live counters, as a handle that outlives this borrow (for test harnesses).
    #[must_use]
    pub fn shared_stats(&self) -> Arc<EmulatorStats> {
        Arc::clone(&self.state.stats)
    }

    /// Replaces the load model (latency, quotas, faults) for requests that start from now on,
    /// and refills the quota buckets.
    pub fn set_load(&self, load: LoadModel) {
        self.state.set_load(load);
    }

    /// Changes [`EmulatorConfig::batch_records_per_second`]: running batch inference jobs
    /// answer their next records at the new pace, and so do the jobs to come. `Some(0)` counts
    /// as one record a second.
    pub fn set_batch_records_per_second(&self, records_per_second: Option<u32>) {
        self.state.jobs.set_records_per_second(records_per_second);
    }

    /// Changes [`EmulatorConfig::prompt_cache_entries`]: the prompt cache holds at most
    /// `entries` prefixes from now on (the least recently used are dropped at once). `0`
    /// caches nothing: every checkpoint is written, none is ever read.
    pub fn set_prompt_cache_entries(&self, entries: usize) {
        self.state.prompt_cache.set_capacity(entries);
    }

    /// Empties the prompt cache (as `POST /_emulator/reset` does).
    pub fn clear_prompt_cache(&self) {
        self.state.prompt_cache.clear();
    }

    /// Stops accepting connections, lets in-flight requests finish (up to 5 seconds) and waits
    /// for the server task; stops the batch inference jobs still running (they write nothing
    /// more) and the S3 endpoint.
    pub async fn shutdown(self) {
        self.listening.shutdown().await;
        self.state.jobs.clear();
        if let Some(s3) = self.s3 {
            s3.shutdown().await;
        }
    }
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}
