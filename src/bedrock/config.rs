//! Engine configuration: what `CREATE ML_ENGINE … FROM bedrock USING …` holds.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::batch::BatchSettings;
use super::params::{ParamValue, unknown_parameter};
use crate::error::{Error, Result};

/// A secret value: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for handing to the AWS SDK.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("** redacted **")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("** redacted **")
    }
}

/// Where an engine's AWS identity comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CredentialSource {
    /// The standard AWS chain: environment, shared config and profiles, SSO, web identity,
    /// container and instance metadata (and `AWS_BEARER_TOKEN_BEDROCK`).
    #[default]
    DefaultChain,
    /// A named profile of the shared config files: its credentials alone (never the
    /// environment's keys or bearer token).
    Profile(String),
    /// Static keys, with a session token for temporary credentials.
    Static {
        /// `aws_access_key_id`
        access_key_id: String,
        /// `aws_secret_access_key`
        secret_access_key: Secret,
        /// `aws_session_token`
        session_token: Option<Secret>,
    },
    /// A Bedrock API key, sent as `Authorization: Bearer`.
    ApiKey(Secret),
}

/// An engine's settings, with documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// `region_name`: the AWS region. Default: the SDK's (environment / profile), else `us-east-1`.
    pub region: Option<String>,
    /// The identity.
    pub credentials: CredentialSource,
    /// `endpoint_url`: overrides the Bedrock endpoints (both runtime and control plane), e.g.
    /// the emulator's URL or a VPC endpoint.
    pub endpoint_url: Option<String>,
    /// `max_concurrency`: requests in flight per model at most (adapted down on throttling).
    /// Default 32.
    pub max_concurrency: usize,
    /// `requests_per_minute`: an optional client-side request budget per model.
    pub requests_per_minute: Option<u32>,
    /// `tokens_per_minute`: an optional client-side token budget per model (input estimate +
    /// max tokens reserved per request, the unused part returned).
    pub tokens_per_minute: Option<u32>,
    /// `max_retries`: retries of throttling, 5xx, timeouts and dropped connections. Default 8.
    pub max_retries: u32,
    /// `request_timeout`: seconds one attempt may take. Default 120.
    pub request_timeout: Duration,
    /// `connect_timeout`: seconds the credential check at creation may take. Default 10.
    pub connect_timeout: Duration,
    /// `cache_size`: responses kept in memory. Default 10,000; 0 disables the cache.
    pub cache_size: u64,
    /// `cache_dir`: a directory for a persistent response cache (one file), so a re-run does
    /// not pay twice. Engines may share it: answers are kept apart by endpoint, region and
    /// identity. Default: none.
    pub cache_dir: Option<PathBuf>,
    /// `verify_credentials`: check the identity with `ListFoundationModels` when the engine is
    /// created. Default true.
    pub verify_credentials: bool,
    /// `default`: the engine AI functions use when they are given a raw Bedrock model id
    /// rather than a model's name. Default false; when no engine is marked, the only engine is
    /// the default.
    pub is_default: bool,
    /// `batch_role_arn`, `batch_s3_uri`, `batch_timeout_hours`, `batch_s3_endpoint_url`: what
    /// batch inference jobs need (see [`BatchSettings`]).
    pub batch: BatchSettings,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            region: None,
            credentials: CredentialSource::DefaultChain,
            endpoint_url: None,
            max_concurrency: 32,
            requests_per_minute: None,
            tokens_per_minute: None,
            max_retries: 8,
            request_timeout: Duration::from_mins(2),
            connect_timeout: Duration::from_secs(10),
            cache_size: 10_000,
            cache_dir: None,
            verify_credentials: true,
            is_default: false,
            batch: BatchSettings::default(),
        }
    }
}

/// Every engine parameter, as written in `USING`.
pub const ENGINE_PARAMETERS: &[&str] = &[
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "region_name",
    "profile_name",
    "api_key",
    "endpoint_url",
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "max_retries",
    "request_timeout",
    "connect_timeout",
    "cache_size",
    "cache_dir",
    "verify_credentials",
    "default",
    "batch_role_arn",
    "batch_s3_uri",
    "batch_timeout_hours",
    "batch_s3_endpoint_url",
];

/// Parameters whose values are secrets.
pub const SECRET_PARAMETERS: &[&str] = &["aws_secret_access_key", "aws_session_token", "api_key"];

