//! An engine: AWS clients for one identity and region, with the limiter, cache and usage
//! counters that every query using it shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message, SpecificToolChoice,
    SystemContentBlock, Tool, ToolChoice, ToolConfiguration, ToolInputSchema, ToolSpecification,
};
use aws_smithy_runtime_api::client::auth::AuthSchemeId;
use aws_smithy_runtime_api::client::auth::http::HTTP_BEARER_AUTH_SCHEME_ID;
use aws_smithy_types::Document;
use futures::{FutureExt, StreamExt};

use super::budget::{Budget, Reservation};
use super::cache::{CacheKey, CacheScope, ResponseCache, Source, cache_key};
use super::config::{CredentialSource, EngineConfig};
use super::families::{self, EmbedOptions, ModelFamily};
use super::identity::{self, Identity, Signing};
use super::limiter::Limiter;
use super::redact::replace_whole;
use super::request::{CallInfo, ChatRole, TextRequest, TextResponse};
use super::retry::{CallFailure, FailureKind, RetryPolicy, one_line};
use super::usage::{ModelCounters, Usage, UsageSnapshot};
use crate::error::{Error, Result};

/// The region used when neither the engine nor the environment names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Output tokens reserved against a tokens-per-minute budget when a request sets no maximum.
pub const DEFAULT_TOKEN_RESERVATION: u64 = 512;

/// How a model is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Api {
    /// The Converse API: one request shape for every chat model (the default).
    #[default]
    Converse,
    /// InvokeModel with the model family's native body.
    Invoke,
}

impl Api {
    /// `converse` or `invoke`.
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

/// What the control plane says of a foundation model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundationModelInfo {
    /// The base model id.
    pub model_id: String,
    /// The model's ARN.
    pub model_arn: String,
    /// The display name.
    pub name: String,
    /// The provider.
    pub provider: String,
    /// Input modalities (`TEXT`, `IMAGE`, …).
    pub input_modalities: Vec<String>,
    /// Output modalities (`TEXT`, `EMBEDDING`, `IMAGE`).
    pub output_modalities: Vec<String>,
    /// Whether responses can stream.
    pub streaming: bool,
    /// `ON_DEMAND`, `PROVISIONED`, `INFERENCE_PROFILE`.
    pub inference_types: Vec<String>,
    /// `ACTIVE` or `LEGACY`.
    pub lifecycle: String,
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
    embed_cache: ResponseCache<Vec<f32>>,
    usage: Usage,
    retry: RetryPolicy,
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

/// Replaces every secret of the configuration found in a message.
fn scrub(message: &str, config: &EngineConfig) -> String {
    let secrets: Vec<&str> = match &config.credentials {
        CredentialSource::Static {
            secret_access_key,
            session_token,
            ..
        } => std::iter::once(secret_access_key.expose())
            .chain(session_token.as_ref().map(super::config::Secret::expose))
            .collect(),
        CredentialSource::ApiKey(k) => vec![k.expose()],
        _ => Vec::new(),
    };
    secrets
        .into_iter()
        .filter(|s| !s.is_empty())
        .fold(message.to_string(), |m, s| replace_whole(&m, s))
}

/// The SDK configuration of an engine: its region (else the environment's, else
/// [`DEFAULT_REGION`]), endpoint, timeouts and credential source, with the SDK's retries off.
async fn load_sdk_config(config: &EngineConfig) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        // This layer retries itself; SDK retries would double attempts and hide them.
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(config.request_timeout)
                .connect_timeout(config.connect_timeout)
                .build(),
        );
    if let Some(region) = &config.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &config.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    match &config.credentials {
        CredentialSource::DefaultChain => {}
        // The profile's region and settings; its credentials are set below, alone.
        CredentialSource::Profile(profile) => loader = loader.profile_name(profile),
        CredentialSource::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                access_key_id,
                secret_access_key.expose(),
                session_token.as_ref().map(|t| t.expose().to_string()),
                None,
                "engine",
            ));
        }
        CredentialSource::ApiKey(_) => loader = loader.no_credentials(),
    }
    let sdk = loader.load().await;
    let region = sdk
        .region()
        .cloned()
        .unwrap_or_else(|| aws_config::Region::new(DEFAULT_REGION));
    let mut builder = sdk.into_builder();
    builder.set_region(Some(region.clone()));
    if let CredentialSource::Profile(profile) = &config.credentials {
        // Only the named profile: the standard chain with `profile_name` would still take the
        // environment's keys first.
        let provider_config = ProviderConfig::default()
            .with_region(Some(region))
            .with_behavior_version(Some(BehaviorVersion::latest()));
        let provider = ProfileFileCredentialsProvider::builder()
            .configure(&provider_config)
            .profile_name(profile)
            .build();
        builder.set_credentials_provider(Some(SharedCredentialsProvider::new(provider)));
    }
    builder.build()
}

/// SigV4's scheme.
const SIGV4_SCHEME_ID: AuthSchemeId = AuthSchemeId::new("sigv4");

