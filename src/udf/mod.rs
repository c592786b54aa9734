//! Async UDFs that call Bedrock.

pub mod model_call;
pub mod predict;
