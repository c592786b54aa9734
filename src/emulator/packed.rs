//! Packed requests: several rows answered by one Converse request.
//!
//! A client may send `k` rows in one Converse request and force a tool whose input holds one
//! answer per row. The emulator recognises such a request by the forced tool's JSON schema and
//! answers every row as if it had been asked alone.
//!
//! **Recognising a packed request.** The forced tool's input schema has both
//! `properties.answers.items.properties.index` and `properties.answers.items.properties.answer`:
//!
//! ```json
//! {"type": "object",
//!  "properties": {"answers": {
//!      "type": "array",
//!      "items": {"type": "object",
//!                "properties": {"index": {"type": "integer"}, "answer": ITEM},
//!                "required": ["index", "answer"]}}},
//!  "required": ["answers"]}
//! ```
//!
//! where `ITEM` is `{"type": "string"}` or any other JSON schema (for example the object schema
//! of a structured answer).
//!
//! **The rows.** The last user text of the conversation (its text blocks joined by newlines) is
//! a JSON array of strings, one per row, numbered from 1 in order:
//!
//! ```text
//! ["first row, possibly on\nseveral lines", "second row"]
//! ```
//!
//! Whitespace around the array is ignored. When the text is not such an array (or is an empty
//! one), the request is not packed, and the ordinary forced-tool answer applies.
//!
//! **The answer.** The tool input is `{"answers": [{"index": N, "answer": A}, ...]}`, one item
//! per row in input order, `N` the row's position (1 for the first). With a string `ITEM`
//! (`"type": "string"`), `A` is exactly the text answer the row would get alone with the same
//! system prompt (so the labels and yes/no rules apply row by row), e.g.
//! `Emulated <model id> (messages: 1, blocks: 1[, system: <n>]): <row text>`; with any other
//! `ITEM`, `A` is the schema-shaped value derived from the row text, as for an ordinary forced
//! tool.
//!
//! **Directives**, written inside a row's text, for testing a client's handling of a broken
//! answer:
//!
//! - `[[emulate:pack-drop]]`: that row's item is left out of the array (one item too few, and its
//!   index is missing); generation goes on with the next row.
//! - `[[emulate:pack-truncate]]`: generation stops before that row's item: the array holds only
//!   the items of the rows before it, and the stop reason is `max_tokens`.
//!
//! **`maxTokens`** applies independently: items are added in order while the serialized tool
//! input (compact JSON, `{"answers":[...]}`) counts at most `maxTokens` tokens (one per started
//! group of four characters); the first item that would exceed it is not added, generation stops
//! there and the stop reason is `max_tokens`. Items are never cut in the middle.
//!
//! The reply's text is the serialized tool input, its output tokens are counted on that text, and
//! its input tokens on the whole conversation. The tool call's id is
//! `tooluse_<16 hex digits>`, the FNV-1a hash of the tool name and the last user text.

use serde_json::{Value, json};

use super::answer::{self, Conversation, Reply, StopReason, Turn};
use super::converse;

/// Test directive: the row's item is left out of the answer.
const PACK_DROP: &str = "[[emulate:pack-drop]]";
/// Test directive: generation stops before the row's item, as if `maxTokens` were reached.
const PACK_TRUNCATE: &str = "[[emulate:pack-truncate]]";

/// The schema of one answer (`properties.answers.items.properties.answer`) when the schema is
/// that of a packed request's tool.
fn item_schema(schema: &Value) -> Option<&Value> {
    let item = schema.pointer("/properties/answers/items/properties")?;
    item.get("index")?;
    item.get("answer")
}

/// Whether a forced tool's input schema is that of a packed request: it has
/// `properties.answers.items.properties.index` and `properties.answers.items.properties.answer`.
#[cfg(test)]
fn is_packed(schema: &Value) -> bool {
    item_schema(schema).is_some()
}

/// One row: its position (from 1) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    index: u64,
    text: String,
}

/// The rows of a packed request's user text: a JSON array of strings (empty when it is not
/// one).
fn rows(text: &str) -> Vec<Row> {
    serde_json::from_str::<Vec<String>>(text.trim())
        .unwrap_or_default()
        .into_iter()
        .zip(1..)
        .map(|(text, index)| Row { index, text })
        .collect()
}

