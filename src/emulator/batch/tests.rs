//! Batch inference driven through the real `aws-sdk-bedrock` client: the wire format, the
//! statuses, the validation messages and the output files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_bedrock::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrock::operation::create_model_invocation_job::CreateModelInvocationJobError;
use aws_sdk_bedrock::operation::create_model_invocation_job::builders::CreateModelInvocationJobFluentBuilder;
use aws_sdk_bedrock::operation::get_model_invocation_job::{
    GetModelInvocationJobError, GetModelInvocationJobOutput,
};
use aws_sdk_bedrock::operation::list_model_invocation_jobs::ListModelInvocationJobsOutput;
use aws_sdk_bedrock::operation::list_model_invocation_jobs::builders::ListModelInvocationJobsFluentBuilder;
use aws_sdk_bedrock::operation::stop_model_invocation_job::{
    StopModelInvocationJobError, StopModelInvocationJobOutput,
};
use aws_sdk_bedrock::types::{
    ModelInvocationJobInputDataConfig, ModelInvocationJobOutputDataConfig,
    ModelInvocationJobS3InputDataConfig, ModelInvocationJobS3OutputDataConfig,
    ModelInvocationJobStatus, ModelInvocationType, SortOrder,
};
use serde_json::{Value, json};

use crate::emulator::{BatchJobRecord, Emulator, EmulatorConfig, count_text_tokens};

const ROLE: &str = "arn:aws:iam::123456789012:role/batch";
const TITAN: &str = "amazon.titan-text-premier-v1:0";
const NOVA: &str = "amazon.nova-micro-v1:0";
const BUCKET: &str = "bedrock-batch";
/// The message of a stopped job.
const STOPPED: &str = "The job was stopped at the user's request.";

/// An emulator with an S3 root, and a control-plane client for it.
struct Setup {
    emulator: Emulator,
    root: tempfile::TempDir,
    client: aws_sdk_bedrock::Client,
}

