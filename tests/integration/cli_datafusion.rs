//! The shell is `datafusion-cli` for real: stock `datafusion-cli` statements (files, external
//! tables, table functions, COPY, SET, meta commands, errors) print through
//! `datafusion-bedrock` exactly what they print through a stock `datafusion-cli` session, and
//! what a new user types first works, with no AWS credentials and no config files.
//!
//! The stock side is `datafusion-cli`'s own `main` rebuilt from its library (session, runtime,
//! object stores, table functions, `exec_from_commands` / `exec_from_repl`) in a child process:
//! this test binary runs its ignored test [`stock_datafusion_cli_child`] with the statements in
//! its environment, in the same directory as the `datafusion-bedrock` run it is compared with.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use datafusion::config::ConfigOptions;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::ExplainFormat;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_cli::catalog::DynamicObjectStoreCatalog;
use datafusion_cli::functions::{
    ListFilesCacheFunc, MetadataCacheFunc, ParquetMetadataFunc, StatisticsCacheFunc,
};
use datafusion_cli::object_storage::StdinCarriesCommands;
use datafusion_cli::object_storage::instrumented::InstrumentedObjectStoreRegistry;
use datafusion_cli::print_format::PrintFormat;
use datafusion_cli::print_options::{MaxRows, PrintOptions};
use tokio::io::AsyncWriteExt;

/// The child's statements (separated by [`SEPARATOR`]); absent in a REPL run.
const COMMANDS_VAR: &str = "DATAFUSION_BEDROCK_TEST_STOCK_COMMANDS";
/// The child's output format (`--format`).
const FORMAT_VAR: &str = "DATAFUSION_BEDROCK_TEST_STOCK_FORMAT";
/// Set (to anything) to make the ignored test act as the stock shell.
const CHILD_VAR: &str = "DATAFUSION_BEDROCK_TEST_STOCK_CHILD";
const SEPARATOR: char = '\u{1e}';
const START: &str = "<<<stock datafusion-cli output>>>";

#[derive(Debug, PartialEq)]
struct Out {
    stdout: String,
    code: Option<i32>,
}

/// How a run gets its SQL.
enum Input<'a> {
    /// `-c` commands, in order.
    Commands(&'a [&'a str]),
    /// Lines typed at the prompt (piped to stdin).
    Repl(&'a str),
}

fn clean_env(cmd: &mut tokio::process::Command, home: &Path) {
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("AWS_") || name_text.starts_with("DATAFUSION_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .current_dir(home);
}

async fn finish(mut cmd: tokio::process::Command, stdin: Option<&str>) -> (String, Option<i32>) {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the process starts");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(text.as_bytes())
            .await
            .expect("stdin takes the input");
        drop(pipe);
    }
    let out = child.wait_with_output().await.expect("the process ends");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code(),
    )
}

/// `datafusion-bedrock -q --format FORMAT` with the input.
async fn ours(home: &Path, format: &str, input: &Input<'_>) -> Out {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_datafusion-bedrock"));
    clean_env(&mut cmd, home);
    cmd.args(["-q", "--format", format]);
    let stdin = match input {
        Input::Commands(commands) => {
            cmd.arg("-c").args(commands.iter());
            None
        }
        Input::Repl(lines) => Some(*lines),
    };
    let (stdout, code) = finish(cmd, stdin).await;
    Out { stdout, code }
}

