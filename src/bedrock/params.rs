//! `USING key = value, …` parameter values, their typed reading, and did-you-mean suggestions.

use std::fmt;

use crate::error::{Error, Result};

/// A parameter value as written in SQL: a string, a number, a boolean or a list.
#[derive(Clone, PartialEq)]
pub enum ParamValue {
    /// `'text'`
    String(String),
    /// `100`, `0.3`
    Number(f64),
    /// `true`, `false`
    Bool(bool),
    /// `['\n\n', 'Human:']`
    List(Vec<ParamValue>),
}

impl fmt::Debug for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Self::Number(n) => write!(f, "{n}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl ParamValue {
    fn kind(&self) -> &'static str {
        match self {
            Self::String(_) => "a string",
            Self::Number(_) => "a number",
            Self::Bool(_) => "a boolean",
            Self::List(_) => "a list",
        }
    }

    /// The value as text; numbers and booleans are accepted and rendered.
    ///
    /// # Errors
    /// An [`Error::InvalidInput`] when the value is a list.
    pub fn as_text(&self, key: &str) -> Result<String> {
        match self {
            Self::String(s) => Ok(s.clone()),
            Self::Number(n) => Ok(n.to_string()),
            Self::Bool(b) => Ok(b.to_string()),
            Self::List(_) => Err(Error::InvalidInput(format!(
                "Parameter '{key}' must be a string, not a list: write {key} = '…'"
            ))),
        }
    }

    /// The value as a number; numeric strings are accepted.
    ///
    /// # Errors
    /// An [`Error::InvalidInput`] when the value is a boolean, a list, or a string that does
    /// not parse as a number once trimmed.
    pub fn as_number(&self, key: &str) -> Result<f64> {
        self.number_or_example(key, "10")
    }

    /// The value as a number; the error's suggestion writes `key = example`.
    fn number_or_example(&self, key: &str, example: &str) -> Result<f64> {
        match self {
            Self::Number(n) => Ok(*n),
            Self::String(s) => s.trim().parse().map_err(|_| {
                Error::InvalidInput(format!(
                    "Parameter '{key}' must be a number, got '{s}': write {key} = {example}"
                ))
            }),
            other => Err(Error::InvalidInput(format!(
                "Parameter '{key}' must be a number, got {}: write {key} = {example}",
                other.kind()
            ))),
        }
    }

    /// A number within `[min, max]`; a value that is not a number gets a suggestion within
    /// the range.
    ///
    /// # Errors
    /// An [`Error::InvalidInput`] when the value is not a number (as [`Self::as_number`]), or
    /// when the number is not finite or lies outside `[min, max]`.
    pub fn as_number_in(&self, key: &str, min: f64, max: f64) -> Result<f64> {
        let example = if (min..=max).contains(&10.0) {
            "10".to_string()
        } else {
            f64::midpoint(min, max).to_string()
        };
        let n = self.number_or_example(key, &example)?;
        if n.is_finite() && (min..=max).contains(&n) {
            Ok(n)
        } else {
            Err(Error::InvalidInput(format!(
                "Parameter '{key}' = {n} is out of range: it must be between {min} and {max}"
            )))
        }
    }

    /// A whole number within `[min, max]`.
    ///
    /// # Errors
    /// An [`Error::InvalidInput`] when the value is not a number, is not finite or lies
    /// outside `[min, max]` (as [`Self::as_number_in`]), or has a fractional part.
    pub fn as_integer_in(&self, key: &str, min: u64, max: u64) -> Result<u64> {
        #[allow(clippy::cast_precision_loss)]
        let n = self.as_number_in(key, min as f64, max as f64)?;
        if n.fract() != 0.0 {
            return Err(Error::InvalidInput(format!(
                "Parameter '{key}' = {n} must be a whole number"
            )));
        }
        // `n` is whole and within `[min, max]`, so non-negative and at most `max as f64`: the
        // cast keeps its value (a `max` rounded up to 2^64 saturates to `u64::MAX`).
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(n as u64)
    }

    /// The value as a boolean; `'true'`/`'false'` strings are accepted.
    ///
    /// # Errors
    /// An [`Error::InvalidInput`] when the value is neither a boolean nor the string `'true'`
    /// or `'false'` (in any case).
    pub fn as_bool(&self, key: &str) -> Result<bool> {
        match self {
            Self::Bool(b) => Ok(*b),
            Self::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            Self::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            other => Err(Error::InvalidInput(format!(
                "Parameter '{key}' must be true or false, got {other}"
            ))),
        }
    }

    /// A string or a list of strings (e.g. `stop`).
    ///
    /// # Errors
    /// An [`Error::InvalidInput`] when the value is a number or a boolean, or a list holding
    /// anything but strings.
    pub fn as_string_list(&self, key: &str) -> Result<Vec<String>> {
        match self {
            Self::String(s) => Ok(vec![s.clone()]),
            Self::List(items) => items
                .iter()
                .map(|item| match item {
                    Self::String(s) => Ok(s.clone()),
                    other => Err(Error::InvalidInput(format!(
                        "Parameter '{key}' must be a string or a list of strings, but the list holds {}: write {key} = ['\\n\\n', 'Human:']",
                        other.kind()
                    ))),
                })
                .collect(),
            other => Err(Error::InvalidInput(format!(
                "Parameter '{key}' must be a string or a list of strings, got {}: write {key} = ['\\n\\n', 'Human:']",
                other.kind()
            ))),
        }
    }
}

