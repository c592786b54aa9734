//! Bedrock batch inference: a query's distinct, uncached requests written as JSONL files to
//! S3, run as model invocation jobs at the batch price, and read back by record id.
//!
//! - here: how a call runs ([`Execution`]), the service's limits, and the engine's batch
//!   settings ([`BatchSettings`]);
//! - `record.rs`: one request as a JSONL record (`modelInput`) and one output line as an
//!   answer or a failure;
//! - `shard.rs`: records split into jobs within the per-job limits;
//! - `storage.rs`: the S3 store the jobs' files go through (`object_store`'s S3 client);
//! - `job.rs`: one job's life — submitted (or re-attached), polled, stopped if the query is
//!   cancelled, its output read;
//!
//! The engine runs a query's requests through all of that and back into its cache
//! (`engine/in_batch.rs`).

use std::fmt;

use crate::error::{Error, Result};

pub(crate) mod job;
pub(crate) mod record;
mod shard;
pub(crate) mod storage;

pub use job::JobRecord;
pub use record::{RECORD_ID_LEN, record_id};
pub use shard::{Shard, shards, shards_within};
pub use storage::{EMULATOR_S3_ACCESS_KEY_ID, EMULATOR_S3_SECRET_ACCESS_KEY, S3Location};

/// Fewest records Bedrock takes in one job.
pub const MIN_RECORDS_PER_JOB: usize = 100;
/// Most records in one input file and in one job.
pub const MAX_RECORDS_PER_JOB: usize = 50_000;
/// Most bytes in one input file (1 GB); a job here has one file, well under the 5 GB per job.
pub const MAX_BYTES_PER_FILE: usize = 1_000_000_000;
/// Jobs of one model in flight at once (the service's default quota).
pub const MAX_JOBS_IN_FLIGHT: usize = 20;
/// The default of `SET bedrock.batch_min_rows`.
pub const DEFAULT_BATCH_MIN_ROWS: u64 = 1_000;
/// The batch price as a share of the on-demand price: Bedrock lists batch inference at half
/// the on-demand price of the same model.
pub const BATCH_PRICE_FACTOR: f64 = 0.5;

/// The jobs `records` records make: as few as the per-job limit allows.
#[must_use]
pub fn jobs_for(records: usize) -> usize {
    records.div_ceil(MAX_RECORDS_PER_JOB)
}

/// How a model's requests are sent: `execution = 'on_demand' | 'batch' | 'auto'`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Execution {
    /// One request per distinct input, answered in seconds (the default).
    #[default]
    OnDemand,
    /// The query's distinct, uncached requests as batch inference jobs: half the price, no
    /// tokens-per-minute quota, answers within the jobs' hours.
    Batch,
    /// Batch when the query has at least `bedrock.batch_min_rows` distinct, uncached requests,
    /// on demand otherwise.
    Auto,
}

impl Execution {
    /// Every value, as written in SQL.
    pub const NAMES: &'static [&'static str] = &["on_demand", "batch", "auto"];

    /// Reads `on_demand`, `batch` or `auto` (case-insensitive; `on-demand` too).
    ///
    /// # Errors
    /// An [`Error::InvalidInput`] naming the accepted values.
    pub fn parse(text: &str, key: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "on_demand" => Ok(Self::OnDemand),
            "batch" => Ok(Self::Batch),
            "auto" => Ok(Self::Auto),
            _ => Err(Error::InvalidInput(format!(
                "{key} = '{text}' is not a way to run a model: use 'on_demand' (one request per row, the default), 'batch' (Bedrock batch inference jobs) or 'auto' (batch from bedrock.batch_min_rows distinct requests)"
            ))),
        }
    }

    /// `on_demand`, `batch` or `auto`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::OnDemand => "on_demand",
            Self::Batch => "batch",
            Self::Auto => "auto",
        }
    }

    /// Whether the query's requests must be gathered before any is sent (batch and auto).
    #[must_use]
    pub fn gathers(self) -> bool {
        self != Self::OnDemand
    }

    /// Whether `distinct` uncached requests go to batch jobs: `batch` from the service's
    /// minimum of 100 records (fewer are sent on demand), `auto` from `min_rows` (never below
    /// 100).
    #[must_use]
    pub fn uses_jobs(self, distinct: usize, min_rows: u64) -> bool {
        let distinct = distinct as u64;
        match self {
            Self::OnDemand => false,
            Self::Batch => distinct >= MIN_RECORDS_PER_JOB as u64,
            Self::Auto => distinct >= min_rows.max(MIN_RECORDS_PER_JOB as u64),
        }
    }
}

impl fmt::Display for Execution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An engine's batch settings: `batch_role_arn`, `batch_s3_uri`, `batch_timeout_hours` and
/// `batch_s3_endpoint_url`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BatchSettings {
    /// The IAM role Bedrock assumes to read the input and write the output.
    pub role_arn: Option<String>,
    /// The S3 prefix the jobs' files are written under (`s3://bucket/prefix/`).
    pub s3_uri: Option<S3Location>,
    /// Hours a job may run before it expires (24–168). Default 24.
    pub timeout_hours: u32,
    /// An S3-compatible endpoint for the jobs' files instead of AWS's (the emulator's, a
    /// VPC endpoint). Default: AWS's endpoint of the engine's region.
    pub s3_endpoint_url: Option<String>,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            role_arn: None,
            s3_uri: None,
            timeout_hours: 24,
            s3_endpoint_url: None,
        }
    }
}

