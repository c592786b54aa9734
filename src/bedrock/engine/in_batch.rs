//! A query's distinct, uncached requests through Bedrock batch inference: written as JSONL to
//! the engine's `batch_s3_uri`, split into jobs within the service's limits, each job submitted
//! (or re-attached to: a job is recorded in the cache under the hash of its records), polled
//! with backoff (progress in the usage counters), stopped if the query goes away, and its
//! output read back by record id into the rows' answers and the response cache.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use super::{CallOptions, DEFAULT_TOKEN_RESERVATION, Engine, ModelTarget};
use crate::bedrock::batch::job::{self, JobRecord, JobRequest, JobState, StopOnDrop};
use crate::bedrock::batch::record::{invocation_type, model_input, read_output_line};
use crate::bedrock::batch::storage::{self, S3Location};
use crate::bedrock::batch::{MAX_JOBS_IN_FLIGHT, record_id, shards};
use crate::bedrock::budget::Reservation;
use crate::bedrock::cache::{CacheKey, KeyFields, KeyWriter, cache_key};
use crate::bedrock::request::{CallInfo, TextRequest, TextResponse};
use crate::bedrock::retry::CallFailure;
use crate::bedrock::usage::ModelCounters;

/// One distinct request of the query: its slot, cache key and request.
pub(super) type Work<'a> = (usize, CacheKey, &'a TextRequest);

/// A slot's answer or failure.
pub(super) type SlotResult = (
    usize,
    std::result::Result<Arc<TextResponse>, Arc<CallFailure>>,
);

/// The first wait between two polls of a job, and the longest.
const FIRST_POLL: Duration = Duration::from_millis(100);
const LONGEST_POLL: Duration = Duration::from_secs(30);

/// The key of a job's record in the cache: the digest of its records.
struct JobKey<'a>(&'a str);

impl KeyFields for JobKey<'_> {
    fn write_key(&self, w: &mut KeyWriter) {
        w.str(self.0);
    }
}

/// The records of one job, ready to write.
struct JobInput {
    /// The slots of its records, in record order (record n is `record_id(n)`).
    slots: Vec<usize>,
    /// Estimated tokens (input + output reserve) of each record, for the budget.
    tokens: Vec<(u64, u64)>,
    jsonl: Vec<u8>,
    /// Hex SHA-256 of the model, job type and JSONL.
    digest: String,
}

