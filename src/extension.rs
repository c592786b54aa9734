//! How the extension adds itself to a DataFusion session: one builder call,
//! [`SessionStateBuilderBedrock::with_bedrock`], in the idiom of DataFusion's own extensions.
//!
//! ```text
//! SessionStateBuilder
//!   └─ with_bedrock()
//!        ├─ query planner     BedrockQueryPlanner (wraps the planner already installed)
//!        ├─ analyzer rules    ModelRelationRule and BindAiFunctions, just before type coercion
//!        ├─ optimizer rule    SemanticJoinRule (an AI function over two relations), last
//!        ├─ physical rules    ModelInputOrder (row order for the conversational modes),
//!        │                    RunAiFunctions (AI functions under the query's budget)
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
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::Catalog;
use crate::catalog::persist::CatalogFile;
use crate::plan::ai_function_exec::RunAiFunctions;
use crate::plan::input_order::ModelInputOrder;
use crate::plan::options::BedrockOptions;
use crate::plan::planner::BedrockQueryPlanner;
use crate::plan::rewrite::ModelRelationRule;
use crate::plan::semantic_join::rule::SemanticJoinRule;
use crate::udf;
use crate::udf::aggregates::PlanAiAggregates;
use crate::udf::function::BindAiFunctions;

/// The extension's part of a session: its engines and models, the endpoint that engines
/// without `endpoint_url` use, and the catalog file that keeps them between runs.
///
/// It is stored as a [`SessionConfig`] extension, so it travels with the session state.
#[derive(Default)]
pub struct BedrockExtension {
    catalog: Arc<Catalog>,
    default_endpoint: RwLock<Option<String>>,
    default_s3_endpoint: RwLock<Option<String>>,
    catalog_file: RwLock<Option<Arc<CatalogFile>>>,
}

impl std::fmt::Debug for BedrockExtension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockExtension")
            .field("engines", &self.catalog.engine_names())
            .field("default_endpoint", &self.default_endpoint())
            .field("default_s3_endpoint", &self.default_s3_endpoint())
            .field(
                "catalog_file",
                &self.catalog_file().map(|f| f.path().to_path_buf()),
            )
            .finish()
    }
}

impl BedrockExtension {
    /// A new, empty extension state.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The extension state of a session, if the session has the extension.
    #[must_use]
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

