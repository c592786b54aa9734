//! Secrets kept out of what is shown: the user-info part of URLs.

/// What a hidden secret is shown as.
pub const REDACTED: &str = "<redacted>";

/// A URL as it may be shown: `http://user:password@host/…` becomes
/// `http://<redacted>@host/…`; other text is returned unchanged.
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