impl Engine {
    /// Answers `work` through batch jobs, one result per slot.
    pub(super) async fn answer_in_batch(
        self: &Arc<Self>,
        target: &ModelTarget,
        work: &[Work<'_>],
        counters: &ModelCounters,
        options: &CallOptions,
    ) -> Vec<SlotResult> {
        let mut results: Vec<SlotResult> = Vec::with_capacity(work.len());
        let mut lines: Vec<(usize, CacheKey, u64, u64, String)> = Vec::with_capacity(work.len());
        for (slot, key, request) in work {
            match model_input(target.api, &target.model_id, request) {
                Ok(input) => {
                    let reserve = request
                        .params
                        .max_tokens
                        .map_or(DEFAULT_TOKEN_RESERVATION, u64::from);
                    lines.push((
                        *slot,
                        *key,
                        request.estimated_input_tokens(),
                        reserve,
                        input.to_string(),
                    ));
                }
                Err(failure) => results.push((*slot, Err(Arc::new(failure)))),
            }
        }
        let keys: HashMap<usize, CacheKey> = lines.iter().map(|l| (l.0, l.1)).collect();
        let sizes: Vec<usize> = lines.iter().map(|l| l.4.len() + 40).collect();
        let inputs: Vec<JobInput> = shards(&sizes)
            .into_iter()
            .map(|shard| job_input(target, &lines[shard.records]))
            .collect();
        let mut jobs = futures::stream::iter(inputs)
            .map(|input| async move {
                let answers = self.run_job(target, &input, counters, options).await;
                (input.slots, answers)
            })
            .buffer_unordered(MAX_JOBS_IN_FLIGHT);
        let mut answered = Vec::new();
        while let Some((slots, answers)) = jobs.next().await {
            for (slot, answer) in slots.into_iter().zip(answers) {
                match answer {
                    Ok(response) => {
                        let response = Arc::new(response);
                        if let Some(key) = keys.get(&slot) {
                            answered.push((*key, Arc::clone(&response)));
                        }
                        results.push((slot, Ok(response)));
                    }
                    Err(failure) => results.push((slot, Err(failure))),
                }
            }
        }
        self.text_cache.insert_all(answered);
        results
    }

    /// One job's records answered: the job submitted or re-attached to, waited for, read.
    async fn run_job(
        self: &Arc<Self>,
        target: &ModelTarget,
        input: &JobInput,
        counters: &ModelCounters,
        options: &CallOptions,
    ) -> Vec<std::result::Result<TextResponse, Arc<CallFailure>>> {
        let fail_all = |failure: CallFailure| {
            // Every record of the job failed: each is an input that failed for good.
            for _ in &input.slots {
                counters.failure();
            }
            let failure = Arc::new(self.explained(failure));
            vec![Err(failure); input.slots.len()]
        };
        let settings = &self.config.batch;
        let (Some(location), Some(role_arn)) = (&settings.s3_uri, &settings.role_arn) else {
            return fail_all(CallFailure::fatal(
                "BatchNotConfigured",
                format!(
                    "engine '{}' has no batch_role_arn or batch_s3_uri: create it with both to run models with execution = 'batch'",
                    self.name
                ),
            ));
        };
        let store = match storage::store(
            location,
            &self.region,
            settings.s3_endpoint_url.as_deref(),
            &self.s3_identity,
        ) {
            Ok(store) => store,
            Err(failure) => return fail_all(failure),
        };
        let folder = location.key(&format!("{}/", &input.digest[..16]));
        let place = Place {
            store: &store,
            location,
            folder: &folder,
            role_arn,
        };
        let (job_arn, _reservation) = match self.job_of(target, input, &place, options).await {
            Ok(job) => job,
            Err(failure) => return fail_all(failure),
        };
        counters.batch_job_started(input.slots.len() as u64);
        let finished = self.wait(&job_arn, counters).await;
        counters.batch_job_ended();
        let state = match finished {
            Ok(state) => state,
            Err(failure) => return fail_all(failure),
        };
        if !state.answered() {
            return fail_all(CallFailure::fatal(
                "BatchJobFailed",
                format!(
                    "batch job {job_arn} ended {}{}",
                    state.status.as_str(),
                    state
                        .message
                        .as_deref()
                        .map(|m| format!(": {}", m.trim_end_matches('.')))
                        .unwrap_or_default()
                ),
            ));
        }
        let output_key = format!("{folder}output/{}/records.jsonl.out", job::job_id(&job_arn));
        let text = match read_text(&store, &output_key).await {
            Ok(text) => text,
            Err(why) => {
                return fail_all(CallFailure::fatal(
                    "BatchOutputError",
                    format!(
                        "the output of batch job {job_arn} cannot be read from {}: {why}",
                        location.uri(&output_key)
                    ),
                ));
            }
        };
        let job_id: Arc<str> = Arc::from(job::job_id(&job_arn));
        Self::read_answers(target, input, &text, &job_id, counters)
    }

    /// The answers of a job's output, in record order; records without an output line fail.
    fn read_answers(
        target: &ModelTarget,
        input: &JobInput,
        text: &str,
        job_id: &Arc<str>,
        counters: &ModelCounters,
    ) -> Vec<std::result::Result<TextResponse, Arc<CallFailure>>> {
        let mut by_id = HashMap::with_capacity(input.slots.len());
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match read_output_line(target.api, &target.model_id, line) {
                Ok((id, answer)) => {
                    by_id.insert(id, answer);
                }
                Err(why) => tracing::warn!(job = %job_id, "skipped an output line: {why}"),
            }
        }
        (0..input.slots.len())
            .map(|n| match by_id.remove(&record_id(n)) {
                Some(Ok(mut response)) => {
                    counters.batch_answer(response.input_tokens, response.output_tokens);
                    response.call = CallInfo {
                        batch_job: Some(Arc::clone(job_id)),
                        ..CallInfo::default()
                    };
                    Ok(response)
                }
                Some(Err(failure)) => {
                    counters.batch_error();
                    counters.failure();
                    Err(Arc::new(failure))
                }
                None => {
                    counters.batch_error();
                    counters.failure();
                    Err(Arc::new(CallFailure::fatal(
                        "BatchRecordMissing",
                        format!(
                            "batch job {job_id} wrote no output for record {}",
                            record_id(n)
                        ),
                    )))
                }
            })
            .collect()
    }

    /// The job of `input`'s records: the one recorded for them if it is running or answered,
    /// else a new one (admitted by the query's budget first, at the batch price), recorded.
    async fn job_of(
        &self,
        target: &ModelTarget,
        input: &JobInput,
        place: &Place<'_>,
        options: &CallOptions,
    ) -> std::result::Result<(String, Option<Reservation>), CallFailure> {
        let scope = self.cache_scope().await;
        let record_key = cache_key(
            &scope,
            "batch-job",
            &target.model_id,
            &JobKey(&input.digest),
        );
        let generation = match self.attach(&record_key).await? {
            Attach::Running(arn) => return Ok((arn, None)),
            Attach::Submit(generation) => generation,
        };
        let price = self.usage.batch_price(&target.model_id);
        let (input_tokens, output_tokens) = input
            .tokens
            .iter()
            .fold((0, 0), |(i, o), (ri, ro)| (i + ri, o + ro));
        let reservation = options
            .budget
            .as_ref()
            .map(|budget| budget.admit(super::cost_usd(price, input_tokens, output_tokens)))
            .transpose()?;
        let arn = self.submit(target, input, place, generation).await?;
        self.jobs.insert(
            record_key,
            Arc::new(JobRecord {
                job_arn: arn.clone(),
                generation,
            }),
        );
        Ok((arn, reservation))
    }

