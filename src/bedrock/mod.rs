//! The Bedrock client layer: engines, model families, and the throughput machinery.
//!
//! An [`Engine`](engine::Engine) holds the AWS clients of one identity and region. Its
//! [`generate`](engine::Engine::generate) and [`embed_with`](engine::Engine::embed_with) take a
//! batch of inputs (with NULLs) and return one result per input, in order, sending at most one
//! request per distinct input, reusing cached answers, keeping up to `max_concurrency` requests
//! in flight per model (adapted to throttling), and retrying what Bedrock says may succeed
//! later.
//!
//! ```no_run
//! use datafusion_bedrock::bedrock::config::EngineConfig;
//! use datafusion_bedrock::bedrock::engine::{Api, Engine, ModelTarget};
//! use datafusion_bedrock::bedrock::request::{InferenceParams, TextRequest};
//! # async fn demo() -> datafusion_bedrock::Result<()> {
//! let config = EngineConfig { region: Some("us-east-1".into()), ..EngineConfig::default() };
//! let engine = Engine::connect("bedrock_engine", config).await?; // checks the credentials
//! let target = ModelTarget { model_id: "amazon.titan-text-premier-v1:0".into(), api: Api::Converse };
//! let params = InferenceParams { max_tokens: Some(100), temperature: Some(0.3), ..Default::default() };
//! let prompts = vec![
//!     Some(TextRequest::prompt("What is the capital of Sweden?", params.clone())),
//!     None,                                                              // a NULL row: no request
//!     Some(TextRequest::prompt("What is the capital of Sweden?", params)), // a duplicate: no request
//! ];
//! let answers = engine.generate(&target, &prompts).await;              // 3 results, 1 request
//! assert_eq!(answers.len(), 3);
//! println!("{:?}", engine.usage());                                     // requests, tokens, USD
//! # Ok(()) }
//! ```

pub mod backoff;
pub mod batch;
pub mod budget;
pub mod cache;
pub mod config;
pub mod context_window;
pub mod engine;
pub mod families;
mod identity;
pub mod limiter;
pub mod media;
pub mod params;
pub mod prompt_cache;
pub mod redact;
pub mod request;
pub mod retry;
pub mod usage;
