//! Which failures are retried, and the loop that retries them: every attempt holds a limiter
//! slot, is admitted by the query's budget and is counted; throttling shrinks the limit; the
//! waits between attempts are [`Backoff`]'s.

use std::sync::Arc;
use std::time::Instant;

use aws_credential_types::provider::error::{CredentialsError, TokenError};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};

pub use super::backoff::Backoff;
use super::budget::{Budget, Reservation};
use super::limiter::Limiter;
use super::usage::ModelCounters;

/// How a failed attempt is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Throttling: retried, and the limiter backs off.
    Throttled,
    /// 5xx, model timeouts, model not ready, dropped connections, unreadable responses:
    /// retried.
    Transient,
    /// Validation, access denied, unknown model, …: fails at once.
    Fatal,
}

/// A failed call: the Bedrock error code (or what happened on the wire) and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// How it is handled.
    pub kind: FailureKind,
    /// The Bedrock error code, e.g. `ThrottlingException`, or what happened before an answer:
    /// `ConnectionError`, `TimeoutError`, `ResponseError`, `CredentialsError` (no credentials
    /// could be loaded), `RequestError` (the request could not be built).
    pub code: String,
    /// The service's message, or a description.
    pub message: String,
}

impl std::fmt::Display for CallFailure {
    /// `Code: message`, without the message's final period so it can sit inside a sentence.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message.trim_end_matches('.'))
    }
}

impl CallFailure {
    /// A failure of this crate's own making (bad body, unknown family).
    pub fn fatal(code: &str, message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Fatal,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// Classifies an SDK error. The SDK's own retries are disabled, so every attempt is seen here.
    /// Messages are one short line: the service's message, or the innermost cause of a
    /// transport failure — never the SDK's nested chain or its `Debug` dump.
    pub fn from_sdk<E, R>(error: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match error {
            SdkError::ServiceError(e) => match e.err().code() {
                Some(code) => Self {
                    kind: service_kind(code),
                    code: code.to_string(),
                    message: e.err().message().unwrap_or_default().to_string(),
                },
                // A body the SDK could not read (cut short, not JSON): as good as a
                // dropped connection.
                None => unreadable_response(error),
            },
            SdkError::TimeoutError(_) => Self {
                kind: FailureKind::Transient,
                code: "TimeoutError".to_string(),
                message: "the request timed out (raise request_timeout if the model needs longer)"
                    .to_string(),
            },
            SdkError::DispatchFailure(d) => match identity_failure(error) {
                Some(failure) => failure,
                None if d.is_user() => Self::fatal("RequestError", cause(error)),
                None => Self {
                    kind: FailureKind::Transient,
                    code: "ConnectionError".to_string(),
                    message: format!("the connection failed: {}", cause(error)),
                },
            },
            SdkError::ResponseError(_) => unreadable_response(error),
            other => Self::fatal("RequestError", cause(other)),
        }
    }

    /// The credentials for a request could not be loaded (code `CredentialsError`): retried
    /// only when the provider timed out.
    fn credentials(error: &CredentialsError) -> Self {
        let (kind, message) = match error {
            CredentialsError::CredentialsNotLoaded(_) => (
                FailureKind::Fatal,
                "no AWS credentials found (environment variables, shared config and credentials files, SSO, web identity token, container credentials, EC2 instance metadata): give the engine profile_name, aws_access_key_id and aws_secret_access_key, or api_key".to_string(),
            ),
            CredentialsError::ProviderTimedOut(_) => (
                FailureKind::Transient,
                format!("the AWS credentials could not be loaded: {error}"),
            ),
            other => (
                FailureKind::Fatal,
                format!(
                    "the AWS credentials could not be loaded: {}",
                    innermost_message(other)
                ),
            ),
        };
        Self {
            kind,
            code: "CredentialsError".to_string(),
            message,
        }
    }
}

/// How a service error code is handled.
fn service_kind(code: &str) -> FailureKind {
    match code {
        "ThrottlingException" | "TooManyRequestsException" => FailureKind::Throttled,
        "InternalServerException"
        | "ServiceUnavailableException"
        | "ModelTimeoutException"
        | "ModelNotReadyException"
        | "InternalFailure"
        | "ServiceUnavailable" => FailureKind::Transient,
        _ => FailureKind::Fatal,
    }
}

fn unreadable_response<E, R>(error: &SdkError<E, R>) -> CallFailure
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    CallFailure {
        kind: FailureKind::Transient,
        code: "ResponseError".to_string(),
        message: format!("the response could not be read: {}", cause(error)),
    }
}

