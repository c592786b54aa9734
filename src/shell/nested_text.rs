//! Nested answers (structured `output_schema` values, `<target>_meta` provenance, lists) in
//! CSV and TSV output: Arrow's CSV writer refuses nested columns, which would fail a query
//! after its model calls were paid for. For those formats the shell prints each nested value
//! as JSON text instead.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::json::WriterBuilder;
use datafusion::arrow::json::writer::LineDelimited;
use datafusion::common::Column;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};

/// Whether Arrow's CSV writer cannot write a column of this type.
fn is_nested(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Struct(_)
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::FixedSizeList(..)
            | DataType::Map(..)
            | DataType::Union(..)
    )
}

/// A query's plan with its nested output columns turned into JSON text (same names); other
/// plans (DDL, DML, COPY, EXPLAIN, SET, …) and queries without nested columns unchanged.
///
/// # Errors
/// When the projection cannot be built.
pub fn nested_columns_as_json(plan: LogicalPlan) -> Result<LogicalPlan> {
    let is_query = !matches!(
        plan,
        LogicalPlan::Ddl(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::DescribeTable(_)
    );
    let schema = Arc::clone(plan.schema());
    if !is_query || !schema.fields().iter().any(|f| is_nested(f.data_type())) {
        return Ok(plan);
    }
    let json = Arc::new(ScalarUDF::new_from_impl(JsonText::default()));
    let exprs: Vec<Expr> = schema
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
            if is_nested(field.data_type()) {
                json.call(vec![column])
                    .alias_qualified(qualifier.cloned(), field.name())
            } else {
                column
            }
        })
        .collect();
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}

/// `json_text(value) -> VARCHAR`: a value as JSON text (NULL stays NULL).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonText {
    signature: Signature,
}

impl Default for JsonText {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for JsonText {
    fn name(&self) -> &'static str {
        "json_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(
                "json_text takes one argument".into(),
            ));
        };
        let array = value.to_array(args.number_rows)?;
        Ok(ColumnarValue::Array(json_lines(&array)?))
    }
}

/// Each value of an array as JSON text.
fn json_lines(array: &ArrayRef) -> Result<ArrayRef> {
    let field = Field::new("v", array.data_type().clone(), true);
    let batch = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![Arc::clone(array)])?;
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, LineDelimited>(Vec::new());
    writer.write(&batch)?;
    writer.finish()?;
    let text = String::from_utf8(writer.into_inner())
        .map_err(|e| DataFusionError::Execution(format!("JSON text is not UTF-8: {e}")))?;
    let mut out = StringBuilder::new();
    for (i, line) in text.lines().enumerate() {
        let value = line
            .strip_prefix("{\"v\":")
            .and_then(|rest| rest.strip_suffix('}'))
            .unwrap_or(line);
        if array.is_null(i) || value == "null" {
            out.append_null();
        } else {
            out.append_value(value);
        }
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray, StructArray};

    #[test]
    fn nested_values_become_json_text_and_nulls_stay_null() {
        let names: ArrayRef = Arc::new(StringArray::from(vec![
            Some("Ada"),
            None,
            Some("Bo\n\"b\""),
        ]));
        let ages: ArrayRef = Arc::new(Int64Array::from(vec![Some(36), Some(1), None]));
        let people: ArrayRef = Arc::new(StructArray::new(
            vec![
                Arc::new(Field::new("name", DataType::Utf8, true)),
                Arc::new(Field::new("age", DataType::Int64, true)),
            ]
            .into(),
            vec![names, ages],
            Some(vec![true, false, true].into()),
        ));
        let text = json_lines(&people).unwrap();
        let text = text.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(
            text.iter().collect::<Vec<_>>(),
            [
                Some(r#"{"name":"Ada","age":36}"#),
                None,
                Some(r#"{"name":"Bo\n\"b\"","age":null}"#),
            ]
        );
    }
}
