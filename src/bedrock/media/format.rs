//! What an image or a document is: its kind and Converse format, told from the bytes' magic
//! numbers, a file extension or a format the caller names; Bedrock's limits on size, count and
//! document names; an image's dimensions (for the token estimate).

use std::fmt;

/// An image or a document: the two kinds of Converse content block a prompt can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MediaKind {
    /// An `image` block.
    Image,
    /// A `document` block.
    Document,
}

impl MediaKind {
    /// `image` or `document`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Document => "document",
        }
    }

    /// Reads `image` or `document`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "image" => Some(Self::Image),
            "document" => Some(Self::Document),
            _ => None,
        }
    }

    /// The formats of this kind, as a list for messages: `png, jpeg, gif or webp`.
    #[must_use]
    pub fn formats(self) -> &'static str {
        match self {
            Self::Image => "png, jpeg, gif or webp",
            Self::Document => "pdf, csv, doc, docx, xls, xlsx, html, txt or md",
        }
    }

    /// The most bytes Bedrock takes in one block of this kind.
    #[must_use]
    pub fn max_bytes(self) -> usize {
        match self {
            Self::Image => MAX_IMAGE_BYTES,
            Self::Document => MAX_DOCUMENT_BYTES,
        }
    }

    /// The most blocks of this kind one request may carry.
    #[must_use]
    pub fn max_count(self) -> usize {
        match self {
            Self::Image => MAX_IMAGES,
            Self::Document => MAX_DOCUMENTS,
        }
    }
}

/// Bedrock's largest image: 3.75 MB (read as 3,750,000 bytes, the stricter reading).
pub const MAX_IMAGE_BYTES: usize = 3_750_000;
/// Bedrock's largest document: 4.5 MB (read as 4,500,000 bytes).
pub const MAX_DOCUMENT_BYTES: usize = 4_500_000;
/// The most images in one request.
pub const MAX_IMAGES: usize = 20;
/// The most documents in one request.
pub const MAX_DOCUMENTS: usize = 5;
/// The largest image width or height, in pixels.
pub const MAX_IMAGE_PIXELS: u32 = 8000;
/// The longest document name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// A Converse image or document format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// PNG image.
    Png,
    /// JPEG image.
    Jpeg,
    /// GIF image.
    Gif,
    /// WebP image.
    Webp,
    /// PDF document.
    Pdf,
    /// Comma-separated values.
    Csv,
    /// Word 97–2003 document.
    Doc,
    /// Word document.
    Docx,
    /// Excel 97–2003 workbook.
    Xls,
    /// Excel workbook.
    Xlsx,
    /// HTML page.
    Html,
    /// Plain text.
    Txt,
    /// Markdown.
    Md,
}

impl Format {
    /// Every format.
    pub const ALL: [Self; 13] = [
        Self::Png,
        Self::Jpeg,
        Self::Gif,
        Self::Webp,
        Self::Pdf,
        Self::Csv,
        Self::Doc,
        Self::Docx,
        Self::Xls,
        Self::Xlsx,
        Self::Html,
        Self::Txt,
        Self::Md,
    ];

    /// Converse's name of the format: `png`, `pdf`, …
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Gif => "gif",
            Self::Webp => "webp",
            Self::Pdf => "pdf",
            Self::Csv => "csv",
            Self::Doc => "doc",
            Self::Docx => "docx",
            Self::Xls => "xls",
            Self::Xlsx => "xlsx",
            Self::Html => "html",
            Self::Txt => "txt",
            Self::Md => "md",
        }
    }

    /// The format's media type: `image/png`, `application/pdf`, …
    #[must_use]
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
            Self::Pdf => "application/pdf",
            Self::Csv => "text/csv",
            Self::Doc => "application/msword",
            Self::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            Self::Xls => "application/vnd.ms-excel",
            Self::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Self::Html => "text/html",
            Self::Txt => "text/plain",
            Self::Md => "text/markdown",
        }
    }

    /// Whether the format is an image or a document.
    #[must_use]
    pub fn kind(self) -> MediaKind {
        match self {
            Self::Png | Self::Jpeg | Self::Gif | Self::Webp => MediaKind::Image,
            _ => MediaKind::Document,
        }
    }

    /// Whether the format is text (its size in tokens is estimated as text's).
    #[must_use]
    pub fn is_text(self) -> bool {
        matches!(self, Self::Csv | Self::Html | Self::Txt | Self::Md)
    }

    /// Reads a format name or a file extension (any case; `jpg`, `htm`, `text` and `markdown`
    /// too).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let lower = text.trim().trim_start_matches('.').to_ascii_lowercase();
        match lower.as_str() {
            "jpg" => Some(Self::Jpeg),
            "htm" => Some(Self::Html),
            "text" => Some(Self::Txt),
            "markdown" => Some(Self::Md),
            other => Self::ALL.into_iter().find(|f| f.name() == other),
        }
    }

    /// The format a URL's or path's extension names, if it names one.
    #[must_use]
    pub fn from_path(path: &str) -> Option<Self> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let file = path.rsplit('/').next().unwrap_or(path);
        let (_, ext) = file.rsplit_once('.')?;
        Self::parse(ext)
    }

    /// The format the bytes' magic number shows: the images, PDF, and the two container
    /// families (a ZIP archive is `docx` or `xlsx`, an OLE file `doc` or `xls`: `None` then,
    /// as the bytes alone do not tell which).
    #[must_use]
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(Self::Gif)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else if bytes.starts_with(b"%PDF-") {
            Some(Self::Pdf)
        } else {
            None
        }
    }

    /// Whether `bytes` can be a file of this format: the sniffed formats must match their
    /// magic number, `docx`/`xlsx` must be ZIP archives, `doc`/`xls` OLE files, and the text
    /// formats must not be one of the sniffed binary formats.
    #[must_use]
    pub fn fits(self, bytes: &[u8]) -> bool {
        match self {
            Self::Png | Self::Jpeg | Self::Gif | Self::Webp | Self::Pdf => {
                Self::sniff(bytes) == Some(self)
            }
            Self::Docx | Self::Xlsx => bytes.starts_with(b"PK\x03\x04"),
            Self::Doc | Self::Xls => bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]),
            Self::Csv | Self::Html | Self::Txt | Self::Md => Self::sniff(bytes).is_none(),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A byte count with thousands separators: `1,234 bytes`.
