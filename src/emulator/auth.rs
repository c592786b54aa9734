//! Request authentication: SigV4 (recomputed with AWS's own signer) and Bedrock API keys.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use hyper::HeaderMap;

use super::StaticCredential;
use super::wire::{ApiError, ErrorCode};

/// How far a request's `x-amz-date` may be from the emulator's clock.
const MAX_SKEW: Duration = Duration::from_mins(15);

/// The parts of a request that authentication looks at.
pub(crate) struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path and query exactly as received (still percent-encoded).
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn invalid_token() -> ApiError {
    ApiError::new(
        ErrorCode::UnrecognizedClient,
        "The security token included in the request is invalid.",
    )
}

fn signature_mismatch() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidSignature,
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
    )
}

/// Checks a request against the configured credentials and API keys.
pub(crate) fn authenticate(
    req: &SignedRequest<'_>,
    credentials: &[StaticCredential],
    api_keys: &[String],
) -> Result<(), ApiError> {
    let Some(authorization) = header(req.headers, "authorization") else {
        if credentials.is_empty() && api_keys.is_empty() {
            return Ok(());
        }
        return Err(ApiError::new(
            ErrorCode::MissingAuthenticationToken,
            "Missing Authentication Token",
        ));
    };
    if let Some(key) = authorization.strip_prefix("Bearer ") {
        if api_keys.is_empty() || api_keys.iter().any(|k| k == key.trim()) {
            return Ok(());
        }
        return Err(ApiError::new(
            ErrorCode::AccessDenied,
            "Authentication failed: the API key in the Authorization header is not valid.",
        ));
    }
    let parsed = parse_authorization(authorization)?;
    if credentials.is_empty() {
        return Ok(());
    }
    let credential = credentials
        .iter()
        .find(|c| c.access_key_id == parsed.access_key_id)
        .ok_or_else(invalid_token)?;
    if credential.session_token.as_deref() != header(req.headers, "x-amz-security-token") {
        return Err(invalid_token());
    }
    verify_signature(req, &parsed, credential)
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, ApiError> {
    let incomplete = || {
        ApiError::new(
            ErrorCode::InvalidSignature,
            format!(
                "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters. Authorization={}",
                value.split_whitespace().next().unwrap_or_default()
            ),
        )
    };
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(incomplete)?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(incomplete());
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(ApiError::new(
            ErrorCode::InvalidSignature,
            "Credential should be scoped to a valid region, service and 'aws4_request'.",
        ));
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

fn verify_signature(
    req: &SignedRequest<'_>,
    auth: &Authorization<'_>,
    credential: &StaticCredential,
) -> Result<(), ApiError> {
    if auth.service != "bedrock" {
        return Err(ApiError::new(
            ErrorCode::InvalidSignature,
            "Credential should be scoped to correct service: 'bedrock'. ",
        ));
    }
    let amz_date = header(req.headers, "x-amz-date").unwrap_or_default();
    let time = parse_amz_date(amz_date).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidSignature,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    })?;
    if !amz_date.starts_with(auth.date) {
        return Err(ApiError::new(
            ErrorCode::InvalidSignature,
            format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
                auth.date,
                amz_date.get(..8).unwrap_or_default()
            ),
        ));
    }
    let now = SystemTime::now();
    let skew = now.duration_since(time).unwrap_or_else(|e| e.duration());
    if skew > MAX_SKEW {
        return Err(ApiError::new(
            ErrorCode::InvalidSignature,
            format!(
                "Signature expired: {amz_date} is now outside the 15 minute window around the server time."
            ),
        ));
    }

    // The signer adds x-amz-date, x-amz-security-token and x-amz-content-sha256 itself.
    let added_by_signer = ["x-amz-date", "x-amz-security-token", "x-amz-content-sha256"];
    let mut headers = Vec::new();
    for name in &auth.signed_headers {
        if added_by_signer.contains(name) {
            continue;
        }
        let value = header(req.headers, name).ok_or_else(signature_mismatch)?;
        headers.push((*name, value));
    }
    let host = header(req.headers, "host").unwrap_or("localhost");
    let uri = format!("http://{host}{}", req.path_and_query);
    let mut settings = SigningSettings::default();
    let body = match header(req.headers, "x-amz-content-sha256") {
        Some(hash) if auth.signed_headers.contains(&"x-amz-content-sha256") => {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            SignableBody::Precomputed(hash.to_string())
        }
        _ => SignableBody::Bytes(req.body),
    };
    let signable = SignableRequest::new(req.method, uri, headers.into_iter(), body)
        .map_err(|_| signature_mismatch())?;
    let identity = aws_credential_types::Credentials::new(
        &credential.access_key_id,
        &credential.secret_access_key,
        credential.session_token.clone(),
        None,
        "emulator",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(auth.service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|_| signature_mismatch())?
        .into();
    let output = sign(signable, &params).map_err(|_| signature_mismatch())?;
    if constant_time_eq(output.signature().as_bytes(), auth.signature.as_bytes()) {
        Ok(())
    } else {
        Err(signature_mismatch())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses `YYYYMMDDTHHMMSSZ`.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + hour * 3600 + minute * 60 + second))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_amz_dates() {
        let t = parse_amz_date("20261126T204700Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_795_726_020
        );
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(UNIX_EPOCH));
        assert_eq!(parse_amz_date("2026-11-26T20:47:00Z"), None);
        assert_eq!(parse_amz_date("20261326T204700Z"), None);
    }

    #[test]
    fn parses_the_authorization_header() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20261126/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=abc",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (a.access_key_id, a.date, a.region, a.service, a.signature),
            ("AKID", "20261126", "us-east-1", "bedrock", "abc")
        );
        assert_eq!(a.signed_headers, vec!["content-type", "host", "x-amz-date"]);
        assert!(parse_authorization("AWS4-HMAC-SHA256 Credential=AKID").is_err());
    }

    #[test]
    fn no_credentials_configured_accepts_anything() {
        let headers = HeaderMap::new();
        let req = SignedRequest {
            method: "POST",
            path_and_query: "/",
            headers: &headers,
            body: b"",
        };
        assert_eq!(authenticate(&req, &[], &[]), Ok(()));
        let err = authenticate(&req, &[StaticCredential::new("a", "b")], &[]).unwrap_err();
        assert_eq!(err.code, ErrorCode::MissingAuthenticationToken);
    }
}
