//! An engine's identity, settled when it connects: which credentials its requests carry, when a
//! local emulator lets it go without, and what to say when there is no identity or Bedrock
//! refuses it — one short message naming what was tried and the fix, never an SDK dump and
//! never a secret. An explicit source (keys, `api_key`, `profile_name`) is the only one used:
//! the environment's keys or bearer token never stand in for it.
//!
//! ```text
//! credentials ── static keys / api_key ─────────────────────────────────► as given
//!             ├─ profile_name ─────────────────────────────────────────► that profile alone:
//!             │                                                           resolved as below
//!             └─ standard chain
//!                 ├─ AWS_BEARER_TOKEN_BEDROCK set ───────────────────────► the SDK's bearer token
//!                 ├─ endpoint_url on loopback, and its
//!                 │  GET /_emulator/identity accepts unsigned requests ──► unsigned requests
//!                 ├─ verify_credentials = false ─────────────────────────► resolved at the first call
//!                 └─ resolve once, within connect_timeout
//!                     ├─ credentials ────────────────────────────────────► those (handed out first)
//!                     └─ none, or an error ──────────────────────────────► a short error
//! ```
//!
//! The identity also gives the response cache a fingerprint (a hash of the access key id or
//! account, a salted hash of an API key — never of a secret key), so answers are never shared
//! between identities.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_smithy_runtime_api::client::auth::http::HTTP_BEARER_AUTH_SCHEME_ID;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use super::config::{CredentialSource, EngineConfig};
use super::redact::replace_whole;
use super::retry::{innermost_message, one_line};
use crate::error::{Error, Result};

/// The built-in emulator's unauthenticated identity route.
const IDENTITY_PATH: &str = "/_emulator/identity";

/// The `service` the identity route names.
const EMULATOR_SERVICE: &str = "datafusion-bedrock-emulator";

/// The largest identity answer read; anything longer is not the emulator.
const MAX_IDENTITY_RESPONSE: usize = 16 * 1024;

/// Names and reasons longer than this are cut in messages, so a message stays short.
const MAX_SHOWN: usize = 64;

/// Where the standard chain looks, in its order.
const TRIED: &str = "environment variables, the shared config and credentials files, SSO, web identity token, container credentials and EC2 instance metadata";

/// How an engine's requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signing {
    /// As the engine's credential source says.
    Configured,
    /// Unsigned: the endpoint is the built-in emulator, which accepts that.
    Unsigned,
}

/// Why no credentials came from the chain or profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Missing {
    /// No source had any.
    NotFound,
    /// A source failed; its reason, on one line.
    Failed(String),
}

impl Missing {
    /// Classifies a credential provider's error. A reason never shows the value of a secret
    /// variable of the environment (a credential process may echo what it read).
    pub(crate) fn from_error(error: &CredentialsError) -> Self {
        match error {
            CredentialsError::CredentialsNotLoaded(_) => Self::NotFound,
            other => {
                let secrets: Vec<String> = SECRET_VARIABLES
                    .iter()
                    .filter_map(|name| std::env::var(name).ok())
                    .collect();
                Self::Failed(redact(&innermost_message(other), &secrets))
            }
        }
    }
}

/// Variables of the environment whose values are secrets.
const SECRET_VARIABLES: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_BEARER_TOKEN",
];

/// `message` with every (non-empty) secret replaced.
fn redact(message: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(message.to_string(), |m, s| replace_whole(&m, s))
}

/// What [`settle`] decided: the SDK configuration to build the engine's clients from, how
/// its requests are authenticated, and the identity they carry.
pub(crate) struct Settled {
    /// The SDK configuration.
    pub(crate) sdk: SdkConfig,
    /// Signed as configured, or unsigned to the built-in emulator.
    pub(crate) signing: Signing,
    /// The identity requests carry.
    pub(crate) identity: Identity,
}

/// The identity an engine's requests carry: what `SHOW ML_ENGINES` says of it, and a
/// fingerprint for cache keys that never holds a secret (a hash of the access key id, the
/// account, or a salted hash of an API key).
#[derive(Debug)]
pub(crate) struct Identity {
    shown: String,
    fingerprint: tokio::sync::OnceCell<[u8; 32]>,
    pending: Option<Pending>,
}

impl Identity {
    fn known(shown: impl Into<String>, fingerprint: [u8; 32]) -> Self {
        Self {
            shown: shown.into(),
            fingerprint: tokio::sync::OnceCell::new_with(Some(fingerprint)),
            pending: None,
        }
    }

