//! A prompt's text as Converse content blocks: its text, and the images and documents its
//! markers carry (see [`media::marker`](crate::bedrock::media::marker)), in order. Blank text
//! between blocks is dropped, as Bedrock refuses blank text blocks.

use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, DocumentBlock, DocumentFormat, DocumentSource, ImageBlock, ImageFormat,
    ImageSource,
};

use crate::bedrock::media::MediaKind;
use crate::bedrock::media::marker::{self, Piece};

/// The content blocks of one prompt text.
///
/// # Errors
/// A broken marker, a reference not read, or a block the SDK cannot build.
pub(super) fn content_blocks(text: &str) -> Result<Vec<ContentBlock>, String> {
    if !marker::has_media(text) {
        return Ok(vec![ContentBlock::Text(text.to_string())]);
    }
    let mut blocks = Vec::new();
    for piece in marker::pieces(text)? {
        match piece {
            Piece::Text(t) if t.trim().is_empty() => {}
            Piece::Text(t) => blocks.push(ContentBlock::Text(t.to_string())),
            Piece::Reference(r) => {
                return Err(format!("{} was not read before sending", r.url));
            }
            Piece::Inline(b) => {
                let bytes = Blob::new(b.bytes()?);
                blocks.push(match b.kind {
                    MediaKind::Image => ContentBlock::Image(
                        ImageBlock::builder()
                            .format(ImageFormat::from(b.format.name()))
                            .source(ImageSource::Bytes(bytes))
                            .build()
                            .map_err(|e| e.to_string())?,
                    ),
                    MediaKind::Document => ContentBlock::Document(
                        DocumentBlock::builder()
                            .format(DocumentFormat::from(b.format.name()))
                            .name(b.name.unwrap_or("document"))
                            .source(DocumentSource::Bytes(bytes))
                            .build()
                            .map_err(|e| e.to_string())?,
                    ),
                });
            }
        }
    }
    Ok(blocks)
}

/// Whether a request carries an image or a document anywhere.
pub(crate) fn has_media(request: &crate::bedrock::request::TextRequest) -> bool {
    request
        .messages
        .iter()
        .flat_map(|m| m.texts.iter())
        .any(|t| marker::has_media(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::media::Format;

    #[test]
    fn markers_become_image_and_document_blocks_in_order() {
        let image = marker::inline(MediaKind::Image, Format::Gif, None, b"GIF89a");
        let doc = marker::inline(MediaKind::Document, Format::Md, Some("notes"), b"# N");
        let blocks = content_blocks(&format!("Look {image} {doc} now")).unwrap();
        assert_eq!(blocks.len(), 4);
        assert_eq!(blocks[0], ContentBlock::Text("Look ".into()));
        let img = blocks[1].as_image().unwrap();
        assert_eq!(img.format(), &ImageFormat::Gif);
        assert_eq!(
            img.source().unwrap().as_bytes().unwrap().as_ref(),
            b"GIF89a"
        );
        let d = blocks[2].as_document().unwrap();
        assert_eq!((d.name(), d.format()), ("notes", &DocumentFormat::Md));
        assert_eq!(blocks[3], ContentBlock::Text(" now".into()));
        assert_eq!(
            content_blocks("plain").unwrap(),
            vec![ContentBlock::Text("plain".into())]
        );
    }
}
