//! `cosine_similarity(a, b)`: the cosine of the angle between two vectors.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The function's name in SQL.
pub const NAME: &str = "cosine_similarity";

/// `cosine_similarity(a, b) → Float64`: `a·b / (|a| |b|)` for each row.
///
/// `a` and `b` are vectors: `FixedSizeList`, `List` or `LargeList` of `Float32` or `Float64`
/// (or another numeric type), such as `ai_embed` results or array literals `[0.1, 0.2]`. The
/// result is NULL when either vector is NULL, or when either has zero length (norm 0). Vectors
/// of different lengths, and vectors holding NULL elements, are errors naming the row.
///
/// ```sql
/// SELECT q.id, d.id, cosine_similarity(q.v, d.v) AS score
/// FROM queries q CROSS JOIN docs d
/// ORDER BY score DESC;
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CosineSimilarity {
    signature: Signature,
}

impl Default for CosineSimilarity {
    fn default() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl CosineSimilarity {
    /// The function ready to register with a session.
    #[must_use]
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self::default())
    }
}

fn vector_element(data_type: &DataType) -> Option<&DataType> {
    match data_type {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            Some(f.data_type())
        }
        _ => None,
    }
}

/// Each row's vector as a range of one `Float64` array (`None` for a NULL vector).
struct Vectors {
    values: Float64Array,
    ranges: Vec<Option<(usize, usize)>>,
}

impl Vectors {
    fn of(array: &ArrayRef, which: &str) -> Result<Self> {
        let (values, ranges): (ArrayRef, Vec<Option<(usize, usize)>>) = match array.data_type() {
            DataType::FixedSizeList(_, size) => {
                let list = array.as_fixed_size_list();
                let size = usize::try_from(*size).unwrap_or(0);
                let ranges = (0..list.len())
                    .map(|i| {
                        (!list.is_null(i)).then(|| {
                            let start = usize::try_from(list.value_offset(i)).unwrap_or(0);
                            (start, start + size)
                        })
                    })
                    .collect();
                (Arc::clone(list.values()), ranges)
            }
            DataType::List(_) => {
                let list = array.as_list::<i32>();
                let offsets = list.value_offsets();
                let ranges = (0..list.len())
                    .map(|i| {
                        (!list.is_null(i)).then(|| {
                            let at = |o: i32| usize::try_from(o).unwrap_or(0);
                            (at(offsets[i]), at(offsets[i + 1]))
                        })
                    })
                    .collect();
                (Arc::clone(list.values()), ranges)
            }
            DataType::LargeList(_) => {
                let list = array.as_list::<i64>();
                let offsets = list.value_offsets();
                let ranges = (0..list.len())
                    .map(|i| {
                        (!list.is_null(i)).then(|| {
                            let at = |o: i64| usize::try_from(o).unwrap_or(0);
                            (at(offsets[i]), at(offsets[i + 1]))
                        })
                    })
                    .collect();
                (Arc::clone(list.values()), ranges)
            }
            other => {
                return Err(DataFusionError::Plan(format!(
                    "{NAME}: {which} must be a vector (a list of numbers), got {other}"
                )));
            }
        };
        let values = cast(&values, &DataType::Float64)?;
        let values = values.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        Ok(Self {
            values: values.clone(),
            ranges,
        })
    }

    fn slice(&self, row: usize, which: &str) -> Result<Option<&[f64]>> {
        let Some((start, end)) = self.ranges[row] else {
            return Ok(None);
        };
        if self
            .values
            .nulls()
            .is_some_and(|n| (start..end).any(|i| n.is_null(i)))
        {
            return Err(DataFusionError::Execution(format!(
                "{NAME}: the vector {which} of row {} holds NULL elements: fill them or filter the row out",
                row + 1
            )));
        }
        Ok(Some(&self.values.values()[start..end]))
    }
}

