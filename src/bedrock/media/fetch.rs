//! Reading the objects a prompt's references name (`s3://…`, `file://…`, `https://…`) through
//! the session's object stores (DataFusion's `RuntimeEnv` registry), and putting blocks with
//! their bytes in their place.

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use object_store::ObjectStoreExt;

use super::format::{Format, MediaKind, detect, name_from, size_problem};
use super::marker::{self, Piece, Reference};

/// Whether a text is a URL (`scheme://…`), which `ai_image` and `ai_document` read, rather than
/// content.
#[must_use]
pub fn is_url(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && !rest.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
    })
}

/// The prompt with every reference replaced by the block of the object it names.
///
/// # Errors
/// No object stores, a URL no store serves, an object that cannot be read, is too large, or
/// whose format is unknown or not what the caller named: each message names the URL.
pub async fn resolve(text: &str, stores: Option<&RuntimeEnv>) -> Result<String, String> {
    let pieces = marker::pieces(text)?;
    if !pieces.iter().any(|p| matches!(p, Piece::Reference(_))) {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Inline(b) => {
                out.push_str(&marker::inline(b.kind, b.format, b.name, &b.bytes()?));
            }
            Piece::Reference(r) => {
                let stores = stores.ok_or_else(|| {
                    format!(
                        "{}: reading a URL needs the session's object stores, and this call runs without a session (pass the bytes instead)",
                        r.url
                    )
                })?;
                let bytes = read(&r, stores).await?;
                out.push_str(&block_of(&r, &bytes)?);
            }
        }
    }
    Ok(out)
}

/// The marker of a reference's object, its format and name settled.
fn block_of(r: &Reference<'_>, bytes: &[u8]) -> Result<String, String> {
    let format = detect(r.kind, bytes, r.format, Format::from_path(r.url))
        .map_err(|e| format!("{}: {e}", r.url))?;
    let name = match (r.kind, r.name) {
        (MediaKind::Image, _) => None,
        (MediaKind::Document, Some(name)) => Some(name.to_string()),
        (MediaKind::Document, None) => {
            let file = r.url.split(['?', '#']).next().unwrap_or(r.url);
            let file = file.rsplit('/').next().unwrap_or(file);
            let stem = file.rsplit_once('.').map_or(file, |(stem, _)| stem);
            Some(name_from(stem))
        }
    };
    Ok(marker::inline(r.kind, format, name.as_deref(), bytes))
}

/// The bytes of a reference's object, refused before reading when the store says it is too
/// large.
async fn read(r: &Reference<'_>, stores: &RuntimeEnv) -> Result<Vec<u8>, String> {
    let url = r.url;
    let unreadable = |e: &dyn std::fmt::Display| format!("{url} cannot be read: {e}");
    let parsed = ListingTableUrl::parse(url).map_err(|e| unreadable(&e))?;
    let store = stores.object_store(parsed.object_store()).map_err(|_| {
        format!(
            "{url}: the session has no object store for '{}' (register one, e.g. with CREATE EXTERNAL TABLE over that location or SessionContext::register_object_store)",
            parsed.object_store().as_str()
        )
    })?;
    let path = parsed.prefix();
    let meta = store.head(path).await.map_err(|e| store_error(url, &e))?;
    let size = usize::try_from(meta.size).unwrap_or(usize::MAX);
    if let Some(problem) = size_problem(r.kind, size) {
        return Err(format!("{url}: {problem}"));
    }
    let got = store.get(path).await.map_err(|e| store_error(url, &e))?;
    let bytes = got.bytes().await.map_err(|e| unreadable(&e))?;
    if let Some(problem) = size_problem(r.kind, bytes.len()) {
        return Err(format!("{url}: {problem}"));
    }
    Ok(bytes.to_vec())
}

/// What a store's refusal means to the user, without the client's request details (address,
/// timing) for the cases that have a plain meaning.
fn store_error(url: &str, e: &object_store::Error) -> String {
    match e {
        object_store::Error::NotFound { .. } => {
            format!("{url} cannot be read: there is no object at that location")
        }
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => {
            format!(
                "{url} cannot be read: the object store refused access (check the credentials of the store registered for it)"
            )
        }
        other => format!("{url} cannot be read: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_content() {
        assert!(is_url("s3://bucket/key.png"));
        assert!(is_url("file:///tmp/x.pdf"));
        assert!(is_url("https://example.com/a.png"));
        assert!(!is_url("Just some text: a://"));
        assert!(!is_url("no url here"));
        assert!(!is_url("://x"));
        assert!(!is_url("1ab://x"));
    }

    #[tokio::test]
    async fn local_files_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("dot.png");
        std::fs::write(
            &png,
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x01\x00\x00\x00\x01",
        )
        .unwrap();
        let notes = dir.path().join("my notes.md");
        std::fs::write(&notes, b"# Notes").unwrap();
        let env = RuntimeEnv::default();
        let url = format!("file://{}", png.display());
        let prompt = format!(
            "See {} and {}",
            marker::reference(MediaKind::Image, None, None, &url).unwrap(),
            marker::reference(
                MediaKind::Document,
                None,
                None,
                &format!("file://{}", notes.display())
            )
            .unwrap()
        );
        let resolved = resolve(&prompt, Some(&env)).await.unwrap();
        assert_eq!(
            marker::shown(&resolved),
            "See [image: png, 24 bytes] and [document: md \"my notes\", 7 bytes]"
        );
        let wrong = marker::reference(MediaKind::Image, Some(Format::Jpeg), None, &url).unwrap();
        assert_eq!(
            resolve(&wrong, Some(&env)).await.unwrap_err(),
            format!("{url}: the bytes are a png image, not jpeg as the format says")
        );
        let missing =
            marker::reference(MediaKind::Image, None, None, "file:///no/such/x.png").unwrap();
        assert!(
            resolve(&missing, Some(&env))
                .await
                .unwrap_err()
                .starts_with("file:///no/such/x.png cannot be read: ")
        );
        assert_eq!(
            resolve(&missing, None).await.unwrap_err(),
            "file:///no/such/x.png: reading a URL needs the session's object stores, and this call runs without a session (pass the bytes instead)"
        );
        let s3 = marker::reference(MediaKind::Image, None, None, "s3://bucket/x.png").unwrap();
        assert_eq!(
            resolve(&s3, Some(&env)).await.unwrap_err(),
            "s3://bucket/x.png: the session has no object store for 's3://bucket/' (register one, e.g. with CREATE EXTERNAL TABLE over that location or SessionContext::register_object_store)"
        );
    }
}
