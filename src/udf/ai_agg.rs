//! `ai_agg(model, text, instruction [, options])` and `ai_summarize_agg(model, text [, options])`:
//! one answer for any number of rows, by hierarchical map-reduce over the model's context
//! window.
//!
//! A group's texts are packed into chunks that fit the context window, one text a line; each
//! chunk is answered on its own (the map), then the partial answers are packed and combined
//! the same way (a reduce level), level by level, until one answer remains. A group that fits
//! in one request is answered by that one request. Every level of every group of a batch is
//! one call of the model-call core (concurrent, deduplicated, cached, under the query's budget).
//!
//! Without `ORDER BY` inside the call the texts are sorted first, so the answer (and its cache
//! keys) does not depend on the order rows arrive in; `ai_agg(… ORDER BY x)` keeps the query's
//! order.

use datafusion::error::{DataFusionError, Result};
use serde::{Deserialize, Serialize};

use crate::bedrock::engine::CallOptions;
use crate::inference::{Ask, ModelCall, RowAnswer, RowMeta};

/// `ai_agg`'s name in SQL.
pub const NAME: &str = "ai_agg";

/// `ai_summarize_agg`'s name in SQL.
pub const SUMMARIZE_NAME: &str = "ai_summarize_agg";

/// The task of `ai_summarize_agg`.
pub const SUMMARIZE_INSTRUCTION: &str = "Summarize these rows in a few sentences.";

/// The share of the context window a prompt may fill: token counts are estimates.
const WINDOW_SHARE: f64 = 0.9;

/// Tokens kept for the answer when the model sets no `max_tokens`.
pub const DEFAULT_ANSWER_TOKENS: u32 = 1_000;

/// The fixed system prompt of every request; the task follows it.
pub const INSTRUCTION: &str = "After a header line, the user's message holds either rows of a table or partial answers, one per line; each partial answer was computed over a part of the rows. Do the task below: over the rows given, or, with partial answers, by combining them into one answer for all their rows. Reply with the answer only.";

/// How a group's texts are reduced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reduction {
    /// The task (`ai_summarize_agg`'s is [`SUMMARIZE_INSTRUCTION`]).
    pub instruction: String,
    /// The model's context window in tokens (the catalog's, or the `context_tokens` option).
    pub context_tokens: u32,
    /// Whether the query ordered the texts (`ai_agg(… ORDER BY …)`); else they are sorted.
    pub ordered: bool,
}

impl Reduction {
    /// The system prompt of every request.
    #[must_use]
    pub fn system(&self) -> String {
        format!("{INSTRUCTION}\nTask: {}", self.instruction)
    }

    /// How many tokens the lines of one request may take: the window's share, less the answer
    /// and the system prompt.
    fn line_budget(&self, answer_tokens: u32, system: &str) -> u64 {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let window = (f64::from(self.context_tokens) * WINDOW_SHARE) as u64;
        window
            .saturating_sub(u64::from(answer_tokens))
            .saturating_sub(tokens(system))
            .saturating_sub(HEADER_TOKENS)
    }
}

/// The fewest tokens a request must have for its lines.
const MIN_LINE_TOKENS: u64 = 32;

/// Tokens a header line may take.
const HEADER_TOKENS: u64 = 16;

/// Estimated tokens of a text: one per started four characters.
fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// A text on one line: line breaks become spaces.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r']).collect::<Vec<_>>().join(" ")
}

/// Packs lines into chunks of at most `budget` tokens, in order; a line longer than the budget
/// is an error.
///
/// # Errors
/// A line that does not fit in a request alone.
fn chunks(lines: Vec<String>, budget: u64, what: &str) -> Result<Vec<Vec<String>>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut used = 0;
    for line in lines {
        let cost = tokens(&line) + 1;
        if cost > budget {
            return Err(DataFusionError::Execution(format!(
                "ai_agg: {what} of about {cost} tokens does not fit the context window (about {budget} tokens are left for the lines of a request): raise the option context_tokens, lower the model's max_tokens, or shorten the text"
            )));
        }
        match out.last_mut() {
            Some(chunk) if used + cost <= budget => {
                chunk.push(line);
                used += cost;
            }
            _ => {
                out.push(vec![line]);
                used = cost;
            }
        }
    }
    Ok(out)
}

