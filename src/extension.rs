//! How the extension adds itself to a DataFusion session: one builder call,
//! [`SessionStateBuilderBedrock::with_bedrock`], in the idiom of DataFusion's own extensions.
//!
//! ```text
//! SessionStateBuilder
//!   └─ with_bedrock()
//!        ├─ query planner     BedrockQueryPlanner (wraps the planner already installed)
//!        ├─ analyzer rule     ModelRelationRule, just before type coercion
//!        ├─ physical rule     ModelInputOrder (row order for the conversational modes)
//!        ├─ config extension  BedrockOptions (`SET bedrock.max_requests = …`)
//!        ├─ session extension BedrockExtension: the engines and models of this session
//!        └─ functions         ai_complete, ai_embed, ai_filter, ai_classify,
//!                             cosine_similarity, bedrock_usage()
//! ```
//!
//! Everything lives in the session state, so every clone of a `SessionContext`, every
//! `DataFrame` and every `SessionState` taken from it sees the same engines and models.
//! The extension's statements (`CREATE ML_ENGINE`, `CREATE MODEL`, …) run through
//! [`crate::execute_sql`] on any `SessionContext` built this way.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use datafusion::catalog::TableFunction;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::registry::FunctionRegistry;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::optimizer::Analyzer;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::Catalog;
use crate::catalog::persist::CatalogFile;
use crate::plan::model_node::{BedrockQueryPlanner, ModelInputOrder};
use crate::plan::options::BedrockOptions;
use crate::plan::rewrite::ModelRelationRule;
use crate::udf;

/// The extension's part of a session: its engines and models, the endpoint that engines
/// without `endpoint_url` use, and the catalog file that keeps them between runs.
///
/// It is stored as a [`SessionConfig`] extension, so it travels with the session state.
#[derive(Default)]
pub struct BedrockExtension {
    catalog: Arc<Catalog>,
    default_endpoint: RwLock<Option<String>>,
    catalog_file: RwLock<Option<Arc<CatalogFile>>>,
}

impl std::fmt::Debug for BedrockExtension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockExtension")
            .field("engines", &self.catalog.engine_names())
            .field("default_endpoint", &self.default_endpoint())
            .field(
                "catalog_file",
                &self.catalog_file().map(|f| f.path().to_path_buf()),
            )
            .finish()
    }
}

impl BedrockExtension {
    /// A new, empty extension state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The extension state of a session, if the session has the extension.
    pub fn of(config: &SessionConfig) -> Option<Arc<Self>> {
        config.get_extension::<Self>()
    }

    /// The extension state of a session, or an error saying how to add the extension.
    ///
    /// # Errors
    /// When the session was built without [`SessionStateBuilderBedrock::with_bedrock`].
    pub fn of_session(ctx: &SessionContext) -> Result<Arc<Self>> {
        Self::of_state(&ctx.state())
    }

    /// [`BedrockExtension::of_session`] for a `SessionState`.
    ///
    /// # Errors
    /// When the state was built without [`SessionStateBuilderBedrock::with_bedrock`].
    pub fn of_state(state: &SessionState) -> Result<Arc<Self>> {
        Self::of(state.config()).ok_or_else(|| {
            DataFusionError::Plan(
                "This session does not have the Bedrock extension: build it with \
                 SessionStateBuilder::new().with_default_features().with_bedrock() \
                 (use datafusion_bedrock::SessionStateBuilderBedrock)"
                    .into(),
            )
        })
    }