fn seconds(value: &ParamValue, key: &str) -> Result<Duration> {
    let s = value.as_number_in(key, 0.001, 86_400.0)?;
    Ok(Duration::from_secs_f64(s))
}

impl EngineConfig {
    /// Reads `USING` parameters (keys case-insensitive). Unknown keys get a did-you-mean; secrets
    /// never appear in errors.
    ///
    /// # Errors
    /// An [`Error::InvalidInput`] when a key is not an engine parameter; when a value has the
    /// wrong type or is out of range (`aws_secret_access_key`, `aws_session_token` and
    /// `api_key` must be quoted strings, `region_name`, `profile_name`, `endpoint_url`,
    /// `cache_dir` and `aws_access_key_id` text, `verify_credentials` and `default` booleans,
    /// the rest numbers: see [`ParamValue`]'s readers); when `endpoint_url` holds a user name
    /// or password or does not start with `http://` or `https://`; when
    /// `aws_access_key_id` comes without `aws_secret_access_key`, or either of
    /// `aws_secret_access_key` and `aws_session_token` without `aws_access_key_id`; and when
    /// more than one identity (static keys, `profile_name`, `api_key`) is given.
    pub fn from_params(params: &[(String, ParamValue)]) -> Result<Self> {
        let mut config = Self::default();
        let (mut key_id, mut secret, mut token, mut profile, mut api_key) =
            (None, None, None, None, None);
        for (raw_key, value) in params {
            let key = raw_key.to_lowercase();
            let secret_text = |v: &ParamValue| match v {
                ParamValue::String(s) => Ok(Secret::new(s.clone())),
                _ => Err(Error::InvalidInput(format!(
                    "Parameter '{key}' must be a quoted string: write {key} = '…'"
                ))),
            };
            match key.as_str() {
                "aws_access_key_id" => key_id = Some(value.as_text(&key)?),
                "aws_secret_access_key" => secret = Some(secret_text(value)?),
                "aws_session_token" => token = Some(secret_text(value)?),
                "api_key" => api_key = Some(secret_text(value)?),
                "region_name" => config.region = Some(value.as_text(&key)?),
                "profile_name" => profile = Some(value.as_text(&key)?),
                "endpoint_url" => {
                    let url = value.as_text(&key)?;
                    let shown = crate::bedrock::redact::url_for_display(&url);
                    if shown != url {
                        // Bedrock authenticates with AWS credentials, never with a URL's
                        // user-info; kept, it would be a secret in plain sight.
                        return Err(Error::InvalidInput(format!(
                            "Parameter 'endpoint_url' = '{shown}' holds a user name or password: Bedrock endpoints take AWS credentials (aws_access_key_id …, profile_name or api_key), so remove the part before '@'"
                        )));
                    }
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(Error::InvalidInput(format!(
                            "Parameter 'endpoint_url' = '{url}' must start with http:// or https://"
                        )));
                    }
                    config.endpoint_url = Some(url);
                }
                "max_concurrency" => {
                    config.max_concurrency =
                        usize::try_from(value.as_integer_in(&key, 1, 4096)?).unwrap_or(4096);
                }
                "requests_per_minute" => {
                    config.requests_per_minute = Some(
                        u32::try_from(value.as_integer_in(&key, 1, 10_000_000)?)
                            .unwrap_or(u32::MAX),
                    );
                }
                "tokens_per_minute" => {
                    config.tokens_per_minute = Some(
                        u32::try_from(value.as_integer_in(&key, 1, 4_000_000_000)?)
                            .unwrap_or(u32::MAX),
                    );
                }
                "max_retries" => {
                    config.max_retries =
                        u32::try_from(value.as_integer_in(&key, 0, 50)?).unwrap_or(50);
                }
                "request_timeout" => config.request_timeout = seconds(value, &key)?,
                "connect_timeout" => config.connect_timeout = seconds(value, &key)?,
                "cache_size" => config.cache_size = value.as_integer_in(&key, 0, 100_000_000)?,
                "cache_dir" => config.cache_dir = Some(PathBuf::from(value.as_text(&key)?)),
                "verify_credentials" => config.verify_credentials = value.as_bool(&key)?,
                "default" => config.is_default = value.as_bool(&key)?,
                _ if config.batch.read(&key, value)? => {}
                _ => return Err(unknown_parameter("engine", raw_key, ENGINE_PARAMETERS)),
            }
        }
        config.credentials = match (key_id, secret, token, profile, api_key) {
            (Some(access_key_id), Some(secret_access_key), session_token, None, None) => {
                CredentialSource::Static {
                    access_key_id,
                    secret_access_key,
                    session_token,
                }
            }
            (Some(_), None, ..) => {
                return Err(Error::InvalidInput(
                    "Parameter 'aws_access_key_id' needs 'aws_secret_access_key' too (or leave both out to use the standard AWS credential chain)".into(),
                ));
            }
            (None, Some(_), ..) | (None, None, Some(_), ..) => {
                return Err(Error::InvalidInput(
                    "Parameters 'aws_secret_access_key' and 'aws_session_token' need 'aws_access_key_id' too".into(),
                ));
            }
            (None, None, None, Some(p), None) => CredentialSource::Profile(p),
            (None, None, None, None, Some(k)) => CredentialSource::ApiKey(k),
            (None, None, None, None, None) => CredentialSource::DefaultChain,
            _ => {
                return Err(Error::InvalidInput(
                    "Give one identity: static keys (aws_access_key_id + aws_secret_access_key), profile_name, or api_key — not several".into(),
                ));
            }
        };
        if matches!(config.credentials, CredentialSource::ApiKey(_))
            && (config.batch.role_arn.is_some() || config.batch.s3_uri.is_some())
        {
            return Err(Error::InvalidInput(
                "Parameters 'batch_role_arn' and 'batch_s3_uri' need AWS credentials: batch inference writes its files to S3, which does not take a Bedrock api_key. Give the engine keys (aws_access_key_id and aws_secret_access_key) or profile_name instead of api_key, or leave the batch parameters out".into(),
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> ParamValue {
        ParamValue::String(v.into())
    }

    #[test]
    fn reads_mindsdbs_parameters() {
        let config = EngineConfig::from_params(&[
            ("aws_access_key_id".into(), s("AQAXEQK89OX07YS34OP")),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                s("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            ),
            ("aws_session_token".into(), s("FwoGZXIvYXdzEJr...")),
            ("region_name".into(), s("us-east-1")),
            ("max_concurrency".into(), ParamValue::Number(8.0)),
        ])
        .unwrap();
        assert_eq!(config.region.as_deref(), Some("us-east-1"));
        assert_eq!(config.max_concurrency, 8);
        assert_eq!(
            config.credentials,
            CredentialSource::Static {
                access_key_id: "AQAXEQK89OX07YS34OP".into(),
                secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
                session_token: Some(Secret::new("FwoGZXIvYXdzEJr...")),
            }
        );
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("wJalr") && !debug.contains("FwoGZ"),
            "{debug}"
        );
    }

    #[test]
    fn errors_name_the_parameter_and_never_the_secret() {
        let err = |params: &[(String, ParamValue)]| {
            EngineConfig::from_params(params).unwrap_err().to_string()
        };
        assert_eq!(
            err(&[("aws_region".into(), s("us-east-1"))]),
            "Unknown engine parameter 'aws_region' — did you mean 'region_name'?"
        );
        assert_eq!(
            err(&[("aws_access_key_id".into(), s("AKID"))]),
            "Parameter 'aws_access_key_id' needs 'aws_secret_access_key' too (or leave both out to use the standard AWS credential chain)"
        );
        assert_eq!(
            err(&[("aws_secret_access_key".into(), ParamValue::Number(42.0))]),
            "Parameter 'aws_secret_access_key' must be a quoted string: write aws_secret_access_key = '…'"
        );
        assert_eq!(
            err(&[("max_concurrency".into(), ParamValue::Number(0.0))]),
            "Parameter 'max_concurrency' = 0 is out of range: it must be between 1 and 4096"
        );
        assert_eq!(
            err(&[("endpoint_url".into(), s("localhost:8080"))]),
            "Parameter 'endpoint_url' = 'localhost:8080' must start with http:// or https://"
        );
    }

    #[test]
    fn no_keys_means_the_default_chain() {
        assert_eq!(
            EngineConfig::from_params(&[]).unwrap(),
            EngineConfig::default()
        );
        assert!(
            EngineConfig::from_params(&[("DEFAULT".into(), ParamValue::Bool(true))])
                .unwrap()
                .is_default
        );
        let profile = EngineConfig::from_params(&[("profile_name".into(), s("dev"))]).unwrap();
        assert_eq!(profile.credentials, CredentialSource::Profile("dev".into()));
    }
}
