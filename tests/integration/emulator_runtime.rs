//! `Converse`, `ConverseStream`, errors, authentication, quotas and faults through the real
//! `aws-sdk-bedrockruntime` client.

use std::time::Duration;

use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::types::{
    ContentBlockDelta, ConversationRole, ConverseMetrics, ConverseStreamOutput as Event,
    InferenceConfiguration, StopReason, SystemContentBlock, Tool, ToolChoice, ToolConfiguration,
    ToolInputSchema, ToolSpecification,
};
use aws_smithy_types::Document;
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig, Fault, FaultRates, LoadModel};
use serde_json::json;

use crate::support::*;

const TITAN: &str = "amazon.titan-text-premier-v1:0";

/// The error code of a failed call, or how it failed when there was no service error.
fn outcome<E: ProvideErrorMetadata + std::fmt::Debug, R>(
    result: Result<R, SdkError<E, impl std::fmt::Debug>>,
) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        // A 200 whose body does not parse surfaces as a service error without a code.
        Err(SdkError::ServiceError(e)) => {
            e.err().code().unwrap_or("unparseable response").to_string()
        }
        Err(SdkError::DispatchFailure(_)) => "dispatch failure".to_string(),
        Err(SdkError::ResponseError(_)) => "response error".to_string(),
        Err(SdkError::TimeoutError(_)) => "timeout".to_string(),
        Err(other) => format!("other: {other:?}"),
    }
}

#[tokio::test]
async fn converse_and_converse_stream_give_the_same_answer() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let client = runtime(emulator.url());
    let question = "What is the capital of Sweden?";
    let out = client
        .converse()
        .model_id(TITAN)
        .messages(user(question))
        .send()
        .await
        .expect("converse succeeds");
    let expected = expected_answer(TITAN, 1, 1, 0, question);
    assert_eq!(converse_text(&out), expected);
    assert_eq!(out.stop_reason(), &StopReason::EndTurn);
    let usage = out.usage().expect("usage");
    assert_eq!((usage.input_tokens(), usage.output_tokens()), (8, 24));

    let mut stream = client
        .converse_stream()
        .model_id(TITAN)
        .messages(user(question))
        .send()
        .await
        .expect("converse-stream starts");
    let (mut text, mut deltas, mut events, mut stop, mut tokens) =
        (String::new(), 0, Vec::new(), None, None);
    while let Some(event) = stream.stream.recv().await.expect("stream event") {
        match &event {
            Event::MessageStart(_) => events.push("messageStart"),
            Event::ContentBlockDelta(d) => {
                if let Some(ContentBlockDelta::Text(t)) = d.delta() {
                    text.push_str(t);
                    deltas += 1;
                }
                if events.last() != Some(&"contentBlockDelta") {
                    events.push("contentBlockDelta");
                }
            }
            Event::ContentBlockStop(_) => events.push("contentBlockStop"),
            Event::MessageStop(m) => {
                stop = Some(m.stop_reason().clone());
                events.push("messageStop");
            }
            Event::Metadata(m) => {
                tokens = m.usage().map(|u| (u.input_tokens(), u.output_tokens()));
                events.push("metadata");
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(text, expected);
    assert!(
        deltas > 1,
        "the answer arrives in several deltas, got {deltas}"
    );
    assert_eq!(
        events,
        vec![
            "messageStart",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata"
        ]
    );
    assert_eq!(stop, Some(StopReason::EndTurn));
    assert_eq!(tokens, Some((8, 24)));
}

#[tokio::test]
async fn the_answer_reveals_messages_blocks_and_system() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let client = runtime(emulator.url());
    let model = "anthropic.claude-3-haiku-20240307-v1:0";
    let out = client
        .converse()
        .model_id(model)
        .system(SystemContentBlock::Text("Be brief.".into()))
        .messages(user("What is the capital of Sweden?"))
        .messages(turn(ConversationRole::Assistant, "Stockholm."))
        .messages(
            aws_sdk_bedrockruntime::types::Message::builder()
                .role(ConversationRole::User)
                .content(aws_sdk_bedrockruntime::types::ContentBlock::Text(
                    "What about Norway?".into(),
                ))
                .content(aws_sdk_bedrockruntime::types::ContentBlock::Text(
                    "One word.".into(),
                ))
                .build()
                .expect("message"),
        )
        .send()
        .await
        .expect("converse succeeds");
    assert_eq!(
        converse_text(&out),
        expected_answer(model, 3, 4, 1, "What about Norway?\nOne word.")
    );
}

#[tokio::test]
async fn inference_parameters_arrive_as_set_and_limit_the_answer() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let client = runtime(emulator.url());
    let out = client
        .converse()
        .model_id(TITAN)
        .messages(user("Count: one two three"))
        .inference_config(
            InferenceConfiguration::builder()
                .max_tokens(5)
                .temperature(0.5)
                .top_p(0.25)
                .stop_sequences("Human:")
                .build(),
        )
        .send()
        .await
        .expect("converse succeeds");
    assert_eq!(converse_text(&out), "Emulated amazon.tita");
    assert_eq!(out.stop_reason(), &StopReason::MaxTokens);
    let recent = emulator.stats().snapshot().recent;
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].operation, "Converse");
    assert_eq!(recent[0].model_id, TITAN);
    assert_eq!(
        recent[0].body,
        json!({
            "messages": [{"role": "user", "content": [{"text": "Count: one two three"}]}],
            "inferenceConfig": {"maxTokens": 5, "temperature": 0.5, "topP": 0.25, "stopSequences": ["Human:"]}
        })
    );

    let out = client
        .converse()
        .model_id(TITAN)
        .messages(user("one two three"))
        .inference_config(
            InferenceConfiguration::builder()
                .stop_sequences("two")
                .build(),
        )
        .send()
        .await
        .expect("converse succeeds");
    assert_eq!(converse_text(&out), expected_answer(TITAN, 1, 1, 0, "one "));
    assert_eq!(out.stop_reason(), &StopReason::StopSequence);
}

