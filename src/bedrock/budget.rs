//! Per-query spending limits (`SET bedrock.max_requests = …`, `SET bedrock.max_cost_usd = …`):
//! every attempt is admitted against them before it is sent.

use std::sync::Mutex;

use super::retry::CallFailure;

/// The Bedrock error code of a request refused by a budget.
pub const BUDGET_EXCEEDED: &str = "BudgetExceeded";

/// Limits on one query's requests and estimated cost, with what it has spent so far.
#[derive(Debug, Default)]
pub struct Budget {
    max_requests: Option<u64>,
    max_cost_usd: Option<f64>,
    state: Mutex<Spent>,
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

impl Budget {
    /// A budget; `None` leaves that dimension unlimited.
    pub fn new(max_requests: Option<u64>, max_cost_usd: Option<f64>) -> Self {
        Self {
            max_requests,
            max_cost_usd,
            state: Mutex::new(Spent::default()),
        }
    }

    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.max_requests.is_some() || self.max_cost_usd.is_some()
    }

    /// What has been spent so far.
    pub fn spent(&self) -> Spent {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts rows answered (for the message of an exceeded budget).
    pub fn rows_answered(&self, rows: u64) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rows_answered += rows;
    }

    /// Admits one attempt whose cost may reach `estimate_usd`, or refuses it with a fatal
    /// [`BUDGET_EXCEEDED`] failure that says what was spent. Returns the reservation to
    /// [`Budget::settle`].
    ///
    /// # Errors
    /// When the attempt would pass `max_requests`, or the cost spent plus reserved plus this
    /// estimate would pass `max_cost_usd`.
    pub fn admit(&self, estimate_usd: f64) -> Result<f64, CallFailure> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let refused = |what: String, state: &Spent| {
            CallFailure::fatal(
                BUDGET_EXCEEDED,
                format!(
                    "the query stopped before a request that would pass {what}; it had sent {} request(s) costing about ${:.6}, received {} answer(s) and returned {} row(s). Raise the limit (SET bedrock.max_requests / bedrock.max_cost_usd) or query fewer rows",
                    state.requests, state.cost_usd, state.answered, state.rows_answered
                ),
            )
        };
        if let Some(max) = self.max_requests
            && state.requests + 1 > max
        {
            return Err(refused(format!("bedrock.max_requests = {max}"), &state));
        }
        if let Some(max) = self.max_cost_usd
            && state.cost_usd + state.reserved_usd + estimate_usd > max
        {
            return Err(refused(format!("bedrock.max_cost_usd = {max}"), &state));
        }
        state.requests += 1;
        state.reserved_usd += estimate_usd;
        Ok(estimate_usd)
    }

    /// Releases a reservation and records what the attempt really cost: `Some` for an
    /// answer, `None` for a failure (not billed).
    pub fn settle(&self, reservation: f64, actual_usd: Option<f64>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.reserved_usd = (state.reserved_usd - reservation).max(0.0);
        if let Some(cost) = actual_usd {
            state.cost_usd += cost;
            state.answered += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_and_refused_past_the_limit() {
        let budget = Budget::new(Some(2), None);
        assert!(budget.is_limited());
        let a = budget.admit(0.0).expect("first");
        budget.settle(a, Some(0.0));
        budget.admit(0.0).expect("second");
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
        let budget = Budget::new(None, Some(1.0));
        let first = budget.admit(0.6).expect("fits");
        // 0.6 reserved: another 0.6 would pass 1.0.
        assert!(budget.admit(0.6).is_err());
        budget.settle(first, Some(0.1));
        assert_eq!(budget.spent().cost_usd, 0.1);
        budget.admit(0.6).expect("0.1 spent + 0.6 fits");
        assert!(!Budget::default().is_limited());
    }
}
