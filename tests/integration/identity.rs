//! An engine's identity: no credentials against the built-in emulator just works; a missing or
//! refused identity anywhere else is one short message that says what was tried and the fix,
//! and never holds a secret.
//!
//! Checks that depend on the machine's AWS environment run the shell binary in a child
//! process with its own empty home and config directory and no `AWS_*` variables but
//! `AWS_EC2_METADATA_DISABLED=true`.

use datafusion_bedrock::bedrock::config::{CredentialSource, EngineConfig, Secret};
use datafusion_bedrock::bedrock::engine::{Api, Engine, ModelTarget};
use datafusion_bedrock::bedrock::request::{InferenceParams, TextRequest};
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig, StaticCredential};

use crate::support::expected_answer;

const TITAN: &str = "amazon.titan-text-premier-v1:0";
const EMULATOR_KEY_ID: &str = "AKIDEXAMPLE";
const EMULATOR_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const OTHER_SECRET: &str = "another-secret-key-value";

/// What the shell says when no credentials are found and the endpoint is `authority`.
fn no_credentials(authority: &str) -> String {
    format!(
        "Engine 'e': no AWS credentials found — tried environment variables, the shared config and credentials files, SSO, web identity token, container credentials and EC2 instance metadata; no emulator accepting unsigned requests answers at {authority}. Give profile_name, aws_access_key_id and aws_secret_access_key, or api_key in USING, or set AWS_PROFILE."
    )
}

fn engine_config(url: &str, credentials: CredentialSource) -> EngineConfig {
    EngineConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(url.into()),
        credentials,
        ..EngineConfig::default()
    }
}

fn keys(key: &str, secret: &str) -> CredentialSource {
    CredentialSource::Static {
        access_key_id: key.into(),
        secret_access_key: Secret::new(secret),
        session_token: None,
    }
}

/// A loopback port nothing listens on.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