/// The cosine similarity of two equally long vectors; `None` when either norm is zero.
#[must_use]
pub fn cosine(a: &[f64], b: &[f64]) -> Option<f64> {
    let (mut dot, mut na, mut nb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    let norms = na.sqrt() * nb.sqrt();
    (norms > 0.0).then(|| dot / norms)
}

impl ScalarUDFImpl for CosineSimilarity {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        for (t, which) in arg_types.iter().zip(["a", "b"]) {
            match vector_element(t) {
                Some(e) if e.is_numeric() || *e == DataType::Null => {}
                _ if *t == DataType::Null => {}
                _ => {
                    return Err(DataFusionError::Plan(format!(
                        "{NAME}: {which} must be a vector (FixedSizeList or List of Float32 / Float64, such as an ai_embed result or [0.1, 0.2]), got {t}"
                    )));
                }
            }
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let [a, b] = args.args.as_slice() else {
            return Err(DataFusionError::Plan(format!(
                "{NAME} takes 2 arguments (a, b), got {}",
                args.args.len()
            )));
        };
        let (a, b) = (a.to_array(rows)?, b.to_array(rows)?);
        if a.data_type() == &DataType::Null || b.data_type() == &DataType::Null {
            return Ok(ColumnarValue::Array(Arc::new(Float64Array::new_null(rows))));
        }
        let (va, vb) = (Vectors::of(&a, "a")?, Vectors::of(&b, "b")?);
        let scores = (0..rows)
            .map(|row| match (va.slice(row, "a")?, vb.slice(row, "b")?) {
                (Some(x), Some(y)) if x.len() == y.len() => Ok(cosine(x, y)),
                (Some(x), Some(y)) => Err(DataFusionError::Execution(format!(
                    "{NAME}: the vectors of row {} have {} and {} dimensions: compare vectors of one length (embeddings of the same model and dimensions)",
                    row + 1,
                    x.len(),
                    y.len()
                ))),
                _ => Ok(None),
            })
            .collect::<Result<Float64Array>>()?;
        let scores: ArrayRef = Arc::new(scores);
        if all_scalar {
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&scores, 0)?,
            ));
        }
        Ok(ColumnarValue::Array(scores))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{FixedSizeListArray, ListArray};
    use datafusion::arrow::datatypes::{Field, Float32Type, Float64Type};
    use datafusion::logical_expr::ScalarFunctionArgs;

    fn run(a: ArrayRef, b: ArrayRef) -> Result<Vec<Option<f64>>> {
        let rows = a.len();
        let arg_fields = vec![
            Arc::new(Field::new("a", a.data_type().clone(), true)),
            Arc::new(Field::new("b", b.data_type().clone(), true)),
        ];
        let out = CosineSimilarity::default().invoke_with_args(ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(a), ColumnarValue::Array(b)],
            arg_fields,
            number_rows: rows,
            return_field: Arc::new(Field::new(NAME, DataType::Float64, true)),
            config_options: Arc::default(),
        })?;
        let array = out.to_array(rows)?;
        Ok(array.as_primitive::<Float64Type>().iter().collect())
    }

    #[test]
    fn scores_fixed_size_and_variable_lists_with_nulls() {
        let a: ArrayRef = Arc::new(
            FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
                vec![
                    Some(vec![Some(1.0), Some(0.0)]),
                    Some(vec![Some(1.0), Some(1.0)]),
                    None,
                    Some(vec![Some(0.0), Some(0.0)]),
                ],
                2,
            ),
        );
        let b: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(vec![
            Some(vec![Some(0.0), Some(3.0)]),
            Some(vec![Some(2.0), Some(2.0)]),
            Some(vec![Some(1.0), Some(1.0)]),
            Some(vec![Some(1.0), Some(1.0)]),
        ]));
        let scores = run(a, b).unwrap();
        assert_eq!(scores[0], Some(0.0));
        assert!((scores[1].unwrap() - 1.0).abs() < 1e-12, "{scores:?}");
        assert_eq!(&scores[2..], &[None, None]);
    }

    #[test]
    fn mismatched_lengths_and_null_elements_name_the_row() {
        let a: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
            Some(vec![Some(1.0), Some(2.0)]),
            Some(vec![Some(1.0), Some(2.0)]),
        ]));
        let b: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
            Some(vec![Some(1.0), Some(2.0)]),
            Some(vec![Some(1.0), Some(2.0), Some(3.0)]),
        ]));
        assert_eq!(
            run(Arc::clone(&a), b).unwrap_err().strip_backtrace(),
            "Execution error: cosine_similarity: the vectors of row 2 have 2 and 3 dimensions: compare vectors of one length (embeddings of the same model and dimensions)"
        );
        let holes: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
            Some(vec![Some(1.0), Some(2.0)]),
            Some(vec![None, Some(2.0)]),
        ]));
        assert_eq!(
            run(a, holes).unwrap_err().strip_backtrace(),
            "Execution error: cosine_similarity: the vector b of row 2 holds NULL elements: fill them or filter the row out"
        );
    }

    #[test]
    fn non_vectors_are_refused_at_planning() {
        assert_eq!(
            CosineSimilarity::default()
                .return_type(&[DataType::Utf8, DataType::Utf8])
                .unwrap_err()
                .strip_backtrace(),
            "Error during planning: cosine_similarity: a must be a vector (FixedSizeList or List of Float32 / Float64, such as an ai_embed result or [0.1, 0.2]), got Utf8"
        );
    }
}
