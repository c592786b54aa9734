//! `ai_score(model, text, criterion [, options])`: how well each row's text meets a criterion,
//! as a number from 0 to 1.

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::logical_expr::ScalarUDF;

use super::ai_complete::{MODEL_EXAMPLE, OPTIONS_EXAMPLE};
use super::ai_filter::resolve_worded;
use super::function::{AiBinder, AiCall, AiFunction, BindArgs};
use super::text_call::{TextCall, TextKind};
use crate::bedrock::engine::CallOptions;
use crate::catalog::Catalog;
use crate::inference::{Ask, ModelCall, RowAnswer};

/// The function's name in SQL.
pub const NAME: &str = "ai_score";

/// The system prompt sent before the model's own: it asks for a bare number.
pub const INSTRUCTION: &str = "Rate how well the text meets the criterion, both given in the user's message. Reply with one number from 0 to 1 (0: not at all, 1: fully), and nothing else.";

/// What an error says of an answer that is not a score.
pub const NOT_A_SCORE: &str =
    "which is not a number from 0 to 1: phrase the criterion so that a text can be rated by it";

/// The user message of one row: the criterion, then the text.
#[must_use]
pub fn prompt(text: &str, criterion: &str) -> String {
    format!("Criterion: {criterion}\nText: {text}")
}

/// Scores each prompt (made by [`prompt`]; `None` asks nothing) with `call`'s model, for
/// `function` (named in errors): the fixed [`INSTRUCTION`], each answer checked by
/// [`parse_score`].
///
/// # Errors
/// As [`ModelCall::answer_each`].
pub async fn score_each(
    call: &ModelCall,
    function: &str,
    prompts: &[Option<String>],
    options: &CallOptions,
) -> Result<Vec<RowAnswer>> {
    let check = |answer: &str| match parse_score(answer) {
        Some(_) => Ok(()),
        None => Err(NOT_A_SCORE.to_string()),
    };
    let ask = Ask {
        input: "text",
        instruction: Some(INSTRUCTION),
        check: Some(&check),
        ..Ask::by(function)
    };
    call.answer_each(prompts, &ask, options).await
}

/// Reads a score strictly: after trimming whitespace and a trailing `.`, a decimal number made
/// of digits and at most one point (`1`, `0.75`, `.5`), from 0 to 1; `None` for anything else
/// (`80%`, `8/10`, `high`, `1e-1`, `1.5`).
#[must_use]
pub fn parse_score(answer: &str) -> Option<f64> {
    let word = answer.trim();
    let word = word.strip_suffix('.').unwrap_or(word).trim();
    let digits = word.chars().filter(char::is_ascii_digit).count();
    let points = word.chars().filter(|c| *c == '.').count();
    if digits == 0 || points > 1 || digits + points != word.chars().count() {
        return None;
    }
    word.parse::<f64>().ok().filter(|s| (0.0..=1.0).contains(s))
}

/// `ai_score(model, text, criterion [, options]) → Float64`: how well each row's text meets
/// the criterion, from 0 (not at all) to 1 (fully).
///
/// `model` is resolved like [`ai_complete`](super::ai_complete::AiComplete)'s; `criterion` is
/// any text expression (usually a constant). Each row sends `Criterion: …` and `Text: …` as the
/// user message, with the fixed system prompt [`INSTRUCTION`] before the model's own. The
/// answer is parsed strictly ([`parse_score`]); any other answer fails the query naming the row
/// (or, with `on_error = 'null'`, gives NULL). `options` are `ai_complete`'s, without
/// `output_schema`. A NULL text or criterion gives NULL and sends no request.
///
/// ```sql
/// SELECT review, ai_score('amazon.nova-micro-v1:0', review, 'mentions a late delivery') AS s
/// FROM reviews ORDER BY s DESC;
/// ```
#[derive(Debug)]
pub struct AiScore;

impl AiScore {
    /// The function as registered in a session whose models are in `catalog`.
    pub fn udf(catalog: &Arc<Catalog>) -> ScalarUDF {
        AiFunction::unbound(Arc::new(Self), catalog)
    }
}

impl AiBinder for AiScore {
    fn name(&self) -> &str {
        NAME
    }

    fn bind(&self, catalog: &Catalog, args: &BindArgs) -> Result<Arc<dyn AiCall>> {
        args.check_count(NAME, 3..=4, "model, text, criterion [, options]")?;
        let model = args.text(NAME, "model", 1, MODEL_EXAMPLE)?;
        let options = args.optional_text(NAME, "options", 4, OPTIONS_EXAMPLE)?;
        let call = resolve_worded(catalog, NAME, &model, options)?;
        Ok(TextCall::bound(NAME, call, TextKind::Score))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_read_strictly() {
        let read: Vec<Option<f64>> = [
            "0.75",
            " 1 ",
            "0",
            ".5",
            "1.",
            "0.30.",
            "1.5",
            "80%",
            "8/10",
            "high",
            "1e-1",
            "",
            ".",
            "-0.2",
            "0.5 points",
        ]
        .iter()
        .map(|a| parse_score(a))
        .collect();
        assert_eq!(
            read,
            vec![
                Some(0.75),
                Some(1.0),
                Some(0.0),
                Some(0.5),
                Some(1.0),
                Some(0.3),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None
            ]
        );
    }
}