async fn signed_emulator() -> Emulator {
    Emulator::start(EmulatorConfig {
        credentials: vec![StaticCredential::new(EMULATOR_KEY_ID, EMULATOR_SECRET)],
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts")
}

/// Asserts a message is short and holds none of the secrets.
fn assert_short_and_clean(message: &str) {
    assert!(message.chars().count() < 400, "{message}");
    for secret in [EMULATOR_SECRET, OTHER_SECRET] {
        assert!(!message.contains(secret), "{message}");
    }
}

#[tokio::test]
async fn no_credentials_against_the_built_in_emulator_just_work() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts");
    let engine = Engine::connect(
        "e",
        engine_config(emulator.url(), CredentialSource::DefaultChain),
    )
    .await
    .expect("the emulator accepts unsigned requests");
    let target = ModelTarget {
        model_id: TITAN.into(),
        api: Api::Converse,
    };
    let prompt = TextRequest::prompt("unsigned", InferenceParams::default());
    let results = engine.generate(&target, &[Some(prompt)]).await;
    let answers: Vec<Option<String>> = results
        .into_iter()
        .map(|r| r.map(|r| r.map_or_else(|e| format!("ERROR {e}"), |t| t.text)))
        .collect();
    assert_eq!(
        answers,
        vec![Some(expected_answer(TITAN, 1, 1, 0, "unsigned"))]
    );
    let stats = emulator.stats().snapshot();
    assert_eq!(
        (
            stats.count(None, Some("ListFoundationModels"), Some(200)),
            stats.count(Some(TITAN), Some("Converse"), Some(200)),
            stats.total(),
        ),
        (1, 1, 2)
    );
}

#[tokio::test]
async fn the_identity_route_names_the_emulator_and_whether_it_accepts_unsigned_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn identity(emulator: &Emulator) -> serde_json::Value {
        let mut stream = tokio::net::TcpStream::connect(emulator.addr())
            .await
            .expect("connect");
        let request = format!(
            "GET /_emulator/identity HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            emulator.addr()
        );
        stream.write_all(request.as_bytes()).await.expect("request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("response");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        let (_, body) = response.split_once("\r\n\r\n").expect("a body");
        serde_json::from_str(body).expect("JSON")
    }
    let open = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts");
    assert_eq!(
        identity(&open).await,
        serde_json::json!({
            "service": "datafusion-bedrock-emulator",
            "version": env!("CARGO_PKG_VERSION"),
            "accepts_unsigned_requests": true,
        })
    );
    let signed = signed_emulator().await;
    assert_eq!(
        identity(&signed).await["accepts_unsigned_requests"],
        serde_json::json!(false)
    );
    // Not a Bedrock call: nothing counted.
    assert_eq!(open.stats().snapshot().total(), 0);
}

#[tokio::test]
async fn keys_the_emulator_does_not_know_are_one_short_message() {
    let emulator = signed_emulator().await;
    let unknown = Engine::connect(
        "e",
        engine_config(emulator.url(), keys("AKIDOTHER", OTHER_SECRET)),
    )
    .await
    .expect_err("unknown keys are refused")
    .to_string();
    assert_eq!(
        unknown,
        "Engine 'e': Bedrock in us-east-1 rejected its keys (aws_access_key_id, aws_secret_access_key) — UnrecognizedClientException: the access key or session token is not known. Check aws_access_key_id and aws_secret_access_key; temporary keys also need aws_session_token."
    );
    assert_short_and_clean(&unknown);

    let wrong_secret = Engine::connect(
        "e",
        engine_config(emulator.url(), keys(EMULATOR_KEY_ID, OTHER_SECRET)),
    )
    .await
    .expect_err("a wrong secret is refused")
    .to_string();
    assert_eq!(
        wrong_secret,
        "Engine 'e': Bedrock in us-east-1 rejected its keys (aws_access_key_id, aws_secret_access_key) — InvalidSignatureException: the signature does not match, so the secret key is wrong. Check aws_access_key_id and aws_secret_access_key; temporary keys also need aws_session_token."
    );
    assert_short_and_clean(&wrong_secret);
    assert_eq!(
        emulator
            .stats()
            .snapshot()
            .count(None, Some("ListFoundationModels"), Some(403)),
        2
    );
}

#[tokio::test]
async fn an_endpoint_that_does_not_answer_is_one_line() {
    let port = closed_port().await;
    let url = format!("http://127.0.0.1:{port}");
    let error = Engine::connect(
        "e",
        engine_config(&url, CredentialSource::ApiKey(Secret::new(OTHER_SECRET))),
    )
    .await
    .expect_err("nothing listens")
    .to_string();
    assert_short_and_clean(&error);
    if cfg!(target_os = "linux") {
        assert_eq!(
            error,
            format!(
                "Engine 'e': could not connect to {url} — Connection refused (os error 111). Check endpoint_url, region_name and network access, or create the engine with verify_credentials = false."
            )
        );
    }
}

/// The shell binary, run as a user without any AWS configuration would run it.
#[cfg(feature = "cli")]
mod shell {
    use std::path::Path;

    use super::*;

    struct Run {
        stdout: String,
        stderr: String,
        success: bool,
    }

    async fn run(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_datafusion-bedrock"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AWS_") {
                command.env_remove(name);
            }
        }
        command
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .envs(env.iter().copied())
            .current_dir(home)
            .args(args)
            .stdin(std::process::Stdio::null());
        let out = command.output().await.expect("the binary runs");
        Run {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            success: out.status.success(),
        }
    }

    /// The line of the run's output that carries engine `e`'s error, from `Engine 'e'` on,
    /// whatever prefix the shell puts before it.
    fn engine_error(run: &Run) -> String {
        let output = format!("{}\n{}", run.stdout, run.stderr);
        let line = output
            .lines()
            .find(|l| l.contains("Engine 'e'"))
            .unwrap_or_else(|| panic!("no engine error in:\n{output}"));
        let at = line.find("Engine 'e'").unwrap_or_default();
        line[at..].to_string()
    }

    fn assert_nothing_secret_in(run: &Run) {
        for secret in [EMULATOR_SECRET, OTHER_SECRET] {
            assert!(!run.stdout.contains(secret), "{}", run.stdout);
            assert!(!run.stderr.contains(secret), "{}", run.stderr);
        }
    }

    const CREATED: &str = "+------+---------+---------+\n\
                           | name | handler | status  |\n\
                           +------+---------+---------+\n\
                           | e    | bedrock | created |\n\
                           +------+---------+---------+\n";

    #[tokio::test]
    async fn the_emulator_flag_needs_no_credentials() {
        let home = tempfile::tempdir().expect("temp dir");
        let out = run(
            home.path(),
            &[],
            &[
                "-q",
                "--emulator",
                "-c",
                "CREATE ML_ENGINE e FROM bedrock USING region_name = 'us-east-1'",
            ],
        )
        .await;
        assert!(out.success, "{}\n{}", out.stdout, out.stderr);
        assert_eq!(out.stdout, CREATED);
    }

    #[tokio::test]
    async fn an_emulator_in_another_process_needs_no_credentials() {
        let emulator = Emulator::start(EmulatorConfig::default())
            .await
            .expect("emulator starts");
        let home = tempfile::tempdir().expect("temp dir");
        let port = emulator.addr().port();
        let sql = format!(
            "CREATE ML_ENGINE e FROM bedrock USING region_name = 'us-east-1', endpoint_url = 'http://localhost:{port}'"
        );
        let out = run(home.path(), &[], &["-q", "-c", &sql]).await;
        assert!(out.success, "{}\n{}", out.stdout, out.stderr);
        assert_eq!(out.stdout, CREATED);
        assert_eq!(
            emulator
                .stats()
                .snapshot()
                .count(None, Some("ListFoundationModels"), Some(200)),
            1
        );
    }

    #[tokio::test]
    async fn no_credentials_and_nothing_listening_is_one_short_message() {
        let home = tempfile::tempdir().expect("temp dir");
        let port = closed_port().await;
        let sql = format!(
            "CREATE ML_ENGINE e FROM bedrock USING region_name = 'us-east-1', endpoint_url = 'http://127.0.0.1:{port}'"
        );
        let out = run(home.path(), &[], &["-q", "-c", &sql]).await;
        assert!(!out.success, "{}\n{}", out.stdout, out.stderr);
        let message = engine_error(&out);
        assert_eq!(message, no_credentials(&format!("127.0.0.1:{port}")));
        assert_short_and_clean(&message);
        assert!(!out.stdout.contains("ProviderChainError"), "{}", out.stdout);
    }

    #[tokio::test]
    async fn an_emulator_that_checks_signatures_still_needs_credentials() {
        let emulator = signed_emulator().await;
        let home = tempfile::tempdir().expect("temp dir");
        let authority = emulator.addr().to_string();
        let sql = format!(
            "CREATE ML_ENGINE e FROM bedrock USING region_name = 'us-east-1', endpoint_url = '{}'",
            emulator.url()
        );
        let out = run(home.path(), &[], &["-q", "-c", &sql]).await;
        assert!(!out.success, "{}\n{}", out.stdout, out.stderr);
        let message = engine_error(&out);
        assert_eq!(message, no_credentials(&authority));
        assert_short_and_clean(&message);
        // Nothing was sent: the credentials were missing before any call.
        assert_eq!(emulator.stats().snapshot().total(), 0);
    }

    #[tokio::test]
    async fn refused_environment_keys_are_one_short_message_without_the_secret() {
        let emulator = signed_emulator().await;
        let home = tempfile::tempdir().expect("temp dir");
        let sql = format!(
            "CREATE ML_ENGINE e FROM bedrock USING region_name = 'us-east-1', endpoint_url = '{}'",
            emulator.url()
        );
        let env = [
            ("AWS_ACCESS_KEY_ID", "AKIDOTHER"),
            ("AWS_SECRET_ACCESS_KEY", OTHER_SECRET),
        ];
        let out = run(home.path(), &env, &["-q", "-c", &sql]).await;
        assert!(!out.success, "{}\n{}", out.stdout, out.stderr);
        let message = engine_error(&out);
        assert_eq!(
            message,
            "Engine 'e': Bedrock in us-east-1 rejected the credentials of the standard AWS chain — UnrecognizedClientException: the access key or session token is not known. Refresh them (environment variables, AWS_PROFILE, aws sso login), or give profile_name, or aws_access_key_id and aws_secret_access_key."
        );
        assert_short_and_clean(&message);
        assert_nothing_secret_in(&out);

        // The right keys from the environment sign as before.
        let env = [
            ("AWS_ACCESS_KEY_ID", EMULATOR_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", EMULATOR_SECRET),
        ];
        let out = run(home.path(), &env, &["-q", "-c", &sql]).await;
        assert!(out.success, "{}\n{}", out.stdout, out.stderr);
        assert_eq!(out.stdout, CREATED);
    }

    #[tokio::test]
    async fn refused_static_keys_are_one_short_message_without_the_secret() {
        let emulator = signed_emulator().await;
        let home = tempfile::tempdir().expect("temp dir");
        let sql = format!(
            "CREATE ML_ENGINE e FROM bedrock USING region_name = 'us-east-1', endpoint_url = '{}', aws_access_key_id = '{EMULATOR_KEY_ID}', aws_secret_access_key = '{OTHER_SECRET}'",
            emulator.url()
        );
        let out = run(home.path(), &[], &["-q", "-c", &sql]).await;
        assert!(!out.success, "{}\n{}", out.stdout, out.stderr);
        let message = engine_error(&out);
        assert_eq!(
            message,
            "Engine 'e': Bedrock in us-east-1 rejected its keys (aws_access_key_id, aws_secret_access_key) — InvalidSignatureException: the signature does not match, so the secret key is wrong. Check aws_access_key_id and aws_secret_access_key; temporary keys also need aws_session_token."
        );
        assert_nothing_secret_in(&out);
    }
}
