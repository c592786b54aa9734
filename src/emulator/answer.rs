//! The emulated model: deterministic answers, token counts and embeddings.
//!
//! Every family's request is first read into a [`Conversation`]; the answer is a pure function of
//! the model id and that conversation, and says what the model received:
//!
//! `Emulated <model id> (messages: <n>, blocks: <n>[, system: <n>]): <last user text>`
//!
//! Images and documents of the last user turn show in its text where they were, each as
//! `[image: <format>, <n> bytes]` or `[document: <format> "<name>", <n> bytes]` with a single
//! space on either side (texts next to each other are joined by a newline):
//! `Emulated m (messages: 1, blocks: 3): Describe this [image: png, 1,234 bytes] [document: pdf "report", 5,120 bytes]`.
//! An image counts `width × height / 750` input tokens (at most 1,600; 1,600 when its header
//! gives no size), a document one token per 4 bytes of text formats and per 8 bytes of others.
//!
//! Two documented rules stand in for a model's judgement, so yes/no and labelling prompts can be
//! tested end to end. They look only at the request's system prompt and its last user text:
//!
//! - **Labels**: when a system block has a line `Labels: [...]` (a JSON array of strings), the
//!   answer is the label found earliest in the last user text, as whole words ignoring case (on
//!   a tie, the label listed first); when no label occurs in it, the answer is `I cannot tell.`
//! - **Yes or no**: otherwise, when a system block contains `yes or no` (any case), the answer
//!   is `Maybe.` if the last user text has the word `maybe`, else `Yes.` if it has the word `yes`
//!   or `true`, else `No.` (words compared ignoring case).
//!
//! Between the two, the rules of [`judgement`](super::judgement) answer scores, rankings and
//! partial answers.
//!
//! Tokens are counted as one per started group of four characters of every text the request
//! carries. `maxTokens` truncates the answer to that many tokens; a stop sequence cuts the answer
//! before its first occurrence.

use std::fmt::Write as _;

/// Who spoke a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    User,
    Assistant,
}

/// One turn of a conversation: its text blocks, how many blocks of any kind it had, and its
/// images and documents.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Turn {
    pub role: Role,
    pub texts: Vec<String>,
    pub blocks: usize,
    pub media: Vec<Media>,
}

/// An image or a document a turn carried.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Media {
    pub kind: crate::bedrock::media::MediaKind,
    /// How many of the turn's texts came before it.
    pub after: usize,
    /// `[image: png, 1,234 bytes]`.
    pub description: String,
    /// Its input tokens.
    pub tokens: u32,
}

impl Turn {
    pub(crate) fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            texts: vec![text.into()],
            blocks: 1,
            media: Vec::new(),
        }
    }

    pub(crate) fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            texts: vec![text.into()],
            blocks: 1,
            media: Vec::new(),
        }
    }
}

/// What a model received, whatever the family's wire format.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Conversation {
    pub system: Vec<String>,
    pub turns: Vec<Turn>,
}

impl Conversation {
    /// A single user prompt (prompt-style families without a chat template).
    pub(crate) fn single(prompt: impl Into<String>) -> Self {
        Self {
            system: Vec::new(),
            turns: vec![Turn::user(prompt)],
        }
    }

    pub(crate) fn blocks(&self) -> usize {
        self.turns.iter().map(|t| t.blocks).sum()
    }

    /// The text blocks of the last user turn, joined by newlines.
    pub(crate) fn last_user_text(&self) -> String {
        self.turns
            .iter()
            .rev()
            .find(|t| t.role == Role::User)
            .map(Turn::shown)
            .unwrap_or_default()
    }

    pub(crate) fn input_tokens(&self) -> u32 {
        let all = self
            .system
            .iter()
            .chain(self.turns.iter().flat_map(|t| t.texts.iter()));
        let media = self.turns.iter().flat_map(|t| t.media.iter());
        (all.map(|t| count_text_tokens(t)).sum::<u32>() + media.map(|m| m.tokens).sum::<u32>())
            .max(1)
    }
}

impl Turn {
    /// The turn's texts joined by newlines, its images and documents described where they
    /// were, a single space on either side.
    fn shown(&self) -> String {
        if self.media.is_empty() {
            return self.texts.join("\n");
        }
        let mut out = String::new();
        let mut last_was_media = false;
        let mut media = self.media.iter().peekable();
        for (i, text) in self.texts.iter().enumerate() {
            while let Some(m) = media.next_if(|m| m.after <= i) {
                push_media(&mut out, &m.description);
                last_was_media = true;
            }
            if last_was_media {
                out.push(' ');
                out.push_str(text.trim_start());
            } else {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(text);
            }
            last_was_media = false;
        }
        for m in media {
            push_media(&mut out, &m.description);
        }
        out
    }
}

