//! What every AI function is: one [`AiFunction`] type, unbound as registered in a session and
//! bound to its model when a query is planned.
//!
//! - **Unbound** (`ai_complete`, `ai_filter`, … as registered): it holds the session's catalog
//!   and its [`AiBinder`]; planning a call resolves the model named by the call's constant
//!   arguments.
//! - **Bound**: the analyzer rule [`BindAiFunctions`] replaces each call's function by one
//!   bound to the resolved model (an [`AiCall`]: model id, engine, API, inference parameters,
//!   system prompt, output schema, `on_error`, provenance — never a secret). Execution uses
//!   that binding and never reads the catalog; the operator that runs AI functions shows it in
//!   EXPLAIN. `predict_<model>` functions are created bound.
//!
//! DataFusion evaluates async functions through an `AsyncScalarUDF` wrapper that does not give
//! its inner function back, so the functions made here are remembered (weakly) and found again
//! from a `ScalarUDF` by the identity of their signature: [`AiFunction::of`].

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::bedrock::engine::CallOptions;
use crate::catalog::Catalog;
use crate::inference::RowAnswer;
use crate::inference::answer::{with_meta_array, with_meta_type};
use crate::inference::text::text_rows;

/// The arguments of a call as planning knows them: each constant's value and every type.
#[derive(Debug, Clone, Default)]
pub struct BindArgs {
    /// The value of each argument that is a constant, `None` for the others.
    pub scalars: Vec<Option<ScalarValue>>,
    /// The type of each argument.
    pub types: Vec<DataType>,
}

impl BindArgs {
    /// The number of arguments.
    #[must_use]
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// Checks the number of arguments: `{function} takes 2 to 4 arguments (usage), got 1`.
    ///
    /// # Errors
    /// Too few or too many.
    pub fn check_count(
        &self,
        function: &str,
        counts: std::ops::RangeInclusive<usize>,
        usage: &str,
    ) -> Result<()> {
        let count = self.len();
        if counts.contains(&count) {
            return Ok(());
        }
        let (low, high) = (counts.start(), counts.end());
        let allowed = match high - low {
            0 => low.to_string(),
            1 => format!("{low} or {high}"),
            _ => format!("{low} to {high}"),
        };
        Err(DataFusionError::Plan(format!(
            "{function} takes {allowed} arguments ({usage}), got {count}"
        )))
    }

    /// Argument `index` (0-based), when it is a constant.
    pub fn scalar(&self, index: usize) -> Option<&ScalarValue> {
        self.scalars.get(index).and_then(Option::as_ref)
    }

    /// A text argument that must be a constant (`position` is 1-based, as users count).
    ///
    /// # Errors
    /// NULL, or not a constant string, with an example of what to write.
    pub fn text(
        &self,
        function: &str,
        what: &str,
        position: usize,
        example: &str,
    ) -> Result<String> {
        match self.scalar(position - 1).map(ScalarValue::try_as_str) {
            Some(Some(Some(text))) => Ok(text.to_string()),
            Some(Some(None)) => Err(DataFusionError::Plan(format!(
                "{function}: the {what} (argument {position}) is NULL: write a constant such as {example}"
            ))),
            _ => Err(DataFusionError::Plan(format!(
                "{function}: the {what} (argument {position}) must be a constant string such as {example}, not a column or an expression"
            ))),
        }
    }

    /// An optional text argument that must be a constant.
    ///
    /// # Errors
    /// As [`BindArgs::text`], when the argument is there.
    pub fn optional_text(
        &self,
        function: &str,
        what: &str,
        position: usize,
        example: &str,
    ) -> Result<Option<String>> {
        if position > self.len() {
            return Ok(None);
        }
        self.text(function, what, position, example).map(Some)
    }

    fn of_return_args(args: &ReturnFieldArgs) -> Self {
        Self {
            scalars: args.scalar_arguments.iter().map(|s| s.cloned()).collect(),
            types: args
                .arg_fields
                .iter()
                .map(|f| f.data_type().clone())
                .collect(),
        }
    }

    fn of_values(args: &ScalarFunctionArgs) -> Self {
        Self {
            scalars: args
                .args
                .iter()
                .map(|v| match v {
                    ColumnarValue::Scalar(s) => Some(s.clone()),
                    ColumnarValue::Array(_) => None,
                })
                .collect(),
            types: args.args.iter().map(ColumnarValue::data_type).collect(),
        }
    }

    fn of_exprs(args: &[Expr], schema: &DFSchema) -> Self {
        Self {
            scalars: args
                .iter()
                .map(|e| match e {
                    Expr::Literal(value, _) => Some(value.clone()),
                    _ => None,
                })
                .collect(),
            types: args
                .iter()
                .map(|e| e.get_type(schema).unwrap_or(DataType::Null))
                .collect(),
        }
    }
}

