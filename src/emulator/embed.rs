//! Embedding families: Titan Embeddings (one text a call) and Cohere Embed v3 (up to 96).

use serde_json::{Value, json};

use super::answer::{count_text_tokens, embedding_for, fnv1a};
use super::catalog::{CatalogModel, Family};
use super::json::Obj;
use super::wire::ApiError;

/// A served embedding request: the response body and the input tokens it used.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Embedded {
    pub body: Value,
    pub input_tokens: u32,
}

/// Validates an embedding body, without computing anything (for quota reservation).
pub(crate) fn input_tokens(model: &CatalogModel, body: &Value) -> Result<u32, ApiError> {
    match model.family {
        Family::TitanEmbed => {
            titan_text(model, body).map(|(text, ..)| count_text_tokens(text).max(1))
        }
        _ => cohere_texts(body)
            .map(|(texts, _)| texts.iter().map(|t| count_text_tokens(t).max(1)).sum()),
    }
}

/// Serves an embedding body.
pub(crate) fn invoke(model: &CatalogModel, body: &Value) -> Result<Embedded, ApiError> {
    match model.family {
        Family::TitanEmbed => invoke_titan(model, body),
        _ => invoke_cohere(model, body),
    }
}

fn invoke_titan(model: &CatalogModel, body: &Value) -> Result<Embedded, ApiError> {
    let (text, dims, normalize, types) = titan_text(model, body)?;
    let vector = embedding_for(model.id, text, dims, normalize);
    let tokens = count_text_tokens(text).max(1);
    let mut out = json!({ "embedding": vector, "inputTextTokenCount": tokens });
    if model.id != "amazon.titan-embed-text-v1" {
        let mut by_type = serde_json::Map::new();
        for t in &types {
            let v = if t == "binary" {
                json!(
                    vector
                        .iter()
                        .map(|x| u8::from(*x > 0.0))
                        .collect::<Vec<_>>()
                )
            } else {
                json!(vector)
            };
            by_type.insert(t.clone(), v);
        }
        out["embeddingsByType"] = Value::Object(by_type);
    }
    Ok(Embedded {
        body: out,
        input_tokens: tokens,
    })
}

fn invoke_cohere(model: &CatalogModel, body: &Value) -> Result<Embedded, ApiError> {
    let (texts, types) = cohere_texts(body)?;
    let vectors: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| embedding_for(model.id, t, model.embedding_dimensions as usize, true))
        .collect();
    let tokens = texts.iter().map(|t| count_text_tokens(t).max(1)).sum();
    let id = format!(
        "{:016x}",
        fnv1a(&[model.id.as_bytes(), texts.concat().as_bytes()])
    );
    let body = if types.is_empty() {
        json!({ "id": id, "embeddings": vectors, "response_type": "embeddings_floats", "texts": texts })
    } else {
        let mut by_type = serde_json::Map::new();
        for t in &types {
            by_type.insert(t.clone(), cohere_typed(&vectors, t));
        }
        json!({ "id": id, "embeddings": by_type, "response_type": "embeddings_by_type", "texts": texts })
    };
    Ok(Embedded {
        body,
        input_tokens: tokens,
    })
}

type TitanInput<'a> = (&'a str, usize, bool, Vec<String>);

fn titan_text<'a>(model: &CatalogModel, body: &'a Value) -> Result<TitanInput<'a>, ApiError> {
    let o = Obj::root(body)?;
    if model.id == "amazon.titan-embed-text-v1" {
        o.allow_only(&["inputText"])?;
    } else {
        o.allow_only(&["inputText", "dimensions", "normalize", "embeddingTypes"])?;
    }
    let text = o.req_str("inputText")?;
    if text.is_empty() {
        return Err(ApiError::malformed("expected minLength: 1, actual: 0"));
    }
    if text.chars().count() > 50_000 {
        return Err(ApiError::malformed(format!(
            "expected maxLength: 50000, actual: {}",
            text.chars().count()
        )));
    }
    let dims = match o.get("dimensions") {
        None => model.embedding_dimensions as usize,
        Some(v) => match v.as_u64() {
            Some(d @ (256 | 512 | 1024)) => usize::try_from(d).unwrap_or(1024),
            _ => {
                return Err(ApiError::malformed(format!(
                    "#/dimensions: {v} is not a valid enum value"
                )));
            }
        },
    };
    let normalize = o.opt_bool("normalize")?.unwrap_or(true);
    let types = o.opt_str_list("embeddingTypes")?;
    if let Some(bad) = types.iter().find(|t| *t != "float" && *t != "binary") {
        return Err(ApiError::malformed(format!(
            "#/embeddingTypes: {bad} is not a valid enum value"
        )));
    }
    let types = if types.is_empty() {
        vec!["float".to_string()]
    } else {
        types
    };
    Ok((text, dims, normalize, types))
}

