//! The extension's catalog: engines and models, validated, with secrets redacted.

pub mod model;
