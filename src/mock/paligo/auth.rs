//! HTTP Basic auth: the header the mock accepts, checked strictly.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{API_KEY, USERNAME};

/// The `Authorization` header for `username` and `api_key`, written here rather
/// than borrowed from the connector, so that the mock checks the client's encoder
/// instead of agreeing with it by construction.
pub fn basic_auth(username: &str, api_key: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{username}:{api_key}")))
}

/// The scheme is case-insensitive (RFC 7617); the credentials must match exactly,
/// in canonical padded base64.
pub(super) fn authorized(header: Option<&str>) -> bool {
    let Some((scheme, credentials)) = header.and_then(|h| h.trim().split_once(' ')) else {
        return false;
    };
    let expected = format!("{USERNAME}:{API_KEY}");
    scheme.eq_ignore_ascii_case("basic") && STANDARD.decode(credentials.trim()).is_ok_and(|d| d == expected.as_bytes())
}

/// Standard base64 with padding, for tests that build headers by hand.
#[cfg(test)]
pub(super) fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_credentials_in_strict_base64_pass() {
        assert!(authorized(Some(&basic_auth(USERNAME, API_KEY))));
        let good = STANDARD.encode(format!("{USERNAME}:{API_KEY}"));
        assert!(authorized(Some(&format!("BASIC  {good} "))));
        for bad in [good.trim_end_matches('='), &format!("{good}=="), &format!("{good}Zg==")] {
            assert!(!authorized(Some(&format!("Basic {bad}"))), "{bad}");
        }
    }
}
