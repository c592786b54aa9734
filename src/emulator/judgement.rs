//! The emulator's stand-ins for a model's judgement of scores, rankings and partial answers, so
//! that `ai_score`, `ai_rank` and `ai_agg` can be tested end to end. Each rule looks only at
//! the request's system prompt and its last user text, and is documented with the answers it
//! gives:
//!
//! - **Score**: when a system block contains `from 0 to 1`, the user text's line `Criterion: …`
//!   gives the criterion and its line `Text: …` (with every line after it) the text. The answer
//!   is the share of the criterion's distinct words (of three letters or more, ignoring case)
//!   found in the text as whole words, with two decimals: `0.67`.
//! - **Rank**: when a system block contains `best to worst`, the lines `[n] text` of the user
//!   text are ordered by that share, then by how many times the criterion's words occur in the
//!   text, then by n; the answer is their numbers, best first: `3, 1, 2`.
//! - **Parts**: when a system block contains `partial answers`, the user text's first line is a
//!   header and each further line an item. Under a header `Rows (chunk N of M, …)` the answer is
//!   `chunk N: <items> rows`; under another `Rows …` header, `all: <items> rows`. Under a header
//!   `Partial answers …`, items of the form `chunk N: R rows` or `chunks A-B, C: R rows` are
//!   merged: `chunks 1-3, 5: 400 rows` (the chunks named by every item, and the sum of their
//!   rows); when an item has another form, the answer is `Combined <n> partial answers.`

use std::collections::BTreeSet;

/// The rules of the module documentation: `Some(answer)` when one applies.
pub(crate) fn judge(system: &[String], user_text: &str) -> Option<String> {
    let has = |phrase: &str| system.iter().any(|b| b.to_lowercase().contains(phrase));
    if has("best to worst") {
        return Some(rank(user_text));
    }
    if has("from 0 to 1") {
        return Some(format!("{:.2}", score(user_text).0));
    }
    if has("partial answers") {
        return Some(parts(user_text));
    }
    None
}

/// The lower-cased words of a text.
fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The value after `label` on the line that starts with it (and, for the last label, every
/// line after).
fn field<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let at = text
        .match_indices(label)
        .map(|(at, _)| at)
        .find(|&at| at == 0 || text[..at].ends_with('\n'))?;
    Some(text[at + label.len()..].trim_start())
}

/// The share of `criterion`'s distinct words (three letters or more) that occur in `text`, and
/// how many times they occur in all.
fn share(criterion: &str, text: &str) -> (f64, usize) {
    let wanted: BTreeSet<String> = words(criterion)
        .into_iter()
        .filter(|w| w.chars().count() >= 3)
        .collect();
    if wanted.is_empty() {
        return (0.0, 0);
    }
    let found = words(text);
    let present = wanted.iter().filter(|w| found.contains(w)).count();
    let occurrences = found.iter().filter(|w| wanted.contains(*w)).count();
    #[allow(clippy::cast_precision_loss)]
    let share = present as f64 / wanted.len() as f64;
    (share, occurrences)
}

/// The score rule.
fn score(user_text: &str) -> (f64, usize) {
    let criterion = field(user_text, "Criterion:")
        .map(|c| c.lines().next().unwrap_or_default())
        .unwrap_or_default();
    let text = field(user_text, "Text:").unwrap_or_default();
    share(criterion, text)
}

