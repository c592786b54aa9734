//! Batch inference: model invocation jobs (`CreateModelInvocationJob`,
//! `GetModelInvocationJob`, `ListModelInvocationJobs`, `StopModelInvocationJob`).
//!
//! A job reads JSONL records from the S3 root (`EmulatorConfig::s3_root`), walks the service's
//! statuses one `batch_step` each, answers every record as the runtime `Converse` or
//! `InvokeModel` route would ([`super::server::answer_request`]) and writes the answers and a
//! manifest back under `<output s3Uri>/<job id>/`. The request checks are in [`request`], the
//! input checks in [`input`], the job's life in [`run`], the files it writes in [`output`].

mod input;
mod output;
mod request;
mod run;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::model_id;
use super::stats::{BatchJobRecord, EmulatorStats};
use super::wire::{ApiError, ErrorCode};

/// The region and account printed in job ARNs.
const REGION: &str = "us-east-1";
const ACCOUNT: &str = "000000000000";
/// Jobs of one model that may be in flight (not yet ended) at once.
const IN_FLIGHT_PER_MODEL: usize = 20;
/// The `jobIdentifier` pattern of the service.
const JOB_IDENTIFIER_PATTERN: &str = "((arn:aws(|-cn|-us-gov):bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-invocation-job/)?[a-z0-9]{12})";

/// How the emulator runs jobs (from `EmulatorConfig`).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The directory served as S3: `s3://bucket/key` is `<root>/bucket/key`.
    pub root: Option<PathBuf>,
    /// How long each status lasts.
    pub step: Duration,
    /// Records answered a second while `InProgress` (0: as fast as possible), shared with the
    /// running jobs so a change applies from their next record.
    pace: Arc<AtomicU32>,
}

impl Settings {
    pub(crate) fn new(
        root: Option<PathBuf>,
        step: Duration,
        records_per_second: Option<u32>,
    ) -> Self {
        let settings = Self {
            root,
            step,
            pace: Arc::new(AtomicU32::new(0)),
        };
        settings.set_records_per_second(records_per_second);
        settings
    }

    /// Records answered a second, `None` for as fast as possible.
    fn records_per_second(&self) -> Option<u32> {
        Some(self.pace.load(Ordering::Relaxed)).filter(|r| *r > 0)
    }

    /// Changes the pace (`Some(0)` counts as one record a second).
    pub(crate) fn set_records_per_second(&self, records_per_second: Option<u32>) {
        self.pace.store(
            records_per_second.map_or(0, |r| r.max(1)),
            Ordering::Relaxed,
        );
    }
}

/// A job's status, as the service spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Submitted,
    Validating,
    Scheduled,
    InProgress,
    Completed,
    PartiallyCompleted,
    Failed,
    Stopping,
    Stopped,
    Expired,
}

impl Status {
    const ALL: [Status; 10] = [
        Status::Submitted,
        Status::Validating,
        Status::Scheduled,
        Status::InProgress,
        Status::Completed,
        Status::PartiallyCompleted,
        Status::Failed,
        Status::Stopping,
        Status::Stopped,
        Status::Expired,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Status::Submitted => "Submitted",
            Status::Validating => "Validating",
            Status::Scheduled => "Scheduled",
            Status::InProgress => "InProgress",
            Status::Completed => "Completed",
            Status::PartiallyCompleted => "PartiallyCompleted",
            Status::Failed => "Failed",
            Status::Stopping => "Stopping",
            Status::Stopped => "Stopped",
            Status::Expired => "Expired",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Whether the job has ended.
    fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Completed
                | Status::PartiallyCompleted
                | Status::Failed
                | Status::Stopped
                | Status::Expired
        )
    }
}

/// What the records' `modelInput` is: a native body or a Converse request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Invocation {
    InvokeModel,
    Converse,
}

impl Invocation {
    fn as_str(self) -> &'static str {
        match self {
            Invocation::InvokeModel => "InvokeModel",
            Invocation::Converse => "Converse",
        }
    }
}

/// Why a job's task stops walking its statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    /// `StopModelInvocationJob`: the job is `Stopping`.
    Stop,
    /// The emulator was reset or shut down: the job is forgotten.
    Cancel,
}