/// The longest cause put in a message.
const MAX_CAUSE: usize = 200;

/// What really went wrong in an SDK error: its innermost cause, on one short line.
fn cause<E, R>(error: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match std::error::Error::source(error) {
        Some(source) => innermost_message(source),
        None => one_line(&error.to_string(), MAX_CAUSE),
    }
}

/// The failure of a credential or token provider somewhere in an SDK error's causes, if any.
fn identity_failure<E, R>(error: &SdkError<E, R>) -> Option<CallFailure>
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let mut current = std::error::Error::source(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<CredentialsError>() {
            return Some(CallFailure::credentials(found));
        }
        if let Some(found) = e.downcast_ref::<TokenError>() {
            return Some(CallFailure::fatal(
                "CredentialsError",
                format!(
                    "the Bedrock bearer token could not be loaded: {}",
                    innermost_message(found)
                ),
            ));
        }
        current = e.source();
    }
    None
}

/// The message of an error's innermost cause (the last `source()`), on one short line; the
/// error's own message when that one says nothing.
pub(crate) fn innermost_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut messages = vec![error.to_string()];
    let mut current = error.source();
    while let Some(e) = current {
        messages.push(e.to_string());
        current = e.source();
    }
    let message = messages
        .iter()
        .rev()
        .find(|m| !m.trim().is_empty())
        .map_or("", String::as_str);
    one_line(message, MAX_CAUSE)
}

/// The first line of `text`, trimmed, and cut to `max` characters (ending in `…` when cut).
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    if line.chars().count() <= max {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// How many times a call is retried, and how long to wait in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt. Default 8.
    pub max_retries: u32,
    /// The waits before retries.
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 8,
            backoff: Backoff::default(),
        }
    }
}

impl RetryPolicy {
    /// Runs attempts until one succeeds, a failure is fatal or the retries run out. Every
    /// attempt holds a limiter slot and is counted; throttling shrinks the limit. With a
    /// budget, each attempt is admitted first and gets its [`Reservation`], which it settles;
    /// a refusal ends the call. `attempt_once` returns the value with its input and output tokens.
    pub(crate) async fn run<T, F, Fut>(
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
            if failure.kind == FailureKind::Fatal || attempt >= self.max_retries {
                counters.failure();
                return Err(with_attempts(failure, attempt + 1));
            }
            tracing::debug!(model = %model_id, attempt, %failure, "retrying");
            tokio::time::sleep(self.backoff.delay(attempt)).await;
            attempt += 1;
        }
    }
}

/// The failure of the last attempt, saying how many were made when there were several.
fn with_attempts(mut failure: CallFailure, attempts: u32) -> CallFailure {
    if attempts > 1 {
        failure.message = format!(
            "{} (after {attempts} attempts)",
            failure.message.trim_end_matches('.')
        );
    }
    failure
}

/// A budget with the estimate of one request's attempts.
pub(crate) struct BudgetGuard<'a> {
    /// The query's budget.
    pub(crate) budget: &'a Arc<Budget>,
    /// The estimated USD of one attempt.
    pub(crate) estimate_usd: f64,
}

