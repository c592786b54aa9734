//! Converse prompt caching, as Bedrock does it.
//!
//! A `{"cachePoint": {"type": "default", "ttl": "5m" | "1h"}}` block in `toolConfig.tools`, in
//! `system` or in a message's `content` marks a checkpoint: everything before it (tools, then
//! system, then messages) is a prefix the model may cache. A checkpoint counts when the input
//! tokens before it reach the model's [`PromptCaching::min_tokens`]; among those that count, the
//! last one whose prefix is cached (and not expired) is read, and every later one is written.
//! Tokens are counted as everywhere in the emulator ([`count_text_tokens`] of each text
//! block); tool definitions count no tokens.
//!
//! The cache is the emulator's, shared by all requests: LRU-bounded, each entry expiring its
//! TTL after it was written or last read.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::answer::count_text_tokens;
use super::catalog::{CatalogModel, PromptCaching};
use super::converse::{block_text, enum_error, null_member};
use super::wire::ApiError;

/// How long a cache entry lives after it was written or last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Ttl {
    /// `5m`, the default.
    FiveMinutes,
    /// `1h`, on the models whose [`PromptCaching::one_hour`] is set.
    OneHour,
}

impl Ttl {
    const ALL: [Self; 2] = [Self::FiveMinutes, Self::OneHour];

    /// The wire name (`5m`, `1h`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::FiveMinutes => "5m",
            Self::OneHour => "1h",
        }
    }

    /// How long an entry written with this TTL lives.
    pub(crate) fn duration(self) -> Duration {
        match self {
            Self::FiveMinutes => Duration::from_mins(5),
            Self::OneHour => Duration::from_hours(1),
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

const TYPE_SET: &str = "[default]";
const TTL_SET: &str = "[5m, 1h]";

/// What identifies a prefix: a SHA-256 of the model id and everything before the checkpoint.
pub(crate) type PrefixKey = [u8; 32];

/// One `cachePoint` block: the tokens and the hash of everything before it, and its TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Input tokens before the checkpoint, from the start of the request.
    pub tokens: u32,
    /// The prefix before the checkpoint.
    pub key: PrefixKey,
    pub ttl: Ttl,
}

/// The `cachePoint` blocks of a Converse request, in request order (tools, system, messages),
/// with their TTLs validated but not yet checked against the model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CachePoints(Vec<Checkpoint>);

/// The prompt caching a request asks for, checked for its model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CachePlan {
    /// The checkpoints at or above the model's minimum, in request order. Empty when every
    /// `cachePoint` was below it: the request then caches nothing, but its usage still says so.
    pub checkpoints: Vec<Checkpoint>,
}

/// The prefix read so far: its running hash and its tokens.
struct Prefix {
    hasher: Sha256,
    tokens: u32,
}

impl Prefix {
    fn new(model_id: &str) -> Self {
        let mut prefix = Self {
            hasher: Sha256::new(),
            tokens: 0,
        };
        prefix.part(b"model", model_id.as_bytes());
        prefix
    }

    /// Adds a tagged, length-prefixed part to the hash (so no two prefixes hash alike by
    /// accident of concatenation).
    fn part(&mut self, tag: &[u8], bytes: &[u8]) {
        for piece in [tag, bytes] {
            let length = u64::try_from(piece.len()).unwrap_or(u64::MAX);
            self.hasher.update(length.to_le_bytes());
            self.hasher.update(piece);
        }
    }

    /// A text block: hashed, and its tokens counted.
    fn text(&mut self, tag: &[u8], text: &str) {
        self.part(tag, text.as_bytes());
        self.tokens = self.tokens.saturating_add(count_text_tokens(text));
    }

    fn checkpoint(&self, ttl: Ttl) -> Checkpoint {
        Checkpoint {
            tokens: self.tokens,
            key: self.hasher.clone().finalize().into(),
            ttl,
        }
    }
}

/// The `cachePoint` object of a block, if the block is one.
pub(crate) fn cache_point(block: &Value) -> Option<&Value> {
    block.get("cachePoint").filter(|v| !v.is_null())
}

