//! How long to wait before the next attempt: exponential backoff with full jitter.

use std::time::Duration;

/// Exponential backoff with full jitter: retry `n` (0-based) waits a uniform time in
/// `[0, min(max_delay, base_delay × 2ⁿ)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first backoff ceiling. Default 200 ms.
    pub base_delay: Duration,
    /// The largest backoff ceiling. Default 20 s.
    pub max_delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl Backoff {
    /// The ceiling of the wait before retry `attempt` (0-based).
    #[must_use]
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(30));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// A random wait in `[0, ceiling(attempt)]`.
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Duration {
        self.ceiling(attempt).mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_its_ceiling() {
        let b = Backoff::default();
        let ceilings: Vec<u128> = (0..9).map(|a| b.ceiling(a).as_millis()).collect();
        assert_eq!(
            ceilings,
            vec![200, 400, 800, 1600, 3200, 6400, 12800, 20000, 20000]
        );
        for attempt in 0..10 {
            assert!(b.delay(attempt) <= b.ceiling(attempt));
        }
    }
}