/// One group on its way to one answer.
#[derive(Debug, Default)]
struct Group {
    /// The lines of the next level (rows at first, then partial answers).
    lines: Vec<String>,
    /// Chunks of the first level.
    chunks: u32,
    /// Levels asked so far.
    levels: u32,
    /// Requests of the last level.
    last_level_requests: usize,
    /// What the group's requests cost so far.
    meta: MetaSum,
    /// The answer, once one remains (or the failure).
    answer: Option<RowAnswer>,
}

impl Group {
    /// The prompts of the group's next level: its lines packed into chunks, each under a
    /// header that says what the lines are.
    ///
    /// # Errors
    /// A line too long for a request, or partial answers that no longer fit fewer requests.
    fn next_level(&mut self, budget: u64) -> Result<Vec<String>> {
        let first = self.levels == 0;
        let what = if first { "a row" } else { "a partial answer" };
        let parts = chunks(std::mem::take(&mut self.lines), budget, what)?;
        let count = parts.len();
        if !first && count > 1 && count >= self.last_level_requests {
            return Err(DataFusionError::Execution(format!(
                "ai_agg: the partial answers no longer fit fewer requests ({count} requests at level {}): raise the option context_tokens or lower the model's max_tokens",
                self.levels + 1
            )));
        }
        if first {
            self.chunks = u32::try_from(count).unwrap_or(u32::MAX);
        }
        self.levels += 1;
        self.last_level_requests = count;
        Ok(parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                let header = match (first, count) {
                    (true, 1) => format!("Rows ({}):", part.len()),
                    (true, _) => format!("Rows (chunk {} of {count}, {} rows):", i + 1, part.len()),
                    (false, _) => format!("Partial answers ({}):", part.len()),
                };
                format!("{header}\n{}", part.join("\n"))
            })
            .collect())
    }

    /// After a level: the group's answer when one remains, NULL when a request failed (with
    /// `on_error = 'null'`); else it goes on.
    fn settle(&mut self, failed: bool) {
        if self.answer.is_some() || self.levels == 0 {
            return;
        }
        if failed || self.last_level_requests == 1 {
            let text = if failed { None } else { self.lines.pop() };
            self.answer = Some(RowAnswer {
                text,
                meta: self.meta.finish(self.chunks, self.levels),
                ..RowAnswer::default()
            });
        }
    }
}

/// The provenance of a row answered by several requests: their sums.
#[derive(Debug, Default)]
pub(crate) struct MetaSum {
    meta: Option<RowMeta>,
    /// Requests sent (not served from the cache or by a repeat).
    sent: u64,
}

impl MetaSum {
    /// Adds one request's provenance.
    pub(crate) fn add(&mut self, meta: &RowMeta) {
        if !meta.cache_hit && !meta.deduplicated && meta.batch_job.is_none() {
            self.sent += 1;
        }
        let Some(sum) = &mut self.meta else {
            self.meta = Some(meta.clone());
            return;
        };
        sum.input_tokens += meta.input_tokens;
        sum.output_tokens += meta.output_tokens;
        sum.latency_ms += meta.latency_ms;
        sum.retries += meta.retries;
        sum.throttles += meta.throttles;
        sum.cache_read_tokens += meta.cache_read_tokens;
        sum.cache_write_tokens += meta.cache_write_tokens;
        sum.cost_usd = match (sum.cost_usd, meta.cost_usd) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        sum.stop_reason.clone_from(&meta.stop_reason);
        if meta.error.is_some() {
            sum.error.clone_from(&meta.error);
        }
    }

    /// The row's provenance: counted as one row answered by the requests sent (a cache hit
    /// when none was), with an aggregate's `chunks` and `reduce_levels`.
    pub(crate) fn finish(&mut self, chunks: u32, reduce_levels: u32) -> Option<RowMeta> {
        let sent = std::mem::take(&mut self.sent);
        self.meta.take().map(|mut m| {
            m.cache_hit = sent == 0;
            m.deduplicated = false;
            m.counts_request = true;
            m.packed_rows = 1;
            m.extra_requests = sent.saturating_sub(1);
            m.chunks = chunks;
            m.reduce_levels = reduce_levels;
            m
        })
    }
}

