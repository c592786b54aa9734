//! The control plane through the real `aws-sdk-bedrock` client, the test routes, shutdown, and
//! the `emulator` subcommand.

use aws_sdk_bedrock::error::ProvideErrorMetadata;
use aws_sdk_bedrock::types::{
    FoundationModelLifecycle, FoundationModelLifecycleStatus, FoundationModelSummary,
    InferenceType, ModelModality,
};
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn list_foundation_models_applies_its_filters() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let client = control(emulator.url());
    let all = client.list_foundation_models().send().await.expect("list");
    assert_eq!(
        all.model_summaries().len(),
        datafusion_bedrock::emulator::catalog().len()
    );

    let embeddings = client
        .list_foundation_models()
        .by_output_modality(ModelModality::Embedding)
        .send()
        .await
        .expect("list embeddings");
    let ids: Vec<&str> = embeddings
        .model_summaries()
        .iter()
        .map(FoundationModelSummary::model_id)
        .collect();
    assert_eq!(
        ids,
        vec![
            "amazon.titan-embed-text-v2:0",
            "amazon.titan-embed-text-v1",
            "cohere.embed-english-v3",
            "cohere.embed-multilingual-v3"
        ]
    );

    let meta = client
        .list_foundation_models()
        .by_provider("meta")
        .by_inference_type(InferenceType::OnDemand)
        .send()
        .await
        .expect("list meta");
    let ids: Vec<&str> = meta
        .model_summaries()
        .iter()
        .map(FoundationModelSummary::model_id)
        .collect();
    assert_eq!(
        ids,
        vec![
            "meta.llama3-8b-instruct-v1:0",
            "meta.llama3-70b-instruct-v1:0",
            "meta.llama3-1-8b-instruct-v1:0",
            "meta.llama3-1-70b-instruct-v1:0"
        ]
    );
}

#[tokio::test]
async fn get_foundation_model_returns_details_or_not_found() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let client = control(emulator.url());
    let out = client
        .get_foundation_model()
        .model_identifier("amazon.titan-text-premier-v1:0")
        .send()
        .await
        .expect("get");
    let details = out.model_details().expect("details");
    assert_eq!(details.model_id(), "amazon.titan-text-premier-v1:0");
    assert_eq!(details.model_name(), Some("Titan Text G1 - Premier"));
    assert_eq!(details.provider_name(), Some("Amazon"));
    assert_eq!(details.input_modalities(), &[ModelModality::Text]);
    assert_eq!(details.output_modalities(), &[ModelModality::Text]);
    assert_eq!(
        details.inference_types_supported(),
        &[InferenceType::OnDemand]
    );
    assert_eq!(details.response_streaming_supported(), Some(true));
    assert_eq!(
        details
            .model_lifecycle()
            .map(FoundationModelLifecycle::status),
        Some(&FoundationModelLifecycleStatus::Active)
    );
    assert_eq!(
        details.model_arn(),
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-premier-v1:0"
    );

    let by_arn = client
        .get_foundation_model()
        .model_identifier("arn:aws:bedrock:us-east-1::foundation-model/cohere.embed-english-v3")
        .send()
        .await
        .expect("get by ARN");
    assert_eq!(
        by_arn
            .model_details()
            .map(|d| d.output_modalities().to_vec()),
        Some(vec![ModelModality::Embedding])
    );

    let err = client
        .get_foundation_model()
        .model_identifier("amazon.no-such-model-v1:0")
        .send()
        .await
        .expect_err("unknown model")
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    assert_eq!(
        err.message(),
        Some("The model identifier amazon.no-such-model-v1:0 is not found.")
    );
    let snapshot = emulator.stats().snapshot();
    assert_eq!(
        snapshot.count(None, Some("GetFoundationModel"), Some(200)),
        2
    );
    assert_eq!(
        snapshot.count(None, Some("GetFoundationModel"), Some(404)),
        1
    );
}

/// A bare HTTP/1.1 request, so the test routes are checked without any SDK in between.
async fn raw_http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn stats_and_reset_routes_serve_the_counters() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let client = runtime(emulator.url());
    client
        .converse()
        .model_id("amazon.nova-lite-v1:0")
        .messages(user("hello"))
        .send()
        .await
        .expect("converse");
    let (status, body) = raw_http(emulator.addr(), "GET", "/_emulator/stats").await;
    assert_eq!(status, 200);
    let counters: Value = serde_json::from_str(&body).expect("JSON stats");
    assert_eq!(
        counters["requests"],
        serde_json::json!([{"model": "amazon.nova-lite-v1:0", "operation": "Converse", "status": 200, "count": 1}])
    );
    assert_eq!(counters["peak_in_flight"], serde_json::json!(1));
    assert_eq!(
        counters["recent"][0]["body"]["messages"][0]["content"][0]["text"],
        serde_json::json!("hello")
    );

    let (status, _) = raw_http(emulator.addr(), "POST", "/_emulator/reset").await;
    assert_eq!(status, 200);
    assert_eq!(emulator.stats().snapshot().total(), 0);

    // Unsigned requests to the Bedrock routes are refused when credentials are configured.
    let (status, body) = raw_http(emulator.addr(), "GET", "/foundation-models").await;
    assert_eq!(
        (status, body.as_str()),
        (403, r#"{"message":"Missing Authentication Token"}"#)
    );
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("start");
    let addr = emulator.addr();
    assert_eq!(raw_http(addr, "GET", "/_emulator/stats").await.0, 200);
    emulator.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn the_emulator_subcommand_serves_until_killed() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_datafusion-bedrock"))
        .args([
            "emulator",
            "--port",
            "0",
            "--latency-ms",
            "5",
            "--seed",
            "3",
        ])
        .args([
            "--access-key-id",
            ACCESS_KEY,
            "--secret-access-key",
            SECRET_KEY,
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = lines
        .next_line()
        .await
        .expect("read")
        .expect("a first line");
    let url = first
        .strip_prefix("Bedrock emulator listening on ")
        .expect("the URL is announced")
        .to_string();
    let out = runtime(&url)
        .converse()
        .model_id("amazon.titan-text-express-v1")
        .messages(user("ping"))
        .send()
        .await
        .expect("converse against the subcommand");
    assert_eq!(
        converse_text(&out),
        expected_answer("amazon.titan-text-express-v1", 1, 1, 0, "ping")
    );
    child.kill().await.expect("kill");

    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_datafusion-bedrock"))
        .args(["emulator", "--throttle-rate", "1.5"])
        .output()
        .await
        .expect("runs");
    assert!(!bad.status.success());
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr),
        "Error: --throttle-rate 1.5 is outside 0..1: give a probability such as 0.05\n"
    );
}
