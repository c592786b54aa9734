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

    /// The run of `statements` (the last of which is `SHOW ML_ENGINES`) in CSV, which must
    /// succeed, and what the SHOW printed from its `endpoint_url` column header on.
    async fn show_engines_after(
        home: &Path,
        env: &[(&str, &str)],
        statements: &[String],
    ) -> (Run, String) {
        let mut args = vec!["-q", "--format", "csv", "-c"];
        args.extend(statements.iter().map(String::as_str));
        let out = run(home, env, &args).await;
        assert!(out.success, "{}\n{}", out.stdout, out.stderr);
        let show = out.stdout.split_once("name,handler,region,").map_or_else(
            || panic!("no SHOW output in:\n{}", out.stdout),
            |(_, show)| show.to_string(),
        );
        (out, show)
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

    /// Writes `~/.aws/credentials` of `home` with profile `p` holding `key_id` and `secret`.
    fn profile_file(home: &Path, key_id: &str, secret: &str) {
        let dir = home.join(".aws");
        std::fs::create_dir_all(&dir).expect("the .aws directory");
        std::fs::write(
            dir.join("credentials"),
            format!("[p]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"),
        )
        .expect("the credentials file");
    }

    /// Regression: `profile_name` lost to `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` of the
    /// environment. The emulator accepts only the profile's keys, and `SHOW ML_ENGINES` names
    /// the profile.
    #[tokio::test]
    async fn a_profile_signs_with_its_own_keys_not_the_environments() {
        let emulator = signed_emulator().await;
        let home = tempfile::tempdir().expect("temp dir");
        profile_file(home.path(), EMULATOR_KEY_ID, EMULATOR_SECRET);
        let env = [
            ("AWS_ACCESS_KEY_ID", "AKIDOTHER"),
            ("AWS_SECRET_ACCESS_KEY", OTHER_SECRET),
        ];
        let sql = format!(
            "CREATE ML_ENGINE e FROM bedrock USING region_name = 'us-east-1', profile_name = 'p', endpoint_url = '{}'",
            emulator.url()
        );
        let out = run(
            home.path(),
            &env,
            &["-q", "--format", "csv", "-c", &sql, "SHOW ML_ENGINES"],
        )
        .await;
        assert!(out.success, "{}\n{}", out.stdout, out.stderr);
        assert_eq!(
            out.stdout,
            format!(
                "name,handler,status\n\
                 e,bedrock,created\n\
                 name,handler,region,endpoint_url,credentials,max_concurrency,default\n\
                 e,bedrock,us-east-1,{},profile 'p',32,false\n",
                emulator.url()
            )
        );
        let stats = emulator.stats().snapshot();
        assert_eq!(
            (
                stats.count(None, Some("ListFoundationModels"), Some(200)),
                stats.total()
            ),
            (1, 1)
        );
        assert_nothing_secret_in(&out);
    }

    /// Regression: with the environment's keys accepted and the profile's refused, the engine
    /// must fail naming the profile instead of quietly using the environment.
    #[tokio::test]
    async fn a_refused_profile_fails_naming_it_even_when_the_environment_would_pass() {
        let emulator = signed_emulator().await;
        let home = tempfile::tempdir().expect("temp dir");
        profile_file(home.path(), "AKIDOTHER", OTHER_SECRET);
        let env = [
            ("AWS_ACCESS_KEY_ID", EMULATOR_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", EMULATOR_SECRET),
        ];
        let sql = format!(
            "CREATE ML_ENGINE e FROM bedrock USING region_name = 'us-east-1', profile_name = 'p', endpoint_url = '{}'",
            emulator.url()
        );
        let out = run(home.path(), &env, &["-q", "-c", &sql]).await;
        assert!(!out.success, "{}\n{}", out.stdout, out.stderr);
        let message = engine_error(&out);
        assert_eq!(
            message,
            "Engine 'e': Bedrock in us-east-1 rejected the credentials of profile 'p' — UnrecognizedClientException: the access key or session token is not known. Refresh profile 'p' (new keys, or aws sso login --profile p), or choose another profile_name."
        );
        assert_short_and_clean(&message);
        assert_nothing_secret_in(&out);
        assert_eq!(
            emulator
                .stats()
                .snapshot()
                .count(None, Some("ListFoundationModels"), Some(403)),
            1
        );
    }

    /// Regression: `profile_name = 'does_not_exist'` succeeded with the environment's keys.
    /// Against an emulator that would accept them, or one accepting unsigned requests, a
    /// missing profile is one short message naming it, and nothing is sent.
    #[tokio::test]
    async fn a_missing_profile_fails_naming_it() {
        let signed = signed_emulator().await;
        let open = Emulator::start(EmulatorConfig::default())
            .await
            .expect("emulator starts");
        let home = tempfile::tempdir().expect("temp dir");
        profile_file(home.path(), EMULATOR_KEY_ID, EMULATOR_SECRET);
        let env = [
            ("AWS_ACCESS_KEY_ID", EMULATOR_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", EMULATOR_SECRET),
        ];
        for emulator in [&signed, &open] {
            let sql = format!(
                "CREATE ML_ENGINE e FROM bedrock USING region_name = 'us-east-1', profile_name = 'does_not_exist', endpoint_url = '{}'",
                emulator.url()
            );
            let out = run(home.path(), &env, &["-q", "-c", &sql]).await;
            assert!(!out.success, "{}\n{}", out.stdout, out.stderr);
            let message = engine_error(&out);
            assert_eq!(message, MISSING_PROFILE);
            assert_short_and_clean(&message);
            assert_nothing_secret_in(&out);
            assert_eq!(emulator.stats().snapshot().total(), 0);
        }
    }

    /// What the shell says of `profile_name = 'does_not_exist'`.
    const MISSING_PROFILE: &str = "Engine 'e': profile 'does_not_exist' was not found in the shared config and credentials files, or holds no credentials. Check profile_name (aws configure list-profiles), or give aws_access_key_id and aws_secret_access_key, or api_key.";

    /// `SHOW ML_ENGINES` says what each engine's requests really carry.
    #[tokio::test]
    async fn show_ml_engines_reports_the_credentials_really_used() {
        let signed = signed_emulator().await;
        let open = Emulator::start(EmulatorConfig::default())
            .await
            .expect("emulator starts");
        let home = tempfile::tempdir().expect("temp dir");
        profile_file(home.path(), EMULATOR_KEY_ID, EMULATOR_SECRET);
        let env = [
            ("AWS_ACCESS_KEY_ID", EMULATOR_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", EMULATOR_SECRET),
        ];
        let create = |name: &str, url: &str, identity: &str| {
            format!(
                "CREATE ML_ENGINE {name} FROM bedrock USING region_name = 'us-east-1', endpoint_url = '{url}'{identity}"
            )
        };
        let keys = format!(
            ", aws_access_key_id = '{EMULATOR_KEY_ID}', aws_secret_access_key = '{EMULATOR_SECRET}'"
        );
        let statements = [
            create("unsigned", open.url(), ""),
            create("chain", signed.url(), ""),
            create("prof", signed.url(), ", profile_name = 'p'"),
            create("keys", signed.url(), &keys),
            create("keyed", open.url(), ", api_key = 'ABSK-anything'"),
            "SHOW ML_ENGINES".to_string(),
        ];
        let (out, show) = show_engines_after(home.path(), &env, &statements).await;
        let (signed_url, open_url) = (signed.url(), open.url());
        assert_eq!(
            show,
            format!(
                "endpoint_url,credentials,max_concurrency,default\n\
                 chain,bedrock,us-east-1,{signed_url},default chain,32,false\n\
                 keyed,bedrock,us-east-1,{open_url},api key,32,false\n\
                 keys,bedrock,us-east-1,{signed_url},static keys,32,false\n\
                 prof,bedrock,us-east-1,{signed_url},profile 'p',32,false\n\
                 unsigned,bedrock,us-east-1,{open_url},none (emulator),32,false\n"
            )
        );
        assert_nothing_secret_in(&out);
    }

    /// Keys and profiles sign their requests even when the environment holds a Bedrock API
    /// key (`AWS_BEARER_TOKEN_BEDROCK`); only the default chain takes that key.
    #[tokio::test]
    async fn the_environments_api_key_replaces_neither_keys_nor_a_profile() {
        let signed = signed_emulator().await;
        let keyed = Emulator::start(EmulatorConfig {
            api_keys: vec!["ABSK-from-the-environment".into()],
            ..EmulatorConfig::default()
        })
        .await
        .expect("emulator starts");
        let home = tempfile::tempdir().expect("temp dir");
        profile_file(home.path(), EMULATOR_KEY_ID, EMULATOR_SECRET);
        let env = [("AWS_BEARER_TOKEN_BEDROCK", "ABSK-from-the-environment")];
        let create = |name: &str, url: &str, identity: &str| {
            format!(
                "CREATE ML_ENGINE {name} FROM bedrock USING region_name = 'us-east-1', endpoint_url = '{url}'{identity}"
            )
        };
        let keys = format!(
            ", aws_access_key_id = '{EMULATOR_KEY_ID}', aws_secret_access_key = '{EMULATOR_SECRET}'"
        );
        let statements = [
            create("keys", signed.url(), &keys),
            create("prof", signed.url(), ", profile_name = 'p'"),
            create("chain", keyed.url(), ""),
            "SHOW ML_ENGINES".to_string(),
        ];
        let (out, show) = show_engines_after(home.path(), &env, &statements).await;
        let (signed_url, keyed_url) = (signed.url(), keyed.url());
        assert_eq!(
            show,
            format!(
                "endpoint_url,credentials,max_concurrency,default\n\
                 chain,bedrock,us-east-1,{keyed_url},default chain (AWS_BEARER_TOKEN_BEDROCK),32,false\n\
                 keys,bedrock,us-east-1,{signed_url},static keys,32,false\n\
                 prof,bedrock,us-east-1,{signed_url},profile 'p',32,false\n"
            )
        );
        assert_eq!(
            (
                signed
                    .stats()
                    .snapshot()
                    .count(None, Some("ListFoundationModels"), Some(200)),
                keyed
                    .stats()
                    .snapshot()
                    .count(None, Some("ListFoundationModels"), Some(200)),
            ),
            (2, 1)
        );
        assert!(!out.stdout.contains("ABSK-from-the-environment"));
    }
}
