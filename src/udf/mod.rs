//! Async UDFs that call Bedrock.

pub mod predict;
