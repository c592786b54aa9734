//! The client layer against the emulator: families, credentials, dedup, cache, retries, quotas
//! and concurrency.

use std::sync::Arc;
use std::time::Duration;

use datafusion_bedrock::bedrock::config::{CredentialSource, EngineConfig, Secret};
use datafusion_bedrock::bedrock::engine::{Api, Engine, ModelTarget};
use datafusion_bedrock::bedrock::families::EmbedOptions;
use datafusion_bedrock::bedrock::request::{InferenceParams, TextRequest};
use datafusion_bedrock::emulator::{
    Emulator, EmulatorConfig, FaultRates, LoadModel, StaticCredential, embedding_for,
};
use serde_json::json;

use crate::support::*;

const TITAN: &str = "amazon.titan-text-premier-v1:0";

fn static_keys(key: &str, secret: &str, token: Option<&str>) -> CredentialSource {
    CredentialSource::Static {
        access_key_id: key.into(),
        secret_access_key: Secret::new(secret),
        session_token: token.map(Secret::new),
    }
}

fn config_for(emulator: &Emulator) -> EngineConfig {
    EngineConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(emulator.url().into()),
        credentials: static_keys(ACCESS_KEY, SECRET_KEY, None),
        ..EngineConfig::default()
    }
}

async fn engine(emulator: &Emulator, tweak: impl FnOnce(&mut EngineConfig)) -> Arc<Engine> {
    let mut config = config_for(emulator);
    tweak(&mut config);
    Engine::connect("test_engine", config)
        .await
        .expect("the engine connects")
}

fn prompts(texts: impl IntoIterator<Item = String>) -> Vec<Option<TextRequest>> {
    texts
        .into_iter()
        .map(|t| Some(TextRequest::prompt(t, InferenceParams::default())))
        .collect()
}

fn answers(
    results: &[Option<
        Result<
            datafusion_bedrock::bedrock::request::TextResponse,
            datafusion_bedrock::bedrock::retry::CallFailure,
        >,
    >],
) -> Vec<Option<String>> {
    results
        .iter()
        .map(|r| {
            r.as_ref().map(|r| {
                r.as_ref()
                    .map_or_else(|e| format!("ERROR {e}"), |t| t.text.clone())
            })
        })
        .collect()
}

#[tokio::test]
async fn every_family_answers_through_converse_and_invoke() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let engine = engine(&emulator, |_| {}).await;
    let params = InferenceParams {
        max_tokens: Some(200),
        temperature: Some(0.5),
        ..InferenceParams::default()
    };
    let question = "What is 2 + 2?";
    for model in [
        TITAN,
        "amazon.nova-micro-v1:0",
        "anthropic.claude-3-haiku-20240307-v1:0",
        "meta.llama3-8b-instruct-v1:0",
        "mistral.mistral-7b-instruct-v0:2",
        "cohere.command-r-v1:0",
        "ai21.jamba-1-5-mini-v1:0",
    ] {
        for api in [Api::Converse, Api::Invoke] {
            let target = ModelTarget {
                model_id: model.into(),
                api,
            };
            let results = engine
                .generate(
                    &target,
                    &[Some(TextRequest::prompt(question, params.clone())), None],
                )
                .await;
            assert_eq!(
                answers(&results),
                vec![Some(expected_answer(model, 1, 1, 0, question)), None],
                "{model} via {api:?}"
            );
        }
    }
    let recent = emulator.stats().snapshot().recent;
    let body_of = |operation: &str, model: &str| {
        recent
            .iter()
            .find(|r| r.operation == operation && r.model_id == model)
            .map(|r| r.body.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        body_of("Converse", TITAN),
        json!({
            "messages": [{"role": "user", "content": [{"text": question}]}],
            "inferenceConfig": {"maxTokens": 200, "temperature": 0.5}
        })
    );
    assert_eq!(
        body_of("InvokeModel", TITAN),
        json!({"inputText": question, "textGenerationConfig": {"maxTokenCount": 200, "temperature": 0.5}})
    );
    assert_eq!(
        body_of("InvokeModel", "anthropic.claude-3-haiku-20240307-v1:0"),
        json!({
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 200,
            "temperature": 0.5,
            "messages": [{"role": "user", "content": [{"type": "text", "text": question}]}]
        })
    );
    assert_eq!(
        emulator.stats().snapshot().count(None, None, Some(200)),
        14 + 1
    );
}

