//! What the control plane says of a model: `GetFoundationModel`, and the check that a model
//! generates text before a query pays for it.

use super::Engine;
use super::connect::scrub;
use crate::bedrock::families;
use crate::bedrock::retry::CallFailure;
use crate::error::{Error, Result};

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

/// A model's details or summary (the control plane's two shapes with the same getters) as a
/// [`FoundationModelInfo`].
macro_rules! info_of {
    ($d:expr) => {{
        let d = $d;
        let names = |items: &[aws_sdk_bedrock::types::ModelModality]| -> Vec<String> {
            items.iter().map(|m| m.as_str().to_string()).collect()
        };
        FoundationModelInfo {
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
        }
    }};
}

impl Engine {
    /// A control-plane failure as a user's error, the engine's secrets scrubbed from it.
    fn control_error(&self, message: &str) -> Error {
        Error::InvalidInput(scrub(message, &self.config))
    }

    /// `GetFoundationModel` for the base model of an id, profile id or ARN.
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
                self.control_error(&format!(
                    "Model '{model_id}' is not available through engine '{}' in {} ({}). Check model_id against https://docs.aws.amazon.com/bedrock/latest/userguide/model-ids.html and the models enabled for the account.",
                    self.name,
                    self.region,
                    CallFailure::from_sdk(&e)
                ))
            })?;
        let d = out.model_details().ok_or_else(|| {
            Error::InvalidInput(format!(
                "Model '{model_id}': GetFoundationModel returned no details"
            ))
        })?;
        Ok(info_of!(d))
    }

    /// `ListFoundationModels`: every foundation model the engine's account and region offer.
    ///
    /// # Errors
    /// What Bedrock answers, explained (access denied, an unreachable endpoint, …).
    pub async fn list_foundation_models(&self) -> Result<Vec<FoundationModelInfo>> {
        let out = self
            .control
            .list_foundation_models()
            .send()
            .await
            .map_err(|e| {
                self.control_error(&format!(
                    "Engine '{}' could not list the foundation models of {} ({})",
                    self.name,
                    self.region,
                    CallFailure::from_sdk(&e)
                ))
            })?;
        Ok(out.model_summaries().iter().map(|d| info_of!(d)).collect())
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
}
