//! Bedrock prompt caching: where a request gets its Converse `cachePoint` blocks, which models
//! cache and from how many tokens, and what cached tokens cost.
//!
//! `prompt_cache = 'off' | 'auto' | '5m' | '1h'` (a model parameter and an AI-function option,
//! `auto` by default). A request's static part is evaluated in Bedrock's order — the forced
//! answer tool, then the system prompt (the caller's instruction, the model's system prompt and
//! the packing instructions), then the head its prompt shares with the other prompts of its
//! batch (a template's fixed text, found as the longest common prefix of prompts that sort next
//! to each other). A checkpoint goes after each part whose cumulative size reaches the model's
//! minimum cacheable size, at most the model's checkpoint count (the deepest kept); below the
//! minimum nothing is added, as Bedrock would cache nothing there anyway. `off` adds nothing;
//! `auto` adds checkpoints only on models known to cache; `5m` and `1h` also try models not in
//! the table (from 1,024 tokens), and name their time to live.
//!
//! Sizes are estimated at one token per four characters. Checkpoints change neither the prompt
//! the model reads nor the response cache's key.

use serde::{Deserialize, Serialize};

use super::families::base_model_id;
use super::request::TextRequest;

/// `prompt_cache`: whether and for how long requests ask Bedrock to cache their static part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum PromptCache {
    /// No checkpoints.
    Off,
    /// Checkpoints on models known to cache, at the service's default time to live (5 minutes).
    #[default]
    Auto,
    /// Checkpoints with a 5-minute time to live.
    FiveMinutes,
    /// Checkpoints with a 1-hour time to live (where the model offers it; writes cost more).
    OneHour,
}

impl PromptCache {
    /// `off`, `auto`, `5m` or `1h`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Auto => "auto",
            Self::FiveMinutes => "5m",
            Self::OneHour => "1h",
        }
    }

    /// Reads a setting (case-insensitive).
    ///
    /// # Errors
    /// An [`Error::InvalidInput`](crate::Error::InvalidInput) naming the values.
    pub fn parse(text: &str, key: &str) -> crate::Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "auto" => Ok(Self::Auto),
            "5m" => Ok(Self::FiveMinutes),
            "1h" => Ok(Self::OneHour),
            _ => Err(crate::Error::InvalidInput(format!(
                "Parameter '{key}' = '{text}' is not a prompt cache setting: use 'auto' (cache the static part of prompts on models that cache), '5m' or '1h' (that time to live) or 'off'"
            ))),
        }
    }

    /// The time to live a checkpoint names (`None`: the service's default, 5 minutes).
    #[must_use]
    pub fn ttl(self) -> Option<CacheTtl> {
        match self {
            Self::FiveMinutes => Some(CacheTtl::FiveMinutes),
            Self::OneHour => Some(CacheTtl::OneHour),
            Self::Off | Self::Auto => None,
        }
    }
}

/// A checkpoint's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CacheTtl {
    /// Five minutes.
    FiveMinutes,
    /// One hour.
    OneHour,
}

/// Where a checkpoint goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CacheSpot {
    /// After the tool definitions.
    Tools,
    /// After the system prompt.
    System,
    /// Inside the last user message's first text, after this many bytes (a char boundary).
    PromptHead(usize),
}

/// A request's checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CachePoints {
    /// Their time to live (`None`: the service's default).
    pub ttl: Option<CacheTtl>,
    /// Where they go, in the request's order.
    pub spots: Vec<CacheSpot>,
}

/// How a model caches prompts and what cached tokens cost, as multiples of its input price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelCaching {
    /// The fewest cumulative tokens at a checkpoint for Bedrock to cache anything there.
    pub min_tokens: u64,
    /// The most checkpoints a request may carry.
    pub max_points: usize,
    /// Price of a token read from the cache, per input token's price.
    pub read_factor: f64,
    /// Price of a token written with a 5-minute time to live, per input token's price.
    pub write_factor_5m: f64,
    /// Price of a token written with a 1-hour time to live, per input token's price.
    pub write_factor_1h: f64,
}

