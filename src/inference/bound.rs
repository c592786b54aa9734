//! A model bound at planning: everything a request needs (engine, model id, API, inference
//! parameters, system prompt, output schema) and what a failed row gets (`on_error`) and whether
//! answers carry provenance. It travels in the plan, so execution never reads the session's
//! catalog, and it holds no secret: the engine keeps its credentials, the binding names it.

use std::fmt;
use std::sync::Arc;

use crate::bedrock::batch::Execution;
use crate::bedrock::engine::{Api, Engine, ModelTarget};
use crate::bedrock::request::InferenceParams;
use crate::catalog::model::{ModelSpec, OnError};
use crate::catalog::output_schema::OutputSchema;

/// A model bound to the engine that calls it.
#[derive(Debug, Clone)]
pub struct BoundModel {
    /// The model's name as written: a `CREATE MODEL` name, or a raw model id.
    pub name: String,
    /// The engine the requests go through.
    pub engine: Arc<Engine>,
    /// The model id (or inference profile, or ARN) and the API.
    pub target: ModelTarget,
    /// Inference parameters.
    pub params: InferenceParams,
    /// A system prompt sent with every request.
    pub system_prompt: Option<String>,
    /// Typed structured output: the answer is a struct of these fields.
    pub output_schema: Option<OutputSchema>,
    /// What a failed row gets.
    pub on_error: OnError,
    /// Whether each answer carries how it was obtained.
    pub provenance: bool,
    /// How errors name the model: `model 'm' (id)` or `model 'id' via engine 'e'`.
    pub label: String,
    /// Its own `execution` (a model parameter, an AI function's option); `None` follows the
    /// session's `bedrock.execution`.
    pub execution: Option<Execution>,
}

impl BoundModel {
    /// A model created with `CREATE MODEL`, bound to its engine.
    pub fn of_spec(spec: &ModelSpec, engine: Arc<Engine>) -> Self {
        Self {
            name: spec.name.clone(),
            target: ModelTarget {
                model_id: spec.model_id.clone(),
                api: spec.api,
            },
            params: spec.params.clone(),
            system_prompt: spec.system_prompt.clone(),
            output_schema: spec.output_schema.clone(),
            on_error: spec.on_error,
            provenance: spec.provenance,
            label: format!("model '{}' ({})", spec.name, spec.model_id),
            execution: spec.execution,
            engine,
        }
    }

    /// A raw Bedrock model id, inference profile or ARN, called with the Converse API through
    /// `engine` with the model's defaults.
    pub fn of_model_id(model_id: &str, engine: Arc<Engine>) -> Self {
        Self {
            name: model_id.to_string(),
            label: format!("model '{model_id}' via engine '{}'", engine.name()),
            target: ModelTarget {
                model_id: model_id.to_string(),
                api: Api::Converse,
            },
            params: InferenceParams::default(),
            system_prompt: None,
            output_schema: None,
            on_error: OnError::Fail,
            provenance: false,
            execution: None,
            engine,
        }
    }

    /// The Bedrock model id.
    #[must_use]
    pub fn model_id(&self) -> &str {
        &self.target.model_id
    }

    /// What identifies the binding: equal fingerprints answer the same way.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{:?}|@{}:{:p}",
            self.name,
            self.target.model_id,
            self.target.api,
            self.params,
            self.system_prompt,
            self.output_schema,
            self.on_error,
            self.provenance,
            self.execution,
            self.engine.name(),
            Arc::as_ptr(&self.engine),
        )
    }
}

/// `model=…, model_id=…, engine=…, api=…` and the settings that differ from the defaults, for
/// EXPLAIN. Long texts (a system prompt) are shown by their length only.
impl fmt::Display for BoundModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "model={}, model_id={}, engine={}, api={}",
            self.name,
            self.target.model_id,
            self.engine.name(),
            self.target.api.name()
        )?;
        let p = &self.params;
        if let Some(v) = p.max_tokens {
            write!(f, ", max_tokens={v}")?;
        }
        if let Some(v) = p.temperature {
            write!(f, ", temperature={v}")?;
        }
        if let Some(v) = p.top_p {
            write!(f, ", top_p={v}")?;
        }
        if !p.stop.is_empty() {
            write!(f, ", stop={:?}", p.stop)?;
        }
        if let Some(tier) = p.service_tier {
            write!(f, ", service_tier={}", tier.name())?;
        }
        if let Some(latency) = p.latency {
            write!(f, ", latency={}", latency.name())?;
        }
        if let Some(cache) = p.prompt_cache {
            write!(f, ", prompt_cache={}", cache.name())?;
        }
        if let Some(k) = p.rows_per_request.filter(|k| *k > 1) {
            write!(f, ", rows_per_request={k}")?;
        }
        if let Some(system) = &self.system_prompt {
            write!(f, ", system_prompt=<{} chars>", system.chars().count())?;
        }
        if let Some(schema) = &self.output_schema {
            write!(f, ", output_schema=<{}>", schema.arrow_type())?;
        }
        if self.on_error != OnError::Fail {
            write!(f, ", on_error={}", self.on_error.name())?;
        }
        if self.provenance {
            write!(f, ", provenance=true")?;
        }
        if let Some(execution) = self.execution {
            write!(f, ", execution={execution}")?;
        }
        Ok(())
    }
}
