//! `ai_embed(model, text [, options])`: each row's embedding vector.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, FixedSizeListArray, Float32Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use super::call_spec::CallSpec;
use super::function::{AiBinder, AiCall, AiFunction, BindArgs, text_argument};
use super::options::{RowHandling, option_error, option_pairs, unknown_option};
use super::resolve::choose_engine;
use crate::bedrock::engine::CallOptions;
use crate::bedrock::families::{EmbedOptions, base_model_id};
use crate::catalog::Catalog;
use crate::inference::{Ask, BoundModel, ModelCall, RowAnswer};

/// The function's name in SQL.
pub const NAME: &str = "ai_embed";

/// The embedding model the examples use (1024 dimensions by default).
pub const DEFAULT_EMBEDDING_MODEL: &str = "amazon.titan-embed-text-v2:0";

const MODEL_EXAMPLE: &str = "'amazon.titan-embed-text-v2:0' or 'cohere.embed-english-v3'";
const OPTIONS_EXAMPLE: &str = "'{\"dimensions\": 256}'";

/// The keys of `ai_embed`'s options.
pub const EMBED_OPTIONS: &[&str] = &[
    "dimensions",
    "normalize",
    "input_type",
    "engine",
    "on_error",
    "provenance",
];

/// The options of an `ai_embed` call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AiEmbedOptions {
    /// `dimensions`, `normalize`, `input_type` as the model takes them.
    pub embed: EmbedOptions,
    /// `engine`: the engine to call through (instead of the default engine).
    pub engine: Option<String>,
    /// `on_error` (`'fail'`, the default, or `'null'`) and `provenance` (the vector becomes
    /// `{value, meta}`).
    pub handling: RowHandling,
}

impl AiEmbedOptions {
    /// Reads a JSON object of options; unknown keys get a did-you-mean.
    ///
    /// # Errors
    /// Invalid JSON, an unknown key or a value of the wrong type.
    pub fn parse(json: &str) -> Result<Self> {
        let mut options = Self::default();
        for (key, value) in option_pairs(NAME, json)? {
            let e = |e: crate::Error| option_error(NAME, &e);
            match key.as_str() {
                "dimensions" => {
                    options.embed.dimensions = Some(
                        u32::try_from(value.as_integer_in(&key, 1, 100_000).map_err(e)?)
                            .unwrap_or(u32::MAX),
                    );
                }
                "normalize" => options.embed.normalize = Some(value.as_bool(&key).map_err(e)?),
                "input_type" => options.embed.input_type = Some(value.as_text(&key).map_err(e)?),
                "engine" => options.engine = Some(value.as_text(&key).map_err(e)?),
                _ if options.handling.read(&key, &value).map_err(e)? => {}
                _ => return Err(unknown_option(NAME, &key, EMBED_OPTIONS)),
            }
        }
        Ok(options)
    }
}

