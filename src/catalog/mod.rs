//! The extension's catalog: engines and models, validated, with secrets redacted.

pub mod model;
pub mod output_schema;
pub mod persist;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::bedrock::engine::{Engine, FoundationModelInfo};
use model::ModelSpec;

/// A model in the catalog: its spec and what the control plane said of its foundation model.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    /// The validated specification.
    pub spec: ModelSpec,
    /// The foundation model's details (checked at creation).
    pub info: FoundationModelInfo,
}

/// Engines and models by name.
#[derive(Debug, Default)]
pub struct Catalog {
    engines: RwLock<BTreeMap<String, Arc<Engine>>>,
    models: RwLock<BTreeMap<String, Arc<ModelEntry>>>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Catalog {
    /// An engine by name.
    pub fn engine(&self, name: &str) -> Option<Arc<Engine>> {
        read(&self.engines).get(name).cloned()
    }

    /// Every engine, by name.
    pub fn engines(&self) -> Vec<Arc<Engine>> {
        read(&self.engines).values().cloned().collect()
    }

    /// Every engine name.
    pub fn engine_names(&self) -> Vec<String> {
        read(&self.engines).keys().cloned().collect()
    }

    /// ` — did you mean 'x'?` for an engine name that does not exist but is close to one that
    /// does.
    pub fn engine_suggestion(&self, name: &str) -> Option<String> {
        let names = self.engine_names();
        crate::bedrock::params::did_you_mean(
            name,
            &names.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    }

    /// Adds or replaces an engine.
    pub fn put_engine(&self, engine: Arc<Engine>) {
        write(&self.engines).insert(engine.name().to_string(), engine);
    }

    /// Removes an engine; `None` if there was none.
    pub fn remove_engine(&self, name: &str) -> Option<Arc<Engine>> {
        write(&self.engines).remove(name)
    }

    /// A model by name.
    pub fn model(&self, name: &str) -> Option<Arc<ModelEntry>> {
        read(&self.models).get(name).cloned()
    }

    /// Every model, by name.
    pub fn models(&self) -> Vec<Arc<ModelEntry>> {
        read(&self.models).values().cloned().collect()
    }

    /// Adds or replaces a model.
    pub fn put_model(&self, entry: ModelEntry) {
        write(&self.models).insert(entry.spec.name.clone(), Arc::new(entry));
    }

    /// Removes a model; `None` if there was none.
    pub fn remove_model(&self, name: &str) -> Option<Arc<ModelEntry>> {
        write(&self.models).remove(name)
    }

    /// The models that use an engine.
    pub fn models_of(&self, engine: &str) -> Vec<String> {
        read(&self.models)
            .values()
            .filter(|m| m.spec.engine == engine)
            .map(|m| m.spec.name.clone())
            .collect()
    }
}