#[tokio::test]
async fn embeddings_are_batched_deduplicated_and_aligned() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let engine = engine(&emulator, |_| {}).await;
    let titan = "amazon.titan-embed-text-v2:0";
    let texts: Vec<Option<String>> = vec![
        Some("red apple".into()),
        Some("green pear".into()),
        Some("red apple".into()),
        None,
        Some("blue sky".into()),
    ];
    let options = EmbedOptions {
        dimensions: Some(256),
        normalize: Some(true),
        input_type: None,
    };
    let vectors = engine
        .embed(titan, &texts, &options)
        .await
        .expect("a known embedding model");
    let expected: Vec<Option<Vec<f32>>> = texts
        .iter()
        .map(|t| t.as_ref().map(|t| embedding_for(titan, t, 256, true)))
        .collect();
    let got: Vec<Option<Vec<f32>>> = vectors
        .into_iter()
        .map(|v| v.map(|v| v.expect("embedded")))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        emulator
            .stats()
            .snapshot()
            .count(Some(titan), Some("InvokeModel"), None),
        3
    );

    let cohere = "cohere.embed-english-v3";
    let texts: Vec<Option<String>> = (0..200).map(|i| Some(format!("passage {i}"))).collect();
    let vectors = engine
        .embed(cohere, &texts, &EmbedOptions::default())
        .await
        .expect("embedding model");
    let got: Vec<Vec<f32>> = vectors
        .into_iter()
        .map(|v| v.expect("row").expect("embedded"))
        .collect();
    let expected: Vec<Vec<f32>> = (0..200)
        .map(|i| embedding_for(cohere, &format!("passage {i}"), 1024, true))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        emulator
            .stats()
            .snapshot()
            .count(Some(cohere), Some("InvokeModel"), None),
        3,
        "96 + 96 + 8"
    );

    let err = engine
        .embed(TITAN, &texts, &EmbedOptions::default())
        .await
        .expect_err("a text model");
    assert_eq!(
        err.to_string(),
        "Model 'amazon.titan-text-premier-v1:0' is not a supported embedding model: use amazon.titan-embed-text-v2:0 or cohere.embed-english-v3"
    );
}

