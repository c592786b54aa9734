//! `ai_rank(model, text, criterion, k [, options])`: the `k` texts of a group that best meet a
//! criterion, best first — an aggregate that does not compare every pair.
//!
//! 1. **Pre-score**: every distinct text of every group is scored once, as `ai_score` does
//!    (one request per text, deduplicated and cached by the model-call core).
//! 2. **Refine**: the best `min(2k, 50)` texts of each group by pre-score (ties by text) are
//!    sent in one request, numbered, and the model orders them best to worst; the answer must
//!    be a permutation of their numbers.
//! 3. The refined order, then the other texts by pre-score, cut to `k`.
//!
//! So a group of n texts costs n + 1 requests, not the n·(n−1)/2 of pairwise comparison.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use datafusion::error::Result;

use super::ai_agg::MetaSum;
use super::ai_score::{self, parse_score};
use crate::bedrock::engine::CallOptions;
use crate::inference::{Ask, ModelCall, RowAnswer};

/// The function's name in SQL.
pub const NAME: &str = "ai_rank";

/// The most texts one refinement request orders.
pub const REFINE_MAX: usize = 50;

/// The system prompt of the refinement request.
pub const INSTRUCTION: &str = "Order the numbered texts in the user's message from best to worst by how well each meets the criterion given there. Reply with all their numbers, best first, separated by commas, and nothing else.";

/// What an error says of an order that is not a permutation.
pub const NOT_AN_ORDER: &str =
    "which does not list every number once: ask for the numbers only, best first";

/// What a group is ranked by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranking {
    /// The criterion.
    pub criterion: String,
    /// How many texts to keep.
    pub k: usize,
}

impl Ranking {
    /// How many of the best pre-scored texts the refinement orders.
    #[must_use]
    pub fn refined(&self, texts: usize) -> usize {
        (self.k.saturating_mul(2)).min(REFINE_MAX).min(texts)
    }
}

/// The refinement request's user message: the criterion, then the texts numbered from 1, one a
/// line.
#[must_use]
pub fn refine_prompt(criterion: &str, texts: &[&str]) -> String {
    let mut prompt = format!("Criterion: {criterion}");
    for (i, text) in texts.iter().enumerate() {
        let line: Vec<&str> = text.split(['\n', '\r']).collect();
        let _ = write!(prompt, "\n[{}] {}", i + 1, line.join(" "));
    }
    prompt
}

/// Reads an order of `n` numbered texts: the numbers 1..=n, each once, separated by commas or
/// whitespace (`[2]` and `2.` are read as 2). `None` when it is not such a permutation.
#[must_use]
pub fn parse_order(answer: &str, n: usize) -> Option<Vec<usize>> {
    let mut seen = vec![false; n];
    let mut order = Vec::with_capacity(n);
    for token in answer
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
    {
        let number = token
            .trim_matches(|c| c == '[' || c == ']' || c == '.')
            .parse::<usize>()
            .ok()?;
        let slot = seen.get_mut(number.checked_sub(1)?)?;
        if *slot {
            return None;
        }
        *slot = true;
        order.push(number - 1);
    }
    (order.len() == n).then_some(order)
}

/// The best `k` texts of each group, best first (`None`: no text, a NULL answer and no
/// request). The answer's `value` is the JSON array of the texts.
///
/// # Errors
/// A failed request with `on_error = 'fail'`, or a spent budget.
pub async fn rank(
    call: &ModelCall,
    ranking: &Ranking,
    groups: Vec<Option<Vec<String>>>,
    options: &CallOptions,
) -> Result<Vec<RowAnswer>> {
    // Each group's distinct texts, sorted: the order rows arrive in does not matter.
    let groups: Vec<Vec<String>> = groups
        .into_iter()
        .map(|texts| {
            let mut texts = texts.unwrap_or_default();
            texts.sort_unstable();
            texts.dedup();
            texts
        })
        .collect();
    let mut distinct: Vec<&str> = groups.iter().flatten().map(String::as_str).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let scored = pre_score(call, ranking, &distinct, options).await?;
    let (by_score, sums) = candidates(&groups, &distinct, &scored);
    let counts: Vec<usize> = by_score.iter().map(|t| ranking.refined(t.len())).collect();
    let orders = refine(call, ranking, &by_score, &counts, options).await?;
    let mut answers = Vec::with_capacity(groups.len());
    for (((texts, mut sum), order), n) in by_score.into_iter().zip(sums).zip(orders).zip(counts) {
        if let Some(meta) = &order.meta {
            sum.add(meta);
        }
        let refined = match order.text.as_deref() {
            None if n > 1 => None,
            None => Some((0..n).collect::<Vec<_>>()),
            Some(answer) => parse_order(answer, n),
        };
        // No text, or a refinement that failed with on_error = 'null' (its error is in the
        // provenance): NULL.
        let value = refined.filter(|_| !texts.is_empty()).map(|refined| {
            serde_json::Value::Array(
                refined
                    .iter()
                    .map(|&i| texts[i])
                    .chain(texts[n..].iter().copied())
                    .take(ranking.k)
                    .map(|t| serde_json::Value::String(t.to_string()))
                    .collect(),
            )
        });
        answers.push(RowAnswer {
            value,
            meta: sum.finish(0, 0),
            ..RowAnswer::default()
        });
    }
    Ok(answers)
}

