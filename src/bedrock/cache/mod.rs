//! The response cache: in memory (bounded, coalescing identical requests in flight) and,
//! optionally, on disk in one embedded ACID file so a re-run or resumed job does not pay twice.
//!
//! - `key.rs`: what identifies a request — its scope, kind, model and every field, hashed.
//! - `memory.rs`: the bounded in-memory map, which also makes identical requests in flight
//!   wait for one fetch.
//! - here: the two tiers together, and the on-disk file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use redb::{Database, ReadableDatabase, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

mod key;
mod memory;

pub use key::{CacheKey, CacheScope, EmbedInput, KeyFields, KeyWriter, cache_key};
pub use memory::KeyMap;
use memory::{Claim, Memory};

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
    memory: Memory<T>,
    disk: Option<Arc<Database>>,
    table: &'static str,
}

impl<T> std::fmt::Debug for ResponseCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("entries", &self.memory.len())
            .field("disk", &self.disk.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> ResponseCache<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// A cache keeping `capacity` responses in memory (0: none kept, identical requests in
    /// flight still coalesce), and on disk under `dir` when given.
    ///
    /// # Errors
    /// When the on-disk cache under `dir` cannot be created or opened.
    pub fn open(table: &'static str, capacity: u64, dir: Option<&Path>) -> Result<Self> {
        Ok(Self {
            memory: Memory::new(capacity),
            disk: dir.map(open_database).transpose()?,
            table,
        })
    }

    fn read_disk(&self, key: &CacheKey) -> Option<T> {
        let db = self.disk.as_ref()?;
        let definition: TableDefinition<&[u8], &[u8]> = TableDefinition::new(self.table);
        let txn = db.begin_read().ok()?;
        let table = txn.open_table(definition).ok()?;
        let value = table.get(key.to_bytes().as_slice()).ok()??;
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
                table.insert(key.to_bytes().as_slice(), bytes.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not write the response cache");
        }
    }

    /// The cached value (memory, then disk), if any.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<T>> {
        if let Some(v) = self.memory.get(key) {
            return Some(v);
        }
        let v = Arc::new(self.read_disk(key)?);
        self.memory.insert(*key, Arc::clone(&v));
        Some(v)
    }

    /// Stores values in memory and on disk, all in one disk transaction.
    pub fn insert_all(&self, values: Vec<(CacheKey, Arc<T>)>) {
        if values.is_empty() {
            return;
        }
        if let Some(db) = &self.disk {
            let definition: TableDefinition<&[u8], &[u8]> = TableDefinition::new(self.table);
            let result = (|| -> std::result::Result<(), Box<dyn std::error::Error>> {
                let txn = db.begin_write()?;
                {
                    let mut table = txn.open_table(definition)?;
                    for (key, value) in &values {
                        let bytes = serde_json::to_vec(value.as_ref())?;
                        table.insert(key.to_bytes().as_slice(), bytes.as_slice())?;
                    }
                }
                txn.commit()?;
                Ok(())
            })();
            if let Err(e) = result {
                tracing::warn!(error = %e, "could not write the response cache");
            }
        }
        for (key, value) in values {
            self.memory.insert(key, value);
        }
    }

    /// Stores a value in memory and on disk.
    pub fn insert(&self, key: CacheKey, value: Arc<T>) {
        self.write_disk(&key, &value);
        self.memory.insert(key, value);
    }

    /// The cached value, or the result of `fetch` (cached when it succeeds). Concurrent callers
    /// with the same key share one fetch, and its failure: a failure is not cached, so a later
    /// call fetches again. When the caller fetching is dropped, a waiting one fetches instead.
    pub async fn get_or_fetch<E, F>(
        &self,
        key: CacheKey,
        fetch: F,
    ) -> (std::result::Result<Arc<T>, Arc<E>>, Source)
    where
        E: Send + Sync + 'static,
        F: std::future::Future<Output = std::result::Result<T, E>>,
    {
        let leader = loop {
            match self.memory.claim(key) {
                Claim::Ready(value) => return (Ok(value), Source::Memory),
                Claim::Wait(waiter) => match waiter.outcome().await {
                    Some(Ok(value)) => return (Ok(value), Source::Memory),
                    // A failure of another type than this caller's cannot be shared with it:
                    // it asks again (and leads, unless another caller does).
                    Some(Err(failure)) => {
                        if let Ok(failure) = failure.downcast::<E>() {
                            return (Err(failure), Source::Memory);
                        }
                    }
                    None => {}
                },
                Claim::Lead(leader) => break leader,
            }
        };
        if let Some(value) = self.read_disk(&key) {
            let value = Arc::new(value);
            leader.land(Ok(Arc::clone(&value)));
            return (Ok(value), Source::Disk);
        }
        match fetch.await {
            Ok(value) => {
                self.write_disk(&key, &value);
                let value = Arc::new(value);
                leader.land(Ok(Arc::clone(&value)));
                (Ok(value), Source::Fetched)
            }
            Err(failure) => {
                let failure = Arc::new(failure);
                leader.land(Err(
                    Arc::clone(&failure) as Arc<dyn std::any::Any + Send + Sync>
                ));
                (Err(failure), Source::Fetched)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use crate::bedrock::request::{InferenceParams, TextRequest};

    fn scope() -> CacheScope {
        CacheScope::new("AWS", "us-east-1", &[7; 32])
    }

    fn key(prompt: &str) -> CacheKey {
        cache_key(
            &scope(),
            "converse",
            "m",
            &TextRequest::prompt(prompt, InferenceParams::default()),
        )
    }

    #[tokio::test]
    async fn identical_requests_fetch_once_and_hit_afterwards() {
        let cache: ResponseCache<String> = ResponseCache::open("t", 100, None).unwrap();
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, String>("answer".to_string())
        };
        let (a, b) = tokio::join!(
            cache.get_or_fetch(key("prompt"), fetch()),
            cache.get_or_fetch(key("prompt"), fetch())
        );
        assert_eq!(
            (a.0.unwrap().as_str(), a.1, b.0.unwrap().as_str(), b.1),
            ("answer", Source::Fetched, "answer", Source::Memory)
        );
        let (c, source) = cache.get_or_fetch(key("prompt"), fetch()).await;
        assert_eq!((c.unwrap().as_str(), source), ("answer", Source::Memory));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(cache.get(&key("prompt")).as_deref(), Some(&"answer".into()));
        assert_eq!(cache.get(&key("other")), None);
    }

    #[tokio::test]
    async fn a_failure_is_shared_with_the_waiters_and_not_kept() {
        let cache: ResponseCache<String> = ResponseCache::open("t", 100, None).unwrap();
        let failing = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err::<String, _>("boom".to_string())
        };
        let waiting = async { Err::<String, _>("must not run".to_string()) };
        let (a, b) = tokio::join!(
            cache.get_or_fetch(key("p"), failing),
            cache.get_or_fetch(key("p"), waiting)
        );
        assert_eq!(
            (
                a.0.unwrap_err().as_str(),
                a.1,
                b.0.unwrap_err().as_str(),
                b.1
            ),
            ("boom", Source::Fetched, "boom", Source::Memory)
        );
        let (r, s) = cache
            .get_or_fetch(key("p"), async { Ok::<_, String>("ok".into()) })
            .await;
        assert_eq!((r.unwrap().as_str(), s), ("ok", Source::Fetched));
    }

    #[tokio::test]
    async fn a_dropped_fetch_hands_the_key_to_a_waiter() {
        let cache: ResponseCache<String> = ResponseCache::open("t", 100, None).unwrap();
        let mut abandoned = Box::pin(cache.get_or_fetch(key("p"), async {
            tokio::time::sleep(Duration::from_hours(1)).await;
            Ok::<_, String>("never".to_string())
        }));
        let waiter = cache.get_or_fetch(key("p"), async { Ok::<_, String>("second".into()) });
        tokio::pin!(waiter);
        // The first leads, the second waits for it.
        assert!(futures::poll!(abandoned.as_mut()).is_pending());
        assert!(futures::poll!(waiter.as_mut()).is_pending());
        drop(abandoned);
        let (r, s) = waiter.await;
        assert_eq!((r.unwrap().as_str(), s), ("second", Source::Fetched));
    }

    #[test]
    fn the_memory_keeps_its_capacity_and_gives_read_entries_a_second_chance() {
        let cache: ResponseCache<String> = ResponseCache::open("t", 3, None).unwrap();
        for name in ["a", "b", "c"] {
            cache.insert(key(name), Arc::new(name.to_string()));
        }
        assert!(cache.get(&key("a")).is_some());
        // "a" was read: "b", the oldest unread, goes.
        cache.insert(key("d"), Arc::new("d".into()));
        let kept = |cache: &ResponseCache<String>| -> Vec<bool> {
            ["a", "b", "c", "d"]
                .iter()
                .map(|n| cache.memory.get(&key(n)).is_some())
                .collect()
        };
        assert_eq!(kept(&cache), vec![true, false, true, true]);
        assert_eq!(cache.memory.len(), 3);
        // Re-inserting a kept key keeps one entry.
        cache.insert(key("c"), Arc::new("c2".into()));
        assert_eq!(cache.memory.len(), 3);
        assert_eq!(cache.get(&key("c")).as_deref(), Some(&"c2".into()));
    }

    #[tokio::test]
    async fn with_no_capacity_identical_requests_still_coalesce() {
        let cache: ResponseCache<String> = ResponseCache::open("t", 0, None).unwrap();
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, String>("answer".to_string())
        };
        let (a, b) = tokio::join!(
            cache.get_or_fetch(key("p"), fetch()),
            cache.get_or_fetch(key("p"), fetch())
        );
        assert_eq!((a.1, b.1), (Source::Fetched, Source::Memory));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        let (_, source) = cache.get_or_fetch(key("p"), fetch()).await;
        assert_eq!(
            (source, fetches.load(Ordering::SeqCst), cache.memory.len()),
            (Source::Fetched, 2, 0)
        );
    }

    #[tokio::test]
    async fn the_disk_cache_survives_a_new_cache() {
        let dir = std::env::temp_dir().join(format!("dfb-cache-test-{}", std::process::id()));
        {
            let cache: ResponseCache<String> = ResponseCache::open("t", 10, Some(&dir)).unwrap();
            let (r, s) = cache
                .get_or_fetch(key("persist"), async { Ok::<_, String>("saved".into()) })
                .await;
            assert_eq!((r.unwrap().as_str(), s), ("saved", Source::Fetched));
        }
        let cache: ResponseCache<String> = ResponseCache::open("t", 10, Some(&dir)).unwrap();
        let (r, s) = cache
            .get_or_fetch(key("persist"), async {
                Err::<String, _>("must not be called".to_string())
            })
            .await;
        assert_eq!((r.unwrap().as_str(), s), ("saved", Source::Disk));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
