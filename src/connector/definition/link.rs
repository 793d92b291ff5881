//! RFC 8288 `Link` headers: the target of the first link whose `rel` holds `next`.

/// Splits `s` at `sep` outside `<…>` and quoted strings.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let (mut out, mut start, mut angle, mut quoted, mut escaped) = (Vec::new(), 0, false, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' if !angle => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            c if c == sep && !angle && !quoted => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// A parameter value: a token or a quoted string (RFC 7230 quoted-pair unescaped).
fn unquote(v: &str) -> String {
    let v = v.trim();
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
            }
            out
        }
        None => v.to_string(),
    }
}

/// The target URI of the `rel="next"` link among the header's link values.
pub fn next(header: &str) -> Option<String> {
    for value in split_top(header, ',') {
        let mut parts = split_top(value, ';').into_iter();
        let target = parts.next()?.trim();
        let Some(uri) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else { continue };
        for param in parts {
            let Some((name, v)) = param.split_once('=') else { continue };
            if name.trim().eq_ignore_ascii_case("rel")
                && unquote(v).split_ascii_whitespace().any(|r| r.eq_ignore_ascii_case("next"))
            {
                return Some(uri.trim().to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::next;

    /// RFC 8288 section 3.5's examples, and GitHub's header.
    #[test]
    fn rfc8288_examples() {
        assert_eq!(next(r#"<http://example.com/TheBook/chapter2>; rel="previous"; title="previous chapter""#), None);
        assert_eq!(next(r#"</>; rel="http://example.net/foo""#), None);
        assert_eq!(
            next(r##"</terms>; rel="copyright"; anchor="#foo", </TheBook/chapter2>; rel="next""##).as_deref(),
            Some("/TheBook/chapter2")
        );
        assert_eq!(next(r#"<http://example.org/>; rel="start http://example.net/relation/other""#), None);
        assert_eq!(
            next(r#"<http://example.org/2>; rel="start next", <http://example.org/3>; rel=next"#).as_deref(),
            Some("http://example.org/2")
        );
        assert_eq!(
            next(r#"</TheBook/chapter2>; rel="previous"; title*=UTF-8'de'letztes%20Kapitel, </TheBook/chapter4>; rel="next"; title*=UTF-8'de'n%c3%a4chstes%20Kapitel"#).as_deref(),
            Some("/TheBook/chapter4")
        );
        let gh = r#"<https://api.github.com/repositories/1/issues?page=2>; rel="next", <https://api.github.com/repositories/1/issues?page=5>; rel="last""#;
        assert_eq!(next(gh).as_deref(), Some("https://api.github.com/repositories/1/issues?page=2"));
        assert_eq!(
            next(r#"<https://x/?a=1,2>; title="a, b; rel=next"; rel=NEXT"#).as_deref(),
            Some("https://x/?a=1,2")
        );
        assert_eq!(next(""), None);
    }
}