/// Where an engine's requests go, for its cache keys: `endpoint_url`, else the environment's
/// Bedrock Runtime or general endpoint, else `AWS` (Bedrock's own endpoint for the region).
fn endpoint_of(config: &EngineConfig, sdk: &aws_config::SdkConfig) -> String {
    config
        .endpoint_url
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_BEDROCK_RUNTIME").ok())
        .or_else(|| sdk.endpoint_url().map(str::to_string))
        .map_or_else(
            || "AWS".to_string(),
            |url| url.trim_end_matches('/').to_string(),
        )
}

/// The runtime and control-plane clients: bearer auth for an API key, SigV4 alone for keys and
/// profiles (an `AWS_BEARER_TOKEN_BEDROCK` of the environment does not replace them), no auth
/// at all for unsigned requests.
fn clients(
    sdk: &aws_config::SdkConfig,
    credentials: &CredentialSource,
    signing: Signing,
) -> (aws_sdk_bedrockruntime::Client, aws_sdk_bedrock::Client) {
    let mut runtime = aws_sdk_bedrockruntime::config::Builder::from(sdk);
    let mut control = aws_sdk_bedrock::config::Builder::from(sdk);
    if let CredentialSource::ApiKey(key) = credentials {
        runtime = runtime
            .bearer_token(aws_sdk_bedrockruntime::config::Token::new(
                key.expose(),
                None,
            ))
            .auth_scheme_preference([HTTP_BEARER_AUTH_SCHEME_ID]);
        control = control
            .bearer_token(aws_sdk_bedrock::config::Token::new(key.expose(), None))
            .auth_scheme_preference([HTTP_BEARER_AUTH_SCHEME_ID]);
    }
    if matches!(
        credentials,
        CredentialSource::Static { .. } | CredentialSource::Profile(_)
    ) {
        runtime = runtime.auth_scheme_preference([SIGV4_SCHEME_ID]);
        control = control.auth_scheme_preference([SIGV4_SCHEME_ID]);
    }
    if signing == Signing::Unsigned {
        runtime = runtime.allow_no_auth();
        control = control.allow_no_auth();
    }
    (
        aws_sdk_bedrockruntime::Client::from_conf(runtime.build()),
        aws_sdk_bedrock::Client::from_conf(control.build()),
    )
}

impl Engine {
    /// Builds the AWS clients and, unless `verify_credentials = false`, checks the identity with
    /// a ListFoundationModels call bounded by `connect_timeout`.
    ///
    /// An explicit identity (keys, `api_key`, `profile_name`) is the only one used. With none,
    /// the engine first asks whether its endpoint (`endpoint_url`, else `AWS_ENDPOINT_URL`) is
    /// the built-in emulator on the loopback interface accepting unsigned requests (its
    /// default): then its requests go unsigned and no credentials are looked up. Otherwise the
    /// standard AWS chain (or the named profile alone) is resolved once here, so a missing
    /// identity is one short error at creation.
    ///
    /// # Errors
    /// When the cache directory cannot be opened, no credentials are found, or the check
    /// fails; the message is short, says what was tried and the fix, and never contains a
    /// secret.
    pub async fn connect(name: &str, config: EngineConfig) -> Result<Arc<Self>> {
        let sdk = load_sdk_config(&config).await;
        let identity::Settled {
            sdk,
            signing,
            identity,
        } = identity::settle(name, &config, sdk).await?;
        let region = sdk
            .region()
            .map_or(DEFAULT_REGION.to_string(), ToString::to_string);
        let endpoint = endpoint_of(&config, &sdk);
        let (runtime, control) = clients(&sdk, &config.credentials, signing);
        let cache_dir = config.cache_dir.as_deref();
        let engine = Arc::new(Self {
            name: name.to_string(),
            region,
            endpoint,
            identity,
            scope: tokio::sync::OnceCell::new(),
            runtime,
            control,
            limiters: Mutex::default(),
            text_cache: ResponseCache::open("text", config.cache_size, cache_dir)?,
            embed_cache: ResponseCache::open("embeddings", config.cache_size, cache_dir)?,
            usage: Usage::default(),
            retry: RetryPolicy {
                max_retries: config.max_retries,
                ..RetryPolicy::default()
            },
            config,
        });
        if engine.config.verify_credentials {
            engine.verify(signing).await?;
        }
        Ok(engine)
    }

