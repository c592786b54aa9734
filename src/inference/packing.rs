//! Row packing: `rows_per_request = k` sends k rows of a batch in one request.
//!
//! The request carries the shared instructions once (the caller's instruction, the model's
//! system prompt and [`PACKING_INSTRUCTIONS`]), the rows as one JSON array of strings in one
//! user message (about one token of markup a row), and forces the [`PACKED_TOOL`] tool whose
//! input is `{"answers": [{"index": N, "answer": …}, …]}` — the answer of each item a string,
//! or the struct of `output_schema`. An answer is accepted only when it has one item per row,
//! every index once, and every item of the right shape, and generation did not stop at
//! `max_tokens`; otherwise the rows are split in halves and asked again, down to single rows,
//! which are sent on their own as without packing. So a row never gets another row's answer.
//!
//! `max_tokens` stays a per-row limit: a packed request asks for `max_tokens × k`.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::call::{ModelCall, Outcome};
use crate::bedrock::budget::BUDGET_EXCEEDED;
use crate::bedrock::engine::{Api, CallOptions};
use crate::bedrock::request::{CallInfo, ChatMessage, TextRequest, TextResponse, ToolSpec};
use crate::bedrock::retry::FailureKind;
use crate::bedrock::usage::token_shares;
use crate::catalog::output_schema::OutputSchema;

/// The most rows one request may carry.
pub const MAX_ROWS_PER_REQUEST: u64 = 100;

/// The name of the tool a packed request forces.
pub const PACKED_TOOL: &str = "answers";

/// What a packed request's system prompt adds to the shared instructions.
pub const PACKING_INSTRUCTIONS: &str = "The user message is a JSON array of separate inputs. Answer each on its own, as the instructions above say, and call the answers tool with one item per input: index (1 for the first) and answer.";

/// Why `rows_per_request = rows` cannot be used here, if it cannot: `who` begins the message
/// (`Parameter 'rows_per_request'` or `ai_filter: rows_per_request`).
///
/// # Errors
/// The reason, naming the fix.
pub fn check(
    who: &str,
    rows: u32,
    conversational: Option<&str>,
    api: Api,
    gathers: Option<&str>,
) -> std::result::Result<(), String> {
    if rows <= 1 {
        return Ok(());
    }
    if let Some(mode) = conversational {
        return Err(format!(
            "{who} = {rows} packs independent rows, but mode '{mode}' sends the rows as one conversation: remove rows_per_request, or use the default mode"
        ));
    }
    if api == Api::Invoke {
        return Err(format!(
            "{who} = {rows} needs the Converse API (the answers come back through a forced tool): remove api = 'invoke', or rows_per_request"
        ));
    }
    if let Some(execution) = gathers {
        return Err(format!(
            "{who} = {rows} cannot run with execution = '{execution}': batch jobs take no tools, and packed answers come back through one; remove one of them"
        ));
    }
    Ok(())
}

/// The characters a packed request of `k` rows adds to its rows' prompts: its instructions
/// once, and each row's quotes and comma (`(0, 0)` when `k` is 1, no packing).
#[must_use]
pub fn overhead_chars(k: usize) -> (usize, usize) {
    if k > 1 {
        (PACKING_INSTRUCTIONS.len(), "\"\",".len())
    } else {
        (0, 0)
    }
}

/// The schema of one item's answer: text, or the struct of `output_schema`.
fn item_schema(schema: Option<&OutputSchema>) -> Value {
    schema.map_or_else(|| json!({ "type": "string" }), OutputSchema::json_schema)
}

/// The forced tool of a packed request.
#[must_use]
pub fn packed_tool(schema: Option<&OutputSchema>) -> ToolSpec {
    ToolSpec {
        name: PACKED_TOOL.to_string(),
        description: "Give one answer per input.".to_string(),
        schema: json!({
            "type": "object",
            "properties": {
                "answers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": { "type": "integer" },
                            "answer": item_schema(schema),
                        },
                        "required": ["index", "answer"],
                    },
                },
            },
            "required": ["answers"],
        }),
    }
}

