//! The requests' checks: `CreateModelInvocationJob`'s body and `ListModelInvocationJobs`'s
//! query, with the service's constraint messages.

use std::time::SystemTime;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde_json::Value;

use super::input::S3Location;
use super::{Invocation, Status};
use crate::emulator::catalog::CatalogModel;
use crate::emulator::model_id;
use crate::emulator::server::check_model;
use crate::emulator::wire::ApiError;

/// The `jobName` pattern of the service.
const JOB_NAME_PATTERN: &str = r"[a-zA-Z0-9](-*[a-zA-Z0-9\+\-\.])*";
/// The `roleArn` pattern: an IAM role ARN.
const ROLE_ARN_PATTERN: &str = "arn:aws(-[a-z-]+)?:iam::[0-9]{12}:role/.+";
/// The `s3Uri` pattern of the service.
const S3_URI_PATTERN: &str = r"s3://[a-z0-9][\.\-a-z0-9]{1,61}[a-z0-9](/.*)?";
/// `timeoutDurationInHours` when the request sets none.
pub(super) const DEFAULT_TIMEOUT_HOURS: u32 = 168;

/// A valid `CreateModelInvocationJob` request.
#[derive(Debug)]
pub(super) struct CreateRequest {
    pub job_name: String,
    pub role_arn: String,
    pub client_request_token: Option<String>,
    /// The model id as sent (an id, inference profile or ARN).
    pub model_id: String,
    pub model: &'static CatalogModel,
    pub via_profile: bool,
    pub invocation: Invocation,
    pub input: S3Location,
    pub output: S3Location,
    /// `inputDataConfig` and `outputDataConfig` as sent, described back as they came.
    pub input_config: Value,
    pub output_config: Value,
    pub timeout_hours: u32,
}

fn null_member(path: &str) -> ApiError {
    ApiError::constraint("null", path, "Member must not be null")
}

fn pattern(value: &str, path: &str, pattern: &str) -> ApiError {
    ApiError::constraint(
        value,
        path,
        &format!("Member must satisfy regular expression pattern: {pattern}"),
    )
}

fn required_str<'a>(body: &'a Value, path: &str) -> Result<&'a str, ApiError> {
    body.get(path)
        .and_then(Value::as_str)
        .ok_or_else(|| null_member(path))
}

/// `[a-zA-Z0-9](-*[a-zA-Z0-9\+\-\.])*`: an alphanumeric, then alphanumerics, `+`, `-`, `.`.
fn is_job_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

/// `arn:aws(-[a-z-]+)?:iam::[0-9]{12}:role/.+`.
fn is_role_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:aws") else {
        return false;
    };
    let (partition, rest) = rest.split_once(':').unwrap_or((rest, ""));
    let partition_ok = partition.is_empty()
        || partition.strip_prefix('-').is_some_and(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        });
    let Some(rest) = rest.strip_prefix("iam::") else {
        return false;
    };
    let Some((account, role)) = rest.split_once(":role/") else {
        return false;
    };
    partition_ok
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !role.is_empty()
}

/// The `s3Uri` of `{config}.{member}`, checked against the service's pattern (and without
/// `.` or `..` path segments, which no S3 root can hold).
fn s3_location(body: &Value, config: &str, member: &str) -> Result<(S3Location, Value), ApiError> {
    let outer = body.get(config).ok_or_else(|| null_member(config))?;
    let inner_path = format!("{config}.{member}");
    let inner = outer.get(member).ok_or_else(|| null_member(&inner_path))?;
    let uri_path = format!("{inner_path}.s3Uri");
    let uri = inner
        .get("s3Uri")
        .and_then(Value::as_str)
        .ok_or_else(|| null_member(&uri_path))?;
    let location = S3Location::parse(uri).ok_or_else(|| pattern(uri, &uri_path, S3_URI_PATTERN))?;
    Ok((location, outer.clone()))
}