    async fn verify(&self, signing: Signing) -> Result<()> {
        let call = self.control.list_foundation_models().send();
        match tokio::time::timeout(self.config.connect_timeout, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::InvalidInput(scrub(
                &self.check_failed(&CallFailure::from_sdk(&e), signing),
                &self.config,
            ))),
            Err(_) => Err(Error::InvalidInput(format!(
                "Engine '{}': no answer from Bedrock within {:?} while checking credentials (ListFoundationModels in {}). Check region_name, endpoint_url and network access, or create the engine with verify_credentials = false.",
                self.name, self.config.connect_timeout, self.region
            ))),
        }
    }

    /// What to say when the credential check failed: a refused identity, an endpoint that
    /// cannot be reached, or another error, each with its fix.
    fn check_failed(&self, failure: &CallFailure, signing: Signing) -> String {
        if let Some(message) = identity::rejected_identity(
            &self.name,
            &self.region,
            &self.config.credentials,
            signing,
            &failure.code,
        ) {
            return message;
        }
        let detail = one_line(failure.message.trim_end_matches('.'), 200);
        match failure.code.as_str() {
            "ConnectionError" => {
                let target = self.config.endpoint_url.as_ref().map_or_else(
                    || format!("Bedrock in {}", self.region),
                    |url| one_line(&super::redact::url_for_display(url), 100),
                );
                format!(
                    "Engine '{}': could not connect to {target} — {}. Check endpoint_url, region_name and network access, or create the engine with verify_credentials = false.",
                    self.name,
                    detail.trim_start_matches("the connection failed: ")
                )
            }
            code => format!(
                "Engine '{}': the credential check (ListFoundationModels in {}) failed — {code}: {detail}. Check region_name and endpoint_url, or create the engine with verify_credentials = false.",
                self.name, self.region
            ),
        }
    }

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

    /// Estimated USD of a call's tokens at the model's price (`None` when it is unknown).
    #[allow(clippy::cast_precision_loss)]
    pub fn cost_usd(&self, model_id: &str, input_tokens: u64, output_tokens: u64) -> Option<f64> {
        self.price(model_id)
            .map(|price| cost_usd(Some(price), input_tokens, output_tokens))
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

    /// GetFoundationModel for the base model of an id, profile id or ARN.
    ///
    /// # Errors
    /// When Bedrock does not know the model; the message names it and where to look.
    pub async fn foundation_model(&self, model_id: &str) -> Result<FoundationModelInfo> {
        let base = families::base_model_id(model_id);
        let out = self
            .control
            .get_foundation_model()
            .model_identifier(base)
            .send()
            .await
            .map_err(|e| {
                let failure = CallFailure::from_sdk(&e);
                Error::InvalidInput(scrub(
                    &format!(
                        "Model '{model_id}' is not available through engine '{}' in {} ({failure}). Check model_id against https://docs.aws.amazon.com/bedrock/latest/userguide/model-ids.html and the models enabled for the account.",
                        self.name, self.region
                    ),
                    &self.config,
                ))
            })?;
        let d = out.model_details().ok_or_else(|| {
            Error::InvalidInput(format!(
                "Model '{model_id}': GetFoundationModel returned no details"
            ))
        })?;
        let names = |items: &[_]| -> Vec<String> {
            items
                .iter()
                .map(|m: &aws_sdk_bedrock::types::ModelModality| m.as_str().to_string())
                .collect()
        };
        Ok(FoundationModelInfo {
            model_id: d.model_id().to_string(),
            model_arn: d.model_arn().to_string(),
            name: d.model_name().unwrap_or_default().to_string(),
            provider: d.provider_name().unwrap_or_default().to_string(),
            input_modalities: names(d.input_modalities()),
            output_modalities: names(d.output_modalities()),
            streaming: d.response_streaming_supported().unwrap_or(false),
            inference_types: d
                .inference_types_supported()
                .iter()
                .map(|t| t.as_str().to_string())
                .collect(),
            lifecycle: d
                .model_lifecycle()
                .map(|l| l.status().as_str().to_string())
                .unwrap_or_default(),
        })
    }

    /// Checks that a model exists and generates text, before any query pays for it.
    ///
    /// # Errors
    /// Unknown model, or a model without TEXT output.
    pub async fn check_text_model(&self, model_id: &str) -> Result<FoundationModelInfo> {
        let info = self.foundation_model(model_id).await?;
        if !info.output_modalities.iter().any(|m| m == "TEXT") {
            return Err(Error::InvalidInput(format!(
                "Model '{model_id}' produces {} output, not TEXT: choose a text model (for example amazon.titan-text-premier-v1:0) to generate answers",
                info.output_modalities.join(", ")
            )));
        }
        Ok(info)
    }

    /// Checks that a model exists and produces embeddings.
    ///
    /// # Errors
    /// Unknown model, a model without EMBEDDING output, or one without a native codec.
    pub async fn check_embedding_model(&self, model_id: &str) -> Result<FoundationModelInfo> {
        let info = self.foundation_model(model_id).await?;
        let family = ModelFamily::from_model_id(model_id);
        if !info.output_modalities.iter().any(|m| m == "EMBEDDING")
            || !family.is_some_and(ModelFamily::is_embedding)
        {
            return Err(Error::InvalidInput(format!(
                "Model '{model_id}' is not a supported embedding model: use amazon.titan-embed-text-v2:0 or cohere.embed-english-v3"
            )));
        }
        Ok(info)
    }

    /// Answers a batch of requests, one result per input in input order (`None` for `None`
    /// inputs). Identical requests are sent once; cached answers cost nothing; up to the
    /// limiter's concurrency run at once. Dropping the future stops sending new requests.
    pub async fn generate(
        self: &Arc<Self>,
        target: &ModelTarget,
        requests: &[Option<TextRequest>],
    ) -> RowResults<TextResponse> {
        self.generate_with(target, requests, &CallOptions::default())
            .await
    }

    /// [`Engine::generate`] under a query's [`CallOptions`] (its budget). Each answer's
    /// [`TextResponse::call`] says whether it cost a request, and its retries and latency.
    pub async fn generate_with(
        self: &Arc<Self>,
        target: &ModelTarget,
        requests: &[Option<TextRequest>],
        options: &CallOptions,
    ) -> RowResults<TextResponse> {
        let counters = self.usage.model(&target.model_id);
        let limiter = self.limiter(&target.model_id);
        let scope = self.cache_scope().await;
        let groups = group_by_key(requests.iter().map(|r| {
            r.as_ref()
                .map(|r| cache_key(&scope, target.api.name(), &target.model_id, r))
        }));
        counters.deduplicated(groups.duplicates);
        // Each request's future is made only when a slot in the window is free: a request
        // future holds the SDK call's whole state (kilobytes), so making a batch's worth up
        // front costs a large allocation and copy per batch. The stream's items are plain
        // slot numbers (an item borrowing data would keep the compiler from proving the batch
        // future `Send`), and each future is boxed where it is made.
        let slots: Vec<usize> = (0..groups.distinct.len())
            .filter(|slot| requests[groups.distinct[*slot].1].is_some())
            .collect();
        let mut answers: Vec<Shared<TextResponse>> = vec![None; groups.distinct.len()];
        let (limiter, counters, groups_ref) = (&limiter, &counters, &groups);
        let mut stream = futures::stream::iter(slots)
            .map(|slot| {
                let (key, first) = groups_ref.distinct[slot];
                async move {
                    match &requests[first] {
                        Some(request) => Some(
                            self.answer_distinct(
                                slot, key, target, request, limiter, counters, options,
                            )
                            .await,
                        ),
                        None => None,
                    }
                }
                .boxed()
            })
            .buffer_unordered(limiter.ceiling())
            .filter_map(std::future::ready);
        while let Some((slot, result)) = stream.next().await {
            answers[slot] = Some(result);
        }
        let mut rows = spread(&groups.slots, &answers);
        // A row repeating an earlier row of the batch was answered without a request.
        for (row, slot) in groups.slots.iter().enumerate() {
            if let (Some(slot), Some(Ok(answer))) = (slot, rows[row].as_mut())
                && groups.distinct[*slot].1 != row
            {
                answer.call = CallInfo {
                    deduplicated: true,
                    ..CallInfo::default()
                };
            }
        }
        rows
    }

    #[allow(clippy::too_many_arguments)]
    async fn answer_distinct(
        self: &Arc<Self>,
        slot: usize,
        key: CacheKey,
        target: &ModelTarget,
        request: &TextRequest,
        limiter: &Arc<Limiter>,
        counters: &ModelCounters,
        options: &CallOptions,
    ) -> (
        usize,
        std::result::Result<Arc<TextResponse>, Arc<CallFailure>>,
    ) {
        let fetch = self.call_text(target, request, limiter, counters, options);
        let (result, source) = self.text_cache.get_or_fetch(key, fetch).await;
        if source != Source::Fetched
            && let Ok(answer) = &result
        {
            counters.cache_hit();
            let mut served = TextResponse::clone(answer);
            served.call = CallInfo {
                cache_hit: true,
                ..CallInfo::default()
            };
            return (slot, Ok(Arc::new(served)));
        }
        (slot, result)
    }

    async fn call_text(
        self: &Arc<Self>,
        target: &ModelTarget,
        request: &TextRequest,
        limiter: &Arc<Limiter>,
        counters: &ModelCounters,
        options: &CallOptions,
    ) -> std::result::Result<TextResponse, CallFailure> {
        let output_reserve = request
            .params
            .max_tokens
            .map_or(DEFAULT_TOKEN_RESERVATION, u64::from);
        let input_estimate = request.estimated_input_tokens();
        let price = self.usage.price(&target.model_id);
        let budget = options.budget.as_ref().map(|budget| BudgetGuard {
            budget,
            estimate_usd: cost_usd(price, input_estimate, output_reserve),
        });
        let (mut response, attempts) = self
            .with_retries(
                &target.model_id,
                limiter,
                counters,
                input_estimate + output_reserve,
                budget.as_ref(),
                |reservation| async move {
                    let response = match reservation {
                        None => self.call_text_once(target, request).await?,
                        Some(reservation) => {
                            self.call_text_admitted(target, request, reservation, price)
                                .await?
                        }
                    };
                    let (input, output) = (response.input_tokens, response.output_tokens);
                    Ok((response, input, output))
                },
            )
            .await?;
        response.call = CallInfo {
            cache_hit: false,
            deduplicated: false,
            retries: attempts.retries,
            throttles: attempts.throttles,
            latency_ms: attempts.latency_ms,
        };
        Ok(response)
    }

    /// One attempt admitted by a query's budget. It runs as a task of its own, which settles
    /// the reservation when the attempt ends: dropping the query (after an error elsewhere,
    /// say) neither cuts a request the budget counted as sent nor loses its answer's cost, so
    /// the budget's counts are what Bedrock saw.
    async fn call_text_admitted(
        self: &Arc<Self>,
        target: &ModelTarget,
        request: &TextRequest,
        reservation: Reservation,
        price: Option<(f64, f64)>,
    ) -> std::result::Result<TextResponse, CallFailure> {
        let (engine, target, request) = (Arc::clone(self), target.clone(), request.clone());
        let attempt = tokio::spawn(async move {
            let outcome = engine.call_text_once(&target, &request).await;
            let actual = outcome
                .as_ref()
                .ok()
                .map(|r| cost_usd(price, r.input_tokens, r.output_tokens));
            reservation.settle(actual);
            outcome
        });
        attempt.await.unwrap_or_else(|e| {
            Err(CallFailure::fatal(
                "InternalError",
                format!("the request's task ended without an answer: {e}"),
            ))
        })
    }

    /// Runs attempts until one succeeds, a failure is fatal or the retries run out. Every
    /// attempt holds a limiter slot and is counted; throttling shrinks the limit. With a
    /// budget, each attempt is admitted first and gets its [`Reservation`], which it settles;
    /// a refusal ends the call. `attempt` returns the value with its input and output tokens.
    async fn with_retries<T, F, Fut>(
        &self,
        model_id: &str,
        limiter: &Arc<Limiter>,
        counters: &ModelCounters,
        reserve: u64,
        budget: Option<&BudgetGuard<'_>>,
        mut attempt_once: F,
    ) -> std::result::Result<(T, Attempts), CallFailure>
    where
        F: FnMut(Option<Reservation>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(T, u64, u64), CallFailure>>,
    {
        let mut attempt = 0;
        let mut throttles = 0;
        loop {
            let permit = limiter.acquire(reserve).await;
            let reservation = match budget {
                Some(guard) => Some(guard.budget.admit(guard.estimate_usd)?),
                None => None,
            };
            counters.request();
            if attempt > 0 {
                counters.retry();
            }
            let started = Instant::now();
            let outcome = attempt_once(reservation).await;
            let failure = match outcome {
                Ok((value, input, output)) => {
                    permit.succeeded(input + output);
                    let latency = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    counters.success(input, output, latency);
                    let attempts = Attempts {
                        retries: attempt,
                        throttles,
                        latency_ms: latency,
                    };
                    return Ok((value, attempts));
                }
                Err(failure) => failure,
            };
            if failure.kind == FailureKind::Throttled {
                throttles += 1;
                counters.throttle();
                permit.throttled();
            } else {
                drop(permit);
            }
            if failure.kind == FailureKind::Fatal || attempt >= self.retry.max_retries {
                counters.failure();
                return Err(with_attempts(failure, attempt + 1));
            }
            tracing::debug!(model = %model_id, attempt, %failure, "retrying");
            tokio::time::sleep(self.retry.backoff(attempt)).await;
            attempt += 1;
        }
    }

    async fn call_text_once(
        &self,
        target: &ModelTarget,
        request: &TextRequest,
    ) -> std::result::Result<TextResponse, CallFailure> {
        match target.api {
            Api::Converse => self.converse_once(&target.model_id, request).await,
            Api::Invoke if request.tool.is_some() => Err(CallFailure::fatal(
                "InvalidRequest",
                "structured output (a forced tool) needs the Converse API: use api = 'converse'",
            )),
            Api::Invoke => {
                let family = ModelFamily::from_model_id(&target.model_id).ok_or_else(|| {
                    CallFailure::fatal(
                        "UnsupportedModel",
                        format!(
                            "model '{}' has no native InvokeModel codec here: use api = 'converse'",
                            target.model_id
                        ),
                    )
                })?;
                let body = families::encode_text_request(family, request)
                    .map_err(|e| CallFailure::fatal("InvalidRequest", e.to_string()))?;
                let call = self
                    .runtime
                    .invoke_model()
                    .model_id(&target.model_id)
                    .content_type("application/json")
                    .accept("application/json")
                    .body(Blob::new(body.to_string()))
                    .send();
                let out = Box::pin(call)
                    .await
                    .map_err(|e| CallFailure::from_sdk(&e))?;
                families::decode_text_response(family, out.body().as_ref())
                    .map_err(|e| unreadable(&e))
            }
        }
    }

    async fn converse_once(
        &self,
        model_id: &str,
        request: &TextRequest,
    ) -> std::result::Result<TextResponse, CallFailure> {
        let invalid =
            |e: &dyn std::fmt::Display| CallFailure::fatal("InvalidRequest", e.to_string());
        let mut call = self.runtime.converse().model_id(model_id);
        for message in &request.messages {
            let role = match message.role {
                ChatRole::User => ConversationRole::User,
                ChatRole::Assistant => ConversationRole::Assistant,
            };
            let mut builder = Message::builder().role(role);
            for text in &message.texts {
                builder = builder.content(ContentBlock::Text(text.clone()));
            }
            call = call.messages(builder.build().map_err(|e| invalid(&e))?);
        }
        if let Some(system) = &request.system {
            call = call.system(SystemContentBlock::Text(system.clone()));
        }
        let p = &request.params;
        if p.max_tokens.is_some()
            || p.temperature.is_some()
            || p.top_p.is_some()
            || !p.stop.is_empty()
        {
            call = call.inference_config(
                InferenceConfiguration::builder()
                    .set_max_tokens(p.max_tokens.map(|m| i32::try_from(m).unwrap_or(i32::MAX)))
                    .set_temperature(p.temperature)
                    .set_top_p(p.top_p)
                    .set_stop_sequences((!p.stop.is_empty()).then(|| p.stop.clone()))
                    .build(),
            );
        }
        if let Some(extra) = &p.extra {
            call = call.additional_model_request_fields(to_document(extra));
        }
        if let Some(tool) = &request.tool {
            let spec = ToolSpecification::builder()
                .name(&tool.name)
                .description(&tool.description)
                .input_schema(ToolInputSchema::Json(to_document(&tool.schema)))
                .build()
                .map_err(|e| invalid(&e))?;
            let choice = SpecificToolChoice::builder()
                .name(&tool.name)
                .build()
                .map_err(|e| invalid(&e))?;
            let config = ToolConfiguration::builder()
                .tools(Tool::ToolSpec(spec))
                .tool_choice(ToolChoice::Tool(choice))
                .build()
                .map_err(|e| invalid(&e))?;
            call = call.tool_config(config);
        }
        // Every SDK call is boxed where it is made: its future is kilobytes, and each future
        // that held it inline (retries, cache, the request window) would copy it again.
        let out = Box::pin(call.send())
            .await
            .map_err(|e| CallFailure::from_sdk(&e))?;
        let tool_input = out
            .output()
            .and_then(|o| o.as_message().ok())
            .and_then(|m| m.content().iter().find_map(|c| c.as_tool_use().ok()))
            .map(|t| from_document(t.input()));
        let text = out
            .output()
            .and_then(|o| o.as_message().ok())
            .map(|m| {
                m.content()
                    .iter()
                    .filter_map(|c| c.as_text().ok().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join("")
            })
            .unwrap_or_default();
        let (input_tokens, output_tokens) = out.usage().map_or((0, 0), |u| {
            (
                u64::try_from(u.input_tokens()).unwrap_or(0),
                u64::try_from(u.output_tokens()).unwrap_or(0),
            )
        });
        Ok(TextResponse {
            text,
            input_tokens,
            output_tokens,
            stop_reason: out.stop_reason().as_str().to_string(),
            tool_input,
            call: CallInfo::default(),
        })
    }

    /// Embeds texts, one vector per input in input order (`None` for `None` inputs). Identical
    /// texts are embedded once, cached vectors cost nothing, and families that take several
    /// texts a call (Cohere: 96) get them batched.
    pub async fn embed(
        self: &Arc<Self>,
        model_id: &str,
        texts: &[Option<String>],
        options: &EmbedOptions,
    ) -> Result<RowResults<Vec<f32>>> {
        let family = ModelFamily::from_model_id(model_id)
            .filter(|f| f.is_embedding())
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "Model '{model_id}' is not a supported embedding model: use amazon.titan-embed-text-v2:0 or cohere.embed-english-v3"
                ))
            })?;
        let counters = self.usage.model(model_id);
        let limiter = self.limiter(model_id);
        let option_key = (
            options.dimensions,
            options.normalize,
            options.input_type.clone(),
        );
        let scope = self.cache_scope().await;
        let groups = group_by_key(texts.iter().map(|t| {
            t.as_ref()
                .map(|t| cache_key(&scope, "embed", model_id, &(&option_key, t)))
        }));
        counters.deduplicated(groups.duplicates);
        let mut vectors: Vec<Shared<Vec<f32>>> = vec![None; groups.distinct.len()];
        let mut missing = Vec::new();
        for (slot, (key, _)) in groups.distinct.iter().enumerate() {
            match self.embed_cache.get(key).await {
                Some(v) => {
                    counters.cache_hit();
                    vectors[slot] = Some(Ok(v));
                }
                None => missing.push(slot),
            }
        }
        let per_call = family.max_texts_per_call().max(1);
        // As in `generate_with`: each call's future is made when the window has room.
        let (limiter, counters, groups_ref) = (&limiter, &counters, &groups);
        let chunks = missing.len().div_ceil(per_call);
        let missing_ref = &missing;
        let mut stream = futures::stream::iter(0..chunks)
            .map(|chunk| {
                let slots =
                    &missing_ref[chunk * per_call..missing_ref.len().min((chunk + 1) * per_call)];
                let batch: Vec<&str> = slots
                    .iter()
                    .filter_map(|s| texts[groups_ref.distinct[*s].1].as_deref())
                    .collect();
                self.embed_chunk(slots, batch, model_id, family, options, limiter, counters)
                    .boxed()
            })
            .buffer_unordered(limiter.ceiling());
        while let Some((slots, result)) = stream.next().await {
            match result {
                Ok(batch) if batch.len() == slots.len() => {
                    for (slot, vector) in slots.iter().zip(batch) {
                        let vector = Arc::new(vector);
                        self.embed_cache
                            .insert(groups.distinct[*slot].0, Arc::clone(&vector))
                            .await;
                        vectors[*slot] = Some(Ok(vector));
                    }
                }
                Ok(batch) => {
                    let failure = Arc::new(CallFailure::fatal(
                        "ResponseError",
                        format!(
                            "{} vectors came back for {} texts",
                            batch.len(),
                            slots.len()
                        ),
                    ));
                    for slot in slots {
                        vectors[*slot] = Some(Err(Arc::clone(&failure)));
                    }
                }
                Err(failure) => {
                    let failure = Arc::new(failure);
                    for slot in slots {
                        vectors[*slot] = Some(Err(Arc::clone(&failure)));
                    }
                }
            }
        }
        Ok(spread(&groups.slots, &vectors))
    }

    #[allow(clippy::too_many_arguments)]
    async fn embed_chunk<'s>(
        &self,
        slots: &'s [usize],
        batch: Vec<&str>,
        model_id: &str,
        family: ModelFamily,
        options: &EmbedOptions,
        limiter: &Arc<Limiter>,
        counters: &ModelCounters,
    ) -> (&'s [usize], std::result::Result<Vec<Vec<f32>>, CallFailure>) {
        let result = self
            .call_embed(model_id, family, &batch, options, limiter, counters)
            .await;
        (slots, result)
    }

    async fn call_embed(
        &self,
        model_id: &str,
        family: ModelFamily,
        texts: &[&str],
        options: &EmbedOptions,
        limiter: &Arc<Limiter>,
        counters: &ModelCounters,
    ) -> std::result::Result<Vec<Vec<f32>>, CallFailure> {
        let body = families::encode_embed_request(family, texts, options)
            .map_err(|e| CallFailure::fatal("InvalidRequest", e.to_string()))?
            .to_string();
        let reserve = texts
            .iter()
            .map(|t| (t.chars().count() as u64).div_ceil(4))
            .sum::<u64>()
            .max(1);
        self.with_retries(model_id, limiter, counters, reserve, None, |_| async {
            let call = self
                .runtime
                .invoke_model()
                .model_id(model_id)
                .content_type("application/json")
                .accept("application/json")
                .body(Blob::new(body.clone()))
                .send();
            let out = Box::pin(call)
                .await
                .map_err(|e| CallFailure::from_sdk(&e))?;
            let (vectors, tokens) = families::decode_embed_response(family, out.body().as_ref())
                .map_err(|e| unreadable(&e))?;
            Ok((vectors, tokens, 0))
        })
        .await
        .map(|(vectors, _)| vectors)
    }

    /// The default per-attempt timeout, for callers that bound whole batches.
    pub fn request_timeout(&self) -> Duration {
        self.config.request_timeout
    }
}