/// The one request carrying `prompts`, from the single-row request `single` (its system
/// prompt and parameters).
#[must_use]
pub fn packed_request(
    single: &TextRequest,
    prompts: &[&str],
    schema: Option<&OutputSchema>,
) -> TextRequest {
    let system = match &single.system {
        Some(system) => format!("{system}\n\n{PACKING_INSTRUCTIONS}"),
        None => PACKING_INSTRUCTIONS.to_string(),
    };
    let rows = serde_json::to_string(prompts).unwrap_or_default();
    let mut params = single.params.clone();
    let n = u32::try_from(prompts.len()).unwrap_or(u32::MAX);
    params.max_tokens = params.max_tokens.map(|m| m.saturating_mul(n));
    TextRequest {
        system: Some(system),
        messages: vec![ChatMessage::user(rows)],
        params,
        tool: Some(packed_tool(schema)),
        cache: None,
    }
}

/// The items of a packed answer, in row order, when it is acceptable for `rows` rows: one item
/// per row, every index from 1 to `rows` once, each item of the right shape. `Err` says why
/// not (the rows are then split and asked again).
///
/// # Errors
/// Why the answer cannot be matched to the rows.
pub fn unpack(
    tool_input: Option<&Value>,
    stop_reason: &str,
    rows: usize,
    schema: Option<&OutputSchema>,
) -> std::result::Result<Vec<Value>, String> {
    if stop_reason == "max_tokens" {
        return Err("the answer stopped at max_tokens".into());
    }
    let items = tool_input
        .and_then(|v| v.get("answers"))
        .and_then(Value::as_array)
        .ok_or("the model did not call the answers tool with an array of answers")?;
    if items.len() != rows {
        return Err(format!("{} answers for {rows} inputs", items.len()));
    }
    let mut answers: Vec<Option<Value>> = vec![None; rows];
    for item in items {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|i| (1..=rows).contains(i))
            .ok_or_else(|| format!("an answer without a valid index: {item}"))?;
        let answer = item
            .get("answer")
            .ok_or_else(|| format!("answer {index} has no answer"))?;
        match schema {
            None if !answer.is_string() => {
                return Err(format!("answer {index} is not text: {answer}"));
            }
            Some(schema) => schema
                .validate(answer)
                .map_err(|why| format!("answer {index}: {why}"))?,
            None => {}
        }
        let slot = &mut answers[index - 1];
        if slot.is_some() {
            return Err(format!("index {index} answered twice"));
        }
        *slot = Some(answer.clone());
    }
    Ok(answers.into_iter().flatten().collect())
}

/// How the rows of one packed request share what it cost and how it went.
fn row_call(response: &TextResponse, rows: usize) -> Vec<(u64, u64, CallInfo)> {
    let call = &response.call;
    token_shares(response.input_tokens, rows)
        .zip(token_shares(response.output_tokens, rows))
        .zip(token_shares(call.cache_read_tokens, rows))
        .zip(token_shares(call.cache_write_tokens, rows))
        .enumerate()
        .map(|(i, (((input, output), read), written))| {
            (
                input,
                output,
                CallInfo {
                    cache_read_tokens: read,
                    cache_write_tokens: written,
                    packed_rows: u32::try_from(rows).unwrap_or(u32::MAX),
                    packed_first: i == 0,
                    ..call.clone()
                },
            )
        })
        .collect()
}

/// The text a row asks (its request's last message).
fn asked(request: &TextRequest) -> String {
    request
        .messages
        .last()
        .map(ChatMessage::joined)
        .unwrap_or_default()
}

