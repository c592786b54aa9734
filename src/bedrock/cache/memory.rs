//! The in-memory tier: a bounded map of answers that also coalesces identical requests in
//! flight.
//!
//! The first caller of a key that is not there becomes its leader: it fetches the value while
//! later callers of the same key wait for its outcome, the value or the failure (a failure is
//! shared, not kept). A leader dropped before it lands (its query was cancelled) hands the key
//! on: one of the waiters leads in its place.
//!
//! Entries beyond the capacity are evicted by second chance (CLOCK): the oldest entry goes,
//! unless it was read since the hand last passed it, in which case it gets another round.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::key::CacheKey;

/// A failure shared with the waiters of a flight, whatever its type.
type SharedFailure = Arc<dyn Any + Send + Sync>;

/// The outcome of a flight: the value, or the failure its leader met.
type Outcome<T> = Result<Arc<T>, SharedFailure>;

/// A map by cache key, hashed by the key's own bits.
pub type KeyMap<V> = HashMap<CacheKey, V, BuildHasherDefault<KeyHasher>>;

/// The in-memory tier of a [`ResponseCache`](super::ResponseCache).
pub(super) struct Memory<T> {
    capacity: usize,
    state: Mutex<State<T>>,
}

struct State<T> {
    entries: KeyMap<Entry<T>>,
    /// The keys of the ready entries, the hand of the clock at the front.
    clock: VecDeque<CacheKey>,
}

enum Entry<T> {
    Ready { value: Arc<T>, read: bool },
    InFlight(Arc<Flight<T>>),
}

/// One fetch in flight, awaited by the callers of its key other than its leader.
struct Flight<T> {
    landing: Mutex<Landing<T>>,
    landed: Notify,
}

enum Landing<T> {
    Flying,
    Landed(Outcome<T>),
    /// The leader was dropped before its fetch ended.
    Abandoned,
}

/// What a caller of a key is to do.
pub(super) enum Claim<'a, T> {
    /// The value is there.
    Ready(Arc<T>),
    /// Another caller is fetching it: wait for its outcome.
    Wait(Waiter<T>),
    /// Fetch it, and land the outcome.
    Lead(Leader<'a, T>),
}

fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> Memory<T> {
    /// A tier keeping at most `capacity` values (0: none, but identical requests in flight
    /// still coalesce).
    pub(super) fn new(capacity: u64) -> Self {
        Self {
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            state: Mutex::new(State {
                entries: HashMap::default(),
                clock: VecDeque::new(),
            }),
        }
    }

    /// Values kept.
    pub(super) fn len(&self) -> usize {
        lock(&self.state).clock.len()
    }

    /// The value of `key`, if it is kept.
    pub(super) fn get(&self, key: &CacheKey) -> Option<Arc<T>> {
        match lock(&self.state).entries.get_mut(key) {
            Some(Entry::Ready { value, read }) => {
                *read = true;
                Some(Arc::clone(value))
            }
            _ => None,
        }
    }

    /// Keeps `value` for `key` (a fetch in flight for it still lands its own outcome to its
    /// waiters).
    pub(super) fn insert(&self, key: CacheKey, value: Arc<T>) {
        self.keep(&mut lock(&self.state), key, value);
    }

    fn keep(&self, state: &mut State<T>, key: CacheKey, value: Arc<T>) {
        if self.capacity == 0 {
            return;
        }
        let fresh = !matches!(state.entries.get(&key), Some(Entry::Ready { .. }));
        state
            .entries
            .insert(key, Entry::Ready { value, read: false });
        if fresh {
            state.clock.push_back(key);
        }
        while state.clock.len() > self.capacity {
            let Some(oldest) = state.clock.pop_front() else {
                break;
            };
            match state.entries.get_mut(&oldest) {
                Some(Entry::Ready { read, .. }) if *read => {
                    *read = false;
                    state.clock.push_back(oldest);
                }
                _ => {
                    state.entries.remove(&oldest);
                }
            }
        }
    }

    /// The value of `key`, the flight fetching it, or the lead of a new flight.
    pub(super) fn claim(&self, key: CacheKey) -> Claim<'_, T> {
        let mut state = lock(&self.state);
        match state.entries.get_mut(&key) {
            Some(Entry::Ready { value, read }) => {
                *read = true;
                Claim::Ready(Arc::clone(value))
            }
            Some(Entry::InFlight(flight)) => Claim::Wait(Waiter(Arc::clone(flight))),
            None => {
                let flight = Arc::new(Flight {
                    landing: Mutex::new(Landing::Flying),
                    landed: Notify::new(),
                });
                state
                    .entries
                    .insert(key, Entry::InFlight(Arc::clone(&flight)));
                Claim::Lead(Leader {
                    memory: self,
                    key,
                    flight,
                    landed: false,
                })
            }
        }
    }

    /// Ends `flight`: its entry becomes the value (or goes, after a failure or an
    /// abandonment), then its waiters are told.
    fn land(&self, key: CacheKey, flight: &Arc<Flight<T>>, landing: Landing<T>) {
        let value = match &landing {
            Landing::Landed(Ok(value)) => Some(Arc::clone(value)),
            _ => None,
        };
        *lock(&flight.landing) = landing;
        {
            let mut state = lock(&self.state);
            let ours = matches!(
                state.entries.get(&key),
                Some(Entry::InFlight(f)) if Arc::ptr_eq(f, flight)
            );
            if ours {
                state.entries.remove(&key);
                if let Some(value) = value {
                    self.keep(&mut state, key, value);
                }
            }
        }
        flight.landed.notify_waiters();
    }
}

/// The right, and the duty, to fetch a key's value: [`Leader::land`] its outcome. Dropped
/// before that, it hands the key to a waiter.
pub(super) struct Leader<'a, T> {
    memory: &'a Memory<T>,
    key: CacheKey,
    flight: Arc<Flight<T>>,
    landed: bool,
}

impl<T> Leader<'_, T> {
    /// Keeps a value and gives it to the waiters, or gives them a failure.
    pub(super) fn land(mut self, outcome: Outcome<T>) {
        self.landed = true;
        self.memory
            .land(self.key, &self.flight, Landing::Landed(outcome));
    }
}

impl<T> Drop for Leader<'_, T> {
    fn drop(&mut self) {
        if !self.landed {
            self.memory.land(self.key, &self.flight, Landing::Abandoned);
        }
    }
}

/// A caller waiting for another's fetch.
pub(super) struct Waiter<T>(Arc<Flight<T>>);

impl<T> Waiter<T> {
    /// The leader's outcome, or `None` when it was abandoned.
    pub(super) async fn outcome(self) -> Option<Outcome<T>> {
        loop {
            let landed = self.0.landed.notified();
            tokio::pin!(landed);
            landed.as_mut().enable();
            let now = match &*lock(&self.0.landing) {
                Landing::Flying => None,
                Landing::Landed(outcome) => Some(Some(outcome.clone())),
                Landing::Abandoned => Some(None),
            };
            if let Some(outcome) = now {
                return outcome;
            }
            landed.await;
        }
    }
}

/// The hasher of a [`KeyMap`]: a [`CacheKey`] is already a uniform hash, so its 64 bits are
/// used as they are.
#[derive(Debug, Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