    /// What to do for a job's records: wait for the job recorded under `key` if it is still
    /// running or answered, else submit (again, as the next generation).
    async fn attach(&self, key: &CacheKey) -> std::result::Result<Attach, CallFailure> {
        let Some(record) = self.jobs.get(key) else {
            return Ok(Attach::Submit(0));
        };
        match job::state(&self.control, &record.job_arn).await? {
            Some(state) if !state.finished() || state.answered() => {
                Ok(Attach::Running(record.job_arn.clone()))
            }
            _ => Ok(Attach::Submit(record.generation + 1)),
        }
    }

    /// Writes a job's input and submits it; its ARN.
    async fn submit(
        &self,
        target: &ModelTarget,
        input: &JobInput,
        place: &Place<'_>,
        generation: u32,
    ) -> std::result::Result<String, CallFailure> {
        let Place {
            store,
            location,
            folder,
            role_arn,
        } = place;
        let input_key = format!("{folder}records.jsonl");
        store
            .put(
                &object_store::path::Path::from(input_key.as_str()),
                PutPayload::from(input.jsonl.clone()),
            )
            .await
            .map_err(|e| {
                CallFailure::fatal(
                    "BatchStorageError",
                    format!(
                        "the batch input cannot be written to {}: {}",
                        location.uri(&input_key),
                        storage_error(&e)
                    ),
                )
            })?;
        let request = JobRequest {
            name: format!("datafusion-bedrock-{}-{generation}", &input.digest[..16]),
            client_request_token: format!("{}-{generation}", &input.digest[..48]),
            model_id: &target.model_id,
            role_arn,
            input_uri: location.uri(&input_key),
            output_uri: location.uri(&format!("{folder}output/")),
            timeout_hours: self.config.batch.timeout_hours,
            invocation_type: invocation_type(target.api),
        };
        job::submit(&self.control, &request).await
    }

    /// Polls a job until it finishes (waits growing from 100 ms to 30 s), its progress in the
    /// counters; stops the job if this future is dropped first.
    async fn wait(
        &self,
        job_arn: &str,
        counters: &ModelCounters,
    ) -> std::result::Result<JobState, CallFailure> {
        let mut guard = StopOnDrop::new(&self.control, job_arn);
        let mut delay = FIRST_POLL;
        let mut processed = 0;
        loop {
            let state = job::state(&self.control, job_arn).await?.ok_or_else(|| {
                CallFailure::fatal(
                    "BatchJobFailed",
                    format!("batch job {job_arn} is no longer known to Bedrock"),
                )
            })?;
            counters.batch_progress(
                state.processed.saturating_sub(processed),
                state.status.as_str(),
            );
            processed = processed.max(state.processed);
            if state.finished() {
                guard.disarm();
                return Ok(state);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(LONGEST_POLL);
        }
    }
}

/// Where a job's files go and who may read them.
struct Place<'a> {
    store: &'a Arc<dyn ObjectStore>,
    location: &'a S3Location,
    folder: &'a str,
    role_arn: &'a str,
}

/// What to do for a job's records.
enum Attach {
    /// Wait for this job.
    Running(String),
    /// Submit a job of this generation.
    Submit(u32),
}

/// The JSONL and digest of a job's records.
fn job_input(target: &ModelTarget, lines: &[(usize, CacheKey, u64, u64, String)]) -> JobInput {
    let mut jsonl = String::new();
    for (n, line) in lines.iter().enumerate() {
        let _ = writeln!(
            jsonl,
            "{{\"recordId\":\"{}\",\"modelInput\":{}}}",
            record_id(n),
            line.4
        );
    }
    let mut hasher = Sha256::new();
    hasher.update(target.model_id.as_bytes());
    hasher.update([0]);
    hasher.update(target.api.name().as_bytes());
    hasher.update([0]);
    hasher.update(jsonl.as_bytes());
    let digest = hasher
        .finalize()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
    JobInput {
        slots: lines.iter().map(|l| l.0).collect(),
        tokens: lines.iter().map(|l| (l.2, l.3)).collect(),
        jsonl: jsonl.into_bytes(),
        digest,
    }
}

/// An object's text.
async fn read_text(store: &Arc<dyn ObjectStore>, key: &str) -> std::result::Result<String, String> {
    let bytes = store
        .get(&object_store::path::Path::from(key))
        .await
        .map_err(|e| storage_error(&e))?
        .bytes()
        .await
        .map_err(|e| storage_error(&e))?;
    String::from_utf8(bytes.to_vec()).map_err(|_| "it is not UTF-8 text".to_string())
}

/// An object-store error in one line, without its `Debug` chain.
fn storage_error(error: &object_store::Error) -> String {
    crate::bedrock::retry::one_line(&crate::bedrock::retry::innermost_message(error), 300)
}