/// A stock `datafusion-cli -q --format FORMAT` session with the same input.
async fn stock(home: &Path, format: &str, input: &Input<'_>) -> Out {
    let mut cmd = tokio::process::Command::new(std::env::current_exe().expect("the test binary"));
    clean_env(&mut cmd, home);
    cmd.args([
        "--exact",
        "cli_datafusion::stock_datafusion_cli_child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_VAR, "1")
    .env(FORMAT_VAR, format);
    let stdin = match input {
        Input::Commands(commands) => {
            cmd.env(COMMANDS_VAR, commands.join(&SEPARATOR.to_string()));
            None
        }
        Input::Repl(lines) => Some(*lines),
    };
    let (stdout, code) = finish(cmd, stdin).await;
    let stdout = stdout.split_once(&format!("{START}\n")).map_or_else(
        || panic!("the stock shell printed no output marker: {stdout}"),
        |(_, after)| after.to_string(),
    );
    Out { stdout, code }
}

/// Stock `datafusion-cli`, as its `main` builds and runs it, when [`CHILD_VAR`] is set; it
/// ends the process with `datafusion-cli`'s exit code, so nothing of the test harness follows
/// its output. Without the variable it has nothing to do.
#[tokio::test]
#[ignore = "a child process of the comparisons in this module: stock datafusion-cli"]
async fn stock_datafusion_cli_child() {
    if std::env::var_os(CHILD_VAR).is_none() {
        return;
    }
    let commands: Option<Vec<String>> = std::env::var(COMMANDS_VAR)
        .ok()
        .map(|c| c.split(SEPARATOR).map(str::to_string).collect());
    let format: PrintFormat = std::env::var(FORMAT_VAR)
        .ok()
        .and_then(|f| clap::ValueEnum::from_str(&f, true).ok())
        .expect("a print format");
    let mut options = ConfigOptions::from_env().expect("settings");
    options.explain.format = ExplainFormat::Tree;
    options.format.null = String::from("NULL");
    let mut config = SessionConfig::from(options).with_information_schema(true);
    if commands.is_none() {
        config = config.with_extension(Arc::new(StdinCarriesCommands));
    }
    let registry = Arc::new(InstrumentedObjectStoreRegistry::new());
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::clone(&registry) as _)
        .build_arc()
        .expect("runtime");
    let ctx = SessionContext::new_with_config_rt(config, runtime).enable_url_table();
    ctx.refresh_catalogs().await.expect("catalogs");
    ctx.register_catalog_list(Arc::new(DynamicObjectStoreCatalog::new(
        Arc::clone(ctx.state().catalog_list()),
        ctx.state_weak_ref(),
    )));
    let caches = Arc::clone(&ctx.task_ctx().runtime_env().cache_manager);
    ctx.register_udtf("parquet_metadata", Arc::new(ParquetMetadataFunc {}));
    ctx.register_udtf(
        "metadata_cache",
        Arc::new(MetadataCacheFunc::new(Arc::clone(&caches))),
    );
    ctx.register_udtf(
        "statistics_cache",
        Arc::new(StatisticsCacheFunc::new(Arc::clone(&caches))),
    );
    ctx.register_udtf(
        "list_files_cache",
        Arc::new(ListFilesCacheFunc::new(caches)),
    );
    let mut print = PrintOptions {
        format,
        quiet: true,
        maxrows: MaxRows::Limited(40),
        color: false,
        instrumented_registry: registry,
    };
    println!("{START}");
    let result = match commands {
        Some(commands) => datafusion_cli::exec::exec_from_commands(&ctx, commands, &print).await,
        None => datafusion_cli::exec::exec_from_repl(&ctx, &mut print)
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e))),
    };
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            println!("Error: {e}");
            1
        }
    };
    std::io::Write::flush(&mut std::io::stdout()).expect("stdout flushes");
    std::process::exit(code);
}

fn manifest(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A home directory with `q.csv` and `data.json`.
fn home_with_files() -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        home.path().join("q.csv"),
        "n,question\n1,What is the capital of Sweden?\n2,Why is the sky blue?\n",
    )
    .expect("q.csv");
    std::fs::write(
        home.path().join("data.json"),
        "{\"color\": \"red\", \"hex\": \"#f00\"}\n{\"color\": \"green\", \"hex\": \"#0f0\"}\n",
    )
    .expect("data.json");
    std::fs::create_dir(home.path().join("config")).expect("config dir");
    home
}

/// Runs the same input through both shells (each in a fresh home) and asserts the same
/// stdout and exit code; returns our output for further checks.
async fn same_as_stock(format: &str, input: Input<'_>) -> Out {
    let (ours_home, stock_home) = (home_with_files(), home_with_files());
    let ours = ours(ours_home.path(), format, &input).await;
    // Paths print as the home they ran in: compare with the stock run's home named the same.
    let stock = stock(stock_home.path(), format, &input).await;
    let stock_stdout = stock.stdout.replace(
        &stock_home.path().display().to_string(),
        &ours_home.path().display().to_string(),
    );
    assert_eq!(
        (ours.stdout.as_str(), ours.code),
        (stock_stdout.as_str(), stock.code),
        "datafusion-bedrock (left) and stock datafusion-cli (right) differ"
    );
    ours
}

