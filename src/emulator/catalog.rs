//! The emulator's built-in foundation-model catalog.

/// How a model's native `InvokeModel` body looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Amazon Titan Text (`inputText`, `textGenerationConfig`).
    TitanText,
    /// Amazon Nova (`messages-v1` schema).
    Nova,
    /// Anthropic Claude (messages API, `anthropic_version`, required `max_tokens`).
    Claude,
    /// Meta Llama (`prompt`, `max_gen_len`).
    Llama,
    /// Mistral instruct models (`prompt`, `max_tokens`, `stop`).
    Mistral,
    /// Cohere Command R / R+ (`message`, `chat_history`).
    CohereCommandR,
    /// AI21 Jamba (OpenAI-style `messages`, `choices`).
    Jamba,
    /// Amazon Titan Embeddings (`inputText`, `dimensions`, `normalize`).
    TitanEmbed,
    /// Cohere Embed v3 (`texts`, up to 96 a call).
    CohereEmbed,
    /// Listed for its metadata only (e.g. image generation); not served.
    MetadataOnly,
}

impl Family {
    /// Whether the family produces embeddings rather than text.
    #[must_use]
    pub fn is_embedding(self) -> bool {
        matches!(self, Self::TitanEmbed | Self::CohereEmbed)
    }

    /// Whether the Converse API accepts the family.
    #[must_use]
    pub fn supports_converse(self) -> bool {
        !self.is_embedding() && self != Self::MetadataOnly
    }
}

/// One foundation model the emulator knows.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogModel {
    /// The base model id, e.g. `amazon.titan-text-premier-v1:0`.
    pub id: &'static str,
    /// The display name.
    pub name: &'static str,
    /// The provider name as the control plane prints it.
    pub provider: &'static str,
    /// The native body family.
    pub family: Family,
    /// Input modalities (`TEXT`, `IMAGE`, …).
    pub input_modalities: &'static [&'static str],
    /// Output modalities (`TEXT`, `EMBEDDING`, `IMAGE`).
    pub output_modalities: &'static [&'static str],
    /// Whether response streaming is supported.
    pub streaming: bool,
    /// `ON_DEMAND` when the base id can be invoked directly, `INFERENCE_PROFILE` when only
    /// through a cross-region inference profile.
    pub inference_types: &'static [&'static str],
    /// Whether `us.` / `eu.` / `apac.` / `global.` inference profiles exist for it.
    pub has_profiles: bool,
    /// `ACTIVE` or `LEGACY`.
    pub lifecycle: &'static str,
    /// The largest `maxTokens` the model accepts (0 for embedding models).
    pub max_output_tokens: u32,
    /// The `maxTokens` used when the request sets none.
    pub default_max_tokens: u32,
    /// The embedding size (0 for text models; Titan v2's default when `dimensions` is absent).
    pub embedding_dimensions: u32,
    /// Whether the model has a latency-optimized version: requests may ask for
    /// `performanceConfig` latency `optimized` (Converse) or the
    /// `X-Amzn-Bedrock-PerformanceConfig-Latency: optimized` header (`InvokeModel`).
    pub latency_optimized: bool,
    /// How the model caches prompts at Converse `cachePoint` blocks; `None` when it does not
    /// (a request with a `cachePoint` is refused).
    pub prompt_cache: Option<PromptCaching>,
}

/// A model's prompt caching: which `cachePoint` blocks of a Converse request count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptCaching {
    /// The fewest input tokens before a checkpoint (counted from the start of the request) for
    /// it to be cached; a checkpoint with fewer caches nothing, silently.
    pub min_tokens: u32,
    /// The most `cachePoint` blocks one request may carry (tools, system and messages together).
    pub max_points: usize,
    /// Whether the one-hour TTL (`"ttl": "1h"`) is offered; the five-minute TTL always is.
    pub one_hour: bool,
}

impl CatalogModel {
    /// Whether the model can be invoked by its base id (not only through a profile).
    #[must_use]
    pub fn on_demand(&self) -> bool {
        self.inference_types.contains(&"ON_DEMAND")
    }

    /// The model's ARN in a region.
    #[must_use]
    pub fn arn(&self, region: &str) -> String {
        format!("arn:aws:bedrock:{region}::foundation-model/{}", self.id)
    }
}

