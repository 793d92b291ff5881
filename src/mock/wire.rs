//! HTTP/1.1 on the wire, as much of it as the mock needs: reading a request head
//! (httparse), splitting its target (`http::Uri`) and decoding it into a
//! [`MockRequest`] (percent-encoding), and writing a [`Reply`] in one buffer, whole,
//! without a body (HEAD), or cut off halfway for the dropped-connection fault.

use std::borrow::Cow;
use std::io::{self, BufRead, Write};
use std::net::TcpStream;

use percent_encoding::percent_decode_str;
use ureq::http::Uri;

use super::{MockRequest, MockResponse};

/// Longest request head accepted, so a confused client cannot grow memory.
const MAX_HEAD: usize = 64 * 1024;
/// Most header lines accepted; real clients send about a dozen.
const MAX_HEADERS: usize = 100;

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

/// Reads one request head and no byte beyond it, so a body or a pipelined request
/// stays in `reader`; `None` when the client closed the connection cleanly.
pub(super) fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut bytes = Vec::new();
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return end_of_input(&bytes);
        }
        let before = bytes.len();
        let taken = chunk.len().min(MAX_HEAD - before);
        bytes.extend_from_slice(&chunk[..taken]);
        if let Some((head, len)) = parse_head(&bytes)? {
            reader.consume(len - before);
            return Ok(Some(head));
        }
        reader.consume(taken);
        if bytes.len() >= MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request head over 64 KiB"));
        }
    }
}

/// Blank lines before a request line are allowed (RFC 9112 §2.2), so a client that
/// sent only those and closed closed cleanly.
fn end_of_input(bytes: &[u8]) -> io::Result<Option<Head>> {
    if bytes.iter().all(|b| matches!(b, b'\r' | b'\n')) {
        Ok(None)
    } else {
        Err(io::Error::new(io::ErrorKind::UnexpectedEof, "request head cut short"))
    }
}

/// The head and its length once `bytes` hold all of it, `None` while they don't.
fn parse_head(bytes: &[u8]) -> io::Result<Option<(Head, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    // As lenient as the mock always was: extra spaces in the request line and a
    // malformed header line do not cost a well-meaning client its answer.
    let status = httparse::ParserConfig::default()
        .allow_multiple_spaces_in_request_line_delimiters(true)
        .ignore_invalid_headers_in_requests(true)
        .parse_request(&mut request, bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad request head: {e}")))?;
    Ok(match status {
        httparse::Status::Complete(len) => Some((Head::of(&request), len)),
        httparse::Status::Partial => None,
    })
}

impl Head {
    fn of(request: &httparse::Request) -> Head {
        let mut head = Head {
            method: request.method.unwrap_or_default().to_string(),
            target: request.path.unwrap_or_default().to_string(),
            authorization: None,
            content_length: 0,
            // HTTP/1.0 closes after each answer unless it asks otherwise.
            keep_alive: request.version != Some(0),
        };
        for header in request.headers.iter() {
            let value = String::from_utf8_lossy(header.value);
            let value = value.trim();
            let name = header.name;
            if name.eq_ignore_ascii_case("authorization") {
                head.authorization = Some(value.to_string());
            } else if name.eq_ignore_ascii_case("content-length") {
                head.content_length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("connection") {
                head.keep_alive = connection_keeps_alive(value, head.keep_alive);
            }
        }
        head
    }

    /// The request as the APIs see it; `None` when the target is not a URI.
    pub(super) fn to_request(&self, origin: &str) -> Option<MockRequest> {
        let uri: Uri = self.target.parse().ok()?;
        Some(MockRequest {
            method: self.method.clone(),
            path: percent_decode_str(uri.path()).decode_utf8_lossy().into_owned(),
            query: uri.query().map(parse_query).unwrap_or_default(),
            authorization: self.authorization.clone(),
            origin: origin.to_string(),
        })
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

/// `a=1&filter%5Bstatus%5D=active` as decoded pairs, `+` meaning a space.
pub(super) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_form(key), decode_form(value))
        })
        .collect()
}

