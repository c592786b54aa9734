//! `ai_complete(model, prompt [, options])`: a model's answer to each row's prompt.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use super::completion::{
    Completion, CompletionOptions, plan_error, planning_text, runtime_text, text_rows,
};
use crate::bedrock::engine::CallOptions;
use crate::catalog::Catalog;
use crate::catalog::output_schema::OutputSchema;

/// The function's name in SQL.
pub const NAME: &str = "ai_complete";

const MODEL_EXAMPLE: &str =
    "'amazon.nova-micro-v1:0' or the name of a model created with CREATE MODEL";
const OPTIONS_EXAMPLE: &str = "'{\"max_tokens\": 50, \"temperature\": 0.2}'";
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
///   `output_schema` asks for typed structured output.
/// - `output_schema` (a constant, the fourth argument or the option of that name):
///   `'name STRING, age INT, tags LIST<STRING>'` or a
///   JSON Schema; the answer is then a struct, obtained through a forced tool call, validated
///   and asked for once more when it does not match (see `CREATE MODEL … output_schema`). A
///   model created with `output_schema` answers with its struct too.
///
/// A NULL prompt gives NULL and sends no request. The rows of a batch are sent concurrently
/// through the engine's limiter; identical prompts are sent once and cached answers are reused.
///
/// ```sql
/// SELECT ai_complete('amazon.nova-micro-v1:0', 'Capital of ' || country || '?',
///                    '{"max_tokens": 50}') AS answer
/// FROM countries;
/// ```
#[derive(Debug)]
pub struct AiComplete {
    catalog: Arc<Catalog>,
    signature: Signature,
}

impl AiComplete {
    /// The function, resolving model names against a session's catalog.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self {
            catalog,
            // Positional arguments only: DataFusion 55's async UDF wrapper does not pass on
            // `coerce_types`, which named arguments (a user-defined signature) would need.
            signature: Signature::variadic_any(Volatility::Volatile),
        }
    }

    /// The function ready to register with a session.
    pub fn into_scalar_udf(self) -> ScalarUDF {
        AsyncScalarUDF::new(Arc::new(self)).into_scalar_udf()
    }

    fn check_arity(count: usize) -> Result<()> {
        if (2..=4).contains(&count) {
            Ok(())
        } else {
            Err(plan_error(format!(
                "{NAME} takes 2 to 4 arguments (model, prompt [, options [, output_schema]]), got {count}: write {NAME}('amazon.nova-micro-v1:0', prompt_column)"
            )))
        }
    }

    /// The options, with the fourth argument (`output_schema => '…'`) merged in.
    fn options(text: Option<String>, schema: Option<String>) -> Result<CompletionOptions> {
        let mut options = text.map_or_else(
            || Ok(CompletionOptions::default()),
            |t| CompletionOptions::parse(NAME, &t),
        )?;
        if let Some(schema) = schema {
            if options.output_schema.is_some() {
                return Err(plan_error(format!(
                    "{NAME}: output_schema is given twice (as an option and as an argument): keep one"
                )));
            }
            options.output_schema =
                Some(OutputSchema::parse(&schema).map_err(|e| plan_error(format!("{NAME}: {e}")))?);
        }
        Ok(options)
    }
}

super::completion::bound_to_catalog!(AiComplete);

impl ScalarUDFImpl for AiComplete {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    /// Checks at planning time that the model and options are constants that resolve; the
    /// answer is text, or a struct with `output_schema`.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        Self::check_arity(args.arg_fields.len())?;
        let model = planning_text(NAME, "model", 1, args.scalar_arguments[0], MODEL_EXAMPLE)?;
        let options = args
            .scalar_arguments
            .get(2)
            .map(|s| planning_text(NAME, "options", 3, *s, OPTIONS_EXAMPLE))
            .transpose()?;
        let schema = args
            .scalar_arguments
            .get(3)
            .map(|s| planning_text(NAME, "output_schema", 4, *s, SCHEMA_EXAMPLE))
            .transpose()?;
        let completion = Completion::resolve(
            &self.catalog,
            NAME,
            &model,
            &Self::options(options, schema)?,
        )?;
        let data_type = match completion.structured(NAME)? {
            Some(call) => call.target_type(),
            None => DataType::Utf8,
        };
        Ok(Arc::new(Field::new(NAME, data_type, true)))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(DataFusionError::Internal(format!(
            "{NAME} is asynchronous and runs through AsyncFuncExec"
        )))
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for AiComplete {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Self::check_arity(args.args.len())?;
        let model = runtime_text(NAME, "model", 1, &args.args[0], MODEL_EXAMPLE)?;
        let options = args
            .args
            .get(2)
            .map(|v| runtime_text(NAME, "options", 3, v, OPTIONS_EXAMPLE))
            .transpose()?;
        let schema = args
            .args
            .get(3)
            .map(|v| runtime_text(NAME, "output_schema", 4, v, SCHEMA_EXAMPLE))
            .transpose()?;
        let completion = Completion::resolve(
            &self.catalog,
            NAME,
            &model,
            &Self::options(options, schema)?,
        )?;
        let prompts = text_rows(&args.args[1], args.number_rows)?;
        if let Some(call) = completion.structured(NAME)? {
            let answers = call.answer_each(&prompts, &CallOptions::default()).await?;
            return Ok(ColumnarValue::Array(call.target_array(&answers)?));
        }
        let answers = completion.answers(NAME, &prompts, None).await?;
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(answers))))
    }
}
