//! The extension's session options, set like DataFusion's own:
//! `SET bedrock.max_cost_usd = 5`, `SET bedrock.max_requests = 10000`, shown by
//! `SHOW bedrock.max_requests` and `SHOW ALL`, reset by `RESET bedrock.max_requests`.

use std::any::Any;

use datafusion::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::error::{DataFusionError, Result};

/// Per-query limits on what model calls may spend. A query that would pass one stops before
/// the request that would pass it, with an error saying what was spent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BedrockOptions {
    /// The most estimated USD one query may spend on model calls (unset: no limit).
    /// Each request is admitted with its input estimate plus its whole `max_tokens` (512 when
    /// unset) at the model's price; models without a known price count as free.
    pub max_cost_usd: Option<f64>,
    /// The most requests one query may send, retries included (unset: no limit).
    pub max_requests: Option<u64>,
}

const MAX_COST_USD: &str = "max_cost_usd";
const MAX_REQUESTS: &str = "max_requests";

impl BedrockOptions {
    /// The options of a session's configuration (the defaults when the extension is absent).
    #[must_use]
    pub fn of_config(config: &datafusion::config::ConfigOptions) -> Self {
        config.extensions.get::<Self>().cloned().unwrap_or_default()
    }

    /// A query's budget under these limits.
    #[must_use]
    pub fn budget(&self) -> crate::bedrock::budget::Budget {
        crate::bedrock::budget::Budget::new(self.max_requests, self.max_cost_usd)
    }
}

impl ConfigExtension for BedrockOptions {
    const PREFIX: &'static str = "bedrock";
}

/// The message for a `bedrock.<key>` that does not exist, with the closest one.
#[must_use]
pub fn unknown_option(key: &str) -> String {
    let hint = crate::bedrock::params::suggest(key, &[MAX_COST_USD, MAX_REQUESTS])
        .map(|s| format!("; did you mean 'bedrock.{s}'?"))
        .unwrap_or_default();
    format!(
        "Unknown option 'bedrock.{key}': the options are bedrock.{MAX_COST_USD} and bedrock.{MAX_REQUESTS}{hint}"
    )
}

fn bad_value(key: &str, value: &str, expected: &str) -> DataFusionError {
    DataFusionError::Configuration(format!(
        "bedrock.{key} must be {expected}, not '{value}': e.g. SET bedrock.{key} = 10, or RESET bedrock.{key} for no limit"
    ))
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
            "Invalid or Unsupported Configuration: Unknown option 'bedrock.max_request': the options are bedrock.max_cost_usd and bedrock.max_requests; did you mean 'bedrock.max_requests'?"
        );
    }
}
