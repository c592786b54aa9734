//! Conversational models over inputs of several files, partitions and batches: the
//! conversation follows the data's order and is sent once.

use datafusion::prelude::{CsvReadOptions, SessionConfig};
use datafusion_bedrock::BedrockContext;

use crate::support::{converse_calls, run};
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig};

const TITAN: &str = "amazon.titan-text-premier-v1:0";

/// Three CSV files of two rows each, read as one table over three partitions in batches of
/// one row.
async fn three_files(emulator: &Emulator) -> (BedrockContext, std::path::PathBuf) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("dfb-conv-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for (file, rows) in [
        ("a.csv", "q1\nq2"),
        ("b.csv", "q3\nq4"),
        ("c.csv", "q5\nq6"),
    ] {
        std::fs::write(dir.join(file), format!("q\n{rows}\n")).expect("csv");
    }
    let config = SessionConfig::new()
        .with_target_partitions(3)
        .with_batch_size(1);
    let ctx = BedrockContext::with_config(config).with_default_endpoint(emulator.url());
    ctx.session()
        .register_csv(
            "talk",
            dir.to_str().expect("utf-8 path"),
            CsvReadOptions::new(),
        )
        .await
        .expect("table");
    ctx.sql("CREATE ML_ENGINE e FROM bedrock USING aws_access_key_id = 'AKIDTEST', aws_secret_access_key = 'test'")
        .await
        .expect("engine");
    (ctx, dir)
}

#[tokio::test]
async fn a_conversation_spans_files_partitions_and_batches_in_file_order() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let (ctx, dir) = three_files(&emulator).await;
    ctx.sql("CREATE MODEL chat PREDICT answer USING engine = 'e', mode = 'conversational', prompt_template = '{{q}}'")
        .await
        .expect("model");
    // The data really is read as three partitions.
    let plan = run(
        &ctx,
        "EXPLAIN SELECT d.q, m.answer FROM talk AS d JOIN chat AS m",
    )
    .await;
    assert!(plan.contains("file_groups={3 groups"), "{plan}");
    let got = run(
        &ctx,
        "SELECT d.q, replace(m.answer, chr(10), ' ') AS answer FROM talk AS d JOIN chat AS m ORDER BY d.q",
    )
    .await;
    let expected = [
        "+----+-------------------------------------------------------------------------------------+",
        "| q  | answer                                                                              |",
        "+----+-------------------------------------------------------------------------------------+",
        "| q1 |                                                                                     |",
        "| q2 |                                                                                     |",
        "| q3 |                                                                                     |",
        "| q4 |                                                                                     |",
        "| q5 |                                                                                     |",
        "| q6 | Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 6): q1 q2 q3 q4 q5 q6 |",
        "+----+-------------------------------------------------------------------------------------+",
    ]
    .join("\n");
    assert_eq!(got, expected);
    assert_eq!(converse_calls(&emulator, TITAN), 1);
    emulator.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn conversational_full_carries_history_across_partitions_and_batches() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let (ctx, dir) = three_files(&emulator).await;
    ctx.sql("CREATE MODEL chat PREDICT answer USING engine = 'e', mode = 'conversational-full', prompt_template = '{{q}}', max_tokens = 100")
        .await
        .expect("model");
    let got = run(
        &ctx,
        "SELECT d.q, m.answer FROM talk AS d JOIN chat AS m ORDER BY d.q",
    )
    .await;
    let expected = [
        "+----+------------------------------------------------------------------------+",
        "| q  | answer                                                                 |",
        "+----+------------------------------------------------------------------------+",
        "| q1 | Emulated amazon.titan-text-premier-v1:0 (messages: 1, blocks: 1): q1   |",
        "| q2 | Emulated amazon.titan-text-premier-v1:0 (messages: 3, blocks: 3): q2   |",
        "| q3 | Emulated amazon.titan-text-premier-v1:0 (messages: 5, blocks: 5): q3   |",
        "| q4 | Emulated amazon.titan-text-premier-v1:0 (messages: 7, blocks: 7): q4   |",
        "| q5 | Emulated amazon.titan-text-premier-v1:0 (messages: 9, blocks: 9): q5   |",
        "| q6 | Emulated amazon.titan-text-premier-v1:0 (messages: 11, blocks: 11): q6 |",
        "+----+------------------------------------------------------------------------+",
    ]
    .join("\n");
    assert_eq!(got, expected);
    assert_eq!(converse_calls(&emulator, TITAN), 6);
    emulator.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
