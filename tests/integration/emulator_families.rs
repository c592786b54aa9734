//! Native `InvokeModel` bodies of every family, their response streams, embeddings and
//! `CountTokens`, through the real `aws-sdk-bedrockruntime` client.

use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
use aws_sdk_bedrockruntime::types::{
    ConverseTokensRequest, CountTokensInput, InvokeModelTokensRequest, ResponseStream,
};
use aws_smithy_types::Blob;
use datafusion_bedrock::emulator::{EmulatorConfig, count_text_tokens, embedding_for};
use serde_json::{Value, json};

use crate::support::*;

/// One family's request and where its answer text sits in the response and in stream chunks.
struct Case {
    model: &'static str,
    body: Value,
    answer_at: &'static str,
    chunk_text_at: &'static str,
    expected_text: &'static str,
    messages: usize,
    system: usize,
}

fn cases() -> Vec<Case> {
    let q = "Name a color.";
    vec![
        Case {
            model: "amazon.titan-text-premier-v1:0",
            body: json!({"inputText": q, "textGenerationConfig": {"maxTokenCount": 512, "temperature": 0.5, "topP": 0.9, "stopSequences": []}}),
            answer_at: "/results/0/outputText",
            chunk_text_at: "/outputText",
            expected_text: q,
            messages: 1,
            system: 0,
        },
        Case {
            model: "amazon.nova-micro-v1:0",
            body: json!({"schemaVersion": "messages-v1", "system": [{"text": "Be brief."}], "messages": [{"role": "user", "content": [{"text": q}]}], "inferenceConfig": {"max_new_tokens": 300, "top_k": 20}}),
            answer_at: "/output/message/content/0/text",
            chunk_text_at: "/contentBlockDelta/delta/text",
            expected_text: q,
            messages: 1,
            system: 1,
        },
        Case {
            model: "anthropic.claude-3-haiku-20240307-v1:0",
            body: json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 300, "system": "Be brief.", "messages": [
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]},
                {"role": "user", "content": [{"type": "text", "text": q}]}
            ]}),
            answer_at: "/content/0/text",
            chunk_text_at: "/delta/text",
            expected_text: q,
            messages: 3,
            system: 1,
        },
        Case {
            model: "meta.llama3-8b-instruct-v1:0",
            body: json!({"prompt": format!("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{q}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"), "max_gen_len": 300, "temperature": 0.2}),
            answer_at: "/generation",
            chunk_text_at: "/generation",
            expected_text: q,
            messages: 1,
            system: 1,
        },
        Case {
            model: "mistral.mistral-7b-instruct-v0:2",
            body: json!({"prompt": format!("<s>[INST] Hello [/INST] Hi.</s>[INST] {q} [/INST]"), "max_tokens": 300, "stop": ["</s>"], "top_k": 50}),
            answer_at: "/outputs/0/text",
            chunk_text_at: "/outputs/0/text",
            expected_text: q,
            messages: 3,
            system: 0,
        },
        Case {
            model: "cohere.command-r-v1:0",
            body: json!({"message": q, "chat_history": [{"role": "USER", "message": "Hello"}, {"role": "CHATBOT", "message": "Hi."}], "preamble": "Be brief.", "max_tokens": 300, "p": 0.5}),
            answer_at: "/text",
            chunk_text_at: "/text",
            expected_text: q,
            messages: 3,
            system: 1,
        },
        Case {
            model: "ai21.jamba-1-5-mini-v1:0",
            body: json!({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}], "max_tokens": 300, "temperature": 1.2}),
            answer_at: "/choices/0/message/content",
            chunk_text_at: "/choices/0/delta/content",
            expected_text: q,
            messages: 1,
            system: 1,
        },
    ]
}

