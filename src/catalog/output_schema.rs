//! Typed structured output: `output_schema = 'name STRING, age INT, tags LIST<STRING>'` (or a
//! JSON Schema object). The model is forced to call a tool whose input schema is this schema;
//! its input is validated here and becomes an Arrow struct value.
//!
//! Types: `STRING` (`VARCHAR`, `TEXT`), `INT` (`INTEGER`, `BIGINT`), `FLOAT` (`DOUBLE`, `REAL`,
//! `NUMBER`), `BOOLEAN` (`BOOL`), `LIST<T>` (`ARRAY<T>`) and `STRUCT<name T, …>`. In a JSON
//! Schema: `string`, `integer`, `number`, `boolean`, `array` with `items`, `object` with
//! `properties`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StructArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema};
use datafusion::arrow::json::ReaderBuilder;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// A field's type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OutputType {
    /// Text.
    String,
    /// A 64-bit integer.
    Int,
    /// A 64-bit float.
    Float,
    /// A boolean.
    Bool,
    /// A list of one type.
    List(Box<OutputType>),
    /// Named fields.
    Struct(Vec<OutputField>),
}

/// A named, typed field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputField {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: OutputType,
}

/// A parsed `output_schema`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputSchema {
    /// As written.
    pub text: String,
    /// The top-level fields.
    pub fields: Vec<OutputField>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidInput(format!(
        "Parameter 'output_schema' {}: write e.g. output_schema = 'name STRING, age INT, tags LIST<STRING>' or a JSON Schema object",
        message.into()
    ))
}

/// A piece of the schema text: byte offsets into the whole text (always on char boundaries,
/// since they come from `char_indices` and `find` on that text).
#[derive(Clone, Copy)]
struct Piece<'a> {
    whole: &'a str,
    start: usize,
    end: usize,
}

impl<'a> Piece<'a> {
    fn new(whole: &'a str) -> Self {
        Self {
            whole,
            start: 0,
            end: whole.len(),
        }
    }

    fn text(self) -> &'a str {
        self.whole.get(self.start..self.end).unwrap_or_default()
    }

    /// The part from `from` to `to`, byte offsets relative to this piece.
    fn sub(self, from: usize, to: usize) -> Self {
        Self {
            whole: self.whole,
            start: self.start + from,
            end: self.start + to,
        }
    }

    fn trimmed(self) -> Self {
        let text = self.text();
        let lead = text.len() - text.trim_start().len();
        let trail = text.len() - text.trim_end().len();
        self.sub(lead, text.len() - trail)
    }

    /// Where the piece starts, as the 1-based number of the character in the whole text.
    fn position(self) -> usize {
        self.whole
            .get(..self.start)
            .map_or(0, |before| before.chars().count())
            + 1
    }

    fn invalid(self, message: impl Into<String>) -> Error {
        invalid(format!(
            "{} at character {}",
            message.into(),
            self.position()
        ))
    }
}