const TEXT: &[&str] = &["TEXT"];
const TEXT_IMAGE: &[&str] = &["TEXT", "IMAGE"];
const EMBEDDING: &[&str] = &["EMBEDDING"];
const ON_DEMAND: &[&str] = &["ON_DEMAND"];
const PROFILE_ONLY: &[&str] = &["INFERENCE_PROFILE"];

#[allow(clippy::too_many_arguments)]
const fn text_model(
    id: &'static str,
    name: &'static str,
    provider: &'static str,
    family: Family,
    input: &'static [&'static str],
    inference_types: &'static [&'static str],
    has_profiles: bool,
    max_output_tokens: u32,
    default_max_tokens: u32,
) -> CatalogModel {
    CatalogModel {
        id,
        name,
        provider,
        family,
        input_modalities: input,
        output_modalities: TEXT,
        streaming: true,
        inference_types,
        has_profiles,
        lifecycle: "ACTIVE",
        max_output_tokens,
        default_max_tokens,
        embedding_dimensions: 0,
        latency_optimized: false,
        prompt_cache: None,
    }
}

/// The model, marked as having a latency-optimized version.
const fn latency_optimized(mut model: CatalogModel) -> CatalogModel {
    model.latency_optimized = true;
    model
}

/// The model, caching prompts at checkpoints of at least `min_tokens`, at most `max_points` of
/// them a request, with the one-hour TTL when `one_hour`.
const fn prompt_caching(
    mut model: CatalogModel,
    min_tokens: u32,
    max_points: usize,
    one_hour: bool,
) -> CatalogModel {
    model.prompt_cache = Some(PromptCaching {
        min_tokens,
        max_points,
        one_hour,
    });
    model
}

const fn embedding_model(
    id: &'static str,
    name: &'static str,
    provider: &'static str,
    family: Family,
    dimensions: u32,
) -> CatalogModel {
    CatalogModel {
        id,
        name,
        provider,
        family,
        input_modalities: TEXT,
        output_modalities: EMBEDDING,
        streaming: false,
        inference_types: ON_DEMAND,
        has_profiles: false,
        lifecycle: "ACTIVE",
        max_output_tokens: 0,
        default_max_tokens: 0,
        embedding_dimensions: dimensions,
        latency_optimized: false,
        prompt_cache: None,
    }
}

use Family::{
    Claude, CohereCommandR, CohereEmbed, Jamba, Llama, Mistral, Nova, TitanEmbed, TitanText,
};

