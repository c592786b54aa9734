//! The HTTP server: routing, authentication, the load model, and responses.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use serde_json::Value;
use tokio::sync::mpsc;

use super::answer::{self, Reply, StopReason};
use super::catalog::{CatalogModel, Family};
use super::converse::Tiering;
use super::load::{Fault, LoadModel, QuotaExceeded, Quotas};
use super::prompt_cache::{CachePlan, CacheUse, PromptCache};
use super::stats::{EmulatorStats, LoggedRequest};
use super::wire::{ApiError, ErrorCode};
use super::{
    EmulatorConfig, auth, batch, control, converse, count_tokens, directive, embed, eventstream,
    families, model_id,
};

/// The `service` named by `GET /_emulator/identity`.
pub(crate) const IDENTITY_SERVICE: &str = "datafusion-bedrock-emulator";

/// Shared server state.
pub(crate) struct State {
    config: EmulatorConfig,
    load: RwLock<Arc<LoadModel>>,
    quotas: Quotas,
    directives: directive::Directives,
    pub(crate) stats: Arc<EmulatorStats>,
    /// The batch inference jobs.
    pub(crate) jobs: batch::Jobs,
    /// The Converse prompt cache.
    pub(crate) prompt_cache: PromptCache,
    sequence: AtomicU64,
}

impl State {
    pub(crate) fn new(config: EmulatorConfig) -> Self {
        let stats = Arc::new(EmulatorStats::new(config.request_log_capacity));
        let settings = batch::Settings::new(
            config.s3_root.clone(),
            config.batch_step,
            config.batch_records_per_second,
        );
        Self {
            load: RwLock::new(Arc::new(config.load.clone())),
            quotas: Quotas::default(),
            directives: directive::Directives::default(),
            jobs: batch::Jobs::new(settings, Arc::clone(&stats)),
            prompt_cache: PromptCache::new(config.prompt_cache_entries),
            stats,
            sequence: AtomicU64::new(0),
            config,
        }
    }

    pub(crate) fn set_load(&self, load: LoadModel) {
        *self.load.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(load);
        self.quotas.clear();
        self.sequence.store(0, Ordering::SeqCst);
    }

    fn load(&self) -> Arc<LoadModel> {
        Arc::clone(&self.load.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Counts a runtime request in flight until dropped (moved into stream tasks).
struct InFlight(Arc<State>);

impl InFlight {
    fn enter(state: &Arc<State>) -> Self {
        state.stats.enter();
        Self(Arc::clone(state))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.stats.exit();
    }
}

/// A response body: whole, or streamed from a task.
pub(crate) enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

/// Returned by the service to close the connection without a response.
#[derive(Debug)]
pub(crate) struct DroppedConnection;

impl std::fmt::Display for DroppedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DroppedConnection {}

type Served = Result<Response<Body>, DroppedConnection>;

/// The service answering one connection's requests from `state`.
pub(crate) fn service(
    state: Arc<State>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = DroppedConnection,
    Future = impl Future<Output = Served> + Send + 'static,
> + Send
+ 'static {
    service_fn(move |req| handle(Arc::clone(&state), req))
}

/// The runtime operations, by their path suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Converse,
    ConverseStream,
    InvokeModel,
    InvokeModelWithResponseStream,
    CountTokens,
}

impl Operation {
    fn from_action(action: &str) -> Option<Self> {
        Some(match action {
            "converse" => Self::Converse,
            "converse-stream" => Self::ConverseStream,
            "invoke" => Self::InvokeModel,
            "invoke-with-response-stream" => Self::InvokeModelWithResponseStream,
            "count-tokens" => Self::CountTokens,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Converse => "Converse",
            Self::ConverseStream => "ConverseStream",
            Self::InvokeModel => "InvokeModel",
            Self::InvokeModelWithResponseStream => "InvokeModelWithResponseStream",
            Self::CountTokens => "CountTokens",
        }
    }

    fn streams(self) -> bool {
        matches!(
            self,
            Self::ConverseStream | Self::InvokeModelWithResponseStream
        )
    }
}

enum Route<'a> {
    Identity,
    Stats,
    Reset,
    List,
    Get(&'a str),
    Runtime(Operation, &'a str),
    CreateJob,
    GetJob(&'a str),
    ListJobs,
    StopJob(&'a str),
    Unknown,
}

impl Route<'_> {
    /// The operation name counted in the stats for a request that fails authentication.
    fn operation(&self) -> &'static str {
        match self {
            Route::List => "ListFoundationModels",
            Route::Get(_) => "GetFoundationModel",
            Route::Runtime(op, _) => op.name(),
            Route::CreateJob => "CreateModelInvocationJob",
            Route::GetJob(_) => "GetModelInvocationJob",
            Route::ListJobs => "ListModelInvocationJobs",
            Route::StopJob(_) => "StopModelInvocationJob",
            _ => "Unknown",
        }
    }
}

fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["_emulator", "identity"]) => Route::Identity,
        (&Method::GET, ["_emulator", "stats"]) => Route::Stats,
        (&Method::POST, ["_emulator", "reset"]) => Route::Reset,
        (&Method::GET, ["foundation-models"]) => Route::List,
        (&Method::GET, ["foundation-models", id]) => Route::Get(id),
        (&Method::POST, ["model-invocation-job"]) => Route::CreateJob,
        (&Method::GET, ["model-invocation-job", id]) => Route::GetJob(id),
        (&Method::POST, ["model-invocation-job", id, "stop"]) => Route::StopJob(id),
        (&Method::GET, ["model-invocation-jobs"]) => Route::ListJobs,
        (&Method::POST, ["model", id, action]) => match Operation::from_action(action) {
            Some(op) => Route::Runtime(op, id),
            None => Route::Unknown,
        },
        _ => Route::Unknown,
    }
}

fn request_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

fn json_response(status: u16, body: &Value) -> Response<Body> {
    full_response(status, "application/json", Bytes::from(body.to_string()))
}

fn full_response(status: u16, content_type: &str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::Full(Some(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    if let Ok(v) = content_type.parse() {
        response.headers_mut().insert("content-type", v);
    }
    response
}

fn error_response(error: &ApiError) -> Response<Body> {
    let mut response = full_response(
        error.code.status(),
        "application/json",
        Bytes::from(error.body()),
    );
    if let Ok(v) = error.code.header_value().parse() {
        response.headers_mut().insert("x-amzn-ErrorType", v);
    }
    response
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Served {
    let method = req.method().clone();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query.as_str(), ""));
    let headers = req.headers().clone();
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(DroppedConnection),
    };
    let id = request_id(state.sequence.load(Ordering::Relaxed));
    let route = route(&method, path);
    let mut response = match route {
        Route::Identity => json_response(200, &identity(&state.config)),
        Route::Stats => json_response(
            200,
            &serde_json::to_value(state.stats.snapshot()).unwrap_or_default(),
        ),
        Route::Reset => {
            state.stats.reset();
            state.quotas.clear();
            state.directives.clear();
            state.jobs.clear();
            state.prompt_cache.clear();
            json_response(200, &serde_json::json!({}))
        }
        _ => {
            let signed = auth::SignedRequest {
                method: method.as_str(),
                path_and_query: &path_and_query,
                headers: &headers,
                body: &body,
            };
            if let Err(e) =
                auth::authenticate(&signed, &state.config.credentials, &state.config.api_keys)
            {
                state.stats.record("", route.operation(), e.code.status());
                error_response(&e)
            } else {
                match route {
                    Route::List => {
                        control_plane(&state, "ListFoundationModels", "", control::list(query))
                    }
                    Route::Get(raw) => {
                        control_plane(&state, "GetFoundationModel", raw, control::get(raw))
                    }
                    Route::Runtime(op, raw) => runtime(&state, op, raw, &headers, &body).await?,
                    Route::CreateJob => {
                        let (model, result) = state.jobs.create(&body);
                        recorded(&state, route.operation(), &model, result)
                    }
                    Route::GetJob(raw) => {
                        let (model, result) = state.jobs.get(raw);
                        recorded(&state, route.operation(), &model, result)
                    }
                    Route::ListJobs => {
                        recorded(&state, route.operation(), "", state.jobs.list(query))
                    }
                    Route::StopJob(raw) => {
                        let (model, result) = state.jobs.stop(raw);
                        recorded(&state, route.operation(), &model, result)
                    }
                    _ => {
                        state.stats.record("", "Unknown", 404);
                        error_response(&ApiError::new(
                            ErrorCode::UnknownOperation,
                            "UnknownOperationException",
                        ))
                    }
                }
            }
        }
    };
    if let Ok(v) = id.parse() {
        response.headers_mut().insert("x-amzn-RequestId", v);
    }
    Ok(response)
}

/// What `GET /_emulator/identity` says: that this is the built-in emulator, its version, and
/// whether it accepts requests without a signature (no credentials or API keys configured),
/// so a client without credentials can tell it may call it unsigned.
fn identity(config: &EmulatorConfig) -> Value {
    serde_json::json!({
        "service": IDENTITY_SERVICE,
        "version": env!("CARGO_PKG_VERSION"),
        "accepts_unsigned_requests": config.credentials.is_empty() && config.api_keys.is_empty(),
    })
}

fn control_plane(
    state: &State,
    operation: &str,
    raw_id: &str,
    result: Result<Value, ApiError>,
) -> Response<Body> {
    let model = model_id::percent_decode(raw_id).unwrap_or_default();
    recorded(state, operation, &model, result)
}

/// A control-plane response, counted in the stats under the model and operation.
fn recorded(
    state: &State,
    operation: &str,
    model: &str,
    result: Result<Value, ApiError>,
) -> Response<Body> {
    match result {
        Ok(body) => {
            state.stats.record(model, operation, 200);
            json_response(200, &body)
        }
        Err(e) => {
            state.stats.record(model, operation, e.code.status());
            error_response(&e)
        }
    }
}

/// What a validated runtime request will produce.
enum Work {
    Text {
        conversation: answer::Conversation,
        max_tokens: u32,
        stop_sequences: Vec<String>,
        tool: Option<converse::ToolRequest>,
        /// A Converse request's prompt caching (`None`: no `cachePoint`, or not Converse).
        cache: Option<CachePlan>,
    },
    Embedding(embed::Embedded),
}

impl Work {
    /// Tokens reserved against a tokens-per-minute quota when the request starts.
    fn reservation(&self) -> u32 {
        match self {
            Work::Text {
                conversation,
                max_tokens,
                ..
            } => conversation.input_tokens().saturating_add(*max_tokens),
            Work::Embedding(e) => e.input_tokens,
        }
    }

