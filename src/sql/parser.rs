//! The extension's statements, parsed on top of DataFusion's `DFParser`: ours are recognised by
//! their first tokens, everything else is handed to DataFusion untouched.
//!
//! ```text
//! CREATE ML_ENGINE [IF NOT EXISTS] name FROM bedrock [USING key = value, …]
//! DROP ML_ENGINE [IF EXISTS] name
//! SHOW ML_ENGINES
//! CREATE [OR REPLACE] MODEL [IF NOT EXISTS] name PREDICT column USING key = value, …
//! DROP MODEL [IF EXISTS] name
//! SHOW MODELS
//! DESCRIBE [MODEL] name        DESCRIBE name.metadata
//! ```
//! Values are strings (`'…'`), numbers, `true`/`false`, bare words (read as strings) and
//! lists (`['\n\n', 'Human:']`). Keys are case-insensitive.

use datafusion::config::{Dialect, SqlParserOptions};
use datafusion::error::{DataFusionError, Result};
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{DescribeAlias, ObjectName, Statement as SqlStatement};
use datafusion::sql::sqlparser::dialect::dialect_from_str;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::bedrock::params::ParamValue;

/// A name as written, split on dots (`files.questions` → `["files", "questions"]`).
pub type QualifiedName = Vec<String>;

/// One of the extension's statements.
#[derive(Debug, Clone, PartialEq)]
pub enum BedrockStatement {
    /// `CREATE ML_ENGINE [IF NOT EXISTS] name FROM handler [USING …]`
    CreateEngine {
        /// The engine's name.
        name: QualifiedName,
        /// `IF NOT EXISTS` was given.
        if_not_exists: bool,
        /// The handler after `FROM` (only `bedrock` is served).
        handler: String,
        /// The `USING` parameters, keys lower-cased, in order.
        params: Vec<(String, ParamValue)>,
    },
    /// `DROP ML_ENGINE [IF EXISTS] name`
    DropEngine {
        /// The engine's name.
        name: QualifiedName,
        /// `IF EXISTS` was given.
        if_exists: bool,
    },
    /// `SHOW ML_ENGINES`
    ShowEngines,
    /// `CREATE [OR REPLACE] MODEL [IF NOT EXISTS] name PREDICT column USING …`
    CreateModel {
        /// The model's name.
        name: QualifiedName,
        /// `OR REPLACE` was given.
        or_replace: bool,
        /// `IF NOT EXISTS` was given.
        if_not_exists: bool,
        /// The column the model predicts.
        target: String,
        /// The `USING` parameters, keys lower-cased, in order.
        params: Vec<(String, ParamValue)>,
    },
    /// `DROP MODEL [IF EXISTS] name`
    DropModel {
        /// The model's name.
        name: QualifiedName,
        /// `IF EXISTS` was given.
        if_exists: bool,
    },
    /// `SHOW MODELS`
    ShowModels,
    /// `DESCRIBE [MODEL] name` or `DESCRIBE name.metadata`
    Describe {
        /// The name (without `.metadata`).
        name: QualifiedName,
        /// `MODEL` was written: the name must be a model.
        explicit: bool,
        /// `.metadata` was written: describe the foundation model.
        metadata: bool,
    },
}

/// A parsed statement: ours, or DataFusion's.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedStatement {
    /// One of the extension's statements.
    Bedrock(BedrockStatement),
    /// Anything else, for DataFusion.
    DataFusion(Box<DfStatement>),
}

