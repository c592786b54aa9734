//! Cache keys: what identifies a request, hashed field by field.
//!
//! A key is 128 bits of `SipHash`-1-3 over an unambiguous encoding of the engine's scope
//! (endpoint, region, identity), the kind of call, the model id and every field of the request:
//! each string and list carries its length and each optional field a presence tag, so two
//! different requests never encode to the same bytes. With 128 bits, an accidental collision
//! among even billions of distinct requests has a probability far below 10⁻¹⁸.

use std::hash::Hasher;

use sha2::{Digest, Sha256};
use siphasher::sip128::{Hasher128, SipHasher13};

use crate::bedrock::families::EmbedOptions;
use crate::bedrock::request::{ChatMessage, ChatRole, InferenceParams, TextRequest, ToolSpec};

/// A cache key: 128 bits of `SipHash`-1-3 over the scope, the kind of call, the model id and
/// every field of the request, each length-prefixed or tagged so that different requests never
/// encode to the same bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CacheKey(u128);

impl CacheKey {
    /// The key's 16 bytes (little-endian), as the on-disk cache stores it.
    #[must_use]
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheKey({:032x})", self.0)
    }
}

impl std::hash::Hash for CacheKey {
    /// A key is already a uniform hash: its low 64 bits are a good hash of it.
    fn hash<H: Hasher>(&self, state: &mut H) {
        #[allow(clippy::cast_possible_truncation)]
        state.write_u64(self.0 as u64);
    }
}

/// Where an engine's answers come from: its endpoint, region and identity, hashed. Every
/// cache key holds it, so engines that send requests to another endpoint or region, or as
/// another identity, never share answers — in memory or in a shared `cache_dir`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheScope([u8; 32]);

impl CacheScope {
    /// The scope of requests sent to `endpoint` (`AWS` for Bedrock's own endpoints) in `region`
    /// as the identity whose fingerprint is `identity` (a hash that never holds a secret).
    #[must_use]
    pub fn new(endpoint: &str, region: &str, identity: &[u8; 32]) -> Self {
        let mut hasher = Sha256::new();
        for part in [endpoint.as_bytes(), region.as_bytes(), identity.as_slice()] {
            hasher.update(u64::try_from(part.len()).unwrap_or(u64::MAX).to_le_bytes());
            hasher.update(part);
        }
        Self(hasher.finalize().into())
    }

    /// A scope no other call shares: for a call whose identity could not be settled, so its
    /// answer is never served to, or taken from, anyone else.
    #[must_use]
    pub fn unique() -> Self {
        let mut bytes = [0u8; 32];
        bytes.fill_with(|| fastrand::u8(..));
        Self(bytes)
    }
}

impl std::fmt::Debug for CacheScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheScope(..)")
    }
}

/// The `SipHash` keys of cache keys. Fixed, so keys are the same in every process and a
/// `cache_dir` serves later runs; changing them (or the encoding) only makes old entries miss.
const SIP_KEYS: (u64, u64) = (0x6466_622d_6361_6368, 0x652d_6b65_792d_7631);

/// Feeds the unambiguous encoding of a request's fields to the hash.
pub struct KeyWriter(SipHasher13);

impl KeyWriter {
    fn new() -> Self {
        Self(SipHasher13::new_with_keys(SIP_KEYS.0, SIP_KEYS.1))
    }

    /// A fixed-size value.
    pub fn u64(&mut self, n: u64) {
        self.0.write(&n.to_le_bytes());
    }