/// The answer to one row: the text answer the row alone would get for a string item schema,
/// else the schema-shaped value of the row text.
fn row_answer(model_id: &str, item: &Value, system: &[String], row: &str) -> Value {
    if item.get("type").and_then(Value::as_str) == Some("string") {
        let alone = Conversation {
            system: system.to_vec(),
            turns: vec![Turn::user(row)],
        };
        json!(answer::compose(model_id, &alone))
    } else {
        converse::value_for_schema(item, row)
    }
}

/// The forced tool's call and the reply for a packed request, or `None` when the request is not
/// packed (the tool's schema is not a packed one, or the last user text is no JSON array of
/// rows).
pub(crate) fn answer(
    model_id: &str,
    tool: &converse::ToolRequest,
    conversation: &Conversation,
    max_tokens: u32,
) -> Option<(converse::ToolCall, Reply)> {
    let item = item_schema(&tool.schema)?;
    let user_text = conversation.last_user_text();
    let rows = rows(&user_text);
    if rows.is_empty() {
        return None;
    }
    // The characters of `{"answers":[` and `]}`; items add their own and a comma between two.
    let mut chars = "{\"answers\":[]}".chars().count();
    let mut items = Vec::with_capacity(rows.len());
    let mut stop = StopReason::EndTurn;
    for row in rows {
        if row.text.contains(PACK_TRUNCATE) {
            stop = StopReason::MaxTokens;
            break;
        }
        if row.text.contains(PACK_DROP) {
            continue;
        }
        let value = json!({
            "index": row.index,
            "answer": row_answer(model_id, item, &conversation.system, &row.text),
        });
        let added = value.to_string().chars().count() + usize::from(!items.is_empty());
        let tokens = u32::try_from((chars + added).div_ceil(4)).unwrap_or(u32::MAX);
        if tokens > max_tokens {
            stop = StopReason::MaxTokens;
            break;
        }
        chars += added;
        items.push(value);
    }
    let input = json!({ "answers": items });
    let text = serde_json::to_string(&input).unwrap_or_default();
    let call = converse::ToolCall {
        id: format!(
            "tooluse_{:016x}",
            answer::fnv1a(&[tool.name.as_bytes(), user_text.as_bytes()])
        ),
        name: tool.name.clone(),
        input,
    };
    let reply = Reply {
        input_tokens: conversation.input_tokens(),
        output_tokens: answer::count_text_tokens(&text),
        text,
        stop,
    };
    Some((call, reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed_schema(item: Value) -> Value {
        let mut schema = json!({
            "type": "object",
            "properties": {"answers": {"type": "array", "items": {
                "type": "object",
                "properties": {"index": {"type": "integer"}, "answer": null},
                "required": ["index", "answer"]
            }}},
            "required": ["answers"]
        });
        schema["properties"]["answers"]["items"]["properties"]["answer"] = item;
        schema
    }

    fn tool(item: Value) -> converse::ToolRequest {
        converse::ToolRequest {
            name: "answer_rows".into(),
            schema: packed_schema(item),
        }
    }

    fn blocks(rows: &[&str]) -> String {
        serde_json::to_string(rows).unwrap()
    }

    fn asked(system: &[&str], text: &str) -> Conversation {
        Conversation {
            system: system.iter().map(|s| (*s).to_string()).collect(),
            turns: vec![Turn::user(text)],
        }
    }

    fn alone(system: &[&str], row: &str) -> String {
        answer::compose("m", &asked(system, row))
    }

    /// The reply expected for a tool input: its compact JSON and token counts.
    fn reply_for(conversation: &Conversation, input: &Value, stop: StopReason) -> Reply {
        let text = serde_json::to_string(input).unwrap();
        Reply {
            input_tokens: conversation.input_tokens(),
            output_tokens: answer::count_text_tokens(&text),
            text,
            stop,
        }
    }

    fn call_for(text: &str, input: Value) -> converse::ToolCall {
        converse::ToolCall {
            id: format!(
                "tooluse_{:016x}",
                answer::fnv1a(&[b"answer_rows".as_slice(), text.as_bytes()])
            ),
            name: "answer_rows".into(),
            input,
        }
    }

    #[test]
    fn recognises_packed_schemas_only() {
        assert!(is_packed(&packed_schema(json!({"type": "string"}))));
        assert!(is_packed(&packed_schema(
            json!({"type": "object", "properties": {"a": {"type": "integer"}}})
        )));
        assert!(!is_packed(&json!({
            "type": "object",
            "properties": {"answers": {"type": "array", "items": {"type": "string"}}}
        })));
        assert!(!is_packed(&json!({
            "type": "object",
            "properties": {"answers": {"type": "array", "items": {
                "type": "object", "properties": {"answer": {"type": "string"}}
            }}}
        })));
        assert!(!is_packed(
            &json!({"type": "object", "properties": {"name": {"type": "string"}}})
        ));
        assert!(!is_packed(&Value::Null));
    }

    #[test]
    fn three_rows_are_answered_in_order_as_if_alone() {
        let text = blocks(&["What is 1?", "What is 2?", "What is 3?"]);
        let conversation = asked(&["Be brief."], &text);
        let (call, reply) =
            answer("m", &tool(json!({"type": "string"})), &conversation, 1000).unwrap();
        let input = json!({"answers": [
            {"index": 1, "answer": "Emulated m (messages: 1, blocks: 1, system: 1): What is 1?"},
            {"index": 2, "answer": "Emulated m (messages: 1, blocks: 1, system: 1): What is 2?"},
            {"index": 3, "answer": "Emulated m (messages: 1, blocks: 1, system: 1): What is 3?"},
        ]});
        assert_eq!(
            input["answers"][1]["answer"],
            json!(alone(&["Be brief."], "What is 2?"))
        );
        assert_eq!(call, call_for(&text, input.clone()));
        assert_eq!(reply, reply_for(&conversation, &input, StopReason::EndTurn));
        assert_eq!(reply.text, call.input.to_string());
        assert!(
            call.id.starts_with("tooluse_") && call.id.len() == 24,
            "{}",
            call.id
        );
    }

    #[test]
    fn structured_items_are_shaped_by_their_schema() {
        let item = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "words": {"type": "integer"},
                "even": {"type": "boolean"}
            }
        });
        let text = blocks(&["Ada Lovelace", "Alan Mathison Turing"]);
        let conversation = asked(&[], &text);
        let (call, reply) = answer("m", &tool(item.clone()), &conversation, 1000).unwrap();
        let input = json!({"answers": [
            {"index": 1, "answer": {"name": "Ada Lovelace", "words": 2, "even": true}},
            {"index": 2, "answer": {"name": "Alan Mathison Turing", "words": 3, "even": false}},
        ]});
        assert_eq!(
            input["answers"][1]["answer"],
            converse::value_for_schema(&item, "Alan Mathison Turing")
        );
        assert_eq!(call, call_for(&text, input.clone()));
        assert_eq!(reply, reply_for(&conversation, &input, StopReason::EndTurn));
    }

    #[test]
    fn labels_rule_applies_row_by_row() {
        let system = "Classify each input.\nLabels: [\"spam\",\"ham\"]";
        let text = blocks(&["Buy now, SPAM offer", "lunch with ham", "see you tomorrow"]);
        let conversation = asked(&[system], &text);
        let (call, reply) =
            answer("m", &tool(json!({"type": "string"})), &conversation, 1000).unwrap();
        let input = json!({"answers": [
            {"index": 1, "answer": "spam"},
            {"index": 2, "answer": "ham"},
            {"index": 3, "answer": "I cannot tell."},
        ]});
        assert_eq!(call, call_for(&text, input.clone()));
        assert_eq!(reply, reply_for(&conversation, &input, StopReason::EndTurn));
    }

    #[test]
    fn yes_or_no_rule_applies_row_by_row() {
        let system = "Answer yes or no.";
        let text = blocks(&["yes please", "no thanks", "maybe later"]);
        let (call, _) = answer(
            "m",
            &tool(json!({"type": "string"})),
            &asked(&[system], &text),
            1000,
        )
        .unwrap();
        assert_eq!(
            call.input,
            json!({"answers": [
                {"index": 1, "answer": "Yes."},
                {"index": 2, "answer": "No."},
                {"index": 3, "answer": "Maybe."},
            ]})
        );
    }

    #[test]
    fn pack_drop_leaves_out_exactly_that_item() {
        let text = blocks(&["first", "second [[emulate:pack-drop]]", "third"]);
        let conversation = asked(&[], &text);
        let (call, reply) =
            answer("m", &tool(json!({"type": "string"})), &conversation, 1000).unwrap();
        let input = json!({"answers": [
            {"index": 1, "answer": "Emulated m (messages: 1, blocks: 1): first"},
            {"index": 3, "answer": "Emulated m (messages: 1, blocks: 1): third"},
        ]});
        assert_eq!(call, call_for(&text, input.clone()));
        assert_eq!(reply, reply_for(&conversation, &input, StopReason::EndTurn));
    }

    #[test]
    fn pack_truncate_stops_before_that_item() {
        let text = blocks(&[
            "first",
            "second",
            "[[emulate:pack-truncate]] third",
            "fourth",
        ]);
        let conversation = asked(&[], &text);
        let (call, reply) =
            answer("m", &tool(json!({"type": "string"})), &conversation, 1000).unwrap();
        let input = json!({"answers": [
            {"index": 1, "answer": "Emulated m (messages: 1, blocks: 1): first"},
            {"index": 2, "answer": "Emulated m (messages: 1, blocks: 1): second"},
        ]});
        assert_eq!(call, call_for(&text, input.clone()));
        assert_eq!(
            reply,
            reply_for(&conversation, &input, StopReason::MaxTokens)
        );
        // On the first row, nothing is generated.
        let text = blocks(&["[[emulate:pack-truncate]]", "second"]);
        let (call, reply) = answer(
            "m",
            &tool(json!({"type": "string"})),
            &asked(&[], &text),
            1000,
        )
        .unwrap();
        assert_eq!(call.input, json!({"answers": []}));
        assert_eq!(
            (reply.text.as_str(), reply.output_tokens, reply.stop),
            ("{\"answers\":[]}", 4, StopReason::MaxTokens)
        );
    }

    #[test]
    fn max_tokens_cuts_at_a_whole_item() {
        let text = blocks(&["aaaa", "bbbb", "cccc"]);
        let conversation = asked(&[], &text);
        let string = tool(json!({"type": "string"}));
        let one = json!({"answers": [
            {"index": 1, "answer": "Emulated m (messages: 1, blocks: 1): aaaa"},
        ]});
        let two = json!({"answers": [
            {"index": 1, "answer": "Emulated m (messages: 1, blocks: 1): aaaa"},
            {"index": 2, "answer": "Emulated m (messages: 1, blocks: 1): bbbb"},
        ]});
        let two_tokens = answer::count_text_tokens(&two.to_string());
        let one_tokens = answer::count_text_tokens(&one.to_string());
        assert!(one_tokens < two_tokens);
        // Exactly enough for two items: the third would exceed the limit.
        let (call, reply) = answer("m", &string, &conversation, two_tokens).unwrap();
        assert_eq!(call, call_for(&text, two.clone()));
        assert_eq!(reply, reply_for(&conversation, &two, StopReason::MaxTokens));
        // One token short of two items: one item.
        let (call, reply) = answer("m", &string, &conversation, two_tokens - 1).unwrap();
        assert_eq!(call.input, one);
        assert_eq!(reply, reply_for(&conversation, &one, StopReason::MaxTokens));
        // Enough for everything: the whole answer, ended normally.
        let (call, reply) = answer("m", &string, &conversation, 10_000).unwrap();
        assert_eq!(call.input["answers"].as_array().map(Vec::len), Some(3));
        assert_eq!(reply.stop, StopReason::EndTurn);
        assert!(reply.output_tokens <= 10_000);
        // Too small for the first item: an empty array.
        let (call, reply) = answer("m", &string, &conversation, 5).unwrap();
        assert_eq!(call.input, json!({"answers": []}));
        assert_eq!(
            reply,
            reply_for(
                &conversation,
                &json!({"answers": []}),
                StopReason::MaxTokens
            )
        );
    }

    #[test]
    fn max_tokens_and_drop_combine() {
        // A dropped row adds nothing, so the next row still fits.
        let text = blocks(&["aaaa", "bbbb [[emulate:pack-drop]]", "cccc"]);
        let conversation = asked(&[], &text);
        let expected = json!({"answers": [
            {"index": 1, "answer": "Emulated m (messages: 1, blocks: 1): aaaa"},
            {"index": 3, "answer": "Emulated m (messages: 1, blocks: 1): cccc"},
        ]});
        let limit = answer::count_text_tokens(&expected.to_string());
        let (call, reply) =
            answer("m", &tool(json!({"type": "string"})), &conversation, limit).unwrap();
        assert_eq!(call.input, expected);
        assert_eq!(
            reply,
            reply_for(&conversation, &expected, StopReason::EndTurn)
        );
    }

    #[test]
    fn rows_are_a_json_array_of_strings() {
        let first = "line one\nline two";
        let second = "a \"quoted\" row, with [brackets] and a comma";
        let text = format!("  {}\n", blocks(&[first, second]));
        assert_eq!(
            rows(&text),
            vec![
                Row {
                    index: 1,
                    text: first.into()
                },
                Row {
                    index: 2,
                    text: second.into()
                },
            ]
        );
        let conversation = asked(&[], &text);
        let (call, _) = answer("m", &tool(json!({"type": "string"})), &conversation, 1000).unwrap();
        assert_eq!(
            call.input,
            json!({"answers": [
                {"index": 1, "answer": alone(&[], first)},
                {"index": 2, "answer": alone(&[], second)},
            ]})
        );
        for text in [
            "",
            "[",
            "[1, 2]",
            "{\"a\": 1}",
            "[\"x\"] and more",
            "Just a question.",
        ] {
            assert_eq!(rows(text), vec![], "{text:?}");
        }
    }

    #[test]
    fn non_ascii_rows_are_answered_whole() {
        let rows_text = ["Größe: 42 €", "日本語の\n文章です", "emoji 🦀\"🦀"];
        let text = blocks(&rows_text);
        let conversation = asked(&[], &text);
        let (call, reply) =
            answer("m", &tool(json!({"type": "string"})), &conversation, 1000).unwrap();
        let input = json!({"answers": [
            {"index": 1, "answer": "Emulated m (messages: 1, blocks: 1): Größe: 42 €"},
            {"index": 2, "answer": "Emulated m (messages: 1, blocks: 1): 日本語の\n文章です"},
            {"index": 3, "answer": "Emulated m (messages: 1, blocks: 1): emoji 🦀\"🦀"},
        ]});
        assert_eq!(call, call_for(&text, input.clone()));
        assert_eq!(reply, reply_for(&conversation, &input, StopReason::EndTurn));
        // Token limits count characters, not bytes.
        let limit = answer::count_text_tokens(&input.to_string());
        let (call, reply) = answer(
            "m",
            &tool(json!({"type": "string"})),
            &conversation,
            limit - 1,
        )
        .unwrap();
        assert_eq!(call.input["answers"].as_array().map(Vec::len), Some(2));
        assert_eq!(reply.stop, StopReason::MaxTokens);
    }

    #[test]
    fn not_packed_requests_get_none() {
        let text = blocks(&["one", "two"]);
        let ordinary = converse::ToolRequest {
            name: "out".into(),
            schema: json!({"type": "object", "properties": {"name": {"type": "string"}}}),
        };
        assert_eq!(answer("m", &ordinary, &asked(&[], &text), 1000), None);
        let string = tool(json!({"type": "string"}));
        for text in ["Just a question, no rows.", "[]", "[\"unclosed", ""] {
            assert_eq!(
                answer("m", &string, &asked(&[], text), 1000),
                None,
                "{text:?}"
            );
        }
        assert_eq!(answer("m", &string, &Conversation::default(), 1000), None);
    }

    #[test]
    fn rows_come_from_the_last_user_turn() {
        let conversation = Conversation {
            system: Vec::new(),
            turns: vec![
                Turn::user(blocks(&["old"])),
                Turn::assistant("..."),
                Turn {
                    role: answer::Role::User,
                    texts: vec![blocks(&["new"])],
                    blocks: 1,
                    media: Vec::new(),
                },
            ],
        };
        let (call, _) = answer("m", &tool(json!({"type": "string"})), &conversation, 1000).unwrap();
        assert_eq!(
            call.input,
            json!({"answers": [{"index": 1, "answer": "Emulated m (messages: 1, blocks: 1): new"}]})
        );
        assert_eq!(call.id, call_for("[\"new\"]", Value::Null).id);
    }
}