    /// What the engine's requests really carry, in words: `default chain`, `profile 'dev'`,
    /// `static keys`, `static keys + session token`, `api key`, `default chain
    /// (AWS_BEARER_TOKEN_BEDROCK)` or `none (emulator)`.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// The identity's fingerprint. Credentials of the chain or a profile not resolved when the
    /// engine connected (`verify_credentials = false`) are resolved here once, and handed to
    /// the engine's first request; `None` when they cannot be.
    pub(crate) async fn fingerprint(&self) -> Option<[u8; 32]> {
        if let Some(known) = self.fingerprint.get() {
            return Some(*known);
        }
        let pending = self.pending.as_ref()?;
        self.fingerprint
            .get_or_try_init(|| pending.resolve())
            .await
            .ok()
            .copied()
    }
}

/// Credentials of the chain or a profile, resolved at most once by the engine itself; the
/// first ones go to the SDK's first request (see [`Primed`]).
#[derive(Debug)]
struct Pending {
    chain: SharedCredentialsProvider,
    first: Arc<Mutex<Option<Credentials>>>,
    timeout: Duration,
}

impl Pending {
    async fn resolve(&self) -> std::result::Result<[u8; 32], Missing> {
        match tokio::time::timeout(self.timeout, self.chain.provide_credentials()).await {
            Ok(Ok(credentials)) => {
                let fingerprint = credentials_fingerprint(&credentials);
                *self.first.lock().unwrap_or_else(PoisonError::into_inner) = Some(credentials);
                Ok(fingerprint)
            }
            Ok(Err(e)) => Err(Missing::from_error(&e)),
            Err(_) => Err(Missing::Failed(format!(
                "no answer within {}",
                seconds(self.timeout)
            ))),
        }
    }
}

/// Salt of API-key fingerprints, so a fingerprint is not the plain hash of the key.
const API_KEY_SALT: &[u8] = b"datafusion-bedrock/api-key-fingerprint/v1";

/// A fingerprint: the SHA-256 of a label and a value that is not secret (or, for API keys,
/// salted).
fn fingerprint(label: &str, value: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(label.as_bytes());
    hasher.update([0]);
    hasher.update(value);
    hasher.finalize().into()
}

/// The fingerprint of an access key id (never of its secret).
fn access_key_fingerprint(access_key_id: &str) -> [u8; 32] {
    fingerprint("access-key-id", access_key_id.as_bytes())
}

/// The fingerprint of a Bedrock API key: salted.
fn api_key_fingerprint(key: &str) -> [u8; 32] {
    let mut salted = API_KEY_SALT.to_vec();
    salted.extend_from_slice(key.as_bytes());
    fingerprint("api-key", &salted)
}

/// The fingerprint of resolved credentials: their account when the provider names it (SSO,
/// assumed roles: it stays when temporary keys rotate), else their access key id.
fn credentials_fingerprint(credentials: &Credentials) -> [u8; 32] {
    match credentials.account_id() {
        Some(account) => fingerprint("account", account.as_str().as_bytes()),
        None => access_key_fingerprint(credentials.access_key_id()),
    }
}

/// What `SHOW ML_ENGINES` says of an engine whose requests go unsigned to the emulator.
pub(crate) const SHOWN_UNSIGNED: &str = "none (emulator)";

/// Settles how the engine authenticates (see the module's diagram) and returns the SDK
/// configuration to build its clients from. An explicit source (keys, API key, profile) is
/// the only one used: only the standard chain may fall back on the environment's bearer token
/// or on unsigned requests to the built-in emulator.
///
/// # Errors
/// For the standard chain (when neither a bearer token nor the emulator stands in) or a named
/// profile: when the SDK configuration has no credentials provider, or, with
/// `verify_credentials` on, when the provider fails or yields no credentials within
/// `connect_timeout`; the message says what was tried and the fix.
pub(crate) async fn settle(engine: &str, config: &EngineConfig, sdk: SdkConfig) -> Result<Settled> {
    let mut loopback = None;
    match &config.credentials {
        CredentialSource::Static {
            access_key_id,
            session_token,
            ..
        } => {
            let shown = if session_token.is_some() {
                "static keys + session token"
            } else {
                "static keys"
            };
            return Ok(Settled::configured(
                sdk,
                Identity::known(shown, access_key_fingerprint(access_key_id)),
            ));
        }
        CredentialSource::ApiKey(key) => {
            return Ok(Settled::configured(
                sdk,
                Identity::known("api key", api_key_fingerprint(key.expose())),
            ));
        }
        CredentialSource::DefaultChain if uses_bearer_token(&sdk) => {
            let token = std::env::var(BEARER_TOKEN_VARIABLE).unwrap_or_default();
            return Ok(Settled::configured(
                sdk,
                Identity::known(
                    format!("default chain ({BEARER_TOKEN_VARIABLE})"),
                    api_key_fingerprint(&token),
                ),
            ));
        }
        CredentialSource::DefaultChain => {
            // `endpoint_url`, else the environment's or profile's `AWS_ENDPOINT_URL`.
            let endpoint = config.endpoint_url.as_deref().or(sdk.endpoint_url());
            loopback = endpoint.and_then(Loopback::parse);
            if let Some(target) = &loopback
                && target.accepts_unsigned(config.connect_timeout).await
            {
                tracing::info!(
                    engine,
                    endpoint = %target.authority,
                    "the built-in emulator accepts unsigned requests: no credentials needed"
                );
                let mut builder = sdk.into_builder();
                builder.set_credentials_provider(None);
                // Else the bearer scheme would look for an SSO token in the shared config.
                builder.set_token_provider(None);
                return Ok(Settled {
                    sdk: builder.build(),
                    signing: Signing::Unsigned,
                    identity: Identity::known(SHOWN_UNSIGNED, fingerprint("unsigned", b"")),
                });
            }
        }
        CredentialSource::Profile(_) => {}
    }
    settle_resolved(engine, config, sdk, loopback.as_ref()).await
}

