//! Native `InvokeModel` codecs, one per model family.
//!
//! Each family codec translates the model-agnostic [`TextRequest`] into the request body that
//! family's models take on Bedrock's `InvokeModel` API, and parses the family's response body
//! back into a [`TextResponse`]; the embedding families do the same for lists of texts. The
//! body shapes follow AWS's public documentation of each family's inference parameters.
//!
//! Common rules of the text codecs:
//! - unset parameters are left out of the body, so the model's defaults apply;
//! - `InferenceParams::extra`, when set, must be a JSON object and is merged into the body
//!   (objects key by key), so model-specific fields such as `top_k` can be passed through;
//! - consecutive messages of one role are merged into one turn for the families that need
//!   strictly alternating turns (Nova, Claude, Mistral);
//! - only Nova and Claude can continue a trailing assistant message (prefill); the other
//!   families need the conversation to end with a user message;
//! - stop reasons are normalised to Converse's vocabulary (`end_turn`, `max_tokens`,
//!   `stop_sequence`, `tool_use`, `content_filtered`, `guardrail_intervened`, ...), and a body
//!   whose `amazon-bedrock-guardrailAction` is `INTERVENED` reports `guardrail_intervened`.

mod claude;
mod cohere;
mod common;
mod jamba;
mod llama;
mod mistral;
mod nova;
mod titan;

use std::fmt;

use crate::bedrock::request::{TextRequest, TextResponse};
use crate::{Error, Result};

/// Model families with a native `InvokeModel` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelFamily {
    /// Amazon Titan Text (`amazon.titan-text-express-v1`, `-lite-v1`, `-premier-v1:0`).
    TitanText,
    /// Amazon Nova understanding models (`amazon.nova-micro-v1:0`, `-lite-`, `-pro-`, ...).
    Nova,
    /// Anthropic Claude, through the Messages API (`anthropic.claude-*`).
    Claude,
    /// Meta Llama 3 and later instruct models (`meta.llama3-*`, `meta.llama3-1-*`, ...).
    Llama,
    /// Mistral AI text-completion models (`mistral.mistral-7b-instruct-v0:2`, ...).
    Mistral,
    /// Cohere Command R and R+ (`cohere.command-r-v1:0`, `cohere.command-r-plus-v1:0`).
    CohereCommandR,
    /// AI21 Labs Jamba (`ai21.jamba-instruct-v1:0`, `ai21.jamba-1-5-large-v1:0`, ...).
    Jamba,
    /// Amazon Titan Text Embeddings (`amazon.titan-embed-text-v1`, `-v2:0`); one text a call.
    TitanEmbed,
    /// Cohere Embed (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`, ...); up to 96
    /// texts a call.
    CohereEmbed,
}

/// Region prefixes of cross-region inference-profile ids (`us.anthropic.claude-…`).
const PROFILE_PREFIXES: [&str; 8] = [
    "us.", "eu.", "apac.", "global.", "us-gov.", "ca.", "jp.", "au.",
];

/// Nova model names (after `amazon.nova-`) that are not text-generation models: image,
/// video, speech and embedding models take other request bodies.
const NON_TEXT_NOVA: [&str; 4] = ["canvas", "reel", "sonic", "embed"];