/// One answer per group: `groups[i]` holds group `i`'s texts (`None`: no text, a NULL answer
/// and no request).
///
/// # Errors
/// A text too long for the window, partial answers that no longer shrink, or a failed request
/// (with `on_error = 'fail'`) or a spent budget.
pub async fn reduce(
    call: &ModelCall,
    reduction: &Reduction,
    groups: Vec<Option<Vec<String>>>,
    options: &CallOptions,
) -> Result<Vec<RowAnswer>> {
    let system = reduction.system();
    let answer_tokens = call
        .model()
        .params
        .max_tokens
        .unwrap_or(DEFAULT_ANSWER_TOKENS)
        .min(reduction.context_tokens / 2);
    let budget = reduction.line_budget(answer_tokens, &system);
    if budget < MIN_LINE_TOKENS {
        return Err(DataFusionError::Execution(format!(
            "ai_agg: a context window of {} tokens leaves no room for rows: the answer takes {answer_tokens} tokens (max_tokens) and the instructions about {}; raise the option context_tokens or lower max_tokens",
            reduction.context_tokens,
            tokens(&system) + HEADER_TOKENS
        )));
    }
    let mut state: Vec<Group> = groups
        .into_iter()
        .map(|texts| {
            let mut lines: Vec<String> = texts
                .unwrap_or_default()
                .iter()
                .map(|t| one_line(t))
                .collect();
            if !reduction.ordered {
                lines.sort_unstable();
            }
            Group {
                answer: lines.is_empty().then(RowAnswer::default),
                lines,
                ..Group::default()
            }
        })
        .collect();
    let check = |answer: &str| {
        if answer.trim().is_empty() {
            Err("which is empty: ask for a non-empty answer".to_string())
        } else {
            Ok(())
        }
    };
    let ask = Ask {
        input: "part",
        instruction: Some(&system),
        check: Some(&check),
        ..Ask::by(NAME)
    };
    loop {
        // This level's prompts: (group, prompt).
        let mut prompts: Vec<(usize, String)> = Vec::new();
        for (g, group) in state.iter_mut().enumerate() {
            if group.answer.is_none() {
                for prompt in group.next_level(budget)? {
                    prompts.push((g, prompt));
                }
            }
        }
        if prompts.is_empty() {
            break;
        }
        let (owners, texts): (Vec<usize>, Vec<Option<String>>) =
            prompts.into_iter().map(|(g, p)| (g, Some(p))).unzip();
        let answers = call.answer_each(&texts, &ask, options).await?;
        let mut failed = vec![false; state.len()];
        for (g, answer) in owners.iter().zip(answers) {
            let group = &mut state[*g];
            if let Some(meta) = &answer.meta {
                group.meta.add(meta);
            }
            match answer.text {
                Some(text) if !failed[*g] => group.lines.push(one_line(&text)),
                _ => failed[*g] = true,
            }
        }
        for (group, failed) in state.iter_mut().zip(failed) {
            group.settle(failed);
        }
    }
    Ok(state
        .into_iter()
        .map(|g| g.answer.unwrap_or_default())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_packed_in_order_within_the_budget() {
        let lines: Vec<String> = ["aaaa", "bbbbbbbb", "cc", "dddddddddddd"]
            .iter()
            .map(ToString::to_string)
            .collect();
        // Costs 2, 3, 2, 4 tokens (one for the line break).
        assert_eq!(
            chunks(lines.clone(), 5, "a row").unwrap(),
            vec![
                vec!["aaaa".to_string(), "bbbbbbbb".to_string()],
                vec!["cc".to_string()],
                vec!["dddddddddddd".to_string()],
            ]
        );
        assert_eq!(
            chunks(lines, 3, "a row").unwrap_err().strip_backtrace(),
            "Execution error: ai_agg: a row of about 4 tokens does not fit the context window (about 3 tokens are left for the lines of a request): raise the option context_tokens, lower the model's max_tokens, or shorten the text"
        );
    }

    #[test]
    fn texts_go_on_one_line() {
        assert_eq!(one_line("a\nb\r\nc"), "a b  c");
    }
}
