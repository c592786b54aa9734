//! The semantic join: `ai_filter(model, 'Does ' || a.x || ' answer ' || b.y || '?')` over two
//! relations (in a JOIN's ON, or in WHERE over a cross join) asks the model about every pair,
//! N × M requests. Under `SET bedrock.semantic_join_embedding_model = '<embedding model id>'`
//! the query is planned instead as:
//!
//! 1. each side's part of the prompt ([`split`]) is embedded through the same model-call core
//!    as `ai_embed` (limiter, cache, dedup, budget, usage);
//! 2. each left row keeps its `bedrock.semantic_join_candidates` (default 10) right rows of
//!    highest cosine similarity ([`nearest`]);
//! 3. the `ai_filter` runs on those pairs only, as a filter above them.
//!
//! [`SemanticJoinRule`](rule::SemanticJoinRule) replaces the join by a
//! [`SemanticJoin`](node::SemanticJoin) node, planned as
//! [`SemanticJoinExec`](exec::SemanticJoinExec). With the setting empty (the default), or when
//! the prompt does not split into a left and a right part, the node gives every pair: the query
//! runs the full cross product, as before, under the session's budget. Either way an AI function
//! in a join condition works, where DataFusion alone cannot evaluate it.

pub mod exec;
pub mod nearest;
pub mod node;
pub mod rule;
pub mod split;