fn word_is(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn found(t: &TokenWithSpan) -> String {
    match &t.token {
        Token::EOF => "the end of the statement".to_string(),
        other => format!(
            "'{other}' at line {}, column {}",
            t.span.start.line, t.span.start.column
        ),
    }
}

/// How names and statements are read: the session's `datafusion.sql_parser.*` settings.
#[derive(Debug, Clone)]
pub struct ParserOptions {
    /// `datafusion.sql_parser.dialect`.
    pub dialect: Dialect,
    /// `datafusion.sql_parser.recursion_limit`.
    pub recursion_limit: usize,
    /// `datafusion.sql_parser.enable_ident_normalization`: unquoted names are lower-cased.
    pub normalize_idents: bool,
}

impl Default for ParserOptions {
    fn default() -> Self {
        Self::from(&SqlParserOptions::default())
    }
}

impl From<&SqlParserOptions> for ParserOptions {
    fn from(options: &SqlParserOptions) -> Self {
        Self {
            dialect: options.dialect,
            recursion_limit: options.recursion_limit.get(),
            normalize_idents: options.enable_ident_normalization,
        }
    }
}

/// An identifier as SQL means it: unquoted names are case-insensitive (lower-cased, as
/// DataFusion does unless `enable_ident_normalization` is off), quoted ones are kept as written.
fn normalize(value: &str, quoted: bool, options: &ParserOptions) -> String {
    if quoted || !options.normalize_idents {
        value.to_string()
    } else {
        value.to_lowercase()
    }
}

fn name_parts(name: &ObjectName, options: &ParserOptions) -> QualifiedName {
    name.0
        .iter()
        .map(|p| {
            p.as_ident().map_or_else(
                || p.to_string(),
                |i| normalize(&i.value, i.quote_style.is_some(), options),
            )
        })
        .collect()
}

/// A name as SQL must write it to mean exactly that name: as is when it is a plain lower-case
/// identifier, else in double quotes (`Question` → `"Question"`, since unquoted names are
/// lower-cased).
#[must_use]
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn plan_error(message: String) -> DataFusionError {
    DataFusionError::Plan(message)
}

/// Parses one or more `;`-separated statements with DataFusion's default parser settings.
///
/// # Errors
/// See [`parse_sql_with`].
pub fn parse_sql(sql: &str) -> Result<Vec<ParsedStatement>> {
    parse_sql_with(sql, &ParserOptions::default())
}

/// Parses one or more `;`-separated statements: the extension's own, and DataFusion's parsed
/// exactly as DataFusion parses them with the same settings (dialect, recursion limit).
///
/// # Errors
/// A syntax error in one of the extension's statements is a plan error naming what was
/// expected, what was found and where; any other syntax error is DataFusion's own error.
pub fn parse_sql_with(sql: &str, options: &ParserOptions) -> Result<Vec<ParsedStatement>> {
    let dialect = dialect_from_str(options.dialect).ok_or_else(|| {
        plan_error(format!(
            "Unsupported SQL dialect: {}. Available dialects: {}.",
            options.dialect,
            Dialect::available()
        ))
    })?;
    let datafusion_parse = || {
        DFParserBuilder::new(sql)
            .with_dialect(dialect.as_ref())
            .with_recursion_limit(options.recursion_limit)
            .build()?
            .parse_statements()
    };
    let mut df = DFParserBuilder::new(sql)
        .with_dialect(dialect.as_ref())
        .with_recursion_limit(options.recursion_limit)
        .build()?;
    let mut statements = Vec::new();
    loop {
        while df.parser.consume_token(&Token::SemiColon) {}
        if df.parser.peek_token().token == Token::EOF {
            break;
        }
        let statement = match parse_bedrock(&mut df.parser, options)? {
            Some(ours) => ParsedStatement::Bedrock(ours),
            None => match df.parse_statement() {
                Ok(statement) => ParsedStatement::DataFusion(Box::new(statement)),
                // DataFusion's own error, exactly as it reports it for the whole text.
                Err(e) => return Err(datafusion_parse().err().unwrap_or(e)),
            },
        };
        let ours = matches!(statement, ParsedStatement::Bedrock(_));
        statements.push(statement);
        let next = df.parser.peek_token();
        if !matches!(next.token, Token::SemiColon | Token::EOF) {
            if !ours && let Err(e) = datafusion_parse() {
                return Err(e);
            }
            return Err(plan_error(format!(
                "Expected ';' or the end of the statement, found {}",
                found(&next)
            )));
        }
    }
    Ok(statements)
}

/// Recognises and parses one of our statements; `None` (nothing consumed) otherwise.
fn parse_bedrock(p: &mut Parser<'_>, options: &ParserOptions) -> Result<Option<BedrockStatement>> {
    let t0 = p.peek_nth_token(0).token;
    let t1 = p.peek_nth_token(1).token;
    let t2 = p.peek_nth_token(2).token;
    let t3 = p.peek_nth_token(3).token;
    let statement = if word_is(&t0, "CREATE") && word_is(&t1, "ML_ENGINE") {
        advance(p, 2);
        parse_create_engine(p, options)?
    } else if word_is(&t0, "CREATE") && word_is(&t1, "MODEL") {
        advance(p, 2);
        parse_create_model(p, false, options)?
    } else if word_is(&t0, "CREATE")
        && word_is(&t1, "OR")
        && word_is(&t2, "REPLACE")
        && word_is(&t3, "MODEL")
    {
        advance(p, 4);
        parse_create_model(p, true, options)?
    } else if word_is(&t0, "DROP") && (word_is(&t1, "ML_ENGINE") || word_is(&t1, "MODEL")) {
        advance(p, 2);
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = parse_name(p, "the name to drop", options)?;
        if word_is(&t1, "MODEL") {
            BedrockStatement::DropModel { name, if_exists }
        } else {
            BedrockStatement::DropEngine { name, if_exists }
        }
    } else if word_is(&t0, "SHOW") && word_is(&t1, "ML_ENGINES") {
        advance(p, 2);
        BedrockStatement::ShowEngines
    } else if word_is(&t0, "SHOW") && word_is(&t1, "MODELS") {
        advance(p, 2);
        BedrockStatement::ShowModels
    } else if (word_is(&t0, "DESCRIBE") || word_is(&t0, "DESC"))
        && word_is(&t1, "MODEL")
        && matches!(t2, Token::Word(_))
    {
        advance(p, 2);
        describe(parse_name(p, "the model's name", options)?, true)
    } else {
        // `DESCRIBE name` stays DataFusion's statement; the executor runs it as a model's
        // DESCRIBE when the name is a model (see `describe_of_model`).
        return Ok(None);
    };
    Ok(Some(statement))
}

/// `DESCRIBE name` (or `DESCRIBE name.metadata`) parsed by DataFusion, as the extension's
/// DESCRIBE when `is_model` says the name (without `.metadata`) is a model.
pub fn describe_of_model(
    statement: &DfStatement,
    options: &ParserOptions,
    is_model: impl Fn(&str) -> bool,
) -> Option<BedrockStatement> {
    let DfStatement::Statement(inner) = statement else {
        return None;
    };
    let SqlStatement::ExplainTable {
        describe_alias: DescribeAlias::Describe | DescribeAlias::Desc,
        hive_format: None,
        has_table_keyword: false,
        table_name,
    } = inner.as_ref()
    else {
        return None;
    };
    let parts = name_parts(table_name, options);
    if is_model(&parts.join(".")) {
        return Some(describe(parts, false));
    }
    match describe(parts, false) {
        BedrockStatement::Describe {
            name,
            metadata: true,
            ..
        } if is_model(&name.join(".")) => Some(BedrockStatement::Describe {
            name,
            explicit: false,
            metadata: true,
        }),
        _ => None,
    }
}

fn describe(mut name: QualifiedName, explicit: bool) -> BedrockStatement {
    let metadata = name.len() > 1
        && name
            .last()
            .is_some_and(|n| n.eq_ignore_ascii_case("metadata"));
    if metadata {
        name.pop();
    }
    BedrockStatement::Describe {
        name,
        explicit,
        metadata,
    }
}

fn advance(p: &mut Parser<'_>, n: usize) {
    for _ in 0..n {
        p.next_token();
    }
}

fn parse_name(p: &mut Parser<'_>, what: &str, options: &ParserOptions) -> Result<QualifiedName> {
    let next = p.peek_token();
    if !matches!(next.token, Token::Word(_)) {
        return Err(plan_error(format!(
            "Expected {what}, found {}",
            found(&next)
        )));
    }
    p.parse_object_name(false)
        .map(|n| name_parts(&n, options))
        .map_err(|e| plan_error(format!("Expected {what}: {e}")))
}

fn expect_word(p: &mut Parser<'_>, word: &str, usage: &str) -> Result<()> {
    let next = p.next_token();
    if word_is(&next.token, word) {
        Ok(())
    } else {
        Err(plan_error(format!(
            "Expected {word}, found {}: write {usage}",
            found(&next)
        )))
    }
}

const ENGINE_USAGE: &str = "CREATE ML_ENGINE name FROM bedrock USING key = value, …";
const MODEL_USAGE: &str = "CREATE MODEL name PREDICT column USING engine = 'engine_name', …";

fn parse_create_engine(p: &mut Parser<'_>, options: &ParserOptions) -> Result<BedrockStatement> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parse_name(p, "the engine's name", options)?;
    expect_word(p, "FROM", ENGINE_USAGE)?;
    let handler = match p.next_token() {
        TokenWithSpan {
            token: Token::Word(w),
            ..
        } => w.value.to_lowercase(),
        TokenWithSpan {
            token: Token::SingleQuotedString(s),
            ..
        } => s.to_lowercase(),
        other => {
            return Err(plan_error(format!(
                "Expected the handler after FROM, found {}: write {ENGINE_USAGE}",
                found(&other)
            )));
        }
    };
    let params = if word_is(&p.peek_token().token, "USING") {
        p.next_token();
        parse_using(p)?
    } else {
        Vec::new()
    };
    Ok(BedrockStatement::CreateEngine {
        name,
        if_not_exists,
        handler,
        params,
    })
}

fn parse_create_model(
    p: &mut Parser<'_>,
    or_replace: bool,
    options: &ParserOptions,
) -> Result<BedrockStatement> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parse_name(p, "the model's name", options)?;
    expect_word(p, "PREDICT", MODEL_USAGE)?;
    let target = match p.next_token() {
        TokenWithSpan {
            token: Token::Word(w),
            ..
        } => normalize(&w.value, w.quote_style.is_some(), options),
        other => {
            return Err(plan_error(format!(
                "Expected the column to predict after PREDICT, found {}: write {MODEL_USAGE}",
                found(&other)
            )));
        }
    };
    expect_word(p, "USING", MODEL_USAGE)?;
    Ok(BedrockStatement::CreateModel {
        name,
        or_replace,
        if_not_exists,
        target,
        params: parse_using(p)?,
    })
}

