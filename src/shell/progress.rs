//! The progress line of long model queries: rendered from usage counters, drawn on stderr
//! only when stderr is a terminal, and cleared when the query ends.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::bedrock::usage::UsageSnapshot;
use crate::catalog::Catalog;

/// How long a query runs before its progress line appears.
const SHOW_AFTER: Duration = Duration::from_millis(500);
/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(200);

/// The numbers on the progress line: the model work of the running query so far.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Progress {
    /// Rows answered (by a request, the cache, or a duplicate of another row's prompt).
    pub rows_answered: u64,
    /// Rows the query will send to models, when known.
    pub rows_total: Option<u64>,
    /// Requests sent to Bedrock (retries included).
    pub requests: u64,
    /// Input plus output tokens.
    pub tokens: u64,
    /// Estimated cost in USD, when every model used has a price.
    pub estimated_cost_usd: Option<f64>,
    /// Throttled requests (retried).
    pub throttles: u64,
    /// Time since the query started.
    pub elapsed: Duration,
    /// Batch inference jobs the query submitted or re-attached to.
    pub batch_jobs: u64,
    /// Records of those jobs processed so far, and in all.
    pub batch_records: (u64, u64),
    /// The latest job's status as last polled (`InProgress`, …).
    pub batch_status: Option<&'static str>,
}

/// The statuses of a batch job, as the progress line names them.
const JOB_STATUSES: &[&str] = &[
    "Submitted",
    "Validating",
    "Scheduled",
    "InProgress",
    "Completed",
    "PartiallyCompleted",
    "Failed",
    "Stopping",
    "Stopped",
    "Expired",
];

impl Progress {
    /// The work done between two usage snapshots of every engine (before and now).
    #[must_use]
    pub fn between(before: &[UsageSnapshot], now: &[UsageSnapshot], elapsed: Duration) -> Self {
        let mut p = Self {
            elapsed,
            estimated_cost_usd: Some(0.0),
            ..Self::default()
        };
        for n in now {
            let b = before.iter().find(|b| b.model == n.model);
            let d = |f: fn(&UsageSnapshot) -> u64| f(n).saturating_sub(b.map_or(0, f));
            let (requests, retries, failures) =
                (d(|s| s.requests), d(|s| s.retries), d(|s| s.failures));
            p.requests += requests;
            p.rows_answered += requests.saturating_sub(retries).saturating_sub(failures)
                + d(|s| s.cache_hits)
                + d(|s| s.deduplicated);
            p.tokens += d(|s| s.input_tokens) + d(|s| s.output_tokens);
            p.throttles += d(|s| s.throttles);
            p.batch_jobs += d(|s| s.batch_jobs);
            p.batch_records.0 += d(|s| s.batch_processed);
            p.batch_records.1 += d(|s| s.batch_records);
            if d(|s| s.batch_jobs) > 0 || n.batch_jobs_running > 0 {
                p.batch_status = n
                    .batch_status
                    .as_deref()
                    .and_then(|s| JOB_STATUSES.iter().find(|k| **k == s).copied())
                    .or(p.batch_status);
            }
            p.estimated_cost_usd = match (p.estimated_cost_usd, n.estimated_cost_usd) {
                (Some(sum), Some(cost)) => Some(
                    sum + (cost - b.and_then(|b| b.estimated_cost_usd).unwrap_or(0.0)).max(0.0),
                ),
                _ => None,
            };
        }
        p
    }

    /// The line, e.g. `models: 120/500 rows, 124 requests, 45,210 tokens, ~$0.0213, 3 throttles, 12.4s`.
    #[must_use]
    pub fn render(&self) -> String {
        let rows = match self.rows_total {
            Some(total) => format!("{}/{} rows", grouped(self.rows_answered), grouped(total)),
            None => format!("{} rows", grouped(self.rows_answered)),
        };
        let requests = match self.requests {
            1 => "1 request".to_string(),
            n => format!("{} requests", grouped(n)),
        };
        let mut parts = vec![rows, requests, format!("{} tokens", grouped(self.tokens))];
        if let Some(cost) = self.estimated_cost_usd {
            parts.push(format!("~${cost:.4}"));
        }
        parts.push(match self.throttles {
            1 => "1 throttle".to_string(),
            n => format!("{} throttles", grouped(n)),
        });
        if self.batch_jobs > 0 {
            parts.push(format!(
                "batch: {} {} {}, {}/{} records",
                grouped(self.batch_jobs),
                if self.batch_jobs == 1 { "job" } else { "jobs" },
                self.batch_status.unwrap_or("Submitted"),
                grouped(self.batch_records.0),
                grouped(self.batch_records.1)
            ));
        }
        parts.push(format!("{:.1}s", self.elapsed.as_secs_f64()));
        format!("models: {}", parts.join(", "))
    }
}