fn cohere_texts(body: &Value) -> Result<(Vec<String>, Vec<String>), ApiError> {
    let o = Obj::root(body)?;
    o.allow_only(&[
        "texts",
        "images",
        "input_type",
        "truncate",
        "embedding_types",
    ])?;
    let input_type = o.req_str("input_type")?;
    if ![
        "search_document",
        "search_query",
        "classification",
        "clustering",
        "image",
    ]
    .contains(&input_type)
    {
        return Err(ApiError::malformed(format!(
            "#/input_type: {input_type} is not a valid enum value"
        )));
    }
    let truncate = o.opt_str("truncate")?.unwrap_or("NONE");
    if !["NONE", "START", "END"].contains(&truncate) {
        return Err(ApiError::malformed(format!(
            "#/truncate: {truncate} is not a valid enum value"
        )));
    }
    let items = o.req_array("texts")?;
    if items.len() > 96 {
        return Err(ApiError::malformed(format!(
            "#/texts: expected maximum item count: 96, found: {}",
            items.len()
        )));
    }
    let mut texts = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let text = item.as_str().ok_or_else(|| {
            ApiError::malformed(format!(
                "#/texts/{i}: expected type: String, found: {}",
                super::json::type_name(item)
            ))
        })?;
        let chars = text.chars().count();
        let text = if chars <= 2048 {
            text.to_string()
        } else {
            match truncate {
                "START" => text.chars().skip(chars - 2048).collect(),
                "END" => text.chars().take(2048).collect(),
                _ => {
                    return Err(ApiError::malformed(format!(
                        "#/texts/{i}: expected maxLength: 2048, actual: {chars}"
                    )));
                }
            }
        };
        texts.push(text);
    }
    let types = o.opt_str_list("embedding_types")?;
    if let Some(bad) = types
        .iter()
        .find(|t| !["float", "int8", "uint8", "binary", "ubinary"].contains(&t.as_str()))
    {
        return Err(ApiError::malformed(format!(
            "#/embedding_types: {bad} is not a valid enum value"
        )));
    }
    Ok((texts, types))
}

// `scale` clamps and rounds to [-128, 127], so every cast below is exact.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn cohere_typed(vectors: &[Vec<f32>], kind: &str) -> Value {
    let scale = |x: f32| (x * 127.0 * 8.0).clamp(-128.0, 127.0).round();
    let packed = |v: &Vec<f32>| -> Vec<u8> {
        v.chunks(8)
            .map(|c| c.iter().fold(0u8, |acc, x| (acc << 1) | u8::from(*x > 0.0)))
            .collect()
    };
    match kind {
        "int8" => json!(
            vectors
                .iter()
                .map(|v| v.iter().map(|x| scale(*x) as i8).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        ),
        "uint8" => json!(
            vectors
                .iter()
                .map(|v| v
                    .iter()
                    .map(|x| (scale(*x) + 128.0) as u8)
                    .collect::<Vec<_>>())
                .collect::<Vec<_>>()
        ),
        "binary" => json!(
            vectors
                .iter()
                .map(|v| packed(v)
                    .into_iter()
                    .map(|b| b.wrapping_sub(128).cast_signed())
                    .collect::<Vec<_>>())
                .collect::<Vec<_>>()
        ),
        "ubinary" => json!(vectors.iter().map(packed).collect::<Vec<_>>()),
        _ => json!(vectors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::catalog;

    #[test]
    fn titan_v2_honours_dimensions_and_normalize() {
        let m = catalog::find("amazon.titan-embed-text-v2:0").unwrap();
        let out = invoke(m, &json!({"inputText": "hello world", "dimensions": 256})).unwrap();
        let v = out.body["embedding"].as_array().unwrap();
        assert_eq!(v.len(), 256);
        let norm: f64 = v
            .iter()
            .map(|x| x.as_f64().unwrap().powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
        assert_eq!(out.body["inputTextTokenCount"], json!(3));
        assert_eq!(out.body["embeddingsByType"]["float"], out.body["embedding"]);
        assert_eq!(
            invoke(m, &json!({"inputText": "x", "dimensions": 300}))
                .unwrap_err()
                .message,
            "Malformed input request: #/dimensions: 300 is not a valid enum value, please reformat your input and try again."
        );
    }

    #[test]
    fn cohere_batches_up_to_96_texts() {
        let m = catalog::find("cohere.embed-english-v3").unwrap();
        let texts: Vec<String> = (0..96).map(|i| format!("text {i}")).collect();
        let out = invoke(m, &json!({"texts": texts, "input_type": "search_document"})).unwrap();
        assert_eq!(out.body["embeddings"].as_array().unwrap().len(), 96);
        assert_eq!(out.body["response_type"], json!("embeddings_floats"));
        let too_many: Vec<String> = (0..97).map(|i| format!("t{i}")).collect();
        assert_eq!(
            invoke(
                m,
                &json!({"texts": too_many, "input_type": "search_document"})
            )
            .unwrap_err()
            .message,
            "Malformed input request: #/texts: expected maximum item count: 96, found: 97, please reformat your input and try again."
        );
        let typed = invoke(m, &json!({"texts": ["a"], "input_type": "search_query", "embedding_types": ["float", "int8"]})).unwrap();
        assert_eq!(
            typed.body["embeddings"]["int8"][0]
                .as_array()
                .unwrap()
                .len(),
            1024
        );
        assert_eq!(typed.body["response_type"], json!("embeddings_by_type"));
        assert_eq!(
            invoke(m, &json!({"texts": ["a"]})).unwrap_err().message,
            "Malformed input request: #: required key [input_type] not found, please reformat your input and try again."
        );
    }
}