impl ModelFamily {
    /// Family of a model id: plain ids (`anthropic.claude-3-haiku-20240307-v1:0`),
    /// inference-profile ids with a region prefix (`us.`, `eu.`, `apac.`, `global.`,
    /// `us-gov.`, `ca.`, `jp.`, `au.`), and ARNs
    /// (`arn:aws:bedrock:us-east-1::foundation-model/<id>`,
    /// `arn:aws:bedrock:us-east-1:123456789012:inference-profile/<profile id>`).
    ///
    /// Matching is by provider prefix and name: `amazon.titan-text-*` → `TitanText`,
    /// `amazon.nova-*` → `Nova` (except the non-text Nova Canvas, Reel, Sonic and
    /// multimodal-embeddings models), `anthropic.*` → `Claude`, `meta.llama*` → `Llama`,
    /// `mistral.*` → `Mistral`, `cohere.command-r*` → `CohereCommandR`, `ai21.jamba*` →
    /// `Jamba`, `amazon.titan-embed-text-*` → `TitanEmbed`, `cohere.embed-*` →
    /// `CohereEmbed`. `None` otherwise (including application-inference-profile and
    /// provisioned-model ARNs, whose ids do not name the model).
    #[must_use]
    pub fn from_model_id(model_id: &str) -> Option<Self> {
        let id = base_model_id(model_id);
        let family = if id.starts_with("amazon.titan-text-") {
            Self::TitanText
        } else if id.starts_with("amazon.titan-embed-text-") {
            Self::TitanEmbed
        } else if let Some(name) = id.strip_prefix("amazon.nova-") {
            if name.is_empty() || NON_TEXT_NOVA.iter().any(|kind| name.contains(kind)) {
                return None;
            }
            Self::Nova
        } else if id.len() > "anthropic.".len() && id.starts_with("anthropic.") {
            Self::Claude
        } else if id.starts_with("meta.llama") {
            Self::Llama
        } else if id.len() > "mistral.".len() && id.starts_with("mistral.") {
            Self::Mistral
        } else if id.starts_with("cohere.command-r") {
            Self::CohereCommandR
        } else if id.starts_with("ai21.jamba") {
            Self::Jamba
        } else if id.starts_with("cohere.embed-") {
            Self::CohereEmbed
        } else {
            return None;
        };
        Some(family)
    }

    /// Whether the family embeds texts (rather than generating text).
    #[must_use]
    pub fn is_embedding(self) -> bool {
        matches!(self, Self::TitanEmbed | Self::CohereEmbed)
    }

    /// Most texts one embedding call takes: `TitanEmbed` 1, `CohereEmbed` 96, text
    /// families 0.
    #[must_use]
    pub fn max_texts_per_call(self) -> usize {
        match self {
            Self::TitanEmbed => 1,
            Self::CohereEmbed => 96,
            _ => 0,
        }
    }

    /// The family's display name, e.g. "Anthropic Claude".
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::TitanText => "Amazon Titan Text",
            Self::Nova => "Amazon Nova",
            Self::Claude => "Anthropic Claude",
            Self::Llama => "Meta Llama",
            Self::Mistral => "Mistral AI",
            Self::CohereCommandR => "Cohere Command R",
            Self::Jamba => "AI21 Labs Jamba",
            Self::TitanEmbed => "Amazon Titan Text Embeddings",
            Self::CohereEmbed => "Cohere Embed",
        }
    }
}

impl fmt::Display for ModelFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The base model id of a profile id or ARN (`us.anthropic.claude…` → `anthropic.claude…`),
/// unchanged for plain ids.
///
/// For a Bedrock ARN the id is the part of the resource after its type
/// (`foundation-model/`, `inference-profile/`, ...); a region prefix is then removed.
#[must_use]
pub fn base_model_id(model_id: &str) -> &str {
    let id = arn_resource_id(model_id).unwrap_or(model_id);
    PROFILE_PREFIXES
        .iter()
        .find_map(|prefix| id.strip_prefix(prefix))
        .unwrap_or(id)
}

/// The id inside a Bedrock ARN `arn:<partition>:bedrock:<region>:<account>:<type>/<id>`.
fn arn_resource_id(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    // partition, service, region, account, resource (model ids themselves contain ':').
    let mut parts = rest.splitn(5, ':');
    let _partition = parts.next()?;
    let service = parts.next()?;
    let _region = parts.next()?;
    let _account = parts.next()?;
    let resource = parts.next()?;
    if service != "bedrock" {
        return None;
    }
    let (_kind, id) = resource.split_once('/')?;
    Some(id)
}

/// The error for an embedding family given to a text codec, or the reverse.
fn wrong_kind(family: ModelFamily, wanted: &str, use_instead: &str) -> Error {
    Error::InvalidInput(format!(
        "{} is {} family, so it has no native {wanted} body; use {use_instead}",
        family.name(),
        if family.is_embedding() {
            "an embedding"
        } else {
            "a text-generation"
        },
    ))
}