impl Settled {
    /// Requests signed as the engine's credential source says, carrying `identity`.
    fn configured(sdk: SdkConfig, identity: Identity) -> Self {
        Self {
            sdk,
            signing: Signing::Configured,
            identity,
        }
    }
}

/// The standard chain's or a profile's credentials, resolved by the engine itself: now, or
/// with `verify_credentials = false` for its first cache key; the SDK's provider hands them
/// to the first request (see [`Primed`]). `loopback` is the loopback endpoint that did not
/// answer as the emulator, for the message of missing credentials.
///
/// # Errors
/// When the SDK configuration has no credentials provider, or, with `verify_credentials` on,
/// when the provider fails or yields no credentials within `connect_timeout`.
async fn settle_resolved(
    engine: &str,
    config: &EngineConfig,
    sdk: SdkConfig,
    loopback: Option<&Loopback>,
) -> Result<Settled> {
    let shown = match &config.credentials {
        CredentialSource::Profile(profile) => format!("profile '{profile}'"),
        _ => "default chain".to_string(),
    };
    let fail = |missing: Missing| {
        let near = loopback.map(|l| l.authority.as_str());
        Error::InvalidInput(missing_credentials(
            engine,
            &config.credentials,
            &missing,
            near,
        ))
    };
    let Some(chain) = sdk.credentials_provider() else {
        return Err(fail(Missing::NotFound));
    };
    let first = Arc::new(Mutex::new(None));
    let primed = SharedCredentialsProvider::new(Primed {
        first: Arc::clone(&first),
        chain: chain.clone(),
    });
    let sdk = sdk.into_builder().credentials_provider(primed).build();
    let pending = Pending {
        chain,
        first,
        timeout: config.connect_timeout,
    };
    if !config.verify_credentials {
        return Ok(Settled::configured(
            sdk,
            Identity {
                shown,
                fingerprint: tokio::sync::OnceCell::new(),
                pending: Some(pending),
            },
        ));
    }
    let fingerprint = pending.resolve().await.map_err(fail)?;
    Ok(Settled::configured(
        sdk,
        Identity::known(shown, fingerprint),
    ))
}

/// The variable of the environment holding a Bedrock API key for the standard chain.
const BEARER_TOKEN_VARIABLE: &str = "AWS_BEARER_TOKEN_BEDROCK";

/// Whether the SDK found a Bedrock bearer token (`AWS_BEARER_TOKEN_BEDROCK`) and will send it
/// instead of signing.
fn uses_bearer_token(sdk: &SdkConfig) -> bool {
    aws_sdk_bedrock::Config::from(sdk)
        .auth_scheme_preference()
        .and_then(|preference| preference.clone().into_iter().next())
        .is_some_and(|first| first == HTTP_BEARER_AUTH_SCHEME_ID)
}

/// `10s`, `0.5s`.
fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// `text`, cut to [`MAX_SHOWN`] characters.
fn shown(text: &str) -> String {
    one_line(text, MAX_SHOWN)
}

/// The chain's provider, handing out the credentials the engine resolved itself (when it
/// connected, or for its first cache key) once before it resolves again, so they are not
/// resolved (an STS or SSO call, perhaps) twice.
#[derive(Debug)]
struct Primed {
    first: Arc<Mutex<Option<Credentials>>>,
    chain: SharedCredentialsProvider,
}