/// Edit distance between two short strings (for suggestions).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The known name closest to `unknown`, when it is close enough to be a likely typo or synonym.
#[must_use]
pub fn suggest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let unknown = unknown.to_lowercase();
    known
        .iter()
        .map(|k| {
            // A shared word counts as closeness too, the more the longer it is:
            // `aws_region` ~ `region_name` rather than `aws_access_key_id`.
            let shared = unknown
                .split('_')
                .filter(|w| w.len() > 2 && k.split('_').any(|kw| kw == *w))
                .map(str::len)
                .max()
                .unwrap_or(0);
            let d = distance(&unknown, k);
            let closeness = if shared > 0 {
                d.min(7usize.saturating_sub(shared).max(1))
            } else {
                d
            };
            (closeness, *k)
        })
        .filter(|(d, k)| *d <= (k.len() / 3).max(1) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// ` — did you mean 'x'?` when a known name is close to `unknown`, else nothing: the one
/// wording of every suggestion.
#[must_use]
pub fn did_you_mean(unknown: &str, known: &[&str]) -> Option<String> {
    suggest(unknown, known).map(|s| format!(" — did you mean '{s}'?"))
}

/// The error for a parameter nobody knows, with a suggestion when there is one.
#[must_use]
pub fn unknown_parameter(kind: &str, key: &str, known: &[&str]) -> Error {
    let hint = did_you_mean(key, known)
        .unwrap_or_else(|| format!(" — the {kind} parameters are: {}", known.join(", ")));
    Error::InvalidInput(format!("Unknown {kind} parameter '{key}'{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_and_synonyms() {
        let known = [
            "aws_access_key_id",
            "aws_secret_access_key",
            "region_name",
            "max_concurrency",
        ];
        assert_eq!(suggest("aws_region", &known), Some("region_name"));
        assert_eq!(suggest("region", &known), Some("region_name"));
        assert_eq!(suggest("max_concurency", &known), Some("max_concurrency"));
        assert_eq!(suggest("colour", &known), None);
        assert_eq!(
            unknown_parameter("engine", "aws_region", &known).to_string(),
            "Unknown engine parameter 'aws_region' — did you mean 'region_name'?"
        );
    }

    #[test]
    fn typed_reads_name_the_parameter_and_the_fix() {
        assert_eq!(
            ParamValue::Number(3.0)
                .as_integer_in("max_retries", 0, 20)
                .unwrap(),
            3
        );
        assert_eq!(
            ParamValue::Number(1.5)
                .as_number_in("temperature", 0.0, 1.0)
                .unwrap_err()
                .to_string(),
            "Parameter 'temperature' = 1.5 is out of range: it must be between 0 and 1"
        );
        assert_eq!(
            ParamValue::String("ten".into())
                .as_number("max_tokens")
                .unwrap_err()
                .to_string(),
            "Parameter 'max_tokens' must be a number, got 'ten': write max_tokens = 10"
        );
        // Regression: the suggestion was out of range for parameters such as temperature.
        assert_eq!(
            ParamValue::String("hot".into())
                .as_number_in("temperature", 0.0, 1.0)
                .unwrap_err()
                .to_string(),
            "Parameter 'temperature' must be a number, got 'hot': write temperature = 0.5"
        );
        assert_eq!(
            ParamValue::List(vec![
                ParamValue::String("a".into()),
                ParamValue::String("b".into())
            ])
            .as_string_list("stop")
            .unwrap(),
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(
            ParamValue::Number(1.0)
                .as_string_list("stop")
                .unwrap_err()
                .to_string(),
            "Parameter 'stop' must be a string or a list of strings, got a number: write stop = ['\\n\\n', 'Human:']"
        );
        assert_eq!(ParamValue::String("it's".into()).to_string(), "'it''s'");
    }
}