#[tokio::test]
async fn credentials_are_checked_when_the_engine_is_created() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let mut config = config_for(&emulator);
    config.credentials = static_keys(ACCESS_KEY, "the-wrong-secret-value", None);
    let err = Engine::connect("bedrock_engine", config)
        .await
        .expect_err("a wrong secret fails");
    let message = err.to_string();
    assert_eq!(
        message,
        "Engine 'bedrock_engine': Bedrock in us-east-1 rejected its keys (aws_access_key_id, aws_secret_access_key) — InvalidSignatureException: the signature does not match, so the secret key is wrong. Check aws_access_key_id and aws_secret_access_key; temporary keys also need aws_session_token."
    );
    assert!(!message.contains("the-wrong-secret-value"));
    assert_eq!(
        emulator
            .stats()
            .snapshot()
            .count(None, Some("ListFoundationModels"), Some(403)),
        1
    );

    // Temporary credentials with their session token.
    let temporary = Emulator::start(EmulatorConfig {
        credentials: vec![
            StaticCredential::new("ASIATEMP", "temp-secret").with_session_token("token-1"),
        ],
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let mut config = config_for(&temporary);
    config.credentials = static_keys("ASIATEMP", "temp-secret", Some("token-1"));
    let engine = Engine::connect("temporary", config.clone())
        .await
        .expect("session token accepted");
    let target = ModelTarget {
        model_id: TITAN.into(),
        api: Api::Converse,
    };
    let results = engine.generate(&target, &prompts(["hi".to_string()])).await;
    assert_eq!(
        answers(&results),
        vec![Some(expected_answer(TITAN, 1, 1, 0, "hi"))]
    );
    config.credentials = static_keys("ASIATEMP", "temp-secret", Some("token-2"));
    let err = Engine::connect("temporary", config)
        .await
        .expect_err("a wrong token fails");
    assert!(
        err.to_string().contains("UnrecognizedClientException"),
        "{err}"
    );
    assert!(!err.to_string().contains("token-2"));
}

#[tokio::test]
async fn bedrock_api_keys_authenticate_an_engine() {
    let emulator = Emulator::start(EmulatorConfig {
        api_keys: vec!["ABSK-test-key".into()],
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let mut config = config_for(&emulator);
    config.credentials = CredentialSource::ApiKey(Secret::new("ABSK-test-key"));
    let engine = Engine::connect("keyed", config.clone())
        .await
        .expect("the key is accepted");
    let target = ModelTarget {
        model_id: TITAN.into(),
        api: Api::Invoke,
    };
    let results = engine.generate(&target, &prompts(["hi".to_string()])).await;
    assert_eq!(
        answers(&results),
        vec![Some(expected_answer(TITAN, 1, 1, 0, "hi"))]
    );
    config.credentials = CredentialSource::ApiKey(Secret::new("ABSK-wrong-key"));
    let err = Engine::connect("keyed", config)
        .await
        .expect_err("a wrong key fails");
    assert!(err.to_string().contains("AccessDeniedException"), "{err}");
    assert!(!err.to_string().contains("ABSK-wrong-key"), "{err}");
}

/// Runs one ignored test of this binary in a child process with the given environment, so the
/// standard credential chain reads a real environment without touching this process's.
fn run_child(test: &str, env: &[(&str, String)]) {
    let mut command = std::process::Command::new(std::env::current_exe().expect("test binary"));
    command.args(["--ignored", "--exact", test, "--nocapture"]);
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    command.env("AWS_EC2_METADATA_DISABLED", "true");
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().expect("the child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{test} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{test} did not run:\n{stdout}");
}

#[tokio::test]
async fn the_standard_credential_chain_is_used_when_no_keys_are_given() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let url = emulator.url().to_string();
    tokio::task::spawn_blocking(move || {
        run_child(
            "client_engine::child_default_chain",
            &[
                ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
                ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
                ("AWS_REGION", "eu-west-1".to_string()),
                ("EMULATOR_URL", url),
            ],
        );
    })
    .await
    .expect("child finished");
    // The child signed its requests with the environment's keys for the environment's region.
    assert_eq!(
        emulator
            .stats()
            .snapshot()
            .count(Some(TITAN), Some("Converse"), Some(200)),
        1
    );
}

#[tokio::test]
async fn a_named_profile_supplies_the_credentials() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let dir = std::env::temp_dir().join(format!("dfb-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config_file = dir.join("config");
    let credentials_file = dir.join("credentials");
    std::fs::write(&config_file, "[profile analytics]\nregion = us-west-2\n").expect("write");
    std::fs::write(
        &credentials_file,
        format!(
            "[analytics]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    )
    .expect("write");
    let url = emulator.url().to_string();
    tokio::task::spawn_blocking(move || {
        run_child(
            "client_engine::child_profile",
            &[
                ("AWS_CONFIG_FILE", config_file.display().to_string()),
                (
                    "AWS_SHARED_CREDENTIALS_FILE",
                    credentials_file.display().to_string(),
                ),
                ("EMULATOR_URL", url),
            ],
        );
    })
    .await
    .expect("child finished");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        emulator
            .stats()
            .snapshot()
            .count(Some(TITAN), Some("Converse"), Some(200)),
        1
    );
}

async fn child_engine(credentials: CredentialSource, expected_region: &str) {
    let url = std::env::var("EMULATOR_URL").expect("run by its parent test");
    let config = EngineConfig {
        endpoint_url: Some(url),
        credentials,
        ..EngineConfig::default()
    };
    let engine = Engine::connect("chain", config)
        .await
        .expect("credentials from the chain");
    assert_eq!(engine.region(), expected_region);
    let target = ModelTarget {
        model_id: TITAN.into(),
        api: Api::Converse,
    };
    let results = engine
        .generate(&target, &prompts(["chain".to_string()]))
        .await;
    assert_eq!(
        answers(&results),
        vec![Some(expected_answer(TITAN, 1, 1, 0, "chain"))]
    );
}

#[tokio::test]
#[ignore = "run in a child process by the_standard_credential_chain_is_used_when_no_keys_are_given"]
async fn child_default_chain() {
    child_engine(CredentialSource::DefaultChain, "eu-west-1").await;
}

#[tokio::test]
#[ignore = "run in a child process by a_named_profile_supplies_the_credentials"]
async fn child_profile() {
    child_engine(CredentialSource::Profile("analytics".into()), "us-west-2").await;
}

/// With `verify_credentials = false` the chain is resolved at the first call, once: its
/// fingerprint scopes the cache, so the same prompt again is a cache hit, not a request.
#[tokio::test]
async fn an_unverified_chain_is_resolved_at_the_first_call_and_its_answers_cached() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let url = emulator.url().to_string();
    tokio::task::spawn_blocking(move || {
        run_child(
            "client_engine::child_unverified_chain",
            &[
                ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
                ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
                ("EMULATOR_URL", url),
            ],
        );
    })
    .await
    .expect("child finished");
    let stats = emulator.stats().snapshot();
    assert_eq!(
        (
            stats.count(None, Some("ListFoundationModels"), None),
            stats.count(Some(TITAN), Some("Converse"), Some(200)),
            stats.total(),
        ),
        (0, 1, 1)
    );
}

#[tokio::test]
#[ignore = "run in a child process by an_unverified_chain_is_resolved_at_the_first_call_and_its_answers_cached"]
async fn child_unverified_chain() {
    let url = std::env::var("EMULATOR_URL").expect("run by its parent test");
    let config = EngineConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(url),
        verify_credentials: false,
        ..EngineConfig::default()
    };
    let engine = Engine::connect("chain", config)
        .await
        .expect("nothing is checked");
    assert_eq!(engine.credentials_used(), "default chain");
    let target = ModelTarget {
        model_id: TITAN.into(),
        api: Api::Converse,
    };
    for _ in 0..2 {
        let results = engine
            .generate(&target, &prompts(["unverified".to_string()]))
            .await;
        assert_eq!(
            answers(&results),
            vec![Some(expected_answer(TITAN, 1, 1, 0, "unverified"))]
        );
    }
    let usage = &engine.usage()[0];
    assert_eq!((usage.requests, usage.cache_hits), (1, 1));
}

#[tokio::test]
async fn a_thousand_prompts_with_fifty_distinct_send_fifty_requests() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let engine = engine(&emulator, |_| {}).await;
    let target = ModelTarget {
        model_id: TITAN.into(),
        api: Api::Converse,
    };
    let texts: Vec<String> = (0..1000).map(|i| format!("question {}", i % 50)).collect();
    let results = engine.generate(&target, &prompts(texts.clone())).await;
    let expected: Vec<Option<String>> = texts
        .iter()
        .map(|t| Some(expected_answer(TITAN, 1, 1, 0, t)))
        .collect();
    assert_eq!(answers(&results), expected);
    assert_eq!(
        emulator
            .stats()
            .snapshot()
            .count(Some(TITAN), Some("Converse"), None),
        50
    );
    let usage = &engine.usage()[0];
    assert_eq!(
        (usage.requests, usage.deduplicated, usage.cache_hits),
        (50, 950, 0)
    );

    // The same batch again is served from the cache.
    let again = engine.generate(&target, &prompts(texts)).await;
    assert_eq!(answers(&again), expected);
    assert_eq!(
        emulator
            .stats()
            .snapshot()
            .count(Some(TITAN), Some("Converse"), None),
        50
    );
    assert_eq!(engine.usage()[0].cache_hits, 50);
}

#[tokio::test]
async fn the_disk_cache_serves_a_new_engine() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let dir = std::env::temp_dir().join(format!("dfb-disk-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let target = ModelTarget {
        model_id: TITAN.into(),
        api: Api::Converse,
    };
    let texts: Vec<String> = (0..20).map(|i| format!("persisted {i}")).collect();
    let expected: Vec<Option<String>> = texts
        .iter()
        .map(|t| Some(expected_answer(TITAN, 1, 1, 0, t)))
        .collect();
    {
        let first = engine(&emulator, |c| c.cache_dir = Some(dir.clone())).await;
        assert_eq!(
            answers(&first.generate(&target, &prompts(texts.clone())).await),
            expected
        );
    }
    let second = engine(&emulator, |c| c.cache_dir = Some(dir.clone())).await;
    assert_eq!(
        answers(&second.generate(&target, &prompts(texts)).await),
        expected
    );
    assert_eq!(
        emulator
            .stats()
            .snapshot()
            .count(Some(TITAN), Some("Converse"), None),
        20
    );
    assert_eq!(second.usage()[0].cache_hits, 20);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An engine with a `cache_dir`, signing with `key` / `secret` in `region`.
async fn cached_engine(
    emulator: &Emulator,
    region: &str,
    key: &str,
    secret: &str,
    dir: &std::path::Path,
) -> Arc<Engine> {
    engine(emulator, |c| {
        c.region = Some(region.into());
        c.credentials = static_keys(key, secret, None);
        c.cache_dir = Some(dir.to_path_buf());
    })
    .await
}

/// Asks an engine three questions and one embedding, asserting the answers.
async fn ask_three_and_embed_one(engine: &Arc<Engine>) {
    let target = ModelTarget {
        model_id: TITAN.into(),
        api: Api::Converse,
    };
    let texts: Vec<String> = (0..3).map(|i| format!("scoped {i}")).collect();
    let expected: Vec<Option<String>> = texts
        .iter()
        .map(|t| Some(expected_answer(TITAN, 1, 1, 0, t)))
        .collect();
    assert_eq!(
        answers(&engine.generate(&target, &prompts(texts)).await),
        expected
    );
    let titan_embed = "amazon.titan-embed-text-v2:0";
    let vectors = engine
        .embed(
            titan_embed,
            &[Some("scoped".to_string())],
            &EmbedOptions::default(),
        )
        .await
        .expect("an embedding model");
    let got: Vec<Vec<f32>> = vectors
        .into_iter()
        .map(|v| v.expect("a row").expect("embedded"))
        .collect();
    assert_eq!(got, vec![embedding_for(titan_embed, "scoped", 1024, true)]);
}

/// `Converse` and `InvokeModel` (embedding) requests an emulator has served.
fn calls(emulator: &Emulator) -> (u64, u64) {
    let stats = emulator.stats().snapshot();
    (
        stats.count(Some(TITAN), Some("Converse"), None),
        stats.count(
            Some("amazon.titan-embed-text-v2:0"),
            Some("InvokeModel"),
            None,
        ),
    )
}

/// Regression: an answer cached against one endpoint was served, with zero requests, to an
/// engine with another endpoint, region or keys sharing its `cache_dir`. Each of those sends
/// its own requests; only the same endpoint, region and identity hit the cache.
#[tokio::test]
async fn a_shared_cache_dir_serves_only_the_same_endpoint_region_and_identity() {
    const OTHER_KEY: &str = "AKIDSECONDACCOUNT";
    const OTHER_SECRET: &str = "second/account/secret";
    let first = Emulator::start(EmulatorConfig {
        credentials: vec![
            StaticCredential::new(ACCESS_KEY, SECRET_KEY),
            StaticCredential::new(OTHER_KEY, OTHER_SECRET),
        ],
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let second = signed_emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();

    let original = cached_engine(&first, "us-east-1", ACCESS_KEY, SECRET_KEY, dir).await;
    ask_three_and_embed_one(&original).await;
    assert_eq!((calls(&first), calls(&second)), ((3, 1), (0, 0)));
    drop(original);

    // Another endpoint.
    let elsewhere = cached_engine(&second, "us-east-1", ACCESS_KEY, SECRET_KEY, dir).await;
    ask_three_and_embed_one(&elsewhere).await;
    assert_eq!((calls(&first), calls(&second)), ((3, 1), (3, 1)));

    // Another region.
    let other_region = cached_engine(&first, "eu-west-1", ACCESS_KEY, SECRET_KEY, dir).await;
    ask_three_and_embed_one(&other_region).await;
    assert_eq!(calls(&first), (6, 2));

    // Another identity.
    let other_keys = cached_engine(&first, "us-east-1", OTHER_KEY, OTHER_SECRET, dir).await;
    ask_three_and_embed_one(&other_keys).await;
    assert_eq!(calls(&first), (9, 3));

    // The same endpoint, region and keys: a new engine reads the disk cache, then its memory.
    let same = cached_engine(&first, "us-east-1", ACCESS_KEY, SECRET_KEY, dir).await;
    ask_three_and_embed_one(&same).await;
    ask_three_and_embed_one(&same).await;
    assert_eq!((calls(&first), calls(&second)), ((9, 3), (3, 1)));
    let hits: Vec<(String, u64, u64)> = same
        .usage()
        .into_iter()
        .map(|u| (u.model, u.requests, u.cache_hits))
        .collect();
    assert_eq!(
        hits,
        vec![
            ("amazon.titan-embed-text-v2:0".to_string(), 0, 2),
            (TITAN.to_string(), 0, 6),
        ]
    );
}

#[tokio::test]
async fn faults_are_retried_and_every_row_keeps_its_own_answer() {
    let emulator = signed_emulator(EmulatorConfig {
        load: LoadModel {
            faults: FaultRates {
                throttle: 0.2,
                internal: 0.05,
                drop_connection: 0.03,
                ..FaultRates::default()
            },
            seed: 5,
            ..LoadModel::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let engine = engine(&emulator, |c| {
        c.max_concurrency = 16;
        c.max_retries = 12;
    })
    .await;
    let target = ModelTarget {
        model_id: TITAN.into(),
        api: Api::Converse,
    };
    let texts: Vec<String> = (0..300).map(|i| format!("row {i}")).collect();
    let results = engine.generate(&target, &prompts(texts.clone())).await;
    let expected: Vec<Option<String>> = texts
        .iter()
        .map(|t| Some(expected_answer(TITAN, 1, 1, 0, t)))
        .collect();
    assert_eq!(answers(&results), expected);

    let stats = emulator.stats().snapshot();
    let usage = &engine.usage()[0];
    let faults: u64 = stats.faults.values().sum();
    assert!(faults > 50, "the plan injected {faults} faults");
    assert_eq!(
        usage.requests,
        stats.count(Some(TITAN), Some("Converse"), None)
    );
    assert_eq!(usage.retries, faults);
    assert_eq!(usage.throttles, stats.fault_count("throttle"));
    assert_eq!((usage.failures, usage.requests - usage.retries), (0, 300));
}

#[tokio::test]
async fn the_limiter_converges_under_a_token_quota_without_failing_rows() {
    let emulator = signed_emulator(EmulatorConfig {
        load: LoadModel {
            tokens_per_minute: Some(60_000),
            quota_window: Duration::from_secs(1),
            ..LoadModel::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let engine = engine(&emulator, |c| {
        c.max_concurrency = 64;
        c.max_retries = 30;
    })
    .await;
    let target = ModelTarget {
        model_id: TITAN.into(),
        api: Api::Converse,
    };
    let params = InferenceParams {
        max_tokens: Some(100),
        ..InferenceParams::default()
    };
    let requests: Vec<Option<TextRequest>> = (0..150)
        .map(|i| Some(TextRequest::prompt(format!("quota {i}"), params.clone())))
        .collect();
    let results = engine.generate(&target, &requests).await;
    assert!(
        results.iter().all(|r| matches!(r, Some(Ok(_)))),
        "every row is answered"
    );
    let usage = &engine.usage()[0];
    let stats = emulator.stats().snapshot();
    assert_eq!(usage.failures, 0);
    assert!(stats.quota_throttles_tokens > 0, "the quota was hit");
    assert_eq!(usage.throttles, stats.quota_throttles_tokens);
    let limit = engine.limiter(TITAN).current_limit();
    assert!(limit < 64, "the limit adapted down, to {limit}");
}

#[tokio::test]
async fn in_flight_requests_never_exceed_max_concurrency() {
    let emulator = signed_emulator(EmulatorConfig {
        load: LoadModel {
            latency: Duration::from_millis(20),
            ..LoadModel::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let engine = engine(&emulator, |c| c.max_concurrency = 8).await;
    let target = ModelTarget {
        model_id: TITAN.into(),
        api: Api::Converse,
    };
    let results = engine
        .generate(&target, &prompts((0..120).map(|i| format!("c{i}"))))
        .await;
    assert!(results.iter().all(|r| matches!(r, Some(Ok(_)))));
    let peak = emulator.stats().snapshot().peak_in_flight;
    assert!((2..=8).contains(&peak), "peak in flight {peak}");
}

#[tokio::test]
async fn dropping_a_batch_stops_new_requests() {
    let emulator = signed_emulator(EmulatorConfig {
        load: LoadModel {
            latency: Duration::from_millis(200),
            ..LoadModel::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let engine = engine(&emulator, |c| c.max_concurrency = 4).await;
    let target = ModelTarget {
        model_id: TITAN.into(),
        api: Api::Converse,
    };
    let batch = prompts((0..100).map(|i| format!("cancel {i}")));
    let cancelled =
        tokio::time::timeout(Duration::from_millis(300), engine.generate(&target, &batch)).await;
    assert!(cancelled.is_err(), "the batch was still running");
    let at_cancel = emulator.stats().snapshot().total();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = emulator.stats().snapshot().total();
    assert_eq!(later, at_cancel, "no request started after the drop");
    assert!(
        at_cancel <= 12,
        "{at_cancel} requests for 300 ms at 4 × 200 ms"
    );
}

#[tokio::test]
async fn models_are_checked_before_any_query() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let engine = engine(&emulator, |_| {}).await;
    let info = engine
        .check_text_model("us.anthropic.claude-3-7-sonnet-20250219-v1:0")
        .await
        .expect("a text model");
    assert_eq!(
        (
            info.model_id.as_str(),
            info.provider.as_str(),
            info.output_modalities.clone()
        ),
        (
            "anthropic.claude-3-7-sonnet-20250219-v1:0",
            "Anthropic",
            vec!["TEXT".to_string()]
        )
    );
    let err = engine
        .check_text_model("amazon.titan-embed-text-v2:0")
        .await
        .expect_err("not text");
    assert_eq!(
        err.to_string(),
        "Model 'amazon.titan-embed-text-v2:0' produces EMBEDDING output, not TEXT: choose a text model (for example amazon.titan-text-premier-v1:0) to generate answers"
    );
    let err = engine
        .check_text_model("amazon.titan-text-nonexistent-v9")
        .await
        .expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "Model 'amazon.titan-text-nonexistent-v9' is not available through engine 'test_engine' in us-east-1 (ResourceNotFoundException: The model identifier amazon.titan-text-nonexistent-v9 is not found). Check model_id against https://docs.aws.amazon.com/bedrock/latest/userguide/model-ids.html and the models enabled for the account."
    );
}

#[tokio::test]
async fn usage_estimates_cost_from_tokens() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let engine = engine(&emulator, |_| {}).await;
    let target = ModelTarget {
        model_id: TITAN.into(),
        api: Api::Converse,
    };
    engine
        .generate(
            &target,
            &prompts(["What is the capital of Sweden?".to_string()]),
        )
        .await;
    let usage = &engine.usage()[0];
    assert_eq!(
        (
            usage.model.as_str(),
            usage.input_tokens,
            usage.output_tokens
        ),
        (TITAN, 8, 24)
    );
    let expected = (8.0 * 0.0005 + 24.0 * 0.0015) / 1000.0;
    assert!((usage.estimated_cost_usd.unwrap_or_default() - expected).abs() < 1e-15);
    engine.set_price(TITAN, 1.0, 1.0);
    assert_eq!(engine.usage()[0].estimated_cost_usd, Some(0.032));
}