/// The native body for a text request.
///
/// # Errors
/// An [`Error::InvalidInput`] for an embedding family, and for a request the family cannot
/// express: no messages; a message without text blocks; an assistant message last (except
/// for Nova and Claude, which continue it) or first (Nova, Claude and Mistral); stop
/// sequences for Llama; a `temperature` or `top_p` that is NaN or infinite; an `extra` that
/// is neither null nor a JSON object.
pub fn encode_text_request(
    family: ModelFamily,
    request: &TextRequest,
) -> Result<serde_json::Value> {
    match family {
        ModelFamily::TitanText => titan::encode_text(request),
        ModelFamily::Nova => nova::encode(request),
        ModelFamily::Claude => claude::encode(request),
        ModelFamily::Llama => llama::encode(request),
        ModelFamily::Mistral => mistral::encode(request),
        ModelFamily::CohereCommandR => cohere::encode_chat(request),
        ModelFamily::Jamba => jamba::encode(request),
        ModelFamily::TitanEmbed | ModelFamily::CohereEmbed => Err(wrong_kind(
            family,
            "text-generation",
            "an embedding model with encode_embed_request, or a text-generation model",
        )),
    }
}

/// Parses a native response body into a [`TextResponse`]. `stop_reason` is normalised to
/// Converse's vocabulary (`end_turn`, `max_tokens`, `stop_sequence`, ...). Token counts come
/// from the body when present, else 0.
///
/// # Errors
/// An [`Error::InvalidInput`] for an embedding family; when `body` is not JSON or not a JSON
/// object; and when it lacks the family's text: a string at `results[0].outputText` (Titan
/// Text), `generation` (Llama), `text` (Command R), `choices[0].message.content` (Jamba, and
/// Mistral when the body has `choices` but no `outputs`) or `outputs[0].text` (Mistral
/// otherwise), or an array at `output.message.content` (Nova) or `content` (Claude).
pub fn decode_text_response(family: ModelFamily, body: &[u8]) -> Result<TextResponse> {
    match family {
        ModelFamily::TitanText => titan::decode_text(body),
        ModelFamily::Nova => nova::decode(body),
        ModelFamily::Claude => claude::decode(body),
        ModelFamily::Llama => llama::decode(body),
        ModelFamily::Mistral => mistral::decode(body),
        ModelFamily::CohereCommandR => cohere::decode_chat(body),
        ModelFamily::Jamba => jamba::decode(body),
        ModelFamily::TitanEmbed | ModelFamily::CohereEmbed => Err(wrong_kind(
            family,
            "text-generation",
            "decode_embed_response for embedding models",
        )),
    }
}

/// Options of an embedding call. `None` leaves the model's default.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EmbedOptions {
    /// Vector length: Titan Embeddings v2 takes 256, 512 or 1024; Cohere Embed v4 takes 256,
    /// 512, 1024 or 1536 (`output_dimension`). Titan v1 and Cohere Embed v3 take none.
    pub dimensions: Option<u32>,
    /// Whether Titan Embeddings v2 normalises the vector (Cohere Embed has no such option).
    pub normalize: Option<bool>,
    /// Cohere Embed's `input_type` (`search_document`, the default, `search_query`,
    /// `classification` or `clustering`); Titan Embeddings has none.
    pub input_type: Option<String>,
}

/// The native body embedding `texts` (`1 <= len <= max_texts_per_call`).
///
/// # Errors
/// An [`Error::InvalidInput`] for a text-generation family; when `texts` is empty or longer
/// than [`ModelFamily::max_texts_per_call`]; and for options the family does not take: for
/// Titan Text Embeddings an `input_type`, or `dimensions` other than 256, 512 or 1024; for
/// Cohere Embed `normalize`, an `input_type` other than `search_document`, `search_query`,
/// `classification` or `clustering`, or `dimensions` other than 256, 512, 1024 or 1536.
pub fn encode_embed_request(
    family: ModelFamily,
    texts: &[&str],
    options: &EmbedOptions,
) -> Result<serde_json::Value> {
    match family {
        ModelFamily::TitanEmbed => titan::encode_embed(texts, options),
        ModelFamily::CohereEmbed => cohere::encode_embed(texts, options),
        _ => Err(wrong_kind(
            family,
            "embedding",
            "an embedding model (Titan Text Embeddings or Cohere Embed) with \
             encode_embed_request, or encode_text_request for this model",
        )),
    }
}

