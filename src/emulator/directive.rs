//! Per-request error triggers for tests: a prompt containing `[[emulate:ThrottlingException]]`
//! always gets that error; `[[emulate:ThrottlingException:2]]` gets it the first two times that
//! exact request arrives, then succeeds. Any error type Bedrock sends may be named, with or
//! without the `Exception` suffix.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::answer::fnv1a;
use super::wire::{ApiError, ErrorCode};

const OPEN: &str = "[[emulate:";

/// A parsed directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Directive {
    pub code: ErrorCode,
    /// `None`: every time.
    pub times: Option<u32>,
}

/// Finds the first directive in a request body.
pub(crate) fn find(body: &str) -> Option<Directive> {
    let start = body.find(OPEN)? + OPEN.len();
    let inner = &body[start..start + body[start..].find("]]")?];
    let (name, times) = match inner.split_once(':') {
        Some((name, n)) => (name, Some(n.trim().parse().ok()?)),
        None => (inner, None),
    };
    Some(Directive {
        code: ErrorCode::from_name(name.trim())?,
        times,
    })
}

/// Remembers how often each request carrying a counted directive has failed.
#[derive(Debug, Default)]
pub(crate) struct Directives {
    seen: Mutex<HashMap<u64, u32>>,
}

impl Directives {
    /// The error to send for this body now, if any.
    pub(crate) fn error_for(&self, body: &[u8]) -> Option<ApiError> {
        let directive = find(std::str::from_utf8(body).ok()?)?;
        let error = ApiError::new(directive.code, directive.code.default_message());
        let Some(times) = directive.times else {
            return Some(error);
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let count = seen.entry(fnv1a(&[body])).or_default();
        if *count < times {
            *count += 1;
            Some(error)
        } else {
            None
        }
    }

    pub(crate) fn clear(&self) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_counts() {
        assert_eq!(
            find(r#"{"text":"hi [[emulate:ModelErrorException]]"}"#),
            Some(Directive {
                code: ErrorCode::ModelError,
                times: None
            })
        );
        assert_eq!(
            find("[[emulate:Throttling:2]]"),
            Some(Directive {
                code: ErrorCode::Throttling,
                times: Some(2)
            })
        );
        assert_eq!(find("[[emulate:NoSuchError]]"), None);
        assert_eq!(find("[[emulate:Throttling"), None);
    }

    #[test]
    fn counted_directives_fail_then_pass() {
        let d = Directives::default();
        let body = b"x [[emulate:ServiceUnavailable:2]]";
        let codes: Vec<_> = (0..3).map(|_| d.error_for(body).map(|e| e.code)).collect();
        assert_eq!(
            codes,
            vec![
                Some(ErrorCode::ServiceUnavailable),
                Some(ErrorCode::ServiceUnavailable),
                None
            ]
        );
        assert_eq!(d.error_for(b"other").map(|e| e.code), None);
    }
}
