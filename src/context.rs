//! [`BedrockContext`]: a convenience over a `SessionContext` that has the extension. It holds
//! the session itself (no copy of its state): everything it does is also available as a
//! function over any `SessionContext` built with
//! [`crate::SessionStateBuilderBedrock::with_bedrock`].

use std::sync::Arc;

use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::Catalog;
use crate::catalog::persist::CatalogFile;
use crate::extension::{BedrockExtension, SessionStateBuilderBedrock};

/// A session with the extension, and the extension's state at hand.
#[derive(Clone)]
pub struct BedrockContext {
    ctx: SessionContext,
    ext: Arc<BedrockExtension>,
}

impl std::fmt::Debug for BedrockContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockContext")
            .field("session_id", &self.ctx.session_id())
            .field("extension", &self.ext)
            .finish()
    }
}

impl Default for BedrockContext {
    fn default() -> Self {
        Self::new()
    }
}

impl BedrockContext {
    /// A new session with DataFusion's default features and the extension.
    #[must_use]
    pub fn new() -> Self {
        Self::with_config(SessionConfig::new())
    }

    /// A new session with this configuration, DataFusion's default features and the
    /// extension.
    #[must_use]
    pub fn with_config(config: SessionConfig) -> Self {
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_bedrock()
            .build();
        let ctx = SessionContext::new_with_state(state);
        let ext = BedrockExtension::of(ctx.state_ref().read().config())
            .unwrap_or_else(|| Arc::new(BedrockExtension::new()));
        Self { ctx, ext }
    }

    /// Wraps a session built with the extension; the context and the session share
    /// everything.
    ///
    /// # Errors
    /// When the session was built without
    /// [`crate::SessionStateBuilderBedrock::with_bedrock`].
    pub fn try_new(ctx: SessionContext) -> Result<Self> {
        let ext = BedrockExtension::of_session(&ctx)?;
        Ok(Self { ctx, ext })
    }

    /// Engines created without `endpoint_url` use this endpoint (the built-in emulator in
    /// tests and demos).
    #[must_use]
    pub fn with_default_endpoint(self, url: impl Into<String>) -> Self {
        self.ext.set_default_endpoint(Some(url.into()));
        self
    }

    /// Engines created without `batch_s3_endpoint_url` write their batch jobs' files to this
    /// S3 endpoint (the built-in emulator's in tests and demos).
    #[must_use]
    pub fn with_default_s3_endpoint(self, url: impl Into<String>) -> Self {
        self.ext.set_default_s3_endpoint(Some(url.into()));
        self
    }

    /// Keeps the engines and models in a catalog file: every create, replace or drop that
    /// changes the catalog rewrites it. Call [`BedrockContext::restore_catalog`] to recreate
    /// what the file already holds.
    #[must_use]
    pub fn with_catalog_file(self, file: CatalogFile) -> Self {
        self.ext.set_catalog_file(Some(file));
        self
    }

    /// Recreates the engines and models of the catalog file (see
    /// [`crate::restore_catalog`]).
    pub async fn restore_catalog(&self) -> Vec<(String, DataFusionError)> {
        crate::restore_catalog(&self.ctx).await.unwrap_or_default()
    }

    /// Registers a directory's files as the `files` schema (see
    /// [`crate::register_files_dir`]).
    ///
    /// # Errors
    /// An unreadable directory or two files with one name.
    pub async fn register_files_dir(
        &self,
        dir: impl AsRef<std::path::Path>,
    ) -> Result<crate::files::RegisteredFiles> {
        crate::register_files_dir(&self.ctx, dir).await
    }

    /// The DataFusion session.
    #[must_use]
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// The extension's state of the session.
    #[must_use]
    pub fn extension(&self) -> &Arc<BedrockExtension> {
        &self.ext
    }

    /// The engines and models.
    #[must_use]
    pub fn catalog(&self) -> &Arc<Catalog> {
        self.ext.catalog()
    }

    /// Runs one or more `;`-separated statements and returns the last one's result (see
    /// [`crate::execute_sql`]).
    ///
    /// # Errors
    /// Syntax errors, validation errors (naming the parameter and the fix), and whatever
    /// DataFusion reports for its own statements.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        crate::execute_sql(&self.ctx, sql).await
    }
}
