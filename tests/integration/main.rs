//! The integration test binary: every module drives the real AWS SDK clients against the
//! built-in emulator on 127.0.0.1.

#[cfg(feature = "emulator")]
mod support;

#[cfg(feature = "emulator")]
mod batch;
#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod cli_cluster;
#[cfg(feature = "cli")]
mod cli_datafusion;
#[cfg(feature = "cli")]
mod cli_hardening;
#[cfg(feature = "emulator")]
mod client_engine;
#[cfg(all(feature = "distributed", feature = "emulator"))]
mod cluster;
#[cfg(feature = "emulator")]
mod emulator_control;
#[cfg(feature = "emulator")]
mod emulator_families;
#[cfg(feature = "emulator")]
mod emulator_runtime;
#[cfg(feature = "cli")]
mod emulator_s3;
#[cfg(feature = "emulator")]
mod identity;
#[cfg(feature = "emulator")]
mod packing;
#[cfg(feature = "emulator")]
mod semantic_join;
#[cfg(feature = "emulator")]
mod session_extension;
#[cfg(feature = "emulator")]
mod sql_accounting;
#[cfg(feature = "emulator")]
mod sql_bounds;
#[cfg(feature = "emulator")]
mod sql_conversation;
#[cfg(feature = "emulator")]
mod sql_ddl;
#[cfg(feature = "emulator")]
mod sql_functions;
#[cfg(feature = "emulator")]
mod sql_predict;
#[cfg(feature = "emulator")]
mod sql_relations;
