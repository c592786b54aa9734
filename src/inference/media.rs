//! Rows' images and documents before their requests are built: the URLs of `ai_image` and
//! `ai_document` are read through the session's object stores, and every block is checked
//! against Bedrock's limits and the model's API, so that a row that cannot be sent fails with
//! a clear message (under `on_error`) instead of a service error. Rows without blocks pass
//! unchanged.

use futures::StreamExt;

use crate::bedrock::engine::{Api, CallOptions, MEDIA_NEEDS_CONVERSE};
use crate::bedrock::media::{fetch, marker, problem};
use crate::bedrock::retry::CallFailure;

/// The code of a row whose image or document cannot be sent.
pub const INVALID_MEDIA: &str = "InvalidInput";

/// How many rows read their URLs at once.
const READS_AT_ONCE: usize = 8;

/// Rows ready to be sent: each prompt with its blocks read, or its failure.
pub(super) struct Ready {
    /// The prompts to send (`None`: no request, the row is NULL or failed).
    pub prompts: Vec<Option<String>>,
    /// Each row's failure, if its blocks cannot be sent.
    pub failures: Vec<Option<CallFailure>>,
    /// Whether any prompt carries a block.
    pub any: bool,
}

/// One prompt ready to be sent through `api`.
///
/// # Errors
/// A URL that cannot be read, a block over a limit, or a block for `InvokeModel`.
pub(super) async fn ready_one(
    prompt: &str,
    api: Api,
    options: &CallOptions,
) -> Result<String, CallFailure> {
    let fail = |message: String| CallFailure::fatal(INVALID_MEDIA, message);
    if api == Api::Invoke {
        return Err(fail(MEDIA_NEEDS_CONVERSE.to_string()));
    }
    let resolved = fetch::resolve(prompt, options.stores.as_deref())
        .await
        .map_err(fail)?;
    match problem(&resolved) {
        Some(p) => Err(fail(p)),
        None => Ok(resolved),
    }
}

/// Row `row`'s prompt ready to be sent through `api`.
async fn ready_row(
    prompts: &[Option<String>],
    row: usize,
    api: Api,
    options: &CallOptions,
) -> Result<Option<String>, CallFailure> {
    match prompts.get(row).and_then(Option::as_deref) {
        Some(p) if marker::has_media(p) => ready_one(p, api, options).await.map(Some),
        other => Ok(other.map(str::to_string)),
    }
}

/// Every row's prompt ready to be sent through `api`.
pub(super) async fn ready(prompts: &[Option<String>], api: Api, options: &CallOptions) -> Ready {
    let any = prompts.iter().flatten().any(|p| marker::has_media(p));
    if !any {
        return Ready {
            prompts: prompts.to_vec(),
            failures: vec![None; prompts.len()],
            any,
        };
    }
    let results: Vec<Result<Option<String>, CallFailure>> = futures::stream::iter(0..prompts.len())
        .map(|row| ready_row(prompts, row, api, options))
        .buffered(READS_AT_ONCE)
        .collect()
        .await;
    let mut ready = Ready {
        prompts: Vec::with_capacity(results.len()),
        failures: Vec::with_capacity(results.len()),
        any,
    };
    for result in results {
        match result {
            Ok(prompt) => {
                ready.prompts.push(prompt);
                ready.failures.push(None);
            }
            Err(failure) => {
                ready.prompts.push(None);
                ready.failures.push(Some(failure));
            }
        }
    }
    ready
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::media::{Format, MediaKind};

    #[tokio::test]
    async fn rows_with_blocks_are_checked_and_others_pass() {
        let image = marker::inline(
            MediaKind::Image,
            Format::Gif,
            None,
            b"GIF89a\x01\x00\x01\x00",
        );
        let prompts = vec![
            Some("plain".to_string()),
            None,
            Some(format!("See {image}")),
            Some(image.repeat(21)),
        ];
        let options = CallOptions::default();
        let ready = ready(&prompts, Api::Converse, &options).await;
        assert!(ready.any);
        assert_eq!(ready.prompts[..3], prompts[..3]);
        assert_eq!(ready.prompts[3], None);
        assert_eq!(
            ready.failures[3].as_ref().unwrap().to_string(),
            "InvalidInput: the prompt has 21 images, and Bedrock takes at most 20 in one request"
        );
        let invoke = super::ready(&prompts, Api::Invoke, &options).await;
        assert_eq!(invoke.prompts[0].as_deref(), Some("plain"));
        assert_eq!(
            invoke.failures[2].as_ref().unwrap().to_string(),
            format!("InvalidInput: {MEDIA_NEEDS_CONVERSE}")
        );
    }
}