    /// The prompt caching the request asks for.
    fn cache_plan(&self) -> Option<&CachePlan> {
        match self {
            Work::Text { cache, .. } => cache.as_ref(),
            Work::Embedding(_) => None,
        }
    }

    /// The model's reply, and the tool call when the request forced one.
    fn answer(&self, model: &CatalogModel) -> (Reply, Option<converse::ToolCall>) {
        match self {
            Work::Text {
                conversation,
                max_tokens,
                stop_sequences,
                tool,
                ..
            } => match tool {
                Some(t) => {
                    // Several rows in one request: one answer each (see `packed`).
                    if let Some((call, reply)) =
                        super::packed::answer(model.id, t, conversation, *max_tokens)
                    {
                        return (reply, Some(call));
                    }
                    let call = converse::tool_use(t, conversation);
                    let text = call.input.to_string();
                    let reply = Reply {
                        input_tokens: conversation.input_tokens(),
                        output_tokens: answer::count_text_tokens(&text),
                        text,
                        stop: StopReason::EndTurn,
                    };
                    (reply, Some(call))
                }
                None => (
                    answer::reply(model.id, conversation, *max_tokens, stop_sequences),
                    None,
                ),
            },
            Work::Embedding(e) => (
                Reply {
                    text: String::new(),
                    input_tokens: e.input_tokens,
                    output_tokens: 0,
                    stop: StopReason::EndTurn,
                },
                None,
            ),
        }
    }
}

/// Whether the model can be invoked at all under this id: not a profile-only model named by its
/// base id, not a model listed for its metadata only.
pub(crate) fn check_model(model: &CatalogModel, via_profile: bool) -> Result<(), ApiError> {
    if !model.on_demand() && !via_profile {
        return Err(ApiError::validation(format!(
            "Invocation of model ID {} with on-demand throughput isn\u{2019}t supported. Retry your request with the ID or ARN of an inference profile that contains this model.",
            model.id
        )));
    }
    if model.family == Family::MetadataOnly {
        return Err(ApiError::validation(format!(
            "The emulator lists {} for its metadata only and does not run it.",
            model.id
        )));
    }
    Ok(())
}

/// A header's value as text (invalid UTF-8 replaced), when the request has the header.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Validates a runtime request: the work it asks for and its service tier and latency (from
/// the Converse body, or from the `InvokeModel` headers).
fn validate(
    op: Operation,
    model: &'static CatalogModel,
    via_profile: bool,
    body: &Value,
    headers: &HeaderMap,
) -> Result<(Work, Tiering), ApiError> {
    check_model(model, via_profile)?;
    if let Operation::Converse | Operation::ConverseStream = op {
        let r = converse::parse(body, model)?;
        let work = Work::Text {
            conversation: r.conversation,
            max_tokens: r.max_tokens.unwrap_or(model.default_max_tokens),
            stop_sequences: r.stop_sequences,
            tool: r.tool,
            cache: r.cache,
        };
        return Ok((work, r.tiering));
    }
    let tiering = Tiering::from_headers(
        header_text(headers, converse::SERVICE_TIER_HEADER).as_deref(),
        header_text(headers, converse::LATENCY_HEADER).as_deref(),
    )?;
    let work = if model.family.is_embedding() {
        if op.streams() {
            return Err(ApiError::validation(
                "The model is unsupported for streaming.",
            ));
        }
        embed::invoke(model, body).map(Work::Embedding)?
    } else {
        let r = families::parse(model, body)?;
        Work::Text {
            conversation: r.conversation,
            max_tokens: r.max_tokens.unwrap_or(model.default_max_tokens),
            stop_sequences: r.stop_sequences,
            tool: None,
            cache: None,
        }
    };
    Ok((work, tiering.check(model)?))
}

/// What answering a request produced: the reply, the tool call when the request forced one,
/// and what the prompt cache served when the request carried a `cachePoint`.
struct Outcome<'a> {
    reply: &'a Reply,
    tool_call: Option<&'a converse::ToolCall>,
    cache: Option<&'a CacheUse>,
}