/// The rank rule.
fn rank(user_text: &str) -> String {
    let criterion = field(user_text, "Criterion:")
        .map(|c| c.lines().next().unwrap_or_default())
        .unwrap_or_default();
    let mut items: Vec<(usize, f64, usize)> = user_text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix('[')?;
            let (number, text) = rest.split_once(']')?;
            let n = number.trim().parse::<usize>().ok()?;
            let (s, occurrences) = share(criterion, text);
            // Scores as the score rule gives them: two decimals.
            Some((n, (s * 100.0).round() / 100.0, occurrences))
        })
        .collect();
    items.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then_with(|| b.2.cmp(&a.2))
            .then_with(|| a.0.cmp(&b.0))
    });
    items
        .iter()
        .map(|(n, ..)| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The chunks and rows an item names: `chunk 3: 100 rows`, `chunks 1-3, 5: 400 rows`.
fn named_chunks(item: &str) -> Option<(BTreeSet<u64>, u64)> {
    let rest = item
        .trim()
        .strip_prefix("chunks ")
        .or_else(|| item.trim().strip_prefix("chunk "))?;
    let (list, rows) = rest.split_once(':')?;
    let rows = rows
        .trim()
        .strip_suffix(" rows")?
        .trim()
        .parse::<u64>()
        .ok()?;
    let mut chunks = BTreeSet::new();
    for range in list.split(',') {
        let range = range.trim();
        let (low, high) = range.split_once('-').unwrap_or((range, range));
        let (low, high) = (
            low.trim().parse::<u64>().ok()?,
            high.trim().parse::<u64>().ok()?,
        );
        if low > high || high - low > 1_000_000 {
            return None;
        }
        chunks.extend(low..=high);
    }
    Some((chunks, rows))
}

/// Chunk numbers as ranges: `1-3, 5`.
fn ranges(chunks: &BTreeSet<u64>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(u64, u64)> = None;
    for &c in chunks {
        run = match run {
            Some((low, high)) if c == high + 1 => Some((low, c)),
            Some((low, high)) => {
                out.push(if low == high {
                    low.to_string()
                } else {
                    format!("{low}-{high}")
                });
                Some((c, c))
            }
            None => Some((c, c)),
        };
    }
    if let Some((low, high)) = run {
        out.push(if low == high {
            low.to_string()
        } else {
            format!("{low}-{high}")
        });
    }
    out.join(", ")
}

/// The parts rule.
fn parts(user_text: &str) -> String {
    let mut lines = user_text.lines();
    let header = lines.next().unwrap_or_default();
    let items: Vec<&str> = lines.collect();
    if header.starts_with("Rows") {
        let chunk = header
            .split_once("chunk ")
            .and_then(|(_, rest)| rest.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok());
        return match chunk {
            Some(n) => format!("chunk {n}: {} rows", items.len()),
            None => format!("all: {} rows", items.len()),
        };
    }
    let mut chunks = BTreeSet::new();
    let mut rows = 0;
    for item in &items {
        let Some((named, r)) = named_chunks(item) else {
            return format!("Combined {} partial answers.", items.len());
        };
        chunks.extend(named);
        rows += r;
    }
    let word = if chunks.len() == 1 { "chunk" } else { "chunks" };
    format!("{word} {}: {rows} rows", ranges(&chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(system: &str, text: &str) -> Option<String> {
        judge(&[system.to_string()], text)
    }

    #[test]
    fn score_is_the_share_of_the_criterion_words_in_the_text() {
        let s = "Reply with one number from 0 to 1.";
        assert_eq!(
            asked(
                s,
                "Criterion: late delivery refund\nText: The delivery was late."
            )
            .as_deref(),
            Some("0.67")
        );
        assert_eq!(
            asked(s, "Criterion: a an\nText: a an").as_deref(),
            Some("0.00")
        );
        assert_eq!(
            asked(s, "Criterion: late\nText: first line\nvery LATE").as_deref(),
            Some("1.00")
        );
    }

    #[test]
    fn rank_orders_by_share_then_occurrences_then_number() {
        let s = "Order them from best to worst.";
        let text = "Criterion: late delivery\n[1] nothing here\n[2] late late delivery\n[3] late delivery\n[4] late";
        assert_eq!(asked(s, text).as_deref(), Some("2, 3, 4, 1"));
    }

    #[test]
    fn parts_are_counted_and_merged() {
        let s = "… or partial answers, one per line …";
        assert_eq!(
            asked(s, "Rows (chunk 3 of 9, 2 rows):\na\nb").as_deref(),
            Some("chunk 3: 2 rows")
        );
        assert_eq!(asked(s, "Rows (2):\na\nb").as_deref(), Some("all: 2 rows"));
        assert_eq!(
            asked(
                s,
                "Partial answers (3):\nchunks 1-2: 20 rows\nchunk 3: 5 rows\nchunks 5, 7-8: 1 rows"
            )
            .as_deref(),
            Some("chunks 1-3, 5, 7-8: 26 rows")
        );
        assert_eq!(
            asked(s, "Partial answers (2):\nchunk 1: 2 rows\nsomething else").as_deref(),
            Some("Combined 2 partial answers.")
        );
        assert_eq!(asked("Be brief.", "Rows (1):\na"), None);
    }
}
