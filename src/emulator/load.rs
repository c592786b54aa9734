//! The load model: latency, per-model quotas that throttle like Bedrock, and seeded faults.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::answer::{fnv1a, unit_f64};

/// Probabilities (0..=1 each, summing to at most 1) of injecting a fault into a runtime request
/// that passed validation and quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultRates {
    /// `ThrottlingException` (429).
    pub throttle: f64,
    /// `InternalServerException` (500).
    pub internal: f64,
    /// `ServiceUnavailableException` (503).
    pub unavailable: f64,
    /// `ModelTimeoutException` (408).
    pub timeout: f64,
    /// A 200 response whose JSON body is cut short.
    pub malformed: f64,
    /// The connection is closed without a response.
    pub drop_connection: f64,
}

impl FaultRates {
    /// The sum of all rates.
    #[must_use]
    pub fn total(&self) -> f64 {
        self.throttle
            + self.internal
            + self.unavailable
            + self.timeout
            + self.malformed
            + self.drop_connection
    }
}

/// A fault injected into one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// 429 `ThrottlingException`.
    Throttle,
    /// 500 `InternalServerException`.
    Internal,
    /// 503 `ServiceUnavailableException`.
    Unavailable,
    /// 408 `ModelTimeoutException`.
    Timeout,
    /// 200 with a truncated JSON body.
    Malformed,
    /// Connection closed without a response.
    DropConnection,
}

impl Fault {
    /// A short, stable name (`throttle`, `internal`, …) used in the stats.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Throttle => "throttle",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::Malformed => "malformed",
            Self::DropConnection => "drop_connection",
        }
    }
}

/// Latency, quotas and faults. The default has none of them: instant, unlimited, reliable.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadModel {
    /// Fixed time before every runtime response.
    pub latency: Duration,
    /// Up to this much extra time, drawn uniformly from the seeded generator.
    pub jitter: Duration,
    /// Extra time per output token (streams deliver their pieces at this pace).
    pub per_output_token: Duration,
    /// Requests per minute allowed per model; excess gets `ThrottlingException`.
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute allowed per model. A request reserves its input tokens plus its
    /// `maxTokens` when it starts (as Bedrock does) and gets back what it did not use.
    pub tokens_per_minute: Option<u32>,
    /// How much of a quota may be spent at once, as a time window: the buckets hold this
    /// window's worth of the per-minute rate. Default 60 seconds (a full minute's quota).
    pub quota_window: Duration,
    /// Injected fault probabilities.
    pub faults: FaultRates,
    /// Seed of jitter and fault draws; the same seed gives the same sequence.
    pub seed: u64,
}

impl Default for LoadModel {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            per_output_token: Duration::ZERO,
            requests_per_minute: None,
            tokens_per_minute: None,
            quota_window: Duration::from_mins(1),
            faults: FaultRates::default(),
            seed: 0,
        }
    }
}

impl LoadModel {
    fn draw(&self, sequence: u64, stream: u8) -> f64 {
        let mut state = fnv1a(&[&self.seed.to_le_bytes(), &sequence.to_le_bytes(), &[stream]]);
        unit_f64(&mut state)
    }

    /// The fault injected into the runtime request with this sequence number (0-based, counted
    /// over requests that passed validation and quotas), if any. A pure function of the seed.
    #[must_use]
    pub fn fault_for(&self, sequence: u64) -> Option<Fault> {
        let u = self.draw(sequence, 0);
        let f = &self.faults;
        let table = [
            (f.throttle, Fault::Throttle),
            (f.internal, Fault::Internal),
            (f.unavailable, Fault::Unavailable),
            (f.timeout, Fault::Timeout),
            (f.malformed, Fault::Malformed),
            (f.drop_connection, Fault::DropConnection),
        ];
        let mut edge = 0.0;
        for (rate, fault) in table {
            edge += rate;
            if u < edge {
                return Some(fault);
            }
        }
        None
    }

    /// The time before the response of request `sequence` starts (latency plus jitter).
    #[must_use]
    pub fn first_byte_delay(&self, sequence: u64) -> Duration {
        self.latency + self.jitter.mul_f64(self.draw(sequence, 1))
    }
}

/// A token bucket refilled continuously at `per_minute / 60` per second.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    per_second: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_minute: u32, window: Duration) -> Self {
        let per_second = f64::from(per_minute) / 60.0;
        let capacity = (per_second * window.as_secs_f64()).max(1.0);
        Self {
            capacity,
            per_second,
            level: capacity,
            at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * self.per_second).min(self.capacity);
        self.at = now;
    }
}

