//! A column's values as images or documents: binary values (`BINARY`, `BLOB`) are the bytes
//! themselves, text values that are URLs (`s3://…`, `file://…`, `https://…`) are read when the
//! request is built, and other text is a document's content. Each value becomes a marker (see
//! [`media::marker`](crate::bedrock::media::marker)) whose format is checked now: named, from
//! the URL's extension, or from the bytes' magic number.

use datafusion::arrow::array::{Array, ArrayRef, BinaryArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};

use crate::bedrock::media::format::{detect, name_problem, size_problem};
use crate::bedrock::media::{Format, MediaKind, fetch, marker};

/// How one column's values become blocks.
#[derive(Debug, Clone, Copy)]
pub struct MediaColumn<'a> {
    /// Image or document.
    pub kind: MediaKind,
    /// Who is asking, as errors begin: `ai_image`, `Model 'm' input 'photo'`.
    pub who: &'a str,
    /// The format of text content that is not a URL when no format is named (a template's
    /// `{{document:col}}` reads text as `txt`; `ai_document` asks for the format).
    pub text_format: Option<Format>,
    /// A document's name when none is given (`None`: from the URL's file name, else
    /// `document`).
    pub default_name: Option<&'a str>,
}

/// Whether a type holds bytes.
#[must_use]
pub fn is_binary(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
    )
}

impl MediaColumn<'_> {
    /// Each row's marker (`None` where the value is NULL), with per-row names and formats
    /// (`None` where not given).
    ///
    /// # Errors
    /// A value that is neither bytes nor text, an unknown or mismatched format, a block over
    /// Bedrock's limit, a bad document name: each names the row (1-based in its batch).
    pub fn markers(
        &self,
        data: &ArrayRef,
        names: &[Option<String>],
        formats: &[Option<String>],
    ) -> Result<Vec<Option<String>>> {
        let rows = data.len();
        let at = |v: &[Option<String>], row: usize| v.get(row).cloned().flatten();
        // Each row's marker from its value, its name and its format; NULL gives NULL.
        let each = |is_null: &dyn Fn(usize) -> bool,
                    make: &dyn Fn(usize, Option<String>, Option<String>) -> Result<String>|
         -> Result<Vec<Option<String>>> {
            (0..rows)
                .map(|row| {
                    if is_null(row) {
                        Ok(None)
                    } else {
                        make(row, at(names, row), at(formats, row)).map(Some)
                    }
                })
                .collect()
        };
        if is_binary(data.data_type()) {
            let bytes = cast(data, &DataType::Binary)?;
            let bytes = downcast::<BinaryArray>(&bytes)?;
            each(&|row| bytes.is_null(row), &|row, name, format| {
                self.of_bytes(bytes.value(row), name, format, row)
            })
        } else if matches!(
            data.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
        ) {
            let text = cast(data, &DataType::Utf8)?;
            let text = downcast::<StringArray>(&text)?;
            each(&|row| text.is_null(row), &|row, name, format| {
                self.of_text(text.value(row), name, format, row)
            })
        } else {
            Err(DataFusionError::Execution(format!(
                "{} takes binary data (BINARY, BLOB) or a URL text, and the value is {}: pass the bytes, or the object's URL",
                self.who,
                data.data_type()
            )))
        }
    }

    fn error(&self, row: usize, problem: &str) -> DataFusionError {
        DataFusionError::Execution(format!("{}: row {}: {problem}", self.who, row + 1))
    }

    /// The format named, checked against the kind.
    fn named_format(&self, format: Option<String>, row: usize) -> Result<Option<Format>> {
        let Some(text) = format else { return Ok(None) };
        let format = Format::parse(&text).ok_or_else(|| {
            self.error(
                row,
                &format!(
                    "'{text}' is not a format Bedrock takes: use {}",
                    self.kind.formats()
                ),
            )
        })?;
        if format.kind() != self.kind {
            return Err(self.error(
                row,
                &format!(
                    "'{format}' is not {} {} format: use {}",
                    if self.kind == MediaKind::Image {
                        "an"
                    } else {
                        "a"
                    },
                    self.kind.name(),
                    self.kind.formats()
                ),
            ));
        }
        Ok(Some(format))
    }

    /// The document name given, checked; `None` for an image.
    fn checked_name(&self, name: Option<String>, row: usize) -> Result<Option<String>> {
        if self.kind == MediaKind::Image {
            return Ok(None);
        }
        let name = name.or_else(|| self.default_name.map(str::to_string));
        if let Some(problem) = name.as_deref().and_then(name_problem) {
            return Err(self.error(row, &problem));
        }
        Ok(name)
    }

    fn of_bytes(
        &self,
        bytes: &[u8],
        name: Option<String>,
        format: Option<String>,
        row: usize,
    ) -> Result<String> {
        let declared = self.named_format(format, row)?;
        let name = self.checked_name(name, row)?;
        if let Some(problem) = size_problem(self.kind, bytes.len()) {
            return Err(self.error(row, &problem));
        }
        let format = detect(self.kind, bytes, declared, None).map_err(|p| self.error(row, &p))?;
        let name = match self.kind {
            MediaKind::Document => Some(name.unwrap_or_else(|| "document".into())),
            MediaKind::Image => None,
        };
        Ok(marker::inline(self.kind, format, name.as_deref(), bytes))
    }

    fn of_text(
        &self,
        text: &str,
        name: Option<String>,
        format: Option<String>,
        row: usize,
    ) -> Result<String> {
        let declared = self.named_format(format, row)?;
        let name = self.checked_name(name, row)?;
        if fetch::is_url(text) {
            return marker::reference(self.kind, declared, name.as_deref(), text)
                .map_err(|p| self.error(row, &p));
        }
        if self.kind == MediaKind::Image {
            return Err(self.error(
                row,
                &format!(
                    "the text '{}' is not a URL: pass the image's bytes (a BINARY value) or its URL (s3://, file://, https://)",
                    crate::inference::text::preview(text)
                ),
            ));
        }
        let declared = declared.or(self.text_format);
        self.of_bytes(
            text.as_bytes(),
            name,
            declared.map(|f| f.name().to_string()),
            row,
        )
    }
}