impl ProvideCredentials for Primed {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let first = self
            .first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match first {
            Some(credentials) => future::ProvideCredentials::ready(Ok(credentials)),
            None => self.chain.provide_credentials(),
        }
    }

    fn fallback_on_interrupt(&self) -> Option<Credentials> {
        self.chain.fallback_on_interrupt()
    }
}

/// An `http://` endpoint on the loopback interface (127.0.0.0/8, `localhost`, `[::1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Loopback {
    /// Where to connect.
    pub(crate) addr: SocketAddr,
    /// `host:port` as the URL wrote it (the `Host` header, and what messages show).
    pub(crate) authority: String,
}

impl Loopback {
    /// The loopback endpoint of a URL, or `None` for `https://` (the emulator speaks plain
    /// HTTP), other hosts and URLs it cannot read.
    pub(crate) fn parse(url: &str) -> Option<Self> {
        let scheme = url.get(..7)?;
        if !scheme.eq_ignore_ascii_case("http://") {
            return None;
        }
        let rest = url.get(7..)?;
        let authority = rest.split(['/', '?', '#']).next()?;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = match host_port.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']')?;
                match after {
                    "" => (host, None),
                    _ => (host, Some(after.strip_prefix(':')?)),
                }
            }
            None => match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            },
        };
        let port = match port {
            Some(p) => p.parse::<u16>().ok()?,
            None => 80,
        };
        let ip = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse::<IpAddr>().ok()?
        };
        ip.is_loopback().then(|| Self {
            addr: SocketAddr::new(ip, port),
            authority: host_port.to_string(),
        })
    }

    /// Whether the server there is the built-in emulator and accepts unsigned requests, asked
    /// with `GET /_emulator/identity` within `timeout`. Nothing listening, another server, or
    /// an odd or late answer: `false`.
    pub(crate) async fn accepts_unsigned(&self, timeout: Duration) -> bool {
        let request = format!(
            "GET {IDENTITY_PATH} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
            self.authority
        );
        let exchange = exchange(self.addr, request.as_bytes());
        matches!(
            tokio::time::timeout(timeout, exchange).await,
            Ok(Some(body)) if says_unsigned_emulator(&body)
        )
    }
}

/// Sends a request and reads the body of a `200` answer; `None` on any failure.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let mut sent = 0;
    while sent < request.len() {
        stream.writable().await.ok()?;
        match stream.try_write(request.get(sent..)?) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
    }
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(body) = ok_body(&response, false) {
            return Some(body.to_vec());
        }
        if response.len() > MAX_IDENTITY_RESPONSE {
            return None;
        }
        stream.readable().await.ok()?;
        match stream.try_read(&mut chunk) {
            Ok(0) => return ok_body(&response, true).map(<[u8]>::to_vec),
            Ok(n) => response.extend_from_slice(chunk.get(..n)?),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
    }
}

/// The body of a complete `HTTP/1.x 200` response: once its `Content-Length` bytes are in, or
/// at the end of the stream when it has none. `None` while incomplete or for another status.
fn ok_body(response: &[u8], at_end: bool) -> Option<&[u8]> {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(response.get(..end)?).ok()?;
    let body = response.get(end + 4..)?;
    let mut lines = head.split("\r\n");
    let mut status = lines.next()?.split(' ');
    if !status.next()?.starts_with("HTTP/1.") || status.next()? != "200" {
        return None;
    }
    let length = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    match length {
        Some(n) => body.get(..n),
        None if at_end => Some(body),
        None => None,
    }
}

/// Whether an identity answer names the built-in emulator accepting unsigned requests.
fn says_unsigned_emulator(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|v| v["service"] == EMULATOR_SERVICE && v["accepts_unsigned_requests"] == true)
}

/// The message for an engine whose standard chain or profile yielded no credentials. `near`
/// is the loopback endpoint that turned out not to be an emulator accepting unsigned requests.
pub(crate) fn missing_credentials(
    engine: &str,
    source: &CredentialSource,
    missing: &Missing,
    near: Option<&str>,
) -> String {
    let reason = match missing {
        Missing::NotFound => String::new(),
        Missing::Failed(reason) => format!(" ({})", one_line(reason, 120)),
    };
    let near = near.map_or_else(String::new, |at| {
        format!(
            "; no emulator accepting unsigned requests answers at {}",
            shown(at)
        )
    });
    let engine = shown(engine);
    match source {
        CredentialSource::Profile(profile) if *missing == Missing::NotFound => {
            let profile = shown(profile);
            format!(
                "Engine '{engine}': profile '{profile}' was not found in the shared config and credentials files, or holds no credentials. Check profile_name (aws configure list-profiles), or give aws_access_key_id and aws_secret_access_key, or api_key."
            )
        }
        CredentialSource::Profile(profile) => {
            let profile = shown(profile);
            format!(
                "Engine '{engine}': profile '{profile}' gave no AWS credentials{reason}{near}. Check it in the shared config and credentials files (keys, role, or SSO: aws sso login --profile {profile}), or give aws_access_key_id and aws_secret_access_key, or api_key."
            )
        }
        _ => format!(
            "Engine '{engine}': no AWS credentials found{reason} — tried {TRIED}{near}. Give profile_name, aws_access_key_id and aws_secret_access_key, or api_key in USING, or set AWS_PROFILE."
        ),
    }
}