#[must_use]
pub fn bytes_text(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 6);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str(if n == 1 { " byte" } else { " bytes" });
    out
}

/// The format of `bytes` as a block of `kind`: the format named (`declared`, else the one the
/// file's extension names) when the bytes fit it, else the sniffed one.
///
/// # Errors
/// A format of the other kind, bytes that do not fit the format named, or no format known:
/// each message says which and what to write.
pub fn detect(
    kind: MediaKind,
    bytes: &[u8],
    declared: Option<Format>,
    extension: Option<Format>,
) -> Result<Format, String> {
    let sniffed = Format::sniff(bytes);
    let claimed = declared.or(extension.filter(|f| f.kind() == kind));
    match claimed {
        Some(format) if format.kind() != kind => Err(format!(
            "'{format}' is {} {} format, and this is {} {}: use {}",
            article(format.kind()),
            format.kind().name(),
            article(kind),
            kind.name(),
            kind.formats()
        )),
        Some(format) if !format.fits(bytes) => Err(match sniffed {
            Some(found) => format!(
                "the bytes are {} {found} {}, not {format} as the format says",
                article_of(found),
                found.kind().name()
            ),
            None => format!("the bytes are not {} {format} file", article_of(format)),
        }),
        Some(format) => Ok(format),
        None => match sniffed {
            Some(found) if found.kind() == kind => Ok(found),
            Some(found) => Err(format!(
                "the bytes are {} {found} {}, not {} {}",
                article_of(found),
                found.kind().name(),
                article(kind),
                kind.name()
            )),
            None => Err(format!(
                "the format is unknown (the bytes start with {}): name it, one of {}",
                magic_text(bytes),
                kind.formats()
            )),
        },
    }
}

fn article(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Image => "an",
        MediaKind::Document => "a",
    }
}

fn article_of(format: Format) -> &'static str {
    match format {
        Format::Xls | Format::Xlsx | Format::Html | Format::Md => "an",
        _ => "a",
    }
}

/// The first bytes in hexadecimal, for messages: `00 01 02 03` (`no bytes` when empty).
fn magic_text(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "no bytes".into();
    }
    bytes
        .iter()
        .take(4)
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a block of `kind` with `bytes` bytes is too large for Bedrock, if it is.
#[must_use]
pub fn size_problem(kind: MediaKind, bytes: usize) -> Option<String> {
    (bytes > kind.max_bytes()).then(|| {
        format!(
            "{} {} of {} is larger than Bedrock's limit of {}",
            article(kind),
            kind.name(),
            bytes_text(bytes),
            bytes_text(kind.max_bytes())
        )
    })
}

