//! Model calls: the one path every row takes to a model, whether it comes from a model relation
//! (`FROM data JOIN model`) or an AI function (`ai_complete`, `ai_filter`, `ai_classify`,
//! `ai_embed`, `predict_<model>`).
//!
//! - [`bound`]: the model bound at planning, carried in the plan;
//! - [`call`]: render → dedup → cache → limiter → request → retries → answer or row error;
//! - [`packing`]: several rows in one request (`rows_per_request`), split until aligned;
//! - [`answer`]: each row's answer and provenance, and the columns they become;
//! - [`metrics`]: what EXPLAIN ANALYZE counts;
//! - [`text`]: inputs as text.

pub mod answer;
pub mod bound;
pub mod call;
pub mod created;
pub mod media;
pub mod media_column;
pub mod metrics;
pub mod packing;
pub mod spec;
pub mod text;

pub use answer::{CallStats, RowAnswer, RowMeta};
pub use bound::BoundModel;
pub use call::{Ask, ModelCall};
pub use created::CreatedModel;
pub use metrics::CallMetrics;