/// What changes while a job runs.
#[derive(Debug)]
struct Progress {
    status: Status,
    message: Option<String>,
    last_modified: SystemTime,
    ended: Option<SystemTime>,
    /// Known once the input is validated.
    total: Option<u64>,
    processed: u64,
    errors: u64,
    cancelled: bool,
}

/// One model invocation job.
#[derive(Debug)]
struct Job {
    arn: String,
    id: String,
    request: request::CreateRequest,
    submitted: SystemTime,
    progress: Mutex<Progress>,
    /// Wakes the job's task early: a stop or a cancellation.
    wake: Notify,
}

impl Job {
    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn status(&self) -> Status {
        self.progress().status
    }

    /// Whether the task should stop walking: cancelled, or `Stopping`.
    fn interrupted(&self) -> Option<Interrupt> {
        let progress = self.progress();
        if progress.cancelled {
            Some(Interrupt::Cancel)
        } else if progress.status == Status::Stopping {
            Some(Interrupt::Stop)
        } else {
            None
        }
    }

    /// Moves to `to` (with `message`), unless the job was cancelled or is being stopped (only
    /// `Stopped` follows `Stopping`).
    fn advance(
        &self,
        stats: &EmulatorStats,
        to: Status,
        message: Option<String>,
    ) -> Result<(), Interrupt> {
        let mut progress = self.progress();
        if progress.cancelled {
            return Err(Interrupt::Cancel);
        }
        if progress.status == Status::Stopping && to != Status::Stopped {
            return Err(Interrupt::Stop);
        }
        progress.status = to;
        progress.last_modified = SystemTime::now();
        if to.is_terminal() {
            progress.ended = Some(progress.last_modified);
        }
        if message.is_some() {
            progress.message.clone_from(&message);
        }
        stats.update_batch_job(&self.arn, |r| {
            r.status = to.as_str().to_string();
            r.statuses.push(r.status.clone());
            if message.is_some() {
                r.message = message;
            }
        });
        Ok(())
    }

    /// The validated input's size and files.
    fn validated(&self, stats: &EmulatorStats, total: u64, files: Vec<String>) {
        self.progress().total = Some(total);
        stats.update_batch_job(&self.arn, |r| {
            r.records = total;
            r.input_files = files;
        });
    }

    /// Records answered so far.
    fn processed(&self, stats: &EmulatorStats, processed: u64, errors: u64) {
        let mut progress = self.progress();
        progress.processed = processed;
        progress.errors = errors;
        stats.update_batch_job(&self.arn, |r| {
            r.processed = processed;
            r.errors = errors;
        });
    }

    /// `StopModelInvocationJob`: `Stopping` now (already `Stopping` is fine), or the status
    /// that cannot be stopped.
    fn request_stop(&self, stats: &EmulatorStats) -> Result<(), Status> {
        let mut progress = self.progress();
        if progress.status.is_terminal() {
            return Err(progress.status);
        }
        if progress.status != Status::Stopping {
            progress.status = Status::Stopping;
            progress.last_modified = SystemTime::now();
            stats.update_batch_job(&self.arn, |r| {
                r.status = Status::Stopping.as_str().to_string();
                r.statuses.push(r.status.clone());
            });
        }
        drop(progress);
        self.wake.notify_one();
        Ok(())
    }

    /// Forgets the job: its task ends without writing anything more.
    fn cancel(&self) {
        self.progress().cancelled = true;
        self.wake.notify_one();
    }

    /// The stats record of the new job.
    fn record(&self) -> BatchJobRecord {
        let status = self.status().as_str().to_string();
        BatchJobRecord {
            job_arn: self.arn.clone(),
            job_name: self.request.job_name.clone(),
            model_id: self.request.model.id.to_string(),
            invocation_type: self.request.invocation.as_str().to_string(),
            statuses: vec![status.clone()],
            status,
            client_request_token: self.request.client_request_token.clone(),
            ..BatchJobRecord::default()
        }
    }