/// Vectors in input order, and the input tokens reported (0 when the body does not say).
///
/// # Errors
/// An [`Error::InvalidInput`] for a text-generation family; when `body` is not JSON or not a
/// JSON object; and when it holds no vectors: for Titan Text Embeddings `embedding` is not
/// an array of numbers; for Cohere Embed `embeddings` (or `embeddings.float`, when
/// `embeddings` is an object) is not an array whose every item is an array of numbers.
pub fn decode_embed_response(family: ModelFamily, body: &[u8]) -> Result<(Vec<Vec<f32>>, u64)> {
    match family {
        ModelFamily::TitanEmbed => titan::decode_embed(body),
        ModelFamily::CohereEmbed => cohere::decode_embed(body),
        _ => Err(wrong_kind(
            family,
            "embedding",
            "decode_text_response for text-generation models",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::request::InferenceParams;

    const CLAUDE: &str = "anthropic.claude-3-haiku-20240307-v1:0";

    #[test]
    fn families_of_plain_ids() {
        let cases = [
            ("amazon.titan-text-express-v1", Some(ModelFamily::TitanText)),
            ("amazon.titan-text-lite-v1", Some(ModelFamily::TitanText)),
            (
                "amazon.titan-text-premier-v1:0",
                Some(ModelFamily::TitanText),
            ),
            ("amazon.nova-micro-v1:0", Some(ModelFamily::Nova)),
            ("amazon.nova-pro-v1:0", Some(ModelFamily::Nova)),
            ("amazon.nova-2-lite-v1:0", Some(ModelFamily::Nova)),
            (CLAUDE, Some(ModelFamily::Claude)),
            (
                "anthropic.claude-sonnet-4-20250514-v1:0",
                Some(ModelFamily::Claude),
            ),
            ("meta.llama3-8b-instruct-v1:0", Some(ModelFamily::Llama)),
            ("meta.llama3-1-70b-instruct-v1:0", Some(ModelFamily::Llama)),
            (
                "mistral.mistral-7b-instruct-v0:2",
                Some(ModelFamily::Mistral),
            ),
            (
                "mistral.mixtral-8x7b-instruct-v0:1",
                Some(ModelFamily::Mistral),
            ),
            ("cohere.command-r-v1:0", Some(ModelFamily::CohereCommandR)),
            (
                "cohere.command-r-plus-v1:0",
                Some(ModelFamily::CohereCommandR),
            ),
            ("ai21.jamba-1-5-mini-v1:0", Some(ModelFamily::Jamba)),
            ("ai21.jamba-instruct-v1:0", Some(ModelFamily::Jamba)),
            ("amazon.titan-embed-text-v1", Some(ModelFamily::TitanEmbed)),
            (
                "amazon.titan-embed-text-v2:0",
                Some(ModelFamily::TitanEmbed),
            ),
            ("cohere.embed-english-v3", Some(ModelFamily::CohereEmbed)),
            (
                "cohere.embed-multilingual-v3",
                Some(ModelFamily::CohereEmbed),
            ),
            // Not text or embedding families this module knows.
            ("amazon.titan-embed-image-v1", None),
            ("amazon.titan-image-generator-v2:0", None),
            ("amazon.nova-canvas-v1:0", None),
            ("amazon.nova-reel-v1:0", None),
            ("amazon.nova-sonic-v1:0", None),
            ("amazon.nova-2-multimodal-embeddings-v1:0", None),
            ("cohere.command-text-v14", None),
            ("cohere.command-light-text-v14", None),
            ("ai21.j2-ultra-v1", None),
            ("stability.sd3-large-v1:0", None),
            ("anthropic.", None),
            ("", None),
        ];
        for (id, family) in cases {
            assert_eq!(ModelFamily::from_model_id(id), family, "{id}");
        }
    }

    #[test]
    fn families_of_profile_ids_and_arns() {
        let cases = [
            (
                "us.anthropic.claude-3-haiku-20240307-v1:0",
                ModelFamily::Claude,
            ),
            ("eu.amazon.nova-lite-v1:0", ModelFamily::Nova),
            (
                "apac.anthropic.claude-3-5-sonnet-20240620-v1:0",
                ModelFamily::Claude,
            ),
            (
                "global.anthropic.claude-sonnet-4-20250514-v1:0",
                ModelFamily::Claude,
            ),
            (
                "us-gov.anthropic.claude-3-haiku-20240307-v1:0",
                ModelFamily::Claude,
            ),
            ("ca.amazon.nova-lite-v1:0", ModelFamily::Nova),
            (
                "jp.anthropic.claude-3-haiku-20240307-v1:0",
                ModelFamily::Claude,
            ),
            (
                "au.anthropic.claude-3-haiku-20240307-v1:0",
                ModelFamily::Claude,
            ),
            ("us.meta.llama3-2-3b-instruct-v1:0", ModelFamily::Llama),
            ("us.cohere.embed-v4:0", ModelFamily::CohereEmbed),
            (
                "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
                ModelFamily::Claude,
            ),
            (
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-1-8b-instruct-v1:0",
                ModelFamily::Llama,
            ),
            (
                "arn:aws-us-gov:bedrock:us-gov-west-1::foundation-model/amazon.titan-embed-text-v2:0",
                ModelFamily::TitanEmbed,
            ),
        ];
        for (id, family) in cases {
            assert_eq!(ModelFamily::from_model_id(id), Some(family), "{id}");
        }
        for id in [
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
            "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123",
            "arn:aws:s3:::anthropic.claude-3-haiku-20240307-v1:0",
            "xx.anthropic.claude-3-haiku-20240307-v1:0",
        ] {
            assert_eq!(ModelFamily::from_model_id(id), None, "{id}");
        }
    }

    #[test]
    fn base_ids() {
        assert_eq!(base_model_id(CLAUDE), CLAUDE);
        assert_eq!(base_model_id(&format!("us.{CLAUDE}")), CLAUDE);
        assert_eq!(base_model_id(&format!("us-gov.{CLAUDE}")), CLAUDE);
        assert_eq!(base_model_id(&format!("global.{CLAUDE}")), CLAUDE);
        assert_eq!(
            base_model_id(&format!(
                "arn:aws:bedrock:us-east-1::foundation-model/{CLAUDE}"
            )),
            CLAUDE
        );
        assert_eq!(
            base_model_id(&format!(
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.{CLAUDE}"
            )),
            CLAUDE
        );
        assert_eq!(
            base_model_id("amazon.nova-lite-v1:0"),
            "amazon.nova-lite-v1:0"
        );
        assert_eq!(
            base_model_id("arn:aws:s3:::bucket/key"),
            "arn:aws:s3:::bucket/key"
        );
        assert_eq!(base_model_id(""), "");
    }

    #[test]
    fn family_properties() {
        use ModelFamily::*;
        let all = [
            TitanText,
            Nova,
            Claude,
            Llama,
            Mistral,
            CohereCommandR,
            Jamba,
            TitanEmbed,
            CohereEmbed,
        ];
        let embedding: Vec<_> = all.iter().filter(|f| f.is_embedding()).collect();
        assert_eq!(embedding, [&TitanEmbed, &CohereEmbed]);
        let max: Vec<_> = all.iter().map(|f| f.max_texts_per_call()).collect();
        assert_eq!(max, [0, 0, 0, 0, 0, 0, 0, 1, 96]);
        assert_eq!(Claude.name(), "Anthropic Claude");
        assert_eq!(CohereEmbed.to_string(), "Cohere Embed");
    }

    #[test]
    fn text_and_embedding_codecs_refuse_the_other_kind() {
        let request = TextRequest::prompt("hi", InferenceParams::default());
        assert_eq!(
            encode_text_request(ModelFamily::TitanEmbed, &request)
                .unwrap_err()
                .to_string(),
            "Amazon Titan Text Embeddings is an embedding family, so it has no native \
             text-generation body; use an embedding model with encode_embed_request, or a \
             text-generation model"
        );
        assert_eq!(
            decode_text_response(ModelFamily::CohereEmbed, b"{}")
                .unwrap_err()
                .to_string(),
            "Cohere Embed is an embedding family, so it has no native text-generation body; \
             use decode_embed_response for embedding models"
        );
        assert_eq!(
            encode_embed_request(ModelFamily::Claude, &["x"], &EmbedOptions::default())
                .unwrap_err()
                .to_string(),
            "Anthropic Claude is a text-generation family, so it has no native embedding \
             body; use an embedding model (Titan Text Embeddings or Cohere Embed) with \
             encode_embed_request, or encode_text_request for this model"
        );
        assert_eq!(
            decode_embed_response(ModelFamily::Llama, b"{}")
                .unwrap_err()
                .to_string(),
            "Meta Llama is a text-generation family, so it has no native embedding body; use \
             decode_text_response for text-generation models"
        );
    }
}
