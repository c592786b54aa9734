//! The S3 store of the jobs' files: `object_store`'s S3 client for the bucket of
//! `batch_s3_uri`, in the engine's region (or at `batch_s3_endpoint_url`), signed with the
//! engine's own AWS identity.

use std::sync::Arc;

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AwsCredential};

use crate::bedrock::retry::CallFailure;
use crate::error::{Error, Result};

/// The access key id of the built-in emulator's S3 endpoint. An engine that sends its
/// Bedrock requests unsigned to the emulator signs its S3 requests with this made-up pair.
pub const EMULATOR_S3_ACCESS_KEY_ID: &str = "AKIDEMULATEDS3";
/// Its secret key (made up: it guards nothing but a test's own files).
pub const EMULATOR_S3_SECRET_ACCESS_KEY: &str = "emulated-s3-secret-key";

/// An S3 prefix: `s3://bucket/prefix/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without a leading `/`, ending with `/` unless empty.
    pub prefix: String,
}

impl S3Location {
    /// Reads `s3://bucket` or `s3://bucket/prefix` (a `/` is added to the prefix).
    ///
    /// # Errors
    /// An [`Error::InvalidInput`] naming `key` and the expected form.
    pub fn parse(uri: &str, key: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidInput(format!(
                "Parameter '{key}' = '{uri}' is not an S3 prefix: write {key} = 's3://bucket/prefix/'"
            ))
        };
        let rest = uri.strip_prefix("s3://").ok_or_else(bad)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(bad());
        }
        let prefix = prefix.trim_matches('/');
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }

    /// The key of `name` under the prefix.
    #[must_use]
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// `s3://bucket/<key>`.
    #[must_use]
    pub fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// What an engine signs its S3 requests with.
#[derive(Clone)]
pub(crate) enum S3Identity {
    /// The engine's inline keys.
    Keys(Arc<AwsCredential>),
    /// The engine's credential chain or profile.
    Chain(SharedCredentialsProvider),
    /// None: why, as a sentence to put in an error.
    Missing(String),
}

impl std::fmt::Debug for S3Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Keys(_) => "S3Identity::Keys(** redacted **)",
            Self::Chain(_) => "S3Identity::Chain",
            Self::Missing(_) => "S3Identity::Missing",
        })
    }
}

impl S3Identity {
    /// The emulator's S3 key pair.
    pub(crate) fn emulator() -> Self {
        Self::Keys(Arc::new(AwsCredential {
            key_id: EMULATOR_S3_ACCESS_KEY_ID.into(),
            secret_key: EMULATOR_S3_SECRET_ACCESS_KEY.into(),
            token: None,
        }))
    }
}

/// The engine's credential chain, asked for each signature (the chain caches what it loads).
#[derive(Debug)]
struct ChainCredentials(SharedCredentialsProvider);

#[async_trait::async_trait]
impl object_store::CredentialProvider for ChainCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let credentials =
            self.0
                .provide_credentials()
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: "S3",
                    source: format!("no AWS credentials for S3: {e}").into(),
                })?;
        Ok(Arc::new(AwsCredential {
            key_id: credentials.access_key_id().to_string(),
            secret_key: credentials.secret_access_key().to_string(),
            token: credentials.session_token().map(str::to_string),
        }))
    }
}

/// The store of a location's bucket.
///
/// # Errors
/// A failure saying why S3 cannot be reached with this engine's identity.
pub(crate) fn store(
    location: &S3Location,
    region: &str,
    endpoint: Option<&str>,
    identity: &S3Identity,
) -> std::result::Result<Arc<dyn ObjectStore>, CallFailure> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&location.bucket)
        .with_region(region);
    if let Some(endpoint) = endpoint {
        builder = builder
            .with_endpoint(endpoint.trim_end_matches('/'))
            .with_allow_http(endpoint.starts_with("http://"));
    }
    builder = match identity {
        S3Identity::Keys(keys) => builder.with_credentials(Arc::new(
            object_store::StaticCredentialProvider::new(AwsCredential {
                key_id: keys.key_id.clone(),
                secret_key: keys.secret_key.clone(),
                token: keys.token.clone(),
            }),
        )),
        S3Identity::Chain(chain) => {
            builder.with_credentials(Arc::new(ChainCredentials(chain.clone())))
        }
        S3Identity::Missing(why) => {
            return Err(CallFailure::fatal("BatchStorageError", why.clone()));
        }
    };
    builder
        .build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| {
            CallFailure::fatal(
                "BatchStorageError",
                format!("the S3 store of {location} cannot be built: {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_prefixes_are_read() {
        let l = S3Location::parse("s3://my-bucket/batch/jobs", "batch_s3_uri").unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("my-bucket", "batch/jobs/")
        );
        assert_eq!(l.to_string(), "s3://my-bucket/batch/jobs/");
        assert_eq!(
            l.uri(&l.key("a/in.jsonl")),
            "s3://my-bucket/batch/jobs/a/in.jsonl"
        );
        let root = S3Location::parse("s3://bucket", "batch_s3_uri").unwrap();
        assert_eq!(root.key("x"), "x");
        assert_eq!(
            S3Location::parse("https://bucket/x", "batch_s3_uri")
                .unwrap_err()
                .to_string(),
            "Parameter 'batch_s3_uri' = 'https://bucket/x' is not an S3 prefix: write batch_s3_uri = 's3://bucket/prefix/'"
        );
        assert!(S3Location::parse("s3://B/x", "k").is_err());
    }
}