impl ModelCall {
    /// Answers `requests` (one per row, `None` asking nothing) `k` rows per request: repeats
    /// answered once, cached answers served, the rest packed in input order; an answer that
    /// cannot be matched to its rows splits them in halves, down to single rows sent as they
    /// are. Every answer is kept in the response cache under its row's own request.
    pub(super) async fn generate_packed(
        &self,
        requests: &[Option<TextRequest>],
        k: usize,
        options: &CallOptions,
    ) -> Vec<Outcome> {
        let model = self.model();
        let (engine, target) = (&model.engine, &model.target);
        let mut outcomes: Vec<Outcome> = vec![None; requests.len()];
        let texts: Vec<Option<String>> = requests.iter().map(|r| r.as_ref().map(asked)).collect();
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        let mut repeats = Vec::new();
        let mut distinct = Vec::new();
        for (row, request) in requests.iter().enumerate() {
            let (Some(request), Some(text)) = (request, texts[row].as_deref()) else {
                continue;
            };
            if let Some(first) = first_of.get(text) {
                repeats.push((row, *first));
                continue;
            }
            first_of.insert(text, row);
            distinct.push((row, request));
        }
        let asked: Vec<&TextRequest> = distinct.iter().map(|(_, r)| *r).collect();
        let cached = engine.cached_answers(target, &asked).await;
        let mut work = Vec::new();
        for ((row, _), answer) in distinct.into_iter().zip(cached) {
            match answer {
                Some(answer) => outcomes[row] = Some(Ok(answer)),
                None => work.push(row),
            }
        }
        engine.count_repeats(&target.model_id, repeats.len() as u64);
        let mut pending: Vec<Vec<usize>> = work.chunks(k.max(1)).map(<[usize]>::to_vec).collect();
        let mut singles = Vec::new();
        while !pending.is_empty() {
            let (groups, ones): (Vec<_>, Vec<_>) = pending.into_iter().partition(|g| g.len() > 1);
            singles.extend(ones.into_iter().flatten());
            pending = self
                .ask_packed(groups, requests, &texts, &mut outcomes, options)
                .await;
        }
        if !singles.is_empty() {
            let mut alone: Vec<Option<TextRequest>> = vec![None; requests.len()];
            for row in &singles {
                alone[*row].clone_from(&requests[*row]);
            }
            let results = engine.generate_with(target, &alone, options).await;
            for (row, result) in results.into_iter().enumerate() {
                if result.is_some() {
                    outcomes[row] = result;
                }
            }
        }
        for (row, first) in repeats {
            outcomes[row] = match &outcomes[first] {
                Some(Ok(answer)) => Some(Ok(TextResponse {
                    call: CallInfo {
                        deduplicated: true,
                        ..CallInfo::default()
                    },
                    ..answer.clone()
                })),
                other => other.clone(),
            };
        }
        outcomes
    }

    /// Sends one packed request per group and gives each row of an acceptable answer its
    /// item (kept in the response cache under the row's own request); returns the halves of
    /// the groups to ask again.
    async fn ask_packed(
        &self,
        groups: Vec<Vec<usize>>,
        requests: &[Option<TextRequest>],
        texts: &[Option<String>],
        outcomes: &mut [Outcome],
        options: &CallOptions,
    ) -> Vec<Vec<usize>> {
        let model = self.model();
        let (engine, target) = (&model.engine, &model.target);
        let schema = model.output_schema.as_ref();
        let mut packed: Vec<Option<TextRequest>> = groups
            .iter()
            .map(|group| {
                let prompts: Vec<&str> = group
                    .iter()
                    .map(|row| texts[*row].as_deref().unwrap_or_default())
                    .collect();
                requests[group[0]]
                    .as_ref()
                    .map(|first| packed_request(first, &prompts, schema))
            })
            .collect();
        self.place_cache_points(&mut packed);
        let results = engine.generate_with(target, &packed, options).await;
        let mut next = Vec::new();
        let mut learned = Vec::new();
        for (group, result) in groups.into_iter().zip(results) {
            let response = match result {
                Some(Ok(response)) => response,
                // A refusal the rows alone might not get (an input too long, say): split.
                Some(Err(failure))
                    if failure.kind == FailureKind::Fatal && failure.code != BUDGET_EXCEEDED =>
                {
                    halve(group, &mut next);
                    continue;
                }
                Some(Err(failure)) => {
                    for row in group {
                        outcomes[row] = Some(Err(failure.clone()));
                    }
                    continue;
                }
                None => continue,
            };
            let Ok(items) = unpack(
                response.tool_input.as_ref(),
                &response.stop_reason,
                group.len(),
                schema,
            ) else {
                halve(group, &mut next);
                continue;
            };
            let shares = row_call(&response, group.len());
            for ((row, item), (input_tokens, output_tokens, call)) in
                group.into_iter().zip(items).zip(shares)
            {
                let answer = TextResponse {
                    text: item
                        .as_str()
                        .map_or_else(|| item.to_string(), str::to_string),
                    input_tokens,
                    output_tokens,
                    stop_reason: response.stop_reason.clone(),
                    tool_input: schema.is_some().then_some(item),
                    call,
                };
                learned.push((row, answer.clone()));
                outcomes[row] = Some(Ok(answer));
            }
        }
        engine
            .remember_answers(
                target,
                learned
                    .into_iter()
                    .filter_map(|(row, answer)| Some((requests[row].as_ref()?, answer))),
            )
            .await;
        next
    }
}