/// The texts of a call's argument `index` (0-based) for `rows` rows, at execution.
///
/// # Errors
/// A call without that argument (binding checked it), or a value with no text form.
pub fn text_argument(
    function: &str,
    args: &[ColumnarValue],
    index: usize,
    rows: usize,
) -> Result<Vec<Option<String>>> {
    match args.get(index) {
        Some(value) => text_rows(value, rows),
        None => Err(DataFusionError::Internal(format!(
            "{function} was called without argument {}",
            index + 1
        ))),
    }
}

/// An AI function before it is bound: checks a call's arguments and resolves its model.
pub trait AiBinder: fmt::Debug + Send + Sync {
    /// The function's name in SQL.
    fn name(&self) -> &str;

    /// The call bound to its model.
    ///
    /// # Errors
    /// Wrong arguments, an unknown model or engine, invalid options: each says what to write.
    fn bind(&self, catalog: &Catalog, args: &BindArgs) -> Result<Arc<dyn AiCall>>;
}

/// An AI function call bound to its model: how its rows are answered.
#[async_trait]
pub trait AiCall: fmt::Debug + Send + Sync {
    /// The type of an answer (before provenance wraps it).
    fn value_type(&self) -> DataType;

    /// Whether answers come with their provenance, as `{value, meta}`.
    fn provenance(&self) -> bool;

    /// The binding, for EXPLAIN: `model=…, model_id=…, engine=…, api=…, …`.
    fn describe(&self) -> String;

    /// What identifies the binding: equal fingerprints answer the same way.
    fn fingerprint(&self) -> String;

    /// The binding as data that can leave the process (no secret in it).
    fn spec(&self) -> super::call_spec::CallSpec;

    /// The engine it calls.
    fn engine(&self) -> Arc<crate::bedrock::engine::Engine>;

    /// Its own `execution` (the model's, or the call's option); `None` follows the session's
    /// `bedrock.execution`. Embeddings always run on demand.
    fn execution(&self) -> Option<crate::bedrock::batch::Execution> {
        None
    }

    /// Whether each row is an aggregate's group reduced by several requests (`ai_agg`): its
    /// operator then counts chunks and reduce levels.
    fn reduces(&self) -> bool {
        false
    }

    /// The answers of `rows` rows, whose argument values are `args`, under a query's options.
    ///
    /// # Errors
    /// A row that failed with `on_error = 'fail'`, or a spent budget.
    async fn answer(
        &self,
        args: &[ColumnarValue],
        rows: usize,
        options: &CallOptions,
    ) -> Result<Vec<RowAnswer>>;

    /// The answers' values as one column of [`AiCall::value_type`].
    ///
    /// # Errors
    /// An answer Arrow cannot hold.
    fn values(&self, answers: &[RowAnswer]) -> Result<ArrayRef>;
}

/// The type of a bound call's result: its value, or `{value, meta}` with provenance.
pub fn output_type(call: &dyn AiCall) -> DataType {
    if call.provenance() {
        with_meta_type(call.value_type())
    } else {
        call.value_type()
    }
}

/// A bound call's result column.
///
/// # Errors
/// As [`AiCall::values`].
pub fn output_array(call: &dyn AiCall, answers: &[RowAnswer]) -> Result<ArrayRef> {
    let values = call.values(answers)?;
    if call.provenance() {
        with_meta_array(values, answers)
    } else {
        Ok(values)
    }
}

enum Binding {
    Unbound {
        binder: Arc<dyn AiBinder>,
        catalog: Arc<Catalog>,
    },
    Bound(Arc<dyn AiCall>),
}

/// An AI function: unbound (as registered) or bound to its model (as planned).
pub struct AiFunction {
    name: String,
    signature: Signature,
    binding: Binding,
}

impl fmt::Debug for AiFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.binding {
            Binding::Unbound { .. } => write!(f, "{} (unbound)", self.name),
            Binding::Bound(call) => write!(f, "{} [{}]", self.name, call.describe()),
        }
    }
}

/// The AI functions made so far, found again by [`AiFunction::of`].
static MADE: Mutex<Vec<Weak<AiFunction>>> = Mutex::new(Vec::new());

impl AiFunction {
    /// The function as registered in a session: it binds its calls through `binder` against
    /// `catalog`.
    pub fn unbound(binder: Arc<dyn AiBinder>, catalog: &Arc<Catalog>) -> ScalarUDF {
        Self::made(Self {
            name: binder.name().to_string(),
            signature: Self::signature_of_all(),
            binding: Binding::Unbound {
                binder,
                catalog: Arc::clone(catalog),
            },
        })
    }

    /// A function bound to `call` from the start (`predict_<model>`).
    pub fn bound(name: &str, call: Arc<dyn AiCall>) -> ScalarUDF {
        Self::made(Self {
            name: name.to_string(),
            signature: Self::signature_of_all(),
            binding: Binding::Bound(call),
        })
    }

    /// Positional arguments of any type, checked when a call is bound; volatile, so that
    /// DataFusion neither folds nor repeats a call. (Named arguments would need
    /// `coerce_types`, which DataFusion 55's async wrapper does not pass on.)
    fn signature_of_all() -> Signature {
        Signature::variadic_any(Volatility::Volatile)
    }