/// Validates a `cachePoint` object at `path` (e.g. `system.1.member.cachePoint`): `type` must be
/// `default`, `ttl` (optional, `5m` by default) `5m` or `1h`.
fn read_ttl(point: &Value, path: &str) -> Result<Ttl, ApiError> {
    let kind_path = format!("{path}.type");
    match point.get("type").filter(|v| !v.is_null()) {
        None => return Err(null_member(&kind_path)),
        Some(kind) if kind.as_str() != Some("default") => {
            return Err(enum_error(kind, &kind_path, TYPE_SET));
        }
        Some(_) => {}
    }
    match point.get("ttl").filter(|v| !v.is_null()) {
        None => Ok(Ttl::FiveMinutes),
        Some(ttl) => ttl
            .as_str()
            .and_then(Ttl::from_name)
            .ok_or_else(|| enum_error(ttl, &format!("{path}.ttl"), TTL_SET)),
    }
}

impl CachePoints {
    /// Reads the `cachePoint` blocks of a Converse body whose `messages` are already valid:
    /// in `toolConfig.tools`, then `system`, then each message's `content`.
    pub(crate) fn read(body: &Value, model_id: &str) -> Result<Self, ApiError> {
        let mut prefix = Prefix::new(model_id);
        let mut points = Vec::new();
        let array = |pointer: &str| body.pointer(pointer).and_then(Value::as_array);
        for (k, tool) in array("/toolConfig/tools").into_iter().flatten().enumerate() {
            if let Some(point) = cache_point(tool) {
                let path = format!("toolConfig.tools.{k}.member.cachePoint");
                points.push(prefix.checkpoint(read_ttl(point, &path)?));
            } else if let Some(spec) = tool.get("toolSpec") {
                prefix.part(b"tool", spec.to_string().as_bytes());
            }
        }
        for (i, block) in array("/system").into_iter().flatten().enumerate() {
            if let Some(point) = cache_point(block) {
                let path = format!("system.{i}.member.cachePoint");
                points.push(prefix.checkpoint(read_ttl(point, &path)?));
            } else if let Some(text) = block.get("text").and_then(Value::as_str) {
                prefix.text(b"system", text);
            }
        }
        for (i, message) in array("/messages").into_iter().flatten().enumerate() {
            let role = message.get("role").and_then(Value::as_str).unwrap_or("");
            prefix.part(b"message", role.as_bytes());
            let content = message.get("content").and_then(Value::as_array);
            for (j, block) in content.into_iter().flatten().enumerate() {
                if let Some(point) = cache_point(block) {
                    let path = format!("messages.{i}.member.content.{j}.member.cachePoint");
                    points.push(prefix.checkpoint(read_ttl(point, &path)?));
                } else if let Some(text) = block_text(block) {
                    prefix.text(b"text", &text);
                }
            }
        }
        Ok(Self(points))
    }

    /// Refuses what the model cannot cache (no prompt caching, too many checkpoints, the
    /// one-hour TTL where it is not offered); `None` when the request has no `cachePoint`.
    /// The checkpoints below the model's minimum are dropped.
    pub(crate) fn check(self, model: &CatalogModel) -> Result<Option<CachePlan>, ApiError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let Some(caching) = model.prompt_cache else {
            return Err(ApiError::validation(
                "You invoked an unsupported model or your request did not allow prompt caching. See the documentation for more information.",
            ));
        };
        check_limits(&self.0, model.id, caching)?;
        let checkpoints = self
            .0
            .into_iter()
            .filter(|c| c.tokens >= caching.min_tokens)
            .collect();
        Ok(Some(CachePlan { checkpoints }))
    }
}

/// The checkpoint count and TTL limits of a model that caches prompts.
fn check_limits(
    points: &[Checkpoint],
    model_id: &str,
    caching: PromptCaching,
) -> Result<(), ApiError> {
    if points.len() > caching.max_points {
        return Err(ApiError::validation(format!(
            "A maximum of {} blocks with cache_control may be provided. Found {}.",
            caching.max_points,
            points.len()
        )));
    }
    if !caching.one_hour && points.iter().any(|c| c.ttl == Ttl::OneHour) {
        return Err(ApiError::validation(format!(
            "The model {model_id} does not support the 1h TTL for prompt caching. Try again with ttl 5m or without a ttl."
        )));
    }
    Ok(())
}