/// Splits at top-level commas (not inside `<…>`).
fn split_top(piece: Piece<'_>) -> Vec<Piece<'_>> {
    let text = piece.text();
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(piece.sub(start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(piece.sub(start, text.len()));
    parts
}

/// How deep types may nest (`LIST<LIST<…>>`, `STRUCT<a STRUCT<…>>`), as JSON Schema tools
/// bound it: deeper text is refused before it is parsed further.
pub const MAX_DEPTH: usize = 32;

fn parse_type(piece: Piece<'_>, depth: usize) -> Result<OutputType> {
    let t = piece.trimmed();
    let text = t.text();
    if let Some(open) = text.find('<') {
        if depth >= MAX_DEPTH {
            return Err(t.invalid(format!("nests types deeper than {MAX_DEPTH} levels")));
        }
        let head = t.sub(0, open).trimmed().text();
        if !text.ends_with('>') {
            return Err(t.invalid(format!("has '{text}' without its closing '>'")));
        }
        let inner = t.sub(open + 1, text.len() - 1);
        return match head.to_uppercase().as_str() {
            "LIST" | "ARRAY" => Ok(OutputType::List(Box::new(parse_type(inner, depth + 1)?))),
            "STRUCT" => Ok(OutputType::Struct(parse_fields(inner, depth + 1)?)),
            _ => Err(t.invalid(format!("has an unknown type '{head}<…>'"))),
        };
    }
    match text.to_uppercase().as_str() {
        "STRING" | "VARCHAR" | "TEXT" | "UTF8" => Ok(OutputType::String),
        "INT" | "INTEGER" | "BIGINT" | "LONG" | "INT64" => Ok(OutputType::Int),
        "FLOAT" | "DOUBLE" | "REAL" | "NUMBER" | "FLOAT64" => Ok(OutputType::Float),
        "BOOLEAN" | "BOOL" => Ok(OutputType::Bool),
        "" => Err(t.invalid("has a field without a type")),
        _ => Err(t.invalid(format!(
            "has an unknown type '{text}' (use STRING, INT, FLOAT, BOOLEAN, LIST<…> or STRUCT<…>)"
        ))),
    }
}

fn parse_fields(piece: Piece<'_>, depth: usize) -> Result<Vec<OutputField>> {
    let mut fields: Vec<OutputField> = Vec::new();
    for part in split_top(piece) {
        let part = part.trimmed();
        let text = part.text();
        let Some(space) = text.find(char::is_whitespace) else {
            return Err(part.invalid(format!("has '{text}', which is not 'name TYPE'")));
        };
        let name = part
            .sub(0, space)
            .text()
            .trim_matches(|c| c == '"' || c == '`')
            .to_string();
        if fields.iter().any(|f| f.name == name) {
            return Err(part.invalid(format!("names the field '{name}' twice")));
        }
        fields.push(OutputField {
            name,
            kind: parse_type(part.sub(space, text.len()), depth)?,
        });
    }
    Ok(fields)
}

/// A JSON value whose objects keep their keys in written order (a JSON Schema's properties
/// become fields in the order the user wrote them).
#[derive(Debug, Clone, PartialEq)]
enum Ordered {
    Scalar(Value),
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> std::result::Result<Ordered, E> {
                Ok(Ordered::Scalar(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<Ordered, E> {
                Ok(Ordered::Scalar(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<Ordered, E> {
                Ok(Ordered::Scalar(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<Ordered, E> {
                Ok(Ordered::Scalar(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Ordered, E> {
                Ok(Ordered::Scalar(Value::String(v.to_string())))
            }
            fn visit_unit<E>(self) -> std::result::Result<Ordered, E> {
                Ok(Ordered::Scalar(Value::Null))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Ordered, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Ordered::Array(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Ordered>()? {
                    entries.push((key, value));
                }
                Ok(Ordered::Object(entries))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Ordered {
    fn get(&self, key: &str) -> Option<&Ordered> {
        match self {
            Self::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Self::Scalar(Value::String(s)) => Some(s),
            _ => None,
        }
    }
}

fn from_json_schema(schema: &Ordered, path: &str, depth: usize) -> Result<OutputType> {
    if depth > MAX_DEPTH {
        return Err(invalid(format!(
            "nests '{}' deeper than {MAX_DEPTH} levels",
            path.chars().take(80).collect::<String>()
        )));
    }
    let kind = schema.get("type").and_then(Ordered::as_str).unwrap_or(
        if schema.get("properties").is_some() {
            "object"
        } else {
            ""
        },
    );
    match kind {
        "string" => Ok(OutputType::String),
        "integer" => Ok(OutputType::Int),
        "number" => Ok(OutputType::Float),
        "boolean" => Ok(OutputType::Bool),
        "array" => {
            let items = schema
                .get("items")
                .ok_or_else(|| invalid(format!("has the array '{path}' without 'items'")))?;
            Ok(OutputType::List(Box::new(from_json_schema(
                items,
                &format!("{path}[]"),
                depth + 1,
            )?)))
        }
        "object" => {
            let properties = match schema.get("properties") {
                Some(Ordered::Object(entries)) if !entries.is_empty() => Some(entries),
                _ => None,
            }
            .ok_or_else(|| invalid(format!("has the object '{path}' without 'properties'")))?;
            properties
                .iter()
                .map(|(name, sub)| {
                    Ok(OutputField {
                        name: name.clone(),
                        kind: from_json_schema(sub, &format!("{path}.{name}"), depth + 1)?,
                    })
                })
                .collect::<Result<_>>()
                .map(OutputType::Struct)
        }
        other => Err(invalid(format!(
            "gives '{path}' the type '{other}' (use string, integer, number, boolean, array or object)"
        ))),
    }
}

impl OutputType {
    /// The Arrow type of values of this type.
    #[must_use]
    pub fn arrow_type(&self) -> DataType {
        match self {
            Self::String => DataType::Utf8,
            Self::Int => DataType::Int64,
            Self::Float => DataType::Float64,
            Self::Bool => DataType::Boolean,
            Self::List(item) => {
                DataType::List(Arc::new(Field::new("item", item.arrow_type(), true)))
            }
            Self::Struct(fields) => DataType::Struct(arrow_fields(fields)),
        }
    }

    fn json_schema(&self) -> Value {
        match self {
            Self::String => json!({"type": "string"}),
            Self::Int => json!({"type": "integer"}),
            Self::Float => json!({"type": "number"}),
            Self::Bool => json!({"type": "boolean"}),
            Self::List(item) => json!({"type": "array", "items": item.json_schema()}),
            Self::Struct(fields) => object_schema(fields),
        }
    }

    fn check(&self, value: &Value, path: &str) -> std::result::Result<(), String> {
        let ok = match (self, value) {
            (_, Value::Null)
            | (Self::String, Value::String(_))
            | (Self::Bool, Value::Bool(_))
            | (Self::Float, Value::Number(_)) => true,
            (Self::Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (Self::List(item), Value::Array(items)) => {
                for (i, v) in items.iter().enumerate() {
                    item.check(v, &format!("{path}[{i}]"))?;
                }
                true
            }
            (Self::Struct(fields), Value::Object(_)) => {
                check_fields(fields, value, path)?;
                true
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "'{path}' should be {}, got {value}",
                self.describe()
            ))
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Int => "an integer",
            Self::Float => "a number",
            Self::Bool => "a boolean",
            Self::List(_) => "an array",
            Self::Struct(_) => "an object",
        }
    }
}

fn arrow_fields(fields: &[OutputField]) -> Fields {
    fields
        .iter()
        .map(|f| Field::new(f.name.as_str(), f.kind.arrow_type(), true))
        .collect()
}

fn object_schema(fields: &[OutputField]) -> Value {
    let properties: serde_json::Map<String, Value> = fields
        .iter()
        .map(|f| (f.name.clone(), f.kind.json_schema()))
        .collect();
    let required: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    json!({"type": "object", "properties": properties, "required": required})
}

fn check_fields(
    fields: &[OutputField],
    value: &Value,
    path: &str,
) -> std::result::Result<(), String> {
    let Value::Object(object) = value else {
        return Err(format!("the answer should be a JSON object, got {value}"));
    };
    for field in fields {
        let at = if path.is_empty() {
            field.name.clone()
        } else {
            format!("{path}.{}", field.name)
        };
        match object.get(&field.name) {
            None => return Err(format!("the required field '{at}' is missing")),
            Some(v) => field.kind.check(v, &at)?,
        }
    }
    Ok(())
}

impl OutputSchema {
    /// Parses `name TYPE, …` or a JSON Schema object (text starting with `{`).
    ///
    /// # Errors
    /// Unknown types, a field without a type or named twice, unbalanced `<>`, bad JSON.
    pub fn parse(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        let fields = if trimmed.starts_with('{') {
            let schema: Ordered = serde_json::from_str(trimmed)
                .map_err(|e| invalid(format!("is not valid JSON ({e})")))?;
            match from_json_schema(&schema, "$", 0)? {
                OutputType::Struct(fields) => fields,
                _ => return Err(invalid("must describe an object with properties")),
            }
        } else {
            if trimmed.is_empty() {
                return Err(invalid("is empty"));
            }
            parse_fields(Piece::new(text).trimmed(), 0)?
        };
        Ok(Self {
            text: text.to_string(),
            fields,
        })
    }

    /// The Arrow struct type of an answer.
    #[must_use]
    pub fn arrow_type(&self) -> DataType {
        DataType::Struct(arrow_fields(&self.fields))
    }

    /// The JSON Schema given to the model as the tool's input schema.
    #[must_use]
    pub fn json_schema(&self) -> Value {
        object_schema(&self.fields)
    }

    /// Checks an answer; the error says what is wrong (sent back to the model on the retry).
    ///
    /// # Errors
    /// The first field that is missing or of the wrong type.
    pub fn validate(&self, value: &Value) -> std::result::Result<(), String> {
        check_fields(&self.fields, value, "")
    }

    /// One struct per answer (NULL for `None`); answers must have been validated.
    ///
    /// # Errors
    /// A value Arrow cannot decode into its field's type.
    pub fn to_array(&self, answers: &[Option<Value>]) -> Result<ArrayRef> {
        let fields = arrow_fields(&self.fields);
        let schema = Arc::new(Schema::new(fields.clone()));
        let empty = Value::Object(serde_json::Map::new());
        let rows: Vec<&Value> = answers
            .iter()
            .map(|a| a.as_ref().unwrap_or(&empty))
            .collect();
        let mut decoder = ReaderBuilder::new(schema)
            .with_batch_size(rows.len().max(1))
            .build_decoder()
            .map_err(|e| Error::InvalidInput(format!("output_schema: {e}")))?;
        decoder
            .serialize(&rows)
            .map_err(|e| Error::InvalidInput(format!("A structured answer cannot be read: {e}")))?;
        let batch = decoder
            .flush()
            .map_err(|e| Error::InvalidInput(format!("A structured answer cannot be read: {e}")))?;
        let columns: Vec<ArrayRef> = match batch {
            Some(batch) => batch.columns().to_vec(),
            None => fields
                .iter()
                .map(|f| datafusion::arrow::array::new_null_array(f.data_type(), 0))
                .collect(),
        };
        let nulls = NullBuffer::from(answers.iter().map(Option::is_some).collect::<Vec<_>>());
        let array = StructArray::try_new(fields, columns, Some(nulls))
            .map_err(|e| Error::InvalidInput(format!("A structured answer cannot be read: {e}")))?;
        Ok(Arc::new(array) as ArrayRef)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, RecordBatch};
    use datafusion::arrow::util::pretty::pretty_format_batches;

    #[test]
    fn the_type_list_and_the_json_schema_give_the_same_fields() {
        let listed = OutputSchema::parse(
            "name STRING, age INT, tags LIST<STRING>, pos STRUCT<x DOUBLE, ok BOOL>",
        )
        .unwrap();
        let json = OutputSchema::parse(
            r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"tags":{"type":"array","items":{"type":"string"}},"pos":{"type":"object","properties":{"x":{"type":"number"},"ok":{"type":"boolean"}}}}}"#,
        )
        .unwrap();
        assert_eq!(listed.fields, json.fields);
        assert_eq!(
            listed.json_schema(),
            json!({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"tags":{"type":"array","items":{"type":"string"}},"pos":{"type":"object","properties":{"x":{"type":"number"},"ok":{"type":"boolean"}},"required":["x","ok"]}},"required":["name","age","tags","pos"]})
        );
    }

    #[test]
    fn bad_schemas_name_the_problem_and_where() {
        let message = |text: &str| OutputSchema::parse(text).unwrap_err().to_string();
        let fix = ": write e.g. output_schema = 'name STRING, age INT, tags LIST<STRING>' or a JSON Schema object";
        let cases = [
            (
                "name STRNG",
                "has an unknown type 'STRNG' (use STRING, INT, FLOAT, BOOLEAN, LIST<…> or STRUCT<…>) at character 6",
            ),
            (
                "name",
                "has 'name', which is not 'name TYPE' at character 1",
            ),
            ("a INT, a INT", "names the field 'a' twice at character 8"),
            (
                "  tags LIST<STRING",
                "has 'LIST<STRING' without its closing '>' at character 8",
            ),
            (
                "pos STRUCT<x DOUBLE, y>",
                "has 'y', which is not 'name TYPE' at character 22",
            ),
            (
                "t MAP<STRING>",
                "has an unknown type 'MAP<…>' at character 3",
            ),
            (
                "{\"type\": \"string\"}",
                "must describe an object with properties",
            ),
            (
                "{oops",
                "is not valid JSON (key must be a string at line 1 column 2)",
            ),
            ("   ", "is empty"),
        ];
        for (text, problem) in cases {
            assert_eq!(
                message(text),
                format!("Parameter 'output_schema' {problem}{fix}"),
                "{text}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // Regression: 10,000 nested LISTs overflowed the stack; 50,000 STRUCTs ran for
        // tens of seconds before aborting.
        let fix = ": write e.g. output_schema = 'name STRING, age INT, tags LIST<STRING>' or a JSON Schema object";
        let lists = format!("a {}STRING{}", "LIST<".repeat(10_000), ">".repeat(10_000));
        assert_eq!(
            OutputSchema::parse(&lists).unwrap_err().to_string(),
            format!(
                "Parameter 'output_schema' nests types deeper than 32 levels at character 163{fix}"
            )
        );
        let structs = format!(
            "a {}b INT{}",
            "STRUCT<b ".repeat(50_000),
            ">".repeat(50_000)
        );
        assert!(
            OutputSchema::parse(&structs)
                .unwrap_err()
                .to_string()
                .starts_with(
                    "Parameter 'output_schema' nests types deeper than 32 levels at character "
                )
        );
        // 32 levels are fine.
        let deepest = format!("a {}STRING{}", "LIST<".repeat(32), ">".repeat(32));
        assert!(OutputSchema::parse(&deepest).is_ok());
        let json = format!(
            "{{\"type\":\"object\",\"properties\":{{\"a\":{}{{\"type\":\"string\"}}{}}}}}",
            "{\"type\":\"array\",\"items\":".repeat(40),
            "}".repeat(40)
        );
        assert_eq!(
            OutputSchema::parse(&json).unwrap_err().to_string(),
            format!(
                "Parameter 'output_schema' nests '$.a{}' deeper than 32 levels{fix}",
                "[]".repeat(32)
            )
        );
    }

    #[test]
    fn non_ascii_text_is_an_error_with_its_position_not_a_panic() {
        // Regression: 'ǰ' upper-cases to two characters, and the type's name was once cut at
        // a byte offset of the original text inside the upper-cased one.
        let message = |text: &str| OutputSchema::parse(text).unwrap_err().to_string();
        let fix = ": write e.g. output_schema = 'name STRING, age INT, tags LIST<STRING>' or a JSON Schema object";
        assert_eq!(
            message("x ǰ<STRING>"),
            format!("Parameter 'output_schema' has an unknown type 'ǰ<…>' at character 3{fix}")
        );
        assert_eq!(
            message("ǰǰ INT, é ẞTRING"),
            format!(
                "Parameter 'output_schema' has an unknown type 'ẞTRING' (use STRING, INT, FLOAT, BOOLEAN, LIST<…> or STRUCT<…>) at character 11{fix}"
            )
        );
        assert_eq!(
            message("ǰ LIST<ǰ<STRING>>"),
            format!("Parameter 'output_schema' has an unknown type 'ǰ<…>' at character 8{fix}")
        );
    }

    #[test]
    fn answers_are_validated_and_become_structs() {
        let schema = OutputSchema::parse("name STRING, age INT, tags LIST<STRING>").unwrap();
        assert_eq!(
            schema.validate(&json!({"name": "Ada", "tags": []})),
            Err("the required field 'age' is missing".to_string())
        );
        assert_eq!(
            schema.validate(&json!({"name": "Ada", "age": 3.5, "tags": []})),
            Err("'age' should be an integer, got 3.5".to_string())
        );
        assert_eq!(
            schema.validate(&json!({"name": "Ada", "age": 36, "tags": ["x", 1]})),
            Err("'tags[1]' should be a string, got 1".to_string())
        );
        let good = json!({"name": "Ada", "age": 36, "tags": ["math", "engines"]});
        assert_eq!(schema.validate(&good), Ok(()));
        let array = schema.to_array(&[Some(good), None]).unwrap();
        assert_eq!(array.data_type(), &schema.arrow_type());
        let batch = RecordBatch::try_from_iter(vec![("answer", array)]).unwrap();
        assert_eq!(
            pretty_format_batches(&[batch]).unwrap().to_string(),
            [
                "+---------------------------------------------+",
                "| answer                                      |",
                "+---------------------------------------------+",
                "| {name: Ada, age: 36, tags: [math, engines]} |",
                "|                                             |",
                "+---------------------------------------------+",
            ]
            .join("\n")
        );
    }
}
