//! The engines a scheduler or executor builds for the plans it receives, by [`EngineSpec`]: one
//! engine per spec, shared by every task and query (its limiter, cache and usage counters with
//! it). Each is built from the process's own environment: its default credential chain or the
//! named profile, the spec's region and endpoint, a memory cache.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::bedrock::config::{CredentialSource, Secret};
use crate::bedrock::engine::Engine;
use crate::error::{Error, Result};
use crate::inference::spec::EngineSpec;

/// The engines built for plans from elsewhere, by spec: one per spec, kept for the life of
/// the registry. A scheduler or executor process has one (its codecs share it); each executor
/// of an in-process cluster has its own, as separate processes would.
#[derive(Debug, Default)]
pub struct EngineRegistry {
    engines: Mutex<HashMap<EngineSpec, Arc<Engine>>>,
    planning_only: bool,
}

impl EngineRegistry {
    /// An empty registry for a process that calls models (an executor).
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// An empty registry for a process that only plans (a scheduler): its engines carry the
    /// settings that planning shows (concurrency, prices) and no identity, so a scheduler
    /// needs no AWS credentials. They never send a request: one would be refused as unsigned.
    #[must_use]
    pub fn for_planning() -> Arc<Self> {
        Arc::new(Self {
            engines: Mutex::default(),
            planning_only: true,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EngineSpec, Arc<Engine>>> {
        self.engines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The engine of `spec`: the one built before, else one built now from this process's
    /// environment.
    ///
    /// # Errors
    /// When no engine can be built: no credentials here for an engine whose keys were given
    /// inline elsewhere, a profile that is missing here, or no multi-threaded async runtime to
    /// build on.
    pub fn resolve(&self, spec: &EngineSpec) -> Result<Arc<Engine>> {
        if let Some(engine) = self.lock().get(spec) {
            return Ok(Arc::clone(engine));
        }
        let mut config = spec.config();
        if self.planning_only {
            config.credentials = CredentialSource::ApiKey(Secret::new(""));
        }
        let built =
            block_on(Engine::connect(&spec.name, config))?.map_err(|e| explain(spec, &e))?;
        built.set_origin(spec.clone());
        // Another task may have built it meanwhile: keep the first.
        Ok(Arc::clone(self.lock().entry(spec.clone()).or_insert(built)))
    }

    /// The engines built so far.
    #[must_use]
    pub fn engines(&self) -> Vec<Arc<Engine>> {
        self.lock().values().cloned().collect()
    }
}

/// Why an engine could not be built here, saying what the spec did not bring.
fn explain(spec: &EngineSpec, error: &Error) -> Error {
    Error::InvalidInput(
        spec.credentials
            .missing_here(&spec.name, error.to_string().trim_end_matches('.')),
    )
}

/// Runs `future` to completion from synchronous code that runs on a multi-threaded Tokio
/// runtime (plan decoding is synchronous; building an engine is not).
///
/// # Errors
/// Outside such a runtime.
fn block_on<F: Future>(future: F) -> Result<F::Output> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| {
        Error::InvalidInput(
            "Building an engine for a plan needs a Tokio runtime: decode plans inside one".into(),
        )
    })?;
    if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
        return Err(Error::InvalidInput(
            "Building an engine for a plan needs a multi-threaded Tokio runtime (e.g. #[tokio::main] or #[tokio::test(flavor = \"multi_thread\")])".into(),
        ));
    }
    Ok(tokio::task::block_in_place(|| handle.block_on(future)))
}
