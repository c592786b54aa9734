//! One model invocation job through the control plane: submitted (idempotently, by its client
//! request token), its status read, stopped when the query that waits for it goes away.

use aws_sdk_bedrock::types::{
    ModelInvocationJobInputDataConfig, ModelInvocationJobOutputDataConfig,
    ModelInvocationJobS3InputDataConfig, ModelInvocationJobS3OutputDataConfig,
    ModelInvocationJobStatus, ModelInvocationType, S3InputFormat,
};

use crate::bedrock::retry::CallFailure;

/// What the response cache keeps of a submitted job, keyed by the hash of its requests: enough
/// for a re-run of the query to re-attach to it instead of paying again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobRecord {
    /// The job's ARN.
    pub job_arn: String,
    /// How many jobs of the same requests ended without answers before this one (each
    /// submission has a client request token of its own).
    pub generation: u32,
}

/// What a job is submitted with.
pub(crate) struct JobRequest<'a> {
    pub name: String,
    pub client_request_token: String,
    pub model_id: &'a str,
    pub role_arn: &'a str,
    pub input_uri: String,
    pub output_uri: String,
    pub timeout_hours: u32,
    pub invocation_type: ModelInvocationType,
}

/// Submits a job (or, for a token already used, gets the job it made): its ARN.
pub(crate) async fn submit(
    control: &aws_sdk_bedrock::Client,
    job: &JobRequest<'_>,
) -> Result<String, CallFailure> {
    let input = ModelInvocationJobS3InputDataConfig::builder()
        .s3_uri(&job.input_uri)
        .s3_input_format(S3InputFormat::Jsonl)
        .build()
        .map_err(|e| CallFailure::fatal("RequestError", e.to_string()))?;
    let output = ModelInvocationJobS3OutputDataConfig::builder()
        .s3_uri(&job.output_uri)
        .build()
        .map_err(|e| CallFailure::fatal("RequestError", e.to_string()))?;
    let call = control
        .create_model_invocation_job()
        .job_name(&job.name)
        .client_request_token(&job.client_request_token)
        .model_id(job.model_id)
        .role_arn(job.role_arn)
        .input_data_config(ModelInvocationJobInputDataConfig::S3InputDataConfig(input))
        .output_data_config(ModelInvocationJobOutputDataConfig::S3OutputDataConfig(
            output,
        ))
        .timeout_duration_in_hours(i32::try_from(job.timeout_hours).unwrap_or(168))
        .model_invocation_type(job.invocation_type.clone())
        .send();
    let out = Box::pin(call)
        .await
        .map_err(|e| CallFailure::from_sdk(&e))?;
    Ok(out.job_arn().to_string())
}

/// A job's state as one poll saw it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobState {
    pub status: ModelInvocationJobStatus,
    pub message: Option<String>,
    pub total: u64,
    pub processed: u64,
    pub errors: u64,
    /// The job's output prefix (`<output uri>/<job id>/` is where its files are).
    pub output_uri: Option<String>,
}

impl JobState {
    /// Whether the job will change no more.
    pub fn finished(&self) -> bool {
        matches!(
            self.status,
            ModelInvocationJobStatus::Completed
                | ModelInvocationJobStatus::PartiallyCompleted
                | ModelInvocationJobStatus::Failed
                | ModelInvocationJobStatus::Stopped
                | ModelInvocationJobStatus::Expired
        )
    }

    /// Whether it finished with output to read.
    pub fn answered(&self) -> bool {
        matches!(
            self.status,
            ModelInvocationJobStatus::Completed | ModelInvocationJobStatus::PartiallyCompleted
        )
    }
}

/// Reads a job's state; `Ok(None)` when the service no longer knows the job.
pub(crate) async fn state(
    control: &aws_sdk_bedrock::Client,
    job_arn: &str,
) -> Result<Option<JobState>, CallFailure> {
    let call = control
        .get_model_invocation_job()
        .job_identifier(job_arn)
        .send();
    match Box::pin(call).await {
        Ok(out) => {
            let count = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
            Ok(Some(JobState {
                status: out
                    .status()
                    .cloned()
                    .unwrap_or(ModelInvocationJobStatus::Submitted),
                message: out.message().map(str::to_string),
                total: count(out.total_record_count()),
                processed: count(out.processed_record_count()),
                errors: count(out.error_record_count()),
                output_uri: match out.output_data_config() {
                    Some(ModelInvocationJobOutputDataConfig::S3OutputDataConfig(s3)) => {
                        Some(s3.s3_uri().to_string())
                    }
                    _ => None,
                },
            }))
        }
        Err(e) => {
            let failure = CallFailure::from_sdk(&e);
            if failure.code == "ResourceNotFoundException" {
                Ok(None)
            } else {
                Err(failure)
            }
        }
    }
}

/// The id of a job: the last segment of its ARN.
pub(crate) fn job_id(job_arn: &str) -> &str {
    job_arn.rsplit('/').next().unwrap_or(job_arn)
}

/// Stops a job when dropped while still armed: the query waiting for it was cancelled.
pub(crate) struct StopOnDrop {
    control: aws_sdk_bedrock::Client,
    job_arn: Option<String>,
}

impl StopOnDrop {
    pub fn new(control: &aws_sdk_bedrock::Client, job_arn: &str) -> Self {
        Self {
            control: control.clone(),
            job_arn: Some(job_arn.to_string()),
        }
    }

    /// The job finished: nothing to stop.
    pub fn disarm(&mut self) {
        self.job_arn = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let Some(job_arn) = self.job_arn.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(job = %job_arn, "a cancelled query's batch job could not be stopped: no runtime");
            return;
        };
        let control = self.control.clone();
        runtime.spawn(async move {
            let call = control
                .stop_model_invocation_job()
                .job_identifier(&job_arn)
                .send();
            match Box::pin(call).await {
                Ok(_) => tracing::info!(job = %job_arn, "stopped the batch job of a cancelled query"),
                Err(e) => {
                    let failure = CallFailure::from_sdk(&e);
                    tracing::warn!(job = %job_arn, error = %failure, "could not stop the batch job of a cancelled query");
                }
            }
        });
    }
}