static CATALOG: &[CatalogModel] = &[
    text_model(
        "amazon.titan-text-premier-v1:0",
        "Titan Text G1 - Premier",
        "Amazon",
        TitanText,
        TEXT,
        ON_DEMAND,
        false,
        3072,
        512,
    ),
    text_model(
        "amazon.titan-text-express-v1",
        "Titan Text G1 - Express",
        "Amazon",
        TitanText,
        TEXT,
        ON_DEMAND,
        false,
        8192,
        512,
    ),
    text_model(
        "amazon.titan-text-lite-v1",
        "Titan Text G1 - Lite",
        "Amazon",
        TitanText,
        TEXT,
        ON_DEMAND,
        false,
        4096,
        512,
    ),
    prompt_caching(
        text_model(
            "amazon.nova-micro-v1:0",
            "Nova Micro",
            "Amazon",
            Nova,
            TEXT,
            ON_DEMAND,
            true,
            10000,
            5000,
        ),
        1000,
        4,
        false,
    ),
    prompt_caching(
        text_model(
            "amazon.nova-lite-v1:0",
            "Nova Lite",
            "Amazon",
            Nova,
            TEXT_IMAGE,
            ON_DEMAND,
            true,
            10000,
            5000,
        ),
        1000,
        4,
        false,
    ),
    prompt_caching(
        latency_optimized(text_model(
            "amazon.nova-pro-v1:0",
            "Nova Pro",
            "Amazon",
            Nova,
            TEXT_IMAGE,
            ON_DEMAND,
            true,
            10000,
            5000,
        )),
        1000,
        4,
        false,
    ),
    text_model(
        "anthropic.claude-3-haiku-20240307-v1:0",
        "Claude 3 Haiku",
        "Anthropic",
        Claude,
        TEXT_IMAGE,
        ON_DEMAND,
        true,
        4096,
        4096,
    ),
    prompt_caching(
        latency_optimized(text_model(
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            "Claude 3.5 Haiku",
            "Anthropic",
            Claude,
            TEXT,
            ON_DEMAND,
            true,
            8192,
            4096,
        )),
        2048,
        4,
        false,
    ),
    text_model(
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "Claude 3.5 Sonnet",
        "Anthropic",
        Claude,
        TEXT_IMAGE,
        ON_DEMAND,
        true,
        8192,
        4096,
    ),
    prompt_caching(
        text_model(
            "anthropic.claude-3-7-sonnet-20250219-v1:0",
            "Claude 3.7 Sonnet",
            "Anthropic",
            Claude,
            TEXT_IMAGE,
            PROFILE_ONLY,
            true,
            65536,
            4096,
        ),
        1024,
        4,
        false,
    ),
    prompt_caching(
        text_model(
            "anthropic.claude-sonnet-4-20250514-v1:0",
            "Claude Sonnet 4",
            "Anthropic",
            Claude,
            TEXT_IMAGE,
            PROFILE_ONLY,
            true,
            65536,
            4096,
        ),
        1024,
        4,
        false,
    ),
    prompt_caching(
        text_model(
            "anthropic.claude-haiku-4-5-20251001-v1:0",
            "Claude Haiku 4.5",
            "Anthropic",
            Claude,
            TEXT_IMAGE,
            PROFILE_ONLY,
            true,
            8192,
            4096,
        ),
        4096,
        4,
        true,
    ),
    text_model(
        "meta.llama3-8b-instruct-v1:0",
        "Llama 3 8B Instruct",
        "Meta",
        Llama,
        TEXT,
        ON_DEMAND,
        false,
        2048,
        512,
    ),
    text_model(
        "meta.llama3-70b-instruct-v1:0",
        "Llama 3 70B Instruct",
        "Meta",
        Llama,
        TEXT,
        ON_DEMAND,
        false,
        2048,
        512,
    ),
    text_model(
        "meta.llama3-1-8b-instruct-v1:0",
        "Llama 3.1 8B Instruct",
        "Meta",
        Llama,
        TEXT,
        ON_DEMAND,
        true,
        2048,
        512,
    ),
    latency_optimized(text_model(
        "meta.llama3-1-70b-instruct-v1:0",
        "Llama 3.1 70B Instruct",
        "Meta",
        Llama,
        TEXT,
        ON_DEMAND,
        true,
        2048,
        512,
    )),
    text_model(
        "meta.llama3-3-70b-instruct-v1:0",
        "Llama 3.3 70B Instruct",
        "Meta",
        Llama,
        TEXT,
        PROFILE_ONLY,
        true,
        2048,
        512,
    ),
    text_model(
        "mistral.mistral-7b-instruct-v0:2",
        "Mistral 7B Instruct",
        "Mistral AI",
        Mistral,
        TEXT,
        ON_DEMAND,
        false,
        8192,
        512,
    ),
    text_model(
        "mistral.mixtral-8x7b-instruct-v0:1",
        "Mixtral 8x7B Instruct",
        "Mistral AI",
        Mistral,
        TEXT,
        ON_DEMAND,
        false,
        4096,
        512,
    ),
    text_model(
        "mistral.mistral-large-2402-v1:0",
        "Mistral Large (24.02)",
        "Mistral AI",
        Mistral,
        TEXT,
        ON_DEMAND,
        false,
        8192,
        512,
    ),
    text_model(
        "mistral.mistral-small-2402-v1:0",
        "Mistral Small (24.02)",
        "Mistral AI",
        Mistral,
        TEXT,
        ON_DEMAND,
        false,
        8192,
        512,
    ),
    text_model(
        "cohere.command-r-v1:0",
        "Command R",
        "Cohere",
        CohereCommandR,
        TEXT,
        ON_DEMAND,
        false,
        4000,
        512,
    ),
    text_model(
        "cohere.command-r-plus-v1:0",
        "Command R+",
        "Cohere",
        CohereCommandR,
        TEXT,
        ON_DEMAND,
        false,
        4000,
        512,
    ),
    text_model(
        "ai21.jamba-1-5-mini-v1:0",
        "Jamba 1.5 Mini",
        "AI21 Labs",
        Jamba,
        TEXT,
        ON_DEMAND,
        false,
        4096,
        4096,
    ),
    text_model(
        "ai21.jamba-1-5-large-v1:0",
        "Jamba 1.5 Large",
        "AI21 Labs",
        Jamba,
        TEXT,
        ON_DEMAND,
        false,
        4096,
        4096,
    ),
    embedding_model(
        "amazon.titan-embed-text-v2:0",
        "Titan Text Embeddings V2",
        "Amazon",
        TitanEmbed,
        1024,
    ),
    embedding_model(
        "amazon.titan-embed-text-v1",
        "Titan Embeddings G1 - Text",
        "Amazon",
        TitanEmbed,
        1536,
    ),
    embedding_model(
        "cohere.embed-english-v3",
        "Embed English",
        "Cohere",
        CohereEmbed,
        1024,
    ),
    embedding_model(
        "cohere.embed-multilingual-v3",
        "Embed Multilingual",
        "Cohere",
        CohereEmbed,
        1024,
    ),
    CatalogModel {
        id: "amazon.titan-image-generator-v2:0",
        name: "Titan Image Generator G1 v2",
        provider: "Amazon",
        family: Family::MetadataOnly,
        input_modalities: TEXT_IMAGE,
        output_modalities: &["IMAGE"],
        streaming: false,
        inference_types: ON_DEMAND,
        has_profiles: false,
        lifecycle: "ACTIVE",
        max_output_tokens: 0,
        default_max_tokens: 0,
        embedding_dimensions: 0,
        latency_optimized: false,
        prompt_cache: None,
    },
];

