//! Per-query spending limits (`SET bedrock.max_requests = …`, `SET bedrock.max_cost_usd = …`):
//! every attempt is admitted against them before it is sent.
//!
//! The first refusal stops the query's spending for good: every later admission is refused
//! too, across all partitions and batches, so nothing starts after it. Attempts admitted
//! before it may finish; [`Budget::refusal`] waits for them, so the error it builds counts
//! every request that was really sent and every answer received.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::retry::CallFailure;

/// The Bedrock error code of a request refused by a budget.
pub const BUDGET_EXCEEDED: &str = "BudgetExceeded";

/// Limits on one query's requests and estimated cost, with what it has spent so far.
#[derive(Debug)]
pub struct Budget {
    max_requests: Option<u64>,
    max_cost_usd: Option<f64>,
    /// On a cluster, the query's limits when these are one task's share of them.
    query_limits: Option<(Option<u64>, Option<f64>)>,
    state: Mutex<State>,
    /// Attempts admitted and not settled yet.
    in_flight: watch::Sender<u64>,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(None, None)
    }
}

/// What a budget knows, behind its lock.
#[derive(Debug, Default)]
struct State {
    spent: Spent,
    /// The limit the first refused attempt would have passed: once set, nothing is admitted.
    stopped_at: Option<String>,
    /// On a cluster, the partitions the limits are divided over.
    partitions: Option<usize>,
}

/// What a query has spent.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Spent {
    /// Attempts sent (retries included).
    pub requests: u64,
    /// Estimated USD of the answers received.
    pub cost_usd: f64,
    /// Estimated USD of the attempts in flight (their input plus their whole `max_tokens`).
    pub reserved_usd: f64,
    /// Requests answered (each answers every row with its prompt).
    pub answered: u64,
    /// Rows returned so far.
    pub rows_answered: u64,
}

/// One admitted attempt's claim on a [`Budget`]: settle it with what the attempt cost.
/// Dropped unsettled, it counts as an attempt that got no answer.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    estimate_usd: f64,
    settled: bool,
}

impl Reservation {
    /// Releases the reservation and records what the attempt really cost: `Some` for an
    /// answer, `None` for a failure (not billed).
    pub fn settle(mut self, actual_usd: Option<f64>) {
        self.settled = true;
        self.budget.settle(self.estimate_usd, actual_usd);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.budget.settle(self.estimate_usd, None);
        }
    }
}

impl Budget {
    /// A budget; `None` leaves that dimension unlimited.
    #[must_use]
    pub fn new(max_requests: Option<u64>, max_cost_usd: Option<f64>) -> Self {
        Self {
            max_requests,
            max_cost_usd,
            query_limits: None,
            state: Mutex::new(State::default()),
            in_flight: watch::Sender::new(0),
        }
    }

    /// One task's share of a query's budget on a cluster: `share` are its limits, `query` the
    /// query's (which refusals name).
    #[must_use]
    pub fn task_share(
        share: (Option<u64>, Option<f64>),
        query: (Option<u64>, Option<f64>),
    ) -> Self {
        Self {
            query_limits: Some(query),
            ..Self::new(share.0, share.1)
        }
    }

    /// The limits: most requests, most estimated USD.
    #[must_use]
    pub fn limits(&self) -> (Option<u64>, Option<f64>) {
        (self.max_requests, self.max_cost_usd)
    }

    /// On a cluster: the number of partitions running model calls that share this budget.
    /// Each partition's task gets its share of the limits ([`Budget::share`]).
    pub fn divide_over(&self, partitions: usize) {
        self.lock().partitions = Some(partitions.max(1));
    }

    /// The partitions this budget is divided over, when it is (see [`Budget::divide_over`]).
    #[must_use]
    pub fn divided_over(&self) -> Option<usize> {
        self.lock().partitions
    }

    /// The limits of a task running `partitions` of the partitions this budget is divided
    /// over: each limit times `partitions / total`, rounded down, so that the tasks together
    /// never pass it. Undivided, the limits themselves.
    #[must_use]
    pub fn share(&self, partitions: usize) -> (Option<u64>, Option<f64>) {
        let Some(total) = self.divided_over() else {
            return self.limits();
        };
        let part = partitions.min(total) as u64;
        let total = total as u64;
        let requests = self.max_requests.map(|max| {
            u64::try_from(u128::from(max) * u128::from(part) / u128::from(total)).unwrap_or(max)
        });
        #[allow(clippy::cast_precision_loss)]
        let cost = self
            .max_cost_usd
            .map(|max| max * part as f64 / total as f64);
        (requests, cost)
    }

    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.max_requests.is_some() || self.max_cost_usd.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What has been spent so far.
    pub fn spent(&self) -> Spent {
        self.lock().spent
    }

