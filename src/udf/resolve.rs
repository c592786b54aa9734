//! Which model an AI function calls: a model created with `CREATE MODEL` (its engine, model id,
//! API, inference parameters, system prompt, output schema, `on_error` and provenance apply) or
//! a raw Bedrock model id, inference profile or ARN (called with the Converse API through the
//! default engine), with the call's options applied.

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};

use super::options::CompletionOptions;
use crate::bedrock::engine::{Api, Engine};
use crate::bedrock::families::ModelFamily;
use crate::bedrock::params::suggest;
use crate::catalog::Catalog;
use crate::inference::BoundModel;

fn plan_error(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(message.into())
}

/// Whether a string looks like a Bedrock model id, inference profile or ARN this crate can
/// call, rather than a misspelt model name.
#[must_use]
pub fn is_bedrock_model_id(id: &str) -> bool {
    id.starts_with("arn:") || ModelFamily::from_model_id(id).is_some()
}

/// The engine a raw model id is called through: the one named, else the engine created with
/// `default = true`, else the only engine.
///
/// # Errors
/// No engine, an unknown engine name, or several engines and none marked default.
pub fn choose_engine(
    catalog: &Catalog,
    function: &str,
    named: Option<&str>,
) -> Result<Arc<Engine>> {
    let engine_names = catalog.engine_names();
    if let Some(name) = named {
        return catalog.engine(name).ok_or_else(|| {
            let hint = catalog.engine_suggestion(name).unwrap_or_default();
            plan_error(format!(
                "{function}: ML engine '{name}' does not exist{hint}"
            ))
        });
    }
    let engines = catalog.engines();
    let defaults: Vec<&Arc<Engine>> = engines.iter().filter(|e| e.config().is_default).collect();
    match (defaults.as_slice(), engines.as_slice()) {
        ([only], _) => Ok(Arc::clone(only)),
        ([], [only]) => Ok(Arc::clone(only)),
        ([], []) => Err(plan_error(format!(
            "{function}: there is no ML engine to call Bedrock through: create one with CREATE ML_ENGINE bedrock_engine FROM bedrock USING …"
        ))),
        ([], _) => Err(plan_error(format!(
            "{function}: several ML engines exist ({}) and none is the default: create one with USING default = true, or name it in the options as '{{\"engine\": \"{}\"}}'",
            engine_names.join(", "),
            engine_names.first().map_or("", String::as_str)
        ))),
        (several, _) => Err(plan_error(format!(
            "{function}: several ML engines are marked default ({}): keep default = true on one of them",
            several
                .iter()
                .map(|e| e.name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// `rows_per_request` above 1 needs Converse and on-demand requests.
fn check_packing(function: &str, bound: &BoundModel) -> Result<()> {
    crate::inference::packing::check(
        &format!("{function}: rows_per_request"),
        bound.params.rows_per_request.unwrap_or(1),
        None,
        bound.target.api,
        bound
            .execution
            .filter(|e| e.gathers())
            .map(crate::bedrock::batch::Execution::name),
    )
    .map_err(plan_error)
}

/// Resolves `model` — a model created with CREATE MODEL (its engine, model id, API,
/// inference parameters and system prompt apply) or a raw Bedrock model id, inference
/// profile or ARN (called with the Converse API through the default engine) — and applies
/// the options.
///
/// # Errors
/// An unknown model name, a text that is no model id, or no engine to call it through.
pub fn resolve_model(
    catalog: &Catalog,
    function: &str,
    model: &str,
    options: &CompletionOptions,
) -> Result<BoundModel> {
    let mut bound = if let Some(entry) = catalog.model(model) {
        let spec = &entry.spec;
        if let Some(engine) = &options.engine
            && *engine != spec.engine
        {
            return Err(plan_error(format!(
                "{function}: model '{model}' runs on ML engine '{}', so the option engine = '{engine}' does not apply: remove it, or pass a raw model id",
                spec.engine
            )));
        }
        let engine = catalog.engine(&spec.engine).ok_or_else(|| {
            plan_error(format!(
                "{function}: model '{model}' uses ML engine '{}', which no longer exists",
                spec.engine
            ))
        })?;
        BoundModel::of_spec(spec, engine)
    } else if is_bedrock_model_id(model) {
        BoundModel::of_model_id(
            model,
            choose_engine(catalog, function, options.engine.as_deref())?,
        )
    } else {
        let models: Vec<String> = catalog
            .models()
            .iter()
            .map(|m| m.spec.name.clone())
            .collect();
        let hint = suggest(
            model,
            &models.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .map(|s| format!("did you mean '{s}'? Otherwise "))
        .unwrap_or_default();
        return Err(plan_error(format!(
            "{function}: '{model}' is neither a model created with CREATE MODEL nor a Bedrock model id: {hint}write a model's name or a model id such as 'amazon.nova-micro-v1:0', an inference profile such as 'us.anthropic.claude-3-haiku-20240307-v1:0', or an ARN"
        )));
    };
    if options.output_schema.is_some() {
        bound.output_schema.clone_from(&options.output_schema);
    }
    let p = &mut bound.params;
    if let Some(v) = options.max_tokens {
        p.max_tokens = Some(v);
    }
    if let Some(v) = options.temperature {
        p.temperature = Some(v);
    }
    if let Some(v) = options.top_p {
        p.top_p = Some(v);
    }
    if let Some(v) = &options.stop {
        p.stop.clone_from(v);
    }
    if let Some(v) = options.service_tier {
        p.service_tier = Some(v);
    }
    if let Some(v) = options.latency {
        p.latency = Some(v);
    }
    if let Some(v) = options.prompt_cache {
        p.prompt_cache = Some(v);
    }
    if let Some(v) = options.rows_per_request {
        p.rows_per_request = Some(v);
    }
    if let Some(v) = &options.system_prompt {
        bound.system_prompt = Some(v.clone());
    }
    options.handling.apply(&mut bound);
    if let Some(execution) = options.execution {
        bound.execution = Some(execution);
    }
    if let Some(execution) = bound.execution.filter(|e| e.gathers()) {
        if bound.output_schema.is_some() {
            return Err(plan_error(format!(
                "{function}: execution = '{execution}' cannot run {}: {}",
                bound.label,
                crate::bedrock::batch::record::NO_TOOLS
            )));
        }
        bound
            .engine
            .config()
            .batch
            .check_ready(bound.engine.name(), execution, function)
            .map_err(|e| plan_error(e.to_string()))?;
    }
    check_packing(function, &bound)?;
    if bound.output_schema.is_some() && bound.target.api != Api::Converse {
        return Err(plan_error(format!(
            "{function}: output_schema needs the Converse API, and {} uses api = 'invoke'",
            bound.label
        )));
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_model_ids_are_told_from_misspelt_names() {
        assert!(is_bedrock_model_id("amazon.nova-micro-v1:0"));
        assert!(is_bedrock_model_id(
            "us.anthropic.claude-3-haiku-20240307-v1:0"
        ));
        assert!(is_bedrock_model_id(
            "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0"
        ));
        assert!(!is_bedrock_model_id("my_modle"));
    }

    #[test]
    fn no_engine_is_a_clear_error() {
        let catalog = Catalog::default();
        assert_eq!(
            resolve_model(
                &catalog,
                "ai_complete",
                "amazon.nova-micro-v1:0",
                &CompletionOptions::default()
            )
            .unwrap_err()
            .strip_backtrace(),
            "Error during planning: ai_complete: there is no ML engine to call Bedrock through: create one with CREATE ML_ENGINE bedrock_engine FROM bedrock USING …"
        );
        assert_eq!(
            resolve_model(
                &catalog,
                "ai_complete",
                "my_modle",
                &CompletionOptions::default()
            )
            .unwrap_err()
            .strip_backtrace(),
            "Error during planning: ai_complete: 'my_modle' is neither a model created with CREATE MODEL nor a Bedrock model id: write a model's name or a model id such as 'amazon.nova-micro-v1:0', an inference profile such as 'us.anthropic.claude-3-haiku-20240307-v1:0', or an ARN"
        );
    }
}
