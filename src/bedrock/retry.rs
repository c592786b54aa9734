//! Which failures are retried, and how long to wait before the next attempt.

use std::time::Duration;

use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};

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
    /// The Bedrock error code, e.g. `ThrottlingException`, or `ConnectionError`,
    /// `TimeoutError`, `ResponseError`.
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
    pub fn from_sdk<E, R>(error: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let (kind, code, message) = match error {
            SdkError::ServiceError(e) => {
                let err = e.err();
                match err.code() {
                    Some(code) => {
                        let kind = match code {
                            "ThrottlingException" | "TooManyRequestsException" => {
                                FailureKind::Throttled
                            }
                            "InternalServerException"
                            | "ServiceUnavailableException"
                            | "ModelTimeoutException"
                            | "ModelNotReadyException"
                            | "InternalFailure"
                            | "ServiceUnavailable" => FailureKind::Transient,
                            _ => FailureKind::Fatal,
                        };
                        (
                            kind,
                            code.to_string(),
                            err.message().unwrap_or_default().to_string(),
                        )
                    }
                    // A body the SDK could not read (cut short, not JSON): as good as a
                    // dropped connection.
                    None => (
                        FailureKind::Transient,
                        "ResponseError".to_string(),
                        format!(
                            "the response could not be read: {}",
                            aws_smithy_types::error::display::DisplayErrorContext(error)
                        ),
                    ),
                }
            }
            SdkError::TimeoutError(_) => (
                FailureKind::Transient,
                "TimeoutError".to_string(),
                "the request timed out (raise request_timeout if the model needs longer)"
                    .to_string(),
            ),
            SdkError::DispatchFailure(d) if !d.is_user() => (
                FailureKind::Transient,
                "ConnectionError".to_string(),
                format!(
                    "the connection failed: {}",
                    aws_smithy_types::error::display::DisplayErrorContext(error)
                ),
            ),
            SdkError::ResponseError(_) => (
                FailureKind::Transient,
                "ResponseError".to_string(),
                format!(
                    "the response could not be read: {}",
                    aws_smithy_types::error::display::DisplayErrorContext(error)
                ),
            ),
            other => (
                FailureKind::Fatal,
                "RequestError".to_string(),
                aws_smithy_types::error::display::DisplayErrorContext(other).to_string(),
            ),
        };
        Self {
            kind,
            code,
            message,
        }
    }
}

/// Exponential backoff with full jitter: attempt `n` (0-based) waits a uniform time in
/// `[0, min(max_delay, base_delay × 2ⁿ)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt. Default 8.
    pub max_retries: u32,
    /// The first backoff ceiling. Default 200 ms.
    pub base_delay: Duration,
    /// The largest backoff ceiling. Default 20 s.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 8,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The ceiling of the wait before retry `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(30));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// A random wait in `[0, ceiling(attempt)]`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.ceiling(attempt).mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_its_ceiling() {
        let p = RetryPolicy::default();
        let ceilings: Vec<u128> = (0..9).map(|a| p.ceiling(a).as_millis()).collect();
        assert_eq!(
            ceilings,
            vec![200, 400, 800, 1600, 3200, 6400, 12800, 20000, 20000]
        );
        for attempt in 0..10 {
            assert!(p.backoff(attempt) <= p.ceiling(attempt));
        }
    }
}