#[tokio::test]
async fn every_family_round_trips_its_native_body_and_stream() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let client = runtime(emulator.url());
    for case in cases() {
        let expected = expected_answer(
            case.model,
            case.messages,
            case.messages,
            case.system,
            case.expected_text,
        );
        let out = client
            .invoke_model()
            .model_id(case.model)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(case.body.to_string()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", case.model));
        let response: Value = serde_json::from_slice(out.body().as_ref()).expect("JSON response");
        assert_eq!(
            response.pointer(case.answer_at),
            Some(&json!(expected)),
            "{}: {response}",
            case.model
        );

        let mut stream = client
            .invoke_model_with_response_stream()
            .model_id(case.model)
            .body(Blob::new(case.body.to_string()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} stream: {e:?}", case.model));
        let mut chunks = Vec::new();
        while let Some(event) = stream.body.recv().await.expect("stream event") {
            if let ResponseStream::Chunk(part) = event {
                let bytes = part.bytes().expect("chunk bytes");
                chunks.push(serde_json::from_slice::<Value>(bytes.as_ref()).expect("JSON chunk"));
            }
        }
        let streamed: String = chunks
            .iter()
            .filter_map(|c| c.pointer(case.chunk_text_at).and_then(Value::as_str))
            .collect();
        assert_eq!(streamed, expected, "{} stream", case.model);
        assert!(chunks.len() > 2, "{}: {} chunks", case.model, chunks.len());
        let metrics = &chunks.last().expect("a last chunk")["amazon-bedrock-invocationMetrics"];
        assert_eq!(
            metrics["outputTokenCount"],
            json!(count_text_tokens(&expected)),
            "{}",
            case.model
        );
    }
    let snapshot = emulator.stats().snapshot();
    assert_eq!(snapshot.count(None, Some("InvokeModel"), Some(200)), 7);
    assert_eq!(
        snapshot.count(None, Some("InvokeModelWithResponseStream"), Some(200)),
        7
    );
    assert_eq!(snapshot.total(), 14);
}

#[tokio::test]
async fn native_schema_violations_are_validation_errors() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let client = runtime(emulator.url());
    let cases = [
        (
            "anthropic.claude-3-haiku-20240307-v1:0",
            json!({"anthropic_version": "bedrock-2023-05-31", "messages": [{"role": "user", "content": "hi"}]}),
            "Malformed input request: #: required key [max_tokens] not found, please reformat your input and try again.",
        ),
        (
            "amazon.titan-text-premier-v1:0",
            json!({"inputText": "hi", "textGenerationConfig": {"temperature": 1.5}}),
            "Malformed input request: #/textGenerationConfig/temperature: 1.5 is not less or equal to 1, please reformat your input and try again.",
        ),
        (
            "meta.llama3-8b-instruct-v1:0",
            json!({"prompt": "hi", "top_p": -1}),
            "Malformed input request: #/top_p: -1 is not greater or equal to 0, please reformat your input and try again.",
        ),
        (
            "amazon.titan-text-premier-v1:0",
            json!({"inputText": "hi", "dimensions": 256}),
            "Malformed input request: #: extraneous key [dimensions] is not permitted, please reformat your input and try again.",
        ),
        (
            "amazon.titan-embed-text-v2:0",
            json!({"inputText": ""}),
            "Malformed input request: expected minLength: 1, actual: 0, please reformat your input and try again.",
        ),
    ];
    for (model, body, message) in cases {
        let err = client
            .invoke_model()
            .model_id(model)
            .body(Blob::new(body.to_string()))
            .send()
            .await
            .expect_err("invalid body")
            .into_service_error();
        assert!(err.is_validation_exception(), "{model}: {err:?}");
        assert_eq!(err.message(), Some(message), "{model}");
    }
    let err = client
        .invoke_model_with_response_stream()
        .model_id("amazon.titan-embed-text-v2:0")
        .body(Blob::new(r#"{"inputText": "hi"}"#))
        .send()
        .await
        .expect_err("embeddings do not stream")
        .into_service_error();
    assert_eq!(
        err.message(),
        Some("The model is unsupported for streaming.")
    );
}

#[tokio::test]
async fn titan_embeddings_are_deterministic_vectors_of_the_requested_size() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let client = runtime(emulator.url());
    let model = "amazon.titan-embed-text-v2:0";
    let text = "The quick brown fox";
    for (dimensions, normalize) in [(256, true), (512, true), (1024, false)] {
        let body = json!({"inputText": text, "dimensions": dimensions, "normalize": normalize});
        let out = client
            .invoke_model()
            .model_id(model)
            .body(Blob::new(body.to_string()))
            .send()
            .await
            .expect("embedding");
        let response: Value = serde_json::from_slice(out.body().as_ref()).expect("JSON");
        let vector: Vec<f32> =
            serde_json::from_value(response["embedding"].clone()).expect("floats");
        assert_eq!(vector, embedding_for(model, text, dimensions, normalize));
        assert_eq!(response["inputTextTokenCount"], json!(5));
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if normalize {
            assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        } else {
            assert!(
                norm > 1.5,
                "an unnormalized sum of four word vectors, got {norm}"
            );
        }
    }
}

#[tokio::test]
async fn cohere_embeds_up_to_96_texts_a_call() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let client = runtime(emulator.url());
    let model = "cohere.embed-english-v3";
    let texts: Vec<String> = (0..96).map(|i| format!("document number {i}")).collect();
    let body = json!({"texts": texts, "input_type": "search_document", "truncate": "END"});
    let out = client
        .invoke_model()
        .model_id(model)
        .body(Blob::new(body.to_string()))
        .send()
        .await
        .expect("embeddings");
    let response: Value = serde_json::from_slice(out.body().as_ref()).expect("JSON");
    let vectors: Vec<Vec<f32>> =
        serde_json::from_value(response["embeddings"].clone()).expect("floats");
    let expected: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| embedding_for(model, t, 1024, true))
        .collect();
    assert_eq!(vectors, expected);
    assert_eq!(response["texts"], json!(texts));

    let too_many: Vec<String> = (0..97).map(|i| format!("t{i}")).collect();
    let err = client
        .invoke_model()
        .model_id(model)
        .body(Blob::new(
            json!({"texts": too_many, "input_type": "search_document"}).to_string(),
        ))
        .send()
        .await
        .expect_err("97 texts are too many")
        .into_service_error();
    assert_eq!(
        err.message(),
        Some(
            "Malformed input request: #/texts: expected maximum item count: 96, found: 97, please reformat your input and try again."
        )
    );
}

#[tokio::test]
async fn count_tokens_counts_converse_and_native_inputs() {
    let emulator = signed_emulator(EmulatorConfig::default()).await;
    let client = runtime(emulator.url());
    let model = "anthropic.claude-3-5-haiku-20241022-v1:0";
    let converse = ConverseTokensRequest::builder()
        .messages(user("What is the capital of Sweden?"))
        .build();
    let out = client
        .count_tokens()
        .model_id(model)
        .input(CountTokensInput::Converse(converse))
        .send()
        .await
        .expect("count tokens");
    assert_eq!(out.input_tokens(), 8);
    let native = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": [{"role": "user", "content": "12345678"}]});
    let out = client
        .count_tokens()
        .model_id(model)
        .input(CountTokensInput::InvokeModel(
            InvokeModelTokensRequest::builder()
                .body(Blob::new(native.to_string()))
                .build()
                .expect("body set"),
        ))
        .send()
        .await
        .expect("count tokens");
    assert_eq!(out.input_tokens(), 2);
    assert_eq!(
        emulator
            .stats()
            .snapshot()
            .count(Some(model), Some("CountTokens"), Some(200)),
        2
    );
}
