//! Runs every `.slt` file under `sql-tests/` through the public driver
//! ([`datafusion_bedrock::slt::SltDriver`]): a fresh `BedrockContext` per file whose engines
//! default to the built-in emulator, with `sql-tests/files` as the `files` schema.
//!
//! `cargo test --test sqllogictests` runs them all; arguments filter files by path substring.

use std::path::Path;
use std::process::ExitCode;

use datafusion_bedrock::emulator::{EmulatorConfig, S3Server, StaticCredential};
use datafusion_bedrock::slt::{SltDriver, slt_files};

#[tokio::main]
async fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql-tests");
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut files = match slt_files(&root) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("cannot read {}: {e}", root.display());
            return ExitCode::FAILURE;
        }
    };
    files.retain(|f| {
        filters.is_empty() || filters.iter().any(|p| f.display().to_string().contains(p))
    });

    // The seed document's made-up credentials are the ones the emulator accepts, and its own S3
    // key pair (batch inference signs Bedrock and S3 requests with one identity).
    let config = EmulatorConfig {
        credentials: vec![
            StaticCredential::new(
                "AQAXEQK89OX07YS34OP",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            )
            .with_session_token("FwoGZXIvYXdzEJr..."),
            StaticCredential::new(S3Server::ACCESS_KEY_ID, S3Server::SECRET_ACCESS_KEY),
        ],
        ..EmulatorConfig::default()
    };
    let driver = match SltDriver::start(config, Some(root.join("files"))).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot start the emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        match driver.run_file(file).await {
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
    driver.shutdown().await;
    println!("sqllogictest: {passed} passed, {failed} failed");
    if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
