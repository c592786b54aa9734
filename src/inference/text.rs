//! Row inputs as text: any column DataFusion can cast to `Utf8`, shown as DataFusion displays
//! it, and inputs shortened for error messages.

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;

/// A column cast to text.
///
/// # Errors
/// A type with no text form (structs and binary are refused earlier, at planning).
pub fn text_column(array: &ArrayRef) -> Result<StringArray> {
    let text = cast(array, &DataType::Utf8)?;
    text.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| DataFusionError::Internal("a text cast did not produce Utf8".into()))
}

/// A value as `rows` texts, `None` where it is NULL.
///
/// # Errors
/// As [`text_column`].
pub fn text_rows(value: &ColumnarValue, rows: usize) -> Result<Vec<Option<String>>> {
    let strings = text_column(&value.to_array(rows)?)?;
    Ok((0..rows)
        .map(|i| (!strings.is_null(i)).then(|| strings.value(i).to_string()))
        .collect())
}

/// A row's input, shortened for error messages (80 characters); images and documents show as
/// `[image: png, 1,234 bytes]`, never their bytes.
#[must_use]
pub fn preview(text: &str) -> String {
    const MAX: usize = 80;
    let text = &*crate::bedrock::media::marker::shown(text);
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_cut_at_80_characters() {
        assert_eq!(preview("short"), "short");
        let long = "x".repeat(100);
        assert_eq!(preview(&long), format!("{}…", "x".repeat(80)));
        let wide = "é".repeat(81);
        assert_eq!(preview(&wide), format!("{}…", "é".repeat(80)));
    }
}
