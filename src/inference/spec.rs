//! What a bound model is, as data that can leave the process: the engine's settings and the
//! kind of its credentials (never a secret value), the model id, API, inference parameters,
//! system prompt, output schema, `on_error` and provenance.
//!
//! A plan sent to another process (a Ballista scheduler or executor) carries these specs; the
//! receiving process builds its engines from them and from its own environment (see
//! `distributed::engines`).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bound::BoundModel;
use super::created::CreatedModel;
use crate::bedrock::config::{CredentialSource, EngineConfig};
use crate::bedrock::engine::{Engine, ModelTarget};
use crate::bedrock::request::InferenceParams;
use crate::catalog::model::{ModelSpec, OnError};
use crate::catalog::output_schema::OutputSchema;

/// Where an engine's identity comes from, without the secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CredentialKind {
    /// The standard AWS chain of the process that calls (environment, profiles, roles,
    /// `AWS_BEARER_TOKEN_BEDROCK`).
    DefaultChain,
    /// A named profile of the calling process's shared config files.
    Profile(String),
    /// Keys given inline at `CREATE ML_ENGINE`: they stay where they were given; another
    /// process uses its own default chain.
    InlineKeys,
    /// An API key given inline: it stays where it was given; another process uses its own
    /// default chain (`AWS_BEARER_TOKEN_BEDROCK` among it).
    InlineApiKey,
}

impl CredentialKind {
    /// The kind of `source`.
    #[must_use]
    pub fn of(source: &CredentialSource) -> Self {
        match source {
            CredentialSource::DefaultChain => Self::DefaultChain,
            CredentialSource::Profile(name) => Self::Profile(name.clone()),
            CredentialSource::Static { .. } => Self::InlineKeys,
            CredentialSource::ApiKey(_) => Self::InlineApiKey,
        }
    }

    /// What to tell when engine `engine`, created elsewhere with this kind of credentials,
    /// finds none in this process (`reason`): for keys given inline, that they never travel
    /// and how to give this process its own.
    #[must_use]
    pub fn missing_here(&self, engine: &str, reason: &str) -> String {
        match self {
            Self::InlineKeys => format!(
                "Engine '{engine}' was created with inline keys (aws_access_key_id, aws_secret_access_key), which never leave the process they were given to, and this process has no credentials of its own: {reason}. Give this executor credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance or container role), or create the engine without inline keys."
            ),
            Self::InlineApiKey => format!(
                "Engine '{engine}' was created with an inline api_key, which never leaves the process it was given to, and this process has no credentials of its own: {reason}. Set AWS_BEARER_TOKEN_BEDROCK (or other AWS credentials) for this executor, or create the engine without an inline key."
            ),
            Self::DefaultChain | Self::Profile(_) => {
                format!("Engine '{engine}' cannot be used in this process: {reason}")
            }
        }
    }

    /// The credentials another process uses for this kind.
    #[must_use]
    pub fn source_elsewhere(&self) -> CredentialSource {
        match self {
            Self::Profile(name) => CredentialSource::Profile(name.clone()),
            _ => CredentialSource::DefaultChain,
        }
    }
}

/// An engine's settings as they travel: name, region, endpoint, the credential kind and its
/// limits. Equal specs share one engine per process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EngineSpec {
    /// The engine's name.
    pub name: String,
    /// The region its clients use (as resolved where it was created).
    pub region: String,
    /// `endpoint_url`, when set.
    pub endpoint_url: Option<String>,
    /// Where its identity comes from.
    pub credentials: CredentialKind,
    /// `max_concurrency`.
    pub max_concurrency: usize,
    /// `requests_per_minute`.
    pub requests_per_minute: Option<u32>,
    /// `tokens_per_minute`.
    pub tokens_per_minute: Option<u32>,
    /// `max_retries`.
    pub max_retries: u32,
    /// `request_timeout`, in milliseconds.
    pub request_timeout_ms: u64,
    /// `connect_timeout`, in milliseconds.
    pub connect_timeout_ms: u64,
    /// `cache_size`.
    pub cache_size: u64,
    /// The batch settings (a role ARN, an S3 prefix: no secrets).
    #[serde(default)]
    pub batch: crate::bedrock::batch::BatchSettings,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl EngineSpec {
    /// The spec of `engine` (for an engine built from a spec, that spec).
    #[must_use]
    pub fn of(engine: &Engine) -> Self {
        if let Some(origin) = engine.origin() {
            return origin.clone();
        }
        let config = engine.config();
        Self {
            name: engine.name().to_string(),
            region: engine.region().to_string(),
            endpoint_url: config.endpoint_url.clone(),
            credentials: CredentialKind::of(&config.credentials),
            max_concurrency: config.max_concurrency,
            requests_per_minute: config.requests_per_minute,
            tokens_per_minute: config.tokens_per_minute,
            max_retries: config.max_retries,
            request_timeout_ms: millis(config.request_timeout),
            connect_timeout_ms: millis(config.connect_timeout),
            cache_size: config.cache_size,
            batch: config.batch.clone(),
        }
    }

    /// The configuration another process builds this engine with: its own credentials of
    /// this kind, a memory cache only (a `cache_dir` belongs to the machine that named it),
    /// and no credential check at creation (the first call tells).
    #[must_use]
    pub fn config(&self) -> EngineConfig {
        EngineConfig {
            region: Some(self.region.clone()),
            credentials: self.credentials.source_elsewhere(),
            endpoint_url: self.endpoint_url.clone(),
            max_concurrency: self.max_concurrency,
            requests_per_minute: self.requests_per_minute,
            tokens_per_minute: self.tokens_per_minute,
            max_retries: self.max_retries,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            cache_size: self.cache_size,
            cache_dir: None,
            verify_credentials: false,
            is_default: false,
            batch: self.batch.clone(),
        }
    }
}