/// The body of a successful non-streaming response (`Converse` or `InvokeModel`); a Converse
/// body with `tiering` says the service tier used.
fn response_body(
    op: Operation,
    model: &CatalogModel,
    work: &Work,
    outcome: &Outcome<'_>,
    latency_ms: u64,
    tiering: Option<Tiering>,
) -> Value {
    let reply = outcome.reply;
    match (work, op) {
        (_, Operation::Converse) => {
            converse::response(reply, outcome.tool_call, latency_ms, tiering, outcome.cache)
        }
        (Work::Embedding(e), _) => e.body.clone(),
        _ => families::response(model, reply),
    }
}

/// A request answered by [`answer_request`]: the response body and its tokens.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answered {
    pub body: Value,
    pub input_tokens: u32,
    pub output_tokens: u32,
}

/// Validates a `Converse` or `InvokeModel` body for a model and answers it exactly as the
/// runtime route does, without the load model (latency, quotas, faults), directives or stats:
/// the validation error, or the response body with its tokens (`metrics.latencyMs` is 0).
/// A Converse body's `serviceTier` and `performanceConfig` are validated as on the runtime
/// route, but the answer does not echo them (batch inference is not served in a tier); its
/// `cachePoint` blocks are validated too, but no prompt cache is used (the usage is as
/// without them). Batch inference answers its records with it.
pub(crate) fn answer_request(
    op: Operation,
    model: &'static CatalogModel,
    via_profile: bool,
    body: &Value,
) -> Result<Answered, ApiError> {
    let (work, _) = validate(op, model, via_profile, body, &HeaderMap::new())?;
    let (reply, tool_call) = work.answer(model);
    let outcome = Outcome {
        reply: &reply,
        tool_call: tool_call.as_ref(),
        cache: None,
    };
    Ok(Answered {
        body: response_body(op, model, &work, &outcome, 0, None),
        input_tokens: reply.input_tokens,
        output_tokens: reply.output_tokens,
    })
}

/// An error response, counted in the stats under the model and operation.
fn failed(state: &State, op: Operation, model: &str, e: &ApiError) -> Response<Body> {
    state.stats.record(model, op.name(), e.code.status());
    error_response(e)
}

