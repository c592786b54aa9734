//! Adaptive concurrency and per-minute budgets, shared by every query of an engine and model.
//!
//! The limit starts at `max_concurrency`. A throttled request halves it (at most once per
//! quarter second, so one burst of 429s counts once); every success adds `1 / limit`, about one
//! more slot per round of requests (AIMD, as TCP does). Optional requests-per-minute and
//! tokens-per-minute budgets are token buckets holding ten seconds of their rate: a request
//! reserves its input estimate plus its max tokens, as Bedrock does, and gets back what it did
//! not use.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

const DECREASE_INTERVAL: Duration = Duration::from_millis(250);
const BURST_SECONDS: f64 = 10.0;

#[derive(Debug)]
struct Budget {
    capacity: f64,
    per_second: f64,
    level: f64,
    at: Instant,
}

impl Budget {
    fn new(per_minute: u32) -> Self {
        let per_second = f64::from(per_minute) / 60.0;
        let capacity = (per_second * BURST_SECONDS).max(1.0);
        Self {
            capacity,
            per_second,
            level: capacity,
            at: Instant::now(),
        }
    }

    /// Takes `n`, or says how long to wait before `n` is there. A request larger than the whole
    /// bucket runs when the bucket is full.
    // Request and token counts stay far below 2^53, where an `f64` holds every integer exactly.
    #[allow(clippy::cast_precision_loss)]
    fn take(&mut self, n: u64) -> Result<(), Duration> {
        let now = Instant::now();
        self.level = (self.level
            + now.saturating_duration_since(self.at).as_secs_f64() * self.per_second)
            .min(self.capacity);
        self.at = now;
        let need = (n as f64).min(self.capacity);
        if self.level >= need {
            self.level -= n as f64;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (need - self.level) / self.per_second,
            ))
        }
    }

    // As in `take`: request and token counts are exact as `f64`.
    #[allow(clippy::cast_precision_loss)]
    fn give_back(&mut self, n: u64) {
        self.level = (self.level + n as f64).min(self.capacity);
    }
}

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    last_decrease: Option<Instant>,
}

/// The limiter of one engine and model.
#[derive(Debug)]
pub struct Limiter {
    ceiling: usize,
    state: Mutex<State>,
    released: Notify,
    requests: Option<Mutex<Budget>>,
    tokens: Option<Mutex<Budget>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Limiter {
    /// A limiter allowing `max_concurrency` requests in flight, with optional budgets.
    #[must_use]
    // A concurrency (at most 4096 from an engine's settings) is exact as an `f64`.
    #[allow(clippy::cast_precision_loss)]
    pub fn new(
        max_concurrency: usize,
        requests_per_minute: Option<u32>,
        tokens_per_minute: Option<u32>,
    ) -> Self {
        let ceiling = max_concurrency.max(1);
        Self {
            ceiling,
            state: Mutex::new(State {
                limit: ceiling as f64,
                in_flight: 0,
                last_decrease: None,
            }),
            released: Notify::new(),
            requests: requests_per_minute.map(|r| Mutex::new(Budget::new(r))),
            tokens: tokens_per_minute.map(|t| Mutex::new(Budget::new(t))),
        }
    }

    /// The most requests allowed in flight now.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub fn current_limit(&self) -> usize {
        (lock(&self.state).limit.floor() as usize).max(1)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        lock(&self.state).in_flight
    }

    /// The configured ceiling (`max_concurrency`).
    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// Takes a slot if one is free; `Some(true)` when another is still free after it.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn try_enter(&self) -> Option<bool> {
        let mut state = lock(&self.state);
        let limit = (state.limit.floor() as usize).max(1);
        if state.in_flight < limit {
            state.in_flight += 1;
            Some(state.in_flight < limit)
        } else {
            None
        }
    }

    /// Waits for a slot and for the budgets, reserving `tokens` of the token budget.
    ///
    /// Waiters are woken one at a time: a freed slot wakes one waiter, and a waiter that finds
    /// more than one slot free (the limit grew) wakes the next. Waking every waiter on every
    /// release would cost a poll of each waiting request per response.
    pub async fn acquire(self: &Arc<Self>, tokens: u64) -> Permit {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(more) = self.try_enter() {
                if more {
                    self.released.notify_one();
                }
                break;
            }
            released.await;
        }
        // From here on the slot is freed if this future is dropped.
        let mut permit = Permit {
            limiter: Arc::clone(self),
            reserved: 0,
            used: 0,
        };
        for (budget, n) in [(&self.requests, 1), (&self.tokens, tokens)] {
            if let Some(budget) = budget {
                loop {
                    let wait = lock(budget).take(n);
                    match wait {
                        Ok(()) => break,
                        Err(wait) => tokio::time::sleep(wait.max(Duration::from_millis(1))).await,
                    }
                }
            }
        }
        permit.reserved = tokens;
        permit
    }

    fn release(&self, reserved: u64, used: u64) {
        if let Some(budget) = &self.tokens {
            lock(budget).give_back(reserved.saturating_sub(used));
        }
        lock(&self.state).in_flight -= 1;
        // One slot freed, one waiter woken. A woken waiter that is dropped before it runs
        // passes the wake-up on (tokio's `Notify` guarantees it).
        self.released.notify_one();
    }
}

