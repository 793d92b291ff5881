//! HTTP Basic auth: the header the mock accepts, checked strictly, with a dozen
//! lines of base64 instead of a dependency.

use super::{API_KEY, USERNAME};

/// The `Authorization` header value for HTTP Basic auth.
pub fn basic_auth(username: &str, api_key: &str) -> String {
    format!("Basic {}", base64_encode(format!("{username}:{api_key}").as_bytes()))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The scheme is case-insensitive (RFC 7617); the credentials must match exactly.
pub(super) fn authorized(header: Option<&str>) -> bool {
    let Some((scheme, credentials)) = header.and_then(|h| h.trim().split_once(' ')) else {
        return false;
    };
    let expected = format!("{USERNAME}:{API_KEY}");
    scheme.eq_ignore_ascii_case("basic") && base64_decode(credentials.trim()).is_some_and(|d| d == expected.as_bytes())
}

pub(super) fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (k, &b)| n | u32::from(b) << (16 - 8 * k));
        for k in 0..4 {
            let sextet = (n >> (18 - 6 * k)) as usize & 63;
            out.push(if k <= chunk.len() { char::from(B64[sextet]) } else { '=' });
        }
    }
    out
}

/// Strict: whole quads, padding only at the very end.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (q, quad) in bytes.chunks(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&b| b == b'=').count();
        if pad > 2 || (pad > 0 && (q + 1) * 4 != bytes.len()) {
            return None;
        }
        let mut n = 0u32;
        for &b in &quad[..4 - pad] {
            n = n << 6 | B64.iter().position(|&c| c == b)? as u32;
        }
        n <<= 6 * pad;
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8][..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_encode(b"api@example.com:mock-paligo-key"), "YXBpQGV4YW1wbGUuY29tOm1vY2stcGFsaWdvLWtleQ==");
        for text in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            assert_eq!(base64_decode(&base64_encode(text.as_bytes())).unwrap(), text.as_bytes());
        }
        assert_eq!(base64_decode("Zg=a"), None);
        assert_eq!(base64_decode("Zg==Zg=="), None);
    }
}