/// Appends a media description after a single space.
fn push_media(out: &mut String, description: &str) {
    out.truncate(out.trim_end().len());
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(description);
}

/// Why generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence(String),
}

/// The emulated model's answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub text: String,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub stop: StopReason,
}

/// Tokens of a text, as the emulator counts them: one per started group of four characters.
///
/// ```
/// assert_eq!(datafusion_bedrock::emulator::count_text_tokens("What is"), 2);
/// assert_eq!(datafusion_bedrock::emulator::count_text_tokens(""), 0);
/// ```
#[must_use]
pub fn count_text_tokens(text: &str) -> u32 {
    u32::try_from(text.chars().count().div_ceil(4)).unwrap_or(u32::MAX)
}

/// Where `word` occurs in `text` as whole words (both already lower-cased).
fn find_words(text: &str, word: &str) -> Option<usize> {
    if word.is_empty() {
        return None;
    }
    text.match_indices(word).map(|(at, _)| at).find(|&at| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// The judgement rules of the module documentation: `Some(answer)` when the system prompt asks
/// for a label or for yes or no.
fn judge(conversation: &Conversation) -> Option<String> {
    let text = conversation.last_user_text().to_lowercase();
    let labels: Option<Vec<String>> = conversation.system.iter().find_map(|block| {
        block.lines().find_map(|line| {
            let list = line.trim().strip_prefix("Labels:")?;
            serde_json::from_str::<Vec<String>>(list.trim()).ok()
        })
    });
    if let Some(labels) = labels {
        let found = labels
            .iter()
            .enumerate()
            .filter_map(|(i, label)| find_words(&text, &label.to_lowercase()).map(|at| (at, i)))
            .min();
        return Some(
            found.map_or_else(|| "I cannot tell.".to_string(), |(_, i)| labels[i].clone()),
        );
    }
    if let Some(answer) =
        super::judgement::judge(&conversation.system, &conversation.last_user_text())
    {
        return Some(answer);
    }
    if conversation
        .system
        .iter()
        .any(|block| block.to_lowercase().contains("yes or no"))
    {
        let has = |w: &str| find_words(&text, w).is_some();
        let verdict = if has("maybe") {
            "Maybe."
        } else if has("yes") || has("true") {
            "Yes."
        } else {
            "No."
        };
        return Some(verdict.to_string());
    }
    None
}

/// The full, untruncated answer.
pub(crate) fn compose(model_id: &str, conversation: &Conversation) -> String {
    if let Some(answer) = judge(conversation) {
        return answer;
    }
    let mut text = format!(
        "Emulated {model_id} (messages: {}, blocks: {}",
        conversation.turns.len(),
        conversation.blocks()
    );
    if !conversation.system.is_empty() {
        let _ = write!(text, ", system: {}", conversation.system.len());
    }
    let _ = write!(text, "): {}", conversation.last_user_text());
    text
}

/// Answers a conversation; `max_tokens` is the effective limit (request or model default).
pub(crate) fn reply(
    model_id: &str,
    conversation: &Conversation,
    max_tokens: u32,
    stop_sequences: &[String],
) -> Reply {
    let full = compose(model_id, conversation);
    let mut text = full.as_str();
    let mut stop = StopReason::EndTurn;
    if let Some((at, seq)) = stop_sequences
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| full.find(s.as_str()).map(|at| (at, s)))
        .min_by_key(|(at, _)| *at)
    {
        text = &full[..at];
        stop = StopReason::StopSequence(seq.clone());
    }
    let limit_chars = usize::try_from(max_tokens)
        .unwrap_or(usize::MAX)
        .saturating_mul(4);
    if let Some((cut, _)) = text.char_indices().nth(limit_chars) {
        text = &text[..cut];
        stop = StopReason::MaxTokens;
    }
    Reply {
        text: text.to_string(),
        input_tokens: conversation.input_tokens(),
        output_tokens: count_text_tokens(text),
        stop,
    }
}

/// Splits an answer into the pieces a stream delivers: four words at a time, whitespace kept,
/// so the pieces concatenate to the whole text.
pub(crate) fn stream_pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut words = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                words += 1;
                in_word = false;
            }
        } else {
            if !in_word && words == 4 {
                pieces.push(&text[start..i]);
                start = i;
                words = 0;
            }
            in_word = true;
        }
    }
    if start < text.len() || pieces.is_empty() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// 64-bit FNV-1a: a hash that is the same on every platform and Rust version.
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64: a tiny, seedable generator for reproducible numbers.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform number in `[0, 1)` from a generator state.
// Both operands fit in f64's 53-bit mantissa: the conversions are exact.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn unit_f64(state: &mut u64) -> f64 {
    let x = (splitmix64(state) >> 11) as f64;
    x / (1u64 << 53) as f64
}

