//! # datafusion-bedrock
//!
//! Amazon Bedrock foundation models inside Apache DataFusion SQL: MindsDB's
//! `CREATE ML_ENGINE … FROM bedrock`, `CREATE MODEL … PREDICT … USING …` and
//! `SELECT … FROM data JOIN model`, on any table DataFusion reads.
//!
//! The one entry point is [`BedrockContext`]: wrap a `SessionContext`, then use
//! [`BedrockContext::sql`] for both the extension's statements and DataFusion's; the returned
//! `DataFrame`s work with the whole DataFrame API.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> datafusion::error::Result<()> {
//! use datafusion::assert_batches_eq;
//! use datafusion::prelude::SessionContext;
//! use datafusion_bedrock::BedrockContext;
//! # use datafusion_bedrock::emulator::{Emulator, EmulatorConfig};
//! # let emulator = Emulator::start(EmulatorConfig::default()).await?;
//!
//! let ctx = BedrockContext::new(SessionContext::new())
//!     // Engines without `endpoint_url` use the built-in emulator: nothing reaches AWS.
//!     .with_default_endpoint(emulator.url());
//! ctx.sql("CREATE ML_ENGINE bedrock_engine FROM bedrock USING region_name = 'us-east-1', api_key = 'demo'")
//!     .await?;
//! ctx.sql("CREATE MODEL capital PREDICT answer USING engine = 'bedrock_engine', \
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
//! Parts, each a cargo feature on by default: the `datafusion-bedrock` shell ([`shell`],
//! feature `cli`), the sqllogictest driver ([`slt`], feature `slt`) and the wire-faithful local
//! Bedrock emulator ([`emulator`], feature `emulator`) that the real AWS SDK clients talk to
//! over HTTP on 127.0.0.1, so tests, examples and benchmarks never reach AWS. Embedders who
//! need none of them use `default-features = false`.

#![warn(missing_docs)]

pub mod bedrock;
pub mod catalog;
pub mod context;
pub mod error;
pub mod plan;
pub mod sql;
pub mod udf;

#[cfg(feature = "emulator")]
pub mod emulator;
#[cfg(feature = "cli")]
pub mod shell;
#[cfg(feature = "slt")]
pub mod slt;

pub use context::BedrockContext;
pub use error::{Error, Result};