/// The vector length a model produces with the given options, known before any call:
/// Titan Text Embeddings v2 1024 (or `dimensions` 256 / 512), Titan Embeddings v1 1536,
/// Cohere Embed v3 1024, Cohere Embed v4 1536 (or `dimensions` 256 / 512 / 1024).
///
/// # Errors
/// A model that is not a supported embedding model, or dimensions it does not produce.
pub fn embedding_dimensions(model_id: &str, options: &EmbedOptions) -> Result<i32> {
    let base = base_model_id(model_id);
    let (default, allowed): (i32, &[u32]) = if base.starts_with("amazon.titan-embed-text-v2") {
        (1024, &[256, 512, 1024])
    } else if base.starts_with("amazon.titan-embed-text-v1") {
        (1536, &[])
    } else if base.starts_with("cohere.embed-v4") {
        (1536, &[256, 512, 1024, 1536])
    } else if base.starts_with("cohere.embed-") {
        (1024, &[])
    } else {
        return Err(DataFusionError::Plan(format!(
            "{NAME}: '{model_id}' is not a supported embedding model: use amazon.titan-embed-text-v2:0 (1024 dimensions, or 256 / 512 with '{{\"dimensions\": 256}}'), amazon.titan-embed-text-v1, cohere.embed-english-v3 or cohere.embed-multilingual-v3"
        )));
    };
    match options.dimensions {
        None => Ok(default),
        Some(d) if allowed.contains(&d) => Ok(i32::try_from(d).unwrap_or(i32::MAX)),
        Some(d) if allowed.is_empty() => Err(DataFusionError::Plan(format!(
            "{NAME}: '{model_id}' always produces {default} dimensions and takes no dimensions option (got {d}): remove it"
        ))),
        Some(d) => Err(DataFusionError::Plan(format!(
            "{NAME}: '{model_id}' produces vectors of {} dimensions, not {d}: choose one of those",
            allowed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The element field of the vectors `ai_embed` returns.
fn item_field() -> FieldRef {
    Arc::new(Field::new_list_field(DataType::Float32, true))
}

/// `ai_embed(model, text [, options]) → FixedSizeList<Float32>(dimensions)`: the embedding of
/// each row's text.
///
/// - `model` (a constant): a Bedrock embedding model id, inference profile or ARN, called
///   through the default engine (the one created with `default = true`, else the only one):
///   `amazon.titan-embed-text-v2:0` (1024 dimensions; 256 or 512 with `dimensions`),
///   `amazon.titan-embed-text-v1` (1536), `cohere.embed-english-v3` /
///   `cohere.embed-multilingual-v3` (1024; up to 96 texts per request).
/// - `text`: any expression; cast to text.
/// - `options` (a constant JSON object), also `on_error` and `provenance` as for
///   `ai_complete`: `dimensions`, `normalize` (Titan v2), `input_type`
///   (Cohere: `search_document`, the default, or `search_query`, …), `engine`.
///
/// The vector length is part of the return type, so it is derived from the model id and the
/// `dimensions` option at planning time. A NULL text gives NULL and sends no request;
/// identical texts are embedded once and cached vectors are reused.
///
/// ```sql
/// SELECT id, ai_embed('amazon.titan-embed-text-v2:0', body, '{"dimensions": 256}') AS v
/// FROM docs;
/// ```
#[derive(Debug)]
pub struct AiEmbed;

impl AiEmbed {
    /// The function as registered in a session whose engines are in `catalog`.
    pub fn udf(catalog: &Arc<Catalog>) -> ScalarUDF {
        AiFunction::unbound(Arc::new(Self), catalog)
    }
}

impl AiBinder for AiEmbed {
    fn name(&self) -> &str {
        NAME
    }

    fn bind(&self, catalog: &Catalog, args: &BindArgs) -> Result<Arc<dyn AiCall>> {
        args.check_count(NAME, 2..=3, "model, text [, options]")?;
        let model = args.text(NAME, "model", 1, MODEL_EXAMPLE)?;
        if let Some(entry) = catalog.model(&model) {
            return Err(DataFusionError::Plan(format!(
                "{NAME}: '{model}' is a text model created with CREATE MODEL ({}); {NAME} takes an embedding model id such as {MODEL_EXAMPLE}",
                entry.spec.model_id
            )));
        }
        let options = args
            .optional_text(NAME, "options", 3, OPTIONS_EXAMPLE)?
            .map(|o| AiEmbedOptions::parse(&o))
            .transpose()?
            .unwrap_or_default();
        let dimensions = embedding_dimensions(&model, &options.embed)?;
        let engine = choose_engine(catalog, NAME, options.engine.as_deref())?;
        let mut bound = BoundModel::of_model_id(&model, engine);
        options.handling.apply(&mut bound);
        Ok(EmbedCall::bound(
            ModelCall::new(bound),
            options.embed,
            dimensions,
        ))
    }
}

/// `ai_embed` bound to its model.
#[derive(Debug)]
pub(super) struct EmbedCall {
    call: ModelCall,
    embed: EmbedOptions,
    dimensions: i32,
}

impl EmbedCall {
    /// `ai_embed`'s call of `call`'s model, asking for vectors of `dimensions`.
    pub(super) fn bound(call: ModelCall, embed: EmbedOptions, dimensions: i32) -> Arc<dyn AiCall> {
        Arc::new(Self {
            call,
            embed,
            dimensions,
        })
    }
}

#[async_trait]
impl AiCall for EmbedCall {
    fn value_type(&self) -> DataType {
        DataType::FixedSizeList(item_field(), self.dimensions)
    }

    fn provenance(&self) -> bool {
        self.call.model().provenance
    }

    fn describe(&self) -> String {
        format!("{}, dimensions={}", self.call.model(), self.dimensions)
    }

    fn engine(&self) -> Arc<crate::bedrock::engine::Engine> {
        Arc::clone(&self.call.model().engine)
    }

    fn spec(&self) -> CallSpec {
        CallSpec::Embed {
            model: self.call.model().spec(),
            embed: self.embed.clone(),
            dimensions: self.dimensions,
        }
    }

    fn fingerprint(&self) -> String {
        format!(
            "{NAME}|{:?}|{}|{}",
            self.embed,
            self.dimensions,
            self.call.model().fingerprint()
        )
    }

    async fn answer(
        &self,
        args: &[ColumnarValue],
        rows: usize,
        options: &CallOptions,
    ) -> Result<Vec<RowAnswer>> {
        let texts = text_argument(NAME, args, 1, rows)?;
        let ask = Ask {
            input: "text",
            ..Ask::by(NAME)
        };
        let size = usize::try_from(self.dimensions).unwrap_or(0);
        self.call
            .embed_each(&texts, &self.embed, size, &ask, options)
            .await
    }

    fn values(&self, answers: &[RowAnswer]) -> Result<ArrayRef> {
        let size = usize::try_from(self.dimensions).unwrap_or(0);
        let mut values: Vec<f32> = Vec::with_capacity(size * answers.len());
        let mut valid: Vec<bool> = Vec::with_capacity(answers.len());
        for answer in answers {
            match &answer.vector {
                Some(vector) if vector.len() == size => {
                    values.extend_from_slice(vector);
                    valid.push(true);
                }
                _ => {
                    values.extend(std::iter::repeat_n(0.0, size));
                    valid.push(false);
                }
            }
        }
        Ok(Arc::new(FixedSizeListArray::try_new(
            item_field(),
            self.dimensions,
            Arc::new(Float32Array::from(values)),
            Some(NullBuffer::from(valid)),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::model::OnError;

    fn dims(model: &str, dimensions: Option<u32>) -> Result<i32> {
        embedding_dimensions(
            model,
            &EmbedOptions {
                dimensions,
                ..EmbedOptions::default()
            },
        )
    }

    #[test]
    fn dimensions_follow_the_model_and_options() {
        assert_eq!(dims("amazon.titan-embed-text-v2:0", None).unwrap(), 1024);
        assert_eq!(
            dims("amazon.titan-embed-text-v2:0", Some(256)).unwrap(),
            256
        );
        assert_eq!(dims("amazon.titan-embed-text-v1", None).unwrap(), 1536);
        assert_eq!(dims("cohere.embed-english-v3", None).unwrap(), 1024);
        assert_eq!(dims("us.cohere.embed-v4:0", Some(512)).unwrap(), 512);
        let err = |m: &str, d: Option<u32>| dims(m, d).unwrap_err().strip_backtrace();
        assert_eq!(
            err("amazon.titan-embed-text-v2:0", Some(300)),
            "Error during planning: ai_embed: 'amazon.titan-embed-text-v2:0' produces vectors of 256, 512, 1024 dimensions, not 300: choose one of those"
        );
        assert_eq!(
            err("cohere.embed-english-v3", Some(256)),
            "Error during planning: ai_embed: 'cohere.embed-english-v3' always produces 1024 dimensions and takes no dimensions option (got 256): remove it"
        );
        assert!(
            err("amazon.nova-micro-v1:0", None)
                .starts_with("Error during planning: ai_embed: 'amazon.nova-micro-v1:0' is not a supported embedding model")
        );
    }

    #[test]
    fn options_are_read_and_checked() {
        assert_eq!(
            AiEmbedOptions::parse(r#"{"dimensions": 512, "normalize": false}"#).unwrap(),
            AiEmbedOptions {
                embed: EmbedOptions {
                    dimensions: Some(512),
                    normalize: Some(false),
                    input_type: None
                },
                engine: None,
                handling: RowHandling::default(),
            }
        );
        assert_eq!(
            AiEmbedOptions::parse(r#"{"on_error": "null", "provenance": true}"#).unwrap(),
            AiEmbedOptions {
                handling: RowHandling {
                    on_error: Some(OnError::Null),
                    provenance: Some(true),
                },
                ..AiEmbedOptions::default()
            }
        );
        assert_eq!(
            AiEmbedOptions::parse(r#"{"dimension": 512}"#)
                .unwrap_err()
                .strip_backtrace(),
            "Error during planning: ai_embed: unknown option 'dimension' — did you mean 'dimensions'?"
        );
    }
}
