//! The logical node of the semantic join: the pairs of two relations an `ai_filter` above it
//! is asked about — each left row's nearest right rows, or every pair.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::common::DFSchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    Expr, JoinType, LogicalPlan, UserDefinedLogicalNodeCore, build_join_schema,
};

use crate::udf::function::AiCall;

/// How the candidate pairs are chosen by embeddings.
#[derive(Debug, Clone)]
pub struct Candidates {
    /// The left row's part of the prompt: what is embedded of it.
    pub left_key: Expr,
    /// The right row's part of the prompt.
    pub right_key: Expr,
    /// The embedding model as the session names it (`bedrock.semantic_join_embedding_model`).
    pub model: String,
    /// The embedding call, bound to its model and engine (no secret in it).
    pub embedding: Arc<dyn AiCall>,
    /// Right rows kept per left row.
    pub k: usize,
}

/// Which pairs the node gives.
#[derive(Debug, Clone)]
pub enum Pairs {
    /// Each left row with its `k` nearest right rows.
    Nearest(Box<Candidates>),
    /// Every pair, and why.
    Every(String),
}

/// The pairs of `left` and `right` an `ai_filter` above is asked about: the columns of both,
/// as an inner join's.
#[derive(Debug, Clone)]
pub struct SemanticJoin {
    left: LogicalPlan,
    right: LogicalPlan,
    pairs: Pairs,
    schema: DFSchemaRef,
}

impl SemanticJoin {
    /// The pairs of `left` and `right` chosen by `pairs`.
    ///
    /// # Errors
    /// When the two sides' columns clash (as a join's would).
    pub fn try_new(left: LogicalPlan, right: LogicalPlan, pairs: Pairs) -> Result<Self> {
        let schema = Arc::new(build_join_schema(
            left.schema(),
            right.schema(),
            &JoinType::Inner,
        )?);
        Ok(Self {
            left,
            right,
            pairs,
            schema,
        })
    }

    /// How the pairs are chosen.
    #[must_use]
    pub fn pairs(&self) -> &Pairs {
        &self.pairs
    }

    /// The left and right relations.
    #[must_use]
    pub fn sides(&self) -> (&LogicalPlan, &LogicalPlan) {
        (&self.left, &self.right)
    }

    fn identity(&self) -> String {
        match &self.pairs {
            Pairs::Nearest(c) => format!(
                "nearest {} {} {} {} {}",
                c.k,
                c.model,
                c.embedding.fingerprint(),
                c.left_key,
                c.right_key
            ),
            Pairs::Every(why) => format!("every {why}"),
        }
    }
}

impl PartialEq for SemanticJoin {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity() && self.left == other.left && self.right == other.right
    }
}

impl Eq for SemanticJoin {}

impl Hash for SemanticJoin {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
        self.left.hash(state);
        self.right.hash(state);
    }
}

impl PartialOrd for SemanticJoin {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (self == other).then_some(Ordering::Equal)
    }
}

/// `SemanticJoin: candidates=10 per left row, embedding_model=…, left_key=…, right_key=…`, or
/// `SemanticJoin: every pair (why)`, for EXPLAIN.
pub(super) fn describe(
    pairs: &Pairs,
    keys: Option<(String, String)>,
    f: &mut fmt::Formatter,
) -> fmt::Result {
    match (pairs, keys) {
        (Pairs::Nearest(c), Some((left, right))) => write!(
            f,
            "candidates={} per left row by cosine similarity, embedding_model={}, left_key={left}, right_key={right}",
            c.k, c.model
        ),
        (Pairs::Nearest(c), None) => write!(
            f,
            "candidates={} per left row by cosine similarity, embedding_model={}, left_key={}, right_key={}",
            c.k, c.model, c.left_key, c.right_key
        ),
        (Pairs::Every(why), _) => write!(f, "every pair ({why})"),
    }
}

impl UserDefinedLogicalNodeCore for SemanticJoin {
    fn name(&self) -> &'static str {
        "SemanticJoin"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.left, &self.right]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        match &self.pairs {
            Pairs::Nearest(c) => vec![c.left_key.clone(), c.right_key.clone()],
            Pairs::Every(_) => Vec::new(),
        }
    }

    fn prevent_predicate_push_down_columns(&self) -> HashSet<String> {
        // DataFusion would push a filter into every input of the node alike; the optimizer has
        // already pushed each side's own conditions below the join this node replaces.
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SemanticJoin: ")?;
        describe(&self.pairs, None, f)
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        let [left, right]: [LogicalPlan; 2] = inputs.try_into().map_err(|inputs: Vec<_>| {
            DataFusionError::Internal(format!(
                "SemanticJoin takes two inputs, got {}",
                inputs.len()
            ))
        })?;
        let pairs = match &self.pairs {
            Pairs::Nearest(c) => {
                let [left_key, right_key]: [Expr; 2] =
                    exprs.try_into().map_err(|exprs: Vec<_>| {
                        DataFusionError::Internal(format!(
                            "SemanticJoin takes two key expressions, got {}",
                            exprs.len()
                        ))
                    })?;
                Pairs::Nearest(Box::new(Candidates {
                    left_key,
                    right_key,
                    ..c.as_ref().clone()
                }))
            }
            Pairs::Every(why) => Pairs::Every(why.clone()),
        };
        Self::try_new(left, right, pairs)
    }

    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        let width = self.left.schema().fields().len();
        let mut left: Vec<usize> = output_columns
            .iter()
            .copied()
            .filter(|i| *i < width)
            .collect();
        let mut right: Vec<usize> = output_columns
            .iter()
            .filter_map(|i| i.checked_sub(width))
            .collect();
        if let Pairs::Nearest(c) = &self.pairs {
            for column in c.left_key.column_refs() {
                left.push(self.left.schema().index_of_column(column).ok()?);
            }
            for column in c.right_key.column_refs() {
                right.push(self.right.schema().index_of_column(column).ok()?);
            }
        }
        for side in [&mut left, &mut right] {
            side.sort_unstable();
            side.dedup();
        }
        Some(vec![left, right])
    }
}