/// A response body the codec could not read: retried like a dropped connection.
fn unreadable(e: &Error) -> CallFailure {
    CallFailure {
        kind: FailureKind::Transient,
        code: "ResponseError".into(),
        message: e.to_string(),
    }
}

fn with_attempts(mut failure: CallFailure, attempts: u32) -> CallFailure {
    if attempts > 1 {
        failure.message = format!(
            "{} (after {attempts} attempts)",
            failure.message.trim_end_matches('.')
        );
    }
    failure
}

/// The outcome of one distinct input, shared by every row that repeats it.
type Shared<T> = Option<std::result::Result<Arc<T>, Arc<CallFailure>>>;

/// What a query asks of the calls it makes.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// The query's spending limits, shared by all its calls.
    pub budget: Option<Arc<Budget>>,
}

/// A budget with the estimate of one request's attempts.
struct BudgetGuard<'a> {
    budget: &'a Arc<Budget>,
    estimate_usd: f64,
}

/// How a call went before it succeeded.
#[derive(Debug, Clone, Copy)]
struct Attempts {
    retries: u32,
    throttles: u32,
    latency_ms: u64,
}

/// Estimated USD of tokens at a price per 1K input and output tokens (0 when unknown).
#[allow(clippy::cast_precision_loss)]
fn cost_usd(price: Option<(f64, f64)>, input_tokens: u64, output_tokens: u64) -> f64 {
    price.map_or(0.0, |(input, output)| {
        (input_tokens as f64 * input + output_tokens as f64 * output) / 1000.0
    })
}