/// `1234567` → `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn usage_of(catalog: &Catalog) -> Vec<UsageSnapshot> {
    let mut all: Vec<UsageSnapshot> = Vec::new();
    for engine in catalog.engines() {
        for mut s in engine.usage() {
            // Engines are told apart so one engine's counters never offset another's.
            s.model = format!("{}/{}", engine.name(), s.model);
            all.push(s);
        }
    }
    all
}

/// The progress line of one running query; [`ProgressLine::finish`] clears it.
#[derive(Debug)]
pub struct ProgressLine {
    task: Option<JoinHandle<()>>,
}

impl ProgressLine {
    /// Starts drawing on stderr if `enabled` and stderr is a terminal; otherwise does nothing.
    pub fn start(catalog: &Arc<Catalog>, enabled: bool) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Self { task: None };
        }
        let catalog = Arc::clone(catalog);
        let task = tokio::spawn(async move {
            let before = usage_of(&catalog);
            let started = Instant::now();
            loop {
                tokio::time::sleep(TICK).await;
                let progress = Progress::between(&before, &usage_of(&catalog), started.elapsed());
                if started.elapsed() < SHOW_AFTER
                    || (progress.requests == 0 && progress.batch_jobs == 0)
                {
                    continue;
                }
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{}", progress.render());
                let _ = err.flush();
            }
        });
        Self { task: Some(task) }
    }

    /// Stops drawing and clears the line.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(
        model: &str,
        requests: u64,
        tokens: (u64, u64),
        cost: Option<f64>,
    ) -> UsageSnapshot {
        UsageSnapshot {
            model: model.to_string(),
            requests,
            retries: 0,
            throttles: 0,
            failures: 0,
            cache_hits: 0,
            deduplicated: 0,
            input_tokens: tokens.0,
            output_tokens: tokens.1,
            latency_ms: 0,
            estimated_cost_usd: cost,
            ..UsageSnapshot::default()
        }
    }

    #[test]
    fn renders_every_figure() {
        let p = Progress {
            rows_answered: 1200,
            rows_total: Some(50_000),
            requests: 1234,
            tokens: 1_045_210,
            estimated_cost_usd: Some(0.02134),
            throttles: 3,
            elapsed: Duration::from_millis(12_440),
            ..Progress::default()
        };
        assert_eq!(
            p.render(),
            "models: 1,200/50,000 rows, 1,234 requests, 1,045,210 tokens, ~$0.0213, 3 throttles, 12.4s"
        );
        let batch = Progress {
            batch_jobs: 1,
            batch_records: (300, 600),
            batch_status: Some("InProgress"),
            requests: 0,
            ..p
        };
        assert_eq!(
            batch.render(),
            "models: 1,200/50,000 rows, 0 requests, 1,045,210 tokens, ~$0.0213, 3 throttles, batch: 1 job InProgress, 300/600 records, 12.4s"
        );
    }

    #[test]
    fn renders_unknown_totals_and_costs_by_leaving_them_out() {
        let p = Progress {
            rows_answered: 7,
            rows_total: None,
            requests: 1,
            tokens: 0,
            estimated_cost_usd: None,
            throttles: 1,
            elapsed: Duration::from_millis(600),
            ..Progress::default()
        };
        assert_eq!(
            p.render(),
            "models: 7 rows, 1 request, 0 tokens, 1 throttle, 0.6s"
        );
    }

    #[test]
    fn counts_only_the_work_since_the_query_started() {
        let before = vec![snapshot("e/titan", 10, (100, 50), Some(0.5))];
        let mut titan = snapshot("e/titan", 16, (160, 80), Some(0.8));
        titan.retries = 1;
        titan.throttles = 1;
        titan.cache_hits = 2;
        titan.deduplicated = 3;
        let nova = snapshot("e/nova", 4, (40, 20), Some(0.1));
        let p = Progress::between(&before, &[nova, titan], Duration::from_secs(2));
        assert_eq!(
            p,
            Progress {
                // nova: 4 answered; titan: 6 requests − 1 retry + 2 cache hits + 3 duplicates.
                rows_answered: 4 + 5 + 2 + 3,
                rows_total: None,
                requests: 10,
                tokens: 60 + 90,
                estimated_cost_usd: Some(0.1 + (0.8 - 0.5)),
                throttles: 1,
                elapsed: Duration::from_secs(2),
                ..Progress::default()
            }
        );
        let unpriced = snapshot("e/custom", 1, (1, 1), None);
        assert_eq!(
            Progress::between(&[], &[unpriced], Duration::ZERO).estimated_cost_usd,
            None
        );
    }
}
