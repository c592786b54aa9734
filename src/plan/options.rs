//! The extension's session options, set like DataFusion's own:
//! `SET bedrock.max_cost_usd = 5`, `SET bedrock.max_requests = 10000`.

use datafusion::common::extensions_options;
use datafusion::config::ConfigExtension;

extensions_options! {
    /// Per-query limits on what model calls may spend. A query that would pass one stops
    /// before the request that would pass it, with an error saying what was spent.
    pub struct BedrockOptions {
        /// The most estimated USD one query may spend on model calls (unset: no limit).
        /// Each request is admitted with its input estimate plus its whole `max_tokens` (512
        /// when unset) at the model's price; models without a known price count as free.
        pub max_cost_usd: Option<f64>, default = None
        /// The most requests one query may send, retries included (unset: no limit).
        pub max_requests: Option<u64>, default = None
    }
}

impl ConfigExtension for BedrockOptions {
    const PREFIX: &'static str = "bedrock";
}
