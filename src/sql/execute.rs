//! The one entry point for SQL text on a session with the extension: the extension's
//! statements run here, everything else is DataFusion's, parsed and planned as
//! `SessionContext::sql` does.
//!
//! ```text
//! SQL text ─ parse_sql_with (session's dialect, recursion limit, ident normalization)
//!   ├─ CREATE ML_ENGINE / CREATE MODEL / SHOW / DESCRIBE model / DROP ─▶ Ddl (catalog file)
//!   ├─ RESET bedrock.<key>                                             ─▶ the bedrock options
//!   └─ anything else ─▶ statement_to_plan ─▶ (model relations: rewrite + AI function
//!                       placement check, so their errors come at planning) ─▶ DataFrame
//! ```

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::source_as_provider;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;

use super::ddl::Ddl;
use super::parser::{ParsedStatement, ParserOptions, describe_of_model, parse_sql_with};
use crate::extension::BedrockExtension;
use crate::plan::model_table::ModelTable;
use crate::plan::options::BedrockOptions;
use crate::plan::rewrite::ModelRelationRule;
use crate::udf::function::BindAiFunctions;

/// Runs SQL text on a session that has the extension
/// ([`crate::SessionStateBuilderBedrock::with_bedrock`]) and returns the last statement's
/// result.
///
/// - Text may hold several `;`-separated statements, run in order (where
///   `SessionContext::sql` takes one); the last one's result is returned.
/// - The extension's statements (`CREATE ML_ENGINE`, `CREATE [OR REPLACE] MODEL`,
///   `SHOW ML_ENGINES`, `SHOW MODELS`, `DESCRIBE [MODEL] name`, `DESCRIBE name.metadata`,
///   `DROP ML_ENGINE`, `DROP MODEL`, `RESET bedrock.<key>`) run here.
/// - Every other statement is DataFusion's: parsed with the session's
///   `datafusion.sql_parser.*` settings and planned as `SessionContext::sql` plans it, errors
///   included.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> datafusion::error::Result<()> {
/// use datafusion::execution::SessionStateBuilder;
/// use datafusion::prelude::SessionContext;
/// use datafusion_bedrock::{SessionStateBuilderBedrock, execute_sql};
///
/// let state = SessionStateBuilder::new().with_default_features().with_bedrock().build();
/// let ctx = SessionContext::new_with_state(state);
/// let models = execute_sql(&ctx, "SHOW MODELS").await?.collect().await?;
/// assert_eq!(models[0].num_rows(), 0);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// A session without the extension; syntax and validation errors of the extension's
/// statements (naming the parameter and the fix); whatever DataFusion reports for its own.
pub async fn execute_sql(ctx: &SessionContext, sql: &str) -> Result<DataFrame> {
    let ext = BedrockExtension::of_session(ctx)?;
    let options = ParserOptions::from(&ctx.state().config_options().sql_parser);
    let statements = parse_sql_with(sql, &options)?;
    if statements.is_empty() {
        // DataFusion's own answer to text without a statement.
        return ctx.sql(sql).await;
    }
    let ddl = Ddl { ctx, ext: &ext };
    let mut last: Option<DataFrame> = None;
    for statement in statements {
        // A statement before the last runs to completion (an INSERT's DataFrame does nothing
        // until it is collected), so the next one sees its effects.
        if let Some(previous) = last.take() {
            previous.collect().await?;
        }
        last = Some(match statement {
            ParsedStatement::Bedrock(s) => ddl.run(s).await?,
            ParsedStatement::DataFusion(s) => {
                let catalog = ext.catalog();
                match describe_of_model(&s, &options, |name| catalog.model(name).is_some()) {
                    Some(describe) => ddl.run(describe).await?,
                    None => run_datafusion(ctx, *s).await?,
                }
            }
        });
    }
    last.ok_or_else(|| DataFusionError::Plan("No statement to run: the SQL text is empty".into()))
}

/// Whether the extension runs a parsed statement itself rather than handing it to DataFusion:
/// its own statements, `DESCRIBE` of a model and `RESET bedrock.<key>`. The shell asks this
/// to choose between the extension and `datafusion-cli`.
pub fn runs_in_extension(
    statement: &ParsedStatement,
    options: &ParserOptions,
    ext: &BedrockExtension,
) -> bool {
    match statement {
        ParsedStatement::Bedrock(_) => true,
        ParsedStatement::DataFusion(s) => {
            reset_of_ours(s).is_some()
                || describe_of_model(s, options, |name| ext.catalog().model(name).is_some())
                    .is_some()
        }
    }
}