    /// A length or count.
    pub fn count(&mut self, n: usize) {
        self.u64(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Bytes, after their length.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.count(bytes.len());
        self.0.write(bytes);
    }

    /// A string, after its length.
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// Whether an optional field is present (written before its value).
    pub fn present(&mut self, present: bool) {
        self.0.write(&[u8::from(present)]);
    }

    /// An optional field: its presence, then its value.
    pub fn option<T>(&mut self, value: Option<&T>, write: impl FnOnce(&mut Self, &T)) {
        self.present(value.is_some());
        if let Some(value) = value {
            write(self, value);
        }
    }

    /// A JSON value, as its compact text.
    pub fn json(&mut self, value: &serde_json::Value) {
        self.str(&value.to_string());
    }

    fn finish(&self) -> CacheKey {
        let hash = self.0.finish128();
        CacheKey(u128::from(hash.h1) | (u128::from(hash.h2) << 64))
    }
}

/// A request whose fields make a cache key. Implementations destructure the request whole, so
/// a field added later cannot be left out of the key by mistake.
pub trait KeyFields {
    /// Writes every field that changes the answer.
    fn write_key(&self, w: &mut KeyWriter);
}

impl KeyFields for TextRequest {
    fn write_key(&self, w: &mut KeyWriter) {
        let Self {
            system,
            messages,
            params,
            tool,
            // Checkpoints change where Bedrock caches, not what the model reads.
            cache: _,
        } = self;
        w.option(system.as_ref(), |w, s| w.str(s));
        w.count(messages.len());
        for ChatMessage { role, texts } in messages {
            w.u64(match role {
                ChatRole::User => 1,
                ChatRole::Assistant => 2,
            });
            w.count(texts.len());
            for text in texts {
                w.str(text);
            }
        }
        let InferenceParams {
            max_tokens,
            temperature,
            top_p,
            stop,
            extra,
            // The tier and latency change the price and the wait, not the answer: an answer
            // cached from one tier serves the others.
            service_tier: _,
            latency: _,
            // Caching changes the price, not the answer.
            prompt_cache: _,
            // Packing is the caller's: each row's request is keyed on its own.
            rows_per_request: _,
        } = params;
        w.option(max_tokens.as_ref(), |w, m| w.u64(u64::from(*m)));
        w.option(temperature.as_ref(), |w, t| w.u64(u64::from(t.to_bits())));
        w.option(top_p.as_ref(), |w, p| w.u64(u64::from(p.to_bits())));
        w.count(stop.len());
        for s in stop {
            w.str(s);
        }
        w.option(extra.as_ref(), KeyWriter::json);
        w.option(tool.as_ref(), |w, tool| {
            let ToolSpec {
                name,
                description,
                schema,
            } = tool;
            w.str(name);
            w.str(description);
            w.json(schema);
        });
    }
}

/// One text to embed with its options.
#[derive(Debug, Clone, Copy)]
pub struct EmbedInput<'a> {
    /// The embedding options.
    pub options: &'a EmbedOptions,
    /// The text.
    pub text: &'a str,
}

impl KeyFields for EmbedInput<'_> {
    fn write_key(&self, w: &mut KeyWriter) {
        let EmbedOptions {
            dimensions,
            normalize,
            input_type,
        } = self.options;
        w.option(dimensions.as_ref(), |w, d| w.u64(u64::from(*d)));
        w.option(normalize.as_ref(), |w, n| w.u64(u64::from(*n)));
        w.option(input_type.as_ref(), |w, t| w.str(t));
        w.str(self.text);
    }
}

