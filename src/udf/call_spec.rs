//! A bound AI function call as data that can leave the process ([`CallSpec`]), and the call it
//! becomes again in another process: the function, the model binding (engine settings and
//! credential kind, never a secret) and what the function adds (labels, embedding options).

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ScalarUDF;
use serde::{Deserialize, Serialize};

use super::ai_embed::EmbedCall;
use super::function::{AiCall, AiFunction};
use super::predict::PredictCall;
use super::text_call::{TextCall, TextKind};
use crate::bedrock::engine::EmbedOptions;
use crate::inference::spec::{BoundModelSpec, CreatedModelSpec, EngineResolver};
use crate::inference::{BoundModel, CreatedModel, ModelCall};

/// A bound AI function call, as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CallSpec {
    /// `ai_complete`, `ai_filter`, `ai_classify`, `ai_score`, or an AI aggregate's reduction.
    Text {
        /// The function's name.
        function: String,
        /// What it makes of answers.
        kind: TextKind,
        /// Its model.
        model: BoundModelSpec,
    },
    /// `ai_embed`.
    Embed {
        /// Its model.
        model: BoundModelSpec,
        /// The embedding options.
        embed: EmbedOptions,
        /// The vector's length.
        dimensions: i32,
    },
    /// `predict_<model>`.
    Predict {
        /// The model it predicts with.
        model: CreatedModelSpec,
    },
}

/// The functions whose calls are [`CallSpec::Text`], by name.
const TEXT_FUNCTIONS: [&str; 7] = [
    super::ai_complete::NAME,
    super::ai_filter::NAME,
    super::ai_classify::NAME,
    super::ai_score::NAME,
    super::ai_agg::NAME,
    super::ai_agg::SUMMARIZE_NAME,
    super::ai_rank::NAME,
];

impl CallSpec {
    /// The call in this process, its engine found or built by `engines`.
    ///
    /// # Errors
    /// An unknown function, or an engine that cannot be built here.
    pub fn call(self, engines: &EngineResolver<'_>) -> Result<Arc<dyn AiCall>> {
        Ok(match self {
            Self::Text {
                function,
                kind,
                model,
            } => {
                let Some(name) = TEXT_FUNCTIONS.iter().find(|n| **n == function) else {
                    return Err(DataFusionError::Plan(format!(
                        "A plan calls '{function}', which this build does not know: run the same datafusion-bedrock version everywhere"
                    )));
                };
                TextCall::bound(
                    name,
                    ModelCall::new(BoundModel::of_wire(model, engines)?),
                    kind,
                )
            }
            Self::Embed {
                model,
                embed,
                dimensions,
            } => EmbedCall::bound(
                ModelCall::new(BoundModel::of_wire(model, engines)?),
                embed,
                dimensions,
            ),
            Self::Predict { model } => {
                Arc::new(PredictCall::new(CreatedModel::of_wire(model, engines)?))
            }
        })
    }

    /// The `ScalarUDF` named `name` running this call in this process.
    ///
    /// # Errors
    /// As [`CallSpec::call`].
    pub fn udf(self, name: &str, engines: &EngineResolver<'_>) -> Result<ScalarUDF> {
        Ok(AiFunction::bound(name, self.call(engines)?))
    }
}
