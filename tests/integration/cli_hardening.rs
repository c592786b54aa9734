//! Hostile and unlucky input through the `datafusion-bedrock` binary, where users met it:
//! every row printed in non-table formats, secrets kept out of the history and of `SHOW`,
//! deep nesting refused, two shells sharing one catalog file, all with no AWS credentials and
//! empty home, config and state directories.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

struct Out {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

fn command(home: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_datafusion-bedrock"));
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("AWS_") || text.starts_with("DATAFUSION_") || text.starts_with("XDG_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"))
        .current_dir(home)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

async fn run(home: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut cmd = command(home, args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("the binary starts");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("piped");
        pipe.write_all(text.as_bytes()).await.expect("written");
    }
    let out = child.wait_with_output().await.expect("the binary ends");
    Out {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}

const ENGINE: &str = "CREATE ML_ENGINE e FROM bedrock USING api_key = 'k'";
/// A model whose prompt is the row's number, and a query of 2,000 rows over it.
const NUMBERED: &str =
    "CREATE MODEL m PREDICT answer USING engine = 'e', prompt_template = 'n{{n}}'";
const TWO_THOUSAND: &str = "SELECT m.answer FROM (SELECT value AS n FROM range(2000)) AS d JOIN m";

#[tokio::test]
async fn csv_and_json_print_every_row_whatever_maxrows_says() {
    // Regression: with `-b 100`, datafusion-cli's exec kept only the batches up to --maxrows
    // (40) for every format: 200 of 2,000 rows printed, exit 0, all 2,000 answered and paid.
    let home = tempfile::tempdir().expect("temp dir");
    for format in ["csv", "json", "nd-json", "tsv"] {
        let out = run(
            home.path(),
            &[
                "-q",
                "--emulator",
                "-b",
                "100",
                "--format",
                format,
                "-c",
                ENGINE,
                NUMBERED,
                TWO_THOUSAND,
            ],
            None,
        )
        .await;
        assert_eq!(out.code, Some(0), "{format}: {}", out.stderr);
        // Every row's own answer, once: the numbers after "): n" are 0..2000 exactly.
        let mut numbers: Vec<u32> = out
            .stdout
            .split("(messages: 1, blocks: 1): n")
            .skip(1)
            .map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().expect("a row number")
            })
            .collect();
        numbers.sort_unstable();
        assert_eq!(
            numbers,
            (0..2000).collect::<Vec<u32>>(),
            "{format} printed {} answers",
            numbers.len()
        );
    }
    // The table format still shows --maxrows rows and says how many there were.
    let out = run(
        home.path(),
        &[
            "--emulator",
            "-b",
            "100",
            "-c",
            ENGINE,
            NUMBERED,
            TWO_THOUSAND,
        ],
        None,
    )
    .await;
    assert!(
        out.stdout
            .contains("2000 row(s) fetched. (First 40 displayed. Use --maxrows to adjust)"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn the_history_is_kept_out_of_the_working_directory_and_without_secrets() {
    // Regression: the prompt wrote every statement, secret keys included, to ./.history.
    let home = tempfile::tempdir().expect("temp dir");
    let typed = "CREATE ML_ENGINE e FROM bedrock USING aws_access_key_id = 'AKIDHISTORY', aws_secret_access_key = 'history-secret-value', endpoint_url = 'http://user:url-password@127.0.0.1:9', verify_credentials = false;\nSHOW ML_ENGINES;\n";
    let out = run(home.path(), &["-q"], Some(typed)).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // A URL's user-info is refused (Bedrock takes AWS credentials), and never shown.
    assert_eq!(
        out.stderr,
        "Error during planning: Parameter 'endpoint_url' = 'http://<redacted>@127.0.0.1:9' holds a user name or password: Bedrock endpoints take AWS credentials (aws_access_key_id …, profile_name or api_key), so remove the part before '@'\n"
    );
    assert_eq!(
        out.stdout,
        "+------+---------+--------+--------------+-------------+-----------------+---------+\n\
         | name | handler | region | endpoint_url | credentials | max_concurrency | default |\n\
         +------+---------+--------+--------------+-------------+-----------------+---------+\n\
         +------+---------+--------+--------------+-------------+-----------------+---------+\n\
         \\q\n"
    );
    assert!(!home.path().join(".history").exists());
    let history = home.path().join("state/datafusion-bedrock/history");
    let saved = std::fs::read_to_string(&history).expect("the history is saved");
    assert_eq!(
        saved,
        "#V2\nCREATE ML_ENGINE e FROM bedrock USING aws_access_key_id = 'AKIDHISTORY', aws_secret_access_key = '<redacted>', endpoint_url = 'http://<redacted>@127.0.0.1:9', verify_credentials = false;\nSHOW ML_ENGINES;\n"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(&history), 0o600);
        assert_eq!(mode(history.parent().expect("a directory")), 0o700);
    }
}

#[tokio::test]
async fn deep_nesting_is_a_clear_error_not_an_abort() {
    // Regression: 10,000 nested LISTs overflowed the stack (exit 134).
    let home = tempfile::tempdir().expect("temp dir");
    let schema = format!("a {}STRING{}", "LIST<".repeat(10_000), ">".repeat(10_000));
    let create = format!(
        "CREATE MODEL m PREDICT p USING engine = 'e', prompt_template = '{{{{x}}}}', output_schema = '{schema}'"
    );
    let stop = format!(
        "CREATE MODEL m2 PREDICT p USING engine = 'e', prompt_template = '{{{{x}}}}', stop = {}'x'{}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    // Too long for a command-line argument: a file, as a user would run it.
    let script = home.path().join("deep.sql");
    std::fs::write(&script, format!("{ENGINE};\n{create};\n{stop};\n")).expect("written");
    let script = script.display().to_string();
    let out = run(home.path(), &["-q", "--emulator", "-f", &script], None).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let without_notice: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.starts_with("Emulated Bedrock at "))
        .collect();
    assert_eq!(
        without_notice,
        [
            "Error during planning: Parameter 'output_schema' nests types deeper than 32 levels at character 163: write e.g. output_schema = 'name STRING, age INT, tags LIST<STRING>' or a JSON Schema object",
            "Error during planning: The value of 'stop' nests lists deeper than 32 levels, at line 1, column 113",
        ]
    );
}

#[tokio::test]
async fn two_shells_sharing_one_catalog_file_lose_no_entry() {
    // Regression: each shell rewrote the whole file from memory, so an engine made in one
    // disappeared when the other wrote. Bounded: 2 processes × 10 engines each.
    let home = tempfile::tempdir().expect("temp dir");
    let catalog = home.path().join("shared").join("catalog.json");
    let catalog = catalog.display().to_string();
    let statements = |shell: &str| -> Vec<String> {
        (0..10)
            .map(|i| {
                format!(
                    "CREATE ML_ENGINE {shell}_{i} FROM bedrock USING api_key = 'k', endpoint_url = 'http://127.0.0.1:9', verify_credentials = false"
                )
            })
            .collect()
    };
    let (a, b) = (statements("a"), statements("b"));
    let args = |list: &[String]| {
        let mut args = vec![
            "-q".to_string(),
            "--catalog".into(),
            catalog.clone(),
            "-c".into(),
        ];
        args.extend(list.iter().cloned());
        args
    };
    let (args_a, args_b) = (args(&a), args(&b));
    let ra: Vec<&str> = args_a.iter().map(String::as_str).collect();
    let rb: Vec<&str> = args_b.iter().map(String::as_str).collect();
    let (out_a, out_b) = tokio::join!(run(home.path(), &ra, None), run(home.path(), &rb, None));
    assert_eq!(
        (out_a.code, out_b.code),
        (Some(0), Some(0)),
        "{}{}",
        out_a.stderr,
        out_b.stderr
    );
    let shown = run(
        home.path(),
        &[
            "-q",
            "--catalog",
            &catalog,
            "--format",
            "csv",
            "-c",
            "SELECT 1 AS ready",
            "SHOW ML_ENGINES",
        ],
        None,
    )
    .await;
    let mut names: Vec<&str> = shown
        .stdout
        .lines()
        .filter_map(|l| l.split(',').next())
        .filter(|n| n.starts_with("a_") || n.starts_with("b_"))
        .collect();
    names.sort_unstable();
    let mut expected: Vec<String> = (0..10)
        .flat_map(|i| [format!("a_{i}"), format!("b_{i}")])
        .collect();
    expected.sort_unstable();
    assert_eq!(names, expected, "{}", shown.stderr);
}

/// A loopback port that accepts connections and never answers; serves until dropped.
async fn silent_endpoint() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    let task = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    (url, task)
}

#[tokio::test]
async fn a_silent_endpoint_costs_connect_timeout_and_is_blamed_at_create_and_at_start_up() {
    // Regression: CREATE MODEL waited request_timeout (120 s) and blamed model_id; a saved
    // model on such an endpoint delayed every shell start by that much.
    let (url, server) = silent_endpoint().await;
    let home = tempfile::tempdir().expect("temp dir");
    let catalog = home.path().join("catalog.json").display().to_string();
    let engine = format!(
        "CREATE ML_ENGINE silent FROM bedrock USING api_key = 'k', endpoint_url = '{url}', verify_credentials = false, connect_timeout = 1"
    );
    let model = "CREATE MODEL m PREDICT answer USING engine = 'silent', question_column = 'q'";
    let out = run(
        home.path(),
        &["-q", "--catalog", &catalog, "-c", &engine, model],
        None,
    )
    .await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stdout.ends_with(&format!(
            "Error: Error during planning: Model 'm': ML engine 'silent' got no answer from {url} within 1s while checking model_id 'amazon.titan-text-premier-v1:0' (GetFoundationModel): check the engine's endpoint_url, region_name and network access, or raise its connect_timeout\n"
        )),
        "{}",
        out.stdout
    );
    // A model saved while the endpoint answered, restored while it is silent: start-up waits
    // the engine's connect_timeout, says what it skipped, and the shell runs.
    let saved = format!(
        r#"{{"version":1,"engines":[{{"name":["silent"],"handler":"bedrock","params":[["api_key","k"],["endpoint_url","{url}"],["verify_credentials",false],["connect_timeout",1.0]]}}],"models":[{{"name":["m"],"target":"answer","params":[["engine","silent"],["question_column","q"]]}}]}}"#
    );
    std::fs::write(&catalog, saved).expect("the catalog is written");
    let out = run(
        home.path(),
        &["-q", "--catalog", &catalog, "-c", "SELECT 1 AS up"],
        None,
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "+----+\n| up |\n+----+\n| 1  |\n+----+\n");
    assert_eq!(
        out.stderr,
        format!(
            "Warning: model 'm' of {catalog} was not restored: Error during planning: Model 'm': ML engine 'silent' got no answer from {url} within 1s while checking model_id 'amazon.titan-text-premier-v1:0' (GetFoundationModel): check the engine's endpoint_url, region_name and network access, or raise its connect_timeout\n"
        )
    );
    server.abort();
}

