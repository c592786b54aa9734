//! Counters that tests read: requests by model, operation and status; tokens; faults; peak
//! concurrency; a bounded log of recent request bodies; and the batch inference jobs.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

/// Requests counted under one (model, operation, status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestCount {
    /// The base model id (`""` for requests not tied to a model).
    pub model: String,
    /// The operation: `Converse`, `ConverseStream`, `InvokeModel`,
    /// `InvokeModelWithResponseStream`, `CountTokens`, `ListFoundationModels`,
    /// `GetFoundationModel`.
    pub operation: String,
    /// The HTTP status sent (0 for a dropped connection).
    pub status: u16,
    /// How many.
    pub count: u64,
}

/// A runtime request as it arrived.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedRequest {
    /// The operation name.
    pub operation: String,
    /// The model id as the client sent it (decoded).
    pub model_id: String,
    /// The JSON body (`null` if it was not JSON).
    pub body: serde_json::Value,
}

/// A batch inference job (`CreateModelInvocationJob`) as the emulator ran it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchJobRecord {
    /// `arn:aws:bedrock:us-east-1:000000000000:model-invocation-job/<job id>`.
    pub job_arn: String,
    /// The `jobName` of the request.
    pub job_name: String,
    /// The base model id the job runs (an inference profile or ARN resolved to it).
    pub model_id: String,
    /// `InvokeModel` or `Converse`.
    pub invocation_type: String,
    /// The status now: `Submitted`, `Validating`, `Scheduled`, `InProgress`, `Stopping`,
    /// `Completed`, `PartiallyCompleted`, `Failed` or `Stopped`.
    pub status: String,
    /// Every status the job has had, in order (`status` is the last).
    pub statuses: Vec<String>,
    /// The failure or stop message, once the job has one.
    pub message: Option<String>,
    /// Records in the input (0 until it has been validated).
    pub records: u64,
    /// Records answered so far (successes and errors).
    pub processed: u64,
    /// Records answered with an error.
    pub errors: u64,
    /// The input objects read, as `s3://bucket/key`, in the order processed (empty until
    /// validated).
    pub input_files: Vec<String>,
    /// The `clientRequestToken` of the request (the SDK generates one when the caller sets
    /// none).
    pub client_request_token: Option<String>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatsSnapshot {
    /// Requests by (model, operation, status), sorted.
    pub requests: Vec<RequestCount>,
    /// Input tokens of successful runtime responses: the uncached input the service bills
    /// (`inputTokens` of a Converse usage), without the tokens read from or written to the
    /// prompt cache.
    pub input_tokens: u64,
    /// Output tokens of successful runtime responses.
    pub output_tokens: u64,
    /// Input tokens of successful Converse responses read from the prompt cache
    /// (`cacheReadInputTokens`).
    pub cache_read_input_tokens: u64,
    /// Input tokens of successful Converse responses written to the prompt cache
    /// (`cacheWriteInputTokens`).
    pub cache_write_input_tokens: u64,
    /// Injected faults by name (`throttle`, `internal`, `unavailable`, `timeout`, `malformed`,
    /// `drop_connection`).
    pub faults: BTreeMap<String, u64>,
    /// Requests refused by the requests-per-minute quota.
    pub quota_throttles_requests: u64,
    /// Requests refused by the tokens-per-minute quota.
    pub quota_throttles_tokens: u64,
    /// Runtime requests being served now.
    pub in_flight: usize,
    /// The most runtime requests ever served at once.
    pub peak_in_flight: usize,
    /// The most recent runtime requests, oldest first.
    pub recent: Vec<LoggedRequest>,
    /// The batch inference jobs created, in submission order. A `CreateModelInvocationJob`
    /// repeating a `clientRequestToken` adds none. Their records count no `Converse` or
    /// `InvokeModel` requests, but their tokens are in `input_tokens` and `output_tokens`.
    pub batch_jobs: Vec<BatchJobRecord>,
}

impl StatsSnapshot {
    /// Requests of every model, operation and status.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.requests.iter().map(|r| r.count).sum()
    }

    /// Requests matching the given filters (`None` matches anything).
    #[must_use]
    pub fn count(&self, model: Option<&str>, operation: Option<&str>, status: Option<u16>) -> u64 {
        self.requests
            .iter()
            .filter(|r| model.is_none_or(|m| r.model == m))
            .filter(|r| operation.is_none_or(|o| r.operation == o))
            .filter(|r| status.is_none_or(|s| r.status == s))
            .map(|r| r.count)
            .sum()
    }

    /// Injected faults of one kind.
    #[must_use]
    pub fn fault_count(&self, name: &str) -> u64 {
        self.faults.get(name).copied().unwrap_or(0)
    }

    /// How many batch inference jobs were created (re-attaching with a `clientRequestToken`
    /// creates none).
    #[must_use]
    pub fn batch_jobs_submitted(&self) -> usize {
        self.batch_jobs.len()
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    cache_write_tokens: u64,
    faults: BTreeMap<String, u64>,
    quota_requests: u64,
    quota_tokens: u64,
    recent: VecDeque<LoggedRequest>,
    batch_jobs: Vec<BatchJobRecord>,
}

/// The emulator's live counters.
#[derive(Debug)]
pub struct EmulatorStats {
    inner: Mutex<Inner>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    log_capacity: usize,
}

