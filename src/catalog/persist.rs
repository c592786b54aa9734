//! A catalog file: the engines and models of a session, kept between runs.
//!
//! What is stored is what recreates them — each name with its `USING` parameters exactly as
//! written — so secrets are stored only when they were given inline, and engines that name no
//! `endpoint_url` follow whatever default endpoint the next session has. The file is JSON,
//! rewritten whole on every change (through a temporary file and a rename), with mode 0600, in
//! a directory made with mode 0700. Every change is made under an exclusive lock of
//! `<file>.lock` to the file as it is on disk then, so shells sharing a file lose nothing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::bedrock::params::ParamValue;
use crate::error::{Error, Result};
use crate::sql::parser::{BedrockStatement, QualifiedName};

/// The file format's version.
const VERSION: u32 = 1;

/// A parameter value as stored (JSON's own types).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum StoredValue {
    Bool(bool),
    Number(f64),
    String(String),
    List(Vec<StoredValue>),
}

impl From<&ParamValue> for StoredValue {
    fn from(v: &ParamValue) -> Self {
        match v {
            ParamValue::String(s) => Self::String(s.clone()),
            ParamValue::Number(n) => Self::Number(*n),
            ParamValue::Bool(b) => Self::Bool(*b),
            ParamValue::List(items) => Self::List(items.iter().map(Self::from).collect()),
        }
    }
}

impl From<&StoredValue> for ParamValue {
    fn from(v: &StoredValue) -> Self {
        match v {
            StoredValue::String(s) => Self::String(s.clone()),
            StoredValue::Number(n) => Self::Number(*n),
            StoredValue::Bool(b) => Self::Bool(*b),
            StoredValue::List(items) => Self::List(items.iter().map(Self::from).collect()),
        }
    }
}

type StoredParams = Vec<(String, StoredValue)>;

fn stored(params: &[(String, ParamValue)]) -> StoredParams {
    params
        .iter()
        .map(|(k, v)| (k.clone(), StoredValue::from(v)))
        .collect()
}

fn restored(params: &StoredParams) -> Vec<(String, ParamValue)> {
    params
        .iter()
        .map(|(k, v)| (k.clone(), ParamValue::from(v)))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EngineRecord {
    name: QualifiedName,
    handler: String,
    params: StoredParams,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ModelRecord {
    name: QualifiedName,
    target: String,
    params: StoredParams,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Contents {
    version: u32,
    engines: Vec<EngineRecord>,
    models: Vec<ModelRecord>,
}

/// The contents of a catalog file; empty when it does not exist.
fn read_contents(path: &Path) -> Result<Contents> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let contents: Contents = serde_json::from_str(&text).map_err(|e| {
                Error::InvalidInput(format!(
                    "The catalog file '{}' is not a datafusion-bedrock catalog ({e}): \
                     move it away or name another file",
                    path.display()
                ))
            })?;
            if contents.version != VERSION {
                return Err(Error::InvalidInput(format!(
                    "The catalog file '{}' has version {}, this build reads version {VERSION}",
                    path.display(),
                    contents.version
                )));
            }
            Ok(contents)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contents {
            version: VERSION,
            ..Contents::default()
        }),
        Err(e) => Err(Error::InvalidInput(format!(
            "The catalog file '{}' cannot be read: {e}",
            path.display()
        ))),
    }
}

/// A catalog file on disk and its contents in memory.
pub struct CatalogFile {
    path: PathBuf,
    contents: Mutex<Contents>,
}