impl BatchSettings {
    /// Reads `key` (lowercase) when it is a batch parameter; `false` for any other key.
    ///
    /// # Errors
    /// A value of the wrong type or form: a role ARN that is not one, an S3 URI that is not
    /// one, hours outside 24–168, an endpoint that is not an http(s) URL or holds a password.
    pub fn read(&mut self, key: &str, value: &crate::bedrock::params::ParamValue) -> Result<bool> {
        match key {
            "batch_role_arn" => {
                let arn = value.as_text(key)?;
                Self::check_role_arn(&arn)?;
                self.role_arn = Some(arn);
            }
            "batch_s3_uri" => self.s3_uri = Some(S3Location::parse(&value.as_text(key)?, key)?),
            "batch_timeout_hours" => {
                self.timeout_hours =
                    u32::try_from(value.as_integer_in(key, 24, 168)?).unwrap_or(24);
            }
            "batch_s3_endpoint_url" => {
                let url = value.as_text(key)?;
                let shown = crate::bedrock::redact::url_for_display(&url);
                if !(url.starts_with("http://") || url.starts_with("https://")) || shown != url {
                    return Err(Error::InvalidInput(format!(
                        "Parameter 'batch_s3_endpoint_url' = '{shown}' must be an http:// or https:// URL without a user name or password"
                    )));
                }
                self.s3_endpoint_url = Some(url);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks that an IAM role ARN looks like one.
    ///
    /// # Errors
    /// An [`Error::InvalidInput`] showing the expected form.
    pub fn check_role_arn(arn: &str) -> Result<()> {
        let valid = arn.strip_prefix("arn:").and_then(|rest| {
            let mut parts = rest.splitn(5, ':');
            let partition = parts.next()?;
            let service = parts.next()?;
            let region = parts.next()?;
            let account = parts.next()?;
            let resource = parts.next()?;
            Some(
                partition.starts_with("aws")
                    && service == "iam"
                    && region.is_empty()
                    && account.len() == 12
                    && account.bytes().all(|b| b.is_ascii_digit())
                    && resource
                        .strip_prefix("role/")
                        .is_some_and(|r| !r.is_empty()),
            )
        });
        if valid == Some(true) {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!(
                "Parameter 'batch_role_arn' = '{arn}' is not an IAM role ARN: write batch_role_arn = 'arn:aws:iam::123456789012:role/BedrockBatch' (a role Bedrock may assume, allowed to read and write batch_s3_uri)"
            )))
        }
    }

    /// What a model or function asking for `execution` needs of engine `engine` and lacks, as
    /// an error; `Ok` when nothing is missing or the execution is on demand.
    ///
    /// # Errors
    /// An [`Error::InvalidInput`] naming the missing parameters and how to give them.
    pub fn check_ready(&self, engine: &str, execution: Execution, asker: &str) -> Result<()> {
        if execution == Execution::OnDemand {
            return Ok(());
        }
        let missing: Vec<&str> = [
            ("batch_role_arn", self.role_arn.is_none()),
            ("batch_s3_uri", self.s3_uri.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, missing)| missing.then_some(name))
        .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::InvalidInput(format!(
            "{asker} asks for execution = '{execution}', but engine '{engine}' has no {}: batch inference needs an IAM role Bedrock can assume and an S3 prefix for the jobs' files. Create the engine with USING batch_role_arn = 'arn:aws:iam::123456789012:role/BedrockBatch', batch_s3_uri = 's3://bucket/prefix/' (see docs/batch.md), or run it with execution = 'on_demand'",
            missing.join(" and ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executions_read_and_decide() {
        assert_eq!(
            Execution::parse("BATCH", "execution").unwrap(),
            Execution::Batch
        );
        assert_eq!(
            Execution::parse("on-demand", "execution").unwrap(),
            Execution::OnDemand
        );
        assert_eq!(
            Execution::parse("later", "execution")
                .unwrap_err()
                .to_string(),
            "execution = 'later' is not a way to run a model: use 'on_demand' (one request per row, the default), 'batch' (Bedrock batch inference jobs) or 'auto' (batch from bedrock.batch_min_rows distinct requests)"
        );
        assert!(!Execution::Batch.uses_jobs(99, 1000));
        assert!(Execution::Batch.uses_jobs(100, 1000));
        assert!(!Execution::Auto.uses_jobs(999, 1000));
        assert!(Execution::Auto.uses_jobs(1000, 1000));
        // never below the service's minimum
        assert!(!Execution::Auto.uses_jobs(99, 10));
        assert!(Execution::Auto.uses_jobs(100, 10));
        assert!(!Execution::OnDemand.uses_jobs(1_000_000, 1));
    }

    #[test]
    fn role_arns_are_checked() {
        assert!(BatchSettings::check_role_arn("arn:aws:iam::123456789012:role/B").is_ok());
        assert!(BatchSettings::check_role_arn("arn:aws-us-gov:iam::123456789012:role/x/y").is_ok());
        for bad in [
            "role/B",
            "arn:aws:iam::12345:role/B",
            "arn:aws:iam::123456789012:user/B",
            "arn:aws:s3:::bucket",
        ] {
            assert!(BatchSettings::check_role_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn missing_settings_are_named() {
        let settings = BatchSettings::default();
        assert!(
            settings
                .check_ready("e", Execution::OnDemand, "Model 'm'")
                .is_ok()
        );
        assert_eq!(
            settings
                .check_ready("e", Execution::Batch, "Model 'm'")
                .unwrap_err()
                .to_string(),
            "Model 'm' asks for execution = 'batch', but engine 'e' has no batch_role_arn and batch_s3_uri: batch inference needs an IAM role Bedrock can assume and an S3 prefix for the jobs' files. Create the engine with USING batch_role_arn = 'arn:aws:iam::123456789012:role/BedrockBatch', batch_s3_uri = 's3://bucket/prefix/' (see docs/batch.md), or run it with execution = 'on_demand'"
        );
    }
}
