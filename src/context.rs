//! [`BedrockContext`]: a DataFusion `SessionContext` that also understands the extension's
//! statements (`CREATE ML_ENGINE`, `CREATE MODEL`, `SHOW`, `DESCRIBE`, `DROP`).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::ScalarUDF;
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;

use crate::bedrock::config::{CredentialSource, EngineConfig};
use crate::bedrock::engine::Engine;
use crate::bedrock::params::suggest;
use crate::catalog::model::ModelSpec;
use crate::catalog::persist::CatalogFile;
use crate::catalog::{Catalog, ModelEntry};
use crate::error::Error;
use crate::plan::model_node::{BedrockQueryPlanner, ModelInputOrder};
use crate::plan::model_table::ModelTable;
use crate::plan::options::BedrockOptions;
use crate::plan::rewrite::ModelRelationRule;
use crate::sql::parser::{BedrockStatement, ParsedStatement, QualifiedName, parse_sql};
use crate::udf::model_call::ModelCall;
use crate::udf::predict::PredictUdf;

/// A session that runs DataFusion SQL plus the extension's statements.
pub struct BedrockContext {
    ctx: SessionContext,
    catalog: Arc<Catalog>,
    default_endpoint: Option<String>,
    catalog_file: Option<Arc<CatalogFile>>,
}

impl std::fmt::Debug for BedrockContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockContext")
            .field("engines", &self.catalog.engine_names())
            .field("default_endpoint", &self.default_endpoint)
            .finish_non_exhaustive()
    }
}

fn user_error(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(message.into())
}

fn from_error(e: Error) -> DataFusionError {
    match e {
        Error::InvalidInput(m) => DataFusionError::Plan(m),
        other => DataFusionError::External(Box::new(other)),
    }
}

fn joined(name: &QualifiedName) -> String {
    name.join(".")
}

impl BedrockContext {
    /// Wraps a session: the returned context shares its catalogs, tables, functions and
    /// settings, and adds the extension's statements, the model-relation rewrite and the query
    /// planner of the conversational modes ([`BedrockQueryPlanner`], which replaces the
    /// session's query planner and delegates everything else to DataFusion's).
    pub fn new(ctx: SessionContext) -> Self {
        let state = SessionStateBuilder::new_from_existing(ctx.state())
            .with_query_planner(Arc::new(BedrockQueryPlanner))
            .with_physical_optimizer_rule(Arc::new(ModelInputOrder))
            .build();
        let mut state = state;
        state
            .config_mut()
            .options_mut()
            .extensions
            .insert(BedrockOptions::default());
        let ctx = SessionContext::new_with_state(state);
        ctx.add_analyzer_rule(Arc::new(ModelRelationRule));
        let catalog = Arc::new(Catalog::default());
        crate::udf::register_ai_functions(&ctx, &catalog);
        Self {
            ctx,
            catalog,
            default_endpoint: None,
            catalog_file: None,
        }
    }

    /// Engines created without `endpoint_url` use this endpoint (the built-in emulator in
    /// tests and demos).
    #[must_use]
    pub fn with_default_endpoint(mut self, url: impl Into<String>) -> Self {
        self.default_endpoint = Some(url.into());
        self
    }

    /// Keeps the engines and models in a catalog file: every create, replace or drop that
    /// changes the catalog rewrites it. Call [`BedrockContext::restore_catalog`] to recreate
    /// what the file already holds.
    #[must_use]
    pub fn with_catalog_file(mut self, file: CatalogFile) -> Self {
        self.catalog_file = Some(Arc::new(file));
        self
    }

    /// Recreates the engines and models of the catalog file (see
    /// [`BedrockContext::with_catalog_file`]), in the order they were created. What cannot be
    /// recreated (an endpoint that is down, a model that went away) is skipped, stays in the
    /// file, and is returned with its error.
    pub async fn restore_catalog(&self) -> Vec<(String, DataFusionError)> {
        let Some(file) = &self.catalog_file else {
            return Vec::new();
        };
        let mut failures = Vec::new();
        for statement in file.statements() {
            let name = match &statement {
                BedrockStatement::CreateEngine { name, .. } => {
                    format!("ML engine '{}'", joined(name))
                }
                BedrockStatement::CreateModel { name, .. } => format!("model '{}'", joined(name)),
                _ => continue,
            };
            if let Err(e) = self.execute(statement).await {
                failures.push((name, e));
            }
        }
        failures
    }