/// A form-encoded query component: `+` is a space, `%2B` a plus, and a bad
/// escape stays as it is.
fn decode_form(text: &str) -> String {
    let spaced = if text.contains('+') { Cow::Owned(text.replace('+', " ")) } else { Cow::Borrowed(text) };
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
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

    fn head(bytes: &[u8]) -> Head {
        read_head(&mut &bytes[..]).unwrap().unwrap()
    }

    fn request(bytes: &[u8]) -> MockRequest {
        head(bytes).to_request("http://mock").unwrap()
    }

    #[test]
    fn decodes_percent_escapes_and_plus() {
        let pairs = parse_query("limit=100&cursor=&filter%5Bstatus%5D=active&q=a+b%2B%2&flag");
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            pairs,
            [
                pair("limit", "100"),
                pair("cursor", ""),
                pair("filter[status]", "active"),
                pair("q", "a b+%2"),
                pair("flag", "")
            ]
        );
        let req = request(b"GET /a+b/%C3%A9%2F?filter[status]=junk&x=%E2%82%AC HTTP/1.1\r\n\r\n");
        assert_eq!(req.path, "/a+b/é/");
        assert_eq!((req.param("filter[status]"), req.param("x")), (Some("junk"), Some("€")));
    }

    #[test]
    fn reads_the_head_fields_the_mocks_use() {
        let h = head(
            b"\r\n\r\nPOST /x HTTP/1.1\r\nauthorization:  Bearer k \r\nContent-Length: 5\r\nbad line\r\n\r\nhello",
        );
        assert_eq!((h.method.as_str(), h.target.as_str(), h.content_length), ("POST", "/x", 5));
        assert_eq!((h.authorization.as_deref(), h.keep_alive), (Some("Bearer k"), true));
        assert!(!head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        let absolute = request(b"GET http://example.org/api/groups?page=2 HTTP/1.1\r\n\r\n");
        assert_eq!((absolute.path.as_str(), absolute.param("page")), ("/api/groups", Some("2")));
        assert!(head(b"GET /a<b> HTTP/1.1\r\n\r\n").to_request("http://mock").is_none());
    }

    #[test]
    fn reads_no_byte_past_the_head_however_it_arrives() {
        let wire = b"GET /one?a=1 HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyGET /two HTTP/1.1\r\n\r\n\r\n";
        for capacity in [1, 3, 7, 64, 4096] {
            let mut reader = io::BufReader::with_capacity(capacity, &wire[..]);
            let first = read_head(&mut reader).unwrap().unwrap();
            let mut body = [0; 4];
            io::Read::read_exact(&mut reader, &mut body).unwrap();
            assert_eq!((first.target.as_str(), &body), ("/one?a=1", b"body"));
            assert_eq!(read_head(&mut reader).unwrap().unwrap().target, "/two");
            assert!(read_head(&mut reader).unwrap().is_none(), "trailing blank lines then a clean close");
        }
    }

    #[test]
    fn refuses_a_cut_short_oversized_or_garbled_head() {
        assert!(read_head(&mut &b""[..]).unwrap().is_none());
        assert_eq!(
            read_head(&mut &b"GET / HTTP/1.1\r\nHost: x\r\n"[..]).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let mut huge = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        huge.resize(MAX_HEAD + 10, b'a');
        huge.extend(b"\r\n\r\n");
        assert_eq!(read_head(&mut &huge[..]).unwrap_err().kind(), io::ErrorKind::InvalidData);
        let mut fits = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        fits.resize(MAX_HEAD - 4, b'a');
        fits.extend(b"\r\n\r\n");
        assert_eq!(head(&fits).target, "/");
        assert_eq!(read_head(&mut &b"\x01\x02 nonsense\r\n\r\n"[..]).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