/// Why a request was throttled by a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuotaExceeded {
    Requests,
    Tokens,
}

/// A model's request bucket and token bucket (each present when its quota is set).
type ModelBuckets = (Option<Bucket>, Option<Bucket>);

/// Per-model request and token buckets.
#[derive(Debug, Default)]
pub(crate) struct Quotas {
    buckets: Mutex<HashMap<&'static str, ModelBuckets>>,
}

impl Quotas {
    /// Takes one request and `tokens` tokens from the model's buckets, or says which is empty.
    pub(crate) fn admit(
        &self,
        load: &LoadModel,
        model: &'static str,
        tokens: u32,
    ) -> Result<(), QuotaExceeded> {
        if load.requests_per_minute.is_none() && load.tokens_per_minute.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let (requests, token_bucket) = buckets.entry(model).or_insert_with(|| {
            (
                load.requests_per_minute
                    .map(|r| Bucket::new(r, load.quota_window)),
                load.tokens_per_minute
                    .map(|t| Bucket::new(t, load.quota_window)),
            )
        });
        if let Some(b) = requests.as_mut() {
            b.refill(now);
            if b.level < 1.0 {
                return Err(QuotaExceeded::Requests);
            }
        }
        if let Some(b) = token_bucket.as_mut() {
            b.refill(now);
            // A request larger than the whole bucket may run when the bucket is full, as
            // otherwise it could never run at all.
            let need = f64::from(tokens).min(b.capacity);
            if b.level < need {
                return Err(QuotaExceeded::Tokens);
            }
            b.level -= f64::from(tokens);
        }
        if let Some(b) = requests.as_mut() {
            b.level -= 1.0;
        }
        Ok(())
    }

    /// Gives back tokens reserved but not used.
    pub(crate) fn refund(&self, model: &'static str, tokens: u32) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, Some(b))) = buckets.get_mut(model) {
            b.level = (b.level + f64::from(tokens)).min(b.capacity);
        }
    }

    /// Refills every bucket (new load model or stats reset).
    pub(crate) fn clear(&self) {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_follow_their_rates_and_the_seed() {
        let load = LoadModel {
            faults: FaultRates {
                throttle: 0.2,
                internal: 0.05,
                drop_connection: 0.05,
                ..FaultRates::default()
            },
            seed: 7,
            ..LoadModel::default()
        };
        let draws: Vec<_> = (0..10_000).map(|i| load.fault_for(i)).collect();
        let count = |f| draws.iter().filter(|d| **d == Some(f)).count();
        assert!(
            (1850..2150).contains(&count(Fault::Throttle)),
            "{}",
            count(Fault::Throttle)
        );
        assert!((420..580).contains(&count(Fault::Internal)));
        assert!((420..580).contains(&count(Fault::DropConnection)));
        assert_eq!(count(Fault::Timeout), 0);
        let again: Vec<_> = (0..10_000).map(|i| load.fault_for(i)).collect();
        assert_eq!(draws, again);
        let other_seed = LoadModel {
            seed: 8,
            ..load.clone()
        };
        assert_ne!(
            draws,
            (0..10_000)
                .map(|i| other_seed.fault_for(i))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let load = LoadModel {
            latency: Duration::from_millis(100),
            jitter: Duration::from_millis(50),
            ..LoadModel::default()
        };
        for i in 0..1000 {
            let d = load.first_byte_delay(i);
            assert!(d >= Duration::from_millis(100) && d < Duration::from_millis(150));
        }
    }

    #[test]
    fn token_quota_reserves_and_refunds() {
        let load = LoadModel {
            tokens_per_minute: Some(600),
            quota_window: Duration::from_secs(10),
            ..LoadModel::default()
        };
        // Bucket holds 10 s of 10 tokens/s = 100 tokens.
        let q = Quotas::default();
        assert_eq!(q.admit(&load, "m", 60), Ok(()));
        assert_eq!(q.admit(&load, "m", 60), Err(QuotaExceeded::Tokens));
        q.refund("m", 50);
        assert_eq!(q.admit(&load, "m", 60), Ok(()));
        // Another model has its own bucket.
        assert_eq!(q.admit(&load, "n", 100), Ok(()));
    }

    #[test]
    fn request_quota_throttles_the_excess() {
        let load = LoadModel {
            requests_per_minute: Some(3),
            ..LoadModel::default()
        };
        let q = Quotas::default();
        let results: Vec<_> = (0..4).map(|_| q.admit(&load, "m", 0)).collect();
        assert_eq!(
            results,
            vec![Ok(()), Ok(()), Ok(()), Err(QuotaExceeded::Requests)]
        );
    }
}
