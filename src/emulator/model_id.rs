//! Model identifiers as they arrive in the path: base ids, inference profiles and ARNs.

use super::catalog::{self, CatalogModel};
use super::wire::ApiError;

/// Inference-profile prefixes Bedrock defines for cross-region inference.
const PROFILE_PREFIXES: &[&str] = &["us", "eu", "apac", "global", "us-gov", "ca", "jp", "au"];

/// A model id resolved against the catalog.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The catalog entry.
    pub model: &'static CatalogModel,
    /// Whether the id named an inference profile (prefix or profile ARN).
    pub via_profile: bool,
}

/// Decodes `%XX` escapes of one path segment. `None` for a broken escape or non-UTF-8.
pub(crate) fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn well_formed(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 2048
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b))
}

fn invalid_identifier() -> ApiError {
    ApiError::validation("The provided model identifier is invalid.")
}

/// Resolves a decoded model id. Errors are the runtime's `ValidationException`s.
pub(crate) fn resolve(id: &str) -> Result<Resolved, ApiError> {
    if !well_formed(id) {
        return Err(ApiError::constraint(
            id,
            "modelId",
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.:/-]{1,2048}",
        ));
    }
    if let Some(rest) = id.strip_prefix("arn:") {
        return resolve_arn(rest);
    }
    if let Some(model) = catalog::find(id) {
        return Ok(Resolved {
            model,
            via_profile: false,
        });
    }
    resolve_profile(id)
}

fn resolve_profile(profile: &str) -> Result<Resolved, ApiError> {
    let (prefix, base) = profile.split_once('.').ok_or_else(invalid_identifier)?;
    match catalog::find(base) {
        Some(model) if PROFILE_PREFIXES.contains(&prefix) && model.has_profiles => Ok(Resolved {
            model,
            via_profile: true,
        }),
        _ => Err(invalid_identifier()),
    }
}

/// `aws[-partition]:bedrock:{region}::foundation-model/{id}` or
/// `aws:bedrock:{region}:{account}:inference-profile/{profile}`.
fn resolve_arn(rest: &str) -> Result<Resolved, ApiError> {
    let parts: Vec<&str> = rest.splitn(5, ':').collect();
    let [partition, service, region, account, resource] = parts.as_slice() else {
        return Err(invalid_identifier());
    };
    if !partition.starts_with("aws") || *service != "bedrock" || region.is_empty() {
        return Err(invalid_identifier());
    }
    let (kind, name) = resource.split_once('/').ok_or_else(invalid_identifier)?;
    match kind {
        "foundation-model" if account.is_empty() => catalog::find(name)
            .map(|model| Resolved {
                model,
                via_profile: false,
            })
            .ok_or_else(invalid_identifier),
        "inference-profile"
            if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) =>
        {
            resolve_profile(name)
        }
        _ => Err(invalid_identifier()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_of(raw: &str) -> Result<(&'static str, bool), String> {
        resolve(raw)
            .map(|r| (r.model.id, r.via_profile))
            .map_err(|e| e.message)
    }

    #[test]
    fn decodes_sdk_encoded_segments() {
        assert_eq!(
            percent_decode("amazon.titan-text-premier-v1%3A0").as_deref(),
            Some("amazon.titan-text-premier-v1:0")
        );
        assert_eq!(
            percent_decode("arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Fx").as_deref(),
            Some("arn:aws:bedrock:us-east-1::foundation-model/x")
        );
        assert_eq!(percent_decode("bad%4"), None);
        assert_eq!(percent_decode("bad%zz"), None);
    }

    #[test]
    fn resolves_ids_profiles_and_arns() {
        let claude = "anthropic.claude-3-haiku-20240307-v1:0";
        assert_eq!(id_of(claude), Ok((claude, false)));
        assert_eq!(id_of(&format!("us.{claude}")), Ok((claude, true)));
        assert_eq!(id_of(&format!("global.{claude}")), Ok((claude, true)));
        assert_eq!(
            id_of(&format!(
                "arn:aws:bedrock:us-east-1::foundation-model/{claude}"
            )),
            Ok((claude, false))
        );
        assert_eq!(
            id_of(&format!(
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.{claude}"
            )),
            Ok((claude, true))
        );
    }

    #[test]
    fn rejects_unknown_and_malformed_ids() {
        let invalid = Err("The provided model identifier is invalid.".to_string());
        assert_eq!(id_of("amazon.nope-v1"), invalid);
        assert_eq!(id_of("xx.anthropic.claude-3-haiku-20240307-v1:0"), invalid);
        // Titan has no cross-region inference profiles.
        assert_eq!(id_of("us.amazon.titan-text-premier-v1:0"), invalid);
        assert_eq!(
            id_of("arn:aws:bedrock:us-east-1:12:inference-profile/us.amazon.nova-micro-v1:0"),
            invalid
        );
        assert_eq!(
            id_of("has space"),
            Err("1 validation error detected: Value 'has space' at 'modelId' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.:/-]{1,2048}".to_string())
        );
    }
}