/// One result per row from the results of the distinct inputs.
fn spread<T: Clone>(slots: &[Option<usize>], shared: &[Shared<T>]) -> RowResults<T> {
    slots
        .iter()
        .map(|slot| {
            slot.and_then(|s| shared[s].as_ref()).map(|r| match r {
                Ok(v) => Ok(T::clone(v)),
                Err(e) => Err(CallFailure::clone(e)),
            })
        })
        .collect()
}

/// Inputs grouped by key: the distinct keys with the index of their first input, each input's
/// slot among the distinct keys, and how many inputs repeated an earlier one.
struct Groups {
    distinct: Vec<(CacheKey, usize)>,
    slots: Vec<Option<usize>>,
    duplicates: u64,
}

fn group_by_key(keys: impl Iterator<Item = Option<CacheKey>>) -> Groups {
    let mut index: HashMap<CacheKey, usize> = HashMap::new();
    let mut groups = Groups {
        distinct: Vec::new(),
        slots: Vec::new(),
        duplicates: 0,
    };
    for (i, key) in keys.enumerate() {
        let slot = key.map(|key| {
            *index.entry(key).or_insert_with(|| {
                groups.distinct.push((key, i));
                groups.distinct.len() - 1
            })
        });
        groups.slots.push(slot);
    }
    let non_null = groups.slots.iter().flatten().count();
    groups.duplicates = (non_null - groups.distinct.len()) as u64;
    groups
}