/// One DataFusion statement, as `SessionContext::sql` runs it; plans with model relations or
/// AI functions are also rewritten and checked now, so their errors come at planning.
async fn run_datafusion(ctx: &SessionContext, mut statement: DfStatement) -> Result<DataFrame> {
    if let Some(key) = reset_of_ours(&statement) {
        return reset_option(ctx, &key);
    }
    if let Ok(extension) = BedrockExtension::of_session(ctx) {
        super::named_args::name_model_arguments(&mut statement, extension.catalog())?;
    }
    let state = ctx.state();
    let plan = state.statement_to_plan(statement).await?;
    let plan = prepare_plan(plan, &state)?;
    ctx.execute_logical_plan(plan).await
}

/// Rewrites the model relations of a plan, binds its AI functions to their models and checks
/// where they are called, so that every such error comes at planning, without an analyzer rule's name in front.
/// Plans without either are returned untouched.
///
/// # Errors
/// The rewrite's errors, and an AI function where DataFusion cannot evaluate it.
pub fn prepare_plan(
    plan: LogicalPlan,
    state: &datafusion::execution::SessionState,
) -> Result<LogicalPlan> {
    let aggregates = crate::udf::aggregates::has_ai_aggregate(&plan);
    if !aggregates && !has_model_relation(&plan) && !crate::udf::has_async_call(&plan) {
        return Ok(plan);
    }
    let plan = ModelRelationRule.analyze(plan, state.config_options())?;
    let plan = if aggregates {
        crate::udf::aggregates::PlanAiAggregates.analyze(plan, state.config_options())?
    } else {
        plan
    };
    let plan = BindAiFunctions::bind(plan)?;
    crate::udf::check_async_placement(&plan, state)?;
    Ok(plan)
}

/// Whether a plan (its subqueries included) reads a model as a table.
fn has_model_relation(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        found = matches!(node, LogicalPlan::TableScan(scan)
            if source_as_provider(&scan.source)
                .is_ok_and(|p| p.downcast_ref::<ModelTable>().is_some()));
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// The key of `RESET bedrock.<key>`, if the statement is one.
fn reset_of_ours(statement: &DfStatement) -> Option<String> {
    use datafusion::sql::parser::ResetStatement;
    let DfStatement::Reset(ResetStatement::Variable(name)) = statement else {
        return None;
    };
    let name = name.to_string().to_lowercase();
    name.strip_prefix("bedrock.").map(str::to_string)
}

/// `RESET bedrock.<key>`: DataFusion resets only its own namespace.
fn reset_option(ctx: &SessionContext, key: &str) -> Result<DataFrame> {
    {
        let state = ctx.state_ref();
        let mut state = state.write();
        let options = state
            .config_mut()
            .options_mut()
            .extensions
            .get_mut::<BedrockOptions>()
            .ok_or_else(|| {
                DataFusionError::Plan(
                    "The bedrock options are not registered in this session".into(),
                )
            })?;
        options.reset(key)?;
    }
    // What DataFusion's own SET and RESET return: no columns, no rows.
    let empty = datafusion::logical_expr::LogicalPlanBuilder::empty(false).build()?;
    Ok(DataFrame::new(ctx.state(), empty))
}

/// Recreates the engines and models of the session's catalog file
/// ([`BedrockExtension::set_catalog_file`]), in the order they were created. What cannot be
/// recreated (an endpoint that is down, a model that went away) is skipped, stays in the file,
/// and is returned with its error, named (`ML engine 'e'`, `model 'm'`).
///
/// # Errors
/// A session without the extension.
pub async fn restore_catalog(ctx: &SessionContext) -> Result<Vec<(String, DataFusionError)>> {
    use super::parser::BedrockStatement;
    let ext = BedrockExtension::of_session(ctx)?;
    let Some(file) = ext.catalog_file() else {
        return Ok(Vec::new());
    };
    let ddl = Ddl { ctx, ext: &ext };
    let mut failures = Vec::new();
    for statement in file.statements() {
        let name = match &statement {
            BedrockStatement::CreateEngine { name, .. } => {
                format!("ML engine '{}'", name.join("."))
            }
            BedrockStatement::CreateModel { name, .. } => format!("model '{}'", name.join(".")),
            _ => continue,
        };
        if let Err(e) = ddl.execute(statement).await {
            failures.push((name, e));
        }
    }
    Ok(failures)
}
