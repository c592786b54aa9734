//! AWS event-stream framing (`application/vnd.amazon.eventstream`) of streamed responses.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;

/// One `event` message: `:event-type`, `:content-type: application/json`, JSON payload.
pub(crate) fn event(event_type: &str, payload: &serde_json::Value) -> Bytes {
    let message = Message::new(payload.to_string().into_bytes())
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(event_type.to_string().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ));
    let mut buffer = Vec::new();
    // Writing to a Vec fails only for frames over 16 MiB, which the emulator never builds.
    if let Err(e) = write_message_to(&message, &mut buffer) {
        tracing::error!(error = %e, "event-stream frame too large");
    }
    Bytes::from(buffer)
}

/// A `chunk` event of `invoke-with-response-stream`: `{"bytes": "<base64 of the chunk>"}`.
pub(crate) fn chunk(native_chunk: &serde_json::Value) -> Bytes {
    let encoded = aws_smithy_types::base64::encode(native_chunk.to_string());
    event("chunk", &serde_json::json!({ "bytes": encoded }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_prelude_crc_and_headers() {
        let frame = event("messageStart", &serde_json::json!({"role": "assistant"}));
        let total = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(total, frame.len());
        let decoded = aws_smithy_eventstream::frame::read_message_from(frame.clone()).unwrap();
        assert_eq!(decoded.payload().as_ref(), br#"{"role":"assistant"}"#);
        let names: Vec<&str> = decoded
            .headers()
            .iter()
            .map(|h| h.name().as_str())
            .collect();
        assert_eq!(names, vec![":event-type", ":content-type", ":message-type"]);
    }
}
