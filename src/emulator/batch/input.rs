//! A job's input: `s3://` locations in the S3 root, and the JSONL records read and validated
//! from them, with the failure messages of the `Validating` step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The fewest records a job may have.
pub(super) const MIN_RECORDS: usize = 100;
/// The most records one input file may have.
pub(super) const MAX_RECORDS_PER_FILE: usize = 50_000;
/// The most records a job may have.
pub(super) const MAX_RECORDS_PER_JOB: usize = 50_000;

/// `s3://bucket/key`: the file `<root>/bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct S3Location {
    pub bucket: String,
    /// The key, or a prefix (empty, or ending with `/`).
    pub key: String,
}

impl S3Location {
    /// `s3://[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9](/.*)?`, without `.` or `..` path segments.
    pub(super) fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let bucket_ok = (3..=63).contains(&bucket.len())
            && edge(bucket.as_bytes().first())
            && edge(bucket.as_bytes().last())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        let key_ok = key
            .split('/')
            .all(|segment| segment != "." && segment != "..");
        (bucket_ok && key_ok).then(|| Self {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    pub(super) fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// Whether the location names every object under a prefix rather than one object.
    fn is_prefix(&self) -> bool {
        self.key.is_empty() || self.key.ends_with('/')
    }

    /// The file (or directory, for a prefix) holding the location under `root`.
    pub(super) fn path(&self, root: &Path) -> PathBuf {
        self.key
            .split('/')
            .filter(|s| !s.is_empty())
            .fold(root.join(&self.bucket), |path, segment| path.join(segment))
    }

    /// The folder as a URI: `s3://bucket/<folder>`.
    pub(super) fn folder_uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.folder())
    }

    /// The output prefix: the key as a folder (`out` and `out/` are both `out/`).
    pub(super) fn folder(&self) -> String {
        let key = self.key.trim_end_matches('/');
        if key.is_empty() {
            String::new()
        } else {
            format!("{key}/")
        }
    }
}

/// One input record.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Record {
    pub id: String,
    pub input: Value,
}

/// One input object and its records, in file order.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct InputFile {
    /// `s3://bucket/key`.
    pub uri: String,
    /// The key below the input prefix (the file name for a single object): its output is
    /// `<name>.out`.
    pub name: String,
    pub records: Vec<Record>,
}

/// The objects the input names, as (key, name below the prefix), sorted by key.
fn objects(root: &Path, input: &S3Location) -> Result<Vec<(String, String)>, String> {
    if !input.is_prefix() {
        return if input.path(root).is_file() {
            let name = input.key.rsplit('/').next().unwrap_or_default();
            Ok(vec![(input.key.clone(), name.to_string())])
        } else {
            Err(format!("The input object {} does not exist.", input.uri()))
        };
    }
    let mut found = Vec::new();
    walk(&input.path(root), "", &mut found);
    found.retain(|name| {
        Path::new(name)
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("jsonl"))
    });
    if found.is_empty() {
        return Err(format!(
            "There is no .jsonl object under the input prefix {}.",
            input.uri()
        ));
    }
    found.sort();
    Ok(found
        .into_iter()
        .map(|name| (format!("{}{name}", input.key), name))
        .collect())
}

/// Every file under `dir`, as paths relative to it joined with `/`.
fn walk(dir: &Path, prefix: &str, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let path = entry.path();
        if path.is_dir() {
            walk(&path, &format!("{prefix}{name}/"), found);
        } else if path.is_file() {
            found.push(format!("{prefix}{name}"));
        }
    }
}

/// The records of one file, or why the job fails. `seen`: record ids of the job so far, with
/// where they were.
fn records(
    uri: &str,
    text: &str,
    seen: &mut HashMap<String, (String, usize)>,
) -> Result<Vec<Record>, String> {
    let mut records = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(line) else {
            return Err(format!(
                "Line {n} of {uri} is not a JSON object. Each line of a batch inference input file must be {{\"recordId\": \"…\", \"modelInput\": {{…}}}}."
            ));
        };
        let Some(Value::String(id)) = object.remove("recordId") else {
            return Err(format!("Line {n} of {uri} has no recordId string."));
        };
        let Some(input @ Value::Object(_)) = object.remove("modelInput") else {
            return Err(format!("Line {n} of {uri} has no modelInput object."));
        };
        if let Some((first_uri, first_line)) = seen.get(&id) {
            return Err(format!(
                "Line {n} of {uri} repeats the recordId {id} of line {first_line} of {first_uri}. Record ids must be unique within a job."
            ));
        }
        seen.insert(id.clone(), (uri.to_string(), n));
        records.push(Record { id, input });
    }
    if records.len() > MAX_RECORDS_PER_FILE {
        return Err(format!(
            "{uri} has {} records, more than the {MAX_RECORDS_PER_FILE} allowed in one input file.",
            records.len()
        ));
    }
    Ok(records)
}