/// Reads and checks a `CreateModelInvocationJob` body. `has_root`: whether the emulator has an
/// S3 root to read and write.
pub(super) fn parse(body: &Value, has_root: bool) -> Result<CreateRequest, ApiError> {
    let job_name = required_str(body, "jobName")?;
    if job_name.chars().count() > 63 {
        return Err(ApiError::constraint(
            job_name,
            "jobName",
            "Member must have length less than or equal to 63",
        ));
    }
    if !is_job_name(job_name) {
        return Err(pattern(job_name, "jobName", JOB_NAME_PATTERN));
    }
    let role_arn = required_str(body, "roleArn")?;
    if !is_role_arn(role_arn) {
        return Err(pattern(role_arn, "roleArn", ROLE_ARN_PATTERN));
    }
    let model_id = required_str(body, "modelId")?;
    let resolved = model_id::resolve(model_id)?;
    let model = resolved.model;
    check_model(model, resolved.via_profile)?;
    let invocation = match body.get("modelInvocationType").and_then(Value::as_str) {
        None | Some("InvokeModel") => Invocation::InvokeModel,
        Some("Converse") => Invocation::Converse,
        Some(other) => {
            return Err(ApiError::constraint(
                other,
                "modelInvocationType",
                "Member must satisfy enum value set: [InvokeModel, Converse]",
            ));
        }
    };
    if invocation == Invocation::Converse && !model.family.supports_converse() {
        return Err(ApiError::validation(format!(
            "The model {} does not support the Converse invocation type: it is an embedding model. Create the job with modelInvocationType InvokeModel.",
            model.id
        )));
    }
    let (input, input_config) = s3_location(body, "inputDataConfig", "s3InputDataConfig")?;
    if let Some(format) = body
        .pointer("/inputDataConfig/s3InputDataConfig/s3InputFormat")
        .and_then(Value::as_str)
        .filter(|f| *f != "JSONL")
    {
        return Err(ApiError::constraint(
            format,
            "inputDataConfig.s3InputDataConfig.s3InputFormat",
            "Member must satisfy enum value set: [JSONL]",
        ));
    }
    let (output, output_config) = s3_location(body, "outputDataConfig", "s3OutputDataConfig")?;
    let timeout_hours = match body.get("timeoutDurationInHours").and_then(Value::as_i64) {
        None => DEFAULT_TIMEOUT_HOURS,
        Some(h) if h < 24 => {
            return Err(ApiError::constraint(
                h,
                "timeoutDurationInHours",
                "Member must have value greater than or equal to 24",
            ));
        }
        Some(h) => u32::try_from(h).ok().filter(|h| *h <= 168).ok_or_else(|| {
            ApiError::constraint(
                h,
                "timeoutDurationInHours",
                "Member must have value less than or equal to 168",
            )
        })?,
    };
    if !has_root {
        return Err(ApiError::validation(
            "The emulator was started without an S3 root (EmulatorConfig::s3_root), so it cannot read the input of a batch inference job or write its output.",
        ));
    }
    Ok(CreateRequest {
        job_name: job_name.to_string(),
        role_arn: role_arn.to_string(),
        client_request_token: body
            .get("clientRequestToken")
            .and_then(Value::as_str)
            .map(str::to_string),
        model_id: model_id.to_string(),
        model,
        via_profile: resolved.via_profile,
        invocation,
        input,
        output,
        input_config,
        output_config,
        timeout_hours,
    })
}

/// The base model id a refused `CreateModelInvocationJob` is counted under: the resolved
/// model, else the id as sent, else `""`.
pub(super) fn model_for_stats(body: &Value) -> String {
    let sent = body.get("modelId").and_then(Value::as_str).unwrap_or("");
    model_id::resolve(sent).map_or_else(|_| sent.to_string(), |r| r.model.id.to_string())
}

