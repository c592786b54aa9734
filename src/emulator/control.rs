//! The control plane: `GET /foundation-models` and `GET /foundation-models/{modelId}`.

use serde_json::{Value, json};

use super::catalog::{CatalogModel, catalog};
use super::model_id;
use super::wire::{ApiError, ErrorCode};

/// The region printed in model ARNs.
const REGION: &str = "us-east-1";

fn summary(m: &CatalogModel) -> Value {
    json!({
        "modelArn": m.arn(REGION),
        "modelId": m.id,
        "modelName": m.name,
        "providerName": m.provider,
        "inputModalities": m.input_modalities,
        "outputModalities": m.output_modalities,
        "responseStreamingSupported": m.streaming,
        "customizationsSupported": [],
        "inferenceTypesSupported": m.inference_types,
        "modelLifecycle": { "status": m.lifecycle },
    })
}

/// `ListFoundationModels` with its filters: `byProvider` (case-insensitive), `byOutputModality`,
/// `byInferenceType`, `byCustomizationType`.
pub(crate) fn list(query: &str) -> Result<Value, ApiError> {
    let mut provider = None;
    let mut modality = None;
    let mut inference = None;
    let mut customization = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = model_id::percent_decode(&value.replace('+', " ")).unwrap_or_default();
        match key {
            "byProvider" => provider = Some(value),
            "byOutputModality" => {
                modality = Some(check_enum(
                    value,
                    "byOutputModality",
                    &["TEXT", "IMAGE", "EMBEDDING"],
                )?);
            }
            "byInferenceType" => {
                inference = Some(check_enum(
                    value,
                    "byInferenceType",
                    &["ON_DEMAND", "PROVISIONED"],
                )?);
            }
            "byCustomizationType" => {
                customization = Some(check_enum(
                    value,
                    "byCustomizationType",
                    &["FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION"],
                )?);
            }
            _ => {}
        }
    }
    let models: Vec<Value> = catalog()
        .iter()
        .filter(|m| {
            provider.as_ref().is_none_or(|p| {
                m.provider.eq_ignore_ascii_case(p)
                    || m.id.starts_with(&format!("{}.", p.to_lowercase()))
            })
        })
        .filter(|m| {
            modality
                .as_ref()
                .is_none_or(|x| m.output_modalities.contains(&x.as_str()))
        })
        .filter(|m| {
            inference
                .as_ref()
                .is_none_or(|x| m.inference_types.contains(&x.as_str()))
        })
        // No built-in model is customizable.
        .filter(|_| customization.is_none())
        .map(summary)
        .collect();
    Ok(json!({ "modelSummaries": models }))
}

fn check_enum(value: String, field: &str, allowed: &[&str]) -> Result<String, ApiError> {
    if allowed.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(ApiError::constraint(
            &value,
            field,
            &format!(
                "Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            ),
        ))
    }
}

/// `GetFoundationModel`: the model by id or ARN.
pub(crate) fn get(raw_id: &str) -> Result<Value, ApiError> {
    let id = model_id::percent_decode(raw_id).unwrap_or_default();
    let resolved = model_id::resolve(&id).map_err(|e| {
        if e.message.starts_with("1 validation error") {
            e
        } else {
            ApiError::new(
                ErrorCode::ResourceNotFound,
                format!("The model identifier {id} is not found."),
            )
        }
    })?;
    if resolved.via_profile {
        return Err(ApiError::new(
            ErrorCode::ResourceNotFound,
            format!(
                "The model identifier {id} is not found. Inference profiles are described by GetInferenceProfile."
            ),
        ));
    }
    Ok(json!({ "modelDetails": summary(resolved.model) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &Value) -> Vec<&str> {
        v["modelSummaries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["modelId"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn filters_by_provider_and_modality() {
        let cohere_embed = list("byProvider=cohere&byOutputModality=EMBEDDING").unwrap();
        assert_eq!(
            ids(&cohere_embed),
            vec!["cohere.embed-english-v3", "cohere.embed-multilingual-v3"]
        );
        let on_demand_claude = list("byProvider=Anthropic&byInferenceType=ON_DEMAND").unwrap();
        assert_eq!(ids(&on_demand_claude).len(), 3);
        assert_eq!(
            ids(&list("byCustomizationType=FINE_TUNING").unwrap()).len(),
            0
        );
        assert!(list("byOutputModality=SOUND").is_err());
    }

    #[test]
    fn get_returns_details_or_not_found() {
        let d = get("amazon.titan-text-premier-v1%3A0").unwrap();
        assert_eq!(d["modelDetails"]["outputModalities"], json!(["TEXT"]));
        assert_eq!(
            d["modelDetails"]["modelLifecycle"]["status"],
            json!("ACTIVE")
        );
        let e = get("amazon.nothing-v9").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                ErrorCode::ResourceNotFound,
                "The model identifier amazon.nothing-v9 is not found."
            )
        );
    }
}
