//! # datafusion-bedrock
//!
//! Amazon Bedrock foundation models inside Apache DataFusion SQL.
//!
//! This release provides the foundation every other part stands on: a wire-faithful local
//! Bedrock emulator ([`emulator`], feature `emulator`) that the real AWS SDK clients talk to
//! over HTTP on 127.0.0.1, so tests, examples and benchmarks never reach AWS.

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
