//! The `datafusion-bedrock` binary, spawned as users run it: `-c` and `-f`, every `--format`,
//! errors and exit codes, the catalog file, `--files`, and the `slt` subcommand. Every run has
//! its own home and config directory, and no AWS settings of the machine.

use std::path::{Path, PathBuf};

use datafusion_bedrock::emulator::{Emulator, EmulatorConfig};

const TITAN: &str = "amazon.titan-text-premier-v1:0";
const BANNER_END: &str = ": engines without endpoint_url get emulated answers, batch jobs use its S3 bucket 'bedrock-batch', nothing reaches AWS.\n";

struct Run {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

pub(crate) fn manifest(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The binary with `args`, run with its own home and config directory and no AWS settings.
pub(crate) fn command(home: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_datafusion-bedrock"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .current_dir(home)
        .args(args)
        .stdin(std::process::Stdio::null());
    cmd
}

async fn run(home: &Path, args: &[&str]) -> Run {
    let out = command(home, args).output().await.expect("the binary runs");
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}

/// The emulator's notice, with its port replaced by `PORT`.
fn without_port(stderr: &str) -> String {
    let Some(start) = stderr.find("127.0.0.1:").map(|i| i + "127.0.0.1:".len()) else {
        return stderr.to_string();
    };
    let digits = stderr[start..]
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(stderr.len() - start);
    format!("{}PORT{}", &stderr[..start], &stderr[start + digits..])
}

fn banner() -> String {
    format!("Emulated Bedrock at http://127.0.0.1:PORT{BANNER_END}")
}

fn answer(prompt: &str) -> String {
    format!("Emulated {TITAN} (messages: 1, blocks: 1): {prompt}")
}

fn files_dir() -> String {
    manifest("examples/files").display().to_string()
}

const ENGINE: &str = "CREATE ML_ENGINE e FROM bedrock USING api_key = 'k'";
const MODEL: &str =
    "CREATE MODEL m PREDICT answer USING engine = 'e', question_column = 'question'";

#[tokio::test]
async fn quickstart_file_runs_the_seed_flow() {
    let home = tempfile::tempdir().expect("temp dir");
    let quickstart = manifest("examples/quickstart.sql").display().to_string();
    let files = files_dir();
    let out = run(
        home.path(),
        &["-q", "--emulator", "--files", &files, "-f", &quickstart],
    )
    .await;
    let expected = std::fs::read_to_string(manifest("tests/integration/snapshots/quickstart.out"))
        .expect("snapshot");
    assert_eq!(out.stdout, expected);
    // Nothing but the notice on a non-terminal stderr: no progress line.
    assert_eq!(without_port(&out.stderr), banner());
    assert_eq!(out.code, Some(0));
}

#[tokio::test]
async fn commands_run_the_seed_flow_and_print_like_datafusion_cli() {
    let home = tempfile::tempdir().expect("temp dir");
    let files = files_dir();
    let out = run(
        home.path(),
        &[
            "--emulator",
            "--files",
            &files,
            "--format",
            "csv",
            "-c",
            "CREATE ML_ENGINE bedrock_engine FROM bedrock USING aws_access_key_id = 'AQAXEQK89OX07YS34OP', aws_secret_access_key = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', aws_session_token = 'FwoGZXIvYXdzEJr...', region_name = 'us-east-1'; \
             CREATE MODEL bedrock_default_model PREDICT answer USING engine = 'bedrock_engine', prompt_template = 'Answer the users input in a helpful way: {{question}}'",
            "SELECT * FROM bedrock_default_model WHERE question = 'What is the capital of Sweden?'",
            "SELECT * FROM files.unrelated_questions AS d JOIN bedrock_default_model AS m",
        ],
    )
    .await;
    let stdout = out
        .stdout
        .lines()
        .map(|l| {
            if l.starts_with("Elapsed ") {
                "Elapsed …"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let helpful = |q: &str| answer(&format!("Answer the users input in a helpful way: {q}"));
    let expected = format!(
        "datafusion-bedrock v{} (DataFusion CLI v55.2.0)\n\
         name,handler,status\n\
         bedrock_engine,bedrock,created\n\
         1 row(s) fetched. \nElapsed …\n\n\
         name,engine,model_id,mode,target,inputs,status\n\
         bedrock_default_model,bedrock_engine,{TITAN},default,answer,question,ready\n\
         1 row(s) fetched. \nElapsed …\n\n\
         question,answer\n\
         What is the capital of Sweden?,\"{}\"\n\
         1 row(s) fetched. \nElapsed …\n\n\
         question,answer\n\
         What is the capital of Sweden?,\"{}\"\n\
         What is the second planet in the solar system?,\"{}\"\n\
         2 row(s) fetched. \nElapsed …\n\n",
        env!("CARGO_PKG_VERSION"),
        helpful("What is the capital of Sweden?"),
        helpful("What is the capital of Sweden?"),
        helpful("What is the second planet in the solar system?"),
    );
    assert_eq!(format!("{stdout}\n"), expected);
    assert_eq!(out.code, Some(0));
}

#[tokio::test]
async fn every_format_prints_model_answers() {
    let home = tempfile::tempdir().expect("temp dir");
    let files = files_dir();
    let (a1, a2) = (
        answer("What is the capital of Sweden?"),
        answer("What is the second planet in the solar system?"),
    );
    let (q1, q2) = (
        "What is the capital of Sweden?",
        "What is the second planet in the solar system?",
    );
    let table = format!(
        "+------------------------------------------------+{dashes}+\n\
         | question                                       | answer{pad} |\n\
         +------------------------------------------------+{dashes}+\n\
         | {q1}                 | {a1}{pad1} |\n\
         | {q2} | {a2} |\n\
         +------------------------------------------------+{dashes}+\n",
        dashes = "-".repeat(a2.len() + 2),
        pad = " ".repeat(a2.len() - "answer".len()),
        pad1 = " ".repeat(a2.len() - a1.len()),
    );
    let cases = [
        // The answers hold commas: CSV quotes them.
        (
            "csv",
            format!("question,answer\n{q1},\"{a1}\"\n{q2},\"{a2}\"\n"),
        ),
        ("tsv", format!("question\tanswer\n{q1}\t{a1}\n{q2}\t{a2}\n")),
        (
            "json",
            format!(
                "[{{\"question\":\"{q1}\",\"answer\":\"{a1}\"}},{{\"question\":\"{q2}\",\"answer\":\"{a2}\"}}]\n"
            ),
        ),
        (
            "nd-json",
            format!(
                "{{\"question\":\"{q1}\",\"answer\":\"{a1}\"}}\n{{\"question\":\"{q2}\",\"answer\":\"{a2}\"}}\n"
            ),
        ),
        ("table", table.clone()),
        ("automatic", table),
    ];
    for (format, expected) in cases {
        let out = run(
            home.path(),
            &[
                "-q",
                "--emulator",
                "--files",
                &files,
                "--format",
                format,
                "-c",
                &format!("{ENGINE}; {MODEL}"),
                "SELECT * FROM files.unrelated_questions AS d JOIN m",
            ],
        )
        .await;
        let status = match format {
            "csv" => format!(
                "name,engine,model_id,mode,target,inputs,status\nm,e,{TITAN},default,answer,question,ready\n"
            ),
            "tsv" => format!(
                "name\tengine\tmodel_id\tmode\ttarget\tinputs\tstatus\nm\te\t{TITAN}\tdefault\tanswer\tquestion\tready\n"
            ),
            "json" => format!(
                "[{{\"name\":\"m\",\"engine\":\"e\",\"model_id\":\"{TITAN}\",\"mode\":\"default\",\"target\":\"answer\",\"inputs\":\"question\",\"status\":\"ready\"}}]\n"
            ),
            "nd-json" => format!(
                "{{\"name\":\"m\",\"engine\":\"e\",\"model_id\":\"{TITAN}\",\"mode\":\"default\",\"target\":\"answer\",\"inputs\":\"question\",\"status\":\"ready\"}}\n"
            ),
            _ => format!(
                "+------+--------+--------------------------------+---------+--------+----------+--------+\n\
                 | name | engine | model_id                       | mode    | target | inputs   | status |\n\
                 +------+--------+--------------------------------+---------+--------+----------+--------+\n\
                 | m    | e      | {TITAN} | default | answer | question | ready  |\n\
                 +------+--------+--------------------------------+---------+--------+----------+--------+\n"
            ),
        };
        let engine = match format {
            "csv" => "name,handler,status\ne,bedrock,created\n".to_string(),
            "tsv" => "name\thandler\tstatus\ne\tbedrock\tcreated\n".to_string(),
            "json" => "[{\"name\":\"e\",\"handler\":\"bedrock\",\"status\":\"created\"}]\n".into(),
            "nd-json" => "{\"name\":\"e\",\"handler\":\"bedrock\",\"status\":\"created\"}\n".into(),
            _ => "+------+---------+---------+\n\
                  | name | handler | status  |\n\
                  +------+---------+---------+\n\
                  | e    | bedrock | created |\n\
                  +------+---------+---------+\n"
                .to_string(),
        };
        assert_eq!(
            out.stdout,
            format!("{engine}{status}{expected}"),
            "{format}"
        );
        assert_eq!(out.code, Some(0), "{format}");
    }
}

#[tokio::test]
async fn parse_errors_print_as_datafusion_cli_prints_them_and_fail_the_run() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = run(home.path(), &["-q", "-c", "SELEC 1"]).await;
    assert_eq!(
        out.stdout,
        "Error: SQL error: ParserError(\"Expected: an SQL statement, found: SELEC at Line: 1, Column: 1\")\n"
    );
    assert_eq!(out.code, Some(1));

    let out = run(home.path(), &["-q", "-c", "CREATE MODEL m PREDICT;"]).await;
    assert_eq!(
        out.stdout,
        "Error: Error during planning: Expected the column to predict after PREDICT, found the end \
         of the statement: write CREATE MODEL name PREDICT column USING engine = 'engine_name', …\n"
    );
    assert_eq!(out.code, Some(1));
}

#[tokio::test]
async fn a_failing_model_query_fails_the_run() {
    let home = tempfile::tempdir().expect("temp dir");
    let failing = "SELECT * FROM m WHERE question = '[[emulate:ValidationException]] hi'";
    let message = "Execution error: Model 'm' (amazon.titan-text-premier-v1:0) failed for the row \
                   whose prompt is \"[[emulate:ValidationException]] hi\": ValidationException: The \
                   request failed validation";

    // -c stops at the failure.
    let out = run(
        home.path(),
        &[
            "-q",
            "--emulator",
            "--format",
            "csv",
            "-c",
            &format!("{ENGINE}; {MODEL}"),
            failing,
            "SELECT 'not reached' AS x",
        ],
    )
    .await;
    assert_eq!(
        out.stdout,
        format!(
            "name,handler,status\ne,bedrock,created\n\
             name,engine,model_id,mode,target,inputs,status\nm,e,{TITAN},default,answer,question,ready\n\
             Error: {message}\n"
        )
    );
    assert_eq!(out.code, Some(1));

    // -f reports the failure on stderr, runs the rest, and still fails the run.
    let file = home.path().join("job.sql");
    std::fs::write(
        &file,
        format!("{ENGINE};\n{MODEL};\n{failing};\nSELECT 'after' AS x;\n"),
    )
    .expect("written");
    let file = file.display().to_string();
    let out = run(
        home.path(),
        &["-q", "--emulator", "--format", "csv", "-f", &file],
    )
    .await;
    assert_eq!(
        out.stdout,
        format!(
            "name,handler,status\ne,bedrock,created\n\
             name,engine,model_id,mode,target,inputs,status\nm,e,{TITAN},default,answer,question,ready\n\
             x\nafter\n"
        )
    );
    assert_eq!(
        without_port(&out.stderr),
        format!("{}{message}\n", banner())
    );
    assert_eq!(out.code, Some(1));
}

/// Through the binary with no credentials: an AI function's budget, `on_error` and provenance,
/// and EXPLAIN naming the model the call is bound to.
#[tokio::test]
async fn ai_functions_take_budgets_errors_and_provenance_in_the_shell() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = run(
        home.path(),
        &[
            "-q",
            "--emulator",
            "--format",
            "csv",
            "-c",
            "CREATE ML_ENGINE e FROM bedrock USING max_concurrency = 1",
            "SET datafusion.explain.format = 'indent'",
            "SET datafusion.explain.physical_plan_only = true",
            "EXPLAIN SELECT ai_filter('amazon.nova-micro-v1:0', 'yes', '{\"on_error\": \"null\"}') AS ok",
            "SELECT q, ai_complete('amazon.nova-micro-v1:0', q, '{\"on_error\": \"null\", \"provenance\": true}')['meta']['error'] AS error FROM (VALUES ('bad [[emulate:ValidationException]]')) AS t(q)",
            "SET bedrock.max_requests = 1",
            "SELECT ai_complete('amazon.nova-micro-v1:0', 'budget ' || value) FROM range(1, 4)",
        ],
    )
    .await;
    assert_eq!(
        out.stdout,
        "name,handler,status\ne,bedrock,created\n\
         plan_type,plan\n\
         physical_plan,\"ProjectionExec: expr=[__async_fn_0@0 as ok]\n  AiFunctionExec: calls=[ai_filter(amazon.nova-micro-v1:0, yes, {\"\"on_error\"\": \"\"null\"\"}) AS __async_fn_0 [model=amazon.nova-micro-v1:0, model_id=amazon.nova-micro-v1:0, engine=e, api=converse, on_error=null]]\n    PlaceholderRowExec\n\"\n\
         q,error\n\
         bad [[emulate:ValidationException]],ValidationException: The request failed validation\n\
         Error: Execution error: ai_complete: model 'amazon.nova-micro-v1:0' via engine 'e' failed for the row whose prompt is \"budget 2\": BudgetExceeded: the query stopped before a request that would pass bedrock.max_requests = 1; it had sent 1 request(s) costing about $0.000002, received 1 answer(s) and returned 0 row(s). Raise the limit (SET bedrock.max_requests / bedrock.max_cost_usd) or query fewer rows\n"
    );
    assert_eq!(out.code, Some(1));
}

#[tokio::test]
async fn packing_caching_and_token_counts_work_in_the_shell() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = run(
        home.path(),
        &[
            "-q",
            "--emulator",
            "--format",
            "csv",
            "-c",
            "CREATE ML_ENGINE e FROM bedrock USING max_concurrency = 1",
            "SET datafusion.execution.target_partitions = 1",
            "CREATE TABLE t AS SELECT value AS n, 'ticket ' || value || ' about billing' AS q FROM generate_series(1, 40)",
            // 40 rows, 16 to a request: three requests, every row its own label.
            "SELECT count(*) AS rows, count(DISTINCT a) AS labels, min(a) AS label FROM (SELECT ai_classify('amazon.nova-micro-v1:0', q, ['billing', 'shipping'], '{\"rows_per_request\": 16}') AS a FROM t)",
            "SELECT model, requests FROM bedrock_usage()",
            // A long shared head: the first request writes the prompt cache, the others read.
            "SELECT sum(a['meta']['cache_write_tokens']) AS written, sum(a['meta']['cache_read_tokens']) AS read FROM (SELECT ai_complete('amazon.nova-micro-v1:0', repeat('Policy. ', 600) || q, '{\"provenance\": true}') AS a FROM t WHERE n <= 3)",
            "SET bedrock.count_tokens = true",
            "CREATE MODEL m PREDICT answer USING engine = 'e', model_id = 'amazon.nova-micro-v1:0', prompt_template = 'Answer: {{q}}'",
            "SET datafusion.explain.physical_plan_only = true",
            "SET datafusion.explain.format = 'indent'",
            "EXPLAIN SELECT * FROM t AS d JOIN m",
        ],
    )
    .await;
    assert_eq!(
        out.stdout,
        "name,handler,status\ne,bedrock,created\n\
         rows,labels,label\n40,1,billing\n\
         model,requests\namazon.nova-micro-v1:0,3\n\
         written,read\n1202,2404\n\
         name,engine,model_id,mode,target,inputs,status\nm,e,amazon.nova-micro-v1:0,default,answer,q,ready\n\
         plan_type,plan\n\
         physical_plan,\"Model: model=m, model_id=amazon.nova-micro-v1:0, mode=default, max_concurrency=1, inputs=[q@1], estimated_requests<=40, estimated_input_tokens=80..16800, estimated_cost_usd=0.000008..0.003455, counted_input_tokens~320 (CountTokens on a sample of 20 prompts: 160 tokens)\n  DataSourceExec: partitions=1, partition_sizes=[1]\n\"\n",
        "{}",
        out.stderr
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[tokio::test]
async fn the_catalog_file_keeps_engines_and_models_between_runs() {
    let home = tempfile::tempdir().expect("temp dir");
    let catalog = home.path().join("state").join("catalog.json");
    let catalog_arg = catalog.display().to_string();
    let first = run(
        home.path(),
        &[
            "-q",
            "--emulator",
            "--catalog",
            &catalog_arg,
            "--format",
            "csv",
            "-c",
            &format!(
                "{ENGINE}; {MODEL}; CREATE MODEL gone PREDICT x USING engine = 'e', question_column = 'q'; DROP MODEL gone"
            ),
        ],
    )
    .await;
    assert_eq!(
        first.stdout,
        format!(
            "name,handler,status\ne,bedrock,created\n\
             name,engine,model_id,mode,target,inputs,status\nm,e,{TITAN},default,answer,question,ready\n\
             name,engine,model_id,mode,target,inputs,status\ngone,e,{TITAN},default,x,q,ready\n\
             name,status\ngone,dropped\n"
        )
    );
    assert_eq!(first.code, Some(0));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&catalog)
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&catalog).expect("readable")).expect("json");
    assert_eq!(
        stored,
        serde_json::json!({
            "version": 1,
            "engines": [{"name": ["e"], "handler": "bedrock", "params": [["api_key", "k"]]}],
            "models": [{"name": ["m"], "target": "answer",
                        "params": [["engine", "e"], ["question_column", "question"]]}],
        })
    );

    // A second run (a new emulator on a new port) recreates both.
    let second = run(
        home.path(),
        &[
            "-q",
            "--emulator",
            "--catalog",
            &catalog_arg,
            "--format",
            "csv",
            "-c",
            "SHOW MODELS",
            "SELECT * FROM m WHERE question = 'Still here?'",
        ],
    )
    .await;
    assert_eq!(
        second.stdout,
        format!(
            "name,engine,model_id,mode,target,inputs,status\nm,e,{TITAN},default,answer,question,ready\n\
             question,answer\nStill here?,\"{}\"\n",
            answer("Still here?")
        )
    );
    assert_eq!(without_port(&second.stderr), banner());
    assert_eq!(second.code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_flags_the_catalog_lives_in_the_config_directory() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let home = tempfile::tempdir().expect("temp dir");
    let engine = format!(
        "CREATE ML_ENGINE remote FROM bedrock USING api_key = 'k', endpoint_url = '{}'",
        emulator.url()
    );
    let out = run(home.path(), &["-q", "--format", "csv", "-c", &engine]).await;
    assert_eq!(out.stdout, "name,handler,status\nremote,bedrock,created\n");
    let out = run(
        home.path(),
        &["-q", "--format", "csv", "-c", "SHOW ML_ENGINES"],
    )
    .await;
    assert_eq!(
        out.stdout,
        format!(
            "name,handler,region,endpoint_url,credentials,max_concurrency,default\n\
             remote,bedrock,us-east-1,{},api key,32,false\n",
            emulator.url()
        )
    );
    let file = home
        .path()
        .join("config")
        .join("datafusion-bedrock")
        .join("catalog.json");
    assert!(file.is_file(), "{} was written", file.display());
    emulator.shutdown().await;
}

#[tokio::test]
async fn files_serves_a_directory_as_the_files_schema() {
    let home = tempfile::tempdir().expect("temp dir");
    let files = files_dir();
    let out = run(
        home.path(),
        &[
            "-q",
            "--files",
            &files,
            "--format",
            "csv",
            "-c",
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = 'files' ORDER BY table_name",
            "SELECT count(*) AS n FROM files.related_questions",
        ],
    )
    .await;
    assert_eq!(
        out.stdout,
        "table_schema,table_name\nfiles,related_questions\nfiles,unrelated_questions\nn\n2\n"
    );
    assert_eq!(out.code, Some(0));

    let missing = home.path().join("nowhere").display().to_string();
    let out = run(home.path(), &["-q", "--files", &missing, "-c", "SELECT 1"]).await;
    assert!(
        out.stdout.starts_with(&format!(
            "Error: Error during planning: The files directory '{missing}' cannot be read: "
        )),
        "{}",
        out.stdout
    );
    assert_eq!(out.code, Some(1));
}

#[tokio::test]
async fn slt_runs_suites_and_completes_expected_output() {
    let home = tempfile::tempdir().expect("temp dir");
    let suite = home.path().join("suite");
    std::fs::create_dir_all(&suite).expect("dir");
    let records = "statement ok\nCREATE ML_ENGINE e FROM bedrock USING api_key = 'k'\n\n\
                   statement ok\nCREATE MODEL m PREDICT answer USING engine = 'e', question_column = 'q'\n\n\
                   query T\nSELECT answer FROM m WHERE q = 'Hello'\n----\n";
    let good = suite.join("good.slt");
    std::fs::write(&good, format!("{records}{}\n", answer("Hello"))).expect("written");
    let stale = suite.join("stale.slt");
    std::fs::write(&stale, format!("{records}an old answer\n")).expect("written");
    let suite_arg = suite.display().to_string();

    let out = run(home.path(), &["slt", &suite_arg]).await;
    assert!(
        out.stdout.starts_with(&format!(
            "ok     {}\nFAILED {}\n",
            good.display(),
            stale.display()
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.ends_with("sqllogictest: 1 passed, 1 failed\n"),
        "{}",
        out.stdout
    );
    assert_eq!(out.code, Some(1));

    let stale_arg = stale.display().to_string();
    let out = run(home.path(), &["slt", "--complete", &stale_arg]).await;
    assert_eq!(
        out.stdout,
        format!(
            "completed {}\nsqllogictest: 1 passed, 0 failed\n",
            stale.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(&stale).expect("readable"),
        format!("{records}{}\n", answer("Hello"))
    );
    let out = run(home.path(), &["slt", &suite_arg]).await;
    assert_eq!(
        out.stdout,
        format!(
            "ok     {}\nok     {}\nsqllogictest: 2 passed, 0 failed\n",
            good.display(),
            stale.display()
        )
    );
    assert_eq!(out.code, Some(0));
}

/// Converse calls the emulator has received.
fn converse_calls(emulator: &Emulator) -> u64 {
    emulator
        .stats()
        .snapshot()
        .count(None, Some("Converse"), None)
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_the_running_query_and_no_request_follows() {
    use datafusion_bedrock::emulator::LoadModel;
    use std::time::Duration;

    let emulator = Emulator::start(EmulatorConfig {
        load: LoadModel {
            latency: Duration::from_millis(700),
            ..LoadModel::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let home = tempfile::tempdir().expect("temp dir");
    let file = home.path().join("slow.sql");
    std::fs::write(
        &file,
        format!(
            "CREATE ML_ENGINE slow FROM bedrock USING api_key = 'k', max_concurrency = 1, endpoint_url = '{}';\n\
             CREATE MODEL m PREDICT answer USING engine = 'slow', question_column = 'q';\n\
             SELECT d.q, m.answer FROM (VALUES ('a'), ('b'), ('c'), ('d'), ('e'), ('f'), ('g'), ('h')) AS d(q) JOIN m;\n\
             SELECT 'not reached' AS x;\n",
            emulator.url()
        ),
    )
    .expect("written");
    let catalog = home.path().join("catalog.json").display().to_string();
    let file = file.display().to_string();
    let child = command(
        home.path(),
        &["-q", "--format", "csv", "--catalog", &catalog, "-f", &file],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("spawned");
    // Wait until the query is sending (one request at a time, 700 ms each).
    let mut waited = 0;
    while converse_calls(&emulator) == 0 && waited < 200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    let pid = child.id().expect("running").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(killed.success());
    let out = child.wait_with_output().await.expect("exits");
    let sent = converse_calls(&emulator);
    // Well after the cancellation: not one request more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(converse_calls(&emulator), sent);
    assert!((1..8).contains(&sent), "{sent} requests");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "name,handler,status\nslow,bedrock,created\n\
             name,engine,model_id,mode,target,inputs,status\nm,slow,{TITAN},default,answer,q,ready\n\
             Error: Query cancelled (Ctrl-C)\n"
        )
    );
    assert_eq!(out.status.code(), Some(1));
    emulator.shutdown().await;
}
