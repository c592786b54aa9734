//! # datafusion-bedrock
//!
//! Amazon Bedrock foundation models inside Apache DataFusion SQL: MindsDB's
//! `CREATE ML_ENGINE … FROM bedrock`, `CREATE MODEL … PREDICT … USING …` and
//! `SELECT … FROM data JOIN model`, on any table DataFusion reads.
//!
//! The extension lives in DataFusion's session: one builder call,
//! [`SessionStateBuilderBedrock::with_bedrock`], adds its planner, rules, settings, AI
//! functions and model registry; [`execute_sql`] runs the extension's statements (and any
//! other SQL) on the session. The returned `DataFrame`s work with the whole DataFrame API, and
//! every clone of the session sees the same engines and models.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> datafusion::error::Result<()> {
//! use datafusion::assert_batches_eq;
//! use datafusion::execution::SessionStateBuilder;
//! use datafusion::prelude::SessionContext;
//! use datafusion_bedrock::{BedrockExtension, SessionStateBuilderBedrock, execute_sql};
//! # use datafusion_bedrock::emulator::{Emulator, EmulatorConfig};
//! # let emulator = Emulator::start(EmulatorConfig::default()).await?;
//!
//! let state = SessionStateBuilder::new()
//!     .with_default_features()
//!     .with_bedrock()
//!     .build();
//! let ctx = SessionContext::new_with_state(state);
//! // Engines without `endpoint_url` use the built-in emulator: nothing reaches AWS.
//! BedrockExtension::of_session(&ctx)?.set_default_endpoint(Some(emulator.url().to_string()));
//!
//! execute_sql(&ctx, "CREATE ML_ENGINE bedrock_engine FROM bedrock USING region_name = 'us-east-1', api_key = 'demo'")
//!     .await?;
//! execute_sql(&ctx, "CREATE MODEL capital PREDICT answer USING engine = 'bedrock_engine', \
//!          prompt_template = 'What is the capital of {{country}}?'")
//!     .await?;
//! let answers = ctx
//!     .sql("SELECT d.country, m.answer \
//!           FROM (VALUES ('Sweden'), ('Norway')) AS d(country) JOIN capital AS m")
//!     .await?
//!     .collect()
//!     .await?;
//! assert_batches_eq!(
//!     [
//!         "+---------+--------------------------------------------------------------------------------------------------+",
//!         "| country | answer                                                                                           |",
//!         "+---------+--------------------------------------------------------------------------------------------------+",
//!         "| Sweden  | Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): What is the capital of Sweden? |",
//!         "| Norway  | Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): What is the capital of Norway? |",
//!         "+---------+--------------------------------------------------------------------------------------------------+",
//!     ],
//!     &answers
//! );
//! # Ok(())
//! # }
//! ```
//!
//! Plain queries over models (`ctx.sql("… JOIN capital AS m")`) work through DataFusion's own
//! `SessionContext::sql`, since the rewrite of model relations is an analyzer rule of the
//! session. [`BedrockContext`] is a small convenience over such a session.
//!
//! Parts, each a cargo feature on by default: the `datafusion-bedrock` shell ([`shell`],
//! feature `cli`), the sqllogictest driver ([`slt`], feature `slt`), the Ballista cluster
//! support ([`distributed`], feature `distributed`) and the wire-faithful local
//! Bedrock emulator ([`emulator`], feature `emulator`) that the real AWS SDK clients talk to
//! over HTTP on 127.0.0.1, so tests, examples and benchmarks never reach AWS. Embedders who
//! need none of them use `default-features = false`.

#![warn(missing_docs)]

pub mod bedrock;
pub mod catalog;
pub mod context;
pub mod error;
pub mod extension;
pub mod files;
pub mod inference;
pub mod plan;
pub mod sql;
pub mod udf;

#[cfg(feature = "distributed")]
pub mod distributed;
#[cfg(feature = "emulator")]
pub mod emulator;
#[cfg(feature = "cli")]
pub mod shell;
#[cfg(feature = "slt")]
pub mod slt;

pub use context::BedrockContext;
pub use error::{Error, Result};
pub use extension::{
    BedrockExtension, SessionContextBedrock, SessionStateBuilderBedrock, bedrock_usage_function,
    register_functions,
};
pub use files::{RegisteredFiles, register_files_dir};
pub use sql::execute::{execute_sql, prepare_plan, restore_catalog};