    /// The S3 endpoint of engines created without `batch_s3_endpoint_url` (`None`: AWS's).
    pub fn default_s3_endpoint(&self) -> Option<String> {
        self.default_s3_endpoint
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes engines created from now on without `batch_s3_endpoint_url` write their batch
    /// jobs' files to `url` (the built-in emulator's S3 endpoint in tests and demos).
    pub fn set_default_s3_endpoint(&self, url: Option<String>) {
        *self
            .default_s3_endpoint
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
/// use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
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
    #[must_use]
    fn with_bedrock(self) -> Self;

    /// Adds the extension with the given state (to share engines and models between
    /// sessions, or to set a default endpoint before building).
    #[must_use]
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
        analyzer.rules.insert(at, Arc::new(BindAiFunctions));
        analyzer.rules.insert(at, Arc::new(PlanAiAggregates));
        analyzer.rules.insert(at, Arc::new(ModelRelationRule));

        self.optimizer_rules()
            .get_or_insert_with(Vec::new)
            .push(Arc::new(SemanticJoinRule::new(Arc::clone(
                extension.catalog(),
            ))));

        self.physical_optimizer_rules()
            .get_or_insert_with(Vec::new)
            .extend([
                Arc::new(ModelInputOrder) as Arc<dyn PhysicalOptimizerRule + Send + Sync>,
                Arc::new(RunAiFunctions),
            ]);

        self.scalar_functions()
            .get_or_insert_with(Vec::new)
            .extend(udf::scalar_functions(extension.catalog()));
        self.aggregate_functions()
            .get_or_insert_with(Vec::new)
            .extend(udf::aggregate_functions(extension.catalog()));
        let functions = self.table_functions().get_or_insert_with(HashMap::new);
        for function in udf::table_functions(extension.catalog()) {
            functions.insert(function.name().to_string(), function);
        }
        self
    }
}

/// Adds the extension to a `SessionContext` that already exists, for applications that get
/// their session from elsewhere:
///
/// ```
/// use datafusion::execution::FunctionRegistry;
/// use datafusion::prelude::SessionContext;
/// use datafusion_bedrock::SessionContextBedrock;
///
/// let ctx = SessionContext::new(); // an application's session
/// let ctx = ctx.with_bedrock();
/// assert!(ctx.udf("ai_complete").is_ok());
/// ```
///
/// DataFusion cannot change a session's query planner in place, so this takes the context and
/// returns a new one over the same state (tables, catalogs, settings, functions, rules) plus the
/// extension: use the returned context from then on (something that kept a weak reference to
/// the old one's state, such as `datafusion-cli`'s dynamic catalog, must be made again).
/// Where you build the session yourself, prefer [`SessionStateBuilderBedrock::with_bedrock`].
///
/// It also undoes two changes that rebuilding a state through DataFusion's
/// `SessionStateBuilder::new_from_existing` makes: `create_default_catalog_and_schema` keeps
/// its value, and a name that is both one function's name and another's alias resolves to the
/// same function as before (the builder re-registers functions in hash order).
pub trait SessionContextBedrock {
    /// The same session with the extension.
    #[must_use]
    fn with_bedrock(self) -> SessionContext;
}

impl SessionContextBedrock for SessionContext {
    fn with_bedrock(self) -> SessionContext {
        let before = self.state();
        let create_default = before
            .config()
            .options()
            .catalog
            .create_default_catalog_and_schema;
        let mut state = self.into_state_builder().with_bedrock().build();
        state
            .config_mut()
            .options_mut()
            .catalog
            .create_default_catalog_and_schema = create_default;
        restore_function_names(&mut state, &before);
        SessionContext::new_with_state(state)
    }
}

/// The functions of `before` whose names resolve to another function in `now`, skipping the
/// names in `skip`.
fn moved<T: PartialEq + ?Sized>(
    before: &HashMap<String, Arc<T>>,
    now: &HashMap<String, Arc<T>>,
    skip: &[String],
) -> Vec<Arc<T>> {
    before
        .iter()
        .filter(|(name, function)| {
            !skip.contains(name)
                && !now
                    .get(*name)
                    .is_some_and(|f| Arc::ptr_eq(f, function) || **f == ***function)
        })
        .map(|(_, function)| Arc::clone(function))
        .collect()
}

/// Makes every function name of `before` (that the extension does not define) resolve in
/// `state` to the function it resolved to in `before`. Registering a function sets its name
/// and aliases, so names fixed early may be taken again by a later registration: repeat until
/// nothing changes (in practice once or twice).
fn restore_function_names(state: &mut SessionState, before: &SessionState) {
    let ours: Vec<String> = udf::scalar_functions(&Arc::new(Catalog::default()))
        .iter()
        .flat_map(|f| std::iter::once(f.name().to_string()).chain(f.aliases().iter().cloned()))
        .collect();
    for _ in 0..8 {
        let scalars = moved(before.scalar_functions(), state.scalar_functions(), &ours);
        let aggregates = moved(
            before.aggregate_functions(),
            state.aggregate_functions(),
            &[],
        );
        let windows = moved(before.window_functions(), state.window_functions(), &[]);
        if scalars.is_empty() && aggregates.is_empty() && windows.is_empty() {
            return;
        }
        for function in scalars {
            let _ = state.register_udf(function);
        }
        for function in aggregates {
            let _ = state.register_udaf(function);
        }
        for function in windows {
            let _ = state.register_udwf(function);
        }
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