    /// Whether a statement will change the catalog (so the catalog file must record it).
    fn changes_catalog(&self, statement: &BedrockStatement) -> bool {
        match statement {
            BedrockStatement::CreateEngine { name, .. } => {
                self.catalog.engine(&joined(name)).is_none()
            }
            BedrockStatement::CreateModel {
                name, or_replace, ..
            } => *or_replace || self.catalog.model(&joined(name)).is_none(),
            BedrockStatement::DropEngine { .. } | BedrockStatement::DropModel { .. } => true,
            _ => false,
        }
    }

    /// Registers every CSV, Parquet and JSON (newline-delimited) file of a directory as a table
    /// of the `files` schema, named by its file name without extension, lower-cased — the
    /// equivalent of MindsDB's uploaded files (`SELECT * FROM files.unrelated_questions`).
    /// Registering a directory again refreshes its tables. Returns the table names, sorted.
    ///
    /// # Errors
    /// An unreadable directory, two files with one name, or a file DataFusion cannot read.
    pub async fn register_files_dir(
        &self,
        dir: impl AsRef<std::path::Path>,
    ) -> Result<Vec<String>> {
        use datafusion::catalog::MemorySchemaProvider;
        use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions};

        let dir = dir.as_ref();
        let entries = std::fs::read_dir(dir).map_err(|e| {
            user_error(format!(
                "The files directory '{}' cannot be read: {e}",
                dir.display()
            ))
        })?;
        let mut files: Vec<(String, std::path::PathBuf, String)> = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(ext) = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_lowercase)
            else {
                continue;
            };
            if !["csv", "parquet", "json", "ndjson", "jsonl"].contains(&ext.as_str())
                || !path.is_file()
            {
                continue;
            }
            let Some(stem) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_lowercase)
            else {
                continue;
            };
            if let Some((_, other, _)) = files.iter().find(|(name, ..)| *name == stem) {
                return Err(user_error(format!(
                    "Files '{}' and '{}' would both be files.{stem}: rename one",
                    other.display(),
                    path.display()
                )));
            }
            files.push((stem, path, ext));
        }
        files.sort();
        let catalog_name = self
            .ctx
            .state()
            .config()
            .options()
            .catalog
            .default_catalog
            .clone();
        let catalog = self.ctx.catalog(&catalog_name).ok_or_else(|| {
            user_error(format!("The default catalog '{catalog_name}' is missing"))
        })?;
        if catalog.schema("files").is_none() {
            catalog.register_schema("files", Arc::new(MemorySchemaProvider::new()))?;
        }
        for (name, path, ext) in &files {
            let table = format!("files.{name}");
            let location = path.display().to_string();
            // Registering a directory again refreshes its tables.
            self.ctx.deregister_table(table.as_str())?;
            match ext.as_str() {
                "csv" => {
                    self.ctx
                        .register_csv(&table, &location, CsvReadOptions::new())
                        .await?
                }
                "parquet" => {
                    self.ctx
                        .register_parquet(&table, &location, ParquetReadOptions::default())
                        .await?;
                }
                _ => {
                    let options = JsonReadOptions::default().file_extension(ext);
                    self.ctx.register_json(&table, &location, options).await?;
                }
            }
        }
        Ok(files.into_iter().map(|(name, ..)| name).collect())
    }

    /// The underlying DataFusion session.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// The engines and models.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Runs one or more `;`-separated statements and returns the last one's result.
    ///
    /// # Errors
    /// Syntax errors, validation errors (naming the parameter and the fix), and whatever
    /// DataFusion reports for its own statements.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let statements = parse_sql(sql).map_err(from_error)?;
        let mut last = None;
        for statement in statements {
            last = Some(match statement {
                ParsedStatement::Bedrock(s) => match &self.catalog_file {
                    Some(file) if self.changes_catalog(&s) => {
                        let df = self.execute(s.clone()).await?;
                        file.record(&s).map_err(from_error)?;
                        df
                    }
                    _ => self.execute(s).await?,
                },
                ParsedStatement::DataFusion(s) if reset_of_ours(&s).is_some() => {
                    let key = reset_of_ours(&s).unwrap_or_default();
                    self.reset_option(&key)?
                }
                ParsedStatement::DataFusion(s) => {
                    let state = self.ctx.state();
                    let plan = state.statement_to_plan(*s).await?;
                    // Model relations are rewritten now, so their errors come at planning
                    // time and plainly; the session's analyzer rule covers DataFrame plans.
                    let plan = ModelRelationRule.analyze(plan, state.config_options())?;
                    // Async functions where DataFusion cannot evaluate them get a rewrite hint.
                    crate::udf::check_async_placement(&plan, &state)?;
                    self.ctx.execute_logical_plan(plan).await?
                }
            });
        }
        match last {
            Some(df) => Ok(df),
            None => Err(user_error("No statement to run: the SQL text is empty")),
        }
    }

    /// `RESET bedrock.<key>`: DataFusion resets only its own namespace.
    fn reset_option(&self, key: &str) -> Result<DataFrame> {
        let defaults = BedrockOptions::default();
        let state = self.ctx.state_ref();
        let mut state = state.write();
        let options = state
            .config_mut()
            .options_mut()
            .extensions
            .get_mut::<BedrockOptions>()
            .ok_or_else(|| user_error("The bedrock options are not registered in this session"))?;
        match key {
            "max_cost_usd" => options.max_cost_usd = defaults.max_cost_usd,
            "max_requests" => options.max_requests = defaults.max_requests,
            other => {
                return Err(user_error(format!(
                    "Unknown option 'bedrock.{other}': the options are bedrock.max_cost_usd and bedrock.max_requests"
                )));
            }
        }
        drop(state);
        self.ctx.read_empty()
    }

    async fn execute(&self, statement: BedrockStatement) -> Result<DataFrame> {
        match statement {
            BedrockStatement::CreateEngine {
                name,
                if_not_exists,
                handler,
                params,
            } => {
                self.create_engine(&joined(&name), if_not_exists, &handler, &params)
                    .await
            }
            BedrockStatement::DropEngine { name, if_exists } => {
                let name = joined(&name);
                let users = self.catalog.models_of(&name);
                if !users.is_empty() {
                    return Err(user_error(format!(
                        "ML engine '{name}' is used by model(s) {}: drop them first",
                        users.join(", ")
                    )));
                }
                let status = match self.catalog.remove_engine(&name) {
                    Some(_) => "dropped",
                    None if if_exists => "absent",
                    None => return Err(self.no_engine(&name)),
                };
                self.table(&["name", "status"], vec![vec![name, status.into()]])
            }
            BedrockStatement::ShowEngines => {
                let rows = self
                    .catalog
                    .engines()
                    .iter()
                    .map(|e| {
                        let c = e.config();
                        vec![
                            e.name().to_string(),
                            "bedrock".into(),
                            e.region().to_string(),
                            c.endpoint_url.clone().unwrap_or_else(|| "(AWS)".into()),
                            credential_kind(&c.credentials),
                            c.max_concurrency.to_string(),
                            c.is_default.to_string(),
                        ]
                    })
                    .collect();
                self.table(
                    &[
                        "name",
                        "handler",
                        "region",
                        "endpoint_url",
                        "credentials",
                        "max_concurrency",
                        "default",
                    ],
                    rows,
                )
            }
            BedrockStatement::CreateModel {
                name,
                or_replace,
                if_not_exists,
                target,
                params,
            } => {
                let name = joined(&name);
                if self.catalog.model(&name).is_some() && !or_replace {
                    if if_not_exists {
                        return self.model_status(&name, "exists");
                    }
                    return Err(user_error(format!(
                        "Model '{name}' already exists: DROP MODEL {name} first, or write CREATE OR REPLACE MODEL"
                    )));
                }
                let spec = ModelSpec::from_params(&name, &target, &params).map_err(from_error)?;
                let engine = self.catalog.engine(&spec.engine).ok_or_else(|| {
                    let hint = match suggest(
                        &spec.engine,
                        &self
                            .catalog
                            .engine_names()
                            .iter()
                            .map(String::as_str)
                            .collect::<Vec<_>>(),
                    ) {
                        Some(s) => format!(" — did you mean '{s}'?"),
                        None => format!(
                            ": create it with CREATE ML_ENGINE {} FROM bedrock USING …",
                            spec.engine
                        ),
                    };
                    user_error(format!(
                        "Model '{name}' uses ML engine '{}', which does not exist{hint}",
                        spec.engine
                    ))
                })?;
                let replacing = self.catalog.model(&name).is_some();
                if !replacing && self.ctx.table_exist(name.as_str())? {
                    return Err(user_error(format!(
                        "Model '{name}' would hide the table '{name}': choose another name"
                    )));
                }
                let info = engine
                    .check_text_model(&spec.model_id)
                    .await
                    .map_err(from_error)?;
                let udf =
                    Arc::new(PredictUdf::new(spec.clone(), Arc::clone(&engine)).into_scalar_udf());
                self.ctx.register_udf(ScalarUDF::clone(&udf));
                if replacing {
                    self.ctx.deregister_table(name.as_str())?;
                }
                let call = ModelCall::new(spec.clone(), engine);
                self.ctx
                    .register_table(name.as_str(), Arc::new(ModelTable::new(call, udf)))?;
                self.catalog.put_model(ModelEntry { spec, info });
                self.model_status(&name, "ready")
            }
            BedrockStatement::DropModel { name, if_exists } => {
                let name = joined(&name);
                let status = match self.catalog.remove_model(&name) {
                    Some(entry) => {
                        self.ctx.deregister_table(name.as_str())?;
                        self.ctx
                            .deregister_udf(PredictUdf::udf_name(&entry.spec).as_str());
                        "dropped"
                    }
                    None if if_exists => "absent",
                    None => return Err(user_error(format!("Model '{name}' does not exist"))),
                };
                self.table(&["name", "status"], vec![vec![name, status.into()]])
            }
            BedrockStatement::ShowModels => {
                let rows = self
                    .catalog
                    .models()
                    .iter()
                    .map(|m| model_row(&m.spec, "ready"))
                    .collect();
                self.table(MODEL_COLUMNS, rows)
            }
            BedrockStatement::Describe {
                name,
                explicit,
                metadata,
            } => {
                let joined_name = joined(&name);
                let Some(entry) = self.catalog.model(&joined_name) else {
                    if explicit || metadata {
                        return Err(user_error(format!("Model '{joined_name}' does not exist")));
                    }
                    // Not a model: DataFusion's DESCRIBE of a table.
                    return self
                        .ctx
                        .sql(&format!("DESCRIBE {}", quote_name(&name)))
                        .await;
                };
                if metadata {
                    let i = &entry.info;
                    let rows = [
                        ("model_id", i.model_id.clone()),
                        ("model_arn", i.model_arn.clone()),
                        ("name", i.name.clone()),
                        ("provider", i.provider.clone()),
                        ("input_modalities", i.input_modalities.join(", ")),
                        ("output_modalities", i.output_modalities.join(", ")),
                        ("response_streaming", i.streaming.to_string()),
                        ("inference_types", i.inference_types.join(", ")),
                        ("lifecycle", i.lifecycle.clone()),
                    ];
                    return self.table(
                        &["property", "value"],
                        rows.into_iter()
                            .map(|(k, v)| vec![k.to_string(), v])
                            .collect(),
                    );
                }
                let mut rows: Vec<Vec<String>> = vec![vec!["name".into(), entry.spec.name.clone()]];
                rows.extend(entry.spec.describe().into_iter().map(|(k, v)| vec![k, v]));
                rows.push(vec!["status".into(), "ready".into()]);
                self.table(&["parameter", "value"], rows)
            }
        }
    }

    async fn create_engine(
        &self,
        name: &str,
        if_not_exists: bool,
        handler: &str,
        params: &[(String, crate::bedrock::params::ParamValue)],
    ) -> Result<DataFrame> {
        if handler != "bedrock" {
            return Err(user_error(format!(
                "Unknown ML engine handler '{handler}': this extension serves FROM bedrock"
            )));
        }
        if self.catalog.engine(name).is_some() {
            if if_not_exists {
                return self.table(
                    &["name", "handler", "status"],
                    vec![vec![name.into(), "bedrock".into(), "exists".into()]],
                );
            }
            return Err(user_error(format!(
                "ML engine '{name}' already exists: DROP ML_ENGINE {name} first, or write CREATE ML_ENGINE IF NOT EXISTS"
            )));
        }
        let mut config = EngineConfig::from_params(params).map_err(from_error)?;
        if config.is_default
            && let Some(other) = self
                .catalog
                .engines()
                .iter()
                .find(|e| e.config().is_default)
        {
            return Err(user_error(format!(
                "ML engine '{}' is already the default: create '{name}' without default = true, or drop '{}' first",
                other.name(),
                other.name()
            )));
        }
        if config.endpoint_url.is_none() {
            config.endpoint_url.clone_from(&self.default_endpoint);
        }
        let engine = Engine::connect(name, config).await.map_err(from_error)?;
        self.catalog.put_engine(engine);
        self.table(
            &["name", "handler", "status"],
            vec![vec![name.into(), "bedrock".into(), "created".into()]],
        )
    }

    fn no_engine(&self, name: &str) -> DataFusionError {
        let names = self.catalog.engine_names();
        let hint = suggest(name, &names.iter().map(String::as_str).collect::<Vec<_>>())
            .map(|s| format!(" — did you mean '{s}'?"))
            .unwrap_or_default();
        user_error(format!("ML engine '{name}' does not exist{hint}"))
    }

    fn model_status(&self, name: &str, status: &str) -> Result<DataFrame> {
        let entry = self
            .catalog
            .model(name)
            .ok_or_else(|| user_error(format!("Model '{name}' does not exist")))?;
        self.table(MODEL_COLUMNS, vec![model_row(&entry.spec, status)])
    }

    /// A one-batch table of text columns.
    fn table(&self, columns: &[&str], rows: Vec<Vec<String>>) -> Result<DataFrame> {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(*c, DataType::Utf8, false))
                .collect::<Vec<_>>(),
        ));
        let arrays: Vec<ArrayRef> = (0..columns.len())
            .map(|i| {
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r[i].as_str()),
                )) as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(schema, arrays)?;
        self.ctx.read_batch(batch)
    }
}