impl std::fmt::Debug for CatalogFile {
    // The contents may hold inline secrets: only the path is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl CatalogFile {
    /// Opens a catalog file, or starts an empty one when it does not exist yet (it is written
    /// at the first change).
    ///
    /// # Errors
    /// When the file exists but cannot be read or is not a catalog file.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let contents = read_contents(&path)?;
        Ok(Self {
            path,
            contents: Mutex::new(contents),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Contents> {
        self.contents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The statements that recreate every stored engine, then every stored model, in the
    /// order they were created.
    pub fn statements(&self) -> Vec<BedrockStatement> {
        let contents = self.lock();
        let engines = contents
            .engines
            .iter()
            .map(|e| BedrockStatement::CreateEngine {
                name: e.name.clone(),
                if_not_exists: false,
                handler: e.handler.clone(),
                params: restored(&e.params),
            });
        let models = contents
            .models
            .iter()
            .map(|m| BedrockStatement::CreateModel {
                name: m.name.clone(),
                or_replace: false,
                if_not_exists: false,
                target: m.target.clone(),
                params: restored(&m.params),
            });
        engines.chain(models).collect()
    }

    /// Records the effect of a statement that changed the catalog (a create, replace or
    /// drop), and writes the file. Other statements change nothing.
    ///
    /// # Errors
    /// When the file cannot be written.
    ///
    /// Shells sharing one file never lose each other's entries: the change is made under an
    /// exclusive lock of `<file>.lock`, to the file as it is on disk at that moment (what
    /// other processes recorded since it was opened is kept).
    pub fn record(&self, statement: &BedrockStatement) -> Result<()> {
        let mut contents = self.lock();
        let _file_lock = self.lock_file()?;
        *contents = read_contents(&self.path)?;
        match statement {
            BedrockStatement::CreateEngine {
                name,
                handler,
                params,
                ..
            } => {
                contents.engines.retain(|e| e.name != *name);
                contents.engines.push(EngineRecord {
                    name: name.clone(),
                    handler: handler.clone(),
                    params: stored(params),
                });
            }
            BedrockStatement::DropEngine { name, .. } => {
                contents.engines.retain(|e| e.name != *name);
            }
            BedrockStatement::CreateModel {
                name,
                target,
                params,
                ..
            } => {
                contents.models.retain(|m| m.name != *name);
                contents.models.push(ModelRecord {
                    name: name.clone(),
                    target: target.clone(),
                    params: stored(params),
                });
            }
            BedrockStatement::DropModel { name, .. } => {
                contents.models.retain(|m| m.name != *name);
            }
            _ => return Ok(()),
        }
        self.write(&contents)
    }

    /// Takes the exclusive lock of `<file>.lock` (waiting for other processes that hold it);
    /// it is released when the returned file is dropped.
    fn lock_file(&self) -> Result<std::fs::File> {
        let fail = |e: std::io::Error| {
            Error::InvalidInput(format!(
                "The catalog file '{}' cannot be locked: {e}",
                self.path.display()
            ))
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(fail)?;
        }
        let mut lock_path = self.path.clone().into_os_string();
        lock_path.push(".lock");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(PathBuf::from(lock_path)).map_err(fail)?;
        file.lock().map_err(fail)?;
        Ok(file)
    }

    fn write(&self, contents: &Contents) -> Result<()> {
        let fail = |what: &str, e: std::io::Error| {
            Error::InvalidInput(format!(
                "The catalog file '{}' cannot be {what}: {e}",
                self.path.display()
            ))
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(|e| fail("created", e))?;
        }
        let text = serde_json::to_string_pretty(contents)
            .map_err(|e| fail("written", std::io::Error::other(e)))?;
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        write_private(&tmp, text.as_bytes()).map_err(|e| fail("written", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| fail("written", e))
    }
}

/// Creates a directory and its missing parents, the ones it creates readable by their owner
/// only (mode 0700 on Unix); a directory that exists already is left as it is.
///
/// # Errors
/// What the file system reports.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes a file readable and writable by its owner only (mode 0600 on Unix).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path)?;
        // An older file keeps its mode on open: set it explicitly.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let mut file = options.open(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parser::{ParsedStatement, parse_sql};

    fn statement(sql: &str) -> BedrockStatement {
        match parse_sql(sql).expect("valid SQL").remove(0) {
            ParsedStatement::Bedrock(s) => s,
            ParsedStatement::DataFusion(s) => panic!("not an extension statement: {s}"),
        }
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "datafusion-bedrock-persist-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("nested").join("catalog.json")
    }

    #[test]
    fn creates_and_drops_round_trip_through_the_file() {
        let path = temp_path("round-trip");
        let file = CatalogFile::open(&path).expect("a missing file is an empty catalog");
        assert!(file.statements().is_empty());
        let engine = statement(
            "CREATE ML_ENGINE e FROM bedrock USING region_name = 'eu-west-1', max_concurrency = 4, verify_credentials = false",
        );
        let model = statement(
            "CREATE MODEL m PREDICT answer USING engine = 'e', stop_sequences = ['\n\nHuman:'], temperature = 0.3",
        );
        let other = statement("CREATE MODEL gone PREDICT answer USING engine = 'e'");
        file.record(&engine).expect("written");
        file.record(&model).expect("written");
        file.record(&other).expect("written");
        file.record(&statement("DROP MODEL gone")).expect("written");
        file.record(&statement("SHOW MODELS"))
            .expect("nothing to write");

        let reopened = CatalogFile::open(&path).expect("readable");
        let expected = vec![
            engine,
            match model {
                BedrockStatement::CreateModel {
                    name,
                    target,
                    params,
                    ..
                } => BedrockStatement::CreateModel {
                    name,
                    or_replace: false,
                    if_not_exists: false,
                    target,
                    params,
                },
                other => other,
            },
        ];
        assert_eq!(reopened.statements(), expected);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let dir_mode = std::fs::metadata(path.parent().expect("has a parent"))
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(dir_mode & 0o777, 0o700, "the directory the file made");
        }
    }

    fn engine(name: &str) -> BedrockStatement {
        BedrockStatement::CreateEngine {
            name: vec![name.into()],
            if_not_exists: false,
            handler: "bedrock".into(),
            params: vec![],
        }
    }

    #[test]
    fn two_writers_of_one_file_keep_each_others_entries() {
        // Regression: each writer rewrote the whole file from what it had read at start.
        let path = temp_path("two-writers");
        let first = CatalogFile::open(&path).expect("opens");
        let second = CatalogFile::open(&path).expect("opens");
        second.record(&engine("b")).expect("records");
        first.record(&engine("a")).expect("records");
        second
            .record(&BedrockStatement::DropEngine {
                name: vec!["b".into()],
                if_exists: false,
            })
            .expect("records");
        first.record(&engine("c")).expect("records");
        let names: Vec<String> = CatalogFile::open(&path)
            .expect("opens")
            .statements()
            .iter()
            .map(|s| match s {
                BedrockStatement::CreateEngine { name, .. } => name.join("."),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["a", "c"]);
    }

    #[test]
    fn a_foreign_file_is_refused_with_its_path() {
        let path = temp_path("foreign");
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("created");
        std::fs::write(&path, "not json").expect("written");
        let err = CatalogFile::open(&path).expect_err("not a catalog");
        assert_eq!(
            err.to_string(),
            format!(
                "The catalog file '{}' is not a datafusion-bedrock catalog (expected ident at line 1 column 2): move it away or name another file",
                path.display()
            )
        );
    }

    #[test]
    fn debug_shows_the_path_only() {
        let path = temp_path("debug");
        let file = CatalogFile::open(&path).expect("empty");
        file.record(&statement(
            "CREATE ML_ENGINE e FROM bedrock USING aws_access_key_id = 'AKIA', aws_secret_access_key = 'very-secret'",
        ))
        .expect("written");
        let debug = format!("{file:?}");
        assert_eq!(
            debug,
            format!("CatalogFile {{ path: {:?}, .. }}", file.path())
        );
    }
}
