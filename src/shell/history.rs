//! The interactive shell's history: kept in the user's state directory, never in the current
//! directory (where a checkout could commit it), and without the values of secret parameters.
//!
//! ```text
//! CREATE ML_ENGINE e FROM bedrock USING aws_secret_access_key = 'wJal…', region_name = 'us-east-1'
//!   is saved as
//! CREATE ML_ENGINE e FROM bedrock USING aws_secret_access_key = '<redacted>', region_name = 'us-east-1'
//! ```

use std::path::PathBuf;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::bedrock::config::SECRET_PARAMETERS;
use crate::bedrock::redact::{REDACTED, url_for_display};

/// Where the history is kept: `datafusion-bedrock/history` in the user's state directory
/// (`$XDG_STATE_HOME`, else `~/.local/state` on Linux; the local data directory elsewhere), or
/// `None` when the system has none (then nothing is saved).
pub fn history_path() -> Option<PathBuf> {
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .map(|d| d.join("datafusion-bedrock").join("history"))
}

/// A line as it may be saved: the value after `secret_parameter =` replaced by
/// [`REDACTED`] for every secret parameter (`aws_secret_access_key`, `aws_session_token`,
/// `api_key`), and the user-info of URLs in strings hidden. A line that does not tokenize is kept only if it names no secret parameter.
#[must_use]
pub fn redact(line: &str) -> Option<String> {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, line).tokenize() else {
        let lower = line.to_lowercase();
        return (!SECRET_PARAMETERS.iter().any(|p| lower.contains(p))).then(|| line.to_string());
    };
    let mut out = String::with_capacity(line.len());
    // After a secret parameter's name: 1 = waiting for `=`, 2 = waiting for the value.
    let mut state = 0;
    for token in &tokens {
        let is_space = matches!(token, Token::Whitespace(_));
        match (&state, token) {
            (_, Token::Word(w))
                if state == 0
                    && w.quote_style.is_none()
                    && SECRET_PARAMETERS
                        .iter()
                        .any(|p| p.eq_ignore_ascii_case(&w.value)) =>
            {
                state = 1;
                out.push_str(&token.to_string());
            }
            (1, Token::Eq) => {
                state = 2;
                out.push_str(&token.to_string());
            }
            (2, _) if !is_space => {
                state = 0;
                out.push('\'');
                out.push_str(REDACTED);
                out.push('\'');
            }
            (1, _) if !is_space => {
                state = 0;
                out.push_str(&token.to_string());
            }
            // A URL's user-info is a secret too.
            (_, Token::SingleQuotedString(text)) if text.contains("://") => {
                out.push_str(&Token::SingleQuotedString(url_for_display(text)).to_string());
            }
            _ => out.push_str(&token.to_string()),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_never_reach_the_history() {
        assert_eq!(
            redact(
                "CREATE ML_ENGINE e FROM bedrock USING aws_access_key_id = 'AKID', AWS_SECRET_ACCESS_KEY = 'wJal/K7', aws_session_token = \"Fwo\", api_key=k3y, region_name = 'us-east-1';"
            )
            .as_deref(),
            Some(
                "CREATE ML_ENGINE e FROM bedrock USING aws_access_key_id = 'AKID', AWS_SECRET_ACCESS_KEY = '<redacted>', aws_session_token = '<redacted>', api_key='<redacted>', region_name = 'us-east-1';"
            )
        );
        assert_eq!(
            redact(
                "CREATE ML_ENGINE e FROM bedrock USING endpoint_url = 'http://user:pa55@host:9/'"
            )
            .as_deref(),
            Some(
                "CREATE ML_ENGINE e FROM bedrock USING endpoint_url = 'http://<redacted>@host:9/'"
            )
        );
        // Other text is kept as typed, comments and line breaks included.
        assert_eq!(
            redact("SELECT 'api_key' AS k, x -- note\nFROM t").as_deref(),
            Some("SELECT 'api_key' AS k, x -- note\nFROM t")
        );
        // Text that does not tokenize is kept only without a secret parameter in it.
        assert_eq!(
            redact("SELECT 'unterminated").as_deref(),
            Some("SELECT 'unterminated")
        );
        assert_eq!(redact("USING api_key = 'unterminated"), None);
    }
}