impl Setup {
    async fn start(step_ms: u64, records_per_second: Option<u32>) -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        let emulator = Emulator::start(EmulatorConfig {
            s3_root: Some(root.path().to_path_buf()),
            batch_step: Duration::from_millis(step_ms),
            batch_records_per_second: records_per_second,
            ..EmulatorConfig::default()
        })
        .await
        .expect("emulator");
        let client = control(emulator.url());
        Self {
            emulator,
            root,
            client,
        }
    }

    /// Writes `s3://bedrock-batch/<key>` straight into the root.
    fn put(&self, key: &str, text: &str) {
        let path = self.root.path().join(BUCKET).join(key);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("dirs");
        std::fs::write(path, text).expect("input written");
    }

    /// The output folder of a job.
    fn output(&self, arn: &str) -> PathBuf {
        self.root.path().join(BUCKET).join("out").join(job_id(arn))
    }

    /// A job of `model` over `input`, writing to `s3://bedrock-batch/out/`.
    fn job(&self, name: &str, model: &str, input: &str) -> CreateModelInvocationJobFluentBuilder {
        job_request(&self.client, name, model, input)
    }

    /// `GetModelInvocationJob` of the job with this ARN or id.
    async fn try_get(
        &self,
        identifier: &str,
    ) -> Result<GetModelInvocationJobOutput, SdkError<GetModelInvocationJobError>> {
        self.client
            .get_model_invocation_job()
            .job_identifier(identifier)
            .send()
            .await
    }

    async fn get(&self, arn: &str) -> GetModelInvocationJobOutput {
        self.try_get(arn).await.expect("GetModelInvocationJob")
    }

    /// `StopModelInvocationJob` of the job with this ARN or id.
    async fn stop(
        &self,
        identifier: &str,
    ) -> Result<StopModelInvocationJobOutput, SdkError<StopModelInvocationJobError>> {
        self.client
            .stop_model_invocation_job()
            .job_identifier(identifier)
            .send()
            .await
    }

    /// `ListModelInvocationJobs` with the filters `query` sets.
    async fn list(
        &self,
        query: impl FnOnce(ListModelInvocationJobsFluentBuilder) -> ListModelInvocationJobsFluentBuilder,
    ) -> ListModelInvocationJobsOutput {
        query(self.client.list_model_invocation_jobs())
            .send()
            .await
            .expect("listed")
    }

    /// Polls until the job has ended; returns its description and the statuses seen.
    async fn wait(&self, arn: &str) -> (GetModelInvocationJobOutput, Vec<String>) {
        let mut seen: Vec<String> = Vec::new();
        for _ in 0..4000 {
            let job = self.get(arn).await;
            let status = job.status().expect("a status").as_str().to_string();
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            if matches!(
                status.as_str(),
                "Completed" | "PartiallyCompleted" | "Failed" | "Stopped"
            ) {
                return (job, seen);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the job {arn} did not end; statuses seen: {seen:?}");
    }

    fn record(&self, arn: &str) -> BatchJobRecord {
        self.emulator
            .stats()
            .snapshot()
            .batch_jobs
            .into_iter()
            .find(|r| r.job_arn == arn)
            .expect("the job's record")
    }

    /// How the ended `job` ended: what it says, its output folder and its walk in the stats.
    fn ending(&self, job: &GetModelInvocationJobOutput) -> Ending {
        let arn = job.job_arn();
        Ending {
            status: job.status().expect("a status").clone(),
            message: job.message().map(str::to_string),
            counts: [
                job.total_record_count(),
                job.processed_record_count(),
                job.success_record_count(),
                job.error_record_count(),
            ],
            output: self.output(arn).exists(),
            statuses: self.record(arn).statuses,
        }
    }
}

/// How a job ended: its status, message and record counts (total, processed, succeeded, in
/// error) as `GetModelInvocationJob` describes them, whether its output folder exists, and the
/// statuses its stats record walked.
#[derive(Debug, PartialEq)]
struct Ending {
    status: ModelInvocationJobStatus,
    message: Option<String>,
    counts: [Option<i64>; 4],
    output: bool,
    statuses: Vec<String>,
}

impl Ending {
    /// The statuses of a job up to answering its records.
    const RUN: [&'static str; 4] = ["Submitted", "Validating", "Scheduled", "InProgress"];

    /// Every one of `records` answered, none in error.
    fn completed(records: i64) -> Self {
        Self::ran(
            ModelInvocationJobStatus::Completed,
            None,
            [records, records, records, 0],
            &["Completed"],
        )
    }

    /// Every one of `records` answered, `errors` of them in error.
    fn partially_completed(records: i64, errors: i64) -> Self {
        Self::ran(
            ModelInvocationJobStatus::PartiallyCompleted,
            None,
            [records, records, records - errors, errors],
            &["PartiallyCompleted"],
        )
    }

    /// Stopped while `InProgress`, `processed` of `records` answered (none in error).
    fn stopped_in_progress(records: i64, processed: i64) -> Self {
        Self::ran(
            ModelInvocationJobStatus::Stopped,
            Some(STOPPED),
            [records, processed, processed, 0],
            &["Stopping", "Stopped"],
        )
    }

    /// Failed validation with `message`.
    fn failed_validation(message: &str) -> Self {
        Self::unread(
            ModelInvocationJobStatus::Failed,
            message,
            &["Submitted", "Validating", "Failed"],
        )
    }

    /// Stopped while still `Submitted`.
    fn stopped_while_submitted() -> Self {
        Self::unread(
            ModelInvocationJobStatus::Stopped,
            STOPPED,
            &["Submitted", "Stopping", "Stopped"],
        )
    }

    /// Answered records (`counts`), then walked `last` from `InProgress`; wrote its output.
    fn ran(
        status: ModelInvocationJobStatus,
        message: Option<&str>,
        counts: [i64; 4],
        last: &[&str],
    ) -> Self {
        Self {
            status,
            message: message.map(str::to_string),
            counts: counts.map(Some),
            output: true,
            statuses: statuses(&[&Self::RUN[..], last].concat()),
        }
    }

    /// Ended with `message` after walking `walk`, its input never validated: no record counts,
    /// no output.
    fn unread(status: ModelInvocationJobStatus, message: &str, walk: &[&str]) -> Self {
        Self {
            status,
            message: Some(message.to_string()),
            counts: [None; 4],
            output: false,
            statuses: statuses(walk),
        }
    }
}

/// A client of the SDK crate `$sdk` for the emulator at `$url`: test credentials, no retries.
macro_rules! sdk_client {
    ($sdk:ident, $url:expr) => {
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version($sdk::config::BehaviorVersion::latest())
                .region($sdk::config::Region::new("us-east-1"))
                .endpoint_url($url)
                .credentials_provider($sdk::config::Credentials::new(
                    "AKIDTEST", "secret", None, None, "tests",
                ))
                .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
                .build(),
        )
    };
}

fn control(url: &str) -> aws_sdk_bedrock::Client {
    sdk_client!(aws_sdk_bedrock, url)
}

/// A job of `model` over `input`, writing to `s3://bedrock-batch/out/`.
fn job_request(
    client: &aws_sdk_bedrock::Client,
    name: &str,
    model: &str,
    input: &str,
) -> CreateModelInvocationJobFluentBuilder {
    client
        .create_model_invocation_job()
        .job_name(name)
        .role_arn(ROLE)
        .model_id(model)
        .input_data_config(ModelInvocationJobInputDataConfig::S3InputDataConfig(
            ModelInvocationJobS3InputDataConfig::builder()
                .s3_uri(input)
                .build()
                .expect("input config"),
        ))
        .output_data_config(ModelInvocationJobOutputDataConfig::S3OutputDataConfig(
            ModelInvocationJobS3OutputDataConfig::builder()
                .s3_uri(format!("s3://{BUCKET}/out/"))
                .build()
                .expect("output config"),
        ))
}

/// Sends a `CreateModelInvocationJob` that must succeed; the job's ARN.
async fn created(request: CreateModelInvocationJobFluentBuilder) -> String {
    request
        .send()
        .await
        .expect("CreateModelInvocationJob")
        .job_arn()
        .to_string()
}

/// Asserts that `err` is the service error `kind` says, with `message`.
fn assert_service_error<E: ProvideErrorMetadata + std::fmt::Debug>(
    err: &SdkError<E>,
    kind: fn(&E) -> bool,
    message: &str,
) {
    assert!(err.as_service_error().is_some_and(kind), "{err:?}");
    assert_eq!(err.message(), Some(message));
}

/// The names of the listed jobs, in list order.
fn job_names(listed: &ListModelInvocationJobsOutput) -> Vec<String> {
    listed
        .invocation_job_summaries()
        .iter()
        .map(|s| s.job_name().to_string())
        .collect()
}

fn job_id(arn: &str) -> &str {
    arn.rsplit('/').next().expect("an id")
}

fn statuses(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}

/// Titan records `r000`… asking `Question <i>`.
fn titan_records(range: std::ops::Range<usize>) -> Vec<Value> {
    range
        .map(|i| json!({ "recordId": format!("r{i:03}"), "modelInput": { "inputText": format!("Question {i}") } }))
        .collect()
}

fn jsonl(records: &[Value]) -> String {
    records.iter().fold(String::new(), |mut text, r| {
        text.push_str(&r.to_string());
        text.push('\n');
        text
    })
}

/// The emulator's answer to a one-message prompt.
fn answer_text(model: &str, prompt: &str) -> String {
    format!("Emulated {model} (messages: 1, blocks: 1): {prompt}")
}

/// The Titan line the job writes for a record of [`titan_records`].
fn titan_line(record: &Value) -> Value {
    let prompt = record["modelInput"]["inputText"]
        .as_str()
        .expect("a prompt");
    let text = answer_text(TITAN, prompt);
    json!({
        "recordId": record["recordId"],
        "modelInput": record["modelInput"],
        "modelOutput": {
            "inputTextTokenCount": count_text_tokens(prompt),
            "results": [{
                "tokenCount": count_text_tokens(&text),
                "outputText": text,
                "completionReason": "FINISH",
            }],
        },
    })
}

/// JSON lines, parsed, in order.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The lines of an output file, parsed, in file order.
fn lines(path: &Path) -> Vec<Value> {
    json_lines(&std::fs::read_to_string(path).expect("an output file"))
}

/// The manifest in an output folder.
fn manifest(out: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(out.join("manifest.json.out")).expect("a manifest"),
    )
    .expect("JSON")
}

