//! The emulator's S3 endpoint: DataFusion reads and writes `s3://` tables through
//! `object_store`'s real S3 client, in a session and in the shell (the object store registered
//! on the fly from the `AWS_*` settings, as in `datafusion-cli`), and a model answers the rows
//! of an S3 table.

use std::sync::Arc;

use datafusion_bedrock::emulator::{Emulator, EmulatorConfig, S3Server};
use object_store::aws::AmazonS3Builder;

use crate::cli::{command, manifest};
use crate::support::pretty;

/// An S3 store of `bucket` at `s3`, signing with the endpoint's keys.
fn store(s3: &S3Server, bucket: &str) -> Arc<object_store::aws::AmazonS3> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(s3.url())
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id(S3Server::ACCESS_KEY_ID)
            .with_secret_access_key(S3Server::SECRET_ACCESS_KEY)
            .build()
            .expect("S3 store"),
    )
}

#[tokio::test]
async fn s3_tables_are_written_read_and_answered_through_the_s3_endpoint() {
    let root = tempfile::tempdir().expect("temp dir");
    let s3 = S3Server::start(root.path(), &["data"]).await.expect("S3");
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let ctx = datafusion_bedrock::BedrockContext::new().with_default_endpoint(emulator.url());
    let session = ctx.session().clone();
    let bucket = url::Url::parse("s3://data").expect("url");
    session.register_object_store(&bucket, store(&s3, "data"));

    pretty(
        &session,
        "COPY (SELECT * FROM (VALUES (1, 'What is the capital of Sweden?'), (2, 'What is 2 + 2?')) AS v(id, question)) TO 's3://data/questions/q.parquet' STORED AS PARQUET",
    )
    .await;
    // The file is where S3 keeps it: under the bucket's directory.
    assert!(root.path().join("data/questions/q.parquet").is_file());

    for sql in [
        "CREATE EXTERNAL TABLE questions STORED AS PARQUET LOCATION 's3://data/questions/'",
        "CREATE ML_ENGINE e FROM bedrock USING api_key = 'k'",
        "CREATE MODEL m PREDICT answer USING engine = 'e', question_column = 'question'",
    ] {
        pretty(&session, sql).await;
    }
    assert_eq!(
        pretty(
            &session,
            "SELECT d.id, m.answer FROM questions AS d JOIN m ORDER BY d.id"
        )
        .await,
        [
            "+----+--------------------------------------------------------------------------------------------------+",
            "| id | answer                                                                                           |",
            "+----+--------------------------------------------------------------------------------------------------+",
            "| 1  | Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): What is the capital of Sweden? |",
            "| 2  | Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): What is 2 + 2?                 |",
            "+----+--------------------------------------------------------------------------------------------------+",
        ]
        .join("\n")
    );
    emulator.shutdown().await;
    s3.shutdown().await;
}

#[tokio::test]
async fn the_shell_reads_an_s3_table_with_the_store_registered_on_the_fly() {
    let root = tempfile::tempdir().expect("temp dir");
    let s3 = S3Server::start(root.path(), &["data"]).await.expect("S3");
    // A file put there by the endpoint's own S3 protocol.
    let csv = std::fs::read(manifest("examples/files/unrelated_questions.csv")).expect("csv");
    let bucket = store(&s3, "data");
    object_store::ObjectStoreExt::put(
        bucket.as_ref(),
        &object_store::path::Path::from("q/unrelated_questions.csv"),
        csv.into(),
    )
    .await
    .expect("put");

    let home = tempfile::tempdir().expect("home");
    let out = command(
        home.path(),
        &[
            "-q",
            "--emulator",
            "--format",
            "csv",
            "-c",
            "CREATE EXTERNAL TABLE q STORED AS CSV LOCATION 's3://data/q/' OPTIONS ('format.has_header' 'true')",
            "-c",
            "CREATE ML_ENGINE e FROM bedrock USING api_key = 'k'",
            "-c",
            "CREATE MODEL m PREDICT answer USING engine = 'e', question_column = 'question'",
            "-c",
            "SELECT d.question, m.answer FROM q AS d JOIN m",
        ],
    )
    .env("AWS_ENDPOINT_URL", s3.url())
    .env("AWS_ALLOW_HTTP", "true")
    .env("AWS_REGION", "us-east-1")
    .env("AWS_ACCESS_KEY_ID", S3Server::ACCESS_KEY_ID)
    .env("AWS_SECRET_ACCESS_KEY", S3Server::SECRET_ACCESS_KEY)
    .output()
    .await
    .expect("the shell runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        concat!(
            "name,handler,status\ne,bedrock,created\n",
            "name,engine,model_id,mode,target,inputs,status\nm,e,amazon.titan-text-premier-v1:0,default,answer,question,ready\n",
            "question,answer\n",
            "What is the capital of Sweden?,\"Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): What is the capital of Sweden?\"\n",
            "What is the second planet in the solar system?,\"Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): What is the second planet in the solar system?\"\n",
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    s3.shutdown().await;
}

#[tokio::test]
async fn images_and_documents_are_read_from_s3_through_the_sessions_object_store() {
    let root = tempfile::tempdir().expect("temp dir");
    let photos = root.path().join("media/photos");
    std::fs::create_dir_all(&photos).expect("bucket directory");
    std::fs::copy("sql-tests/files/red_pixel.png", photos.join("red.png")).expect("image");
    std::fs::copy(
        "sql-tests/files/meeting_notes.md",
        root.path().join("media/notes.md"),
    )
    .expect("document");
    let s3 = S3Server::start(root.path(), &["media"]).await.expect("S3");
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let ctx = datafusion_bedrock::BedrockContext::new().with_default_endpoint(emulator.url());
    let session = ctx.session().clone();
    let bucket = url::Url::parse("s3://media").expect("url");
    session.register_object_store(&bucket, store(&s3, "media"));
    pretty(
        &session,
        "CREATE ML_ENGINE e FROM bedrock USING api_key = 'k'",
    )
    .await;

    assert_eq!(
        pretty(
            &session,
            "SELECT ai_complete('amazon.nova-lite-v1:0', 'Compare ' || ai_image('s3://media/photos/red.png') || ' with ' || ai_document('s3://media/notes.md', 'Meeting notes')) AS answer"
        )
        .await,
        [
            "+---------------------------------------------------------------------------------------------------------------------------------------+",
            "| answer                                                                                                                                |",
            "+---------------------------------------------------------------------------------------------------------------------------------------+",
            "| Emulated amazon.nova-lite-v1:0 (messages: 1, blocks: 4): Compare [image: png, 69 bytes] with [document: md \"Meeting notes\", 45 bytes] |",
            "+---------------------------------------------------------------------------------------------------------------------------------------+",
        ]
        .join("\n")
    );
    // A key that is not there fails the row, naming the URL.
    let missing = datafusion_bedrock::execute_sql(
        &session,
        "SELECT ai_complete('amazon.nova-lite-v1:0', 'Describe ' || ai_image('s3://media/photos/blue.png'))",
    )
    .await
    .expect("plans")
    .collect()
    .await
    .expect_err("the image is not there")
    .strip_backtrace();
    assert_eq!(
        missing,
        "Execution error: ai_complete: model 'amazon.nova-lite-v1:0' via engine 'e' failed for the row whose prompt is \"Describe [image: s3://media/photos/blue.png]\": InvalidInput: s3://media/photos/blue.png cannot be read: there is no object at that location"
    );
}