/// How a call went before it succeeded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempts {
    /// Attempts retried before the success.
    pub(crate) retries: u32,
    /// Attempts refused by throttling among them.
    pub(crate) throttles: u32,
    /// Milliseconds of the successful attempt.
    pub(crate) latency_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::error::Error as StdError;
    use std::time::Duration;

    use aws_sdk_bedrock::operation::list_foundation_models::ListFoundationModelsError;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::ConnectorError;

    type Sdk = SdkError<ListFoundationModelsError, HttpResponse>;

    /// An error wrapping another, as the HTTP stack nests them.
    #[derive(Debug)]
    struct Wrapped(&'static str, Box<dyn StdError + Send + Sync>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(self.1.as_ref())
        }
    }

    fn refused() -> Box<dyn StdError + Send + Sync> {
        let io = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        Box::new(Wrapped(
            "client error (Connect)",
            Box::new(Wrapped("tcp connect error", Box::new(io))),
        ))
    }

    #[test]
    fn a_refused_connection_is_one_line_with_its_cause() {
        let error = Sdk::dispatch_failure(ConnectorError::io(refused()));
        assert_eq!(
            CallFailure::from_sdk(&error),
            CallFailure {
                kind: FailureKind::Transient,
                code: "ConnectionError".into(),
                message: "the connection failed: Connection refused (os error 111)".into(),
            }
        );
    }

    #[test]
    fn missing_credentials_are_fatal_and_short() {
        let chain = "no credentials found in chain. Attempted:\n  Environment: the credential provider was not enabled";
        let error = Sdk::dispatch_failure(ConnectorError::other(
            Box::new(CredentialsError::not_loaded(chain)),
            None,
        ));
        let failure = CallFailure::from_sdk(&error);
        assert_eq!(
            failure.to_string(),
            "CredentialsError: no AWS credentials found (environment variables, shared config and credentials files, SSO, web identity token, container credentials, EC2 instance metadata): give the engine profile_name, aws_access_key_id and aws_secret_access_key, or api_key"
        );
        assert_eq!(failure.kind, FailureKind::Fatal);

        let broken = Sdk::dispatch_failure(ConnectorError::other(
            Box::new(CredentialsError::provider_error(Wrapped(
                "profile provider failed",
                "the SSO session has expired\nrun aws sso login".into(),
            ))),
            None,
        ));
        assert_eq!(
            CallFailure::from_sdk(&broken),
            CallFailure::fatal(
                "CredentialsError",
                "the AWS credentials could not be loaded: the SSO session has expired"
            )
        );
        let slow = Sdk::dispatch_failure(ConnectorError::other(
            Box::new(CredentialsError::provider_timed_out(Duration::from_secs(5))),
            None,
        ));
        assert_eq!(
            CallFailure::from_sdk(&slow),
            CallFailure {
                kind: FailureKind::Transient,
                code: "CredentialsError".into(),
                message:
                    "the AWS credentials could not be loaded: credentials provider timed out after 5 seconds"
                        .into(),
            }
        );
        let token = Sdk::dispatch_failure(ConnectorError::other(
            Box::new(TokenError::not_loaded("No profiles were defined")),
            None,
        ));
        assert_eq!(
            CallFailure::from_sdk(&token),
            CallFailure::fatal(
                "CredentialsError",
                "the Bedrock bearer token could not be loaded: No profiles were defined"
            )
        );
    }

    #[test]
    fn other_failures_name_their_innermost_cause() {
        let construction = Sdk::construction_failure(Wrapped(
            "failed to construct request",
            "invalid header value".into(),
        ));
        assert_eq!(
            CallFailure::from_sdk(&construction),
            CallFailure::fatal("RequestError", "invalid header value")
        );
        let user = Sdk::dispatch_failure(ConnectorError::user(refused()));
        assert_eq!(
            CallFailure::from_sdk(&user),
            CallFailure::fatal("RequestError", "Connection refused (os error 111)")
        );
    }

    #[test]
    fn one_line_cuts_on_character_boundaries() {
        assert_eq!(one_line("  first line  \nsecond", 20), "first line");
        assert_eq!(one_line("ééééé", 5), "ééééé");
        assert_eq!(one_line("éééééé", 5), "éééé…");
        assert_eq!(one_line("", 5), "");
        assert_eq!(one_line("abc", 0), "…");
    }
}