/// A group of rows split in two, for asking again.
fn halve(mut group: Vec<usize>, next: &mut Vec<Vec<usize>>) {
    let second = group.split_off(group.len() / 2);
    next.push(group);
    next.push(second);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::request::InferenceParams;

    #[test]
    fn rows_are_numbered_and_instructions_follow_the_system_prompt() {
        let single = TextRequest {
            system: Some("Be brief.".into()),
            ..TextRequest::prompt(
                "x",
                InferenceParams {
                    max_tokens: Some(10),
                    ..InferenceParams::default()
                },
            )
        };
        let r = packed_request(&single, &["first", "second\nline"], None);
        assert_eq!(
            r.system.as_deref(),
            Some(format!("Be brief.\n\n{PACKING_INSTRUCTIONS}").as_str())
        );
        assert_eq!(
            r.messages,
            vec![ChatMessage::user(r#"["first","second\nline"]"#)]
        );
        assert_eq!(r.params.max_tokens, Some(20));
        assert_eq!(r.tool, Some(packed_tool(None)));
        assert_eq!(
            r.tool.unwrap().schema["properties"]["answers"]["items"]["properties"]["answer"],
            json!({"type": "string"})
        );
    }

    #[test]
    fn answers_are_matched_by_index_and_checked() {
        let ok = json!({"answers": [{"index": 2, "answer": "b"}, {"index": 1, "answer": "a"}]});
        assert_eq!(
            unpack(Some(&ok), "tool_use", 2, None),
            Ok(vec![json!("a"), json!("b")])
        );
        let cases = [
            (
                json!({"answers": [{"index": 1, "answer": "a"}]}),
                "tool_use",
                "1 answers for 2 inputs",
            ),
            (ok.clone(), "max_tokens", "the answer stopped at max_tokens"),
            (
                json!({"answers": [{"index": 1, "answer": "a"}, {"index": 1, "answer": "b"}]}),
                "tool_use",
                "index 1 answered twice",
            ),
            (
                json!({"answers": [{"index": 1, "answer": "a"}, {"index": 3, "answer": "b"}]}),
                "tool_use",
                "an answer without a valid index: {\"answer\":\"b\",\"index\":3}",
            ),
            (
                json!({"answers": [{"index": 1, "answer": 5}, {"index": 2, "answer": "b"}]}),
                "tool_use",
                "answer 1 is not text: 5",
            ),
            (
                json!({"unexpected": 1}),
                "tool_use",
                "the model did not call the answers tool with an array of answers",
            ),
        ];
        for (input, stop, why) in cases {
            assert_eq!(unpack(Some(&input), stop, 2, None), Err(why.to_string()));
        }
    }

    #[test]
    fn structured_items_are_validated_against_output_schema() {
        let schema = OutputSchema::parse("name STRING, age INT").unwrap();
        let good = json!({"answers": [{"index": 1, "answer": {"name": "a", "age": 3}}]});
        assert_eq!(
            unpack(Some(&good), "tool_use", 1, Some(&schema)),
            Ok(vec![json!({"name": "a", "age": 3})])
        );
        let bad = json!({"answers": [{"index": 1, "answer": "a"}]});
        assert!(
            unpack(Some(&bad), "tool_use", 1, Some(&schema))
                .unwrap_err()
                .starts_with("answer 1: ")
        );
    }

    #[test]
    fn packing_is_refused_where_it_cannot_work() {
        assert_eq!(
            check("p", 1, Some("conversational"), Api::Invoke, Some("batch")),
            Ok(())
        );
        assert_eq!(
            check("Parameter 'rows_per_request'", 8, None, Api::Invoke, None),
            Err("Parameter 'rows_per_request' = 8 needs the Converse API (the answers come back through a forced tool): remove api = 'invoke', or rows_per_request".into())
        );
        assert!(check("p", 8, Some("conversational"), Api::Converse, None).is_err());
        assert!(check("p", 8, None, Api::Converse, Some("batch")).is_err());
        assert_eq!(check("p", 8, None, Api::Converse, None), Ok(()));
    }
}
