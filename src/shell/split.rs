//! Splitting SQL text into statements, and telling the extension's statements from the rest.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

fn tokens(sql: &str) -> Option<Vec<TokenWithSpan>> {
    Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .ok()
}

/// The byte offset of a 1-based (line, column) location, columns counted in characters.
fn offset(line_starts: &[usize], sql: &str, line: u64, column: u64) -> usize {
    let Some(start) = usize::try_from(line)
        .ok()
        .and_then(|l| l.checked_sub(1))
        .and_then(|l| line_starts.get(l))
        .copied()
    else {
        return sql.len();
    };
    let column = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
    sql[start..]
        .char_indices()
        .nth(column)
        .map_or(sql.len(), |(i, _)| start + i)
}

/// Splits SQL text on the `;` that end statements (not those inside strings, quoted names or
/// comments). Each piece is trimmed and keeps no `;`; pieces with nothing but whitespace and
/// comments are dropped. Text the tokenizer cannot read (an unterminated string) is one piece,
/// so the parser reports the error.
#[must_use]
pub fn split_statements(sql: &str) -> Vec<String> {
    let Some(tokens) = tokens(sql) else {
        return if sql.trim().is_empty() {
            Vec::new()
        } else {
            vec![sql.trim().to_string()]
        };
    };
    let mut line_starts = vec![0];
    line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut has_code = false;
    for t in &tokens {
        match &t.token {
            Token::SemiColon => {
                let end = offset(&line_starts, sql, t.span.start.line, t.span.start.column);
                if has_code {
                    pieces.push(sql[start..end].trim().to_string());
                }
                start = (end + 1).min(sql.len());
                has_code = false;
            }
            Token::Whitespace(_) | Token::EOF => {}
            _ => has_code = true,
        }
    }
    if has_code {
        pieces.push(sql[start..].trim().to_string());
    }
    pieces
}

/// Whether a statement starts like one of the extension's (`CREATE ML_ENGINE`, `CREATE [OR
/// REPLACE] MODEL`, `DROP ML_ENGINE|MODEL`, `SHOW ML_ENGINES|MODELS`, `DESCRIBE`), so its
/// syntax errors are the extension's to report.
#[must_use]
pub fn looks_like_extension(sql: &str) -> bool {
    let Some(tokens) = tokens(sql) else {
        return false;
    };
    let words: Vec<String> = tokens
        .iter()
        .filter(|t| {
            !matches!(
                t.token,
                Token::Whitespace(
                    Whitespace::Space
                        | Whitespace::Newline
                        | Whitespace::Tab
                        | Whitespace::SingleLineComment { .. }
                        | Whitespace::MultiLineComment(_)
                )
            )
        })
        .take(4)
        .map(|t| match &t.token {
            Token::Word(w) if w.quote_style.is_none() => w.value.to_uppercase(),
            _ => String::new(),
        })
        .collect();
    let w = |i: usize| words.get(i).map_or("", String::as_str);
    matches!(
        (w(0), w(1)),
        ("CREATE" | "DROP", "ML_ENGINE" | "MODEL")
            | ("SHOW", "ML_ENGINES" | "MODELS")
            | ("DESCRIBE" | "DESC", "MODEL")
    ) || (w(0), w(1), w(2), w(3)) == ("CREATE", "OR", "REPLACE", "MODEL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_statement_ends_only() {
        let sql = "CREATE MODEL m PREDICT a USING prompt_template = 'a; b {{q}}';\n\
                   -- a comment; with a semicolon\n\
                   SELECT \"x;y\" FROM t /* ; */ WHERE q = 'it''s; fine'  ;;\n\
                   SELECT 1";
        assert_eq!(
            split_statements(sql),
            vec![
                "CREATE MODEL m PREDICT a USING prompt_template = 'a; b {{q}}'",
                "-- a comment; with a semicolon\nSELECT \"x;y\" FROM t /* ; */ WHERE q = 'it''s; fine'",
                "SELECT 1",
            ]
        );
    }

    #[test]
    fn multibyte_text_keeps_its_offsets() {
        assert_eq!(
            split_statements("SELECT 'Göteborg – Malmö'; SELECT 'Å'"),
            vec!["SELECT 'Göteborg – Malmö'", "SELECT 'Å'"]
        );
    }

    #[test]
    fn blank_and_comment_only_pieces_are_dropped() {
        assert_eq!(
            split_statements("  ;\n-- nothing\n;  "),
            Vec::<String>::new()
        );
        assert_eq!(
            split_statements("SELECT 'unterminated; "),
            vec!["SELECT 'unterminated;"]
        );
    }

    #[test]
    fn recognises_the_extension_statements() {
        for sql in [
            "create ml_engine e from bedrock",
            "CREATE MODEL m PREDICT a",
            "CREATE OR REPLACE MODEL m",
            "DROP ML_ENGINE e",
            "drop model m",
            "SHOW ML_ENGINES",
            "show models",
            "DESCRIBE MODEL m",
            "-- leading comment\nCREATE MODEL oops USING",
        ] {
            assert!(looks_like_extension(sql), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "CREATE TABLE t AS SELECT 1",
            "SHOW TABLES",
            "DESCRIBE t",
            "SELEC * FROM x",
            "CREATE OR REPLACE VIEW v AS SELECT 1",
        ] {
            assert!(!looks_like_extension(sql), "{sql}");
        }
    }
}
