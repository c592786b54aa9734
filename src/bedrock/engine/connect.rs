//! Building an engine: its SDK configuration (region, endpoint, timeouts, credentials), its
//! runtime and control-plane clients, and the credential check made at creation.

use std::sync::{Arc, Mutex};

use aws_config::BehaviorVersion;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::client::auth::AuthSchemeId;
use aws_smithy_runtime_api::client::auth::http::HTTP_BEARER_AUTH_SCHEME_ID;

use super::{DEFAULT_REGION, Engine};
use crate::bedrock::batch::storage::S3Identity;
use crate::bedrock::cache::ResponseCache;
use crate::bedrock::config::{CredentialSource, EngineConfig};
use crate::bedrock::identity::{self, Signing};
use crate::bedrock::redact::replace_whole;
use crate::bedrock::retry::{CallFailure, RetryPolicy, one_line};
use crate::bedrock::usage::Usage;
use crate::error::{Error, Result};

/// Replaces every secret of the configuration found in a message.
pub(super) fn scrub(message: &str, config: &EngineConfig) -> String {
    let secrets: Vec<&str> = match &config.credentials {
        CredentialSource::Static {
            secret_access_key,
            session_token,
            ..
        } => std::iter::once(secret_access_key.expose())
            .chain(
                session_token
                    .as_ref()
                    .map(crate::bedrock::config::Secret::expose),
            )
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

/// What an engine signs its S3 requests (batch jobs' files) with: its inline keys, its chain
/// or profile, or — sending Bedrock requests unsigned to the built-in emulator — the
/// emulator's S3 keys. An API key is Bedrock's alone: S3 does not take it.
fn s3_identity(
    name: &str,
    credentials: &CredentialSource,
    signing: Signing,
    sdk: &aws_config::SdkConfig,
) -> S3Identity {
    if signing == Signing::Unsigned {
        return S3Identity::emulator();
    }
    match credentials {
        CredentialSource::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } => S3Identity::Keys(Arc::new(object_store::aws::AwsCredential {
            key_id: access_key_id.clone(),
            secret_key: secret_access_key.expose().to_string(),
            token: session_token.as_ref().map(|t| t.expose().to_string()),
        })),
        CredentialSource::ApiKey(_) => S3Identity::Missing(format!(
            "engine '{name}' authenticates with an api_key, which Bedrock takes but S3 does not: batch inference writes its files to S3, so give the engine AWS credentials (aws_access_key_id and aws_secret_access_key, profile_name, or the default chain)"
        )),
        CredentialSource::DefaultChain | CredentialSource::Profile(_) => {
            match sdk.credentials_provider() {
                Some(provider) => S3Identity::Chain(provider),
                None => S3Identity::Missing(format!(
                    "engine '{name}' has no AWS credentials for S3, where batch inference writes its files"
                )),
            }
        }
    }
}

impl Engine {
    /// Builds the AWS clients and, unless `verify_credentials = false`, checks the identity with
    /// a `ListFoundationModels` call bounded by `connect_timeout`.
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
        let s3_identity = s3_identity(name, &config.credentials, signing, &sdk);
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
            jobs: ResponseCache::open("batch_jobs", 10_000, cache_dir)?,
            s3_identity,
            usage: Usage::default(),
            retry: RetryPolicy {
                max_retries: config.max_retries,
                ..RetryPolicy::default()
            },
            origin: std::sync::OnceLock::new(),
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
                    |url| one_line(&crate::bedrock::redact::url_for_display(url), 100),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_secrets_from_messages() {
        let config = EngineConfig {
            credentials: CredentialSource::Static {
                access_key_id: "AKID".into(),
                secret_access_key: crate::bedrock::config::Secret::new("s3cr3t"),
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
            credentials: CredentialSource::ApiKey(crate::bedrock::config::Secret::new("k")),
            ..EngineConfig::default()
        };
        assert_eq!(
            scrub("Check the key k (k)", &config),
            "Check the key ** redacted ** (** redacted **)"
        );
    }
}