#[tokio::test]
async fn structured_answers_print_in_csv_and_tsv_as_json_text() {
    // Regression: Arrow's CSV writer refused the struct column after the model was paid for.
    let home = tempfile::tempdir().expect("temp dir");
    let model = "CREATE MODEL m PREDICT answer USING engine = 'e', question_column = 'q', output_schema = 'name STRING, tags LIST<STRING>'";
    for (format, separator) in [("csv", ","), ("tsv", "\t")] {
        let out = run(
            home.path(),
            &[
                "-q",
                "--emulator",
                "--format",
                format,
                "-c",
                ENGINE,
                model,
                "SELECT q, answer, [1, 2] AS list FROM m WHERE q = 'Ada'",
            ],
            None,
        )
        .await;
        assert_eq!(out.code, Some(0), "{format}: {}", out.stdout);
        let last_two: Vec<&str> = out.stdout.lines().rev().take(2).collect();
        // Quoted as the CSV writer quotes any text holding quotes, with either separator.
        let expected_row = format!(
            r#"Ada{separator}"{{""name"":""Ada"",""tags"":[""Ada"",""Ada""]}}"{separator}{}"#,
            if format == "csv" {
                "\"[1,2]\""
            } else {
                "[1,2]"
            }
        );
        assert_eq!(
            last_two,
            [expected_row, format!("q{separator}answer{separator}list")],
            "{format}"
        );
    }
}

