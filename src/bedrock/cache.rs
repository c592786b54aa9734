//! The response cache: in memory (bounded, coalescing identical requests in flight) and,
//! optionally, on disk in one embedded ACID file so a re-run or resumed job does not pay twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use redb::{Database, ReadableDatabase, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A cache key: the SHA-256 of (scope, kind, model id, the whole request).
pub type CacheKey = [u8; 32];

/// Where an engine's answers come from: its endpoint, region and identity, hashed. Every
/// cache key holds it, so engines that send requests to another endpoint or region, or as
/// another identity, never share answers — in memory or in a shared `cache_dir`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheScope([u8; 32]);

impl CacheScope {
    /// The scope of requests sent to `endpoint` (`AWS` for Bedrock's own endpoints) in `region`
    /// as the identity whose fingerprint is `identity` (a hash that never holds a secret).
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

/// Hashes what identifies a request: the scope (endpoint, region, identity), the kind of call
/// (`converse`, `invoke`, `embed`), the model id and the whole request.
pub fn cache_key(
    scope: &CacheScope,
    kind: &str,
    model_id: &str,
    request: &impl Serialize,
) -> CacheKey {
    let mut hasher = Sha256::new();
    hasher.update(scope.0);
    for part in [kind.as_bytes(), model_id.as_bytes()] {
        hasher.update(u64::try_from(part.len()).unwrap_or(u64::MAX).to_le_bytes());
        hasher.update(part);
    }
    hasher.update(serde_json::to_vec(request).unwrap_or_default());
    hasher.finalize().into()
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This call fetched it from Bedrock.
    Fetched,
    /// Memory, or another caller's request in flight.
    Memory,
    /// The on-disk cache.
    Disk,
}

/// Open disk caches by path: one database handle per file in the process.
fn open_databases() -> &'static Mutex<HashMap<PathBuf, Weak<Database>>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<Database>>>> = OnceLock::new();
    OPEN.get_or_init(Mutex::default)
}

fn open_database(dir: &Path) -> Result<Arc<Database>> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::InvalidInput(format!(
            "cache_dir '{}' cannot be created: {e}",
            dir.display()
        ))
    })?;
    let path = dir.join("bedrock-responses.redb");
    let mut open = open_databases()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(db) = open.get(&path).and_then(Weak::upgrade) {
        return Ok(db);
    }
    let db = Arc::new(Database::create(&path).map_err(|e| {
        Error::InvalidInput(format!(
            "the response cache '{}' cannot be opened: {e} (is another process using it?)",
            path.display()
        ))
    })?);
    open.insert(path, Arc::downgrade(&db));
    Ok(db)
}

/// A typed cache of one kind of response.
pub struct ResponseCache<T> {
    memory: moka::future::Cache<CacheKey, Arc<T>>,
    disk: Option<Arc<Database>>,
    table: &'static str,
}

impl<T> std::fmt::Debug for ResponseCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("entries", &self.memory.entry_count())
            .field("disk", &self.disk.is_some())
            .finish()
    }
}

