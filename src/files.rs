//! MindsDB's uploaded files: a directory's CSV, Parquet and JSON files as the `files` schema.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;

/// What [`register_files_dir`] did.
#[derive(Debug)]
pub struct RegisteredFiles {
    /// The tables of the `files` schema, sorted.
    pub tables: Vec<String>,
    /// Files DataFusion could not read (a malformed CSV, a truncated Parquet file), with why:
    /// skipped, so that one bad file does not stop the others.
    pub skipped: Vec<(PathBuf, DataFusionError)>,
}

/// Registers every CSV, Parquet and JSON (newline-delimited) file of a directory as a table
/// of the `files` schema, named by its file name without extension, lower-cased — the
/// equivalent of MindsDB's uploaded files (`SELECT * FROM files.unrelated_questions`; a file
/// `My Questions.csv` is `files."my questions"`). Registering a directory again refreshes its
/// tables. A file that cannot be read is skipped and reported.
///
/// # Errors
/// An unreadable directory or two files with one name.
pub async fn register_files_dir(
    ctx: &SessionContext,
    dir: impl AsRef<std::path::Path>,
) -> Result<RegisteredFiles> {
    use datafusion::catalog::MemorySchemaProvider;
    use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions};

    let dir = dir.as_ref();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        DataFusionError::Plan(format!(
            "The files directory '{}' cannot be read: {e}",
            dir.display()
        ))
    })?;
    let mut files: Vec<(String, std::path::PathBuf, String)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(ext) = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_lowercase)
        else {
            continue;
        };
        if !["csv", "parquet", "json", "ndjson", "jsonl"].contains(&ext.as_str()) || !path.is_file()
        {
            continue;
        }
        let Some(stem) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_lowercase)
        else {
            continue;
        };
        if let Some((_, other, _)) = files.iter().find(|(name, ..)| *name == stem) {
            return Err(DataFusionError::Plan(format!(
                "Files '{}' and '{}' would both be files.{stem}: rename one",
                other.display(),
                path.display()
            )));
        }
        files.push((stem, path, ext));
    }
    files.sort();
    let catalog_name = ctx
        .state()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone();
    let catalog = ctx.catalog(&catalog_name).ok_or_else(|| {
        DataFusionError::Plan(format!("The default catalog '{catalog_name}' is missing"))
    })?;
    if catalog.schema("files").is_none() {
        catalog.register_schema("files", Arc::new(MemorySchemaProvider::new()))?;
    }
    let mut tables = Vec::new();
    let mut skipped = Vec::new();
    for (name, path, ext) in files {
        // A reference built from its parts: names with capitals, dots or spaces stay whole.
        let table = TableReference::partial("files", name.as_str());
        let location = path.display().to_string();
        // Registering a directory again refreshes its tables.
        ctx.deregister_table(table.clone())?;
        let registered = match ext.as_str() {
            "csv" => {
                ctx.register_csv(table, &location, CsvReadOptions::new())
                    .await
            }
            "parquet" => {
                ctx.register_parquet(table, &location, ParquetReadOptions::default())
                    .await
            }
            _ => {
                let options = JsonReadOptions::default().file_extension(&ext);
                ctx.register_json(table, &location, options).await
            }
        };
        match registered {
            Ok(()) => tables.push(name),
            Err(e) => skipped.push((path, e)),
        }
    }
    Ok(RegisteredFiles { tables, skipped })
}