/// What a request read from and wrote to the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CacheUse {
    /// Input tokens read from the cache (`cacheReadInputTokens`).
    pub read: u32,
    /// Input tokens written to the cache (`cacheWriteInputTokens`).
    pub write: u32,
    /// The written tokens by TTL (`cacheDetails`), in the order first written; no zeros.
    pub details: Vec<(Ttl, u32)>,
}

impl CacheUse {
    /// The input tokens neither read from nor written to the cache, of `input_tokens` in all.
    pub(crate) fn uncached(&self, input_tokens: u32) -> u32 {
        input_tokens.saturating_sub(self.read.saturating_add(self.write))
    }

    /// Adds `cacheReadInputTokens`, `cacheWriteInputTokens` and, when tokens were written,
    /// `cacheDetails` to a Converse `usage` object.
    pub(crate) fn add_to_usage(&self, usage: &mut Value) {
        usage["cacheReadInputTokens"] = json!(self.read);
        usage["cacheWriteInputTokens"] = json!(self.write);
        if !self.details.is_empty() {
            let details: Vec<Value> = self
                .details
                .iter()
                .map(|(ttl, tokens)| json!({ "ttl": ttl.as_str(), "inputTokens": tokens }))
                .collect();
            usage["cacheDetails"] = Value::Array(details);
        }
    }

    /// Counts `tokens` written with `ttl`.
    fn written(&mut self, ttl: Ttl, tokens: u32) {
        self.write = self.write.saturating_add(tokens);
        if tokens == 0 {
            return;
        }
        match self.details.iter_mut().find(|(t, _)| *t == ttl) {
            Some((_, sum)) => *sum = sum.saturating_add(tokens),
            None => self.details.push((ttl, tokens)),
        }
    }
}

/// A cached prefix.
#[derive(Debug, Clone, Copy)]
struct Entry {
    ttl: Ttl,
    expires: Instant,
    /// When it was last used, in [`Entries::clock`] ticks (the LRU order).
    used: u64,
}

#[derive(Debug, Default)]
struct Entries {
    capacity: usize,
    map: HashMap<PrefixKey, Entry>,
    /// The keys by last use, least recent first.
    order: BTreeMap<u64, PrefixKey>,
    clock: u64,
}

impl Entries {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn remove(&mut self, key: &PrefixKey) {
        if let Some(entry) = self.map.remove(key) {
            self.order.remove(&entry.used);
        }
    }

    /// Whether the prefix is cached and not expired at `now` (an expired entry is dropped).
    fn live(&mut self, key: &PrefixKey, now: Instant) -> bool {
        match self.map.get(key) {
            Some(entry) if entry.expires > now => true,
            Some(_) => {
                self.remove(key);
                false
            }
            None => false,
        }
    }

    /// Writes a prefix, or rewrites it with `ttl`: it expires `ttl` from `now`, and is the most
    /// recently used. The least recently used entries make room.
    fn put(&mut self, key: PrefixKey, ttl: Ttl, now: Instant) {
        self.remove(&key);
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity {
            let Self { map, order, .. } = self;
            map.retain(|_, e| e.expires > now);
            order.retain(|_, k| map.contains_key(k));
        }
        while self.map.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
        }
        let used = self.tick();
        let expires = now + ttl.duration();
        self.map.insert(key, Entry { ttl, expires, used });
        self.order.insert(used, key);
    }

    /// Drops the least recently used entries down to the capacity.
    fn shrink(&mut self) {
        while self.map.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
        }
    }
}

/// The emulator's prompt cache: prefixes by [`PrefixKey`], LRU-bounded, expiring by TTL.
#[derive(Debug, Default)]
pub(crate) struct PromptCache {
    entries: Mutex<Entries>,
}

