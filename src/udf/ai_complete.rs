//! `ai_complete(model, prompt [, options [, output_schema]])`: a model's answer to each row's
//! prompt.

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ScalarUDF;

use super::function::{AiBinder, AiCall, AiFunction, BindArgs};
use super::options::CompletionOptions;
use super::resolve::resolve_model;
use super::text_call::{TextCall, TextKind};
use crate::catalog::Catalog;
use crate::catalog::output_schema::OutputSchema;
use crate::inference::ModelCall;

/// The function's name in SQL.
pub const NAME: &str = "ai_complete";

/// What the model argument of the text AI functions may be.
pub const MODEL_EXAMPLE: &str =
    "'amazon.nova-micro-v1:0' or the name of a model created with CREATE MODEL";
/// An example of the options argument.
pub const OPTIONS_EXAMPLE: &str = "'{\"max_tokens\": 50, \"temperature\": 0.2}'";
const SCHEMA_EXAMPLE: &str = "'name STRING, age INT'";

/// `ai_complete(model, prompt [, options [, output_schema]]) → Utf8 | Struct`: the model's
/// answer to each row's prompt.
///
/// - `model` (a constant): the name of a model created with `CREATE MODEL` (its engine,
///   model id, API, inference parameters and system prompt apply), or a raw Bedrock model id,
///   inference profile or ARN, called with the Converse API through the default engine (the
///   one created with `default = true`, else the only engine).
/// - `prompt`: any expression; cast to text.
/// - `options` (a constant JSON object): `max_tokens`, `temperature`, `top_p`, `stop`,
///   `system_prompt` override the model's; `engine` names the engine for a raw model id;
///   `output_schema` asks for typed structured output; `on_error` (`'fail'` or `'null'`) and
///   `provenance` (`true`: the answer becomes `{value, meta}`) override the model's.
/// - `output_schema` (a constant, the fourth argument or the option of that name):
///   `'name STRING, age INT, tags LIST<STRING>'` or a
///   JSON Schema; the answer is then a struct, obtained through a forced tool call, validated
///   and asked for once more when it does not match (see `CREATE MODEL … output_schema`). A
///   model created with `output_schema` answers with its struct too.
///
/// The model and options are bound when the query is planned (EXPLAIN shows the binding). A
/// NULL prompt gives NULL and sends no request. The rows of a batch are sent concurrently
/// through the engine's limiter; identical prompts are sent once and cached answers are reused.
///
/// ```sql
/// SELECT ai_complete('amazon.nova-micro-v1:0', 'Capital of ' || country || '?',
///                    '{"max_tokens": 50}') AS answer
/// FROM countries;
/// ```
#[derive(Debug)]
pub struct AiComplete;

impl AiComplete {
    /// The function as registered in a session whose models are in `catalog`.
    pub fn udf(catalog: &Arc<Catalog>) -> ScalarUDF {
        AiFunction::unbound(Arc::new(Self), catalog)
    }
}

impl AiBinder for AiComplete {
    fn name(&self) -> &str {
        NAME
    }

    fn bind(&self, catalog: &Catalog, args: &BindArgs) -> Result<Arc<dyn AiCall>> {
        args.check_count(NAME, 2..=4, "model, prompt [, options [, output_schema]]")?;
        let model = args.text(NAME, "model", 1, MODEL_EXAMPLE)?;
        let mut options = args
            .optional_text(NAME, "options", 3, OPTIONS_EXAMPLE)?
            .map_or_else(
                || Ok(CompletionOptions::default()),
                |t| CompletionOptions::parse(NAME, &t),
            )?;
        if let Some(schema) = args.optional_text(NAME, "output_schema", 4, SCHEMA_EXAMPLE)? {
            if options.output_schema.is_some() {
                return Err(DataFusionError::Plan(format!(
                    "{NAME}: output_schema is given twice (as an option and as an argument): keep one"
                )));
            }
            options.output_schema = Some(
                OutputSchema::parse(&schema)
                    .map_err(|e| DataFusionError::Plan(format!("{NAME}: {e}")))?,
            );
        }
        let model = resolve_model(catalog, NAME, &model, &options)?;
        Ok(TextCall::bound(
            NAME,
            ModelCall::new(model),
            TextKind::Complete,
        ))
    }
}