    /// Whether an attempt has been refused: nothing more will be admitted.
    pub fn is_stopped(&self) -> bool {
        self.lock().stopped_at.is_some()
    }

    /// Counts rows answered (for the message of an exceeded budget).
    pub fn rows_answered(&self, rows: u64) {
        self.lock().spent.rows_answered += rows;
    }

    /// Admits one attempt whose cost may reach `estimate_usd`, or refuses it with a fatal
    /// [`BUDGET_EXCEEDED`] failure. After a first refusal every attempt is refused. The
    /// returned [`Reservation`] is settled when the attempt ends.
    ///
    /// The message of a refusal says what was spent when it was made; [`Budget::refusal`]
    /// gives the final one, once the attempts in flight have ended.
    ///
    /// # Errors
    /// When an attempt was refused before, or this one would pass `max_requests`, or the cost
    /// spent plus reserved plus this estimate would pass `max_cost_usd`.
    pub fn admit(self: &Arc<Self>, estimate_usd: f64) -> Result<Reservation, CallFailure> {
        let mut state = self.lock();
        if state.stopped_at.is_none() {
            if let Some(max) = self.max_requests
                && state.spent.requests + 1 > max
            {
                state.stopped_at =
                    Some(self.limit_name("max_requests", max, self.query_limits.and_then(|q| q.0)));
            } else if let Some(max) = self.max_cost_usd
                && state.spent.cost_usd + state.spent.reserved_usd + estimate_usd > max
            {
                state.stopped_at =
                    Some(self.limit_name("max_cost_usd", max, self.query_limits.and_then(|q| q.1)));
            }
        }
        if let Some(limit) = &state.stopped_at {
            return Err(refused(limit, &state.spent));
        }
        state.spent.requests += 1;
        state.spent.reserved_usd += estimate_usd;
        self.in_flight.send_modify(|n| *n += 1);
        Ok(Reservation {
            budget: Arc::clone(self),
            estimate_usd,
            settled: false,
        })
    }

    /// `bedrock.max_requests = 10`, or on a cluster `this task's share (2) of bedrock.max_requests = 10`.
    fn limit_name<T: std::fmt::Display>(&self, option: &str, max: T, query: Option<T>) -> String {
        match query {
            Some(query) if self.query_limits.is_some() => {
                format!("this task's share ({max}) of bedrock.{option} = {query}")
            }
            _ => format!("bedrock.{option} = {max}"),
        }
    }

    fn settle(&self, reservation: f64, actual_usd: Option<f64>) {
        {
            let mut state = self.lock();
            state.spent.reserved_usd = (state.spent.reserved_usd - reservation).max(0.0);
            if let Some(cost) = actual_usd {
                state.spent.cost_usd += cost;
                state.spent.answered += 1;
            }
        }
        self.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }

    /// The failure of a query whose budget refused an attempt, counting everything it sent:
    /// waits until the attempts admitted before the refusal have ended (nothing else can
    /// start). `None` when nothing was refused.
    pub async fn refusal(&self) -> Option<CallFailure> {
        self.lock().stopped_at.as_ref()?;
        let mut in_flight = self.in_flight.subscribe();
        // The sender lives in `self`, so the wait ends only when nothing is in flight.
        let _ = in_flight.wait_for(|n| *n == 0).await;
        let state = self.lock();
        let limit = state.stopped_at.as_deref()?;
        Some(refused(limit, &state.spent))
    }
}

