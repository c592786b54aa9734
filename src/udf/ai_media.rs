//! `ai_image(data [, format])` and `ai_document(data, name [, format])`: an image or a document
//! for a prompt.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::bedrock::media::MediaKind;
use crate::inference::media_column::{MediaColumn, is_binary};
use crate::inference::text::text_rows;

/// `ai_image`'s name in SQL.
pub const IMAGE: &str = "ai_image";
/// `ai_document`'s name in SQL.
pub const DOCUMENT: &str = "ai_document";

/// `ai_image(data [, format]) → Utf8` and `ai_document(data, name [, format]) → Utf8`: an image
/// or a document that a prompt carries to the model as a Converse content block.
///
/// - `data`: the bytes (`BINARY`, `BLOB`, `BYTEA`), or the URL of an object the session's
///   object stores read (`s3://…`, `file://…`, `https://…`), or — for a document — its text.
/// - `name` (documents): the name the model sees: letters, digits, single spaces, hyphens,
///   parentheses and square brackets, at most 200 characters.
/// - `format`: `png`, `jpeg`, `gif`, `webp` (images); `pdf`, `csv`, `doc`, `docx`, `xls`,
///   `xlsx`, `html`, `txt`, `md` (documents). Without it, the format comes from the URL's
///   extension or the bytes' magic number (images and PDF); a format that is unknown or does
///   not match the bytes is an error naming the row.
///
/// The result is text to put in a prompt, alone or with `||`:
/// `ai_complete(model, 'Describe: ' || ai_image(photo))`. It is sent as text, image and
/// document blocks in order, and shows as `[image: png, 1,234 bytes]` in messages. Bedrock's
/// limits are checked before sending: an image at most 3.75 MB and 8,000 pixels a side, a
/// document at most 4.5 MB; a request at most 20 images and 5 documents; a document needs text
/// beside it. Models called with `api = 'invoke'` cannot take them.
///
/// ```sql
/// SELECT ai_complete('amazon.nova-lite-v1:0',
///                    'What is in this picture? ' || ai_image(photo)) FROM photos;
/// SELECT ai_complete('amazon.nova-lite-v1:0',
///                    'Summarize: ' || ai_document('s3://docs/q3.pdf', 'Q3 report')) ;
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AiMedia {
    kind: MediaKind,
    signature: Signature,
}

impl AiMedia {
    /// `ai_image`, ready to register with a session.
    #[must_use]
    pub fn image() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self::of(MediaKind::Image))
    }

    /// `ai_document`, ready to register with a session.
    #[must_use]
    pub fn document() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self::of(MediaKind::Document))
    }

    fn of(kind: MediaKind) -> Self {
        Self {
            kind,
            // Volatile: never evaluated at planning, so a plan never holds the bytes.
            signature: Signature::variadic_any(Volatility::Volatile),
        }
    }

    /// The arguments, as SQL writes them.
    fn usage(&self) -> &'static str {
        match self.kind {
            MediaKind::Image => "ai_image(data [, format])",
            MediaKind::Document => "ai_document(data, name [, format])",
        }
    }

    /// The indexes of the name and format arguments.
    fn name_and_format(&self) -> (Option<usize>, usize) {
        match self.kind {
            MediaKind::Image => (None, 1),
            MediaKind::Document => (Some(1), 2),
        }
    }
}

impl ScalarUDFImpl for AiMedia {
    fn name(&self) -> &str {
        match self.kind {
            MediaKind::Image => IMAGE,
            MediaKind::Document => DOCUMENT,
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let range = match self.kind {
            MediaKind::Image => 1..=2,
            MediaKind::Document => 2..=3,
        };
        if !range.contains(&arg_types.len()) {
            return Err(DataFusionError::Plan(format!(
                "{} takes {}, got {} argument(s)",
                self.name(),
                self.usage(),
                arg_types.len()
            )));
        }
        let data = &arg_types[0];
        let texty = |t: &DataType| {
            matches!(
                t,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
            )
        };
        if !(is_binary(data) || texty(data)) {
            return Err(DataFusionError::Plan(format!(
                "{}: data must be binary (BINARY, BLOB) or a URL text, got {data}: write {}",
                self.name(),
                self.usage()
            )));
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let Some(data) = args.args.first() else {
            return Err(DataFusionError::Plan(format!(
                "{} takes {}",
                self.name(),
                self.usage()
            )));
        };
        let data = data.to_array(rows)?;
        let (name_at, format_at) = self.name_and_format();
        let optional = |at: Option<usize>| -> Result<Vec<Option<String>>> {
            at.and_then(|i| args.args.get(i))
                .map_or_else(|| Ok(Vec::new()), |v| text_rows(v, rows))
        };
        let names = optional(name_at)?;
        if name_at.is_some()
            && let Some(row) =
                (0..rows).find(|&r| names.get(r).is_some_and(Option::is_none) && !data.is_null(r))
        {
            return Err(DataFusionError::Execution(format!(
                "{}: row {}: the document's name is NULL: give every document a name, e.g. {}",
                self.name(),
                row + 1,
                "ai_document(data, 'report')"
            )));
        }
        let formats = optional(Some(format_at))?;
        let column = MediaColumn {
            kind: self.kind,
            who: self.name(),
            text_format: None,
            default_name: None,
        };
        let markers: ArrayRef =
            Arc::new(StringArray::from(column.markers(&data, &names, &formats)?));
        if all_scalar {
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&markers, 0)?,
            ));
        }
        Ok(ColumnarValue::Array(markers))
    }
}