#[tokio::test]
async fn a_forced_tool_returns_input_shaped_by_its_schema() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let client = runtime(emulator.url());
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}, "words": {"type": "integer"}}});
    let tool = ToolSpecification::builder()
        .name("record")
        .input_schema(ToolInputSchema::Json(to_document(&schema)))
        .build()
        .expect("tool spec");
    let out = client
        .converse()
        .model_id("amazon.nova-micro-v1:0")
        .messages(user("Ada Lovelace"))
        .tool_config(
            ToolConfiguration::builder()
                .tools(Tool::ToolSpec(tool))
                .tool_choice(ToolChoice::Tool(
                    aws_sdk_bedrockruntime::types::SpecificToolChoice::builder()
                        .name("record")
                        .build()
                        .expect("choice"),
                ))
                .build()
                .expect("tool config"),
        )
        .send()
        .await
        .expect("converse succeeds");
    assert_eq!(out.stop_reason(), &StopReason::ToolUse);
    let message = out
        .output()
        .and_then(|o| o.as_message().ok())
        .expect("message");
    let call = message.content()[0].as_tool_use().expect("a toolUse block");
    assert_eq!(call.name(), "record");
    let mut expected = std::collections::HashMap::new();
    expected.insert("name".to_string(), Document::String("Ada Lovelace".into()));
    expected.insert(
        "words".to_string(),
        Document::Number(aws_smithy_types::Number::PosInt(2)),
    );
    assert_eq!(call.input(), &Document::Object(expected));
}

fn to_document(v: &serde_json::Value) -> Document {
    match v {
        serde_json::Value::Null => Document::Null,
        serde_json::Value::Bool(b) => Document::Bool(*b),
        serde_json::Value::Number(n) => Document::Number(aws_smithy_types::Number::Float(
            n.as_f64().unwrap_or_default(),
        )),
        serde_json::Value::String(s) => Document::String(s.clone()),
        serde_json::Value::Array(a) => Document::Array(a.iter().map(to_document).collect()),
        serde_json::Value::Object(o) => {
            Document::Object(o.iter().map(|(k, v)| (k.clone(), to_document(v))).collect())
        }
    }
}