impl PromptCache {
    /// An empty cache holding at most `capacity` prefixes.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(Entries {
                capacity,
                ..Entries::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds at most `capacity` prefixes from now on, dropping the least recently used.
    pub(crate) fn set_capacity(&self, capacity: usize) {
        let mut entries = self.lock();
        entries.capacity = capacity;
        entries.shrink();
    }

    /// Forgets every prefix.
    pub(crate) fn clear(&self) {
        let mut entries = self.lock();
        entries.map.clear();
        entries.order.clear();
    }

    /// How many prefixes are held (expired ones included until they are looked at).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Serves a request's checkpoints at `now`: the last one cached is read (and its entry
    /// refreshed), every later one written.
    pub(crate) fn apply(&self, plan: &CachePlan, now: Instant) -> CacheUse {
        let mut entries = self.lock();
        let points = &plan.checkpoints;
        let hit = (0..points.len())
            .rev()
            .find(|&i| entries.live(&points[i].key, now));
        let mut used = CacheUse::default();
        let mut covered = 0;
        if let Some(i) = hit {
            let key = points[i].key;
            let ttl = entries.map.get(&key).map_or(points[i].ttl, |e| e.ttl);
            entries.put(key, ttl, now);
            used.read = points[i].tokens;
            covered = used.read;
        }
        let written = hit.map_or(0, |i| i + 1);
        for point in &points[written..] {
            entries.put(point.key, point.ttl, now);
            used.written(point.ttl, point.tokens.saturating_sub(covered));
            covered = covered.max(point.tokens);
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::catalog;

    const NOVA: &str = "amazon.nova-pro-v1:0";

    fn model(id: &str) -> &'static CatalogModel {
        catalog::find(id).expect("in the catalog")
    }

    /// A text of exactly `tokens` tokens.
    fn text(tokens: usize, letter: char) -> String {
        std::iter::repeat_n(letter, tokens * 4).collect()
    }

    fn plan(body: &Value, id: &str) -> Result<Option<CachePlan>, ApiError> {
        CachePoints::read(body, id)?.check(model(id))
    }

    fn point(ttl: &str) -> Value {
        json!({"cachePoint": {"type": "default", "ttl": ttl}})
    }

    #[test]
    fn checkpoints_count_the_tokens_before_them_in_tools_system_messages_order() {
        let body = json!({
            "toolConfig": {"tools": [
                {"toolSpec": {"name": "t", "inputSchema": {"json": {}}}},
                {"cachePoint": {"type": "default"}},
            ]},
            "system": [{"text": text(1000, 's')}, point("5m")],
            "messages": [
                {"role": "user", "content": [{"text": text(200, 'u')}, {"cachePoint": {"type": "default"}}, {"text": "Hi"}]},
            ],
        });
        let points = CachePoints::read(&body, NOVA).expect("valid");
        let tokens: Vec<(u32, Ttl)> = points.0.iter().map(|c| (c.tokens, c.ttl)).collect();
        assert_eq!(
            tokens,
            [
                (0, Ttl::FiveMinutes),
                (1000, Ttl::FiveMinutes),
                (1200, Ttl::FiveMinutes)
            ]
        );
        // The tool checkpoint is below Nova's minimum of 1000: it is dropped.
        let plan = points.check(model(NOVA)).expect("allowed").expect("a plan");
        let kept: Vec<u32> = plan.checkpoints.iter().map(|c| c.tokens).collect();
        assert_eq!(kept, [1000, 1200]);
    }

    #[test]
    fn prefixes_hash_the_model_and_everything_before_the_checkpoint() {
        let body = |system: &str, user: &str| {
            json!({
                "system": [{"text": system}, point("5m")],
                "messages": [{"role": "user", "content": [{"text": user}, point("5m")]}],
            })
        };
        let keys = |body: &Value, id: &str| -> Vec<PrefixKey> {
            let points = CachePoints::read(body, id).expect("valid");
            points.0.iter().map(|c| c.key).collect()
        };
        let a = keys(&body("rules", "one"), NOVA);
        let b = keys(&body("rules", "two"), NOVA);
        let c = keys(&body("rules!", "one"), NOVA);
        let d = keys(&body("rules", "one"), "amazon.nova-lite-v1:0");
        assert_eq!(a[0], b[0]);
        assert_ne!(a[1], b[1]);
        assert_ne!(a[0], c[0]);
        assert_ne!(a[0], d[0]);
    }

    #[test]
    fn cache_points_are_validated_like_the_service() {
        let message = |body: Value, id: &str| plan(&body, id).expect_err("refused").message;
        let user = |block: Value| json!({"messages": [{"role": "user", "content": [{"text": "Hi"}, block]}]});
        assert_eq!(
            message(user(json!({"cachePoint": {"type": "ephemeral"}})), NOVA),
            "1 validation error detected: Value 'ephemeral' at 'messages.0.member.content.1.member.cachePoint.type' failed to satisfy constraint: Member must satisfy enum value set: [default]"
        );
        assert_eq!(
            message(user(json!({"cachePoint": {}})), NOVA),
            "1 validation error detected: Value 'null' at 'messages.0.member.content.1.member.cachePoint.type' failed to satisfy constraint: Member must not be null"
        );
        assert_eq!(
            message(
                json!({"system": [{"cachePoint": {"type": "default", "ttl": "10m"}}], "messages": []}),
                NOVA
            ),
            "1 validation error detected: Value '10m' at 'system.0.member.cachePoint.ttl' failed to satisfy constraint: Member must satisfy enum value set: [5m, 1h]"
        );
        assert_eq!(
            message(
                json!({"toolConfig": {"tools": [{"cachePoint": {"type": 1}}]}, "messages": []}),
                NOVA
            ),
            "1 validation error detected: Value '1' at 'toolConfig.tools.0.member.cachePoint.type' failed to satisfy constraint: Member must satisfy enum value set: [default]"
        );
        assert_eq!(
            message(user(point("5m")), "amazon.titan-text-premier-v1:0"),
            "You invoked an unsupported model or your request did not allow prompt caching. See the documentation for more information."
        );
        let five = json!({
            "system": [{"text": "s"}, point("5m"), point("5m")],
            "messages": [{"role": "user", "content": [{"text": "Hi"}, point("5m"), point("5m"), point("5m")]}],
        });
        assert_eq!(
            message(five, NOVA),
            "A maximum of 4 blocks with cache_control may be provided. Found 5."
        );
        assert_eq!(
            message(user(point("1h")), NOVA),
            "The model amazon.nova-pro-v1:0 does not support the 1h TTL for prompt caching. Try again with ttl 5m or without a ttl."
        );
        let haiku = "anthropic.claude-haiku-4-5-20251001-v1:0";
        assert_eq!(
            plan(&user(point("1h")), haiku),
            Ok(Some(CachePlan {
                checkpoints: Vec::new()
            }))
        );
        assert_eq!(plan(&user(json!({"text": "more"})), NOVA), Ok(None));
    }

    fn checkpoint(tokens: u32, key: u8, ttl: Ttl) -> Checkpoint {
        Checkpoint {
            tokens,
            key: [key; 32],
            ttl,
        }
    }

    fn cached(checkpoints: &[Checkpoint]) -> CachePlan {
        CachePlan {
            checkpoints: checkpoints.to_vec(),
        }
    }

    #[test]
    fn the_first_request_writes_and_the_same_prefix_then_reads() {
        let cache = PromptCache::new(16);
        let now = Instant::now();
        let plan = cached(&[checkpoint(1500, 1, Ttl::FiveMinutes)]);
        assert_eq!(
            cache.apply(&plan, now),
            CacheUse {
                read: 0,
                write: 1500,
                details: vec![(Ttl::FiveMinutes, 1500)]
            }
        );
        assert_eq!(
            cache.apply(&plan, now + Duration::from_secs(1)),
            CacheUse {
                read: 1500,
                write: 0,
                details: Vec::new()
            }
        );
        assert_eq!(cache.apply(&cached(&[]), now), CacheUse::default());
    }

    #[test]
    fn the_last_cached_checkpoint_is_read_and_the_later_ones_written() {
        let cache = PromptCache::new(16);
        let now = Instant::now();
        cache.apply(&cached(&[checkpoint(1000, 1, Ttl::FiveMinutes)]), now);
        let plan = cached(&[
            checkpoint(1000, 1, Ttl::FiveMinutes),
            checkpoint(1400, 2, Ttl::OneHour),
            checkpoint(2000, 3, Ttl::FiveMinutes),
        ]);
        assert_eq!(
            cache.apply(&plan, now),
            CacheUse {
                read: 1000,
                write: 1000,
                details: vec![(Ttl::OneHour, 400), (Ttl::FiveMinutes, 600)]
            }
        );
        assert_eq!(cache.len(), 3);
        // Every checkpoint is cached now: the last one is read.
        assert_eq!(
            cache.apply(&plan, now),
            CacheUse {
                read: 2000,
                write: 0,
                details: Vec::new()
            }
        );
    }

    #[test]
    fn entries_expire_after_their_ttl_unless_read() {
        let cache = PromptCache::new(16);
        let start = Instant::now();
        let short = cached(&[checkpoint(1000, 1, Ttl::FiveMinutes)]);
        let long = cached(&[checkpoint(1000, 2, Ttl::OneHour)]);
        cache.apply(&short, start);
        cache.apply(&long, start);
        let later = start + Duration::from_mins(4);
        // Read after four minutes: refreshed for five more.
        assert_eq!(cache.apply(&short, later).read, 1000);
        assert_eq!(
            cache.apply(&short, later + Duration::from_mins(4)).read,
            1000
        );
        let expired = later + Duration::from_mins(4 + 5);
        assert_eq!(
            cache.apply(&short, expired),
            CacheUse {
                read: 0,
                write: 1000,
                details: vec![(Ttl::FiveMinutes, 1000)]
            }
        );
        assert_eq!(
            cache.apply(&long, start + Duration::from_mins(59)).read,
            1000
        );
        assert_eq!(
            cache
                .apply(&long, start + Duration::from_mins(59 + 60))
                .read,
            0
        );
    }

    #[test]
    fn the_least_recently_used_entry_is_evicted_at_capacity() {
        let cache = PromptCache::new(2);
        let now = Instant::now();
        let one = |key| cached(&[checkpoint(1000, key, Ttl::FiveMinutes)]);
        cache.apply(&one(1), now);
        cache.apply(&one(2), now);
        assert_eq!(cache.apply(&one(1), now).read, 1000);
        cache.apply(&one(3), now);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.apply(&one(1), now).read, 1000);
        assert_eq!(cache.apply(&one(3), now).read, 1000);
        assert_eq!(cache.apply(&one(2), now).read, 0, "2 was evicted");
        cache.set_capacity(1);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.apply(&one(2), now).read, 1000, "the most recent kept");
        cache.set_capacity(0);
        assert_eq!(cache.apply(&one(2), now).write, 1000);
        assert_eq!(cache.len(), 0);
        cache.set_capacity(4);
        cache.apply(&one(5), now);
        cache.clear();
        assert_eq!(cache.apply(&one(5), now).read, 0);
    }

    #[test]
    fn usage_fields_say_what_was_read_and_written() {
        let mut usage = json!({"inputTokens": 5, "outputTokens": 2, "totalTokens": 7});
        let used = CacheUse {
            read: 10,
            write: 20,
            details: vec![(Ttl::OneHour, 20)],
        };
        used.add_to_usage(&mut usage);
        assert_eq!(
            usage,
            json!({
                "inputTokens": 5, "outputTokens": 2, "totalTokens": 7,
                "cacheReadInputTokens": 10, "cacheWriteInputTokens": 20,
                "cacheDetails": [{"ttl": "1h", "inputTokens": 20}],
            })
        );
        assert_eq!(used.uncached(35), 5);
        assert_eq!(used.uncached(3), 0);
    }
}
