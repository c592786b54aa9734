//! Runs every `.slt` file under `sql-tests/` against a fresh `BedrockContext` whose engines
//! default to the built-in emulator, with `sql-tests/files` as the `files` schema.
//!
//! `cargo test --test sqllogictests` runs them all; arguments filter files by path substring.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion_bedrock::BedrockContext;
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig, EmulatorStats, StaticCredential};
use datafusion_sqllogictest::{
    DFColumnType, DFOutput, DFSqlLogicTestError, convert_batches, convert_schema_to_types,
    df_value_validator, value_normalizer,
};
use sqllogictest::DBOutput;

/// One `.slt` file's database: a `BedrockContext`.
struct BedrockDb {
    ctx: BedrockContext,
}

#[async_trait]
impl sqllogictest::AsyncDB for BedrockDb {
    type Error = DFSqlLogicTestError;
    type ColumnType = DFColumnType;

    async fn run(&mut self, sql: &str) -> Result<DFOutput, Self::Error> {
        let df = self.ctx.sql(sql).await?;
        let schema = df.schema().as_arrow().clone();
        let batches = df.collect().await?;
        let types = convert_schema_to_types(schema.fields());
        let rows = convert_batches(&schema, batches, false)?;
        if rows.is_empty() && types.is_empty() {
            Ok(DBOutput::StatementComplete(0))
        } else {
            Ok(DBOutput::Rows { types, rows })
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "datafusion-bedrock"
    }
}

/// `emulator_model_calls()`: how many model invocations (Converse and InvokeModel, streamed or
/// not) the emulator has received since the `.slt` file started, so a file can prove how many
/// requests a query made.
fn emulator_model_calls_udf(stats: Arc<EmulatorStats>) -> ScalarUDF {
    create_udf(
        "emulator_model_calls",
        vec![],
        DataType::Int64,
        Volatility::Volatile,
        Arc::new(move |_args: &[ColumnarValue]| {
            let snapshot = stats.snapshot();
            let calls: u64 = [
                "Converse",
                "ConverseStream",
                "InvokeModel",
                "InvokeModelWithResponseStream",
            ]
            .iter()
            .map(|op| snapshot.count(None, Some(op), None))
            .sum();
            let total = i64::try_from(calls).unwrap_or(i64::MAX);
            Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(total))))
        }),
    )
}

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            slt_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "slt") {
            out.push(path);
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql-tests");
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut files = Vec::new();
    if let Err(e) = slt_files(&root, &mut files) {
        eprintln!("cannot read {}: {e}", root.display());
        return ExitCode::FAILURE;
    }
    files.sort();
    files.retain(|f| {
        filters.is_empty() || filters.iter().any(|p| f.display().to_string().contains(p))
    });

    // The seed document's made-up credentials are the ones the emulator accepts.
    let emulator = match Emulator::start(EmulatorConfig {
        credentials: vec![
            StaticCredential::new(
                "AQAXEQK89OX07YS34OP",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            )
            .with_session_token("FwoGZXIvYXdzEJr..."),
        ],
        ..EmulatorConfig::default()
    })
    .await
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot start the emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = emulator.url().to_string();
    let stats = emulator.shared_stats();
    let files_dir = root.join("files");
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let (url, files_dir, file_stats) = (url.clone(), files_dir.clone(), Arc::clone(&stats));
        let mut runner = sqllogictest::Runner::new(move || {
            let (url, files_dir, stats) = (url.clone(), files_dir.clone(), Arc::clone(&file_stats));
            async move {
                let ctx = BedrockContext::new(SessionContext::new()).with_default_endpoint(url);
                ctx.register_files_dir(&files_dir).await?;
                ctx.session().register_udf(emulator_model_calls_udf(stats));
                Ok::<_, DFSqlLogicTestError>(BedrockDb { ctx })
            }
        });
        runner.with_validator(df_value_validator);
        runner.with_normalizer(value_normalizer);
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        stats.reset();
        match runner.run_file_async(file).await {
            Ok(()) => {
                println!("ok     {name}");
                passed += 1;
            }
            Err(e) => {
                println!("FAILED {name}\n{e}");
                failed += 1;
            }
        }
    }
    emulator.shutdown().await;
    println!("sqllogictest: {passed} passed, {failed} failed");
    if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
