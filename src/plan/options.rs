//! The extension's session options, set like DataFusion's own:
//! `SET bedrock.max_cost_usd = 5`, `SET bedrock.max_requests = 10000`, shown by
//! `SHOW bedrock.max_requests` and `SHOW ALL`, reset by `RESET bedrock.max_requests`.

use std::any::Any;

use datafusion::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::error::{DataFusionError, Result};

use crate::bedrock::batch::{DEFAULT_BATCH_MIN_ROWS, Execution, MIN_RECORDS_PER_JOB};

/// Per-query limits on what model calls may spend (a query that would pass one stops before
/// the request that would pass it, with an error saying what was spent), and how models run.
#[derive(Debug, Clone, PartialEq)]
pub struct BedrockOptions {
    /// The most estimated USD one query may spend on model calls (unset: no limit).
    /// Each request is admitted with its input estimate plus its whole `max_tokens` (512 when
    /// unset) at the model's price; models without a known price count as free.
    pub max_cost_usd: Option<f64>,
    /// The most requests one query may send, retries included (unset: no limit).
    pub max_requests: Option<u64>,
    /// How models without an `execution` of their own run: `on_demand` (the default),
    /// `batch` or `auto`.
    pub execution: Execution,
    /// The distinct uncached requests from which `auto` runs batch jobs. Default 1,000; never
    /// below Bedrock's 100 records per job.
    pub batch_min_rows: u64,
    /// Whether a batch's requests are sent grouped by shared prefix (sorted by their text),
    /// so that Bedrock's prompt cache is warm for the requests after the first of a group.
    /// Default true; answers come back in input order either way.
    pub reorder_requests: bool,
    /// Whether EXPLAIN asks Bedrock's `CountTokens` (free) for the input tokens of a sample of
    /// rendered prompts of each model relation, and shows the estimate with its sample size.
    /// Default false.
    pub count_tokens: bool,
    /// The embedding model of the semantic-join rewrite (a Bedrock embedding model id, as
    /// `ai_embed` takes it). Empty (the default): the rewrite is off, and an `ai_filter` over
    /// two relations asks the model about every pair.
    pub semantic_join_embedding_model: String,
    /// How many right rows the semantic-join rewrite keeps for each left row, by cosine
    /// similarity of their embeddings. Default 10.
    pub semantic_join_candidates: u64,
}

/// The default of `bedrock.semantic_join_candidates`.
pub const DEFAULT_SEMANTIC_JOIN_CANDIDATES: u64 = 10;

/// The most candidates per left row `bedrock.semantic_join_candidates` takes.
pub const MAX_SEMANTIC_JOIN_CANDIDATES: u64 = 100_000;

impl Default for BedrockOptions {
    fn default() -> Self {
        Self {
            max_cost_usd: None,
            max_requests: None,
            execution: Execution::OnDemand,
            batch_min_rows: DEFAULT_BATCH_MIN_ROWS,
            reorder_requests: true,
            count_tokens: false,
            semantic_join_embedding_model: String::new(),
            semantic_join_candidates: DEFAULT_SEMANTIC_JOIN_CANDIDATES,
        }
    }
}

const MAX_COST_USD: &str = "max_cost_usd";
const MAX_REQUESTS: &str = "max_requests";
const EXECUTION: &str = "execution";
const BATCH_MIN_ROWS: &str = "batch_min_rows";
const REORDER_REQUESTS: &str = "reorder_requests";
const COUNT_TOKENS: &str = "count_tokens";
const SEMANTIC_JOIN_EMBEDDING_MODEL: &str = "semantic_join_embedding_model";
const SEMANTIC_JOIN_CANDIDATES: &str = "semantic_join_candidates";
const OPTIONS: &[&str] = &[
    MAX_COST_USD,
    MAX_REQUESTS,
    EXECUTION,
    BATCH_MIN_ROWS,
    REORDER_REQUESTS,
    COUNT_TOKENS,
    SEMANTIC_JOIN_EMBEDDING_MODEL,
    SEMANTIC_JOIN_CANDIDATES,
];

impl BedrockOptions {
    /// The options of a session's configuration (the defaults when the extension is absent).
    #[must_use]
    pub fn of_config(config: &datafusion::config::ConfigOptions) -> Self {
        config.extensions.get::<Self>().cloned().unwrap_or_default()
    }

