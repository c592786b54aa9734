//! Running the extension's statements (`CREATE ML_ENGINE`, `CREATE MODEL`, `SHOW`,
//! `DESCRIBE`, `DROP`) on a session: engines and models go to the session's
//! [`BedrockExtension`], models become tables and functions of the session.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;

use super::parser::{BedrockStatement, QualifiedName};
use crate::bedrock::config::EngineConfig;
use crate::bedrock::engine::Engine;
use crate::bedrock::redact::url_for_display;
use crate::catalog::ModelEntry;
use crate::catalog::model::ModelSpec;
use crate::extension::BedrockExtension;
use crate::inference::CreatedModel;
use crate::plan::model_table::ModelTable;
use crate::udf::predict::PredictCall;

fn user_error(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(message.into())
}

fn joined(name: &QualifiedName) -> String {
    name.join(".")
}

/// The extension's statements, run on one session.
pub(crate) struct Ddl<'a> {
    pub(crate) ctx: &'a SessionContext,
    pub(crate) ext: &'a BedrockExtension,
}

impl Ddl<'_> {
    /// Whether a statement will change the catalog (so the catalog file must record it).
    pub(crate) fn changes_catalog(&self, statement: &BedrockStatement) -> bool {
        match statement {
            BedrockStatement::CreateEngine { name, .. } => {
                self.ext.catalog().engine(&joined(name)).is_none()
            }
            BedrockStatement::CreateModel {
                name, or_replace, ..
            } => *or_replace || self.ext.catalog().model(&joined(name)).is_none(),
            BedrockStatement::DropEngine { .. } | BedrockStatement::DropModel { .. } => true,
            _ => false,
        }
    }

    /// Runs a statement and records it in the catalog file when it changes the catalog.
    pub(crate) async fn run(&self, statement: BedrockStatement) -> Result<DataFrame> {
        match self.ext.catalog_file() {
            Some(file) if self.changes_catalog(&statement) => {
                let df = self.execute(statement.clone()).await?;
                file.record(&statement).map_err(DataFusionError::from)?;
                Ok(df)
            }
            _ => self.execute(statement).await,
        }
    }

    /// Runs one of the extension's statements.
    pub(crate) async fn execute(&self, statement: BedrockStatement) -> Result<DataFrame> {
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
            BedrockStatement::DropEngine { name, if_exists } => self.drop_engine(&name, if_exists),
            BedrockStatement::ShowEngines => self.show_engines(),
            BedrockStatement::CreateModel {
                name,
                or_replace,
                if_not_exists,
                target,
                params,
            } => {
                self.create_model(&name, or_replace, if_not_exists, &target, &params)
                    .await
            }
            BedrockStatement::DropModel { name, if_exists } => self.drop_model(&name, if_exists),
            BedrockStatement::ShowModels => self.show_models(),
            BedrockStatement::Describe {
                name,
                explicit: _,
                metadata,
            } => self.describe(&name, metadata),
        }
    }

    fn drop_engine(&self, name: &QualifiedName, if_exists: bool) -> Result<DataFrame> {
        let name = joined(name);
        let users = self.ext.catalog().models_of(&name);
        if !users.is_empty() {
            return Err(user_error(format!(
                "ML engine '{name}' is used by model(s) {}: drop them first",
                users.join(", ")
            )));
        }
        let status = match self.ext.catalog().remove_engine(&name) {
            Some(_) => "dropped",
            None if if_exists => "absent",
            None => return Err(self.no_engine(&name)),
        };
        self.table(&["name", "status"], &[vec![name, status.into()]])
    }

    fn show_engines(&self) -> Result<DataFrame> {
        let rows = self
            .ext
            .catalog()
            .engines()
            .iter()
            .map(|e| {
                let c = e.config();
                vec![
                    e.name().to_string(),
                    "bedrock".into(),
                    e.region().to_string(),
                    c.endpoint_url
                        .as_deref()
                        .map_or_else(|| "(AWS)".into(), url_for_display),
                    e.credentials_used().to_string(),
                    c.max_concurrency.to_string(),
                    c.is_default.to_string(),
                ]
            })
            .collect::<Vec<_>>();
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
            &rows,
        )
    }

    async fn create_model(
        &self,
        name: &QualifiedName,
        or_replace: bool,
        if_not_exists: bool,
        target: &str,
        params: &[(String, crate::bedrock::params::ParamValue)],
    ) -> Result<DataFrame> {
        let name = joined(name);
        if self.ext.catalog().model(&name).is_some() && !or_replace {
            if if_not_exists {
                return self.model_status(&name, "exists");
            }
            return Err(user_error(format!(
                "Model '{name}' already exists: DROP MODEL {name} first, or write CREATE OR REPLACE MODEL"
            )));
        }
        let spec = ModelSpec::from_params(&name, target, params).map_err(DataFusionError::from)?;
        check_outputs_are_not_inputs(&spec)?;
        let engine = self.ext.catalog().engine(&spec.engine).ok_or_else(|| {
            let hint = self
                .ext
                .catalog()
                .engine_suggestion(&spec.engine)
                .unwrap_or_else(|| {
                    format!(
                        ": create it with CREATE ML_ENGINE {} FROM bedrock USING …",
                        spec.engine
                    )
                });
            user_error(format!(
                "Model '{name}' uses ML engine '{}', which does not exist{hint}",
                spec.engine
            ))
        })?;
        engine
            .config()
            .batch
            .check_ready(
                engine.name(),
                spec.execution.unwrap_or_default(),
                &format!("Model '{name}'"),
            )
            .map_err(DataFusionError::from)?;
        let replacing = self.ext.catalog().model(&name).is_some();
        if !replacing && self.ctx.table_exist(name.as_str())? {
            return Err(user_error(format!(
                "Model '{name}' would hide the table '{name}': choose another name"
            )));
        }
        let info = check_model_in_time(&engine, &spec).await?;
        self.ctx
            .register_udf(PredictCall::udf(spec.clone(), Arc::clone(&engine)));
        if replacing {
            self.ctx.deregister_table(name.as_str())?;
        }
        let model = CreatedModel::new(spec.clone(), engine);
        self.ctx.register_udtf(
            name.as_str(),
            Arc::new(crate::udf::model_function::ModelFunction::new(
                model.clone(),
            )),
        );
        self.ctx
            .register_table(name.as_str(), Arc::new(ModelTable::new(model)))?;
        self.ext.catalog().put_model(ModelEntry { spec, info });
        self.model_status(&name, "ready")
    }

    fn drop_model(&self, name: &QualifiedName, if_exists: bool) -> Result<DataFrame> {
        let name = joined(name);
        let status = match self.ext.catalog().remove_model(&name) {
            Some(entry) => {
                self.ctx.deregister_table(name.as_str())?;
                self.ctx.deregister_udtf(name.as_str());
                self.ctx
                    .deregister_udf(PredictCall::udf_name(&entry.spec).as_str());
                "dropped"
            }
            None if if_exists => "absent",
            None => return Err(user_error(format!("Model '{name}' does not exist"))),
        };
        self.table(&["name", "status"], &[vec![name, status.into()]])
    }

    fn show_models(&self) -> Result<DataFrame> {
        let rows = self
            .ext
            .catalog()
            .models()
            .iter()
            .map(|m| model_row(&m.spec, "ready"))
            .collect::<Vec<_>>();
        self.table(MODEL_COLUMNS, &rows)
    }

    fn describe(&self, name: &QualifiedName, metadata: bool) -> Result<DataFrame> {
        let joined_name = joined(name);
        let Some(entry) = self.ext.catalog().model(&joined_name) else {
            return Err(user_error(format!("Model '{joined_name}' does not exist")));
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
                &rows
                    .into_iter()
                    .map(|(k, v)| vec![k.to_string(), v])
                    .collect::<Vec<_>>(),
            );
        }
        let mut rows: Vec<Vec<String>> = vec![vec!["name".into(), entry.spec.name.clone()]];
        rows.extend(entry.spec.describe().into_iter().map(|(k, v)| vec![k, v]));
        rows.push(vec!["status".into(), "ready".into()]);
        self.table(&["parameter", "value"], &rows)
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
        if self.ext.catalog().engine(name).is_some() {
            if if_not_exists {
                return self.table(
                    &["name", "handler", "status"],
                    &[vec![name.into(), "bedrock".into(), "exists".into()]],
                );
            }
            return Err(user_error(format!(
                "ML engine '{name}' already exists: DROP ML_ENGINE {name} first, or write CREATE ML_ENGINE IF NOT EXISTS"
            )));
        }
        let mut config = EngineConfig::from_params(params).map_err(DataFusionError::from)?;
        if config.is_default
            && let Some(other) = self
                .ext
                .catalog()
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
            config.endpoint_url = self.ext.default_endpoint();
        }
        if config.batch.s3_endpoint_url.is_none() {
            config.batch.s3_endpoint_url = self.ext.default_s3_endpoint();
        }
        let engine = Engine::connect(name, config)
            .await
            .map_err(DataFusionError::from)?;
        self.ext.catalog().put_engine(engine);
        self.table(
            &["name", "handler", "status"],
            &[vec![name.into(), "bedrock".into(), "created".into()]],
        )
    }

    fn no_engine(&self, name: &str) -> DataFusionError {
        let hint = self
            .ext
            .catalog()
            .engine_suggestion(name)
            .unwrap_or_default();
        user_error(format!("ML engine '{name}' does not exist{hint}"))
    }

    fn model_status(&self, name: &str, status: &str) -> Result<DataFrame> {
        let entry = self
            .ext
            .catalog()
            .model(name)
            .ok_or_else(|| user_error(format!("Model '{name}' does not exist")))?;
        self.table(MODEL_COLUMNS, &[model_row(&entry.spec, status)])
    }

    /// A one-batch table of text columns.
    fn table(&self, columns: &[&str], rows: &[Vec<String>]) -> Result<DataFrame> {
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

/// The foundation-model check of `CREATE MODEL`, bounded by the engine's `connect_timeout`
/// (an endpoint that accepts connections and never answers is the endpoint's fault, not the
/// model id's, and must not hold a shell's start-up for `request_timeout`).
async fn check_model_in_time(
    engine: &Engine,
    spec: &ModelSpec,
) -> Result<crate::bedrock::engine::FoundationModelInfo> {
    let limit = engine.config().connect_timeout;
    match tokio::time::timeout(limit, engine.check_text_model(&spec.model_id)).await {
        Ok(checked) => checked.map_err(DataFusionError::from),
        Err(_) => Err(user_error(format!(
            "Model '{}': ML engine '{}' got no answer from {} within {}s while checking model_id '{}' (GetFoundationModel): check the engine's endpoint_url, region_name and network access, or raise its connect_timeout",
            spec.name,
            engine.name(),
            engine.config().endpoint_url.as_deref().map_or_else(
                || format!("Bedrock in {}", engine.region()),
                url_for_display
            ),
            limit.as_secs_f64(),
            spec.model_id
        ))),
    }
}

/// A model's output columns (the target and, with provenance, `<target>_meta`) must differ
/// from its inputs: a query would otherwise have two columns of one name.
fn check_outputs_are_not_inputs(spec: &ModelSpec) -> Result<()> {
    let inputs = spec.input_columns();
    let mut outputs = vec![spec.target.clone()];
    if spec.provenance {
        outputs.push(spec.meta_column());
    }
    match outputs.iter().find(|o| inputs.contains(o)) {
        Some(clash) => Err(user_error(format!(
            "Model '{}' would predict the column '{clash}', which is also one of its inputs ({}): PREDICT another column, e.g. PREDICT answer",
            spec.name,
            inputs.join(", ")
        ))),
        None => Ok(()),
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