/// Finds or builds the engine of a spec in this process.
pub type EngineResolver<'a> = dyn Fn(&EngineSpec) -> crate::Result<Arc<Engine>> + 'a;

/// A [`BoundModel`] as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundModelSpec {
    /// The model's name (or its id, for an AI function given a raw model id).
    pub name: String,
    /// Its engine.
    pub engine: EngineSpec,
    /// The model id.
    pub model_id: String,
    /// The API.
    pub api: crate::bedrock::engine::Api,
    /// Inference parameters.
    pub params: InferenceParams,
    /// The system prompt.
    pub system_prompt: Option<String>,
    /// Structured output.
    pub output_schema: Option<OutputSchema>,
    /// What a failed row gets.
    pub on_error: OnError,
    /// Whether answers come with provenance.
    pub provenance: bool,
    /// How errors name the model.
    pub label: String,
    /// Its own execution.
    #[serde(default)]
    pub execution: Option<crate::bedrock::batch::Execution>,
}

impl BoundModel {
    /// What travels of this binding.
    #[must_use]
    pub fn spec(&self) -> BoundModelSpec {
        BoundModelSpec {
            name: self.name.clone(),
            engine: EngineSpec::of(&self.engine),
            model_id: self.target.model_id.clone(),
            api: self.target.api,
            params: self.params.clone(),
            system_prompt: self.system_prompt.clone(),
            output_schema: self.output_schema.clone(),
            on_error: self.on_error,
            provenance: self.provenance,
            label: self.label.clone(),
            execution: self.execution,
        }
    }

    /// The binding of `spec` in this process.
    ///
    /// # Errors
    /// When its engine cannot be built here.
    pub fn of_wire(spec: BoundModelSpec, engines: &EngineResolver<'_>) -> crate::Result<Self> {
        Ok(Self {
            engine: engines(&spec.engine)?,
            name: spec.name,
            target: ModelTarget {
                model_id: spec.model_id,
                api: spec.api,
            },
            params: spec.params,
            system_prompt: spec.system_prompt,
            output_schema: spec.output_schema,
            on_error: spec.on_error,
            provenance: spec.provenance,
            label: spec.label,
            execution: spec.execution,
        })
    }
}

/// A [`CreatedModel`] as it travels: its validated spec and its engine's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedModelSpec {
    /// The model.
    pub model: ModelSpec,
    /// Its engine.
    pub engine: EngineSpec,
}

impl CreatedModel {
    /// What travels of this model.
    #[must_use]
    pub fn wire(&self) -> CreatedModelSpec {
        CreatedModelSpec {
            model: self.spec().clone(),
            engine: EngineSpec::of(self.engine()),
        }
    }

    /// The model of `spec` in this process.
    ///
    /// # Errors
    /// When its engine cannot be built here.
    pub fn of_wire(spec: CreatedModelSpec, engines: &EngineResolver<'_>) -> crate::Result<Self> {
        Ok(Self::new(spec.model, engines(&spec.engine)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::config::Secret;

    #[test]
    fn inline_secrets_become_a_kind_and_other_processes_use_their_own_chain() {
        let keys = CredentialSource::Static {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI"),
            session_token: Some(Secret::new("token")),
        };
        let kind = CredentialKind::of(&keys);
        assert_eq!(kind, CredentialKind::InlineKeys);
        let text = serde_json::to_string(&kind).unwrap();
        assert_eq!(text, "\"InlineKeys\"");
        assert_eq!(kind.source_elsewhere(), CredentialSource::DefaultChain);
        let api = CredentialKind::of(&CredentialSource::ApiKey(Secret::new("bedrock-key")));
        assert_eq!(serde_json::to_string(&api).unwrap(), "\"InlineApiKey\"");
        let profile = CredentialKind::of(&CredentialSource::Profile("dev".into()));
        assert_eq!(
            profile.source_elsewhere(),
            CredentialSource::Profile("dev".into())
        );
    }
}