    /// The engines and models.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The endpoint of engines created without `endpoint_url` (`None`: AWS's).
    pub fn default_endpoint(&self) -> Option<String> {
        self.default_endpoint
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes engines created from now on without `endpoint_url` use `url` (the built-in
    /// emulator in tests and demos).
    pub fn set_default_endpoint(&self, url: Option<String>) {
        *self
            .default_endpoint
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = url;
    }

    /// The catalog file that records engines and models, if any.
    pub fn catalog_file(&self) -> Option<Arc<CatalogFile>> {
        self.catalog_file
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records every later create, replace or drop in `file`
    /// (see [`crate::restore_catalog`] to recreate what it already holds).
    pub fn set_catalog_file(&self, file: Option<CatalogFile>) {
        *self
            .catalog_file
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = file.map(Arc::new);
    }
}

/// Adds the extension to a [`SessionStateBuilder`], as `datafusion-spark`'s
/// `with_spark_features` does for its functions:
///
/// ```
/// use datafusion::execution::SessionStateBuilder;
/// use datafusion::prelude::SessionContext;
/// use datafusion_bedrock::SessionStateBuilderBedrock;
///
/// let state = SessionStateBuilder::new()
///     .with_default_features()
///     .with_bedrock()
///     .build();
/// let ctx = SessionContext::new_with_state(state);
/// assert!(ctx.udf("ai_complete").is_ok());
/// ```
///
/// Call it after `with_default_features` and after `with_config` (which replaces the whole
/// configuration, the extension's part included). It keeps what is already installed: a
/// query planner of the application's own is wrapped (plans without model relations go to it
/// unchanged), analyzer and physical rules are added beside the existing ones. Calling it
/// twice installs the extension once.
pub trait SessionStateBuilderBedrock {
    /// Adds the extension with a new, empty [`BedrockExtension`].
    fn with_bedrock(self) -> Self;

    /// Adds the extension with the given state (to share engines and models between
    /// sessions, or to set a default endpoint before building).
    fn with_bedrock_extension(self, extension: Arc<BedrockExtension>) -> Self;
}

impl SessionStateBuilderBedrock for SessionStateBuilder {
    fn with_bedrock(self) -> Self {
        self.with_bedrock_extension(Arc::new(BedrockExtension::new()))
    }

    fn with_bedrock_extension(mut self, extension: Arc<BedrockExtension>) -> Self {
        let config = self.config().get_or_insert_with(SessionConfig::new);
        if BedrockExtension::of(config).is_some() {
            // Installed already: keep the session's engines and models.
            return self;
        }
        config.set_extension(Arc::clone(&extension));
        if config
            .options()
            .extensions
            .get::<BedrockOptions>()
            .is_none()
        {
            config
                .options_mut()
                .extensions
                .insert(BedrockOptions::default());
        }

        let inner = self.query_planner().take();
        *self.query_planner() = Some(Arc::new(BedrockQueryPlanner::wrapping(inner)));

        let analyzer = self.analyzer().get_or_insert_with(Analyzer::new);
        let at = analyzer
            .rules
            .iter()
            .position(|r| r.name() == "type_coercion")
            .unwrap_or(0);
        analyzer.rules.insert(at, Arc::new(ModelRelationRule));

        self.physical_optimizer_rules()
            .get_or_insert_with(Vec::new)
            .push(Arc::new(ModelInputOrder));

        self.scalar_functions()
            .get_or_insert_with(Vec::new)
            .extend(udf::scalar_functions(extension.catalog()));
        let usage = udf::bedrock_usage_function(extension.catalog());
        self.table_functions()
            .get_or_insert_with(HashMap::new)
            .insert(usage.name().to_string(), usage);
        self
    }
}

/// Registers the AI functions alone (`ai_complete`, `ai_embed`, `ai_filter`, `ai_classify`,
/// `cosine_similarity`) on any function registry, resolving models and engines in `extension`.
/// The `bedrock_usage()` table function is [`bedrock_usage_function`]; model relations need
/// the whole extension ([`SessionStateBuilderBedrock::with_bedrock`]).
///
/// # Errors
/// What the registry reports.
pub fn register_functions(
    registry: &mut dyn FunctionRegistry,
    extension: &BedrockExtension,
) -> Result<()> {
    for function in udf::scalar_functions(extension.catalog()) {
        registry.register_udf(function)?;
    }
    Ok(())
}

/// The `bedrock_usage()` table function of an extension state.
pub fn bedrock_usage_function(extension: &BedrockExtension) -> Arc<TableFunction> {
    udf::bedrock_usage_function(extension.catalog())
}