fn sorted_by_record_id(mut lines: Vec<Value>) -> Vec<Value> {
    lines.sort_by(|a, b| a["recordId"].as_str().cmp(&b["recordId"].as_str()));
    lines
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("an output folder")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // every field the SDK reads, the output, the stats
async fn a_job_walks_its_statuses_to_completed_and_writes_shuffled_answers_and_a_manifest() {
    let setup = Setup::start(5, None).await;
    let records = titan_records(0..120);
    setup.put("in/records.jsonl", &jsonl(&records));

    let arn = created(
        setup
            .job("questions-1", TITAN, "s3://bedrock-batch/in/records.jsonl")
            .client_request_token("token-1"),
    )
    .await;
    let id = job_id(&arn);
    assert!(
        arn.starts_with("arn:aws:bedrock:us-east-1:000000000000:model-invocation-job/")
            && id.len() == 12
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{arn}"
    );
    let (job, seen) = setup.wait(&arn).await;
    assert_eq!(seen.last().map(String::as_str), Some("Completed"));

    // Everything the SDK reads.
    assert_eq!(job.job_arn(), arn);
    assert_eq!(job.job_name(), Some("questions-1"));
    assert_eq!(job.model_id(), TITAN);
    assert_eq!(job.role_arn(), ROLE);
    assert_eq!(job.client_request_token(), Some("token-1"));
    assert_eq!(setup.ending(&job), Ending::completed(120));
    assert_eq!(
        job.model_invocation_type(),
        Some(&ModelInvocationType::InvokeModel)
    );
    assert_eq!(job.timeout_duration_in_hours(), Some(168));
    assert_eq!(
        job.job_expiration_time()
            .map(|t| t.secs() - job.submit_time().secs()),
        Some(168 * 3600)
    );
    let ended = job.end_time().expect("an end time");
    assert!(ended.secs() >= job.submit_time().secs());
    assert_eq!(job.last_modified_time(), Some(ended));
    assert_eq!(
        job.input_data_config()
            .and_then(|c| c.as_s3_input_data_config().ok())
            .map(ModelInvocationJobS3InputDataConfig::s3_uri),
        Some("s3://bedrock-batch/in/records.jsonl")
    );
    assert_eq!(
        job.output_data_config()
            .and_then(|c| c.as_s3_output_data_config().ok())
            .map(ModelInvocationJobS3OutputDataConfig::s3_uri),
        Some("s3://bedrock-batch/out/")
    );

    // The output: every record answered as InvokeModel would, in a shuffled order.
    let out = setup.output(&arn);
    assert_eq!(file_names(&out), ["manifest.json.out", "records.jsonl.out"]);
    let written = lines(&out.join("records.jsonl.out"));
    let order: Vec<&str> = written
        .iter()
        .map(|l| l["recordId"].as_str().expect("an id"))
        .collect();
    let input_order: Vec<String> = (0..120).map(|i| format!("r{i:03}")).collect();
    assert_ne!(order, input_order, "the output keeps no input order");
    let expected: Vec<Value> = records.iter().map(titan_line).collect();
    assert_eq!(sorted_by_record_id(written), expected);

    let input_tokens: u64 = expected
        .iter()
        .map(|l| {
            l["modelOutput"]["inputTextTokenCount"]
                .as_u64()
                .expect("tokens")
        })
        .sum();
    let output_tokens: u64 = expected
        .iter()
        .map(|l| {
            l["modelOutput"]["results"][0]["tokenCount"]
                .as_u64()
                .expect("tokens")
        })
        .sum();
    assert_eq!(
        manifest(&out),
        json!({
            "totalRecordCount": 120,
            "processedRecordCount": 120,
            "successRecordCount": 120,
            "errorRecordCount": 0,
            "inputTokenCount": input_tokens,
            "outputTokenCount": output_tokens,
        })
    );

    // The stats: the job's whole walk, its tokens, and no runtime request.
    let stats = setup.emulator.stats().snapshot();
    assert_eq!(
        stats.batch_jobs,
        vec![BatchJobRecord {
            job_arn: arn.clone(),
            job_name: "questions-1".into(),
            model_id: TITAN.into(),
            invocation_type: "InvokeModel".into(),
            status: "Completed".into(),
            statuses: statuses(&[
                "Submitted",
                "Validating",
                "Scheduled",
                "InProgress",
                "Completed"
            ]),
            message: None,
            records: 120,
            processed: 120,
            errors: 0,
            input_files: vec!["s3://bedrock-batch/in/records.jsonl".into()],
            client_request_token: Some("token-1".into()),
        }]
    );
    assert_eq!(stats.batch_jobs_submitted(), 1);
    assert_eq!(
        (stats.input_tokens, stats.output_tokens),
        (input_tokens, output_tokens)
    );
    assert_eq!(stats.count(None, Some("InvokeModel"), None), 0);
    assert_eq!(
        stats.count(Some(TITAN), Some("CreateModelInvocationJob"), Some(200)),
        1
    );
    assert!(stats.count(Some(TITAN), Some("GetModelInvocationJob"), Some(200)) >= 1);
    assert!(stats.recent.is_empty());

    // The same body through the runtime route gets the same answer.
    let runtime = sdk_client!(aws_sdk_bedrockruntime, setup.emulator.url());
    let invoked = runtime
        .invoke_model()
        .model_id(TITAN)
        .content_type("application/json")
        .body(aws_smithy_types::Blob::new(
            records[7]["modelInput"].to_string(),
        ))
        .send()
        .await
        .expect("InvokeModel");
    let body: Value = serde_json::from_slice(invoked.body().as_ref()).expect("JSON");
    assert_eq!(body, expected[7]["modelOutput"]);
    setup.emulator.shutdown().await;
}

#[tokio::test]
async fn record_errors_make_a_converse_job_partially_completed() {
    let setup = Setup::start(5, None).await;
    let records: Vec<Value> = (0..100)
        .map(|i| {
            let text = match i {
                7 => "Question 7 [[emulate:ValidationException]]".to_string(),
                _ => format!("Question {i}"),
            };
            let mut input = json!({
                "messages": [{ "role": "user", "content": [{ "text": text }] }],
                "inferenceConfig": { "maxTokens": 50 },
            });
            if i == 8 {
                input["toolConfig"] = json!({ "tools": [] });
            }
            if i == 9 {
                input["inferenceConfig"]["temperature"] = json!(2.0);
            }
            json!({ "recordId": format!("r{i:03}"), "modelInput": input })
        })
        .collect();
    setup.put("converse.jsonl", &jsonl(&records));
    let arn = created(
        setup
            .job("converse-1", NOVA, "s3://bedrock-batch/converse.jsonl")
            .model_invocation_type(ModelInvocationType::Converse),
    )
    .await;
    let (job, _) = setup.wait(&arn).await;
    assert_eq!(setup.ending(&job), Ending::partially_completed(100, 3));
    let written = sorted_by_record_id(lines(&setup.output(&arn).join("converse.jsonl.out")));
    let error = |i: usize, code: u16, message: &str| {
        json!({
            "recordId": format!("r{i:03}"),
            "modelInput": records[i]["modelInput"],
            "error": { "errorCode": code, "errorMessage": message },
        })
    };
    assert_eq!(written[7], error(7, 400, "The request failed validation."));
    assert_eq!(
        written[8],
        error(8, 400, "Tools are not supported in batch inference")
    );
    assert_eq!(
        written[9],
        error(
            9,
            400,
            "1 validation error detected: Value '2' at 'inferenceConfig.temperature' failed to satisfy constraint: Member must have value less than or equal to 1"
        )
    );
    let text = answer_text(NOVA, "Question 1");
    assert_eq!(
        written[1],
        json!({
            "recordId": "r001",
            "modelInput": records[1]["modelInput"],
            "modelOutput": {
                "output": { "message": { "role": "assistant", "content": [{ "text": text }] } },
                "stopReason": "end_turn",
                "usage": {
                    "inputTokens": 3,
                    "outputTokens": count_text_tokens(&text),
                    "totalTokens": 3 + count_text_tokens(&text),
                },
                "metrics": { "latencyMs": 0 },
            },
        })
    );
    let stats = setup.emulator.stats().snapshot();
    assert_eq!(stats.count(None, Some("Converse"), None), 0);
    assert_eq!(stats.fault_count("directive:ValidationException"), 1);
    let record = setup.record(&arn);
    assert_eq!(
        (
            record.status.as_str(),
            record.invocation_type.as_str(),
            record.records,
            record.errors
        ),
        ("PartiallyCompleted", "Converse", 100, 3)
    );
}

#[tokio::test]
async fn too_few_records_fail_validation_with_the_service_message() {
    let setup = Setup::start(5, None).await;
    setup.put("small.jsonl", &jsonl(&titan_records(0..99)));
    let arn = created(setup.job("small", TITAN, "s3://bedrock-batch/small.jsonl")).await;
    let (job, _) = setup.wait(&arn).await;
    // A failed job writes nothing.
    assert_eq!(
        setup.ending(&job),
        Ending::failed_validation(
            "The job has 99 records, fewer than the 100 a batch inference job needs."
        )
    );
    assert!(job.end_time().is_some());
}

#[tokio::test]
async fn a_bad_line_fails_validation_naming_the_file_and_the_line() {
    let setup = Setup::start(5, None).await;
    setup.put("in/a.jsonl", &jsonl(&titan_records(0..60)));
    setup.put(
        "in/b.jsonl",
        &format!(
            "{}{{\"recordId\": \"x\", \"modelInput\": \n{}",
            jsonl(&titan_records(60..62)),
            jsonl(&titan_records(62..100))
        ),
    );
    let bad_line = created(setup.job("bad-line", TITAN, "s3://bedrock-batch/in/")).await;

    // A missing object, and a recordId used twice across the files of a prefix.
    let missing = created(setup.job("missing", TITAN, "s3://bedrock-batch/none.jsonl")).await;
    setup.put("dup/a.jsonl", &jsonl(&titan_records(0..60)));
    setup.put("dup/b.jsonl", &jsonl(&titan_records(59..100)));
    let duplicated = created(setup.job("duplicated", TITAN, "s3://bedrock-batch/dup/")).await;
    for (arn, message) in [
        (
            bad_line,
            "Line 3 of s3://bedrock-batch/in/b.jsonl is not a JSON object. Each line of a batch inference input file must be {\"recordId\": \"…\", \"modelInput\": {…}}.",
        ),
        (
            missing,
            "The input object s3://bedrock-batch/none.jsonl does not exist.",
        ),
        (
            duplicated,
            "Line 1 of s3://bedrock-batch/dup/b.jsonl repeats the recordId r059 of line 60 of s3://bedrock-batch/dup/a.jsonl. Record ids must be unique within a job.",
        ),
    ] {
        let (job, _) = setup.wait(&arn).await;
        assert_eq!(setup.ending(&job), Ending::failed_validation(message));
    }
}

#[tokio::test]
async fn a_stopped_job_answers_fewer_records_and_writes_what_it_answered() {
    let setup = Setup::start(5, Some(20)).await;
    setup.put("slow.jsonl", &jsonl(&titan_records(0..100)));
    let arn = created(setup.job("slow", TITAN, "s3://bedrock-batch/slow.jsonl")).await;
    // A poller sees the records being processed.
    loop {
        let job = setup.get(&arn).await;
        if job.processed_record_count().unwrap_or(0) >= 5 {
            assert_eq!(job.status(), Some(&ModelInvocationJobStatus::InProgress));
            assert_eq!(job.total_record_count(), Some(100));
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    setup.stop(&arn).await.expect("StopModelInvocationJob");
    let (job, _) = setup.wait(&arn).await;
    let processed = job.processed_record_count().expect("a count");
    assert!((5..100).contains(&processed), "{processed}");
    assert_eq!(
        setup.ending(&job),
        Ending::stopped_in_progress(100, processed)
    );
    let out = setup.output(&arn);
    let written = lines(&out.join("slow.jsonl.out"));
    assert_eq!(i64::try_from(written.len()).ok(), Some(processed));
    let manifest = manifest(&out);
    assert_eq!(
        (
            &manifest["totalRecordCount"],
            &manifest["processedRecordCount"]
        ),
        (&json!(100), &json!(processed))
    );

    // An ended job cannot be stopped.
    let err = setup.stop(&arn).await.expect_err("already stopped");
    assert_service_error(
        &err,
        StopModelInvocationJobError::is_validation_exception,
        &format!(
            "The model invocation job {arn} cannot be stopped: its status is Stopped. Only a job that is Submitted, Validating, Scheduled or InProgress can be stopped."
        ),
    );
}

#[tokio::test]
async fn the_pace_can_change_while_a_job_runs() {
    // One record a second: a hundred would take minutes.
    let setup = Setup::start(5, Some(1)).await;
    setup.put("in.jsonl", &jsonl(&titan_records(0..100)));
    let arn = created(setup.job("paced", TITAN, "s3://bedrock-batch/in.jsonl")).await;
    while setup.get(&arn).await.processed_record_count().unwrap_or(0) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    setup.emulator.set_batch_records_per_second(None);
    let (job, _) = setup.wait(&arn).await;
    assert_eq!(setup.ending(&job), Ending::completed(100));
}

#[tokio::test]
async fn a_job_stopped_before_it_runs_writes_nothing() {
    // Steps long enough to see `Stopping` on a busy machine.
    let setup = Setup::start(500, None).await;
    setup.put("in.jsonl", &jsonl(&titan_records(0..100)));
    let arn = created(setup.job("early", TITAN, "s3://bedrock-batch/in.jsonl")).await;
    // By its id, not its ARN.
    setup
        .stop(job_id(&arn))
        .await
        .expect("StopModelInvocationJob");
    assert_eq!(
        setup.get(&arn).await.status(),
        Some(&ModelInvocationJobStatus::Stopping)
    );
    let (job, _) = setup.wait(&arn).await;
    assert_eq!(setup.ending(&job), Ending::stopped_while_submitted());
}

#[tokio::test]
async fn a_repeated_client_request_token_returns_the_same_job() {
    let setup = Setup::start(5, None).await;
    setup.put("in.jsonl", &jsonl(&titan_records(0..100)));
    let retried = setup
        .job("retried", TITAN, "s3://bedrock-batch/in.jsonl")
        .client_request_token("retry-1");
    let first = created(retried.clone()).await;
    let second = created(retried).await;
    assert_eq!(first, second);
    let stats = setup.emulator.stats().snapshot();
    assert_eq!(stats.batch_jobs_submitted(), 1);
    assert_eq!(
        stats.count(Some(TITAN), Some("CreateModelInvocationJob"), Some(200)),
        2
    );
    // Without a token of its own, the SDK generates one: a new job.
    let third = created(setup.job("retried", TITAN, "s3://bedrock-batch/in.jsonl")).await;
    assert_ne!(third, first);
    assert_eq!(setup.emulator.stats().snapshot().batch_jobs_submitted(), 2);
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one assertion per refused request
async fn invalid_requests_are_refused_with_the_service_messages() {
    let setup = Setup::start(5, None).await;
    let input = "s3://bedrock-batch/in.jsonl";
    let refused = |builder: CreateModelInvocationJobFluentBuilder| async move {
        let err = builder.send().await.expect_err("refused");
        let service = err.as_service_error().expect("a service error");
        assert!(service.is_validation_exception(), "{service:?}");
        service.message().expect("a message").to_string()
    };
    assert_eq!(
        refused(
            setup
                .job("j", TITAN, input)
                .role_arn("arn:aws:iam::123456789012:user/batch")
        )
        .await,
        "1 validation error detected: Value 'arn:aws:iam::123456789012:user/batch' at 'roleArn' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws(-[a-z-]+)?:iam::[0-9]{12}:role/.+"
    );
    assert_eq!(
        refused(setup.job("j", TITAN, input).timeout_duration_in_hours(12)).await,
        "1 validation error detected: Value '12' at 'timeoutDurationInHours' failed to satisfy constraint: Member must have value greater than or equal to 24"
    );
    assert_eq!(
        refused(setup.job("j", TITAN, input).timeout_duration_in_hours(169)).await,
        "1 validation error detected: Value '169' at 'timeoutDurationInHours' failed to satisfy constraint: Member must have value less than or equal to 168"
    );
    assert_eq!(
        refused(setup.job("bad name", TITAN, input)).await,
        r"1 validation error detected: Value 'bad name' at 'jobName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9\+\-\.])*"
    );
    let long = "a".repeat(64);
    assert_eq!(
        refused(setup.job(&long, TITAN, input)).await,
        format!(
            "1 validation error detected: Value '{long}' at 'jobName' failed to satisfy constraint: Member must have length less than or equal to 63"
        )
    );
    assert_eq!(
        refused(setup.job("j", "amazon.nothing-v9", input)).await,
        "The provided model identifier is invalid."
    );
    assert_eq!(
        refused(
            setup
                .job("j", "amazon.titan-embed-text-v2:0", input)
                .model_invocation_type(ModelInvocationType::Converse)
        )
        .await,
        "The model amazon.titan-embed-text-v2:0 does not support the Converse invocation type: it is an embedding model. Create the job with modelInvocationType InvokeModel."
    );
    assert_eq!(
        refused(setup.job("j", TITAN, "https://bedrock-batch/in.jsonl")).await,
        r"1 validation error detected: Value 'https://bedrock-batch/in.jsonl' at 'inputDataConfig.s3InputDataConfig.s3Uri' failed to satisfy constraint: Member must satisfy regular expression pattern: s3://[a-z0-9][\.\-a-z0-9]{1,61}[a-z0-9](/.*)?"
    );
    // Profiles and ARNs name models as on the runtime routes.
    for model in [
        "us.anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-premier-v1:0",
    ] {
        setup.job("j", model, input).send().await.expect("accepted");
    }
    let stats = setup.emulator.stats().snapshot();
    assert_eq!(
        stats.count(None, Some("CreateModelInvocationJob"), Some(400)),
        8
    );
    assert_eq!(stats.batch_jobs_submitted(), 2);
    assert_eq!(
        stats
            .batch_jobs
            .iter()
            .map(|r| r.model_id.as_str())
            .collect::<Vec<_>>(),
        ["anthropic.claude-3-haiku-20240307-v1:0", TITAN]
    );

    // Without an S3 root there is nowhere to read from.
    let bare = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    assert_eq!(bare.s3_url(), None);
    let err = job_request(&control(bare.url()), "j", TITAN, input)
        .send()
        .await
        .expect_err("no S3 root");
    assert_service_error(
        &err,
        CreateModelInvocationJobError::is_validation_exception,
        "The emulator was started without an S3 root (EmulatorConfig::s3_root), so it cannot read the input of a batch inference job or write its output.",
    );

    // An unknown job.
    let err = setup.try_get("abcdefabcdef").await.expect_err("unknown");
    assert_service_error(
        &err,
        GetModelInvocationJobError::is_resource_not_found_exception,
        "The model invocation job abcdefabcdef was not found.",
    );
}

/// `POST /_emulator/reset` over a plain connection.
async fn reset(url: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .expect("connected");
    stream
        .write_all(
            b"POST /_emulator/reset HTTP/1.1\r\nHost: emulator\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("answered");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one list call per filter
async fn jobs_are_listed_filtered_paged_limited_per_model_and_reset() {
    // Steps of a minute: the jobs stay Submitted.
    let setup = Setup::start(60_000, None).await;
    let input = "s3://bedrock-batch/in.jsonl";
    let mut arns = Vec::new();
    for name in ["alpha-1", "alpha-2", "beta-1"] {
        arns.push(created(setup.job(name, TITAN, input)).await);
    }
    let all = setup.list(|l| l).await;
    assert_eq!(job_names(&all), ["beta-1", "alpha-2", "alpha-1"]);
    let summary = &all.invocation_job_summaries()[0];
    assert_eq!(
        (
            summary.job_arn(),
            summary.model_id(),
            summary.status(),
            summary.model_invocation_type()
        ),
        (
            arns[2].as_str(),
            TITAN,
            Some(&ModelInvocationJobStatus::Submitted),
            Some(&ModelInvocationType::InvokeModel)
        )
    );
    let alphas = setup
        .list(|l| l.name_contains("alpha").sort_order(SortOrder::Ascending))
        .await;
    assert_eq!(job_names(&alphas), ["alpha-1", "alpha-2"]);
    let first_page = setup.list(|l| l.max_results(2)).await;
    assert_eq!(job_names(&first_page), ["beta-1", "alpha-2"]);
    let next_token = first_page.next_token().expect("a next token");
    let second_page = setup
        .list(|l| l.max_results(2).next_token(next_token))
        .await;
    assert_eq!(job_names(&second_page), ["alpha-1"]);
    assert_eq!(second_page.next_token(), None);
    let completed = setup
        .list(|l| l.status_equals(ModelInvocationJobStatus::Completed))
        .await;
    assert!(completed.invocation_job_summaries().is_empty());

    // 20 jobs of a model at once, at most.
    for i in 3..20 {
        created(setup.job(&format!("more-{i}"), TITAN, input)).await;
    }
    let err = setup
        .job("one-too-many", TITAN, input)
        .send()
        .await
        .expect_err("over quota");
    assert_service_error(
        &err,
        CreateModelInvocationJobError::is_service_quota_exceeded_exception,
        "You have reached the quota of 20 batch inference jobs in progress for the model amazon.titan-text-premier-v1:0. Wait for a job to end, or stop one, and try again.",
    );
    // Another model has its own quota.
    created(setup.job("other-model", NOVA, input)).await;

    reset(setup.emulator.url()).await;
    assert!(
        setup
            .list(|l| l)
            .await
            .invocation_job_summaries()
            .is_empty()
    );
    assert_eq!(setup.emulator.stats().snapshot().batch_jobs_submitted(), 0);
    created(setup.job("after-reset", TITAN, input)).await;
}

/// The whole round trip through the S3 endpoint, as a client does it: the input written and
/// the output read with `object_store`'s S3 client (its `aws` feature comes with the `cli`
/// feature's `datafusion-cli`).
#[cfg(feature = "cli")]
#[tokio::test]
#[allow(clippy::too_many_lines)] // each object put and read through S3
async fn input_and_output_travel_through_the_s3_endpoint() {
    use futures::TryStreamExt;
    use object_store::path::Path as ObjectPath;
    use object_store::{ObjectStore, ObjectStoreExt};

    use crate::emulator::S3Server;

    let setup = Setup::start(5, None).await;
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(setup.emulator.s3_url().expect("an S3 endpoint"))
        .with_allow_http(true)
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id(S3Server::ACCESS_KEY_ID)
        .with_secret_access_key(S3Server::SECRET_ACCESS_KEY)
        .build()
        .expect("S3 store");
    let first = titan_records(0..60);
    let second = titan_records(60..110);
    for (key, text) in [
        ("batch/in/part-1.jsonl", jsonl(&first)),
        ("batch/in/part-2.jsonl", jsonl(&second)),
        ("batch/in/README.txt", "not an input".to_string()),
    ] {
        store
            .put(&ObjectPath::from(key), text.into())
            .await
            .expect("put");
    }
    let arn = created(setup.job("through-s3", TITAN, "s3://bedrock-batch/batch/in/")).await;
    let (job, _) = setup.wait(&arn).await;
    assert_eq!(setup.ending(&job), Ending::completed(110));
    // An object's bytes, read through S3.
    let read = async |key: &str| {
        store
            .get(&ObjectPath::from(key))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes")
    };

    let folder = format!("out/{}/", job_id(&arn));
    let mut keys: Vec<String> = store
        .list(Some(&ObjectPath::from(folder.as_str())))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .expect("listed");
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("{folder}manifest.json.out"),
            format!("{folder}part-1.jsonl.out"),
            format!("{folder}part-2.jsonl.out"),
        ]
    );
    for (name, records) in [("part-1", &first), ("part-2", &second)] {
        let bytes = read(&format!("{folder}{name}.jsonl.out")).await;
        let got = json_lines(std::str::from_utf8(&bytes).expect("UTF-8"));
        let expected: Vec<Value> = records.iter().map(titan_line).collect();
        assert_eq!(sorted_by_record_id(got), expected, "{name}");
    }
    let manifest: Value =
        serde_json::from_slice(&read(&format!("{folder}manifest.json.out")).await).expect("JSON");
    assert_eq!(
        (
            &manifest["totalRecordCount"],
            &manifest["successRecordCount"]
        ),
        (&json!(110), &json!(110))
    );
    assert_eq!(
        setup.record(&arn).input_files,
        [
            "s3://bedrock-batch/batch/in/part-1.jsonl",
            "s3://bedrock-batch/batch/in/part-2.jsonl"
        ]
    );

    // A second job writing where an object was put through S3 before: S3 serves the new
    // content (no stale ETag or checksum of the old object).
    let again = format!("out/{}/manifest.json.out", "fixedfixedid");
    store
        .put(&ObjectPath::from(again.as_str()), "old".into())
        .await
        .expect("put");
    super::output::write(
        setup.root.path(),
        &super::input::S3Location::parse("s3://bedrock-batch/out/").expect("a location"),
        "fixedfixedid",
        &[],
        &json!({ "new": true }),
    )
    .expect("written");
    assert_eq!(&read(&again).await[..], b"{\"new\":true}\n");
    setup.emulator.shutdown().await;
}
