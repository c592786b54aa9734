//! Splitting an `ai_filter` prompt into the part of each side of a join: the pieces of a `||`
//! chain that read only the left relation, and those that read only the right one.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::expr::{BinaryExpr, Cast};
use datafusion::logical_expr::{Expr, Operator, lit};

/// The text each side contributes to a prompt: what gets embedded.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitPrompt {
    /// The left relation's pieces, joined with spaces.
    pub left: Expr,
    /// The right relation's pieces, joined with spaces.
    pub right: Expr,
}

/// The pieces of a `||` chain, in order.
fn concat_pieces<'a>(expr: &'a Expr, out: &mut Vec<&'a Expr>) {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::StringConcat,
            right,
        }) => {
            concat_pieces(left, out);
            concat_pieces(right, out);
        }
        Expr::Alias(alias) => concat_pieces(&alias.expr, out),
        other => out.push(other),
    }
}

/// Whether a piece can be computed again on its own side: no subquery, no volatile or async
/// function (an AI call inside the prompt would be asked twice).
fn computable(piece: &Expr) -> bool {
    let mut ok = !piece.is_volatile();
    let _ = piece.apply(|e| {
        if matches!(
            e,
            Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::SetComparison(_)
                | Expr::OuterReferenceColumn(..)
                | Expr::Placeholder(_)
        ) {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    ok
}

/// Pieces joined with a space, each as text: NULL when one of them is NULL, as the prompt is.
fn joined(pieces: Vec<Expr>) -> Option<Expr> {
    let text = |e: Expr| Expr::Cast(Cast::new(Box::new(e), DataType::Utf8));
    pieces
        .into_iter()
        .map(text)
        .reduce(|acc, piece| acc.concat_with(lit(" ")).concat_with(piece))
}

trait ConcatWith {
    fn concat_with(self, other: Expr) -> Expr;
}

impl ConcatWith for Expr {
    fn concat_with(self, other: Expr) -> Expr {
        Expr::BinaryExpr(BinaryExpr::new(
            Box::new(self),
            Operator::StringConcat,
            Box::new(other),
        ))
    }
}

/// The left and right parts of `prompt`, a `||` chain over the columns of `left` and `right`;
/// constant pieces are left out. `None` when a piece reads both sides (or cannot be computed
/// again), or when a side has no piece: then there is nothing to rank candidates by.
#[must_use]
pub fn split(prompt: &Expr, left: &DFSchema, right: &DFSchema) -> Option<SplitPrompt> {
    let mut pieces = Vec::new();
    concat_pieces(prompt, &mut pieces);
    let (mut left_pieces, mut right_pieces) = (Vec::new(), Vec::new());
    for piece in pieces {
        let columns = piece.column_refs();
        if columns.is_empty() {
            continue;
        }
        if !computable(piece) {
            return None;
        }
        if columns.iter().all(|c| left.has_column(c)) {
            left_pieces.push(piece.clone());
        } else if columns.iter().all(|c| right.has_column(c)) {
            right_pieces.push(piece.clone());
        } else {
            return None;
        }
    }
    Some(SplitPrompt {
        left: joined(left_pieces)?,
        right: joined(right_pieces)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::logical_expr::col;
    use datafusion::prelude::concat;

    fn schema(table: &str, columns: &[&str]) -> DFSchema {
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect();
        DFSchema::try_from_qualified_schema(table, &Schema::new(fields)).unwrap()
    }

    #[test]
    fn a_concatenation_splits_into_each_sides_pieces() {
        let (a, b) = (schema("a", &["x", "z"]), schema("b", &["y"]));
        let prompt = lit("Does ")
            .concat_with(col("a.x"))
            .concat_with(lit(" answer "))
            .concat_with(col("b.y"))
            .concat_with(lit(" about "))
            .concat_with(col("a.z"))
            .concat_with(lit("?"));
        let split = split(&prompt, &a, &b).unwrap();
        assert_eq!(
            split.left.to_string(),
            "CAST(a.x AS Utf8) || Utf8(\" \") || CAST(a.z AS Utf8)"
        );
        assert_eq!(split.right.to_string(), "CAST(b.y AS Utf8)");
    }

    #[test]
    fn a_piece_reading_both_sides_or_one_side_alone_does_not_split() {
        let (a, b) = (schema("a", &["x"]), schema("b", &["y"]));
        let mixed = lit("Does ").concat_with(concat(vec![col("a.x"), col("b.y")]));
        assert_eq!(split(&mixed, &a, &b), None);
        let one_side = lit("Is ").concat_with(col("a.x")).concat_with(lit("?"));
        assert_eq!(split(&one_side, &a, &b), None);
        assert_eq!(split(&col("a.x"), &a, &b), None);
    }
}