#[tokio::test]
async fn stock_statements_print_what_stock_datafusion_cli_prints() {
    // (format, statements): every statement of a list runs in one session, in order.
    let cases: &[(&str, &[&str])] = &[
        ("table", &["SELECT * FROM 'q.csv'"]),
        (
            "table",
            &[
                "CREATE EXTERNAL TABLE q STORED AS CSV LOCATION 'q.csv' OPTIONS ('format.has_header' 'true')",
                "SELECT question FROM q ORDER BY n DESC",
            ],
        ),
        ("table", &["SELECT * FROM no_such_table"]),
        ("table", &["SELEC 1"]),
        (
            "table",
            &[
                "COPY (SELECT * FROM 'q.csv') TO 'q.parquet' STORED AS PARQUET",
                "SELECT count(*) AS rows FROM 'q.parquet'",
                "SELECT path_in_schema, num_values FROM parquet_metadata('q.parquet')",
            ],
        ),
        (
            "table",
            &[
                "COPY (VALUES (1, 'a'), (2, 'b')) TO 'out.csv' STORED AS CSV",
                "SELECT * FROM 'out.csv'",
            ],
        ),
        ("table", &["SELECT * FROM 'data.json' ORDER BY color"]),
        ("table", &["SELECT * FROM generate_series(1, 3)"]),
        (
            "table",
            &[
                "SET datafusion.execution.batch_size = 100",
                "SHOW datafusion.execution.batch_size",
            ],
        ),
        (
            "table",
            &[
                "CREATE TABLE t AS VALUES (1, 'x'), (2, 'y')",
                "DESCRIBE t",
                "SELECT * FROM t",
                "DROP TABLE t",
                "SELECT * FROM t",
            ],
        ),
        (
            "table",
            &["CREATE VIEW v AS SELECT 1 AS one", "SELECT * FROM v"],
        ),
        ("table", &["EXPLAIN SELECT count(*) FROM 'q.csv'"]),
        ("table", &["SELECT 1 / 0"]),
        (
            "table",
            &["CREATE EXTERNAL TABLE bad STORED AS CSV LOCATION 'missing.csv'"],
        ),
        (
            "table",
            &["SELECT * FROM information_schema.tables WHERE table_schema = 'public'"],
        ),
        (
            "table",
            &[
                "SET datafusion.sql_parser.dialect = 'mysql'",
                "SELECT interval '1' + '1' month AS m",
            ],
        ),
        ("csv", &["SELECT * FROM 'q.csv'"]),
        ("json", &["SELECT * FROM 'q.csv'"]),
        ("nd-json", &["SELECT n FROM 'q.csv'"]),
        ("tsv", &["SELECT * FROM 'data.json'"]),
    ];
    for (format, commands) in cases {
        let out = same_as_stock(format, Input::Commands(commands)).await;
        assert!(!out.stdout.is_empty(), "{commands:?} printed nothing");
    }
}

#[tokio::test]
async fn meta_commands_at_the_prompt_print_what_stock_datafusion_cli_prints() {
    let typed = "CREATE TABLE t AS VALUES (1, 'x');\n\\d\n\\d t\n\\pset format csv\nSELECT * FROM t;\n\\q\n";
    let out = same_as_stock("table", Input::Repl(typed)).await;
    assert!(out.stdout.contains("| t "), "{}", out.stdout);
}

/// Our own text, with the emulator's notice and the home's path normalised.
async fn shell(home: &Path, cwd: &Path, args: &[&str]) -> (String, String, Option<i32>) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_datafusion-bedrock"));
    clean_env(&mut cmd, home);
    cmd.current_dir(cwd).args(args).stdin(Stdio::null());
    let out = cmd.output().await.expect("the binary runs");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[tokio::test]