/// The emulator's embedding of a text: a bag of words, each lower-cased word contributing a
/// fixed pseudo-random vector seeded by (model id, word). Texts that share words are similar,
/// identical texts are identical, and the result has unit length when `normalize` is true.
#[must_use]
pub fn embedding_for(model_id: &str, text: &str, dimensions: usize, normalize: bool) -> Vec<f32> {
    let mut sum = vec![0f64; dimensions];
    let lower = text.to_lowercase();
    let mut words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        words.push(lower.as_str());
    }
    for word in words {
        let mut state = fnv1a(&[model_id.as_bytes(), word.as_bytes()]);
        for x in &mut sum {
            *x += unit_f64(&mut state) * 2.0 - 1.0;
        }
    }
    let norm = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
    let scale = if normalize && norm > 0.0 {
        1.0 / norm
    } else {
        1.0
    };
    #[allow(clippy::cast_possible_truncation)]
    sum.iter().map(|x| (x * scale) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_turns() -> Conversation {
        Conversation {
            system: vec!["Be brief.".into()],
            turns: vec![
                Turn::user("What is the capital of Sweden?"),
                Turn::assistant("Stockholm."),
                Turn {
                    role: Role::User,
                    texts: vec!["And of Norway?".into(), "Answer in one word.".into()],
                    blocks: 2,
                    media: Vec::new(),
                },
            ],
        }
    }

    #[test]
    fn answer_reveals_what_the_model_received() {
        let r = reply("m", &two_turns(), 1000, &[]);
        assert_eq!(
            r,
            Reply {
                text: "Emulated m (messages: 3, blocks: 4, system: 1): And of Norway?\nAnswer in one word.".into(),
                input_tokens: 3 + 8 + 3 + 4 + 5,
                output_tokens: 21,
                stop: StopReason::EndTurn,
            }
        );
    }

    fn asked(system: &str, text: &str) -> String {
        let c = Conversation {
            system: vec![system.into()],
            turns: vec![Turn::user(text)],
        };
        compose("m", &c)
    }

    #[test]
    fn labels_rule_picks_the_earliest_label_in_the_text() {
        let system = "Pick one.\nLabels: [\"billing\", \"late delivery\", \"other\"]";
        assert_eq!(
            asked(system, "My late delivery, and billing"),
            "late delivery"
        );
        assert_eq!(asked(system, "BILLING was wrong"), "billing");
        assert_eq!(asked(system, "rebilling issue"), "I cannot tell.");
        assert_eq!(asked(system, "other or billing"), "other");
    }

    #[test]
    fn yes_or_no_rule_reads_the_words_of_the_text() {
        let system = "Reply with yes or no.";
        assert_eq!(asked(system, "Is it true?"), "Yes.");
        assert_eq!(asked(system, "YES it is"), "Yes.");
        assert_eq!(asked(system, "yesterday"), "No.");
        assert_eq!(asked(system, "maybe yes"), "Maybe.");
        assert_eq!(
            asked("Be brief.", "yes"),
            "Emulated m (messages: 1, blocks: 1, system: 1): yes"
        );
    }

    #[test]
    fn max_tokens_and_stop_sequences_cut_the_answer() {
        let c = Conversation::single("one two three");
        let r = reply("m", &c, 3, &[]);
        assert_eq!(
            (r.text.as_str(), r.output_tokens, r.stop),
            ("Emulated m (", 3, StopReason::MaxTokens)
        );
        let r = reply("m", &c, 100, &["two".into(), "three".into()]);
        assert_eq!(
            (r.text.as_str(), r.stop),
            (
                "Emulated m (messages: 1, blocks: 1): one ",
                StopReason::StopSequence("two".into())
            )
        );
    }

    #[test]
    fn stream_pieces_concatenate_to_the_text() {
        let text = "Emulated m (messages: 1, blocks: 1): one two  three\nfour";
        let pieces = stream_pieces(text);
        assert_eq!(
            pieces,
            vec![
                "Emulated m (messages: 1, ",
                "blocks: 1): one two  ",
                "three\nfour"
            ]
        );
        assert_eq!(pieces.concat(), text);
        assert_eq!(stream_pieces(""), vec![""]);
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors_that_reflect_shared_words() {
        let a = embedding_for("e", "the red fox", 256, true);
        let b = embedding_for("e", "The red fox!", 256, true);
        let c = embedding_for("e", "a red car", 256, true);
        let d = embedding_for("e", "quantum chromodynamics", 256, true);
        assert_eq!(a, b);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        let cos = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert!(
            cos(&a, &c) > cos(&a, &d) + 0.2,
            "{} vs {}",
            cos(&a, &c),
            cos(&a, &d)
        );
    }
}
