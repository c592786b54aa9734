//! Strict reading of native `InvokeModel` bodies, with the JSON-schema style messages Bedrock
//! returns for them (`#/temperature: 1.5 is not less or equal to 1`).

use serde_json::{Map, Value};

use super::wire::ApiError;

/// The JSON-schema name of a value's type, as the service prints it.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "Integer",
        Value::Number(_) => "Number",
        Value::String(_) => "String",
        Value::Array(_) => "JSONArray",
        Value::Object(_) => "JSONObject",
    }
}

fn wrong_type(path: &str, expected: &str, found: &Value) -> ApiError {
    ApiError::malformed(format!(
        "{path}: expected type: {expected}, found: {}",
        type_name(found)
    ))
}

/// A JSON object being validated, with its schema path (`#`, `#/textGenerationConfig`).
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    /// The request body's top level.
    pub(crate) fn root(v: &'a Value) -> Result<Self, ApiError> {
        Self::at(v, "#".to_string())
    }

    fn at(v: &'a Value, path: String) -> Result<Self, ApiError> {
        match v {
            Value::Object(map) => Ok(Self { map, path }),
            other => Err(wrong_type(&path, "JSONObject", other)),
        }
    }

    fn child(&self, key: &str) -> String {
        format!("{}/{key}", self.path)
    }

    /// Rejects keys the family's schema does not list.
    pub(crate) fn allow_only(&self, keys: &[&str]) -> Result<(), ApiError> {
        match self.map.keys().find(|k| !keys.contains(&k.as_str())) {
            Some(k) => Err(ApiError::malformed(format!(
                "{}: extraneous key [{k}] is not permitted",
                self.path
            ))),
            None => Ok(()),
        }
    }

    /// The raw value of a key, `null` counting as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn required(&self, key: &str) -> Result<&'a Value, ApiError> {
        self.get(key).ok_or_else(|| {
            ApiError::malformed(format!("{}: required key [{key}] not found", self.path))
        })
    }

    pub(crate) fn req_str(&self, key: &str) -> Result<&'a str, ApiError> {
        let v = self.required(key)?;
        v.as_str()
            .ok_or_else(|| wrong_type(&self.child(key), "String", v))
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| wrong_type(&self.child(key), "String", v)),
        }
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| wrong_type(&self.child(key), "Boolean", v)),
        }
    }

    /// An optional number within `[min, max]`.
    pub(crate) fn opt_f64(&self, key: &str, min: f64, max: f64) -> Result<Option<f64>, ApiError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let x = v
            .as_f64()
            .ok_or_else(|| wrong_type(&self.child(key), "Number", v))?;
        check_range(&self.child(key), v, x, min, max)?;
        Ok(Some(x))
    }

    /// An optional integer within `[min, max]`.
    pub(crate) fn opt_u32(&self, key: &str, min: u32, max: u32) -> Result<Option<u32>, ApiError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let x = v
            .as_i64()
            .ok_or_else(|| wrong_type(&self.child(key), "Integer", v))?;
        #[allow(clippy::cast_precision_loss)]
        check_range(
            &self.child(key),
            v,
            x as f64,
            f64::from(min),
            f64::from(max),
        )?;
        Ok(Some(u32::try_from(x).unwrap_or(max)))
    }

    /// A required integer within `[min, max]`.
    pub(crate) fn req_u32(&self, key: &str, min: u32, max: u32) -> Result<u32, ApiError> {
        self.required(key)?;
        self.opt_u32(key, min, max).map(Option::unwrap_or_default)
    }

    /// An optional list of strings (`stop_sequences`).
    pub(crate) fn opt_str_list(&self, key: &str) -> Result<Vec<String>, ApiError> {
        let Some(v) = self.get(key) else {
            return Ok(Vec::new());
        };
        let items = v
            .as_array()
            .ok_or_else(|| wrong_type(&self.child(key), "JSONArray", v))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| wrong_type(&format!("{}/{i}", self.child(key)), "String", item))
            })
            .collect()
    }

    /// A required, non-empty array.
    pub(crate) fn req_array(&self, key: &str) -> Result<&'a Vec<Value>, ApiError> {
        let v = self.required(key)?;
        let items = v
            .as_array()
            .ok_or_else(|| wrong_type(&self.child(key), "JSONArray", v))?;
        if items.is_empty() {
            return Err(ApiError::malformed(format!(
                "{}: expected minimum item count: 1, found: 0",
                self.child(key)
            )));
        }
        Ok(items)
    }

    /// An optional array (may be empty).
    pub(crate) fn opt_array(&self, key: &str) -> Result<&'a [Value], ApiError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(v) => v
                .as_array()
                .map(Vec::as_slice)
                .ok_or_else(|| wrong_type(&self.child(key), "JSONArray", v)),
        }
    }

    /// An optional nested object.
    pub(crate) fn opt_obj(&self, key: &str) -> Result<Option<Obj<'a>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => Self::at(v, self.child(key)).map(Some),
        }
    }

    /// The element `i` of an array under `key`, as an object.
    pub(crate) fn item(&self, key: &str, i: usize, v: &'a Value) -> Result<Obj<'a>, ApiError> {
        Self::at(v, format!("{}/{i}", self.child(key)))
    }

    /// The path of a child key, for messages built by the caller.
    pub(crate) fn path_of(&self, key: &str) -> String {
        self.child(key)
    }
}

fn check_range(path: &str, v: &Value, x: f64, min: f64, max: f64) -> Result<(), ApiError> {
    if x < min {
        return Err(ApiError::malformed(format!(
            "{path}: {v} is not greater or equal to {min}"
        )));
    }
    if x > max {
        return Err(ApiError::malformed(format!(
            "{path}: {v} is not less or equal to {max}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(r: Result<impl std::fmt::Debug, ApiError>) -> String {
        r.expect_err("expected an error").message
    }

    #[test]
    fn schema_messages_name_path_and_rule() {
        let body = json!({"prompt": 5, "temperature": 1.5, "max_gen_len": 0, "extra": 1, "stop": ["a", 2]});
        let o = Obj::root(&body).unwrap();
        assert_eq!(
            message(o.req_str("prompt")),
            "Malformed input request: #/prompt: expected type: String, found: Integer, please reformat your input and try again."
        );
        assert_eq!(
            message(o.opt_f64("temperature", 0.0, 1.0)),
            "Malformed input request: #/temperature: 1.5 is not less or equal to 1, please reformat your input and try again."
        );
        assert_eq!(
            message(o.opt_u32("max_gen_len", 1, 2048)),
            "Malformed input request: #/max_gen_len: 0 is not greater or equal to 1, please reformat your input and try again."
        );
        assert_eq!(
            message(o.allow_only(&["prompt", "temperature", "max_gen_len", "stop"])),
            "Malformed input request: #: extraneous key [extra] is not permitted, please reformat your input and try again."
        );
        assert_eq!(
            message(o.opt_str_list("stop")),
            "Malformed input request: #/stop/1: expected type: String, found: Integer, please reformat your input and try again."
        );
        assert_eq!(
            message(o.req_str("missing")),
            "Malformed input request: #: required key [missing] not found, please reformat your input and try again."
        );
    }
}