/// Reads and validates a job's input from the S3 root: its files and records in order, or the
/// message the job fails with.
pub(super) fn read(
    root: &Path,
    input: &S3Location,
    output: &S3Location,
) -> Result<Vec<InputFile>, String> {
    let mut files = Vec::new();
    let mut seen = HashMap::new();
    for (key, name) in objects(root, input)? {
        let location = S3Location {
            bucket: input.bucket.clone(),
            key,
        };
        let uri = location.uri();
        let bytes = std::fs::read(location.path(root))
            .map_err(|e| format!("The input object {uri} cannot be read: {e}."))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("{uri} is not UTF-8 text."))?;
        let records = records(&uri, &text, &mut seen)?;
        files.push(InputFile { uri, name, records });
    }
    let total: usize = files.iter().map(|f| f.records.len()).sum();
    if total > MAX_RECORDS_PER_JOB {
        return Err(format!(
            "The job has {total} records, more than the {MAX_RECORDS_PER_JOB} allowed in one batch inference job."
        ));
    }
    if total < MIN_RECORDS {
        return Err(format!(
            "The job has {total} records, fewer than the {MIN_RECORDS} a batch inference job needs."
        ));
    }
    if !root.join(&output.bucket).is_dir() {
        return Err(format!(
            "The output bucket {} of {} does not exist.",
            output.bucket,
            output.uri()
        ));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(uri: &str) -> S3Location {
        S3Location::parse(uri).expect("a valid s3 uri")
    }

    #[test]
    fn s3_uris_follow_the_service_pattern() {
        assert_eq!(
            location("s3://bedrock-batch/in/a.jsonl"),
            S3Location {
                bucket: "bedrock-batch".into(),
                key: "in/a.jsonl".into()
            }
        );
        assert_eq!(location("s3://bucket").key, "");
        for bad in [
            "bucket/key",
            "s3://Bucket/key",
            "s3://ab/key",
            "s3://-bucket/key",
            "s3://bucket/../etc",
            "https://bucket/key",
        ] {
            assert_eq!(S3Location::parse(bad), None, "{bad}");
        }
        assert_eq!(location("s3://bucket/out").folder(), "out/");
        assert_eq!(location("s3://bucket/out/").folder(), "out/");
        assert_eq!(location("s3://bucket/").folder(), "");
    }

    #[test]
    fn lines_are_checked_and_named_by_file_and_number() {
        let uri = "s3://b/in.jsonl";
        let read = |text: &str| records(uri, text, &mut HashMap::new());
        assert_eq!(
            read(
                "{\"recordId\":\"a\",\"modelInput\":{}}\n\n{\"recordId\":\"b\",\"modelInput\":{\"x\":1}}\n"
            ),
            Ok(vec![
                Record {
                    id: "a".into(),
                    input: serde_json::json!({})
                },
                Record {
                    id: "b".into(),
                    input: serde_json::json!({"x": 1})
                },
            ])
        );
        assert_eq!(
            read("{\"recordId\":\"a\",\"modelInput\":{}}\nnot json"),
            Err("Line 2 of s3://b/in.jsonl is not a JSON object. Each line of a batch inference input file must be {\"recordId\": \"…\", \"modelInput\": {…}}.".to_string())
        );
        assert_eq!(
            read("{\"modelInput\":{}}"),
            Err("Line 1 of s3://b/in.jsonl has no recordId string.".to_string())
        );
        assert_eq!(
            read("{\"recordId\":\"a\",\"modelInput\":\"text\"}"),
            Err("Line 1 of s3://b/in.jsonl has no modelInput object.".to_string())
        );
        assert_eq!(
            read("{\"recordId\":\"a\",\"modelInput\":{}}\n{\"recordId\":\"a\",\"modelInput\":{}}"),
            Err("Line 2 of s3://b/in.jsonl repeats the recordId a of line 1 of s3://b/in.jsonl. Record ids must be unique within a job.".to_string())
        );
    }
}