impl<T> ResponseCache<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// A cache keeping `capacity` responses in memory (0: none kept, identical requests in
    /// flight still coalesce), and on disk under `dir` when given.
    pub fn open(table: &'static str, capacity: u64, dir: Option<&Path>) -> Result<Self> {
        Ok(Self {
            memory: moka::future::Cache::new(capacity),
            disk: dir.map(open_database).transpose()?,
            table,
        })
    }

    fn read_disk(&self, key: &CacheKey) -> Option<T> {
        let db = self.disk.as_ref()?;
        let definition: TableDefinition<&[u8], &[u8]> = TableDefinition::new(self.table);
        let txn = db.begin_read().ok()?;
        let table = txn.open_table(definition).ok()?;
        let value = table.get(key.as_slice()).ok()??;
        serde_json::from_slice(value.value()).ok()
    }

    fn write_disk(&self, key: &CacheKey, value: &T) {
        let Some(db) = &self.disk else { return };
        let definition: TableDefinition<&[u8], &[u8]> = TableDefinition::new(self.table);
        let result = (|| -> std::result::Result<(), Box<dyn std::error::Error>> {
            let bytes = serde_json::to_vec(value)?;
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(definition)?;
                table.insert(key.as_slice(), bytes.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not write the response cache");
        }
    }

    /// The cached value (memory, then disk), if any.
    pub async fn get(&self, key: &CacheKey) -> Option<Arc<T>> {
        if let Some(v) = self.memory.get(key).await {
            return Some(v);
        }
        let v = Arc::new(self.read_disk(key)?);
        self.memory.insert(*key, Arc::clone(&v)).await;
        Some(v)
    }

    /// Stores a value in memory and on disk.
    pub async fn insert(&self, key: CacheKey, value: Arc<T>) {
        self.write_disk(&key, &value);
        self.memory.insert(key, value).await;
    }

    /// The cached value, or the result of `fetch` (cached when it succeeds). Concurrent callers
    /// with the same key share one fetch.
    pub async fn get_or_fetch<E, F>(
        &self,
        key: CacheKey,
        fetch: F,
    ) -> (std::result::Result<Arc<T>, Arc<E>>, Source)
    where
        E: Send + Sync + 'static,
        F: std::future::Future<Output = std::result::Result<T, E>>,
    {
        let ran = AtomicBool::new(false);
        let from_disk = AtomicBool::new(false);
        let result = self
            .memory
            .try_get_with(key, async {
                ran.store(true, Ordering::Relaxed);
                if let Some(v) = self.read_disk(&key) {
                    from_disk.store(true, Ordering::Relaxed);
                    return Ok(Arc::new(v));
                }
                let value = fetch.await?;
                self.write_disk(&key, &value);
                Ok(Arc::new(value))
            })
            .await;
        let source = if !ran.load(Ordering::Relaxed) {
            Source::Memory
        } else if from_disk.load(Ordering::Relaxed) {
            Source::Disk
        } else {
            Source::Fetched
        };
        (result, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn scope() -> CacheScope {
        CacheScope::new("AWS", "us-east-1", &[7; 32])
    }

    #[test]
    fn keys_differ_by_endpoint_region_identity_kind_model_and_request() {
        let key =
            |endpoint: &str, region: &str, identity: u8, kind: &str, model: &str, request: &str| {
                cache_key(
                    &CacheScope::new(endpoint, region, &[identity; 32]),
                    kind,
                    model,
                    &request,
                )
            };
        let base = key("AWS", "us-east-1", 1, "converse", "m", "p");
        assert_eq!(base, key("AWS", "us-east-1", 1, "converse", "m", "p"));
        let others = [
            key(
                "http://127.0.0.1:4100",
                "us-east-1",
                1,
                "converse",
                "m",
                "p",
            ),
            key("AWS", "eu-west-1", 1, "converse", "m", "p"),
            key("AWS", "us-east-1", 2, "converse", "m", "p"),
            key("AWS", "us-east-1", 1, "invoke", "m", "p"),
            key("AWS", "us-east-1", 1, "converse", "m2", "p"),
            key("AWS", "us-east-1", 1, "converse", "m", "p2"),
            // Parts do not run into each other.
            key("AWSu", "s-east-1", 1, "converse", "m", "p"),
            key("AWS", "us-east-1", 1, "conversem", "", "p"),
        ];
        for (i, other) in others.iter().enumerate() {
            assert_ne!(&base, other, "variant {i}");
        }
        assert_ne!(CacheScope::unique(), CacheScope::unique());
        assert_eq!(format!("{:?}", scope()), "CacheScope(..)");
    }

    #[tokio::test]
    async fn identical_requests_fetch_once_and_hit_afterwards() {
        let cache: ResponseCache<String> = ResponseCache::open("t", 100, None).unwrap();
        let fetches = AtomicUsize::new(0);
        let key = cache_key(&scope(), "text", "m", &"prompt");
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok::<_, String>("answer".to_string())
        };
        let (a, b) = tokio::join!(
            cache.get_or_fetch(key, fetch()),
            cache.get_or_fetch(key, fetch())
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(
            (a.0.unwrap().as_str(), b.0.unwrap().as_str()),
            ("answer", "answer")
        );
        let sources = [a.1, b.1];
        assert!(sources.contains(&Source::Fetched) && sources.contains(&Source::Memory));
        let (c, source) = cache.get_or_fetch(key, fetch()).await;
        assert_eq!((c.unwrap().as_str(), source), ("answer", Source::Memory));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let cache: ResponseCache<String> = ResponseCache::open("t", 100, None).unwrap();
        let key = cache_key(&scope(), "text", "m", &"p");
        let (r, _) = cache
            .get_or_fetch(key, async { Err::<String, _>("boom".to_string()) })
            .await;
        assert_eq!(r.unwrap_err().as_str(), "boom");
        let (r, s) = cache
            .get_or_fetch(key, async { Ok::<_, String>("ok".into()) })
            .await;
        assert_eq!((r.unwrap().as_str(), s), ("ok", Source::Fetched));
    }

    #[tokio::test]
    async fn the_disk_cache_survives_a_new_cache() {
        let dir = std::env::temp_dir().join(format!("dfb-cache-test-{}", std::process::id()));
        let key = cache_key(&scope(), "text", "m", &"persist");
        {
            let cache: ResponseCache<String> = ResponseCache::open("t", 10, Some(&dir)).unwrap();
            let (r, s) = cache
                .get_or_fetch(key, async { Ok::<_, String>("saved".into()) })
                .await;
            assert_eq!((r.unwrap().as_str(), s), ("saved", Source::Fetched));
        }
        let cache: ResponseCache<String> = ResponseCache::open("t", 10, Some(&dir)).unwrap();
        let (r, s) = cache
            .get_or_fetch(key, async {
                Err::<String, _>("must not be called".to_string())
            })
            .await;
        assert_eq!((r.unwrap().as_str(), s), ("saved", Source::Disk));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