/// `key = value, …` up to `;` or the end.
fn parse_using(p: &mut Parser<'_>) -> Result<Vec<(String, ParamValue)>> {
    let mut params: Vec<(String, ParamValue)> = Vec::new();
    loop {
        let key_token = p.next_token();
        let key = match &key_token.token {
            Token::Word(w) => w.value.to_lowercase(),
            _ => {
                return Err(plan_error(format!(
                    "Expected a parameter name after USING, found {}: write USING key = value, …",
                    found(&key_token)
                )));
            }
        };
        if params.iter().any(|(k, _)| *k == key) {
            return Err(plan_error(format!(
                "Parameter '{key}' is given twice: keep one"
            )));
        }
        let eq = p.next_token();
        if eq.token != Token::Eq {
            return Err(plan_error(format!(
                "Expected '=' after '{key}', found {}: write {key} = value",
                found(&eq)
            )));
        }
        let value = parse_value(p, &key, 0)?;
        params.push((key, value));
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    Ok(params)
}

/// How deep `[…]` lists may nest in a parameter's value.
const MAX_LIST_DEPTH: usize = 32;

fn parse_value(p: &mut Parser<'_>, key: &str, depth: usize) -> Result<ParamValue> {
    let t = p.next_token();
    let bad = |t: &TokenWithSpan| {
        plan_error(format!(
            "Expected a value for '{key}' (a 'string', a number, true/false or a [list]), found {}",
            found(t)
        ))
    };
    match &t.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => {
            Ok(ParamValue::String(s.clone()))
        }
        Token::Number(n, _) => n.parse().map(ParamValue::Number).map_err(|_| bad(&t)),
        Token::Minus => match p.next_token().token {
            Token::Number(n, _) => n
                .parse::<f64>()
                .map(|v| ParamValue::Number(-v))
                .map_err(|_| bad(&t)),
            _ => Err(bad(&t)),
        },
        Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("true") => {
            Ok(ParamValue::Bool(true))
        }
        Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("false") => {
            Ok(ParamValue::Bool(false))
        }
        Token::Word(w) => Ok(ParamValue::String(w.value.clone())),
        Token::LBracket if depth >= MAX_LIST_DEPTH => Err(plan_error(format!(
            "The value of '{key}' nests lists deeper than {MAX_LIST_DEPTH} levels, at line {}, column {}",
            t.span.start.line, t.span.start.column
        ))),
        Token::LBracket => {
            let mut items = Vec::new();
            if p.consume_token(&Token::RBracket) {
                return Ok(ParamValue::List(items));
            }
            loop {
                items.push(parse_value(p, key, depth + 1)?);
                if p.consume_token(&Token::RBracket) {
                    return Ok(ParamValue::List(items));
                }
                let sep = p.next_token();
                if sep.token != Token::Comma {
                    return Err(plan_error(format!(
                        "Expected ',' or ']' in the list for '{key}', found {}",
                        found(&sep)
                    )));
                }
            }
        }
        _ => Err(bad(&t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(sql: &str) -> BedrockStatement {
        match parse_sql(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .as_slice()
        {
            [ParsedStatement::Bedrock(s)] => s.clone(),
            other => panic!("{sql}: {other:?}"),
        }
    }

    fn s(v: &str) -> ParamValue {
        ParamValue::String(v.into())
    }

    #[test]
    fn parses_the_seed_statements_verbatim() {
        assert_eq!(
            ours(
                "CREATE ML_ENGINE bedrock_engine\nFROM bedrock\nUSING\n    aws_access_key_id = 'AQAXEQK89OX07YS34OP',\n    aws_secret_access_key = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',\n    aws_session_token = 'FwoGZXIvYXdzEJr...',\n    region_name = 'us-east-1';"
            ),
            BedrockStatement::CreateEngine {
                name: vec!["bedrock_engine".into()],
                if_not_exists: false,
                handler: "bedrock".into(),
                params: vec![
                    ("aws_access_key_id".into(), s("AQAXEQK89OX07YS34OP")),
                    (
                        "aws_secret_access_key".into(),
                        s("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
                    ),
                    ("aws_session_token".into(), s("FwoGZXIvYXdzEJr...")),
                    ("region_name".into(), s("us-east-1")),
                ],
            }
        );
        assert_eq!(
            ours(
                "CREATE MODEL bedrock_model\nPREDICT answer\nUSING\n    engine = 'bedrock_engine',\n    question_column = 'question',\n    max_tokens = 100,\n    temperature = 0.3;"
            ),
            BedrockStatement::CreateModel {
                name: vec!["bedrock_model".into()],
                or_replace: false,
                if_not_exists: false,
                target: "answer".into(),
                params: vec![
                    ("engine".into(), s("bedrock_engine")),
                    ("question_column".into(), s("question")),
                    ("max_tokens".into(), ParamValue::Number(100.0)),
                    ("temperature".into(), ParamValue::Number(0.3)),
                ],
            }
        );
    }

    #[test]
    fn parses_every_statement_form() {
        assert_eq!(
            ours(
                "create or replace model if not exists files.m predict a using Engine = e, stop = ['\n\n', 'Human:'], top_p = -0.5, flag = TRUE, empty = []"
            ),
            BedrockStatement::CreateModel {
                name: vec!["files".into(), "m".into()],
                or_replace: true,
                if_not_exists: true,
                target: "a".into(),
                params: vec![
                    ("engine".into(), s("e")),
                    (
                        "stop".into(),
                        ParamValue::List(vec![s("\n\n"), s("Human:")])
                    ),
                    ("top_p".into(), ParamValue::Number(-0.5)),
                    ("flag".into(), ParamValue::Bool(true)),
                    ("empty".into(), ParamValue::List(vec![])),
                ],
            }
        );
        assert_eq!(
            ours("CREATE ML_ENGINE IF NOT EXISTS e FROM bedrock"),
            BedrockStatement::CreateEngine {
                name: vec!["e".into()],
                if_not_exists: true,
                handler: "bedrock".into(),
                params: vec![]
            }
        );
        assert_eq!(
            ours("DROP ML_ENGINE IF EXISTS e"),
            BedrockStatement::DropEngine {
                name: vec!["e".into()],
                if_exists: true
            }
        );
        assert_eq!(
            ours("drop model m;"),
            BedrockStatement::DropModel {
                name: vec!["m".into()],
                if_exists: false
            }
        );
        assert_eq!(ours("SHOW ML_ENGINES"), BedrockStatement::ShowEngines);
        assert_eq!(ours("SHOW MODELS;"), BedrockStatement::ShowModels);
        assert_eq!(
            ours("DESCRIBE MODEL m"),
            BedrockStatement::Describe {
                name: vec!["m".into()],
                explicit: true,
                metadata: false
            }
        );
    }

    fn datafusion_statement(sql: &str, options: &ParserOptions) -> DfStatement {
        match parse_sql_with(sql, options)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .remove(0)
        {
            ParsedStatement::DataFusion(s) => *s,
            other @ ParsedStatement::Bedrock(_) => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn describe_of_a_model_is_recognised_after_datafusion_parsed_it() {
        let options = ParserOptions::default();
        let is_m = |name: &str| name == "m";
        let describe =
            |sql: &str| describe_of_model(&datafusion_statement(sql, &options), &options, is_m);
        assert_eq!(
            describe("DESCRIBE m.metadata"),
            Some(BedrockStatement::Describe {
                name: vec!["m".into()],
                explicit: false,
                metadata: true
            })
        );
        assert_eq!(
            describe("desc M"),
            Some(BedrockStatement::Describe {
                name: vec!["m".into()],
                explicit: false,
                metadata: false
            })
        );
        // Tables stay DataFusion's DESCRIBE.
        assert_eq!(describe("DESCRIBE t"), None);
        assert_eq!(describe("DESCRIBE t.metadata"), None);
        assert_eq!(describe("SELECT 1"), None);
        // Without identifier normalization, `M` is not `m`.
        let exact = ParserOptions {
            normalize_idents: false,
            ..ParserOptions::default()
        };
        assert_eq!(
            describe_of_model(&datafusion_statement("DESCRIBE M", &exact), &exact, is_m),
            None
        );
    }

    #[test]
    fn the_sessions_parser_settings_are_honoured() {
        // A lambda parses only under a dialect that has them, as in DataFusion.
        let databricks = ParserOptions {
            dialect: Dialect::Databricks,
            ..ParserOptions::default()
        };
        let lambda = "SELECT array_filter([1, 2, 3], v -> v > 2)";
        assert_eq!(
            datafusion_statement(lambda, &databricks).to_string(),
            "SELECT array_filter([1, 2, 3], v -> v > 2)"
        );
        // Names of the extension's statements keep their case without normalization.
        let exact = ParserOptions {
            normalize_idents: false,
            ..ParserOptions::default()
        };
        assert_eq!(
            parse_sql_with("DROP MODEL My_Model", &exact).unwrap(),
            [ParsedStatement::Bedrock(BedrockStatement::DropModel {
                name: vec!["My_Model".into()],
                if_exists: false
            })]
        );
        // The recursion limit is DataFusion's.
        let shallow = ParserOptions {
            recursion_limit: 3,
            ..ParserOptions::default()
        };
        let nested = "SELECT ((((((1))))))";
        assert_eq!(
            parse_sql_with(nested, &shallow).unwrap_err().to_string(),
            DFParserBuilder::new(nested)
                .with_recursion_limit(3)
                .build()
                .unwrap()
                .parse_statements()
                .unwrap_err()
                .to_string()
        );
    }

    #[test]
    fn datafusions_syntax_errors_are_datafusions_own() {
        for sql in [
            "SELEC 1",
            "SELECT 1 SELECT 2",
            "SELECT 1; SELEC 2",
            "CREATE TABLE t (a INT",
        ] {
            let ours = parse_sql(sql).unwrap_err();
            let theirs = DFParserBuilder::new(sql)
                .build()
                .unwrap()
                .parse_statements()
                .unwrap_err();
            assert!(
                matches!(
                    ours,
                    DataFusionError::SQL(..) | DataFusionError::Diagnostic(..)
                ),
                "{sql}: {ours:?}"
            );
            assert_eq!(ours.to_string(), theirs.to_string(), "{sql}");
        }
    }

    #[test]
    fn other_sql_goes_to_datafusion() {
        let parsed =
            parse_sql("SELECT 1; CREATE ML_ENGINE e FROM bedrock; SELECT * FROM t").unwrap();
        assert_eq!(parsed.len(), 3);
        assert!(
            matches!(&parsed[0], ParsedStatement::DataFusion(s) if s.to_string() == "SELECT 1")
        );
        assert!(matches!(
            &parsed[1],
            ParsedStatement::Bedrock(BedrockStatement::CreateEngine { .. })
        ));
        assert!(
            matches!(&parsed[2], ParsedStatement::DataFusion(s) if s.to_string() == "SELECT * FROM t")
        );
        let create_table = parse_sql("CREATE TABLE models (a INT)").unwrap();
        assert!(matches!(&create_table[0], ParsedStatement::DataFusion(_)));
    }

    #[test]
    fn names_are_quoted_only_when_sql_needs_it() {
        assert_eq!(quote_ident("question"), "question");
        assert_eq!(quote_ident("q_2"), "q_2");
        assert_eq!(quote_ident("Question"), "\"Question\"");
        assert_eq!(quote_ident("my col"), "\"my col\"");
        assert_eq!(quote_ident("2x"), "\"2x\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn deeply_nested_lists_are_refused_not_a_stack_overflow() {
        let sql = format!(
            "CREATE MODEL m PREDICT a USING stop = {}'x'{}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        match parse_sql(&sql).unwrap_err() {
            DataFusionError::Plan(message) => assert_eq!(
                message,
                "The value of 'stop' nests lists deeper than 32 levels, at line 1, column 71"
            ),
            other => panic!("not a plan error: {other:?}"),
        }
        let fine = format!(
            "CREATE MODEL m PREDICT a USING stop = {}'x'{}",
            "[".repeat(32),
            "]".repeat(32)
        );
        assert!(parse_sql(&fine).is_ok());
    }

    #[test]
    fn syntax_errors_say_what_was_expected_and_where() {
        let err = |sql: &str| match parse_sql(sql).unwrap_err() {
            DataFusionError::Plan(message) => message,
            other => panic!("{sql}: not a plan error: {other:?}"),
        };
        assert_eq!(
            err("CREATE MODEL m USING engine = 'e'"),
            "Expected PREDICT, found 'USING' at line 1, column 16: write CREATE MODEL name PREDICT column USING engine = 'engine_name', …"
        );
        assert_eq!(
            err("CREATE ML_ENGINE e bedrock"),
            "Expected FROM, found 'bedrock' at line 1, column 20: write CREATE ML_ENGINE name FROM bedrock USING key = value, …"
        );
        assert_eq!(
            err("CREATE MODEL m PREDICT a USING engine 'e'"),
            "Expected '=' after 'engine', found ''e'' at line 1, column 39: write engine = value"
        );
        assert_eq!(
            err("CREATE MODEL m PREDICT a USING engine = 'e', engine = 'f'"),
            "Parameter 'engine' is given twice: keep one"
        );
        assert_eq!(
            err("CREATE MODEL m PREDICT a USING stop = ['a' 'b']"),
            "Expected ',' or ']' in the list for 'stop', found ''b'' at line 1, column 44"
        );
        assert_eq!(
            err("CREATE MODEL m PREDICT a USING engine = 'e' extra"),
            "Expected ';' or the end of the statement, found 'extra' at line 1, column 45"
        );
    }
}
