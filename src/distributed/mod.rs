//! The extension on an Apache DataFusion Ballista cluster (cargo feature `distributed`).
//!
//! - [`codec`]: how model relations, their operators and bound AI functions cross processes
//!   (model and engine specs, never a secret);
//! - [`engines`]: the engines a scheduler or executor builds from those specs and its own
//!   environment, one per spec;
//! - [`budget_share`]: how `bedrock.max_requests` and `bedrock.max_cost_usd` hold across tasks;
//! - [`cluster`]: the scheduler's sessions, the executors' functions, `datafusion-bedrock
//!   scheduler` / `executor`, a client session ([`cluster_session`]) and an in-process
//!   cluster ([`LocalCluster`]).

pub mod budget_share;
pub mod cluster;
pub mod codec;
pub mod engines;

pub use cluster::{
    ExecutorOptions, LocalCluster, SchedulerOptions, cluster_session, run_executor, run_scheduler,
};
pub use codec::{BedrockLogicalCodec, BedrockPhysicalCodec};
pub use engines::EngineRegistry;
