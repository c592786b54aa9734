//! The line editor's helper: `datafusion-cli`'s hints, highlighting and file-name completion,
//! with a validator that accepts the extension's statements.

use std::borrow::Cow;

use datafusion::config::Dialect;
use datafusion_cli::helper::CliHelper;
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use super::split::split_statements;
use crate::sql::parser::{ParserOptions, parse_sql_with};

/// `datafusion-cli`'s helper with the extension's parser behind `Enter`.
pub(super) struct ShellHelper {
    inner: CliHelper,
    parser: ParserOptions,
}

impl ShellHelper {
    pub(super) fn new(dialect: Dialect, color: bool) -> Self {
        Self {
            inner: CliHelper::new(&dialect, color),
            parser: ParserOptions {
                dialect,
                ..ParserOptions::default()
            },
        }
    }

    pub(super) fn reset_hint(&self) {
        self.inner.reset_hint();
    }
}

/// What `Enter` does with the text typed so far: a `\` command or text ending with `;` is
/// complete (or invalid, with the parser's message); anything else continues on a new line.
pub(super) fn validate_input(input: &str, parser: &ParserOptions) -> ValidationResult {
    let input = input.trim_end();
    if input.starts_with('\\') {
        return ValidationResult::Valid(None);
    }
    if !input.ends_with(';') {
        return ValidationResult::Incomplete;
    }
    let statements = split_statements(input);
    if statements.is_empty() {
        return ValidationResult::Invalid(Some("  🤔 You entered an empty statement".into()));
    }
    for statement in statements {
        if let Err(e) = parse_sql_with(&statement, parser) {
            let message = match e {
                datafusion::error::DataFusionError::Plan(message) => message,
                other => other.to_string(),
            };
            return ValidationResult::Invalid(Some(format!("  🤔 Invalid statement: {message}")));
        }
    }
    ValidationResult::Valid(None)
}

impl Validator for ShellHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        let result = validate_input(ctx.input(), &self.parser);
        self.inner.reset_hint();
        Ok(result)
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        self.inner.complete(line, pos, ctx)
    }
}

impl Hinter for ShellHelper {
    type Hint = String;

    fn hint(&self, line: &str, pos: usize, ctx: &Context<'_>) -> Option<String> {
        self.inner.hint(line, pos, ctx)
    }
}

impl Highlighter for ShellHelper {
    fn highlight<'l>(&self, line: &'l str, pos: usize) -> Cow<'l, str> {
        self.inner.highlight(line, pos)
    }

    fn highlight_char(&self, line: &str, pos: usize, kind: CmdKind) -> bool {
        self.inner.highlight_char(line, pos, kind)
    }

    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        self.inner.highlight_hint(hint)
    }
}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(result: ValidationResult) -> String {
        match result {
            ValidationResult::Valid(_) => "valid".into(),
            ValidationResult::Incomplete => "incomplete".into(),
            ValidationResult::Invalid(m) => format!("invalid:{}", m.unwrap_or_default()),
            _ => "other".into(),
        }
    }

    #[test]
    fn enter_accepts_the_extension_and_waits_for_the_semicolon() {
        let generic = ParserOptions::default();
        assert_eq!(
            shown(validate_input(
                "CREATE ML_ENGINE e FROM bedrock USING region_name = 'us-east-1';",
                &generic
            )),
            "valid"
        );
        assert_eq!(
            shown(validate_input("SELECT 1; SHOW MODELS;", &generic)),
            "valid"
        );
        assert_eq!(
            shown(validate_input("CREATE MODEL m", &generic)),
            "incomplete"
        );
        assert_eq!(shown(validate_input("\\d", &generic)), "valid");
        assert_eq!(
            shown(validate_input(" ; ", &generic)),
            "invalid:  🤔 You entered an empty statement"
        );
        assert_eq!(
            shown(validate_input("CREATE MODEL m PREDICT;", &generic)),
            "invalid:  🤔 Invalid statement: Expected the column to predict after PREDICT, found the end \
             of the statement: write CREATE MODEL name PREDICT column USING engine = 'engine_name', …"
        );
    }
}