    fn made(function: Self) -> ScalarUDF {
        let function = Arc::new(function);
        let mut made = MADE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        made.retain(|f| f.strong_count() > 0);
        made.push(Arc::downgrade(&function));
        drop(made);
        AsyncScalarUDF::new(function).into_scalar_udf()
    }

    /// The AI function behind a `ScalarUDF`, if it is one.
    pub fn of(udf: &ScalarUDF) -> Option<Arc<Self>> {
        let made = MADE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        made.iter()
            .filter_map(Weak::upgrade)
            .find(|f| std::ptr::eq(udf.signature(), &raw const f.signature))
    }

    /// The bound call, when the function is bound.
    #[must_use]
    pub fn call(&self) -> Option<&Arc<dyn AiCall>> {
        match &self.binding {
            Binding::Bound(call) => Some(call),
            Binding::Unbound { .. } => None,
        }
    }

    /// The function's name in SQL.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Binds a call with arguments `args`; a bound function stays as it is.
    ///
    /// # Errors
    /// As [`AiBinder::bind`].
    pub fn bind(&self, args: &BindArgs) -> Result<Arc<dyn AiCall>> {
        match &self.binding {
            Binding::Bound(call) => Ok(Arc::clone(call)),
            Binding::Unbound { binder, catalog } => binder.bind(catalog, args),
        }
    }

    /// The function bound with `args`, as a new `ScalarUDF` to put in the plan.
    ///
    /// # Errors
    /// As [`AiBinder::bind`].
    pub fn bound_udf(&self, args: &BindArgs) -> Result<ScalarUDF> {
        Ok(Self::bound(&self.name, self.bind(args)?))
    }

    fn identity(&self) -> String {
        match &self.binding {
            Binding::Unbound { catalog, .. } => {
                format!("{} unbound {:p}", self.name, Arc::as_ptr(catalog))
            }
            Binding::Bound(call) => format!("{} bound {}", self.name, call.fingerprint()),
        }
    }
}

impl PartialEq for AiFunction {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for AiFunction {}

impl Hash for AiFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

impl ScalarUDFImpl for AiFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        match &self.binding {
            Binding::Bound(call) => Ok(output_type(call.as_ref())),
            Binding::Unbound { .. } => Err(DataFusionError::Internal(format!(
                "{}'s type depends on its arguments: it is computed by return_field_from_args",
                self.name
            ))),
        }
    }

    /// Binds the call at planning (so a wrong model or option is a planning error) and gives
    /// the type of its answer.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let call = self.bind(&BindArgs::of_return_args(&args))?;
        Ok(Arc::new(Field::new(
            &self.name,
            output_type(call.as_ref()),
            true,
        )))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(DataFusionError::Internal(format!(
            "{} is asynchronous: DataFusion runs it through its async function operator",
            self.name
        )))
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for AiFunction {
    /// Runs outside the extension's operator (a planner without it): no budget, no counters.
    /// A call the analyzer did not bind is bound here, from its constant arguments.
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let call = self.bind(&BindArgs::of_values(&args))?;
        let answers = call
            .answer(&args.args, args.number_rows, &CallOptions::default())
            .await?;
        Ok(ColumnarValue::Array(output_array(call.as_ref(), &answers)?))
    }
}

/// The analyzer rule that binds every AI function call of a plan (its subqueries included) to
/// its model. It runs before type coercion, and again from the extension's SQL front so that
/// planning errors come at planning.
#[derive(Debug, Default)]
pub struct BindAiFunctions;

impl BindAiFunctions {
    /// `plan` with its AI function calls bound.
    ///
    /// # Errors
    /// A call whose model or options do not resolve.
    pub fn bind(plan: LogicalPlan) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let schema = input_schema(&node);
            node.map_expressions(|expr| {
                expr.transform_up(|e| {
                    let Expr::ScalarFunction(ScalarFunction { func, args }) = &e else {
                        return Ok(Transformed::no(e));
                    };
                    let Some(function) = AiFunction::of(func) else {
                        return Ok(Transformed::no(e));
                    };
                    if function.call().is_some() {
                        return Ok(Transformed::no(e));
                    }
                    let bound = function.bound_udf(&BindArgs::of_exprs(args, &schema))?;
                    Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction {
                        func: Arc::new(bound),
                        args: args.clone(),
                    })))
                })
            })
        })
        .map(|t| t.data)
    }
}

/// The schema a node's expressions are evaluated against: its inputs' columns.
fn input_schema(node: &LogicalPlan) -> DFSchema {
    let mut schema = DFSchema::empty();
    for input in node.inputs() {
        schema.merge(input.schema());
    }
    schema
}

impl AnalyzerRule for BindAiFunctions {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        Self::bind(plan)
    }

    fn name(&self) -> &'static str {
        "bedrock_bind_ai_functions"
    }
}
