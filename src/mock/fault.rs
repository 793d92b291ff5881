//! Fault injection: the kinds of damage the server may do to a good answer, and the
//! error bodies it sends instead (JSON from the origin, HTML from the CDN in front),
//! so clients meet the failures of real networks in tests.

use super::MockResponse;

/// The kinds of damage fault injection chooses from, uniformly.
#[derive(Debug, Clone, Copy)]
pub(super) enum Fault {
    ServerError,
    BadGateway,
    Unavailable,
    TooManyRequests,
    /// Headers promise the full body; half of it arrives, then the connection closes.
    DropMidBody,
    /// A 200 whose JSON is cut in half, with a Content-Length that matches the cut.
    TruncatedJson,
}

impl Fault {
    pub(super) const ALL: [Fault; 6] = [
        Fault::ServerError,
        Fault::BadGateway,
        Fault::Unavailable,
        Fault::TooManyRequests,
        Fault::DropMidBody,
        Fault::TruncatedJson,
    ];
}

pub(super) fn json_error(status: u16, body: &str) -> MockResponse {
    MockResponse { status, headers: Vec::new(), body: body.as_bytes().to_vec() }
}

/// What Cloudflare sends when the origin is unreachable: HTML, not JSON.
pub(super) fn bad_gateway() -> MockResponse {
    let body = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
                <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n\
                </body>\r\n</html>\r\n";
    MockResponse {
        status: 502,
        headers: vec![("Content-Type".into(), "text/html".into()), ("Server".into(), "cloudflare".into())],
        body: body.as_bytes().to_vec(),
    }
}