#[tokio::test]
async fn every_error_type_arrives_as_the_sdks_typed_error() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let client = runtime(emulator.url());
    let mut seen = Vec::new();
    for name in [
        "ValidationException",
        "AccessDeniedException",
        "ResourceNotFoundException",
        "ModelTimeoutException",
        "ModelErrorException",
        "ThrottlingException",
        "ModelNotReadyException",
        "InternalServerException",
        "ServiceUnavailableException",
    ] {
        let err = client
            .converse()
            .model_id(TITAN)
            .messages(user(&format!("trigger [[emulate:{name}]]")))
            .send()
            .await
            .expect_err("the directive fails the call")
            .into_service_error();
        let typed = [
            err.is_validation_exception(),
            err.is_access_denied_exception(),
            err.is_resource_not_found_exception(),
            err.is_model_timeout_exception(),
            err.is_model_error_exception(),
            err.is_throttling_exception(),
            err.is_model_not_ready_exception(),
            err.is_internal_server_exception(),
            err.is_service_unavailable_exception(),
        ];
        let index = typed.iter().position(|t| *t);
        seen.push((name, index, err.code().map(str::to_string)));
    }
    let expected: Vec<_> = seen
        .iter()
        .enumerate()
        .map(|(i, (name, ..))| (*name, Some(i), Some(name.to_string())))
        .collect();
    assert_eq!(seen, expected);

    let err = client
        .invoke_model()
        .model_id(TITAN)
        .body(aws_smithy_types::Blob::new(
            r#"{"inputText": "[[emulate:ServiceQuotaExceededException]]"}"#,
        ))
        .send()
        .await
        .expect_err("quota error")
        .into_service_error();
    assert!(err.is_service_quota_exceeded_exception(), "{err:?}");
    assert_eq!(
        err.message(),
        Some("Your request exceeds the service quota for your account.")
    );
}

#[tokio::test]
async fn validation_errors_carry_the_services_messages() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let client = runtime(emulator.url());
    let message =
        |r: Result<_, SdkError<aws_sdk_bedrockruntime::operation::converse::ConverseError, _>>| {
            let e = r.expect_err("validation fails").into_service_error();
            assert!(e.is_validation_exception(), "{e:?}");
            e.message().unwrap_or_default().to_string()
        };
    let too_hot = client
        .converse()
        .model_id(TITAN)
        .messages(user("hi"))
        .inference_config(InferenceConfiguration::builder().temperature(1.5).build())
        .send()
        .await;
    assert_eq!(
        message(too_hot),
        "1 validation error detected: Value '1.5' at 'inferenceConfig.temperature' failed to satisfy constraint: Member must have value less than or equal to 1"
    );
    let no_tokens = client
        .converse()
        .model_id(TITAN)
        .messages(user("hi"))
        .inference_config(InferenceConfiguration::builder().max_tokens(0).build())
        .send()
        .await;
    assert_eq!(
        message(no_tokens),
        "1 validation error detected: Value '0' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1"
    );
    let unknown = client
        .converse()
        .model_id("amazon.unknown-v1:0")
        .messages(user("hi"))
        .send()
        .await;
    assert_eq!(
        message(unknown),
        "The provided model identifier is invalid."
    );
    let embedding = client
        .converse()
        .model_id("amazon.titan-embed-text-v2:0")
        .messages(user("hi"))
        .send()
        .await;
    assert_eq!(
        message(embedding),
        "This action doesn't support the model that you provided. Try again with a supported text or chat model."
    );
    let profile_only = client
        .converse()
        .model_id("anthropic.claude-3-7-sonnet-20250219-v1:0")
        .messages(user("hi"))
        .send()
        .await;
    assert_eq!(
        message(profile_only),
        "Invocation of model ID anthropic.claude-3-7-sonnet-20250219-v1:0 with on-demand throughput isn\u{2019}t supported. Retry your request with the ID or ARN of an inference profile that contains this model."
    );
}

#[tokio::test]
async fn inference_profiles_and_arns_resolve_to_their_model() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let client = runtime(emulator.url());
    let base = "anthropic.claude-3-7-sonnet-20250219-v1:0";
    for id in [
        format!("us.{base}"),
        format!("global.{base}"),
        format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.{base}"),
        format!("arn:aws:bedrock:us-east-1::foundation-model/{TITAN}"),
    ] {
        let out = client
            .converse()
            .model_id(&id)
            .messages(user("hi"))
            .send()
            .await;
        let out = out.unwrap_or_else(|e| panic!("{id}: {e:?}"));
        let expected_model = if id.ends_with(TITAN) { TITAN } else { base };
        assert_eq!(
            converse_text(&out),
            expected_answer(expected_model, 1, 1, 0, "hi"),
            "{id}"
        );
    }
    let snapshot = emulator.stats().snapshot();
    assert_eq!(snapshot.count(Some(base), Some("Converse"), Some(200)), 3);
    assert_eq!(snapshot.count(Some(TITAN), Some("Converse"), Some(200)), 1);
}