/// Step 1: one score per distinct text (`distinct` is sorted), as `ai_score` asks it.
async fn pre_score(
    call: &ModelCall,
    ranking: &Ranking,
    distinct: &[&str],
    options: &CallOptions,
) -> Result<Vec<RowAnswer>> {
    let prompts: Vec<Option<String>> = distinct
        .iter()
        .map(|t| Some(ai_score::prompt(t, &ranking.criterion)))
        .collect();
    ai_score::score_each(call, NAME, &prompts, options).await
}

/// Step 2: each group's texts, best pre-score first (ties by text; unscored texts left out),
/// and the provenance of their scores.
fn candidates<'a>(
    groups: &'a [Vec<String>],
    distinct: &[&str],
    scored: &[RowAnswer],
) -> (Vec<Vec<&'a str>>, Vec<MetaSum>) {
    let mut sums: Vec<MetaSum> = Vec::with_capacity(groups.len());
    let mut by_score: Vec<Vec<&str>> = Vec::with_capacity(groups.len());
    for texts in groups {
        let mut sum = MetaSum::default();
        let mut ordered: Vec<(&str, f64)> = Vec::with_capacity(texts.len());
        for text in texts {
            let Some(answer) = distinct
                .binary_search(&text.as_str())
                .ok()
                .and_then(|i| scored.get(i))
            else {
                continue;
            };
            if let Some(meta) = &answer.meta {
                sum.add(meta);
            }
            if let Some(score) = answer.text.as_deref().and_then(parse_score) {
                ordered.push((text, score));
            }
        }
        ordered.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        sums.push(sum);
        by_score.push(ordered.into_iter().map(|(t, _)| t).collect());
    }
    (by_score, sums)
}

/// Step 3: one refinement request per group with two or more candidates (`counts[i]` of them);
/// one call per count, so that each answer is checked against its own.
async fn refine(
    call: &ModelCall,
    ranking: &Ranking,
    by_score: &[Vec<&str>],
    counts: &[usize],
    options: &CallOptions,
) -> Result<Vec<RowAnswer>> {
    let mut orders: Vec<RowAnswer> = vec![RowAnswer::default(); by_score.len()];
    let mut sizes: Vec<usize> = counts.iter().copied().filter(|n| *n > 1).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for n in sizes {
        let check = move |answer: &str| match parse_order(answer, n) {
            Some(_) => Ok(()),
            None => Err(NOT_AN_ORDER.to_string()),
        };
        let ask = Ask {
            input: "candidate list",
            instruction: Some(INSTRUCTION),
            check: Some(&check),
            ..Ask::by(NAME)
        };
        let prompts: Vec<Option<String>> = by_score
            .iter()
            .zip(counts)
            .map(|(texts, c)| (*c == n).then(|| refine_prompt(&ranking.criterion, &texts[..n])))
            .collect();
        let answered = call.answer_each(&prompts, &ask, options).await?;
        for ((slot, answer), c) in orders.iter_mut().zip(answered).zip(counts) {
            if *c == n {
                *slot = answer;
            }
        }
    }
    Ok(orders)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_read_strictly() {
        assert_eq!(parse_order("3, 1, 2", 3), Some(vec![2, 0, 1]));
        assert_eq!(parse_order("[2] [1]", 2), Some(vec![1, 0]));
        assert_eq!(parse_order("2. 1.", 2), Some(vec![1, 0]));
        assert_eq!(parse_order("1, 1", 2), None);
        assert_eq!(parse_order("1", 2), None);
        assert_eq!(parse_order("1, 3", 2), None);
        assert_eq!(parse_order("0, 1", 2), None);
        assert_eq!(parse_order("first, second", 2), None);
    }

    #[test]
    fn refinement_orders_at_most_twice_k_and_fifty() {
        let r = |k| Ranking {
            criterion: String::new(),
            k,
        };
        assert_eq!(
            (r(3).refined(100), r(3).refined(4), r(40).refined(100)),
            (6, 4, 50)
        );
        assert_eq!(
            refine_prompt("late", &["a\nb", "c"]),
            "Criterion: late\n[1] a b\n[2] c"
        );
    }
}