/// The key of a request: its scope (endpoint, region, identity), the kind of call
/// (`converse`, `invoke`, `embed`), the model id and every field of the request.
pub fn cache_key(
    scope: &CacheScope,
    kind: &str,
    model_id: &str,
    request: &impl KeyFields,
) -> CacheKey {
    let mut w = KeyWriter::new();
    w.0.write(&scope.0);
    w.str(kind);
    w.str(model_id);
    request.write_key(&mut w);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request() -> TextRequest {
        TextRequest {
            system: Some("be brief".into()),
            messages: vec![
                ChatMessage::user("What is 2 + 2?"),
                ChatMessage::assistant("4"),
                ChatMessage {
                    role: ChatRole::User,
                    texts: vec!["and 3 + 3?".into(), "answer in words".into()],
                },
            ],
            params: InferenceParams {
                max_tokens: Some(100),
                temperature: Some(0.5),
                top_p: Some(0.9),
                stop: vec!["END".into()],
                extra: Some(json!({"top_k": 5})),
                service_tier: None,
                latency: None,
                prompt_cache: None,
                rows_per_request: None,
            },
            tool: Some(ToolSpec {
                name: "answer".into(),
                description: "the answer".into(),
                schema: json!({"type": "object"}),
            }),
            cache: None,
        }
    }

    fn scope() -> CacheScope {
        CacheScope::new("AWS", "us-east-1", &[1; 32])
    }

    #[test]
    #[allow(clippy::too_many_lines)] // one assertion per field of a request
    fn every_field_of_a_request_and_its_scope_changes_the_key() {
        let base = cache_key(&scope(), "converse", "m", &request());
        assert_eq!(base, cache_key(&scope(), "converse", "m", &request()));
        let changed = |change: fn(&mut TextRequest)| {
            let mut r = request();
            change(&mut r);
            cache_key(&scope(), "converse", "m", &r)
        };
        let mut variants: Vec<(&str, CacheKey)> = vec![
            ("no system prompt", changed(|r| r.system = None)),
            (
                "system prompt",
                changed(|r| r.system = Some("be long".into())),
            ),
            (
                "empty system prompt",
                changed(|r| r.system = Some(String::new())),
            ),
            ("first text", changed(|r| r.messages[0].texts[0].push('!'))),
            (
                "second text",
                changed(|r| r.messages[1].texts[0] = "5".into()),
            ),
            (
                "a block's text",
                changed(|r| r.messages[2].texts[1].clear()),
            ),
            (
                "a block fewer",
                changed(|r| drop(r.messages[2].texts.pop())),
            ),
            (
                "blocks joined",
                changed(|r| {
                    r.messages[2].texts = vec!["and 3 + 3?answer in words".into()];
                }),
            ),
            (
                "first role",
                changed(|r| r.messages[0].role = ChatRole::Assistant),
            ),
            (
                "second role",
                changed(|r| r.messages[1].role = ChatRole::User),
            ),
            ("a message fewer", changed(|r| drop(r.messages.pop()))),
            ("max_tokens", changed(|r| r.params.max_tokens = Some(101))),
            ("no max_tokens", changed(|r| r.params.max_tokens = None)),
            ("temperature", changed(|r| r.params.temperature = Some(0.6))),
            ("no temperature", changed(|r| r.params.temperature = None)),
            ("top_p", changed(|r| r.params.top_p = Some(0.8))),
            ("no top_p", changed(|r| r.params.top_p = None)),
            ("stop", changed(|r| r.params.stop[0] = "STOP".into())),
            ("more stops", changed(|r| r.params.stop.push(String::new()))),
            (
                "extra",
                changed(|r| r.params.extra = Some(json!({"top_k": 6}))),
            ),
            ("no extra", changed(|r| r.params.extra = None)),
            (
                "tool name",
                changed(|r| r.tool.as_mut().unwrap().name = "reply".into()),
            ),
            (
                "tool description",
                changed(|r| {
                    r.tool.as_mut().unwrap().description = "an answer".into();
                }),
            ),
            (
                "tool schema",
                changed(|r| {
                    r.tool.as_mut().unwrap().schema = json!({"type": "array"});
                }),
            ),
            ("no tool", changed(|r| r.tool = None)),
            ("model", cache_key(&scope(), "converse", "m2", &request())),
            ("api", cache_key(&scope(), "invoke", "m", &request())),
            (
                "endpoint",
                cache_key(
                    &CacheScope::new("http://127.0.0.1:4100", "us-east-1", &[1; 32]),
                    "converse",
                    "m",
                    &request(),
                ),
            ),
            (
                "region",
                cache_key(
                    &CacheScope::new("AWS", "eu-west-1", &[1; 32]),
                    "converse",
                    "m",
                    &request(),
                ),
            ),
            (
                "identity",
                cache_key(
                    &CacheScope::new("AWS", "us-east-1", &[2; 32]),
                    "converse",
                    "m",
                    &request(),
                ),
            ),
            (
                "endpoint and region run together",
                cache_key(
                    &CacheScope::new("AWSu", "s-east-1", &[1; 32]),
                    "converse",
                    "m",
                    &request(),
                ),
            ),
            (
                "kind and model run together",
                cache_key(&scope(), "conversem", "", &request()),
            ),
        ];
        variants.push(("base", base));
        for (i, (name, key)) in variants.iter().enumerate() {
            for (other, other_key) in &variants[i + 1..] {
                assert_ne!(key, other_key, "{name} and {other} share a key");
            }
        }
        assert_ne!(CacheScope::unique(), CacheScope::unique());
        assert_eq!(format!("{:?}", scope()), "CacheScope(..)");
        // What changes the price or the wait, not the answer, leaves the key alone.
        let same = changed(|r| {
            r.params.service_tier = Some(crate::bedrock::request::ServiceTier::Flex);
            r.params.latency = Some(crate::bedrock::request::Latency::Optimized);
            r.params.prompt_cache = Some(crate::bedrock::prompt_cache::PromptCache::OneHour);
            r.cache = Some(crate::bedrock::prompt_cache::CachePoints {
                ttl: None,
                spots: vec![crate::bedrock::prompt_cache::CacheSpot::System],
            });
        });
        assert_eq!(same, base);
    }

    #[test]
    fn every_embedding_option_and_the_text_change_the_key() {
        let key = |options: &EmbedOptions, text: &str| {
            cache_key(&scope(), "embed", "e", &EmbedInput { options, text })
        };
        let base = EmbedOptions {
            dimensions: Some(256),
            normalize: Some(true),
            input_type: Some("search_query".into()),
        };
        let keys = [
            key(&base, "text"),
            key(&base, "text "),
            key(
                &EmbedOptions {
                    dimensions: Some(512),
                    ..base.clone()
                },
                "text",
            ),
            key(
                &EmbedOptions {
                    dimensions: None,
                    ..base.clone()
                },
                "text",
            ),
            key(
                &EmbedOptions {
                    normalize: Some(false),
                    ..base.clone()
                },
                "text",
            ),
            key(
                &EmbedOptions {
                    normalize: None,
                    ..base.clone()
                },
                "text",
            ),
            key(
                &EmbedOptions {
                    input_type: Some("search_document".into()),
                    ..base.clone()
                },
                "text",
            ),
            key(
                &EmbedOptions {
                    input_type: None,
                    ..base.clone()
                },
                "text",
            ),
            key(&EmbedOptions::default(), "text"),
        ];
        for (i, k) in keys.iter().enumerate() {
            for (j, other) in keys.iter().enumerate().skip(i + 1) {
                assert_ne!(k, other, "variants {i} and {j} share a key");
            }
        }
        assert_eq!(keys[0], key(&base.clone(), "text"));
    }
}