    /// The job as `GetModelInvocationJob` (and, per job, `ListModelInvocationJobs`) describe
    /// it.
    fn describe(&self) -> Value {
        let r = &self.request;
        let progress = self.progress();
        let expires = self.submitted + Duration::from_secs(u64::from(r.timeout_hours) * 3600);
        let mut job = json!({
            "jobArn": self.arn,
            "jobName": r.job_name,
            "modelId": r.model_id,
            "roleArn": r.role_arn,
            "status": progress.status.as_str(),
            "submitTime": timestamp(self.submitted),
            "lastModifiedTime": timestamp(progress.last_modified),
            "inputDataConfig": r.input_config,
            "outputDataConfig": r.output_config,
            "timeoutDurationInHours": r.timeout_hours,
            "jobExpirationTime": timestamp(expires),
            "modelInvocationType": r.invocation.as_str(),
        });
        if let Some(token) = &r.client_request_token {
            job["clientRequestToken"] = json!(token);
        }
        if let Some(message) = &progress.message {
            job["message"] = json!(message);
        }
        if let Some(ended) = progress.ended {
            job["endTime"] = json!(timestamp(ended));
        }
        if let Some(total) = progress.total {
            job["totalRecordCount"] = json!(total);
            job["processedRecordCount"] = json!(progress.processed);
            job["successRecordCount"] = json!(progress.processed - progress.errors);
            job["errorRecordCount"] = json!(progress.errors);
        }
        job
    }
}

/// A time as the service prints it: RFC 3339 in UTC (`2024-05-01T12:00:00.123Z`).
fn timestamp(time: SystemTime) -> String {
    DateTime::from(time)
        .fmt(Format::DateTime)
        .unwrap_or_default()
}

/// The emulator's jobs, in submission order.
#[derive(Debug)]
pub(crate) struct Jobs {
    settings: Settings,
    stats: Arc<EmulatorStats>,
    all: Mutex<Vec<Arc<Job>>>,
}

impl Jobs {
    pub(crate) fn new(settings: Settings, stats: Arc<EmulatorStats>) -> Self {
        Self {
            settings,
            stats,
            all: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Job>>> {
        self.all.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `CreateModelInvocationJob`: the base model id to count the request under, and
    /// `{"jobArn"}` or the error. A `clientRequestToken` seen before answers that job's ARN and
    /// creates nothing. Must be called within a tokio runtime (the job runs in a task).
    pub(crate) fn create(&self, body: &[u8]) -> (String, Result<Value, ApiError>) {
        let Ok(body @ Value::Object(_)) = serde_json::from_slice::<Value>(body) else {
            return (
                String::new(),
                Err(ApiError::validation(
                    "The request body is not a JSON object.",
                )),
            );
        };
        let mut jobs = self.lock();
        let token = body.get("clientRequestToken").and_then(Value::as_str);
        if let Some(job) = token.and_then(|token| {
            jobs.iter()
                .find(|j| j.request.client_request_token.as_deref() == Some(token))
        }) {
            return (
                job.request.model.id.to_string(),
                Ok(json!({ "jobArn": job.arn })),
            );
        }
        let request = match request::parse(&body, self.settings.root.is_some()) {
            Ok(request) => request,
            Err(e) => return (request::model_for_stats(&body), Err(e)),
        };
        let model = request.model.id.to_string();
        let in_flight = jobs
            .iter()
            .filter(|j| j.request.model.id == model && !j.status().is_terminal())
            .count();
        if in_flight >= IN_FLIGHT_PER_MODEL {
            return (
                model.clone(),
                Err(ApiError::new(
                    ErrorCode::ServiceQuotaExceeded,
                    format!(
                        "You have reached the quota of {IN_FLIGHT_PER_MODEL} batch inference jobs in progress for the model {model}. Wait for a job to end, or stop one, and try again."
                    ),
                )),
            );
        }
        let id = loop {
            let id = new_job_id();
            if jobs.iter().all(|j| j.id != id) {
                break id;
            }
        };
        let now = SystemTime::now();
        let job = Arc::new(Job {
            arn: format!("arn:aws:bedrock:{REGION}:{ACCOUNT}:model-invocation-job/{id}"),
            id,
            request,
            submitted: now,
            progress: Mutex::new(Progress {
                status: Status::Submitted,
                message: None,
                last_modified: now,
                ended: None,
                total: None,
                processed: 0,
                errors: 0,
                cancelled: false,
            }),
            wake: Notify::new(),
        });
        jobs.push(Arc::clone(&job));
        drop(jobs);
        self.stats.batch_job(job.record());
        let arn = job.arn.clone();
        tokio::spawn(run::run(
            job,
            Arc::clone(&self.stats),
            self.settings.clone(),
        ));
        (model, Ok(json!({ "jobArn": arn })))
    }

    /// The job a `jobIdentifier` path segment (percent-encoded id or ARN) names.
    fn find(&self, raw: &str) -> Result<Arc<Job>, ApiError> {
        let identifier = model_id::percent_decode(raw).unwrap_or_else(|| raw.to_string());
        if !is_job_identifier(&identifier) {
            return Err(ApiError::constraint(
                &identifier,
                "jobIdentifier",
                &format!(
                    "Member must satisfy regular expression pattern: {JOB_IDENTIFIER_PATTERN}"
                ),
            ));
        }
        self.lock()
            .iter()
            .find(|j| j.arn == identifier || j.id == identifier)
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::ResourceNotFound,
                    format!("The model invocation job {identifier} was not found."),
                )
            })
    }

