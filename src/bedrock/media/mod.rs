//! Images and documents in prompts: Converse `image` and `document` content blocks.
//!
//! - [`format`](mod@format): kinds, formats (by magic number, extension or name), Bedrock's limits,
//!   document names, token estimates;
//! - [`marker`]: how a block rides inside prompt text, and how a prompt is read back into text
//!   and blocks where the request is built;
//! - [`fetch`]: reading the objects that URLs name through the session's object stores.
//!
//! Bedrock's limits, from the Converse API reference (`Message.content`, `DocumentBlock`):
//! an image is at most 3.75 MB and 8,000 × 8,000 pixels, a document at most 4.5 MB; a request
//! carries at most 20 images and 5 documents, and a message with a document also needs text; a
//! document's name is 1 to 200 characters of letters, digits, single whitespace characters,
//! hyphens, parentheses and square brackets. Sizes are read as decimal megabytes (3,750,000
//! and 4,500,000 bytes), the stricter reading. Some models take larger PDFs; this check does
//! not know which, and keeps to the general limit.

pub mod fetch;
pub mod format;
pub mod marker;

pub use format::{Format, MediaKind};

use marker::Piece;

/// Why a prompt's blocks cannot be sent in one Converse request, if they cannot: a block too
/// large, too large an image, a bad document name, too many images or documents, or a document
/// without text beside it. References must be resolved first ([`fetch::resolve`]).
#[must_use]
pub fn problem(prompt: &str) -> Option<String> {
    if !marker::has_media(prompt) {
        return None;
    }
    let pieces = match marker::pieces(prompt) {
        Ok(pieces) => pieces,
        Err(e) => return Some(e),
    };
    let (mut images, mut documents, mut text) = (0, 0, false);
    for piece in &pieces {
        match piece {
            Piece::Text(t) => text |= !t.trim().is_empty(),
            Piece::Reference(r) => {
                return Some(format!("{} was not read before sending", r.url));
            }
            Piece::Inline(b) => {
                if let Some(p) = format::size_problem(b.kind, b.byte_len()) {
                    return Some(p);
                }
                match b.kind {
                    MediaKind::Image => {
                        images += 1;
                        if let Some(p) = pixels_problem(b) {
                            return Some(p);
                        }
                    }
                    MediaKind::Document => {
                        documents += 1;
                        if let Some(p) = format::name_problem(b.name.unwrap_or_default()) {
                            return Some(p);
                        }
                    }
                }
            }
        }
    }
    for (count, kind) in [(images, MediaKind::Image), (documents, MediaKind::Document)] {
        if count > kind.max_count() {
            return Some(format!(
                "the prompt has {count} {}s, and Bedrock takes at most {} in one request",
                kind.name(),
                kind.max_count()
            ));
        }
    }
    if documents > 0 && !text {
        return Some(
            "a prompt with a document also needs text (Bedrock requires a text block beside a document): add the question, e.g. 'Summarize: ' || ai_document(…)"
                .into(),
        );
    }
    None
}

/// Why an image is too wide or tall, if it is.
fn pixels_problem(b: &marker::Inline<'_>) -> Option<String> {
    let head = &b.data[..b.data.len().min(87_384)];
    let bytes = aws_smithy_types::base64::decode(head).ok()?;
    let (w, h) = format::dimensions(b.format, &bytes)?;
    (w > format::MAX_IMAGE_PIXELS || h > format::MAX_IMAGE_PIXELS).then(|| {
        format!(
            "an image of {w} × {h} pixels is larger than Bedrock's limit of {} pixels a side",
            format::MAX_IMAGE_PIXELS
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        b.extend_from_slice(&w.to_be_bytes());
        b.extend_from_slice(&h.to_be_bytes());
        b
    }

    #[test]
    fn requests_keep_to_bedrocks_limits() {
        let image = marker::inline(MediaKind::Image, Format::Png, None, &png(2, 2));
        assert_eq!(problem("plain"), None);
        assert_eq!(problem(&format!("What is this? {image}")), None);
        assert_eq!(
            problem(&image.repeat(21)).unwrap(),
            "the prompt has 21 images, and Bedrock takes at most 20 in one request"
        );
        let doc = |name: &str| marker::inline(MediaKind::Document, Format::Txt, Some(name), b"x");
        assert_eq!(
            problem(&doc("notes")).unwrap(),
            "a prompt with a document also needs text (Bedrock requires a text block beside a document): add the question, e.g. 'Summarize: ' || ai_document(…)"
        );
        assert_eq!(problem(&format!("Sum up {}", doc("notes"))), None);
        assert_eq!(
            problem(&format!("Sum up {}", doc("a_b"))).unwrap(),
            "the document name 'a_b' has the character '_': names may hold only letters, digits, single spaces, hyphens, parentheses and square brackets"
        );
        assert_eq!(
            problem(&format!("x {}", doc("d").repeat(6))).unwrap(),
            "the prompt has 6 documents, and Bedrock takes at most 5 in one request"
        );
        let wide = marker::inline(MediaKind::Image, Format::Png, None, &png(8001, 10));
        assert_eq!(
            problem(&wide).unwrap(),
            "an image of 8001 × 10 pixels is larger than Bedrock's limit of 8000 pixels a side"
        );
        let r = marker::reference(MediaKind::Image, None, None, "s3://b/k.png").unwrap();
        assert_eq!(
            problem(&r).unwrap(),
            "s3://b/k.png was not read before sending"
        );
    }
}
