//! The hostile corpus as data: one request a line, what the client does after it, and what it
//! must get. The corpus test runs it against the binary; the framing's differential test (in
//! the library) reads the same table, so this file needs nothing but std.

/// What the client does once it has written its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Shuts its writing side and reads until the server closes.
    HalfClose,
    /// Stays silent, connection open, and reads until the server closes.
    KeepOpen,
    /// Closes at once without reading anything.
    HangUp,
    /// Resets the connection at once (SO_LINGER 0).
    Reset,
}

/// What the corpus expects of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Well-formed responses with these statuses, in this order (200s carry the greeting; a 100
    /// Continue is listed where it comes), then the server closes.
    Answers(&'static [u16]),
    /// The connection closes without a byte of response (a head cut short by the client).
    ClosedSilently,
    /// The client hung up: nothing to read; the server must simply go on.
    Nothing,
}

pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub after: After,
    pub expect: Expect,
}

fn case(name: &'static str, bytes: impl Into<Vec<u8>>, after: After, expect: Expect) -> Case {
    Case {
        name,
        bytes: bytes.into(),
        after,
        expect,
    }
}

fn pseudo_random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 56) as u8
        })
        .collect()
}

// One case a line, as a table.
#[rustfmt::skip]
pub fn corpus() -> Vec<Case> {
    use After::{HalfClose, HangUp, KeepOpen, Reset};
    use Expect::{Answers, ClosedSilently, Nothing};
    const OK: Expect = Answers(&[200]);
    const BAD: Expect = Answers(&[400]);
    const TOO_LARGE: Expect = Answers(&[431]);
    const VERSION: Expect = Answers(&[505]);
    const UNSUPPORTED: Expect = Answers(&[501]);
    let get = |extra: &str| format!("GET / HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
    let post = |headers: &str, body: &[u8]| {
        let mut bytes = format!("POST / HTTP/1.1\r\nHost: t\r\n{headers}\r\n").into_bytes();
        bytes.extend_from_slice(body);
        bytes
    };
    let many_headers: String = (0..10_000).map(|i| format!("X-H{i}: v{i}\r\n")).collect();
    let mut pipeline_then_leave = Vec::new();
    for _ in 0..2_000 {
        pipeline_then_leave.extend_from_slice(get("").as_bytes());
    }

    vec![
        // Garbage and binary.
        case("non-ASCII garbage line", &b"\x8f\x12garbage!!\r\n\r\n"[..], HalfClose, BAD),
        case("printable garbage line", "hello there\r\n\r\n", HalfClose, BAD),
        case("pseudo-random bytes", pseudo_random_bytes(8192, 7), HalfClose, BAD),
        case("4 KiB of zeros, no line end", vec![0; 4096], HalfClose, BAD),
        case("a line of zeros", [&[0u8; 100][..], b"\r\n\r\n"].concat(), HalfClose, BAD),
        case("CRLF flood", "\r\n".repeat(10_000), HalfClose, BAD),
        case("bare LF flood", "\n".repeat(10_000), KeepOpen, BAD),
        case("bare CR flood", "\r".repeat(10_000), KeepOpen, BAD),
        case("bare LF line ends", "GET / HTTP/1.1\nHost: t\n\n", KeepOpen, BAD),
        // Malformed request lines.
        case("no version", "GET /\r\n\r\n", HalfClose, BAD),
        case("no target", "GET HTTP/1.1\r\nHost: t\r\n\r\n", HalfClose, BAD),
        case("empty method", " / HTTP/1.1\r\nHost: t\r\n\r\n", HalfClose, BAD),
        case("double space", "GET  / HTTP/1.1\r\nHost: t\r\n\r\n", HalfClose, BAD),
        case("tab separators", "GET\t/\tHTTP/1.1\r\nHost: t\r\n\r\n", HalfClose, BAD),
        case("lowercase version", "GET / http/1.1\r\nHost: t\r\n\r\n", HalfClose, BAD),
        case("fourth word", "GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n", HalfClose, BAD),
        case("non-ASCII target", &b"GET /\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n"[..], HalfClose, BAD),
        // Methods.
        case("unknown method", "FOO / HTTP/1.1\r\nHost: t\r\n\r\n", HalfClose, OK),
        case("10 KB method", format!("{} / HTTP/1.1\r\nHost: t\r\n\r\n", "M".repeat(10_000)), HalfClose, OK),
        case("method with control bytes", "G\x01\x1bT / HTTP/1.1\r\nHost: t\r\n\r\n", HalfClose, BAD),
        // Versions.
        case("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", HalfClose, VERSION),
        case("HTTP/2.0 request line", get("").replace("HTTP/1.1", "HTTP/2.0"), HalfClose, VERSION),
        case("HTTP/3.0 request line", get("").replace("HTTP/1.1", "HTTP/3.0"), KeepOpen, VERSION),
        case("HTTP/9.9", get("").replace("HTTP/1.1", "HTTP/9.9"), HalfClose, VERSION),
        case("HTTP/1.2", get("").replace("HTTP/1.1", "HTTP/1.2"), HalfClose, VERSION),
        case("HTTP/0.9 with headers", get("").replace("HTTP/1.1", "HTTP/0.9"), HalfClose, VERSION),
        case("HTTP/0.9 simple request", "GET /\r\n", HalfClose, BAD),
        case("HTTP/1.0, no Host", "GET / HTTP/1.0\r\n\r\n", KeepOpen, OK),
        // Sizes.
        case("1 MB target", format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(1 << 20)), HalfClose, TOO_LARGE),
        case("10,000 headers", get(&many_headers), HalfClose, TOO_LARGE),
        case("1 MB header value", get(&format!("X-Big: {}\r\n", "v".repeat(1 << 20))), HalfClose, TOO_LARGE),
        // Header lines.
        case("header without colon", get("Bogus\r\n"), HalfClose, BAD),
        case("space in header name", get("Bad Name: v\r\n"), HalfClose, BAD),
        case("space before colon", get("Host : t\r\n"), HalfClose, BAD),
        case("obsolete line folding", get("X-A: a\r\n folded\r\n"), HalfClose, BAD),
        case("non-ASCII header value", &b"GET / HTTP/1.1\r\nX-A: \xff\r\n\r\n"[..], HalfClose, BAD),
        // Host (RFC 9112 3.2): exactly one, valid by RFC 3986, which HTTP/1.0 may leave out.
        case("no Host", "GET / HTTP/1.1\r\n\r\n", HalfClose, BAD),
        case("two Hosts", get("Host: u\r\n"), HalfClose, BAD),
        case("invalid Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", HalfClose, BAD),
        case("empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", HalfClose, OK),
        case("Host with IPv6 literal and port", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", HalfClose, OK),
        // Content-Length games. tiny_http takes the first Content-Length and ignores one it
        // cannot parse as a usize (the request then has no body).
        case("same Content-Length twice", post("Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), HalfClose, OK),
        case("conflicting Content-Lengths", post("Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), HalfClose, BAD),
        case("Content-Length list", post("Content-Length: 5, 6\r\n", b""), HalfClose, BAD),
        case("negative Content-Length", post("Content-Length: -1\r\n", b""), HalfClose, BAD),
        case("Content-Length +5", post("Content-Length: +5\r\n", b"hello"), HalfClose, BAD),
        case("Content-Length 2^64", post("Content-Length: 18446744073709551616\r\n", b""), HalfClose, Answers(&[413])),
        case("Content-Length in hex", post("Content-Length: 0x5\r\n", b""), HalfClose, BAD),
        case("body shorter than Content-Length", post("Content-Length: 5000\r\n", b"short"), HalfClose, OK),
        // Transfer-Encoding games (request smuggling classics): to tiny_http, Transfer-Encoding
        // wins over Content-Length, any value of it means chunked, and what follows the chunked
        // body is the next request. Only the one coding chunked passes; both framings are read
        // by Transfer-Encoding, answered, and the connection closed (RFC 9112 6.3). Chunked not
        // last gets a 400, codings before it a 501; the GET pipelined behind is never answered.
        case("CL.TE", post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\nG"), HalfClose, OK),
        case("CL.TE smuggling a request", post("Content-Length: 40\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"), HalfClose, OK),
        case("TE.CL", post("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", b"8\r\nSMUGGLED\r\n0\r\n\r\n"), HalfClose, OK),
        case("TE: CHUNKED", post("Transfer-Encoding: CHUNKED\r\n", b"0\r\n\r\n").repeat(2), HalfClose, Answers(&[200, 200])),
        case("TE: identity", post("Transfer-Encoding: identity\r\n", b"hello"), HalfClose, BAD),
        case("TE: chunked, gzip", [post("Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"), get("").into()].concat(), HalfClose, BAD),
        case("TE: empty", [post("Transfer-Encoding:\r\n", b"0\r\n\r\n"), get("").into()].concat(), HalfClose, BAD),
        case("TE: xchunked", post("Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), HalfClose, BAD),
        case("TE: gzip, chunked", [post("Transfer-Encoding: gzip, chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"), get("").into()].concat(), HalfClose, UNSUPPORTED),
        case("TE: identity, chunked", [post("Transfer-Encoding: identity, chunked\r\n", b"0\r\n\r\n"), get("").into()].concat(), HalfClose, UNSUPPORTED),
        case("TE lines identity, Chunked", [post("Transfer-Encoding: identity\r\nTransfer-Encoding: Chunked\r\n", b"0\r\n\r\n"), get("").into()].concat(), HalfClose, UNSUPPORTED),
        case("TE: chunked, chunked", [post("Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"), get("").into()].concat(), HalfClose, UNSUPPORTED),
        case("TE twice", [post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), get("").into()].concat(), KeepOpen, UNSUPPORTED),
        case("TE with space before colon", post("Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), HalfClose, BAD),
        case("bad chunk size", post("Transfer-Encoding: chunked\r\n", b"zz\r\nhello\r\n0\r\n\r\n"), HalfClose, OK),
        case("chunk size above 2^64", post("Transfer-Encoding: chunked\r\n", b"1ffffffffffffffff\r\nhello\r\n0\r\n\r\n"), HalfClose, OK),
        case("2^64-1 chunk, then silence", post("Transfer-Encoding: chunked\r\n", b"ffffffffffffffff\r\nhello"), KeepOpen, OK),
        // A trailer section (RFC 9112 7.1.2), which tiny_http's decoder cannot read: hellod
        // takes its fields out, and the request pipelined behind is answered too.
        case("trailer, then a GET", [post("Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\nX-Other: a b\r\n\r\n"), get("").into()].concat(), HalfClose, Answers(&[200, 200])),
        case("trailer with a bare LF", [post("Transfer-Encoding: chunked\r\n", b"0\r\nX-Trailer: 1\n\r\n"), get("").into()].concat(), HalfClose, OK),
        case("chunk extension off the grammar, then a GET", [post("Transfer-Encoding: chunked\r\n", b"5;a b\r\nhello\r\n0\r\n\r\n"), get("").into()].concat(), HalfClose, OK),
        case("1 MB chunk extension", post("Transfer-Encoding: chunked\r\n", format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(1 << 20)).as_bytes()), HalfClose, OK),
        // Bodies where none is expected.
        case("GET with a small body", get("Content-Length: 5\r\n") + "hello", HalfClose, OK),
        case("GET with a 2 KB body", get("Content-Length: 2000\r\n") + &"x".repeat(2000), HalfClose, OK),
        case("GET with a chunked body", get("Transfer-Encoding: chunked\r\n") + "5\r\nhello\r\n0\r\n\r\n", HalfClose, OK),
        // Expect and Upgrade.
        case("Expect: 100-continue", post("Expect: 100-continue\r\nContent-Length: 5\r\n", b"hello"), HalfClose, Answers(&[100, 200])),
        case("Expect: something else", post("Expect: fish\r\n", b""), HalfClose, Answers(&[417])),
        case("Expect: something else, with codings before chunked", post("Expect: fish\r\nTransfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), HalfClose, UNSUPPORTED),
        case("Upgrade: h2c", get("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"), KeepOpen, OK),
        case("Upgrade: websocket", get("Connection: Upgrade\r\nUpgrade: websocket\r\n"), KeepOpen, OK),
        // Clients that leave early, and half-closed sockets.
        case("hang up mid request line", "GET / HT", HangUp, Nothing),
        case("hang up mid headers", "GET / HTTP/1.1\r\nHost: t\r\nX-", HangUp, Nothing),
        case("hang up mid body", post("Content-Length: 5000\r\n", &[b'x'; 100]), HangUp, Nothing),
        case("reset after a whole request", get(""), Reset, Nothing),
        case("reset mid body", post("Content-Length: 5000\r\n", &[b'x'; 2000]), Reset, Nothing),
        case("hang up mid response: 2000 pipelined, none read", pipeline_then_leave, HangUp, Nothing),
        case("half-closed mid headers", "GET / HTTP/1.1\r\nHo", HalfClose, ClosedSilently),
        case("half-closed after a request", get(""), HalfClose, OK),
        case("half-closed after a pipeline of 3", get("").repeat(3), HalfClose, Answers(&[200, 200, 200])),
        case("a request, then garbage", get("") + "garbage\r\n\r\n", HalfClose, Answers(&[200, 400])),
        case("a request, then silence", get(""), KeepOpen, OK),
    ]
}