/// What an identity-rejecting error code means, or `None` for codes that do not reject the
/// identity.
fn rejection(code: &str) -> Option<&'static str> {
    Some(match code {
        "UnrecognizedClientException" | "InvalidClientTokenId" => {
            "the access key or session token is not known"
        }
        "InvalidSignatureException" | "SignatureDoesNotMatch" | "IncompleteSignatureException" => {
            "the signature does not match, so the secret key is wrong"
        }
        "ExpiredTokenException" | "ExpiredToken" | "TokenRefreshRequired" => {
            "the credentials have expired"
        }
        "MissingAuthenticationTokenException" | "MissingAuthenticationToken" => {
            "the request carried no credentials"
        }
        "AccessDeniedException" => "access denied",
        _ => return None,
    })
}

/// The message for an identity Bedrock refused during the engine's credential check, or
/// `None` when `code` is not such a refusal. It names the kind of credentials, never a value.
pub(crate) fn rejected_identity(
    engine: &str,
    region: &str,
    source: &CredentialSource,
    signing: Signing,
    code: &str,
) -> Option<String> {
    let meaning = rejection(code)?;
    let (kind, fix) = match (signing, source) {
        (Signing::Unsigned, _) => (
            "unsigned requests".to_string(),
            "Give profile_name, aws_access_key_id and aws_secret_access_key, or api_key."
                .to_string(),
        ),
        (_, CredentialSource::ApiKey(_)) => (
            "its API key (api_key)".to_string(),
            "Check api_key (Bedrock API keys expire), or use profile_name or aws_access_key_id and aws_secret_access_key instead."
                .to_string(),
        ),
        _ if code == "AccessDeniedException" => (
            kind_of(source),
            "Grant the identity bedrock:ListFoundationModels, or create the engine with verify_credentials = false.".to_string(),
        ),
        (_, source) => (kind_of(source), fix_for(source)),
    };
    Some(format!(
        "Engine '{}': Bedrock in {} rejected {kind} — {code}: {meaning}. {fix}",
        shown(engine),
        shown(region),
    ))
}

/// The kind of credentials a source gives, in words.
fn kind_of(source: &CredentialSource) -> String {
    match source {
        CredentialSource::DefaultChain => "the credentials of the standard AWS chain".to_string(),
        CredentialSource::Profile(p) => format!("the credentials of profile '{}'", shown(p)),
        CredentialSource::Static {
            session_token: None,
            ..
        } => "its keys (aws_access_key_id, aws_secret_access_key)".to_string(),
        CredentialSource::Static { .. } => {
            "its temporary keys (aws_access_key_id, aws_secret_access_key, aws_session_token)"
                .to_string()
        }
        CredentialSource::ApiKey(_) => "its API key (api_key)".to_string(),
    }
}

