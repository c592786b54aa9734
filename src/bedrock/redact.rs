//! Secrets kept out of what is shown: secret values in messages, the user-info part of URLs.

/// What a hidden secret is shown as.
pub const REDACTED: &str = "<redacted>";

/// A URL as it may be shown: `http://user:password@host/…` becomes
/// `http://<redacted>@host/…`; other text is returned unchanged.
#[must_use]
pub fn url_for_display(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    match authority.rfind('@') {
        Some(at) => format!(
            "{}{REDACTED}{}",
            &url[..authority_start],
            &url[authority_start + at..]
        ),
        None => url.to_string(),
    }
}

/// `message` with every occurrence of `secret` that is not part of a longer word (no letter or
/// digit right before or after it) replaced, so a short secret does not blank out ordinary
/// words that happen to contain it.
#[must_use]
pub fn replace_whole(message: &str, secret: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(secret) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + secret.len()..].chars().next();
        let glued = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
        out.push_str(&rest[..at]);
        if glued(before) || glued(after) {
            out.push_str(secret);
        } else {
            out.push_str("** redacted **");
        }
        rest = &rest[at + secret.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_hidden_and_everything_else_kept() {
        let cases = [
            (
                "http://user:pa55@host:8080/path?q=1",
                "http://<redacted>@host:8080/path?q=1",
            ),
            ("https://tok@example.com", "https://<redacted>@example.com"),
            ("http://a@b:c@host/x@y", "http://<redacted>@host/x@y"),
            ("http://127.0.0.1:4566", "http://127.0.0.1:4566"),
            (
                "http://host/path@not-user-info",
                "http://host/path@not-user-info",
            ),
            ("not a url", "not a url"),
            ("http://ü:ß@hôst/", "http://<redacted>@hôst/"),
        ];
        for (url, shown) in cases {
            assert_eq!(url_for_display(url), shown, "{url}");
        }
    }
}