/// A `ListModelInvocationJobs` query.
#[derive(Debug)]
pub(super) struct ListQuery {
    status: Option<Status>,
    name_contains: Option<String>,
    after: Option<(i64, u32)>,
    before: Option<(i64, u32)>,
    pub descending: bool,
    pub max_results: usize,
    /// Where the page starts (the `nextToken`).
    pub start: usize,
}

fn instant(time: SystemTime) -> (i64, u32) {
    let t = DateTime::from(time);
    (t.secs(), t.subsec_nanos())
}

impl ListQuery {
    pub(super) fn parse(query: &str) -> Result<Self, ApiError> {
        let mut q = ListQuery {
            status: None,
            name_contains: None,
            after: None,
            before: None,
            descending: true,
            max_results: 1000,
            start: 0,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = model_id::percent_decode(&value.replace('+', " ")).unwrap_or_default();
            let time = |path: &str| {
                DateTime::from_str(&value, Format::DateTime)
                    .map(|t| (t.secs(), t.subsec_nanos()))
                    .map_err(|_| {
                        ApiError::constraint(&value, path, "Member must be a date-time (RFC 3339)")
                    })
            };
            match key {
                "statusEquals" => {
                    q.status = Some(Status::parse(&value).ok_or_else(|| {
                        let all: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
                        ApiError::constraint(
                            &value,
                            "statusEquals",
                            &format!("Member must satisfy enum value set: [{}]", all.join(", ")),
                        )
                    })?);
                }
                "nameContains" => q.name_contains = Some(value),
                "submitTimeAfter" => q.after = Some(time("submitTimeAfter")?),
                "submitTimeBefore" => q.before = Some(time("submitTimeBefore")?),
                "sortBy" if value != "CreationTime" => {
                    return Err(ApiError::constraint(
                        &value,
                        "sortBy",
                        "Member must satisfy enum value set: [CreationTime]",
                    ));
                }
                "sortOrder" => {
                    q.descending = match value.as_str() {
                        "Descending" => true,
                        "Ascending" => false,
                        _ => {
                            return Err(ApiError::constraint(
                                &value,
                                "sortOrder",
                                "Member must satisfy enum value set: [Ascending, Descending]",
                            ));
                        }
                    };
                }
                "maxResults" => {
                    q.max_results = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| {
                            ApiError::constraint(
                                &value,
                                "maxResults",
                                "Member must have value between 1 and 1000",
                            )
                        })?;
                }
                "nextToken" => {
                    q.start = value
                        .parse()
                        .map_err(|_| ApiError::validation("The nextToken is not valid."))?;
                }
                _ => {}
            }
        }
        Ok(q)
    }

    /// Whether a job with this name, status and submission time is listed.
    pub(super) fn matches(&self, name: &str, status: &str, submitted: SystemTime) -> bool {
        let at = instant(submitted);
        self.status.is_none_or(|s| s.as_str() == status)
            && self
                .name_contains
                .as_ref()
                .is_none_or(|part| name.contains(part.as_str()))
            && self.after.is_none_or(|after| at > after)
            && self.before.is_none_or(|before| at < before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_role_arns_follow_the_service_patterns() {
        for good in ["a", "job-1", "A.b+c--d", "x-"] {
            assert!(is_job_name(good), "{good}");
        }
        for bad in ["", "-a", "a b", "a_b"] {
            assert!(!is_job_name(bad), "{bad}");
        }
        for good in [
            "arn:aws:iam::123456789012:role/batch",
            "arn:aws-us-gov:iam::123456789012:role/path/batch",
        ] {
            assert!(is_role_arn(good), "{good}");
        }
        for bad in [
            "arn:aws:iam::12345678901:role/batch",
            "arn:aws:iam::123456789012:user/batch",
            "arn:aws:iam::123456789012:role/",
            "arn:aws-:iam::123456789012:role/x",
            "role/batch",
        ] {
            assert!(!is_role_arn(bad), "{bad}");
        }
    }
}
