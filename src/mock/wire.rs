//! HTTP/1.1 on the wire, as much of it as the mock needs: reading a request head,
//! decoding its target into a [`MockRequest`], and writing a [`Reply`] in one buffer,
//! whole, without a body (HEAD), or cut off halfway for the dropped-connection fault.

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;

use super::{MockRequest, MockResponse};

/// Longest request head accepted, so a confused client cannot grow memory.
const MAX_HEAD: u64 = 64 * 1024;

/// A response plus how to put it on the wire.
pub(super) struct Reply {
    pub(super) response: MockResponse,
    pub(super) drop_mid_body: bool,
    /// A HEAD request: Content-Length as for GET, but no body.
    pub(super) head_only: bool,
}

impl Reply {
    pub(super) fn whole(response: MockResponse) -> Reply {
        Reply { response, drop_mid_body: false, head_only: false }
    }
}

/// The parts of a request head the mocks use.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) method: String,
    target: String,
    authorization: Option<String>,
    pub(super) content_length: u64,
    pub(super) keep_alive: bool,
}

/// Reads one request head; `None` when the client closed the connection cleanly.
pub(super) fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut limited = reader.take(MAX_HEAD);
    let mut line = String::new();
    // Tolerate blank lines before a request line (RFC 9112 §2.2).
    while line.trim().is_empty() {
        line.clear();
        if limited.read_line(&mut line)? == 0 {
            return Ok(None);
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), version) = (parts.next(), parts.next(), parts.next()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "bad request line"));
    };
    let mut head = Head {
        method: method.to_string(),
        target: target.to_string(),
        authorization: None,
        content_length: 0,
        keep_alive: version != Some("HTTP/1.0"),
    };
    read_headers(&mut limited, &mut head)?;
    Ok(Some(head))
}

fn read_headers(reader: &mut impl BufRead, head: &mut Head) -> io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "request head cut short"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok(());
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "authorization" => head.authorization = Some(value.to_string()),
            "content-length" => head.content_length = value.parse().unwrap_or(0),
            "connection" => head.keep_alive = connection_keeps_alive(value, head.keep_alive),
            _ => {}
        }
    }
}

fn connection_keeps_alive(value: &str, default: bool) -> bool {
    let value = value.to_ascii_lowercase();
    if value.contains("close") {
        false
    } else {
        value.contains("keep-alive") || default
    }
}

impl Head {
    pub(super) fn to_request(&self, origin: &str) -> MockRequest {
        let (path, query) = self.target.split_once('?').unwrap_or((&self.target, ""));
        MockRequest {
            method: self.method.clone(),
            path: percent_decode(path, false),
            query: parse_query(query),
            authorization: self.authorization.clone(),
            origin: origin.to_string(),
        }
    }
}

/// `a=1&filter%5Bstatus%5D=active` as decoded pairs, `+` meaning a space.
pub(super) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, true), percent_decode(value, true))
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` when `plus_is_space`); bad escapes stay as they are.
fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
                continue;
            }
            (b'+', _) if plus_is_space => out.push(b' '),
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes status line, headers and body in one buffer, so the reply leaves in as
/// few segments as possible; a dropped reply stops halfway through the body.
pub(super) fn write_reply(out: &mut TcpStream, reply: &Reply, keep_alive: bool) -> io::Result<()> {
    let response = &reply.response;
    let mut wire = Vec::with_capacity(response.body.len() + 512);
    write!(wire, "HTTP/1.1 {} {}\r\n", response.status, reason(response.status))?;
    let has_type = response.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if !has_type {
        wire.extend_from_slice(b"Content-Type: application/json\r\n");
    }
    for (name, value) in &response.headers {
        write!(wire, "{name}: {value}\r\n")?;
    }
    write!(wire, "Content-Length: {}\r\n", response.body.len())?;
    if !keep_alive && !reply.drop_mid_body {
        wire.extend_from_slice(b"Connection: close\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    let body_len = match (reply.head_only, reply.drop_mid_body) {
        (true, _) => 0,
        (false, true) => response.body.len() / 2,
        (false, false) => response.body.len(),
    };
    wire.extend_from_slice(&response.body[..body_len]);
    out.write_all(&wire)?;
    out.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes_and_plus() {
        assert_eq!(percent_decode("filter%5Bstatus%5D", true), "filter[status]");
        assert_eq!(percent_decode("a+b%2", true), "a b%2");
        assert_eq!(percent_decode("a+b", false), "a+b");
        let pairs = parse_query("limit=100&cursor=&filter%5Bstatus%5D=active");
        assert_eq!(pairs[2], ("filter[status]".to_string(), "active".to_string()));
        assert_eq!(pairs[1], ("cursor".to_string(), String::new()));
    }
}