/// Anthropic's Claude models on Bedrock: reads at a tenth of the input price, writes at 1.25×
/// (5 minutes) or 2× (1 hour).
const fn claude(min_tokens: u64) -> ModelCaching {
    ModelCaching {
        min_tokens,
        max_points: 4,
        read_factor: 0.1,
        write_factor_5m: 1.25,
        write_factor_1h: 2.0,
    }
}

/// Amazon Nova: reads at a quarter of the input price, writes at the input price.
const NOVA: ModelCaching = ModelCaching {
    min_tokens: 1000,
    max_points: 4,
    read_factor: 0.25,
    write_factor_5m: 1.0,
    write_factor_1h: 1.0,
};

/// The models known to cache prompts on Bedrock, by base model id.
const CACHING: &[(&str, ModelCaching)] = &[
    ("amazon.nova-micro-v1:0", NOVA),
    ("amazon.nova-lite-v1:0", NOVA),
    ("amazon.nova-pro-v1:0", NOVA),
    ("amazon.nova-premier-v1:0", NOVA),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", claude(2048)),
    ("anthropic.claude-3-7-sonnet-20250219-v1:0", claude(1024)),
    ("anthropic.claude-sonnet-4-20250514-v1:0", claude(1024)),
    ("anthropic.claude-opus-4-20250514-v1:0", claude(1024)),
    ("anthropic.claude-opus-4-1-20250805-v1:0", claude(1024)),
    ("anthropic.claude-sonnet-4-5-20250929-v1:0", claude(1024)),
    ("anthropic.claude-haiku-4-5-20251001-v1:0", claude(4096)),
    ("anthropic.claude-opus-4-5-20251101-v1:0", claude(4096)),
];

/// What is assumed of a model not in the table when a request names a time to live.
const ASSUMED: ModelCaching = claude(1024);

/// How `model_id` caches prompts, if it is known to.
#[must_use]
pub fn caching(model_id: &str) -> Option<ModelCaching> {
    let base = base_model_id(model_id);
    CACHING.iter().find(|(id, _)| *id == base).map(|(_, c)| *c)
}

/// USD of cached tokens at an input price per 1K tokens: reads at the model's read factor,
/// writes at its write factor for `ttl`. Models outside the table are priced as Claude's.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn cached_tokens_usd(
    model_id: &str,
    input_per_1k: f64,
    ttl: Option<CacheTtl>,
    read_tokens: u64,
    write_tokens: u64,
) -> f64 {
    let c = caching(model_id).unwrap_or(ASSUMED);
    let write = match ttl {
        Some(CacheTtl::OneHour) => c.write_factor_1h,
        _ => c.write_factor_5m,
    };
    (read_tokens as f64 * c.read_factor + write_tokens as f64 * write) * input_per_1k / 1000.0
}

/// Estimated tokens of a text: one per started group of four characters, its images and
/// documents by their own estimates (see [`media`](super::media)).
fn tokens(text: &str) -> u64 {
    super::media::marker::estimated_tokens(text)
}

/// The text of a request's prompt that a head may be cut from: the first text of its only
/// message, a user's.
fn prompt(request: &TextRequest) -> Option<&str> {
    match request.messages.as_slice() {
        [message] if message.role == super::request::ChatRole::User => {
            message.texts.first().map(String::as_str)
        }
        _ => None,
    }
}

/// The longest common prefix of two texts, in bytes, on a char boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or_else(|| a.len().min(b.len()), |((at, _), _)| at)
}

/// A head cut back to the end of its last whitespace, so the head does not depend on how the
/// batch's values happen to begin (`"Classify: The"` → `"Classify: "`); unchanged when it has
/// no whitespace.
fn snapped(text: &str, head: usize) -> usize {
    text[..head]
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map_or(head, |(at, c)| at + c.len_utf8())
}

