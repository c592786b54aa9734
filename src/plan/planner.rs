//! The query planner of a session with the extension: DataFusion's, plus the model nodes' own
//! planning, each query under its own budget.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

use super::options::BedrockOptions;
use crate::bedrock::budget::Budget;

use super::model_exec::ModelExec;
use super::model_node::ModelNode;
use super::semantic_join::exec::{PhysicalKeys, SemanticJoinExec};
use super::semantic_join::node::{Pairs, SemanticJoin};

/// Plans [`ModelNode`]s as [`ModelExec`]s and [`SemanticJoin`]s as [`SemanticJoinExec`]s, all
/// under one query's budget.
#[derive(Debug)]
pub struct ModelPlanner {
    budget: Arc<Budget>,
    /// Planning an EXPLAIN under `bedrock.count_tokens`: model relations count a sample of
    /// their prompts with `CountTokens`.
    count_tokens: bool,
}

#[async_trait]
impl ExtensionPlanner for ModelPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        if let Some(join) = node.as_any().downcast_ref::<SemanticJoin>() {
            return self
                .plan_semantic_join(planner, join, physical_inputs, session, planning_ctx)
                .map(Some);
        }
        let Some(node) = node.as_any().downcast_ref::<ModelNode>() else {
            return Ok(None);
        };
        let (Some(logical), Some(physical)) = (logical_inputs.first(), physical_inputs.first())
        else {
            return Err(DataFusionError::Internal(
                "Model was planned without its input".into(),
            ));
        };
        let args = node
            .args
            .iter()
            .map(|arg| planner.create_physical_expr(arg, logical.schema(), session, planning_ctx))
            .collect::<Result<Vec<_>>>()?;
        let exec = ModelExec::new(
            node.call().clone(),
            Arc::clone(physical),
            args,
            Arc::new(node.schema.as_arrow().clone()),
            Arc::clone(&self.budget),
        )
        .under(&BedrockOptions::of_config(session.config_options()));
        let exec = if self.count_tokens {
            exec.with_counted_sample(session.task_ctx()).await
        } else {
            exec
        };
        Ok(Some(Arc::new(exec)))
    }
}

/// DataFusion's query planner plus the extension's plan nodes. Every query gets its own
/// [`Budget`] from the session's `bedrock.*` options.
///
/// It wraps the query planner the session had: plans without model relations go to that
/// planner unchanged (DataFusion's default one, or an application's own), and plans with them
/// are planned by DataFusion's physical planner with [`ModelPlanner`] added (an application
/// whose own planner must see those plans too adds [`ModelPlanner::for_session`] to its
/// extension planners).
#[derive(Debug, Default)]
pub struct BedrockQueryPlanner {
    inner: Option<Arc<dyn QueryPlanner + Send + Sync>>,
}

impl BedrockQueryPlanner {
    /// A planner around the session's current one (`None`: DataFusion's default). Wrapping a
    /// `BedrockQueryPlanner` again returns a copy of it, so the extension is installed once.
    #[must_use]
    pub fn wrapping(inner: Option<Arc<dyn QueryPlanner + Send + Sync>>) -> Self {
        let Some(inner) = inner else {
            return Self { inner: None };
        };
        let any = inner.as_ref() as &dyn Any;
        if let Some(ours) = any.downcast_ref::<Self>() {
            return Self {
                inner: ours.inner.clone(),
            };
        }
        Self { inner: Some(inner) }
    }
}

impl ModelPlanner {
    /// A [`SemanticJoinExec`] over the planned sides of `join`.
    fn plan_semantic_join(
        &self,
        planner: &dyn PhysicalPlanner,
        join: &SemanticJoin,
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [left, right] = physical_inputs else {
            return Err(DataFusionError::Internal(format!(
                "SemanticJoin was planned with {} inputs instead of two",
                physical_inputs.len()
            )));
        };
        let (left_plan, right_plan) = join.sides();
        let keys = match join.pairs() {
            Pairs::Nearest(c) => Some(PhysicalKeys {
                left: planner.create_physical_expr(
                    &c.left_key,
                    left_plan.schema(),
                    session,
                    planning_ctx,
                )?,
                right: planner.create_physical_expr(
                    &c.right_key,
                    right_plan.schema(),
                    session,
                    planning_ctx,
                )?,
            }),
            Pairs::Every(_) => None,
        };
        Ok(Arc::new(SemanticJoinExec::try_new(
            Arc::clone(left),
            Arc::clone(right),
            join.pairs().clone(),
            keys,
            Arc::new(join.schema().as_arrow().clone()),
            Arc::clone(&self.budget),
        )?))
    }

    /// The extension planner of one query, with the budget of the session's `bedrock.*`
    /// options.
    pub fn for_session(session: &dyn Session) -> Self {
        Self {
            budget: Arc::new(BedrockOptions::of_config(session.config_options()).budget()),
            count_tokens: false,
        }
    }

    /// The extension planner of an EXPLAIN: under `bedrock.count_tokens`, model relations
    /// count a sample of their prompts with Bedrock's `CountTokens`.
    fn for_explain(session: &dyn Session) -> Self {
        Self {
            count_tokens: BedrockOptions::of_config(session.config_options()).count_tokens,
            ..Self::for_session(session)
        }
    }
}

/// Whether a plan (its subqueries included) has a model node or a semantic join.
fn has_model_node(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        found = matches!(node, LogicalPlan::Extension(e)
            if e.node.as_any().is::<ModelNode>() || e.node.as_any().is::<SemanticJoin>());
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

#[async_trait]
impl QueryPlanner for BedrockQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(inner) = &self.inner
            && !has_model_node(logical_plan)
        {
            return inner.create_physical_plan(logical_plan, session).await;
        }
        let ours = if matches!(logical_plan, LogicalPlan::Explain(_)) {
            ModelPlanner::for_explain(session)
        } else {
            ModelPlanner::for_session(session)
        };
        let planner = DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(ours)]);
        planner.create_physical_plan(logical_plan, session).await
    }
}