impl EmulatorStats {
    pub(crate) fn new(log_capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            log_capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let inner = self.lock();
        StatsSnapshot {
            requests: inner
                .requests
                .iter()
                .map(|((model, operation, status), count)| RequestCount {
                    model: model.clone(),
                    operation: operation.clone(),
                    status: *status,
                    count: *count,
                })
                .collect(),
            input_tokens: inner.input_tokens,
            output_tokens: inner.output_tokens,
            cache_read_input_tokens: inner.cache_read_tokens,
            cache_write_input_tokens: inner.cache_write_tokens,
            faults: inner.faults.clone(),
            quota_throttles_requests: inner.quota_requests,
            quota_throttles_tokens: inner.quota_tokens,
            in_flight: self.in_flight.load(Ordering::SeqCst),
            peak_in_flight: self.peak.load(Ordering::SeqCst),
            recent: inner.recent.iter().cloned().collect(),
            batch_jobs: inner.batch_jobs.clone(),
        }
    }

    /// Zeroes every counter and empties the request log (the in-flight gauge is kept).
    pub fn reset(&self) {
        *self.lock() = Inner::default();
        self.peak
            .store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    pub(crate) fn record(&self, model: &str, operation: &str, status: u16) {
        *self
            .lock()
            .requests
            .entry((model.to_string(), operation.to_string(), status))
            .or_default() += 1;
    }

    pub(crate) fn tokens(&self, input: u32, output: u32) {
        let mut inner = self.lock();
        inner.input_tokens += u64::from(input);
        inner.output_tokens += u64::from(output);
    }

    /// Tokens a response read from and wrote to the prompt cache.
    pub(crate) fn cache_tokens(&self, read: u32, write: u32) {
        let mut inner = self.lock();
        inner.cache_read_tokens += u64::from(read);
        inner.cache_write_tokens += u64::from(write);
    }

    pub(crate) fn fault(&self, name: &str) {
        *self.lock().faults.entry(name.to_string()).or_default() += 1;
    }

    pub(crate) fn quota_throttle(&self, tokens: bool) {
        let mut inner = self.lock();
        if tokens {
            inner.quota_tokens += 1;
        } else {
            inner.quota_requests += 1;
        }
    }

    pub(crate) fn log(&self, request: LoggedRequest) {
        if self.log_capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.recent.len() == self.log_capacity {
            inner.recent.pop_front();
        }
        inner.recent.push_back(request);
    }

    /// A batch inference job was created.
    pub(crate) fn batch_job(&self, record: BatchJobRecord) {
        self.lock().batch_jobs.push(record);
    }

    /// Updates the record of a batch inference job (nothing when the counters were reset
    /// since it was created).
    pub(crate) fn update_batch_job(&self, job_arn: &str, update: impl FnOnce(&mut BatchJobRecord)) {
        if let Some(record) = self
            .lock()
            .batch_jobs
            .iter_mut()
            .find(|r| r.job_arn == job_arn)
        {
            update(record);
        }
    }

    /// A runtime request starts being served.
    pub(crate) fn enter(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }

    /// A runtime request has been served (its last byte sent, or it failed).
    pub(crate) fn exit(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_peaks_and_resets() {
        let s = EmulatorStats::new(2);
        s.record("m", "Converse", 200);
        s.record("m", "Converse", 200);
        s.record("m", "Converse", 429);
        s.fault("throttle");
        for i in 0..3 {
            s.log(LoggedRequest {
                operation: "Converse".into(),
                model_id: format!("m{i}"),
                body: serde_json::Value::Null,
            });
        }
        s.enter();
        s.enter();
        s.exit();
        s.exit();
        s.tokens(5, 7);
        s.cache_tokens(1000, 20);
        s.cache_tokens(0, 30);
        let snap = s.snapshot();
        assert_eq!(
            (
                snap.input_tokens,
                snap.output_tokens,
                snap.cache_read_input_tokens,
                snap.cache_write_input_tokens
            ),
            (5, 7, 1000, 50)
        );
        let json = serde_json::to_value(&snap).expect("serializable");
        assert_eq!(
            (
                &json["cache_read_input_tokens"],
                &json["cache_write_input_tokens"]
            ),
            (&serde_json::json!(1000), &serde_json::json!(50))
        );
        assert_eq!(snap.count(Some("m"), None, Some(200)), 2);
        assert_eq!(snap.total(), 3);
        assert_eq!(snap.fault_count("throttle"), 1);
        assert_eq!((snap.in_flight, snap.peak_in_flight), (0, 2));
        assert_eq!(
            snap.recent
                .iter()
                .map(|r| r.model_id.as_str())
                .collect::<Vec<_>>(),
            vec!["m1", "m2"]
        );
        s.reset();
        assert_eq!(s.snapshot(), StatsSnapshot::default());
    }

    #[test]
    fn batch_jobs_are_recorded_updated_and_reset() {
        let s = EmulatorStats::new(0);
        let record = BatchJobRecord {
            job_arn: "arn:j1".into(),
            status: "Submitted".into(),
            statuses: vec!["Submitted".into()],
            ..BatchJobRecord::default()
        };
        s.batch_job(record.clone());
        s.update_batch_job("arn:j1", |r| r.records = 100);
        s.update_batch_job("arn:other", |r| r.records = 7);
        let snap = s.snapshot();
        assert_eq!(snap.batch_jobs_submitted(), 1);
        assert_eq!(
            snap.batch_jobs,
            vec![BatchJobRecord {
                records: 100,
                ..record
            }]
        );
        s.reset();
        assert_eq!(s.snapshot().batch_jobs_submitted(), 0);
    }
}