/// For each request, the head its prompt shares with the prompts sorting next to it, in bytes
/// (0: none). Prompts are sorted so that those sharing a prefix are neighbours; a run of
/// neighbours sharing at least `min_chars` characters shares the run's common prefix.
fn shared_heads(requests: &[Option<TextRequest>], min_chars: usize) -> Vec<usize> {
    let mut heads = vec![0; requests.len()];
    let mut order: Vec<(usize, &str)> = requests
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().and_then(prompt).map(|p| (i, p)))
        .collect();
    order.sort_by(|a, b| a.1.cmp(b.1));
    order.dedup_by(|a, b| {
        a.1 == b.1 && {
            // A repeat shares everything with its first copy; the engine sends it once anyway.
            heads[a.0] = usize::MAX;
            true
        }
    });
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        let mut head = usize::MAX;
        while end < order.len() {
            let shared = common_prefix(order[end - 1].1, order[end].1);
            if order[end - 1].1[..shared].chars().count() < min_chars.max(1) {
                break;
            }
            head = head.min(shared);
            end += 1;
        }
        if end - start > 1 {
            for &(row, text) in &order[start..end] {
                // Never inside an image's or document's marker: the head is sent as blocks.
                heads[row] = super::media::marker::safe_cut(text, snapped(text, head));
            }
        }
        start = end;
    }
    // Repeats take their first copy's head.
    for (i, request) in requests.iter().enumerate() {
        if heads[i] == usize::MAX {
            let text = request.as_ref().and_then(prompt).unwrap_or_default();
            // `order` is sorted by text and holds each text once.
            heads[i] = order
                .binary_search_by(|(_, p)| (*p).cmp(text))
                .map_or(0, |at| heads[order[at].0]);
        }
    }
    heads
}

