//! The plan node of a model relation: a model answering the rows of its input.
//!
//! - `default`: batches are answered as they arrive (two in flight, so a slow row of one batch
//!   does not idle the next), row *i* of the output answering row *i* of the input; a LIMIT
//!   above is pushed below, so only the needed rows are sent.
//! - `conversational` (MindsDB's semantics): the prompts of all rows form one user message of
//!   one request; the answer goes to the last row, every other row gets NULL. Batches stream
//!   through with NULL answers; only the last one is held until the answer arrives.
//! - `conversational-full`: every row is answered in turn, with the earlier rows and their
//!   answers sent as prior turns (the latest `max_history_rows` of them).
//!
//! A LIMIT bounds the requests of every mode: the default mode lets it through to its input;
//! a conversation takes only its first rows (`fetch`), so `conversational-full` sends one
//! request per row taken and `conversational` one request for them.
//!
//! The conversational modes see every row in the data's order, however many files,
//! partitions and batches it spans. EXPLAIN names the model, its mode and concurrency, and
//! estimates requests and cost when the input's size is known; EXPLAIN ANALYZE shows requests,
//! dedup and cache hits, retries, throttles, tokens and estimated USD. A query's budget
//! (`SET bedrock.max_requests / bedrock.max_cost_usd`) is shared by all its model nodes.
//!
//! [`ModelNode`] is the logical node that [`super::rewrite::ModelRelationRule`] puts in place
//! of a model relation, [`ModelExec`](super::model_exec::ModelExec) its operator, and
//! [`BedrockQueryPlanner`](super::planner::BedrockQueryPlanner) the query
//! planner that knows how to plan it.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::{DFSchema, DFSchemaRef, TableReference};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};

use crate::catalog::model::Mode;
use crate::inference::CreatedModel;

/// A model answering the rows of its input: the input's columns, then the model's target
/// column and, with `provenance`, `<target>_meta` (qualified by the model's alias).
#[derive(Debug, Clone)]
pub struct ModelNode {
    call: CreatedModel,
    input: LogicalPlan,
    pub(super) args: Vec<Expr>,
    qualifier: TableReference,
    pub(super) schema: DFSchemaRef,
}

impl ModelNode {
    /// The node answering `input`'s rows, whose prompts come from `args` (the model's inputs,
    /// in [`crate::catalog::model::ModelSpec::input_columns`] order).
    ///
    /// # Errors
    /// When an output column's name clashes with a column of the input.
    pub fn try_new(
        call: CreatedModel,
        input: LogicalPlan,
        args: Vec<Expr>,
        qualifier: TableReference,
    ) -> Result<Self> {
        let outputs = Schema::new(call.output_fields());
        let outputs = DFSchema::try_from_qualified_schema(qualifier.clone(), &outputs)?;
        let schema = Arc::new(input.schema().join(&outputs)?);
        Ok(Self {
            call,
            input,
            args,
            qualifier,
            schema,
        })
    }

    /// The model and its engine.
    #[must_use]
    pub fn call(&self) -> &CreatedModel {
        &self.call
    }

    /// The expressions giving the model's inputs.
    #[must_use]
    pub fn args(&self) -> &[Expr] {
        &self.args
    }

    /// The model's alias, which qualifies its output columns.
    #[must_use]
    pub fn qualifier(&self) -> &TableReference {
        &self.qualifier
    }

    fn fingerprint(&self) -> String {
        self.call.fingerprint()
    }
}

impl PartialEq for ModelNode {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint() == other.fingerprint()
            && self.input == other.input
            && self.args == other.args
            && self.qualifier == other.qualifier
    }
}

impl Eq for ModelNode {}

impl Hash for ModelNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.fingerprint().hash(state);
        self.input.hash(state);
        self.args.hash(state);
        self.qualifier.hash(state);
    }
}

impl PartialOrd for ModelNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (self == other).then_some(Ordering::Equal)
    }
}

/// `Model: model=…, model_id=…, mode=…, max_concurrency=…, inputs=[…]`, for EXPLAIN
/// (`conversational-full` adds `max_history_rows=…` after the concurrency).
pub(super) fn describe(call: &CreatedModel, inputs: &str, f: &mut fmt::Formatter) -> fmt::Result {
    let spec = call.spec();
    write!(
        f,
        "Model: model={}, model_id={}, mode={}, max_concurrency={}",
        spec.name,
        spec.model_id,
        spec.mode.name(),
        call.engine().config().max_concurrency
    )?;
    if spec.mode == Mode::ConversationalFull {
        write!(f, ", max_history_rows={}", spec.max_history_rows)?;
    }
    if let Some(k) = spec.params.rows_per_request.filter(|k| *k > 1) {
        write!(f, ", rows_per_request={k}")?;
    }
    if let Some(cache) = spec.params.prompt_cache {
        write!(f, ", prompt_cache={}", cache.name())?;
    }
    write!(f, ", inputs=[{inputs}]")
}

impl UserDefinedLogicalNodeCore for ModelNode {
    fn name(&self) -> &'static str {
        "Model"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        self.args.clone()
    }

    fn prevent_predicate_push_down_columns(&self) -> HashSet<String> {
        // A filter on the data's columns chooses the rows to answer (and the rows of a
        // conversation, as MindsDB's WHERE on the data side does); a filter on the answer
        // must stay above.
        self.call
            .output_fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let inputs: Vec<String> = self.args.iter().map(ToString::to_string).collect();
        describe(&self.call, &inputs.join(", "), f)
    }

    fn with_exprs_and_inputs(
        &self,
        exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        if inputs.len() != 1 {
            return Err(DataFusionError::Internal(format!(
                "Model takes one input, got {}",
                inputs.len()
            )));
        }
        Self::try_new(
            self.call.clone(),
            inputs.swap_remove(0),
            exprs,
            self.qualifier.clone(),
        )
    }

    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        let input_schema = self.input.schema();
        let width = input_schema.fields().len();
        let mut needed: Vec<usize> = output_columns
            .iter()
            .copied()
            .filter(|i| *i < width)
            .collect();
        for arg in &self.args {
            for column in arg.column_refs() {
                needed.push(input_schema.index_of_column(column).ok()?);
            }
        }
        needed.sort_unstable();
        needed.dedup();
        Some(vec![needed])
    }

    fn supports_limit_pushdown(&self) -> bool {
        // One answer per row, independent of the others: LIMIT n needs only n rows.
        self.call.spec().mode == Mode::Default
    }
}