const MODEL_COLUMNS: &[&str] = &[
    "name", "engine", "model_id", "mode", "target", "inputs", "status",
];

fn model_row(spec: &ModelSpec, status: &str) -> Vec<String> {
    vec![
        spec.name.clone(),
        spec.engine.clone(),
        spec.model_id.clone(),
        spec.mode.name().to_string(),
        spec.target.clone(),
        spec.input_columns().join(", "),
        status.to_string(),
    ]
}

fn credential_kind(source: &CredentialSource) -> String {
    match source {
        CredentialSource::DefaultChain => "default chain".into(),
        CredentialSource::Profile(p) => format!("profile '{p}'"),
        CredentialSource::Static {
            session_token: Some(_),
            ..
        } => "static keys + session token".into(),
        CredentialSource::Static { .. } => "static keys".into(),
        CredentialSource::ApiKey(_) => "api key".into(),
    }
}

/// The key of `RESET bedrock.<key>`, if the statement is one.
fn reset_of_ours(statement: &datafusion::sql::parser::Statement) -> Option<String> {
    use datafusion::sql::parser::{ResetStatement, Statement};
    let Statement::Reset(ResetStatement::Variable(name)) = statement else {
        return None;
    };
    let name = name.to_string().to_lowercase();
    name.strip_prefix("bedrock.").map(str::to_string)
}

fn quote_name(name: &QualifiedName) -> String {
    name.iter()
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}