/// Gives each request its checkpoints under `setting` for `model_id`: after the tool, the
/// system prompt and the shared head of its prompt, wherever the cumulative estimate reaches
/// the model's minimum.
pub fn place(requests: &mut [Option<TextRequest>], model_id: &str, setting: PromptCache) {
    let caching = match (setting, caching(model_id)) {
        (PromptCache::Off, _) | (PromptCache::Auto, None) => return,
        (_, Some(known)) => known,
        (_, None) => ASSUMED,
    };
    let Some(first) = requests.iter().flatten().next() else {
        return;
    };
    let tool_tokens = first.tool.as_ref().map_or(0, |t| {
        tokens(&t.name) + tokens(&t.description) + tokens(&t.schema.to_string())
    });
    let heads_from = usize::try_from(caching.min_tokens.saturating_sub(tool_tokens))
        .unwrap_or(usize::MAX)
        .saturating_mul(4);
    // Requests of one call share their tool and system prompt; the head needs what they
    // lack to reach the minimum.
    let system_tokens = first.system.as_deref().map_or(0, tokens);
    let heads = shared_heads(
        requests,
        heads_from.saturating_sub(usize::try_from(system_tokens * 4).unwrap_or(usize::MAX)),
    );
    for (request, head) in requests.iter_mut().zip(heads) {
        let Some(request) = request else { continue };
        let mut spots = Vec::new();
        let mut total = 0;
        if request.tool.is_some() {
            total += tool_tokens;
            if total >= caching.min_tokens {
                spots.push(CacheSpot::Tools);
            }
        }
        if let Some(system) = &request.system {
            total += tokens(system);
            if total >= caching.min_tokens {
                spots.push(CacheSpot::System);
            }
        }
        if let Some(text) = prompt(request)
            && head > 0
            && !text[..head].trim().is_empty()
            && !text[head..].trim().is_empty()
        {
            total += tokens(&text[..head]);
            if total >= caching.min_tokens {
                spots.push(CacheSpot::PromptHead(head));
            }
        }
        let extra = spots.len().saturating_sub(caching.max_points);
        spots.drain(..extra);
        request.cache = (!spots.is_empty()).then(|| CachePoints {
            ttl: setting.ttl(),
            spots,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::request::{InferenceParams, ToolSpec};

    fn request(system: Option<&str>, prompt: &str) -> TextRequest {
        TextRequest {
            system: system.map(str::to_string),
            ..TextRequest::prompt(prompt, InferenceParams::default())
        }
    }

    fn spots(requests: &[Option<TextRequest>]) -> Vec<Option<Vec<CacheSpot>>> {
        requests
            .iter()
            .map(|r| {
                r.as_ref()
                    .and_then(|r| r.cache.as_ref())
                    .map(|c| c.spots.clone())
            })
            .collect()
    }

    #[test]
    fn settings_read_and_name_themselves() {
        for name in ["off", "auto", "5m", "1h"] {
            assert_eq!(
                PromptCache::parse(name, "prompt_cache").unwrap().name(),
                name
            );
        }
        assert_eq!(
            PromptCache::parse(" 1H ", "k").unwrap(),
            PromptCache::OneHour
        );
        assert_eq!(
            PromptCache::parse("10m", "prompt_cache")
                .unwrap_err()
                .to_string(),
            "Parameter 'prompt_cache' = '10m' is not a prompt cache setting: use 'auto' (cache the static part of prompts on models that cache), '5m' or '1h' (that time to live) or 'off'"
        );
    }

    #[test]
    fn a_long_system_prompt_gets_a_checkpoint_and_a_short_one_none() {
        let long = "x".repeat(4 * 1024);
        let nova = "amazon.nova-lite-v1:0";
        let mut requests = vec![
            Some(request(Some(&long), "a")),
            None,
            Some(request(Some(&long), "b")),
        ];
        place(&mut requests, nova, PromptCache::Auto);
        assert_eq!(
            spots(&requests),
            vec![
                Some(vec![CacheSpot::System]),
                None,
                Some(vec![CacheSpot::System])
            ]
        );
        assert_eq!(
            requests[0].as_ref().unwrap().cache.as_ref().unwrap().ttl,
            None
        );
        let mut short = vec![
            Some(request(Some("Be brief."), "a")),
            Some(request(Some("Be brief."), "b")),
        ];
        place(&mut short, nova, PromptCache::Auto);
        assert_eq!(spots(&short), vec![None, None]);
        let mut off = vec![Some(request(Some(&long), "a"))];
        place(&mut off, nova, PromptCache::Off);
        assert_eq!(spots(&off), vec![None]);
    }

    #[test]
    fn auto_leaves_unknown_models_alone_and_a_ttl_tries_them() {
        let long = "x".repeat(4 * 1024);
        let llama = "meta.llama3-1-8b-instruct-v1:0";
        let mut auto = vec![Some(request(Some(&long), "a"))];
        place(&mut auto, llama, PromptCache::Auto);
        assert_eq!(spots(&auto), vec![None]);
        let mut hour = vec![Some(request(Some(&long), "a"))];
        place(&mut hour, llama, PromptCache::OneHour);
        assert_eq!(
            hour[0].as_ref().unwrap().cache,
            Some(CachePoints {
                ttl: Some(CacheTtl::OneHour),
                spots: vec![CacheSpot::System]
            })
        );
    }

    #[test]
    fn prompts_sharing_a_long_head_get_a_checkpoint_after_it() {
        let head = format!("{} Question: ", "Read the policy carefully.".repeat(200));
        let texts = [
            format!("{head}Who pays?"),
            "Something else entirely".to_string(),
            format!("{head}When is it due?"),
            format!("{head}Who signs?"),
        ];
        let mut requests: Vec<_> = texts.iter().map(|t| Some(request(None, t))).collect();
        place(
            &mut requests,
            "anthropic.claude-3-7-sonnet-20250219-v1:0",
            PromptCache::Auto,
        );
        let at = CacheSpot::PromptHead(head.len());
        assert_eq!(
            spots(&requests),
            vec![Some(vec![at]), None, Some(vec![at]), Some(vec![at])]
        );
    }

    #[test]
    fn heads_cut_back_to_whitespace_and_repeats_share_them() {
        let base = "word ".repeat(1000);
        let texts = [
            format!("{base}The cat"),
            format!("{base}The dog"),
            format!("{base}The cat"),
        ];
        let requests: Vec<_> = texts.iter().map(|t| Some(request(None, t))).collect();
        let heads = shared_heads(&requests, 100);
        let expected = base.len() + "The ".len();
        assert_eq!(heads, vec![expected, expected, expected]);
        assert_eq!(common_prefix("héllo", "hélp"), "hél".len());
        assert_eq!(snapped("abc", 3), 3);
    }

    #[test]
    fn heads_stop_before_an_image_and_count_it_by_its_estimate() {
        use crate::bedrock::media::{Format, MediaKind, marker};
        // Two prompts share a long text and the start of two different documents whose name
        // has a space: cut back to whitespace, the head would end inside their markers; it
        // ends before them.
        let text = "Read the policy carefully.".repeat(200);
        let doc = |last: u8| {
            let mut bytes = vec![b'a'; 3000];
            bytes.push(last);
            marker::inline(MediaKind::Document, Format::Txt, Some("Q3 report"), &bytes)
        };
        let texts = [
            format!("{text}{}", doc(b'x')),
            format!("{text}{}", doc(b'y')),
        ];
        let requests: Vec<_> = texts.iter().map(|t| Some(request(None, t))).collect();
        assert_eq!(shared_heads(&requests, 100), vec![text.len(), text.len()]);
        let image = |last: u8| {
            let mut bytes = b"GIF89a\x01\x00\x01\x00".to_vec();
            bytes.extend(std::iter::repeat_n(7, 3000));
            bytes.push(last);
            marker::inline(MediaKind::Image, Format::Gif, None, &bytes)
        };
        // A 1×1 image is one token, not the thousands of characters of its base64.
        assert_eq!(tokens(&image(1)), 1);
    }

    #[test]
    fn the_deepest_checkpoints_are_kept_and_the_tool_counts_first() {
        let long = "y".repeat(4 * 2100);
        let mut requests = vec![Some(TextRequest {
            tool: Some(ToolSpec {
                name: "answer".into(),
                description: "d".into(),
                schema: serde_json::json!({ "description": long }),
            }),
            ..TextRequest::prompt("a", InferenceParams::default())
        })];
        requests[0].as_mut().unwrap().system = Some("z".repeat(40));
        place(
            &mut requests,
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            PromptCache::FiveMinutes,
        );
        assert_eq!(
            requests[0].as_ref().unwrap().cache,
            Some(CachePoints {
                ttl: Some(CacheTtl::FiveMinutes),
                spots: vec![CacheSpot::Tools, CacheSpot::System]
            })
        );
    }

    #[test]
    fn cached_tokens_are_priced_by_model_and_ttl() {
        let claude = "anthropic.claude-3-7-sonnet-20250219-v1:0";
        // 1,000 read at 0.1 × $3/M plus 1,000 written at 1.25 × $3/M.
        let usd = cached_tokens_usd(claude, 0.003, None, 1000, 1000);
        assert!((usd - (0.0003 + 0.003_75)).abs() < 1e-12, "{usd}");
        let hour = cached_tokens_usd(claude, 0.003, Some(CacheTtl::OneHour), 0, 1000);
        assert!((hour - 0.006).abs() < 1e-12, "{hour}");
        let nova = cached_tokens_usd("us.amazon.nova-pro-v1:0", 0.0008, None, 1000, 1000);
        assert!((nova - (0.0002 + 0.0008)).abs() < 1e-12, "{nova}");
    }
}