    /// `RESET bedrock.<key>`: the option back to its default.
    ///
    /// # Errors
    /// An unknown key, with the closest one.
    pub fn reset(&mut self, key: &str) -> Result<()> {
        let defaults = Self::default();
        match key {
            MAX_COST_USD => self.max_cost_usd = defaults.max_cost_usd,
            MAX_REQUESTS => self.max_requests = defaults.max_requests,
            EXECUTION => self.execution = defaults.execution,
            BATCH_MIN_ROWS => self.batch_min_rows = defaults.batch_min_rows,
            REORDER_REQUESTS => self.reorder_requests = defaults.reorder_requests,
            COUNT_TOKENS => self.count_tokens = defaults.count_tokens,
            SEMANTIC_JOIN_EMBEDDING_MODEL => {
                self.semantic_join_embedding_model = defaults.semantic_join_embedding_model;
            }
            SEMANTIC_JOIN_CANDIDATES => {
                self.semantic_join_candidates = defaults.semantic_join_candidates;
            }
            other => return Err(DataFusionError::Plan(unknown_option(other))),
        }
        Ok(())
    }

    /// A query's budget under these limits.
    #[must_use]
    pub fn budget(&self) -> crate::bedrock::budget::Budget {
        crate::bedrock::budget::Budget::new(self.max_requests, self.max_cost_usd)
    }

    /// The options of a query's calls: its budget (when limited), the session's execution and
    /// `auto`'s threshold.
    #[must_use]
    pub fn call_options(
        &self,
        budget: &std::sync::Arc<crate::bedrock::budget::Budget>,
    ) -> crate::bedrock::engine::CallOptions {
        crate::bedrock::engine::CallOptions {
            budget: budget.is_limited().then(|| std::sync::Arc::clone(budget)),
            execution: self.execution,
            batch_min_rows: self.batch_min_rows,
            keep_order: !self.reorder_requests,
            stores: None,
        }
    }
}

impl ConfigExtension for BedrockOptions {
    const PREFIX: &'static str = "bedrock";
}

/// The message for a `bedrock.<key>` that does not exist, with the closest one.
#[must_use]
pub fn unknown_option(key: &str) -> String {
    let hint = crate::bedrock::params::suggest(key, OPTIONS)
        .map(|s| format!("; did you mean 'bedrock.{s}'?"))
        .unwrap_or_default();
    format!(
        "Unknown option 'bedrock.{key}': the options are bedrock.{MAX_COST_USD}, bedrock.{MAX_REQUESTS}, bedrock.{EXECUTION}, bedrock.{BATCH_MIN_ROWS}, bedrock.{REORDER_REQUESTS}, bedrock.{COUNT_TOKENS}, bedrock.{SEMANTIC_JOIN_EMBEDDING_MODEL} and bedrock.{SEMANTIC_JOIN_CANDIDATES}{hint}"
    )
}

fn bad_value(key: &str, value: &str, expected: &str) -> DataFusionError {
    DataFusionError::Configuration(format!(
        "bedrock.{key} must be {expected}, not '{value}': e.g. SET bedrock.{key} = 10, or RESET bedrock.{key} for no limit"
    ))
}

/// A `true`/`false` setting (quotes and case ignored).
fn flag(key: &str, value: &str, example: &str) -> Result<bool> {
    match value.trim_matches('\'').to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(DataFusionError::Configuration(format!(
            "bedrock.{key} must be true or false, not '{value}': e.g. SET bedrock.{key} = {example}"
        ))),
    }
}

