//! A job's output in the S3 root: `<output prefix>/<job id>/<input name>.out` (the answer
//! lines, shuffled) and `manifest.json.out`, written as S3 objects of the `s3s-fs` backend.

use std::path::Path;

use serde_json::Value;

use super::input::S3Location;
use crate::emulator::answer::fnv1a;

/// The answers to one input file, as output lines in input order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct FileAnswers {
    /// The input's name below its prefix.
    pub name: String,
    pub lines: Vec<String>,
}

/// URL-safe base64 without padding: how `s3s-fs` names an object's sidecar files.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

/// Writes the object `bucket/key` under `root` whole (through a temporary file renamed into
/// place, so a reader never sees part of it), and removes the `s3s-fs` sidecars (stored
/// `ETag`, checksums, metadata) an earlier object of that key may have left, so S3 serves the
/// new content with its own `ETag`.
fn put(
    root: &Path,
    bucket: &str,
    key: &str,
    content: &[u8],
    temp_name: &str,
) -> std::io::Result<()> {
    let location = S3Location {
        bucket: bucket.to_string(),
        key: key.to_string(),
    };
    let path = location.path(root);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temp = root.join(temp_name);
    std::fs::write(&temp, content)?;
    std::fs::rename(&temp, &path)?;
    let object = format!(
        ".bucket-{}.object-{}",
        base64_url(bucket.as_bytes()),
        base64_url(key.as_bytes())
    );
    for sidecar in [".internal.json", ".metadata.json"] {
        let _ = std::fs::remove_file(root.join(format!("{object}{sidecar}")));
    }
    Ok(())
}

/// Writes a job's output: each file's lines in an order shuffled by a seed of the job id and
/// the file name (the service does not keep the input order), then the manifest.
pub(super) fn write(
    root: &Path,
    output: &S3Location,
    job_id: &str,
    files: &[FileAnswers],
    manifest: &Value,
) -> std::io::Result<()> {
    let folder = format!("{}{job_id}/", output.folder());
    let temp = format!(".batch-{job_id}.part");
    for file in files {
        let mut lines = file.lines.clone();
        fastrand::Rng::with_seed(fnv1a(&[job_id.as_bytes(), file.name.as_bytes()]))
            .shuffle(&mut lines);
        let mut content = lines.join("\n");
        if !content.is_empty() {
            content.push('\n');
        }
        let key = format!("{folder}{}.out", file.name);
        put(root, &output.bucket, &key, content.as_bytes(), &temp)?;
    }
    let key = format!("{folder}manifest.json.out");
    put(
        root,
        &output.bucket,
        &key,
        format!("{manifest}\n").as_bytes(),
        &temp,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_names_use_url_safe_base64_without_padding() {
        assert_eq!(base64_url(b""), "");
        assert_eq!(base64_url(b"f"), "Zg");
        assert_eq!(base64_url(b"fo"), "Zm8");
        assert_eq!(base64_url(b"foo"), "Zm9v");
        assert_eq!(base64_url(b"foob"), "Zm9vYg");
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
    }
}
