//! An S3 endpoint on 127.0.0.1 for tests and demos: the `s3s` crate's S3 protocol over its
//! file-system backend (`s3s-fs`), so clients speak real S3 over HTTP (`object_store`'s S3
//! store, the AWS SDK). Buckets are the directories of its root. Requests must be signed
//! (SigV4) with [`S3Server::ACCESS_KEY_ID`] and [`S3Server::SECRET_ACCESS_KEY`], as S3 checks
//! its callers.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use datafusion_bedrock::emulator::S3Server;
//!
//! let root = std::env::temp_dir().join("s3-root");
//! let s3 = S3Server::start(&root, &["data"]).await?; // bucket `data`
//! println!("AWS_ENDPOINT_URL={}", s3.url());
//! s3.shutdown().await;
//! # Ok(()) }
//! ```

use std::path::Path;

use s3s::service::S3ServiceBuilder;

use super::listener::Listening;

/// A running S3 endpoint.
#[derive(Debug)]
pub struct S3Server {
    url: String,
    listening: Listening,
}

impl S3Server {
    /// The access key id requests must be signed with (engines sending Bedrock requests
    /// unsigned to the emulator sign their S3 requests with it).
    pub const ACCESS_KEY_ID: &'static str = crate::bedrock::batch::EMULATOR_S3_ACCESS_KEY_ID;
    /// Its secret key (made up: it guards nothing but the test's own files).
    pub const SECRET_ACCESS_KEY: &'static str =
        crate::bedrock::batch::EMULATOR_S3_SECRET_ACCESS_KEY;

    /// Serves the directory `root` (created if missing) on a free loopback port, with the
    /// given buckets created in it.
    ///
    /// # Errors
    /// When the directory or a bucket cannot be created, or no port can be bound.
    pub async fn start(root: &Path, buckets: &[&str]) -> std::io::Result<Self> {
        Self::start_accepting(root, buckets, &[]).await
    }

    /// [`S3Server::start`], also accepting requests signed with these key pairs (the
    /// emulator's own credentials: one AWS identity for Bedrock and S3, as in an account).
    ///
    /// # Errors
    /// As [`S3Server::start`].
    pub async fn start_accepting(
        root: &Path,
        buckets: &[&str],
        keys: &[super::StaticCredential],
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        for bucket in buckets {
            std::fs::create_dir_all(root.join(bucket))?;
        }
        let fs = s3s_fs::FileSystem::new(root).map_err(|_| {
            std::io::Error::other(format!(
                "{} cannot be served as an S3 root: it must be a readable directory",
                root.display()
            ))
        })?;
        let mut builder = S3ServiceBuilder::new(fs);
        let mut auth =
            s3s::auth::SimpleAuth::from_single(Self::ACCESS_KEY_ID, Self::SECRET_ACCESS_KEY);
        for key in keys {
            auth.register(
                key.access_key_id.clone(),
                key.secret_access_key.clone().into(),
            );
        }
        builder.set_auth(auth);
        let service = builder.build();
        let listening = Listening::start(0, "S3 endpoint", move || service.clone()).await?;
        Ok(Self {
            url: format!("http://{}", listening.addr()),
            listening,
        })
    }

    /// `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops accepting connections and waits (at most 5 s) for open ones to finish.
    pub async fn shutdown(self) {
        self.listening.shutdown().await;
    }
}