#[tokio::test]
async fn signatures_are_verified_against_the_configured_keys() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let call = |creds| {
        let client = runtime_with(emulator.url(), creds);
        async move {
            outcome(
                client
                    .converse()
                    .model_id(TITAN)
                    .messages(user("hi"))
                    .send()
                    .await,
            )
        }
    };
    assert_eq!(call(credentials(ACCESS_KEY, SECRET_KEY, None)).await, "ok");
    assert_eq!(
        call(credentials(ACCESS_KEY, "wrong-secret", None)).await,
        "InvalidSignatureException"
    );
    assert_eq!(
        call(credentials("AKIDUNKNOWN", SECRET_KEY, None)).await,
        "UnrecognizedClientException"
    );

    // Temporary credentials: the session token must come along.
    let temporary = Emulator::start(EmulatorConfig {
        credentials: vec![
            datafusion_bedrock::emulator::StaticCredential::new("ASIATEMP", "temp-secret")
                .with_session_token("session-token-1"),
        ],
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts");
    let call = |token: Option<&str>| {
        let client = runtime_with(
            temporary.url(),
            credentials("ASIATEMP", "temp-secret", token),
        );
        async move {
            outcome(
                client
                    .converse()
                    .model_id(TITAN)
                    .messages(user("hi"))
                    .send()
                    .await,
            )
        }
    };
    assert_eq!(call(Some("session-token-1")).await, "ok");
    assert_eq!(
        call(Some("session-token-2")).await,
        "UnrecognizedClientException"
    );
    assert_eq!(call(None).await, "UnrecognizedClientException");
}

#[tokio::test]
async fn bedrock_api_keys_are_accepted_as_bearer_tokens() {
    let emulator = Emulator::start(EmulatorConfig {
        api_keys: vec!["bedrock-api-key-1".into()],
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts");
    let call = |key: &str| {
        let config = aws_sdk_bedrockruntime::Config::builder()
            .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
            .region(aws_sdk_bedrockruntime::config::Region::new("us-east-1"))
            .endpoint_url(emulator.url())
            .bearer_token(aws_sdk_bedrockruntime::config::Token::new(key, None))
            .auth_scheme_preference([
                aws_smithy_runtime_api::client::auth::http::HTTP_BEARER_AUTH_SCHEME_ID,
            ])
            .build();
        let client = aws_sdk_bedrockruntime::Client::from_conf(config);
        async move {
            outcome(
                client
                    .converse()
                    .model_id(TITAN)
                    .messages(user("hi"))
                    .send()
                    .await,
            )
        }
    };
    assert_eq!(call("bedrock-api-key-1").await, "ok");
    assert_eq!(call("bedrock-api-key-2").await, "AccessDeniedException");
    let recent = emulator.stats().snapshot();
    assert_eq!(recent.count(None, Some("Converse"), Some(403)), 1);
}

#[tokio::test]
async fn request_quota_throttles_then_recovers() {
    let emulator = signed_emulator(EmulatorConfig {
        load: LoadModel {
            requests_per_minute: Some(60),
            quota_window: Duration::from_secs(3),
            ..LoadModel::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let client = runtime(emulator.url());
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        outcomes.push(outcome(
            client
                .converse()
                .model_id(TITAN)
                .messages(user("hi"))
                .send()
                .await,
        ));
    }
    assert_eq!(outcomes, vec!["ok", "ok", "ok", "ThrottlingException"]);
    // One request a second refills the bucket.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        outcome(
            client
                .converse()
                .model_id(TITAN)
                .messages(user("hi"))
                .send()
                .await
        ),
        "ok"
    );
    let snapshot = emulator.stats().snapshot();
    assert_eq!(snapshot.quota_throttles_requests, 1);
    assert_eq!(snapshot.count(Some(TITAN), Some("Converse"), Some(429)), 1);
    // Another model has its own quota.
    assert_eq!(
        outcome(
            client
                .converse()
                .model_id("amazon.nova-micro-v1:0")
                .messages(user("hi"))
                .send()
                .await
        ),
        "ok"
    );
}

#[tokio::test]
async fn token_quota_reserves_max_tokens_and_recovers() {
    let emulator = signed_emulator(EmulatorConfig {
        load: LoadModel {
            tokens_per_minute: Some(6000),
            quota_window: Duration::from_secs(1),
            ..LoadModel::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let client = runtime(emulator.url());
    // The bucket holds 100 tokens; each call reserves 1 input + 90 max tokens and uses 18.
    let call = || async {
        let err = client
            .converse()
            .model_id(TITAN)
            .messages(user("hi"))
            .inference_config(InferenceConfiguration::builder().max_tokens(90).build())
            .send()
            .await;
        match err {
            Ok(_) => "ok".to_string(),
            Err(e) => e
                .into_service_error()
                .message()
                .unwrap_or_default()
                .to_string(),
        }
    };
    assert_eq!(call().await, "ok");
    assert_eq!(
        call().await,
        "Too many tokens, please wait before trying again."
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(call().await, "ok");
    let snapshot = emulator.stats().snapshot();
    assert_eq!(snapshot.quota_throttles_tokens, 1);
    assert_eq!((snapshot.input_tokens, snapshot.output_tokens), (2, 2 * 17));
}

#[tokio::test]
async fn injected_faults_follow_the_seeded_plan() {
    let load = LoadModel {
        faults: FaultRates {
            throttle: 0.15,
            internal: 0.05,
            unavailable: 0.05,
            timeout: 0.05,
            malformed: 0.05,
            drop_connection: 0.05,
        },
        seed: 42,
        ..LoadModel::default()
    };
    let emulator = signed_emulator(EmulatorConfig {
        load: load.clone(),
        ..EmulatorConfig::default()
    })
    .await;
    let client = runtime(emulator.url());
    let n = 200;
    let mut seen = Vec::new();
    for i in 0..n {
        let result = client
            .converse()
            .model_id(TITAN)
            .messages(user(&format!("question {i}")))
            .send()
            .await;
        seen.push(outcome(result));
    }
    let expected: Vec<String> = (0..n)
        .map(|i| {
            match load.fault_for(i) {
                None => "ok",
                Some(Fault::Throttle) => "ThrottlingException",
                Some(Fault::Internal) => "InternalServerException",
                Some(Fault::Unavailable) => "ServiceUnavailableException",
                Some(Fault::Timeout) => "ModelTimeoutException",
                Some(Fault::Malformed) => "unparseable response",
                Some(Fault::DropConnection) => "dispatch failure",
            }
            .to_string()
        })
        .collect();
    assert_eq!(seen, expected);
    let faults = emulator.stats().snapshot().faults;
    let planned = |f: Fault| (0..n).filter(|i| load.fault_for(*i) == Some(f)).count() as u64;
    let mut expected_faults = std::collections::BTreeMap::new();
    for f in [
        Fault::Throttle,
        Fault::Internal,
        Fault::Unavailable,
        Fault::Timeout,
        Fault::Malformed,
        Fault::DropConnection,
    ] {
        if planned(f) > 0 {
            expected_faults.insert(f.name().to_string(), planned(f));
        }
    }
    assert_eq!(faults, expected_faults);
    // The plan honours the rates: 40% faults in all, 15% throttles.
    let total: u64 = faults.values().sum();
    assert!((60..=100).contains(&total), "{total} faults of {n}");
    assert!(
        (15..=45).contains(&planned(Fault::Throttle)),
        "{}",
        planned(Fault::Throttle)
    );
}

#[tokio::test]
async fn peak_in_flight_counts_concurrent_requests() {
    let emulator = signed_emulator(EmulatorConfig {
        load: LoadModel {
            latency: Duration::from_millis(300),
            ..LoadModel::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let client = runtime(emulator.url());
    let calls = (0..5).map(|i| {
        let client = client.clone();
        async move {
            client
                .converse()
                .model_id(TITAN)
                .messages(user(&format!("q{i}")))
                .send()
                .await
        }
    });
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    let snapshot = emulator.stats().snapshot();
    assert_eq!((snapshot.peak_in_flight, snapshot.in_flight), (5, 0));
    emulator.stats().reset();
    assert_eq!(emulator.stats().snapshot().peak_in_flight, 0);
}

#[tokio::test]
async fn latency_jitter_and_per_token_time_are_applied() {
    let load = LoadModel {
        latency: Duration::from_millis(40),
        jitter: Duration::from_millis(30),
        per_output_token: Duration::from_millis(2),
        seed: 11,
        ..LoadModel::default()
    };
    let emulator = signed_emulator(EmulatorConfig {
        load: load.clone(),
        ..EmulatorConfig::default()
    })
    .await;
    let client = runtime(emulator.url());
    for sequence in 0..3 {
        let out = client
            .converse()
            .model_id(TITAN)
            .messages(user("hi"))
            .send()
            .await
            .expect("converse");
        let reported = out
            .metrics()
            .map(ConverseMetrics::latency_ms)
            .expect("metrics");
        // 17 output tokens at 2 ms each on top of the seeded first-byte delay: a lower bound,
        // since the server may only sleep longer than asked.
        let floor = i64::try_from(
            (load.first_byte_delay(sequence) + Duration::from_millis(2 * 17)).as_millis(),
        )
        .expect("the floor fits in i64 milliseconds");
        assert!(
            reported >= floor,
            "request {sequence}: {reported} ms < {floor} ms"
        );
        assert!(load.first_byte_delay(sequence) < Duration::from_millis(70));
    }
}
