//! Query planning: models as relations, rewritten into calls of their predict UDF (or, for the
//! conversational modes, into a plan node that sees every row).

pub mod conversation;
pub mod model_table;
pub mod rewrite;