/// Logs a runtime request and reads it: the model and the work it asks for, or the finished
/// response when that is all (an invalid request, `count-tokens`).
fn read_request(
    state: &State,
    op: Operation,
    raw_id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> ControlFlow<Served, (&'static CatalogModel, Work, Tiering)> {
    let decoded = model_id::percent_decode(raw_id).unwrap_or_else(|| raw_id.to_string());
    let json: Option<Value> = serde_json::from_slice(body).ok();
    state.stats.log(LoggedRequest {
        operation: op.name().to_string(),
        model_id: decoded.clone(),
        body: json.clone().unwrap_or(Value::Null),
    });
    let fail = |model: &str, e: ApiError| ControlFlow::Break(Ok(failed(state, op, model, &e)));
    let resolved = match model_id::resolve(&decoded) {
        Ok(r) => r,
        Err(e) => return fail(&decoded, e),
    };
    let model = resolved.model;
    let Some(json) = json else {
        return fail(
            model.id,
            ApiError::malformed("#: the request body is not valid JSON"),
        );
    };
    if op == Operation::CountTokens {
        return match count_tokens::count(model, &json) {
            Ok(v) => {
                state.stats.record(model.id, op.name(), 200);
                ControlFlow::Break(Ok(json_response(200, &v)))
            }
            Err(e) => fail(model.id, e),
        };
    }
    match validate(op, model, resolved.via_profile, &json, headers) {
        Ok((work, tiering)) => ControlFlow::Continue((model, work, tiering)),
        Err(e) => fail(model.id, e),
    }
}

async fn runtime(
    state: &Arc<State>,
    op: Operation,
    raw_id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Served {
    let in_flight = InFlight::enter(state);
    let (model, work, tiering) = match read_request(state, op, raw_id, headers, body) {
        ControlFlow::Continue(read) => read,
        ControlFlow::Break(served) => return served,
    };
    let fail = |model: &str, e: ApiError| Ok(failed(state, op, model, &e));

    let load = state.load();
    let reserved = work.reservation();
    if let Err(which) = state.quotas.admit(&load, model.id, reserved) {
        state.stats.quota_throttle(which == QuotaExceeded::Tokens);
        let message = match which {
            QuotaExceeded::Requests => "Too many requests, please wait before trying again.",
            QuotaExceeded::Tokens => "Too many tokens, please wait before trying again.",
        };
        return fail(model.id, ApiError::new(ErrorCode::Throttling, message));
    }

    let sequence = state.sequence.fetch_add(1, Ordering::SeqCst);
    let started = Instant::now();
    let first_byte = load.first_byte_delay(sequence) + tiering.extra_delay(load.latency);
    let (reply, tool_call) = work.answer(model);
    let generation = load.per_output_token * reply.output_tokens;

    if let Some(error) = state.directives.error_for(body) {
        tokio::time::sleep(first_byte).await;
        state.quotas.refund(model.id, reserved);
        state
            .stats
            .fault(&format!("directive:{}", error.code.name()));
        return fail(model.id, error);
    }
    if let Some(fault) = load.fault_for(sequence) {
        tokio::time::sleep(first_byte).await;
        state.stats.fault(fault.name());
        if fault != Fault::Malformed {
            state.quotas.refund(model.id, reserved);
        }
        return match fault_error(fault) {
            Some(error) => fail(model.id, error),
            None if fault == Fault::DropConnection => {
                state.stats.record(model.id, op.name(), 0);
                Err(DroppedConnection)
            }
            None => {
                state.stats.record(model.id, op.name(), 200);
                let whole =
                    Bytes::from(r#"{"output":{"message":{"role":"assistant","content":[{"text":"#);
                Ok(full_response(200, "application/json", whole))
            }
        };
    }

    let used = reply.input_tokens.saturating_add(reply.output_tokens);
    state.quotas.refund(model.id, reserved.saturating_sub(used));
    let cache = serve_cache(state, &work, &reply, Instant::now());
    state.stats.record(model.id, op.name(), 200);
    let outcome = Outcome {
        reply: &reply,
        tool_call: tool_call.as_ref(),
        cache: cache.as_ref(),
    };

    if op.streams() {
        tokio::time::sleep(first_byte).await;
        let timings = families::Timings {
            latency_ms: millis(first_byte + generation),
            first_byte_ms: millis(first_byte),
        };
        let frames = stream_frames(op, model, &outcome, timings, tiering);
        let pace = load.per_output_token;
        let mut response = stream_response(op, frames, pace, generation, in_flight);
        if op == Operation::InvokeModelWithResponseStream {
            tier_headers(&mut response, tiering);
        }
        return Ok(response);
    }

    tokio::time::sleep(first_byte + generation).await;
    let latency_ms = millis(started.elapsed());
    let body = response_body(op, model, &work, &outcome, latency_ms, Some(tiering));
    let mut response = json_response(200, &body);
    if op == Operation::InvokeModel {
        usage_headers(&mut response, &reply, latency_ms);
        tier_headers(&mut response, tiering);
    }
    drop(in_flight);
    Ok(response)
}

/// The frames of a streamed response, each with the output tokens it carries (the pace of a
/// `converse-stream`): `converse-stream` events, or the family's chunks.
fn stream_frames(
    op: Operation,
    model: &CatalogModel,
    outcome: &Outcome<'_>,
    timings: families::Timings,
    tiering: Tiering,
) -> Vec<(Bytes, u32)> {
    if op == Operation::ConverseStream {
        let latency_ms = timings.latency_ms;
        converse::stream_events(
            outcome.reply,
            outcome.tool_call,
            latency_ms,
            tiering,
            outcome.cache,
        )
        .into_iter()
        .map(|(kind, payload)| (eventstream::event(kind, &payload), delta_tokens(&payload)))
        .collect()
    } else {
        families::stream_chunks(model, outcome.reply, timings)
            .iter()
            .map(|chunk| (eventstream::chunk(chunk), 0))
            .collect()
    }
}

/// Serves a request's prompt caching from the emulator's cache at `now` (the moment it is
/// answered, so a later request reads what it wrote) and counts the reply's tokens: the
/// uncached input, the output, and the input read from and written to the cache. `None` when
/// the request carried no `cachePoint`.
fn serve_cache(state: &State, work: &Work, reply: &Reply, now: Instant) -> Option<CacheUse> {
    let Some(plan) = work.cache_plan() else {
        state.stats.tokens(reply.input_tokens, reply.output_tokens);
        return None;
    };
    let used = state.prompt_cache.apply(plan, now);
    state
        .stats
        .tokens(used.uncached(reply.input_tokens), reply.output_tokens);
    state.stats.cache_tokens(used.read, used.write);
    Some(used)
}

/// The `invoke-model` headers that report the tokens and the latency.
fn usage_headers(response: &mut Response<Body>, reply: &Reply, latency_ms: u64) {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            "x-amzn-bedrock-input-token-count",
            reply.input_tokens.to_string(),
        ),
        (
            "x-amzn-bedrock-output-token-count",
            reply.output_tokens.to_string(),
        ),
        ("x-amzn-bedrock-invocation-latency", latency_ms.to_string()),
    ] {
        if let Ok(v) = value.parse() {
            headers.insert(name, v);
        }
    }
}

/// The `invoke-model` headers that say the service tier used and the latency asked for.
fn tier_headers(response: &mut Response<Body>, tiering: Tiering) {
    let headers = response.headers_mut();
    for (name, value) in tiering.headers() {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// The error a fault injects, or `None` for the faults that are no error response (a dropped
/// connection, a truncated body).
fn fault_error(fault: Fault) -> Option<ApiError> {
    match fault {
        Fault::Throttle => Some(ApiError::new(
            ErrorCode::Throttling,
            "Too many requests, please wait before trying again.",
        )),
        Fault::Internal => Some(ApiError::new(
            ErrorCode::InternalServer,
            "The server encountered an internal error while processing the request.",
        )),
        Fault::Unavailable => Some(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "Bedrock is unable to process your request.",
        )),
        Fault::Timeout => Some(ApiError::new(
            ErrorCode::ModelTimeout,
            "Model has timed out in processing the request. Try your request again.",
        )),
        Fault::DropConnection | Fault::Malformed => None,
    }
}

/// An event-stream response that sends its frames paced as the model would generate them:
/// `converse-stream` by each delta's tokens, `invoke-with-response-stream` evenly over the
/// generation time.
fn stream_response(
    op: Operation,
    frames: Vec<(Bytes, u32)>,
    pace: Duration,
    generation: Duration,
    in_flight: InFlight,
) -> Response<Body> {
    let pieces = frames.len().max(1);
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let _in_flight = in_flight;
        for (i, (frame, tokens)) in frames.into_iter().enumerate() {
            let wait = if op == Operation::ConverseStream {
                pace * tokens
            } else {
                generation / u32::try_from(pieces).unwrap_or(1)
            };
            if i > 0 && !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    });
    let mut response = Response::new(Body::Stream(rx));
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    headers.insert(
        "x-amzn-bedrock-content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Output tokens a converse-stream event carries (its text delta).
fn delta_tokens(payload: &Value) -> u32 {
    payload
        .pointer("/delta/text")
        .and_then(Value::as_str)
        .map_or(0, answer::count_text_tokens)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::StaticCredential;

    /// The `metadata` event of a Converse stream read to its end.
    async fn stream_metadata(
        mut stream: aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamOutput,
    ) -> Result<
        aws_sdk_bedrockruntime::types::ConverseStreamMetadataEvent,
        Box<dyn std::error::Error>,
    > {
        let mut metadata = None;
        while let Some(event) = stream.stream.recv().await? {
            if let aws_sdk_bedrockruntime::types::ConverseStreamOutput::Metadata(m) = event {
                metadata = Some(m);
            }
        }
        Ok(metadata.ok_or("no metadata event")?)
    }

    #[test]
    fn the_identity_route_says_whether_unsigned_requests_are_accepted() {
        let open = identity(&EmulatorConfig::default());
        assert_eq!(
            open,
            serde_json::json!({
                "service": "datafusion-bedrock-emulator",
                "version": env!("CARGO_PKG_VERSION"),
                "accepts_unsigned_requests": true,
            })
        );
        let signed = EmulatorConfig {
            credentials: vec![StaticCredential::new("AKID", "secret")],
            ..EmulatorConfig::default()
        };
        assert_eq!(identity(&signed)["accepts_unsigned_requests"], false);
        let keyed = EmulatorConfig {
            api_keys: vec!["key".into()],
            ..EmulatorConfig::default()
        };
        assert_eq!(identity(&keyed)["accepts_unsigned_requests"], false);
        assert!(matches!(
            route(&Method::GET, "/_emulator/identity"),
            Route::Identity
        ));
        assert!(matches!(
            route(&Method::POST, "/_emulator/identity"),
            Route::Unknown
        ));
    }

    #[test]
    fn batch_routes_take_the_encoded_job_identifier_as_one_segment() {
        let arn =
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A000000000000%3Amodel-invocation-job%2Fabc123def456";
        assert!(matches!(
            route(&Method::POST, "/model-invocation-job"),
            Route::CreateJob
        ));
        assert!(matches!(
            route(&Method::GET, &format!("/model-invocation-job/{arn}")),
            Route::GetJob(id) if id == arn
        ));
        assert!(matches!(
            route(&Method::POST, &format!("/model-invocation-job/{arn}/stop")),
            Route::StopJob(id) if id == arn
        ));
        assert!(matches!(
            route(&Method::GET, "/model-invocation-jobs"),
            Route::ListJobs
        ));
        assert_eq!(
            route(&Method::GET, "/model-invocation-jobs").operation(),
            "ListModelInvocationJobs"
        );
    }

    const NOVA_PRO: &str = "amazon.nova-pro-v1:0";
    const TITAN: &str = "amazon.titan-text-premier-v1:0";

    fn state(load: LoadModel) -> Arc<State> {
        Arc::new(State::new(EmulatorConfig {
            load,
            ..EmulatorConfig::default()
        }))
    }

    /// A non-streaming runtime request answered in process: status, headers, JSON body.
    async fn call(
        state: &Arc<State>,
        op: Operation,
        model: &str,
        headers: &[(&'static str, &'static str)],
        body: &Value,
    ) -> (u16, HeaderMap, Value) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        let response = runtime(state, op, model, &map, &Bytes::from(body.to_string()))
            .await
            .expect("a response");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("the body")
            .to_bytes();
        let json = serde_json::from_slice(&bytes).expect("a JSON body");
        (status, headers, json)
    }

    /// `metrics.latencyMs`, replaced by 0 so the rest of the body can be compared whole.
    fn take_latency(body: &mut Value) -> u64 {
        let latency = body["metrics"]["latencyMs"].as_u64().expect("latencyMs");
        body["metrics"]["latencyMs"] = serde_json::json!(0);
        latency
    }

    fn hi(extra: &Value) -> Value {
        let mut body = serde_json::json!({
            "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
        });
        for (key, value) in extra.as_object().into_iter().flatten() {
            body[key] = value.clone();
        }
        body
    }

    /// The Converse answer of Nova Pro to `Hi`, with `echo` (the tier and latency fields).
    fn nova_hi(echo: &Value) -> Value {
        let text = format!("Emulated {NOVA_PRO} (messages: 1, blocks: 1): Hi");
        let output = answer::count_text_tokens(&text);
        let mut body = serde_json::json!({
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 1, "outputTokens": output, "totalTokens": 1 + output},
            "metrics": {"latencyMs": 0},
        });
        for (key, value) in echo.as_object().into_iter().flatten() {
            body[key] = value.clone();
        }
        body
    }

    fn validation_error(message: &str) -> (u16, Value) {
        (400, serde_json::json!({ "message": message }))
    }

    #[tokio::test]
    async fn converse_echoes_the_service_tier_and_latency() {
        let state = state(LoadModel::default());
        let converse = |extra: Value| {
            let state = Arc::clone(&state);
            async move {
                let (status, headers, mut body) =
                    call(&state, Operation::Converse, NOVA_PRO, &[], &hi(&extra)).await;
                assert_eq!(
                    headers.get("x-amzn-bedrock-service-tier"),
                    None,
                    "Converse says its tier in the body"
                );
                if status == 200 {
                    take_latency(&mut body);
                }
                (status, body)
            }
        };
        assert_eq!(
            converse(serde_json::json!({"serviceTier": {"type": "flex"}})).await,
            (
                200,
                nova_hi(&serde_json::json!({"serviceTier": {"type": "flex"}}))
            )
        );
        assert_eq!(
            converse(serde_json::json!({})).await,
            (
                200,
                nova_hi(&serde_json::json!({"serviceTier": {"type": "default"}}))
            )
        );
        assert_eq!(
            converse(serde_json::json!({"performanceConfig": {"latency": "optimized"}})).await,
            (
                200,
                nova_hi(&serde_json::json!({
                    "serviceTier": {"type": "default"},
                    "performanceConfig": {"latency": "optimized"},
                }))
            )
        );
        assert_eq!(
            converse(serde_json::json!({
                "serviceTier": {"type": "priority"},
                "performanceConfig": {"latency": "standard"},
            }))
            .await,
            (
                200,
                nova_hi(&serde_json::json!({
                    "serviceTier": {"type": "priority"},
                    "performanceConfig": {"latency": "standard"},
                }))
            )
        );
        assert_eq!(
            converse(serde_json::json!({"serviceTier": {"type": "reserved"}})).await,
            validation_error(
                "This account has no reserved capacity for the model amazon.nova-pro-v1:0. Try again with service tier 'default', 'flex' or 'priority'."
            )
        );
        assert_eq!(
            converse(serde_json::json!({"serviceTier": {"type": "standard"}})).await,
            validation_error(
                "1 validation error detected: Value 'standard' at 'serviceTier.type' failed to satisfy constraint: Member must satisfy enum value set: [default, flex, priority, reserved]"
            )
        );
        let (status, _, body) = call(
            &state,
            Operation::Converse,
            TITAN,
            &[],
            &hi(&serde_json::json!({"performanceConfig": {"latency": "optimized"}})),
        )
        .await;
        assert_eq!(
            (status, body),
            validation_error(
                "The model amazon.titan-text-premier-v1:0 does not support latency-optimized inference: use performanceConfig latency 'standard'."
            )
        );
        // The request log keeps the bodies as sent.
        let recent = state.stats.snapshot().recent;
        assert_eq!(
            recent.last().map(|r| &r.body["performanceConfig"]),
            Some(&serde_json::json!({"latency": "optimized"}))
        );
        assert_eq!(
            state
                .stats
                .snapshot()
                .count(None, Some("Converse"), Some(400)),
            3
        );
    }

    #[tokio::test]
    async fn invoke_model_echoes_the_tier_headers() {
        let state = state(LoadModel::default());
        let haiku = "anthropic.claude-3-5-haiku-20241022-v1:0";
        let body = serde_json::json!({
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "Hi"}],
        });
        let (status, headers, answer) = call(
            &state,
            Operation::InvokeModel,
            haiku,
            &[
                ("X-Amzn-Bedrock-Service-Tier", "priority"),
                ("X-Amzn-Bedrock-PerformanceConfig-Latency", "optimized"),
            ],
            &body,
        )
        .await;
        assert_eq!(status, 200);
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(
            (
                header("X-Amzn-Bedrock-Service-Tier"),
                header("X-Amzn-Bedrock-PerformanceConfig-Latency")
            ),
            (Some("priority"), Some("optimized"))
        );
        // The body is the family's, untouched.
        let model = super::super::catalog::find(haiku).expect("in the catalog");
        let expected = answer_request(Operation::InvokeModel, model, false, &body).expect("valid");
        assert_eq!(answer, expected.body);

        // No headers: the default tier, and no latency header.
        let (_, headers, _) = call(&state, Operation::InvokeModel, haiku, &[], &body).await;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(
            (
                header("X-Amzn-Bedrock-Service-Tier"),
                header("X-Amzn-Bedrock-PerformanceConfig-Latency")
            ),
            (Some("default"), None)
        );

        let titan = serde_json::json!({"inputText": "Hi"});
        for (headers, message) in [
            (
                ("X-Amzn-Bedrock-Service-Tier", "gold"),
                "1 validation error detected: Value 'gold' at 'serviceTier' failed to satisfy constraint: Member must satisfy enum value set: [default, flex, priority, reserved]",
            ),
            (
                ("X-Amzn-Bedrock-Service-Tier", "reserved"),
                "This account has no reserved capacity for the model amazon.titan-text-premier-v1:0. Try again with service tier 'default', 'flex' or 'priority'.",
            ),
            (
                ("X-Amzn-Bedrock-PerformanceConfig-Latency", "optimized"),
                "The model amazon.titan-text-premier-v1:0 does not support latency-optimized inference: use performanceConfig latency 'standard'.",
            ),
        ] {
            for op in [
                Operation::InvokeModel,
                Operation::InvokeModelWithResponseStream,
            ] {
                let (status, response_headers, body) =
                    call(&state, op, TITAN, &[headers], &titan).await;
                assert_eq!((status, body), validation_error(message), "{op:?}");
                assert_eq!(
                    response_headers
                        .get("x-amzn-ErrorType")
                        .and_then(|v| v.to_str().ok()),
                    Some(
                        "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"
                    )
                );
            }
        }
    }

    #[tokio::test]
    async fn flex_waits_the_latency_twice() {
        let state = state(LoadModel {
            latency: Duration::from_millis(30),
            ..LoadModel::default()
        });
        let (_, _, mut body) = call(
            &state,
            Operation::Converse,
            NOVA_PRO,
            &[],
            &hi(&serde_json::json!({"serviceTier": {"type": "flex"}})),
        )
        .await;
        assert!(take_latency(&mut body) >= 60, "{body}");
        let (_, headers, _) = call(
            &state,
            Operation::InvokeModel,
            TITAN,
            &[("X-Amzn-Bedrock-Service-Tier", "flex")],
            &serde_json::json!({"inputText": "Hi"}),
        )
        .await;
        let latency: u64 = headers
            .get("x-amzn-bedrock-invocation-latency")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("the latency header");
        assert!(latency >= 60, "{latency}");
        let (_, _, mut body) = call(
            &state,
            Operation::Converse,
            NOVA_PRO,
            &[],
            &hi(&serde_json::json!({})),
        )
        .await;
        assert!(take_latency(&mut body) >= 30, "{body}");
    }

    /// The real SDK client for an emulator.
    fn sdk_client(url: &str) -> aws_sdk_bedrockruntime::Client {
        use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
        aws_sdk_bedrockruntime::Client::from_conf(
            aws_sdk_bedrockruntime::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(url)
                .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "tests"))
                .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
                .build(),
        )
    }

    /// The real SDK client sends Converse's tier and latency and reads them back, from the
    /// response and from the stream's metadata event.
    #[tokio::test]
    async fn the_sdk_reads_the_converse_tier_and_latency_back()
    -> Result<(), Box<dyn std::error::Error>> {
        use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
        use aws_sdk_bedrockruntime::types::{
            ContentBlock, ConversationRole, Message, PerformanceConfigLatency,
            PerformanceConfiguration, ServiceTier, ServiceTierType,
        };

        let emulator = crate::emulator::Emulator::start(EmulatorConfig::default()).await?;
        let client = sdk_client(emulator.url());
        let message = Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text("Hi".into()))
            .build()?;
        let flex = ServiceTier::builder()
            .r#type(ServiceTierType::Flex)
            .build()?;
        let optimized = PerformanceConfiguration::builder()
            .latency(PerformanceConfigLatency::Optimized)
            .build();

        let output = client
            .converse()
            .model_id(NOVA_PRO)
            .messages(message.clone())
            .service_tier(flex.clone())
            .performance_config(optimized.clone())
            .send()
            .await?;
        assert_eq!(output.service_tier(), Some(&flex));
        assert_eq!(output.performance_config(), Some(&optimized));

        let output = client
            .converse()
            .model_id(NOVA_PRO)
            .messages(message.clone())
            .send()
            .await?;
        assert_eq!(
            output.service_tier().map(ServiceTier::r#type),
            Some(&ServiceTierType::Default)
        );
        assert_eq!(output.performance_config(), None);

        let stream = client
            .converse_stream()
            .model_id(NOVA_PRO)
            .messages(message.clone())
            .service_tier(flex.clone())
            .performance_config(optimized.clone())
            .send()
            .await?;
        let metadata = stream_metadata(stream).await?;
        assert_eq!(metadata.service_tier(), Some(&flex));
        assert_eq!(metadata.performance_config(), Some(&optimized));

        let error = client
            .converse()
            .model_id(NOVA_PRO)
            .messages(message)
            .service_tier(
                ServiceTier::builder()
                    .r#type(ServiceTierType::Reserved)
                    .build()?,
            )
            .send()
            .await
            .expect_err("reserved is refused")
            .into_service_error();
        assert!(error.is_validation_exception(), "{error:?}");
        assert_eq!(
            error.message(),
            Some(
                "This account has no reserved capacity for the model amazon.nova-pro-v1:0. Try again with service tier 'default', 'flex' or 'priority'."
            )
        );
        emulator.shutdown().await;
        Ok(())
    }

    /// The real SDK client sends `InvokeModel`'s tier and latency headers and reads them back.
    #[tokio::test]
    async fn the_sdk_reads_the_invoke_model_tier_and_latency_back()
    -> Result<(), Box<dyn std::error::Error>> {
        use aws_sdk_bedrockruntime::types::{PerformanceConfigLatency, ServiceTierType};

        let emulator = crate::emulator::Emulator::start(EmulatorConfig::default()).await?;
        let client = sdk_client(emulator.url());
        let body = || {
            aws_smithy_types::Blob::new(
                serde_json::json!({"messages": [{"role": "user", "content": [{"text": "Hi"}]}]})
                    .to_string(),
            )
        };
        let invoked = client
            .invoke_model()
            .model_id(NOVA_PRO)
            .content_type("application/json")
            .body(body())
            .service_tier(ServiceTierType::Priority)
            .performance_config_latency(PerformanceConfigLatency::Optimized)
            .send()
            .await?;
        assert_eq!(invoked.service_tier(), Some(&ServiceTierType::Priority));
        assert_eq!(
            invoked.performance_config_latency(),
            Some(&PerformanceConfigLatency::Optimized)
        );

        let streamed = client
            .invoke_model_with_response_stream()
            .model_id(NOVA_PRO)
            .content_type("application/json")
            .body(body())
            .service_tier(ServiceTierType::Flex)
            .send()
            .await?;
        assert_eq!(streamed.service_tier(), Some(&ServiceTierType::Flex));
        assert_eq!(streamed.performance_config_latency(), None);

        let error = client
            .invoke_model()
            .model_id(TITAN)
            .content_type("application/json")
            .body(aws_smithy_types::Blob::new(r#"{"inputText": "Hi"}"#))
            .performance_config_latency(PerformanceConfigLatency::Optimized)
            .send()
            .await
            .expect_err("Titan has no latency-optimized version")
            .into_service_error();
        assert!(error.is_validation_exception(), "{error:?}");
        emulator.shutdown().await;
        Ok(())
    }

    /// A text of exactly `tokens` tokens.
    fn tokens_of(tokens: usize, letter: char) -> String {
        std::iter::repeat_n(letter, tokens * 4).collect()
    }

    fn cache_point() -> Value {
        serde_json::json!({"cachePoint": {"type": "default"}})
    }

    /// The usage of a Converse call, after checking its status.
    async fn usage_of(state: &Arc<State>, model: &str, body: &Value) -> Value {
        let (status, _, body) = call(state, Operation::Converse, model, &[], body).await;
        assert_eq!(status, 200, "{body}");
        body["usage"].clone()
    }

    #[tokio::test]
    async fn converse_writes_the_prompt_cache_and_then_reads_it() {
        let state = state(LoadModel::default());
        let system = tokens_of(1200, 's');
        let body = serde_json::json!({
            "system": [{"text": system}, cache_point()],
            "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
        });
        let text = format!("Emulated {NOVA_PRO} (messages: 1, blocks: 1, system: 1): Hi");
        let output = answer::count_text_tokens(&text);
        let (_, _, first) = call(&state, Operation::Converse, NOVA_PRO, &[], &body).await;
        assert_eq!(
            first["output"]["message"]["content"][0]["text"],
            serde_json::json!(text)
        );
        assert_eq!(
            first["usage"],
            serde_json::json!({
                "inputTokens": 1,
                "outputTokens": output,
                "totalTokens": 1 + output + 1200,
                "cacheReadInputTokens": 0,
                "cacheWriteInputTokens": 1200,
                "cacheDetails": [{"ttl": "5m", "inputTokens": 1200}],
            })
        );
        assert_eq!(
            usage_of(&state, NOVA_PRO, &body).await,
            serde_json::json!({
                "inputTokens": 1,
                "outputTokens": output,
                "totalTokens": 1 + output + 1200,
                "cacheReadInputTokens": 1200,
                "cacheWriteInputTokens": 0,
            })
        );
        let snapshot = state.stats.snapshot();
        assert_eq!(
            (
                snapshot.input_tokens,
                snapshot.cache_read_input_tokens,
                snapshot.cache_write_input_tokens
            ),
            (2, 1200, 1200)
        );
        // Another model has its own prefixes.
        let lite = "amazon.nova-lite-v1:0";
        assert_eq!(
            usage_of(&state, lite, &body).await["cacheWriteInputTokens"],
            1200
        );
        // An emptied cache is written again.
        state.prompt_cache.clear();
        assert_eq!(
            usage_of(&state, NOVA_PRO, &body).await["cacheReadInputTokens"],
            0
        );
    }

    #[tokio::test]
    async fn a_checkpoint_below_the_minimum_caches_nothing() {
        let state = state(LoadModel::default());
        let body = serde_json::json!({
            "system": [{"text": tokens_of(999, 's')}, cache_point()],
            "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
        });
        let text = format!("Emulated {NOVA_PRO} (messages: 1, blocks: 1, system: 1): Hi");
        let output = answer::count_text_tokens(&text);
        let expected = serde_json::json!({
            "inputTokens": 1000,
            "outputTokens": output,
            "totalTokens": 1000 + output,
            "cacheReadInputTokens": 0,
            "cacheWriteInputTokens": 0,
        });
        assert_eq!(usage_of(&state, NOVA_PRO, &body).await, expected);
        assert_eq!(usage_of(&state, NOVA_PRO, &body).await, expected);
        assert_eq!(state.prompt_cache.len(), 0);
    }

    #[tokio::test]
    async fn the_cached_system_is_read_and_the_new_message_head_written() {
        let state = state(LoadModel::default());
        let system = serde_json::json!([{"text": tokens_of(1200, 's')}, cache_point()]);
        let first = serde_json::json!({
            "system": system,
            "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
        });
        usage_of(&state, NOVA_PRO, &first).await;
        let second = serde_json::json!({
            "system": system,
            "messages": [
                {"role": "user", "content": [{"text": tokens_of(300, 'u')}, cache_point()]},
                {"role": "assistant", "content": [{"text": "ok"}]},
                {"role": "user", "content": [{"text": "next"}]},
            ],
        });
        let text = format!("Emulated {NOVA_PRO} (messages: 3, blocks: 3, system: 1): next");
        let output = answer::count_text_tokens(&text);
        assert_eq!(
            usage_of(&state, NOVA_PRO, &second).await,
            serde_json::json!({
                "inputTokens": 2,
                "outputTokens": output,
                "totalTokens": 2 + output + 1500,
                "cacheReadInputTokens": 1200,
                "cacheWriteInputTokens": 300,
                "cacheDetails": [{"ttl": "5m", "inputTokens": 300}],
            })
        );
    }

    #[tokio::test]
    async fn one_hour_checkpoints_are_cached_where_the_model_offers_them() {
        let state = state(LoadModel::default());
        let haiku = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
        let body = |ttl: &str| {
            serde_json::json!({
                "system": [
                    {"text": tokens_of(4096, 's')},
                    {"cachePoint": {"type": "default", "ttl": ttl}},
                ],
                "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
            })
        };
        let usage = usage_of(&state, haiku, &body("1h")).await;
        assert_eq!(
            (&usage["cacheWriteInputTokens"], &usage["cacheDetails"]),
            (
                &serde_json::json!(4096),
                &serde_json::json!([{"ttl": "1h", "inputTokens": 4096}])
            )
        );
        // The prefix is the same whatever its TTL: a 5m checkpoint reads it.
        assert_eq!(
            usage_of(&state, haiku, &body("5m")).await["cacheReadInputTokens"],
            4096
        );
        let (status, _, error) =
            call(&state, Operation::Converse, NOVA_PRO, &[], &body("1h")).await;
        assert_eq!(
            (status, error),
            validation_error(
                "The model amazon.nova-pro-v1:0 does not support the 1h TTL for prompt caching. Try again with ttl 5m or without a ttl."
            )
        );
        let (status, _, error) = call(&state, Operation::Converse, TITAN, &[], &body("5m")).await;
        assert_eq!(
            (status, error),
            validation_error(
                "You invoked an unsupported model or your request did not allow prompt caching. See the documentation for more information."
            )
        );
    }

    /// The real SDK client sends cache points and reads the cache usage back, from Converse
    /// and from the stream's metadata event.
    #[tokio::test]
    async fn the_sdk_reads_the_prompt_cache_usage_back() -> Result<(), Box<dyn std::error::Error>> {
        use aws_sdk_bedrockruntime::types::{
            CacheDetail, CachePointBlock, CachePointType, CacheTtl, ContentBlock, ConversationRole,
            Message, SystemContentBlock, TokenUsage,
        };

        let emulator = crate::emulator::Emulator::start(EmulatorConfig::default()).await?;
        let client = sdk_client(emulator.url());
        let point = CachePointBlock::builder()
            .r#type(CachePointType::Default)
            .build()?;
        let message = Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text("Hi".into()))
            .build()?;
        let converse = || {
            client
                .converse()
                .model_id(NOVA_PRO)
                .system(SystemContentBlock::Text(tokens_of(1200, 's')))
                .system(SystemContentBlock::CachePoint(point.clone()))
                .messages(message.clone())
        };
        let usage = |output: &Option<TokenUsage>| {
            output.as_ref().map(|u| {
                (
                    u.input_tokens(),
                    u.cache_read_input_tokens(),
                    u.cache_write_input_tokens(),
                    u.cache_details().to_vec(),
                )
            })
        };
        let written = converse().send().await?;
        let detail = CacheDetail::builder()
            .ttl(CacheTtl::FiveMinutes)
            .input_tokens(1200)
            .build()?;
        assert_eq!(
            usage(&written.usage),
            Some((1, Some(0), Some(1200), vec![detail]))
        );
        let read = converse().send().await?;
        assert_eq!(
            usage(&read.usage),
            Some((1, Some(1200), Some(0), Vec::new()))
        );

        let stream = client
            .converse_stream()
            .model_id(NOVA_PRO)
            .system(SystemContentBlock::Text(tokens_of(1200, 's')))
            .system(SystemContentBlock::CachePoint(point.clone()))
            .messages(message.clone())
            .send()
            .await?;
        let metadata = stream_metadata(stream).await?;
        assert_eq!(
            usage(&metadata.usage),
            Some((1, Some(1200), Some(0), Vec::new()))
        );

        // Without room, nothing is ever read.
        emulator.set_prompt_cache_entries(0);
        let again = converse().send().await?;
        assert_eq!(
            usage(&again.usage).map(|u| (u.1, u.2)),
            Some((Some(0), Some(1200)))
        );
        let snapshot = emulator.stats().snapshot();
        assert_eq!(
            (
                snapshot.cache_read_input_tokens,
                snapshot.cache_write_input_tokens
            ),
            (2400, 2400)
        );
        emulator.shutdown().await;
        Ok(())
    }
}