async fn what_a_new_user_types_first_works_with_and_without_the_emulator() {
    let home = home_with_files();
    let csv = home.path().join("q.csv").display().to_string();
    let create = format!(
        "CREATE EXTERNAL TABLE q STORED AS CSV LOCATION '{csv}' OPTIONS ('format.has_header' 'true');"
    );
    let root = manifest("");
    for emulator in [false, true] {
        let mut args = vec!["-q"];
        if emulator {
            args.push("--emulator");
        }
        let run = |extra: Vec<&str>| {
            let mut all = args.clone();
            all.push("-c");
            all.extend(extra);
            all.iter().map(|s| (*s).to_string()).collect::<Vec<_>>()
        };

        let args_1 = run(vec![create.as_str(), "SELECT count(*) AS n FROM q"]);
        let (stdout, _, code) = shell(
            home.path(),
            &root,
            &args_1.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(
            stdout, "+---+\n| n |\n+---+\n| 2 |\n+---+\n",
            "--emulator {emulator}"
        );
        assert_eq!(code, Some(0));

        let args_2 = run(vec!["SELECT * FROM 'examples/files/related_questions.csv'"]);
        let (stdout, _, code) = shell(
            home.path(),
            &root,
            &args_2.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(
            stdout,
            "+-------------------------------------------+\n\
             | question                                  |\n\
             +-------------------------------------------+\n\
             | What is the capital of Sweden?            |\n\
             | What are some cool places to visit there? |\n\
             +-------------------------------------------+\n",
            "--emulator {emulator}"
        );
        assert_eq!(code, Some(0));

        let args_3 = run(vec!["SELECT * FROM bedrock_usage()"]);
        let (stdout, _, code) = shell(
            home.path(),
            &root,
            &args_3.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(
            stdout,
            "+--------+-------+----------+---------+-----------+----------+------------+--------------+--------------+---------------+-------------------+--------------------+------------+---------------+------------+---------------+--------------+--------------------+---------------------+---------------------+\n\
             | engine | model | requests | retries | throttles | failures | cache_hits | deduplicated | input_tokens | output_tokens | cache_read_tokens | cache_write_tokens | latency_ms | estimated_usd | batch_jobs | batch_records | batch_errors | batch_input_tokens | batch_output_tokens | batch_estimated_usd |\n\
             +--------+-------+----------+---------+-----------+----------+------------+--------------+--------------+---------------+-------------------+--------------------+------------+---------------+------------+---------------+--------------+--------------------+---------------------+---------------------+\n\
             +--------+-------+----------+---------+-----------+----------+------------+--------------+--------------+---------------+-------------------+--------------------+------------+---------------+------------+---------------+--------------+--------------------+---------------------+---------------------+\n",
            "--emulator {emulator}"
        );
        assert_eq!(code, Some(0));

        let args_4 = run(vec!["SELECT * FROM no_such_table"]);
        let (stdout, _, code) = shell(
            home.path(),
            &root,
            &args_4.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(
            stdout,
            "Error: Error during planning: table 'datafusion.public.no_such_table' not found\n",
            "--emulator {emulator}"
        );
        assert_eq!(code, Some(1));
    }
}

#[tokio::test]
async fn show_all_lists_datafusions_settings_and_the_extensions() {
    let input = Input::Commands(&["SHOW ALL"]);
    let (ours_home, stock_home) = (home_with_files(), home_with_files());
    let ours = ours(ours_home.path(), "csv", &input).await;
    let stock = stock(stock_home.path(), "csv", &input).await;
    let ours_lines: Vec<&str> = ours.stdout.lines().collect();
    let extra: Vec<&str> = ours_lines
        .iter()
        .copied()
        .filter(|l| !stock.stdout.lines().any(|s| s == *l))
        .collect();
    assert_eq!(
        extra,
        [
            "bedrock.batch_min_rows,1000",
            "bedrock.count_tokens,false",
            "bedrock.execution,on_demand",
            "bedrock.max_cost_usd,",
            "bedrock.max_requests,",
            "bedrock.reorder_requests,true",
            "bedrock.semantic_join_candidates,10",
            "bedrock.semantic_join_embedding_model,",
        ],
        "only the extension's settings are added, under their whole names"
    );
    assert_eq!(ours_lines.len(), stock.stdout.lines().count() + 8);
}

#[tokio::test]
async fn the_extensions_settings_are_set_shown_and_reset_like_datafusions() {
    let home = home_with_files();
    let (stdout, stderr, code) = shell(
        home.path(),
        home.path(),
        &[
            "-q",
            "-c",
            "SET bedrock.max_requests = 5",
            "SHOW bedrock.max_requests",
            "RESET bedrock.max_requests",
            "SHOW bedrock.max_requests",
            "SET bedrock.max_requests = -3",
        ],
    )
    .await;
    assert_eq!(
        stdout,
        "+----------------------+-------+\n\
         | name                 | value |\n\
         +----------------------+-------+\n\
         | bedrock.max_requests | 5     |\n\
         +----------------------+-------+\n\
         +----------------------+-------+\n\
         | name                 | value |\n\
         +----------------------+-------+\n\
         | bedrock.max_requests | NULL  |\n\
         +----------------------+-------+\n\
         Error: Invalid or Unsupported Configuration: bedrock.max_requests must be a whole number of requests, not '-3': e.g. SET bedrock.max_requests = 10, or RESET bedrock.max_requests for no limit\n"
    );
    assert_eq!(stderr, "");
    assert_eq!(code, Some(1));
}

#[tokio::test]
async fn a_malformed_output_schema_is_an_error_with_its_position_not_a_crash() {
    // Regression: 'ǰ' before a type once crashed the shell (exit code 101) on a byte slice.
    let home = home_with_files();
    let (stdout, stderr, code) = shell(
        home.path(),
        home.path(),
        &[
            "-q",
            "--emulator",
            "-c",
            "CREATE ML_ENGINE e FROM bedrock USING api_key = 'k'",
            "CREATE MODEL m PREDICT a USING engine = 'e', prompt_template = '{{x}}', output_schema = 'x ǰ<STRING>'",
        ],
    )
    .await;
    assert_eq!(
        stdout,
        "+------+---------+---------+\n\
         | name | handler | status  |\n\
         +------+---------+---------+\n\
         | e    | bedrock | created |\n\
         +------+---------+---------+\n\
         Error: Error during planning: Parameter 'output_schema' has an unknown type 'ǰ<…>' at character 3: write e.g. output_schema = 'name STRING, age INT, tags LIST<STRING>' or a JSON Schema object\n"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(code, Some(1));
}

/// A file server on loopback for `http://` tables: HEAD and GET (with `Range`) of one file,
/// as object stores ask for it. Serves until the returned handle is dropped.
async fn serve_file(body: &'static [u8]) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).to_lowercase();
                let range = text
                    .lines()
                    .find_map(|l| l.strip_prefix("range: bytes="))
                    .and_then(|r| r.trim().split_once('-'))
                    .and_then(|(a, b)| {
                        let start: usize = a.parse().ok()?;
                        let end: usize = b.parse::<usize>().map_or(body.len() - 1, |e| e);
                        Some((start, end.min(body.len() - 1)))
                    });
                let (status, part) = match range {
                    Some((start, end)) if start <= end => (
                        format!(
                            "206 Partial Content\r\nContent-Range: bytes {start}-{end}/{}",
                            body.len()
                        ),
                        &body[start..=end],
                    ),
                    _ => ("200 OK".to_string(), body),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nLast-Modified: Tue, 01 Dec 2026 00:00:00 GMT\r\nETag: \"q\"\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
                    part.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                if !text.starts_with("head ") {
                    let _ = socket.write_all(part).await;
                }
            });
        }
    });
    (url, task)
}

#[tokio::test]
async fn tables_over_http_register_their_object_store_on_the_fly_as_in_stock_datafusion_cli() {
    let (url, server) = serve_file(b"n,question\n1,What is the capital of Sweden?\n").await;
    let select = format!("SELECT * FROM '{url}/q.csv'");
    let create = format!(
        "CREATE EXTERNAL TABLE remote STORED AS CSV LOCATION '{url}/q.csv' OPTIONS ('format.has_header' 'true')"
    );
    let commands = [
        select.as_str(),
        create.as_str(),
        "SELECT question FROM remote",
    ];
    let out = same_as_stock("table", Input::Commands(&commands)).await;
    assert_eq!(
        out.stdout,
        "+---+--------------------------------+\n\
         | n | question                       |\n\
         +---+--------------------------------+\n\
         | 1 | What is the capital of Sweden? |\n\
         +---+--------------------------------+\n\
         +--------------------------------+\n\
         | question                       |\n\
         +--------------------------------+\n\
         | What is the capital of Sweden? |\n\
         +--------------------------------+\n"
    );
    server.abort();
}
