//! Provenance and EXPLAIN ANALYZE agree with what the emulator saw, under injected faults.

use datafusion_bedrock::BedrockContext;

use crate::support::run;
use datafusion_bedrock::emulator::{Emulator, EmulatorConfig, FaultRates, LoadModel};

const NOVA: &str = "amazon.nova-micro-v1:0";

#[tokio::test]
async fn provenance_and_explain_analyze_count_what_the_emulator_saw() {
    let emulator = Emulator::start(EmulatorConfig {
        load: LoadModel {
            faults: FaultRates {
                throttle: 0.2,
                internal: 0.05,
                drop_connection: 0.03,
                ..FaultRates::default()
            },
            seed: 11,
            ..LoadModel::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let ctx = BedrockContext::new().with_default_endpoint(emulator.url());
    ctx.sql("CREATE ML_ENGINE e FROM bedrock USING aws_access_key_id = 'AKIDTEST', aws_secret_access_key = 'test', max_concurrency = 16, max_retries = 12")
        .await
        .expect("engine");
    ctx.sql(&format!("CREATE MODEL m PREDICT answer USING engine = 'e', prompt_template = '{{{{q}}}}', model_id = '{NOVA}', provenance = true"))
        .await
        .expect("model");
    // 240 rows, 200 distinct prompts: the 40 repeats are answered without a request.
    ctx.sql("CREATE TABLE rows AS SELECT 'row ' || (value % 200) AS q FROM range(0, 240)")
        .await
        .expect("table");
    let totals = run(
        &ctx,
        "SELECT count(*) AS answered, sum(m.answer_meta['retries']) AS retries, \
         sum(CASE WHEN m.answer_meta['cache_hit'] THEN 1 ELSE 0 END) AS free, \
         sum(CASE WHEN m.answer = 'Emulated amazon.nova-micro-v1:0 (messages: 1, blocks: 1): ' || d.q THEN 1 ELSE 0 END) AS aligned \
         FROM rows AS d JOIN m",
    )
    .await;
    let stats = emulator.stats().snapshot();
    let faults: u64 = stats.faults.values().sum();
    assert!(faults > 30, "the plan injected {faults} faults");
    let sent = stats.count(Some(NOVA), Some("Converse"), None);
    assert_eq!(
        sent,
        200 + faults,
        "one success per distinct prompt, plus one per fault"
    );
    let expected = [
        "+----------+---------+------+---------+".to_string(),
        "| answered | retries | free | aligned |".to_string(),
        "+----------+---------+------+---------+".to_string(),
        format!("| 240      | {faults:<7} | 40   | 240     |"),
        "+----------+---------+------+---------+".to_string(),
    ]
    .join("\n");
    // Repeats carry no retries of their own: the retries are exactly the faults.
    assert_eq!(totals, expected);

    // EXPLAIN ANALYZE of new prompts counts the requests the emulator received for them.
    emulator.stats().reset();
    let analyzed = run(
        &ctx,
        "EXPLAIN ANALYZE SELECT m.answer FROM (SELECT 'new ' || value AS q FROM range(0, 50)) AS d JOIN m",
    )
    .await;
    let stats = emulator.stats().snapshot();
    let sent = stats.count(Some(NOVA), Some("Converse"), None);
    let retries: u64 = stats.faults.values().sum();
    assert!(
        analyzed.contains("dedup_hits=0, failed_rows=0,"),
        "{analyzed}"
    );
    assert!(
        analyzed.contains(&format!(
            "requests={sent}, retries={retries}, throttles={}",
            stats.fault_count("throttle")
        )),
        "sent {sent}, retries {retries}: {analyzed}"
    );
    emulator.shutdown().await;
}