impl ExtensionOptions for BedrockOptions {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let value = value.trim();
        match key {
            MAX_COST_USD => {
                let usd = value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| bad_value(key, value, "a non-negative number of USD"))?;
                self.max_cost_usd = Some(usd);
            }
            MAX_REQUESTS => {
                let requests = value
                    .parse::<u64>()
                    .map_err(|_| bad_value(key, value, "a whole number of requests"))?;
                self.max_requests = Some(requests);
            }
            EXECUTION => {
                self.execution = Execution::parse(value.trim_matches('\''), "bedrock.execution")
                    .map_err(|e| DataFusionError::Configuration(e.to_string()))?;
            }
            BATCH_MIN_ROWS => {
                let rows = value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= MIN_RECORDS_PER_JOB as u64)
                    .ok_or_else(|| {
                        DataFusionError::Configuration(format!(
                            "bedrock.batch_min_rows must be a whole number of at least {MIN_RECORDS_PER_JOB} (Bedrock takes no batch job of fewer records), not '{value}': e.g. SET bedrock.batch_min_rows = 1000"
                        ))
                    })?;
                self.batch_min_rows = rows;
            }
            REORDER_REQUESTS => {
                self.reorder_requests = flag(key, value, "false to send requests in input order")?;
            }
            COUNT_TOKENS => {
                self.count_tokens = flag(key, value, "true to count sampled prompts in EXPLAIN")?;
            }
            SEMANTIC_JOIN_EMBEDDING_MODEL => {
                value
                    .trim_matches('\'')
                    .trim()
                    .clone_into(&mut self.semantic_join_embedding_model);
            }
            SEMANTIC_JOIN_CANDIDATES => {
                let k = value
                    .trim_matches('\'')
                    .parse::<u64>()
                    .ok()
                    .filter(|k| (1..=MAX_SEMANTIC_JOIN_CANDIDATES).contains(k))
                    .ok_or_else(|| {
                        DataFusionError::Configuration(format!(
                            "bedrock.semantic_join_candidates must be a whole number from 1 to {MAX_SEMANTIC_JOIN_CANDIDATES} (the right rows kept for each left row), not '{value}': e.g. SET bedrock.semantic_join_candidates = 10"
                        ))
                    })?;
                self.semantic_join_candidates = k;
            }
            other => return Err(DataFusionError::Configuration(unknown_option(other))),
        }
        Ok(())
    }

    /// The entries with their whole names (`bedrock.max_requests`), so that `SHOW` finds them.
    fn entries(&self) -> Vec<ConfigEntry> {
        vec![
            ConfigEntry {
                key: format!("{}.{MAX_COST_USD}", Self::PREFIX),
                value: self.max_cost_usd.map(|v| v.to_string()),
                description: "The most estimated USD one query may spend on model calls (unset: no limit).",
            },
            ConfigEntry {
                key: format!("{}.{MAX_REQUESTS}", Self::PREFIX),
                value: self.max_requests.map(|v| v.to_string()),
                description: "The most requests one query may send, retries included (unset: no limit).",
            },
            ConfigEntry {
                key: format!("{}.{EXECUTION}", Self::PREFIX),
                value: Some(self.execution.name().to_string()),
                description: "How models without an execution of their own run: on_demand, batch (Bedrock batch inference jobs) or auto (batch from batch_min_rows distinct requests).",
            },
            ConfigEntry {
                key: format!("{}.{BATCH_MIN_ROWS}", Self::PREFIX),
                value: Some(self.batch_min_rows.to_string()),
                description: "The distinct uncached requests from which execution = 'auto' runs batch jobs (at least 100).",
            },
            ConfigEntry {
                key: format!("{}.{REORDER_REQUESTS}", Self::PREFIX),
                value: Some(self.reorder_requests.to_string()),
                description: "Send a batch's requests grouped by shared prefix, so Bedrock's prompt cache is warm (answers keep input order).",
            },
            ConfigEntry {
                key: format!("{}.{COUNT_TOKENS}", Self::PREFIX),
                value: Some(self.count_tokens.to_string()),
                description: "EXPLAIN asks Bedrock's CountTokens (free) for the input tokens of a sample of each model relation's rendered prompts.",
            },
            ConfigEntry {
                key: format!("{}.{SEMANTIC_JOIN_EMBEDDING_MODEL}", Self::PREFIX),
                value: Some(self.semantic_join_embedding_model.clone()),
                description: "The embedding model of the semantic-join rewrite: an ai_filter over two relations asks only about each left row's nearest right rows (empty: off, every pair is asked).",
            },
            ConfigEntry {
                key: format!("{}.{SEMANTIC_JOIN_CANDIDATES}", Self::PREFIX),
                value: Some(self.semantic_join_candidates.to_string()),
                description: "How many right rows the semantic-join rewrite keeps for each left row, by cosine similarity of their embeddings.",
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::config::ConfigOptions;

    #[test]
    fn options_are_set_shown_and_checked_under_their_whole_names() {
        let mut config = ConfigOptions::new();
        config.extensions.insert(BedrockOptions::default());
        config.set("bedrock.max_requests", "10").unwrap();
        config.set("bedrock.max_cost_usd", " 2.5 ").unwrap();
        let ours: Vec<(String, Option<String>)> = config
            .entries()
            .into_iter()
            .filter(|e| e.key.starts_with("bedrock."))
            .map(|e| (e.key, e.value))
            .collect();
        assert_eq!(
            ours,
            [
                ("bedrock.max_cost_usd".to_string(), Some("2.5".to_string())),
                ("bedrock.max_requests".to_string(), Some("10".to_string())),
                (
                    "bedrock.execution".to_string(),
                    Some("on_demand".to_string())
                ),
                (
                    "bedrock.batch_min_rows".to_string(),
                    Some("1000".to_string())
                ),
                (
                    "bedrock.reorder_requests".to_string(),
                    Some("true".to_string())
                ),
                (
                    "bedrock.count_tokens".to_string(),
                    Some("false".to_string())
                ),
                (
                    "bedrock.semantic_join_embedding_model".to_string(),
                    Some(String::new())
                ),
                (
                    "bedrock.semantic_join_candidates".to_string(),
                    Some("10".to_string())
                ),
            ]
        );
        let error =
            |key: &str, value: &str| config.clone().set(key, value).unwrap_err().to_string();
        assert_eq!(
            error("bedrock.max_requests", "-1"),
            "Invalid or Unsupported Configuration: bedrock.max_requests must be a whole number of requests, not '-1': e.g. SET bedrock.max_requests = 10, or RESET bedrock.max_requests for no limit"
        );
        assert_eq!(
            error("bedrock.max_cost_usd", "NaN"),
            "Invalid or Unsupported Configuration: bedrock.max_cost_usd must be a non-negative number of USD, not 'NaN': e.g. SET bedrock.max_cost_usd = 10, or RESET bedrock.max_cost_usd for no limit"
        );
        assert_eq!(
            error("bedrock.max_request", "1"),
            "Invalid or Unsupported Configuration: Unknown option 'bedrock.max_request': the options are bedrock.max_cost_usd, bedrock.max_requests, bedrock.execution, bedrock.batch_min_rows, bedrock.reorder_requests, bedrock.count_tokens, bedrock.semantic_join_embedding_model and bedrock.semantic_join_candidates; did you mean 'bedrock.max_requests'?"
        );
        assert_eq!(
            error("bedrock.batch_min_rows", "50"),
            "Invalid or Unsupported Configuration: bedrock.batch_min_rows must be a whole number of at least 100 (Bedrock takes no batch job of fewer records), not '50': e.g. SET bedrock.batch_min_rows = 1000"
        );
        assert_eq!(
            error("bedrock.execution", "soon"),
            "Invalid or Unsupported Configuration: bedrock.execution = 'soon' is not a way to run a model: use 'on_demand' (one request per row, the default), 'batch' (Bedrock batch inference jobs) or 'auto' (batch from bedrock.batch_min_rows distinct requests)"
        );
        assert_eq!(
            error("bedrock.reorder_requests", "maybe"),
            "Invalid or Unsupported Configuration: bedrock.reorder_requests must be true or false, not 'maybe': e.g. SET bedrock.reorder_requests = false to send requests in input order"
        );
        config.set("bedrock.reorder_requests", "FALSE").unwrap();
        assert!(!BedrockOptions::of_config(&config).reorder_requests);
        let mut reset = BedrockOptions::of_config(&config);
        reset.reset("reorder_requests").unwrap();
        assert!(reset.reorder_requests);
        assert!(reset.reset("reorder").is_err());
        config.set("bedrock.execution", "batch").unwrap();
        assert_eq!(
            BedrockOptions::of_config(&config).execution,
            Execution::Batch
        );
    }

    #[test]
    fn the_semantic_join_settings_are_set_checked_and_reset() {
        let mut config = ConfigOptions::new();
        config.extensions.insert(BedrockOptions::default());
        let error =
            |key: &str, value: &str| config.clone().set(key, value).unwrap_err().to_string();
        assert_eq!(
            error("bedrock.semantic_join_candidates", "0"),
            "Invalid or Unsupported Configuration: bedrock.semantic_join_candidates must be a whole number from 1 to 100000 (the right rows kept for each left row), not '0': e.g. SET bedrock.semantic_join_candidates = 10"
        );
        config
            .set(
                "bedrock.semantic_join_embedding_model",
                " 'amazon.titan-embed-text-v2:0' ",
            )
            .unwrap();
        config.set("bedrock.semantic_join_candidates", "3").unwrap();
        let mut semantic = BedrockOptions::of_config(&config);
        assert_eq!(
            (
                semantic.semantic_join_embedding_model.as_str(),
                semantic.semantic_join_candidates
            ),
            ("amazon.titan-embed-text-v2:0", 3)
        );
        semantic.reset("semantic_join_embedding_model").unwrap();
        semantic.reset("semantic_join_candidates").unwrap();
        assert_eq!(
            (
                semantic.semantic_join_embedding_model.as_str(),
                semantic.semantic_join_candidates
            ),
            ("", 10)
        );
    }
}