    /// `GetModelInvocationJob`: the job's model id (for the stats) and its description.
    pub(crate) fn get(&self, raw: &str) -> (String, Result<Value, ApiError>) {
        match self.find(raw) {
            Ok(job) => (job.request.model.id.to_string(), Ok(job.describe())),
            Err(e) => (String::new(), Err(e)),
        }
    }

    /// `StopModelInvocationJob`: `{}`, the job `Stopping`; a job that has ended cannot be
    /// stopped.
    pub(crate) fn stop(&self, raw: &str) -> (String, Result<Value, ApiError>) {
        let job = match self.find(raw) {
            Ok(job) => job,
            Err(e) => return (String::new(), Err(e)),
        };
        let model = job.request.model.id.to_string();
        match job.request_stop(&self.stats) {
            Ok(()) => (model, Ok(json!({}))),
            Err(status) => (
                model,
                Err(ApiError::validation(format!(
                    "The model invocation job {} cannot be stopped: its status is {}. Only a job that is Submitted, Validating, Scheduled or InProgress can be stopped.",
                    job.arn,
                    status.as_str()
                ))),
            ),
        }
    }

    /// `ListModelInvocationJobs` with its query: `statusEquals`, `nameContains`,
    /// `submitTimeAfter`, `submitTimeBefore`, `sortBy` (`CreationTime`), `sortOrder`
    /// (`Descending`, newest first, by default), `maxResults` (1–1000) and `nextToken`.
    pub(crate) fn list(&self, query: &str) -> Result<Value, ApiError> {
        let filter = request::ListQuery::parse(query)?;
        let mut jobs: Vec<Arc<Job>> = self
            .lock()
            .iter()
            .filter(|j| filter.matches(&j.request.job_name, j.status().as_str(), j.submitted))
            .cloned()
            .collect();
        if filter.descending {
            jobs.reverse();
        }
        let start = filter.start.min(jobs.len());
        let end = start.saturating_add(filter.max_results).min(jobs.len());
        let summaries: Vec<Value> = jobs[start..end].iter().map(|j| j.describe()).collect();
        let mut out = json!({ "invocationJobSummaries": summaries });
        if end < jobs.len() {
            out["nextToken"] = json!(end.to_string());
        }
        Ok(out)
    }

    /// Changes how many records a second jobs answer, from their next record on.
    pub(crate) fn set_records_per_second(&self, records_per_second: Option<u32>) {
        self.settings.set_records_per_second(records_per_second);
    }

    /// Forgets every job (`POST /_emulator/reset`, shutdown): their tasks end without writing
    /// anything more.
    pub(crate) fn clear(&self) {
        for job in self.lock().drain(..) {
            job.cancel();
        }
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Twelve random lowercase letters and digits.
fn new_job_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..12)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect()
}

/// Whether `identifier` matches [`JOB_IDENTIFIER_PATTERN`].
fn is_job_identifier(identifier: &str) -> bool {
    let id = match identifier.strip_prefix("arn:") {
        Some(rest) => {
            let Some((prefix, id)) = rest.rsplit_once(":model-invocation-job/") else {
                return false;
            };
            let parts: Vec<&str> = prefix.split(':').collect();
            let [partition, service, region, account] = parts.as_slice() else {
                return false;
            };
            let region_ok = (1..=20).contains(&region.len())
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !matches!(*partition, "aws" | "aws-cn" | "aws-us-gov")
                || *service != "bedrock"
                || !region_ok
                || account.len() != 12
                || !account.bytes().all(|b| b.is_ascii_digit())
            {
                return false;
            }
            id
        }
        None => identifier,
    };
    id.len() == 12
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}