fn downcast<T: 'static>(array: &ArrayRef) -> Result<&T> {
    array
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| DataFusionError::Internal("a cast gave another array type".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BinaryViewArray, Int32Array};
    use std::sync::Arc;

    const IMAGE: MediaColumn<'static> = MediaColumn {
        kind: MediaKind::Image,
        who: "ai_image",
        text_format: None,
        default_name: None,
    };

    #[test]
    fn bytes_urls_and_text_become_markers() {
        let data: ArrayRef = Arc::new(BinaryViewArray::from(vec![
            Some(b"GIF89a\x01\x00\x01\x00".as_slice()),
            None,
        ]));
        let got = IMAGE.markers(&data, &[], &[]).unwrap();
        assert_eq!(
            marker::shown(got[0].as_deref().unwrap()),
            "[image: gif, 10 bytes]"
        );
        assert_eq!(got[1], None);
        let urls: ArrayRef = Arc::new(StringArray::from(vec!["s3://b/cat.png"]));
        let got = IMAGE.markers(&urls, &[], &[]).unwrap();
        assert_eq!(
            marker::shown(got[0].as_deref().unwrap()),
            "[image: s3://b/cat.png]"
        );
        let doc = MediaColumn {
            kind: MediaKind::Document,
            who: "Model 'm' input 'notes'",
            text_format: Some(Format::Txt),
            default_name: Some("notes"),
        };
        let text: ArrayRef = Arc::new(StringArray::from(vec!["Meeting at noon."]));
        let got = doc.markers(&text, &[], &[]).unwrap();
        assert_eq!(
            marker::shown(got[0].as_deref().unwrap()),
            "[document: txt \"notes\", 16 bytes]"
        );
    }

    #[test]
    fn errors_name_the_row_and_the_fix() {
        let data: ArrayRef = Arc::new(BinaryArray::from(vec![
            b"GIF89a".as_slice(),
            b"\x00\x01\x02\x03".as_slice(),
        ]));
        assert_eq!(
            IMAGE.markers(&data, &[], &[]).unwrap_err().to_string(),
            "Execution error: ai_image: row 2: the format is unknown (the bytes start with 00 01 02 03): name it, one of png, jpeg, gif or webp"
        );
        assert_eq!(
            IMAGE
                .markers(&data, &[], &[Some("tiff".into())])
                .unwrap_err()
                .to_string(),
            "Execution error: ai_image: row 1: 'tiff' is not a format Bedrock takes: use png, jpeg, gif or webp"
        );
        let text: ArrayRef = Arc::new(StringArray::from(vec!["a cat"]));
        assert_eq!(
            IMAGE.markers(&text, &[], &[]).unwrap_err().to_string(),
            "Execution error: ai_image: row 1: the text 'a cat' is not a URL: pass the image's bytes (a BINARY value) or its URL (s3://, file://, https://)"
        );
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![1]));
        assert!(IMAGE.markers(&ints, &[], &[]).is_err());
        let big: ArrayRef = Arc::new(BinaryArray::from(vec![vec![0u8; 3_750_001].as_slice()]));
        assert_eq!(
            IMAGE.markers(&big, &[], &[]).unwrap_err().to_string(),
            "Execution error: ai_image: row 1: an image of 3,750,001 bytes is larger than Bedrock's limit of 3,750,000 bytes"
        );
    }
}
