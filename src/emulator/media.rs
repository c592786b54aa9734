//! Converse `image` and `document` content blocks as the emulator reads them: validated as
//! Bedrock validates them (format, base64 bytes matching the format, size, document name,
//! counts, a document needs text beside it, only in user messages), each becoming a
//! [`Media`] note that the answer shows: `[image: png, 1,234 bytes]`,
//! `[document: pdf "report", 5,120 bytes]`.

use serde_json::Value;

use super::answer::{Media, Role};
use super::wire::ApiError;
use crate::bedrock::media::format::{
    self, Format, MAX_DOCUMENT_BYTES, MAX_IMAGE_BYTES, MediaKind, dimensions, document_tokens,
    image_tokens,
};
use crate::bedrock::media::marker::describe;

/// The block at `messages.{i}.content.{j}` as a media note, when it is an image or a document.
pub(crate) fn block(
    block: &Value,
    role: Role,
    i: usize,
    j: usize,
    after: usize,
) -> Option<Result<Media, ApiError>> {
    let (kind, body) = if let Some(b) = block.get("image") {
        (MediaKind::Image, b)
    } else if let Some(b) = block.get("document") {
        (MediaKind::Document, b)
    } else {
        return None;
    };
    Some(read(kind, body, role, i, j, after))
}

fn read(
    kind: MediaKind,
    body: &Value,
    role: Role,
    i: usize,
    j: usize,
    after: usize,
) -> Result<Media, ApiError> {
    let path = format!("messages.{i}.member.content.{j}.member.{}", kind.name());
    if role != Role::User {
        return Err(ApiError::validation(format!(
            "The {} block at messages.{i}.content.{j} is in an assistant message. Images and documents are only supported in user messages.",
            kind.name()
        )));
    }
    let named = body.get("format").and_then(Value::as_str).unwrap_or("");
    let format = Format::parse(named)
        .filter(|f| f.kind() == kind && f.name() == named)
        .ok_or_else(|| {
            let set = match kind {
                MediaKind::Image => "[png, jpeg, gif, webp]",
                MediaKind::Document => "[pdf, csv, doc, docx, xls, xlsx, html, txt, md]",
            };
            ApiError::constraint(
                named,
                &format!("{path}.format"),
                &format!("Member must satisfy enum value set: {set}"),
            )
        })?;
    let encoded = body
        .pointer("/source/bytes")
        .and_then(Value::as_str)
        .ok_or_else(|| super::converse::null_member(&format!("{path}.source.bytes")))?;
    let bytes = aws_smithy_types::base64::decode(encoded).map_err(|_| {
        ApiError::validation(format!(
            "The {} bytes at messages.{i}.content.{j} are not valid base64. Encode the bytes and try again.",
            kind.name()
        ))
    })?;
    let (limit, limit_text) = match kind {
        MediaKind::Image => (MAX_IMAGE_BYTES, "3.75 MB"),
        MediaKind::Document => (MAX_DOCUMENT_BYTES, "4.5 MB"),
    };
    if bytes.len() > limit {
        return Err(ApiError::validation(format!(
            "The {} at messages.{i}.content.{j} exceeds the maximum size of {limit_text}. Reduce its size and try again.",
            kind.name()
        )));
    }
    if !format.fits(&bytes) {
        return Err(ApiError::validation(format!(
            "The {} at messages.{i}.content.{j} does not match its format '{format}'. Check the format and the bytes and try again.",
            kind.name()
        )));
    }
    let name = match kind {
        MediaKind::Image => None,
        MediaKind::Document => {
            let name = body
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| super::converse::null_member(&format!("{path}.name")))?;
            if format::name_problem(name).is_some() {
                return Err(ApiError::validation(
                    "The document file name can only contain alphanumeric characters, whitespace characters, hyphens, parentheses, and square brackets. The name can't contain more than one consecutive whitespace character.",
                ));
            }
            Some(name.to_string())
        }
    };
    let tokens = match kind {
        MediaKind::Image => image_tokens(dimensions(format, &bytes)),
        MediaKind::Document => document_tokens(format, bytes.len()),
    };
    Ok(Media {
        kind,
        after,
        description: describe(kind, format, name.as_deref(), bytes.len()),
        tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
    })
}

/// Checks a message's blocks as a whole: at most 20 images and 5 documents, and text beside
/// any document.
pub(crate) fn check_message(media: &[Media], has_text: bool, i: usize) -> Result<(), ApiError> {
    let count = |kind| media.iter().filter(|m| m.kind == kind).count();
    let (images, documents) = (count(MediaKind::Image), count(MediaKind::Document));
    if images > MediaKind::Image.max_count() {
        return Err(ApiError::validation(format!(
            "Too many images in messages.{i}: {images}. A message can include up to 20 images."
        )));
    }
    if documents > MediaKind::Document.max_count() {
        return Err(ApiError::validation(format!(
            "Too many documents in messages.{i}: {documents}. A message can include up to 5 documents."
        )));
    }
    if documents > 0 && !has_text {
        return Err(ApiError::validation(format!(
            "messages.{i} has a document block but no text block. A message with a document must also include a text block."
        )));
    }
    Ok(())
}

/// Refuses images for a model that does not read them (its input modalities lack `IMAGE`).
pub(crate) fn check_model(
    conversation: &super::answer::Conversation,
    model: &super::catalog::CatalogModel,
) -> Result<(), ApiError> {
    let images = conversation
        .turns
        .iter()
        .flat_map(|t| t.media.iter())
        .any(|m| m.kind == MediaKind::Image);
    if images && !model.input_modalities.contains(&"IMAGE") {
        return Err(ApiError::validation(
            "This model doesn't support the image content block that you provided. Try again with a model that supports image input.",
        ));
    }
    Ok(())
}