/// A slot in flight. Report how it went with [`Permit::succeeded`] or [`Permit::throttled`];
/// dropping it otherwise just frees the slot and returns the reserved tokens.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
    reserved: u64,
    used: u64,
}

impl Permit {
    /// The request succeeded having used `tokens` (input + output): grow the limit a little.
    #[allow(clippy::cast_precision_loss)]
    pub fn succeeded(mut self, tokens: u64) {
        {
            let mut state = lock(&self.limiter.state);
            state.limit = (state.limit + 1.0 / state.limit).min(self.limiter.ceiling as f64);
        }
        self.used = tokens;
    }

    /// The request was throttled: halve the limit (once per burst).
    pub fn throttled(self) {
        let mut state = lock(&self.limiter.state);
        let now = Instant::now();
        if state
            .last_decrease
            .is_none_or(|t| now.duration_since(t) >= DECREASE_INTERVAL)
        {
            state.limit = (state.limit / 2.0).max(1.0);
            state.last_decrease = Some(now);
        }
        drop(state);
        drop(self);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.release(self.reserved, self.used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_bounded_and_adapt() {
        let limiter = Arc::new(Limiter::new(4, None, None));
        let permits: Vec<Permit> =
            futures::future::join_all((0..4).map(|_| limiter.acquire(0))).await;
        assert_eq!(limiter.in_flight(), 4);
        // A fifth waits for a free slot.
        let waiting = tokio::spawn({
            let limiter = Arc::clone(&limiter);
            async move { limiter.acquire(0).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(limiter.in_flight(), 4);
        let mut permits = permits.into_iter();
        let mut next = || permits.next().expect("four permits");
        // One burst of 429s halves the limit once.
        next().throttled();
        next().throttled();
        assert_eq!((limiter.current_limit(), limiter.in_flight()), (2, 2));
        // With the limit at 2, the fifth enters only when fewer than 2 are in flight.
        drop(next());
        let fifth = waiting.await.expect("the waiter gets a slot");
        assert_eq!(limiter.in_flight(), 2);
        next().succeeded(10);
        fifth.succeeded(10);
        assert_eq!(limiter.in_flight(), 0);
        for _ in 0..50 {
            limiter.acquire(0).await.succeeded(1);
        }
        assert_eq!(
            limiter.current_limit(),
            4,
            "additive increase climbs back to the ceiling"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_waiter_gets_a_slot_in_turn() {
        let limiter = Arc::new(Limiter::new(3, None, None));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let (limiter, peak) = (Arc::clone(&limiter), Arc::clone(&peak));
                tokio::spawn(async move {
                    let permit = limiter.acquire(0).await;
                    peak.fetch_max(limiter.in_flight(), std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    // Some waiters give up before they are served: their wake-up is passed on.
                    if i % 7 == 0 {
                        drop(permit);
                    } else {
                        permit.succeeded(1);
                    }
                })
            })
            .collect();
        let all = futures::future::join_all(tasks);
        let done = tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("no waiter is left behind");
        assert!(done.iter().all(Result::is_ok));
        assert_eq!(limiter.in_flight(), 0);
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_dropped_waiter_passes_its_wake_up_on() {
        let limiter = Arc::new(Limiter::new(1, None, None));
        let held = limiter.acquire(0).await;
        let first = tokio::spawn({
            let limiter = Arc::clone(&limiter);
            async move { limiter.acquire(0).await }
        });
        let second = tokio::spawn({
            let limiter = Arc::clone(&limiter);
            async move { limiter.acquire(0).await }
        });
        tokio::task::yield_now().await;
        // The slot is freed and the first waiter gives up: the second must still get it.
        first.abort();
        drop(held);
        let permit = tokio::time::timeout(Duration::from_secs(10), second)
            .await
            .expect("the second waiter is woken")
            .expect("the second waiter's task");
        assert_eq!(limiter.in_flight(), 1);
        drop(permit);
        assert_eq!(limiter.in_flight(), 0);
    }

    #[test]
    fn budgets_reserve_and_refund() {
        let mut b = Budget::new(600); // 10/s, holds 100
        assert_eq!(b.take(80), Ok(()));
        assert!(b.take(80).is_err());
        b.give_back(70);
        assert_eq!(b.take(80), Ok(()));
        // Larger than the bucket: runs once the bucket is full.
        let mut big = Budget::new(60);
        assert_eq!(big.take(1000), Ok(()));
        assert!(big.take(1).is_err());
    }
}