/// A JSON value as a Smithy document (Converse's `additionalModelRequestFields`).
pub(crate) fn to_document(value: &serde_json::Value) -> Document {
    use aws_smithy_types::Number;
    match value {
        serde_json::Value::Null => Document::Null,
        serde_json::Value::Bool(b) => Document::Bool(*b),
        serde_json::Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or_default())
        }),
        serde_json::Value::String(s) => Document::String(s.clone()),
        serde_json::Value::Array(items) => Document::Array(items.iter().map(to_document).collect()),
        serde_json::Value::Object(map) => Document::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_document(v)))
                .collect(),
        ),
    }
}

/// The JSON value of a Smithy document.
pub(crate) fn from_document(document: &Document) -> serde_json::Value {
    use aws_smithy_types::Number;
    match document {
        Document::Null => serde_json::Value::Null,
        Document::Bool(b) => serde_json::Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => serde_json::Value::from(*u),
        Document::Number(Number::NegInt(i)) => serde_json::Value::from(*i),
        Document::Number(Number::Float(f)) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Document::String(s) => serde_json::Value::String(s.clone()),
        Document::Array(items) => {
            serde_json::Value::Array(items.iter().map(from_document).collect())
        }
        Document::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), from_document(v)))
                .collect(),
        ),
    }
}

