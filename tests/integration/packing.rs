//! Row packing and prompt caching through a session someone else built: 10,000 rows packed 16
//! to a request with injected wrong-count answers, every row keeping its own answer; and
//! prefix-ordered sending keeping the emulator's prompt cache warm.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Int64Type, UInt32Type};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig};
use datafusion_bedrock::{BedrockExtension, SessionStateBuilderBedrock};

use crate::support::{collect, converse_calls};

const NOVA: &str = "amazon.nova-micro-v1:0";

/// A session built the way an application builds its own, with the extension added and its
/// engines pointed at `emulator`.
fn session(emulator: &Emulator) -> SessionContext {
    let ctx: SessionContext = SessionStateBuilder::new()
        .with_default_features()
        .with_bedrock()
        .build()
        .into();
    BedrockExtension::of_session(&ctx)
        .expect("the extension is installed")
        .set_default_endpoint(Some(emulator.url().to_string()));
    ctx
}

const ENGINE: &str = "CREATE ML_ENGINE e FROM bedrock USING aws_access_key_id = 'AQAXEQK89OX07YS34OP', aws_secret_access_key = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'";

#[tokio::test]
async fn ten_thousand_rows_sixteen_to_a_request_keep_their_own_answers() {
    let emulator = Emulator::start(EmulatorConfig {
        request_log_capacity: 0,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let ctx = session(&emulator);
    collect(&ctx, ENGINE).await;
    collect(
        &ctx,
        &format!("CREATE MODEL m PREDICT answer USING engine = 'e', model_id = '{NOVA}', prompt_template = '{{{{t}}}}', rows_per_request = 16, provenance = true"),
    )
    .await;
    // Ten rows (n = 7, 1007, …) get an answer missing from their packed request's array.
    collect(
        &ctx,
        "CREATE TABLE tickets AS SELECT value AS n, 'ticket ' || value || CASE WHEN value % 1000 = 7 THEN ' [[emulate:pack-drop]]' ELSE '' END AS t FROM generate_series(1, 10000)",
    )
    .await;
    let batches = collect(
        &ctx,
        "SELECT d.n, d.t, m.answer, m.answer_meta['packed_rows'] AS packed FROM tickets AS d JOIN m ORDER BY d.n",
    )
    .await;
    let mut rows = 0;
    let mut alone = Vec::new();
    for batch in &batches {
        let n = batch.column(0).as_primitive::<Int64Type>();
        let t = batch.column(1).as_string::<i32>();
        let answer = batch.column(2).as_string::<i32>();
        let packed = batch.column(3).as_primitive::<UInt32Type>();
        for row in 0..batch.num_rows() {
            rows += 1;
            assert!(
                answer.is_valid(row) && packed.is_valid(row),
                "row {row} unanswered"
            );
            // A row answered in a packed request gets the answer of its own numbered input
            // (the packing instructions are a system prompt); a row sent alone, its own.
            let expected = if packed.value(row) > 1 {
                format!(
                    "Emulated {NOVA} (messages: 1, blocks: 1, system: 1): {}",
                    t.value(row)
                )
            } else {
                alone.push(n.value(row));
                format!("Emulated {NOVA} (messages: 1, blocks: 1): {}", t.value(row))
            };
            assert_eq!(answer.value(row), expected, "row n = {}", n.value(row));
        }
    }
    assert_eq!(rows, 10_000);
    // Each faulty row ends alone with its neighbour of the last pair: 16 → 8 → 4 → 2 → 1.
    let mut expected_alone: Vec<i64> = (0..10)
        .flat_map(|k| {
            let bad = 1000 * k + 7;
            let pair_start = bad - (bad - 1) % 2;
            [pair_start, pair_start + 1]
        })
        .collect();
    expected_alone.sort_unstable();
    assert_eq!(alone, expected_alone);
    // ⌈10,000 / 16⌉ = 625 requests, plus 8 for each faulty row (two halves at each of four
    // levels).
    assert_eq!(converse_calls(&emulator, NOVA), 625 + 10 * 8);
    emulator.shutdown().await;
}

/// Cache reads and writes the emulator counted.
fn cache_tokens(emulator: &Emulator) -> (u64, u64) {
    let stats = emulator.stats().snapshot();
    (
        stats.cache_read_input_tokens,
        stats.cache_write_input_tokens,
    )
}

#[tokio::test]
async fn prefix_ordering_keeps_a_small_prompt_cache_warm() {
    // A cache of one prefix: requests alternating between two long heads evict each other.
    let emulator = Emulator::start(EmulatorConfig {
        prompt_cache_entries: 1,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let ctx = session(&emulator);
    collect(&ctx, &format!("{ENGINE}, max_concurrency = 1")).await;
    let table = |name: &str, tag: &str| {
        format!(
            "CREATE TABLE {name} AS SELECT value AS n, CASE WHEN value % 2 = 0 THEN repeat('Policy B applies. ', 260) ELSE repeat('Policy A applies. ', 260) END || 'case {tag}' || value AS q FROM generate_series(1, 8)"
        )
    };
    let query = |name: &str| {
        format!("SELECT count(ai_complete('{NOVA}', q, '{{\"engine\": \"e\"}}')) FROM {name}")
    };
    collect(&ctx, &table("ordered", "o")).await;
    collect(&ctx, &table("unordered", "u")).await;
    // Grouped by prefix: A A A A, then B B B B: one write per head, three reads each.
    collect(&ctx, &query("ordered")).await;
    let (read, written) = cache_tokens(&emulator);
    let head = written / 2;
    assert_eq!((read, written), (6 * head, 2 * head));
    assert!(head >= 1000, "each head reaches Nova's minimum: {head}");
    // In input order, A B A B …: every request finds the other head in the cache.
    collect(&ctx, "SET bedrock.reorder_requests = false").await;
    collect(&ctx, &query("unordered")).await;
    let (read_after, written_after) = cache_tokens(&emulator);
    assert_eq!((read_after - read, written_after - written), (0, 8 * head));
    emulator.shutdown().await;
}