/// How to fix credentials of a source that Bedrock refused.
fn fix_for(source: &CredentialSource) -> String {
    match source {
        CredentialSource::DefaultChain => "Refresh them (environment variables, AWS_PROFILE, aws sso login), or give profile_name, or aws_access_key_id and aws_secret_access_key.".to_string(),
        CredentialSource::Profile(p) => {
            let p = shown(p);
            format!("Refresh profile '{p}' (new keys, or aws sso login --profile {p}), or choose another profile_name.")
        }
        CredentialSource::Static { session_token: None, .. } => "Check aws_access_key_id and aws_secret_access_key; temporary keys also need aws_session_token.".to_string(),
        CredentialSource::Static { .. } => "Check aws_access_key_id, aws_secret_access_key and aws_session_token; temporary keys expire, so give current ones.".to_string(),
        CredentialSource::ApiKey(_) => "Check api_key (Bedrock API keys expire).".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    use crate::bedrock::config::Secret;

    fn loopback(url: &str) -> Option<(String, String)> {
        Loopback::parse(url).map(|l| (l.addr.to_string(), l.authority))
    }

    fn pair(addr: &str, authority: &str) -> (String, String) {
        (addr.to_string(), authority.to_string())
    }

    #[test]
    fn loopback_endpoints_are_recognised() {
        assert_eq!(
            loopback("http://127.0.0.1:4100"),
            Some(pair("127.0.0.1:4100", "127.0.0.1:4100"))
        );
        assert_eq!(
            loopback("HTTP://127.1.2.3:80/base?x#y"),
            Some(pair("127.1.2.3:80", "127.1.2.3:80"))
        );
        assert_eq!(
            loopback("http://localhost:9"),
            Some(pair("127.0.0.1:9", "localhost:9"))
        );
        assert_eq!(
            loopback("http://LocalHost/"),
            Some(pair("127.0.0.1:80", "LocalHost"))
        );
        assert_eq!(
            loopback("http://[::1]:81"),
            Some(pair("[::1]:81", "[::1]:81"))
        );
        assert_eq!(loopback("http://[::1]"), Some(pair("[::1]:80", "[::1]")));
        assert_eq!(
            loopback("http://user@127.0.0.1:5"),
            Some(pair("127.0.0.1:5", "127.0.0.1:5"))
        );
    }

    #[test]
    fn other_endpoints_are_not_loopback() {
        for url in [
            "https://127.0.0.1:4100",
            "http://10.0.0.1:80",
            "http://bedrock-runtime.us-east-1.amazonaws.com",
            "http://localhost.example.com:80",
            "http://127.0.0.1:99999",
            "http://127.0.0.1:port",
            "http://[::1]x",
            "http://[::1",
            "http://[2001:db8::1]:80",
            "http:/",
            "",
            "ht",
            "http://é",
            "http://[é]:1",
        ] {
            assert_eq!(loopback(url), None, "{url}");
        }
    }

    #[test]
    fn only_a_whole_ok_identity_answer_counts() {
        let body = br#"{"service":"datafusion-bedrock-emulator","version":"0.1.0","accepts_unsigned_requests":true}"#;
        let response = |status: &str, length: Option<usize>| {
            let mut r = format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\n");
            if let Some(n) = length {
                write!(r, "Content-Length: {n}\r\n").expect("a String takes any write");
            }
            r.push_str("\r\n");
            let mut bytes = r.into_bytes();
            bytes.extend_from_slice(body);
            bytes
        };
        let whole = response("200 OK", Some(body.len()));
        assert_eq!(ok_body(&whole, false), Some(&body[..]));
        assert_eq!(ok_body(&whole[..whole.len() - 1], false), None);
        let unsized_answer = response("200 OK", None);
        assert_eq!(ok_body(&unsized_answer, false), None);
        assert_eq!(ok_body(&unsized_answer, true), Some(&body[..]));
        assert_eq!(ok_body(&response("404 Not Found", Some(2)), true), None);
        assert_eq!(ok_body(b"HTTP/1.1 200 OK\r\n", true), None);
        assert_eq!(ok_body(b"SSH-2.0-OpenSSH\r\n\r\n", true), None);
        assert!(says_unsigned_emulator(body));
    }

    #[test]
    fn only_the_emulator_accepting_unsigned_requests_is_trusted() {
        assert!(!says_unsigned_emulator(
            br#"{"service":"datafusion-bedrock-emulator","accepts_unsigned_requests":false}"#
        ));
        assert!(!says_unsigned_emulator(
            br#"{"service":"something-else","accepts_unsigned_requests":true}"#
        ));
        assert!(!says_unsigned_emulator(
            br#"{"service":"datafusion-bedrock-emulator","accepts_unsigned_requests":"true"}"#
        ));
        assert!(!says_unsigned_emulator(b"<html>"));
        assert!(!says_unsigned_emulator(b""));
    }

    #[tokio::test]
    async fn a_closed_port_or_a_silent_server_is_not_the_emulator() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let silent = Loopback {
            addr,
            authority: addr.to_string(),
        };
        // Accepts and never answers: the timeout decides.
        assert!(!silent.accepts_unsigned(Duration::from_millis(200)).await);
        drop(listener);
        assert!(!silent.accepts_unsigned(Duration::from_secs(5)).await);
    }

    #[test]
    fn fingerprints_hash_the_key_id_or_account_and_salt_api_keys() {
        let plain = |value: &str| -> [u8; 32] { Sha256::digest(value.as_bytes()).into() };
        let keys = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI", None, None, "test");
        // The access key id decides, not the secret.
        assert_eq!(
            credentials_fingerprint(&keys),
            credentials_fingerprint(&Credentials::new(
                "AKIDEXAMPLE",
                "another-secret",
                None,
                None,
                "test"
            ))
        );
        assert_eq!(
            credentials_fingerprint(&keys),
            access_key_fingerprint("AKIDEXAMPLE")
        );
        assert_ne!(
            access_key_fingerprint("AKIDEXAMPLE"),
            access_key_fingerprint("AKIDOTHER")
        );
        // Temporary keys of one account keep the account's fingerprint when they rotate.
        let rotated = |key: &str| {
            Credentials::builder()
                .access_key_id(key)
                .secret_access_key("s")
                .account_id("123456789012")
                .provider_name("test")
                .build()
        };
        assert_eq!(
            credentials_fingerprint(&rotated("ASIAONE")),
            credentials_fingerprint(&rotated("ASIATWO"))
        );
        assert_ne!(
            credentials_fingerprint(&rotated("ASIAONE")),
            access_key_fingerprint("ASIAONE")
        );
        // An API key's fingerprint is salted: not the plain hash of the key.
        let api = api_key_fingerprint("ABSK-secret");
        assert_ne!(api, plain("ABSK-secret"));
        assert_ne!(api, api_key_fingerprint("ABSK-other"));
        assert_ne!(api, access_key_fingerprint("ABSK-secret"));
    }

    #[test]
    fn reasons_never_show_a_secret_of_the_environment() {
        let secrets = vec![String::new(), "wJalrXUtnFEMI".to_string()];
        assert_eq!(
            redact("process printed wJalrXUtnFEMI to stderr", &secrets),
            "process printed ** redacted ** to stderr"
        );
        assert_eq!(redact("nothing here", &secrets), "nothing here");
    }

    #[test]
    fn no_credentials_in_the_chain() {
        let message = missing_credentials(
            "e",
            &CredentialSource::DefaultChain,
            &Missing::NotFound,
            None,
        );
        assert_eq!(
            message,
            "Engine 'e': no AWS credentials found — tried environment variables, the shared config and credentials files, SSO, web identity token, container credentials and EC2 instance metadata. Give profile_name, aws_access_key_id and aws_secret_access_key, or api_key in USING, or set AWS_PROFILE."
        );
        let near = missing_credentials(
            "e",
            &CredentialSource::DefaultChain,
            &Missing::NotFound,
            Some("127.0.0.1:9"),
        );
        assert_eq!(
            near,
            "Engine 'e': no AWS credentials found — tried environment variables, the shared config and credentials files, SSO, web identity token, container credentials and EC2 instance metadata; no emulator accepting unsigned requests answers at 127.0.0.1:9. Give profile_name, aws_access_key_id and aws_secret_access_key, or api_key in USING, or set AWS_PROFILE."
        );
        assert!(near.chars().count() < 400, "{}", near.chars().count());
    }

    #[test]
    fn a_failing_source_is_named_on_one_short_line() {
        let long = format!("the SSO session expired\n{}", "x".repeat(500));
        let message = missing_credentials(
            "engine_with_a_name",
            &CredentialSource::DefaultChain,
            &Missing::Failed(long),
            Some("[::1]:65535"),
        );
        assert_eq!(
            message,
            "Engine 'engine_with_a_name': no AWS credentials found (the SSO session expired) — tried environment variables, the shared config and credentials files, SSO, web identity token, container credentials and EC2 instance metadata; no emulator accepting unsigned requests answers at [::1]:65535. Give profile_name, aws_access_key_id and aws_secret_access_key, or api_key in USING, or set AWS_PROFILE."
        );
        assert!(message.chars().count() < 400);
        let missing = missing_credentials(
            "e",
            &CredentialSource::Profile("dev".into()),
            &Missing::NotFound,
            None,
        );
        assert_eq!(
            missing,
            "Engine 'e': profile 'dev' was not found in the shared config and credentials files, or holds no credentials. Check profile_name (aws configure list-profiles), or give aws_access_key_id and aws_secret_access_key, or api_key."
        );
        let profile = missing_credentials(
            "e",
            &CredentialSource::Profile("dev".into()),
            &Missing::Failed("profile `dev` was not defined".into()),
            None,
        );
        assert_eq!(
            profile,
            "Engine 'e': profile 'dev' gave no AWS credentials (profile `dev` was not defined). Check it in the shared config and credentials files (keys, role, or SSO: aws sso login --profile dev), or give aws_access_key_id and aws_secret_access_key, or api_key."
        );
    }

    #[test]
    fn long_names_and_reasons_are_cut_on_character_boundaries() {
        let name = "é".repeat(300);
        let message = missing_credentials(
            &name,
            &CredentialSource::DefaultChain,
            &Missing::Failed("ü".repeat(300)),
            Some(&"1".repeat(300)),
        );
        let (name_cut, reason_cut, at_cut) = (
            format!("{}…", "é".repeat(63)),
            format!("{}…", "ü".repeat(119)),
            format!("{}…", "1".repeat(63)),
        );
        assert_eq!(
            message,
            format!(
                "Engine '{name_cut}': no AWS credentials found ({reason_cut}) — tried environment variables, the shared config and credentials files, SSO, web identity token, container credentials and EC2 instance metadata; no emulator accepting unsigned requests answers at {at_cut}. Give profile_name, aws_access_key_id and aws_secret_access_key, or api_key in USING, or set AWS_PROFILE."
            )
        );
        let rejected = rejected_identity(
            &name,
            "us-east-1",
            &CredentialSource::Profile(name.clone()),
            Signing::Configured,
            "ExpiredTokenException",
        );
        assert_eq!(
            rejected,
            Some(format!(
                "Engine '{name_cut}': Bedrock in us-east-1 rejected the credentials of profile '{name_cut}' — ExpiredTokenException: the credentials have expired. Refresh profile '{name_cut}' (new keys, or aws sso login --profile {name_cut}), or choose another profile_name."
            ))
        );
    }

    #[test]
    fn rejected_identities_name_the_kind_and_the_fix_never_the_secret() {
        let keys = CredentialSource::Static {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG"),
            session_token: None,
        };
        let message = |source: &CredentialSource, signing: Signing, code: &str| {
            rejected_identity("e", "us-east-1", source, signing, code)
        };
        assert_eq!(
            message(&keys, Signing::Configured, "InvalidSignatureException").as_deref(),
            Some(
                "Engine 'e': Bedrock in us-east-1 rejected its keys (aws_access_key_id, aws_secret_access_key) — InvalidSignatureException: the signature does not match, so the secret key is wrong. Check aws_access_key_id and aws_secret_access_key; temporary keys also need aws_session_token."
            )
        );
        let temporary = CredentialSource::Static {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG"),
            session_token: Some(Secret::new("FwoGZXIvYXdzEJr")),
        };
        assert_eq!(
            message(&temporary, Signing::Configured, "ExpiredTokenException").as_deref(),
            Some(
                "Engine 'e': Bedrock in us-east-1 rejected its temporary keys (aws_access_key_id, aws_secret_access_key, aws_session_token) — ExpiredTokenException: the credentials have expired. Check aws_access_key_id, aws_secret_access_key and aws_session_token; temporary keys expire, so give current ones."
            )
        );
        assert_eq!(
            message(
                &CredentialSource::Profile("dev".into()),
                Signing::Configured,
                "UnrecognizedClientException"
            )
            .as_deref(),
            Some(
                "Engine 'e': Bedrock in us-east-1 rejected the credentials of profile 'dev' — UnrecognizedClientException: the access key or session token is not known. Refresh profile 'dev' (new keys, or aws sso login --profile dev), or choose another profile_name."
            )
        );
        assert_eq!(
            message(
                &CredentialSource::DefaultChain,
                Signing::Configured,
                "AccessDeniedException"
            )
            .as_deref(),
            Some(
                "Engine 'e': Bedrock in us-east-1 rejected the credentials of the standard AWS chain — AccessDeniedException: access denied. Grant the identity bedrock:ListFoundationModels, or create the engine with verify_credentials = false."
            )
        );
        assert_eq!(
            message(
                &CredentialSource::ApiKey(Secret::new("ABSK-secret")),
                Signing::Configured,
                "AccessDeniedException"
            )
            .as_deref(),
            Some(
                "Engine 'e': Bedrock in us-east-1 rejected its API key (api_key) — AccessDeniedException: access denied. Check api_key (Bedrock API keys expire), or use profile_name or aws_access_key_id and aws_secret_access_key instead."
            )
        );
        assert_eq!(
            message(
                &CredentialSource::DefaultChain,
                Signing::Unsigned,
                "MissingAuthenticationTokenException"
            )
            .as_deref(),
            Some(
                "Engine 'e': Bedrock in us-east-1 rejected unsigned requests — MissingAuthenticationTokenException: the request carried no credentials. Give profile_name, aws_access_key_id and aws_secret_access_key, or api_key."
            )
        );
        assert_eq!(
            message(&keys, Signing::Configured, "ValidationException"),
            None
        );
        assert_eq!(
            message(&keys, Signing::Configured, "ThrottlingException"),
            None
        );
    }
}