/// Why `name` cannot name a Converse document, if it cannot: 1 to 200 characters, only
/// alphanumerics, whitespace (never two in a row), hyphens, parentheses and square brackets.
#[must_use]
pub fn name_problem(name: &str) -> Option<String> {
    let count = name.chars().count();
    if count == 0 || name.trim().is_empty() {
        return Some("a document's name cannot be empty".into());
    }
    if count > MAX_NAME_CHARS {
        return Some(format!(
            "a document's name has at most {MAX_NAME_CHARS} characters, and '{}…' has {count}",
            name.chars().take(20).collect::<String>()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || c.is_whitespace() || "-()[]".contains(*c)))
    {
        return Some(format!(
            "the document name '{name}' has the character '{bad}': names may hold only letters, digits, single spaces, hyphens, parentheses and square brackets"
        ));
    }
    let chars: Vec<char> = name.chars().collect();
    if chars
        .windows(2)
        .any(|w| w[0].is_whitespace() && w[1].is_whitespace())
    {
        return Some(format!(
            "the document name '{name}' has two whitespace characters in a row: Bedrock allows one at a time"
        ));
    }
    None
}

/// A valid document name made of `text` (a file's name or a column's): other characters
/// become hyphens, runs of whitespace one space; `document` when nothing is left.
#[must_use]
pub fn name_from(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = if c.is_alphanumeric() || "-()[]".contains(c) {
            c
        } else if c.is_whitespace() {
            ' '
        } else {
            '-'
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    let out: String = out.trim_end().chars().take(MAX_NAME_CHARS).collect();
    let out = out.trim_end().to_string();
    if out.is_empty() {
        "document".into()
    } else {
        out
    }
}

/// An image's width and height in pixels, read from its header (PNG, GIF, JPEG, WebP);
/// `None` when the header does not say.
#[must_use]
pub fn dimensions(format: Format, bytes: &[u8]) -> Option<(u32, u32)> {
    let le16 = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let be32 = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let le24 = |at: usize| {
        bytes
            .get(at..at + 3)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]))
    };
    match format {
        Format::Png if bytes.get(12..16) == Some(b"IHDR") => Some((be32(16)?, be32(20)?)),
        Format::Gif => Some((le16(6)?, le16(8)?)),
        Format::Jpeg => jpeg_dimensions(bytes),
        Format::Webp => match bytes.get(12..16)? {
            b"VP8X" => Some((le24(24)? + 1, le24(27)? + 1)),
            b"VP8 " => Some((le16(26)? & 0x3FFF, le16(28)? & 0x3FFF)),
            b"VP8L" => {
                let b = bytes.get(21..25)?;
                let bits = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
            }
            _ => None,
        },
        _ => None,
    }
}

/// A JPEG's dimensions, from its first start-of-frame segment.
fn jpeg_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    while at + 9 < bytes.len() {
        if bytes[at] != 0xFF {
            return None;
        }
        let marker = bytes[at + 1];
        if marker == 0xFF {
            at += 1;
            continue;
        }
        let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        let start_of_frame =
            (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if start_of_frame {
            let height = u32::from(u16::from_be_bytes([bytes[at + 5], bytes[at + 6]]));
            let width = u32::from(u16::from_be_bytes([bytes[at + 7], bytes[at + 8]]));
            return Some((width, height));
        }
        at += 2 + length;
    }
    None
}

/// Estimated input tokens of an image: `width × height / 750` (Bedrock's rule of thumb), at
/// most [`MAX_IMAGE_TOKENS`] (models scale larger images down), and that when the size is
/// unknown.
#[must_use]
pub fn image_tokens(dimensions: Option<(u32, u32)>) -> u64 {
    dimensions.map_or(MAX_IMAGE_TOKENS, |(w, h)| {
        (u64::from(w) * u64::from(h))
            .div_ceil(750)
            .clamp(1, MAX_IMAGE_TOKENS)
    })
}

/// The estimate of an image whose size is unknown, and the most any image is estimated at.
pub const MAX_IMAGE_TOKENS: u64 = 1600;