/// Compile-time check: batches can run on any tokio worker (DataFusion's async UDFs need it).
#[allow(dead_code)]
fn batch_futures_are_send(
    engine: Arc<Engine>,
    target: ModelTarget,
    requests: Vec<Option<TextRequest>>,
) {
    fn send<T: Send>(_: T) {}
    let texts: Vec<Option<String>> = Vec::new();
    send(async move {
        engine.generate(&target, &requests).await;
        engine.embed("m", &texts, &EmbedOptions::default()).await
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_keeps_order_and_counts_duplicates() {
        let k = |b: u8| Some([b; 32]);
        let g = group_by_key([k(1), None, k(2), k(1), k(1), None, k(3)].into_iter());
        assert_eq!(
            g.distinct
                .iter()
                .map(|(_, first)| *first)
                .collect::<Vec<_>>(),
            vec![0, 2, 6]
        );
        assert_eq!(
            g.slots,
            vec![Some(0), None, Some(1), Some(0), Some(0), None, Some(2)]
        );
        assert_eq!(g.duplicates, 2);
    }

    #[test]
    fn scrub_removes_secrets_from_messages() {
        let config = EngineConfig {
            credentials: CredentialSource::Static {
                access_key_id: "AKID".into(),
                secret_access_key: super::super::config::Secret::new("s3cr3t"),
                session_token: None,
            },
            ..EngineConfig::default()
        };
        assert_eq!(scrub("bad s3cr3t here", &config), "bad ** redacted ** here");
        assert_eq!(
            scrub("key='s3cr3t', again:s3cr3t", &config),
            "key='** redacted **', again:** redacted **"
        );
    }

    #[test]
    fn scrub_leaves_words_that_merely_contain_a_short_secret() {
        let config = EngineConfig {
            credentials: CredentialSource::ApiKey(super::super::config::Secret::new("k")),
            ..EngineConfig::default()
        };
        assert_eq!(
            scrub("Check the key k (k)", &config),
            "Check the key ** redacted ** (** redacted **)"
        );
    }
}