#[tokio::test]
async fn a_malformed_file_is_skipped_with_a_warning_and_names_keep_their_spaces() {
    // Regression: one unreadable file in --files stopped every command, and a file named with
    // spaces or capitals landed in the wrong schema.
    let home = tempfile::tempdir().expect("temp dir");
    let files = home.path().join("files");
    std::fs::create_dir(&files).expect("files dir");
    std::fs::write(files.join("My Questions.csv"), "question\nWhy?\n").expect("csv");
    std::fs::write(files.join("broken.parquet"), "not parquet at all").expect("parquet");
    let dir = files.display().to_string();
    let out = run(
        home.path(),
        &[
            "-q",
            "--files",
            &dir,
            "-c",
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = 'files'",
            "SELECT * FROM files.\"my questions\"",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "+--------------+--------------+\n\
         | table_schema | table_name   |\n\
         +--------------+--------------+\n\
         | files        | my questions |\n\
         +--------------+--------------+\n\
         +----------+\n\
         | question |\n\
         +----------+\n\
         | Why?     |\n\
         +----------+\n"
    );
    let broken = files.join("broken.parquet").display().to_string();
    assert!(
        out.stderr.starts_with(&format!(
            "Warning: {broken} is not served in the files schema: "
        )),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[tokio::test]
async fn a_non_number_gets_a_suggestion_within_the_parameters_range() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = run(
        home.path(),
        &[
            "-q",
            "--emulator",
            "-c",
            ENGINE,
            "CREATE MODEL m PREDICT x USING engine = 'e', question_column = 'q', temperature = 'hot'",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stdout.ends_with(
            "Error: Error during planning: Parameter 'temperature' must be a number, got 'hot': write temperature = 0.5\n"
        ),
        "{}",
        out.stdout
    );
}