/// The failure of a refused attempt: the limit it would pass and what had been spent.
fn refused(limit: &str, spent: &Spent) -> CallFailure {
    CallFailure::fatal(
        BUDGET_EXCEEDED,
        format!(
            "the query stopped before a request that would pass {limit}; it had sent {} request(s) costing about ${:.6}, received {} answer(s) and returned {} row(s). Raise the limit (SET bedrock.max_requests / bedrock.max_cost_usd) or query fewer rows",
            spent.requests, spent.cost_usd, spent.answered, spent.rows_answered
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_divided_budget_gives_each_task_its_part_rounded_down() {
        let budget = Budget::new(Some(100), Some(1.0));
        assert_eq!(budget.share(3), (Some(100), Some(1.0)));
        budget.divide_over(8);
        assert_eq!(budget.divided_over(), Some(8));
        assert_eq!(budget.share(1), (Some(12), Some(0.125)));
        assert_eq!(budget.share(3), (Some(37), Some(0.375)));
        assert_eq!(budget.share(8), (Some(100), Some(1.0)));
        // A task never gets more than the whole.
        assert_eq!(budget.share(20), (Some(100), Some(1.0)));
        let task = Arc::new(Budget::task_share((Some(1), None), (Some(100), None)));
        let admitted = task.admit(0.0).unwrap();
        admitted.settle(Some(0.0));
        assert_eq!(
            task.admit(0.0).unwrap_err().message,
            "the query stopped before a request that would pass this task's share (1) of bedrock.max_requests = 100; it had sent 1 request(s) costing about $0.000000, received 1 answer(s) and returned 0 row(s). Raise the limit (SET bedrock.max_requests / bedrock.max_cost_usd) or query fewer rows"
        );
    }

    #[test]
    fn requests_are_counted_and_refused_past_the_limit() {
        let budget = Arc::new(Budget::new(Some(2), None));
        assert!(budget.is_limited());
        let a = budget.admit(0.0).expect("first");
        a.settle(Some(0.0));
        let _second = budget.admit(0.0).expect("second");
        budget.rows_answered(2);
        let refused = budget.admit(0.0).expect_err("third");
        assert_eq!(refused.code, BUDGET_EXCEEDED);
        assert_eq!(
            refused.message,
            "the query stopped before a request that would pass bedrock.max_requests = 2; it had sent 2 request(s) costing about $0.000000, received 1 answer(s) and returned 2 row(s). Raise the limit (SET bedrock.max_requests / bedrock.max_cost_usd) or query fewer rows"
        );
    }

    #[test]
    fn cost_counts_what_was_spent_and_what_is_in_flight() {
        let budget = Arc::new(Budget::new(None, Some(1.0)));
        let first = budget.admit(0.6).expect("fits");
        let second = budget.admit(0.3).expect("0.6 reserved + 0.3 fits");
        second.settle(Some(0.1));
        assert!((budget.spent().cost_usd - 0.1).abs() < 1e-12);
        first.settle(Some(0.1));
        assert!((budget.spent().cost_usd - 0.2).abs() < 1e-12);
        assert!(!Budget::default().is_limited());
    }

    /// Regression: a query went on sending after its budget refused a request, whenever an
    /// answer freed room under the limit.
    #[test]
    fn nothing_is_admitted_after_the_first_refusal() {
        let budget = Arc::new(Budget::new(None, Some(1.0)));
        let first = budget.admit(0.6).expect("fits");
        // 0.6 reserved: another 0.6 would pass 1.0.
        assert!(budget.admit(0.6).is_err());
        assert!(budget.is_stopped());
        // The answer costs little, but the query has stopped: nothing fits any more.
        first.settle(Some(0.01));
        assert!(budget.admit(0.001).is_err());
        assert_eq!(budget.spent().requests, 1);
    }

    /// Regression: the error of a refused query counted only the requests sent when the
    /// refusal was made, not those in flight then.
    #[tokio::test]
    async fn the_refusal_waits_for_attempts_in_flight_and_counts_them() {
        let budget = Arc::new(Budget::new(Some(2), None));
        assert!(budget.refusal().await.is_none());
        let a = budget.admit(0.0).expect("first");
        let b = budget.admit(0.0).expect("second");
        assert!(budget.admit(0.0).is_err());
        a.settle(Some(0.0));
        let wait = std::time::Duration::from_millis(20);
        assert!(
            tokio::time::timeout(wait, budget.refusal()).await.is_err(),
            "one attempt is still in flight"
        );
        // Dropped unsettled: an attempt without an answer.
        drop(b);
        let failure = budget.refusal().await.expect("refused");
        assert_eq!(
            failure.message,
            "the query stopped before a request that would pass bedrock.max_requests = 2; it had sent 2 request(s) costing about $0.000000, received 1 answer(s) and returned 0 row(s). Raise the limit (SET bedrock.max_requests / bedrock.max_cost_usd) or query fewer rows"
        );
    }
}
