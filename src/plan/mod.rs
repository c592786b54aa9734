//! Query planning: models as relations, rewritten into calls of their predict UDF.

pub mod model_table;
pub mod rewrite;