/// Estimated input tokens of a document of `bytes` bytes: one per four bytes of a text
/// format, one per eight bytes of the others (their markup and compression make bytes a poor
/// measure; this is an estimate for budgets, not a count).
#[must_use]
pub fn document_tokens(format: Format, bytes: usize) -> u64 {
    let per = if format.is_text() { 4 } else { 8 };
    (bytes as u64).div_ceil(per).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1×1 PNG's first bytes: signature and IHDR chunk.
    pub(crate) const PNG_HEAD: &[u8] =
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x20\x00\x00\x00\x10\x08\x06\x00\x00\x00";

    #[test]
    fn formats_are_sniffed_from_magic_numbers() {
        assert_eq!(Format::sniff(PNG_HEAD), Some(Format::Png));
        assert_eq!(Format::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(Format::Jpeg));
        assert_eq!(Format::sniff(b"GIF89a\x01\x00"), Some(Format::Gif));
        assert_eq!(
            Format::sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 "),
            Some(Format::Webp)
        );
        assert_eq!(Format::sniff(b"%PDF-1.7"), Some(Format::Pdf));
        assert_eq!(Format::sniff(b"hello"), None);
        assert_eq!(Format::sniff(b""), None);
        assert!(Format::Docx.fits(b"PK\x03\x04rest"));
        assert!(!Format::Docx.fits(b"%PDF-1.7"));
        assert!(Format::Txt.fits(b"plain"));
        assert!(!Format::Txt.fits(b"%PDF-1.4"));
    }

    #[test]
    fn formats_read_names_and_extensions() {
        assert_eq!(Format::parse("JPG"), Some(Format::Jpeg));
        assert_eq!(Format::parse(".md"), Some(Format::Md));
        assert_eq!(Format::parse("tiff"), None);
        assert_eq!(
            Format::from_path("s3://b/k/photo.final.PNG?v=2"),
            Some(Format::Png)
        );
        assert_eq!(Format::from_path("file:///a.b/noext"), None);
        for f in Format::ALL {
            assert_eq!(Format::parse(f.name()), Some(f));
        }
    }

    #[test]
    fn detection_checks_kind_and_magic() {
        use MediaKind::{Document, Image};
        assert_eq!(detect(Image, PNG_HEAD, None, None), Ok(Format::Png));
        assert_eq!(
            detect(Image, PNG_HEAD, Some(Format::Jpeg), None).unwrap_err(),
            "the bytes are a png image, not jpeg as the format says"
        );
        assert_eq!(
            detect(Image, b"%PDF-1.4", None, None).unwrap_err(),
            "the bytes are a pdf document, not an image"
        );
        assert_eq!(
            detect(Image, b"hello", None, None).unwrap_err(),
            "the format is unknown (the bytes start with 68 65 6C 6C): name it, one of png, jpeg, gif or webp"
        );
        assert_eq!(
            detect(Document, b"# Notes", None, Some(Format::Md)),
            Ok(Format::Md)
        );
        assert_eq!(
            detect(Document, b"%PDF-1.4", Some(Format::Png), None).unwrap_err(),
            "'png' is an image format, and this is a document: use pdf, csv, doc, docx, xls, xlsx, html, txt or md"
        );
        assert_eq!(
            detect(Document, b"plain", Some(Format::Pdf), None).unwrap_err(),
            "the bytes are not a pdf file"
        );
        // An extension of the other kind is no claim: the bytes decide.
        assert_eq!(
            detect(Document, b"%PDF-1.4", None, Some(Format::Png)),
            Ok(Format::Pdf)
        );
    }

    #[test]
    fn limits_and_names_follow_bedrock() {
        assert_eq!(size_problem(MediaKind::Image, MAX_IMAGE_BYTES), None);
        assert_eq!(
            size_problem(MediaKind::Image, MAX_IMAGE_BYTES + 1).unwrap(),
            "an image of 3,750,001 bytes is larger than Bedrock's limit of 3,750,000 bytes"
        );
        assert_eq!(
            size_problem(MediaKind::Document, 5_000_000).unwrap(),
            "a document of 5,000,000 bytes is larger than Bedrock's limit of 4,500,000 bytes"
        );
        assert_eq!(name_problem("Annual report (2024) [final]-v2"), None);
        assert_eq!(
            name_problem("report.pdf").unwrap(),
            "the document name 'report.pdf' has the character '.': names may hold only letters, digits, single spaces, hyphens, parentheses and square brackets"
        );
        assert_eq!(
            name_problem("a  b").unwrap(),
            "the document name 'a  b' has two whitespace characters in a row: Bedrock allows one at a time"
        );
        assert_eq!(
            name_problem(" ").unwrap(),
            "a document's name cannot be empty"
        );
        assert!(name_problem(&"x".repeat(201)).is_some());
        assert_eq!(name_from("q3_report.final"), "q3-report-final");
        assert_eq!(name_from("  two   spaces "), "two spaces");
        assert_eq!(name_from("..."), "---");
        assert_eq!(name_from(""), "document");
        assert_eq!(bytes_text(1), "1 byte");
        assert_eq!(bytes_text(1_234_567), "1,234,567 bytes");
    }

    #[test]
    fn image_sizes_are_read_from_headers_and_estimated() {
        assert_eq!(dimensions(Format::Png, PNG_HEAD), Some((32, 16)));
        assert_eq!(
            dimensions(Format::Gif, b"GIF89a\x0a\x00\x05\x00"),
            Some((10, 5))
        );
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00,
            0x64, 0x00, 0xC8, 0x03,
        ];
        assert_eq!(dimensions(Format::Jpeg, &jpeg), Some((200, 100)));
        assert_eq!(dimensions(Format::Png, b"\x89PNG"), None);
        assert_eq!(image_tokens(Some((750, 1))), 1);
        assert_eq!(image_tokens(Some((1000, 1000))), 1334);
        assert_eq!(image_tokens(Some((8000, 8000))), MAX_IMAGE_TOKENS);
        assert_eq!(image_tokens(None), MAX_IMAGE_TOKENS);
        assert_eq!(document_tokens(Format::Txt, 10), 3);
        assert_eq!(document_tokens(Format::Pdf, 10), 2);
    }
}