/// Every model the emulator knows, in listing order.
#[must_use]
pub fn catalog() -> &'static [CatalogModel] {
    CATALOG
}

/// The catalog entry with this exact base id.
pub(crate) fn find(id: &str) -> Option<&'static CatalogModel> {
    CATALOG.iter().find(|m| m.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_cover_every_family() {
        let mut ids: Vec<_> = CATALOG.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), CATALOG.len());
        for family in [
            TitanText,
            Nova,
            Claude,
            Llama,
            Mistral,
            CohereCommandR,
            Jamba,
            TitanEmbed,
            CohereEmbed,
        ] {
            assert!(CATALOG.iter().any(|m| m.family == family), "{family:?}");
        }
        assert_eq!(
            find("amazon.titan-text-premier-v1:0").map(|m| m.max_output_tokens),
            Some(3072)
        );
    }

    #[test]
    fn latency_optimized_models_are_the_services() {
        let optimized: Vec<_> = CATALOG
            .iter()
            .filter(|m| m.latency_optimized)
            .map(|m| m.id)
            .collect();
        assert_eq!(
            optimized,
            [
                "amazon.nova-pro-v1:0",
                "anthropic.claude-3-5-haiku-20241022-v1:0",
                "meta.llama3-1-70b-instruct-v1:0",
            ]
        );
    }

    #[test]
    fn prompt_caching_models_are_the_services() {
        let caching: Vec<_> = CATALOG
            .iter()
            .filter_map(|m| m.prompt_cache.map(|c| (m.id, c)))
            .collect();
        let cache = |min_tokens, one_hour| PromptCaching {
            min_tokens,
            max_points: 4,
            one_hour,
        };
        assert_eq!(
            caching,
            [
                ("amazon.nova-micro-v1:0", cache(1000, false)),
                ("amazon.nova-lite-v1:0", cache(1000, false)),
                ("amazon.nova-pro-v1:0", cache(1000, false)),
                (
                    "anthropic.claude-3-5-haiku-20241022-v1:0",
                    cache(2048, false)
                ),
                (
                    "anthropic.claude-3-7-sonnet-20250219-v1:0",
                    cache(1024, false)
                ),
                (
                    "anthropic.claude-sonnet-4-20250514-v1:0",
                    cache(1024, false)
                ),
                (
                    "anthropic.claude-haiku-4-5-20251001-v1:0",
                    cache(4096, true)
                ),
            ]
        );
        let haiku =
            find("anthropic.claude-haiku-4-5-20251001-v1:0").map(|m| (m.on_demand(), m.family));
        assert_eq!(haiku, Some((false, Claude)));
    }
}
