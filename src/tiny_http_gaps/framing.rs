//! What tiny_http reads from a connection, checked byte by byte before it sees it: request heads
//! within a size budget, request lines it can answer, and framing that cannot be read two ways.
//!
//! tiny_http has no limit on a head's size or number of headers (upstream #56), deadlocks a
//! connection thread on an `HTTP/2.0` or `HTTP/3.0` request line, lets the first of several
//! `Content-Length`s win, ignores one it cannot parse and reads any `Transfer-Encoding` as
//! chunked (upstream #287): behind a proxy that reads them differently, a request smuggled in a
//! body. [`Framing`] follows the byte stream as tiny_http will read it (heads, then bodies by
//! `Content-Length` or chunked), so it knows where each head starts, and stops the stream before
//! a head that tiny_http must not see: the connection then ends, with hellod's own answer.
//! It is stricter than RFC 9112 allows a server to be (bare LF, obsolete line folding and bytes
//! above 0x7e in heads are refused), never more lenient than tiny_http.

use std::collections::VecDeque;

/// The bounds [`Framing`] holds a connection to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in a request head: request line, headers and the blank line.
    pub max_head: usize,
    /// Header lines in a head.
    pub max_headers: usize,
    /// Bytes of a request body, declared (`Content-Length`) or sent chunked.
    pub max_body: u64,
}

/// What to do with a chunk of bytes just read from the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Hand all of it to tiny_http.
    Pass,
    /// Hand tiny_http the first `keep` bytes, then the end of the stream; answer with `status`
    /// (where there is one) once tiny_http has answered what came before.
    Stop { keep: usize, status: Option<u16> },
}

/// The headers whose values [`Framing`] needs, as tiny_http reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tracked {
    ContentLength,
    TransferEncoding,
    Connection,
    Expect,
}

impl Tracked {
    fn of(name: &[u8]) -> Option<Tracked> {
        [
            (&b"content-length"[..], Tracked::ContentLength),
            (b"transfer-encoding", Tracked::TransferEncoding),
            (b"connection", Tracked::Connection),
            (b"expect", Tracked::Expect),
        ]
        .into_iter()
        .find(|(known, _)| name.eq_ignore_ascii_case(known))
        .map(|(_, tracked)| tracked)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between requests: the next byte starts a request line.
    Idle,
    Method,
    Target,
    Version,
    RequestLineEnd,
    /// At the start of a header line, or of the blank line that ends the head.
    HeaderStart,
    HeaderName,
    HeaderValue,
    HeaderLineEnd,
    HeadEnd,
    Body(u64),
    ChunkSize,
    ChunkExtension,
    ChunkSizeEnd,
    ChunkData(u64),
    ChunkDataCr,
    ChunkDataLf,
    LastChunkCr,
    LastChunkLf,
    /// tiny_http reads no further request on this connection: the rest is not framed.
    Unframed,
    /// Stopped: nothing more goes to tiny_http.
    Stopped,
}

/// One connection's stream, as far as it has been read.
#[derive(Debug)]
pub struct Framing {
    limits: Limits,
    state: State,
    head_len: usize,
    headers: usize,
    /// The request line as far as it is kept for the access log.
    request_line: Vec<u8>,
    /// Bytes of the request line's current part (method, target, version).
    part_len: usize,
    version: [u8; 8],
    name: Vec<u8>,
    tracked: Option<Tracked>,
    value: Vec<u8>,
    content_length: Option<Result<u64, u16>>,
    transfer_codings: Option<Vec<u8>>,
    connection: Option<Vec<u8>>,
    expect: Option<Vec<u8>>,
    chunk_size: u64,
    chunk_digits: usize,
    body_total: u64,
    /// After this request's body, stop (a request framed by both `Transfer-Encoding` and
    /// `Content-Length`).
    stop_after_body: bool,
    /// The head sizes of the requests handed to tiny_http and not yet answered, oldest first.
    unanswered: VecDeque<usize>,
    unanswered_bytes: usize,
}

/// What a request costs tiny_http besides its head's bytes (the `Request`, its header vector,
/// its channels), about.
const REQUEST_OVERHEAD: usize = 512;

/// Request lines longer than this are cut short in the access log.
const LOGGED_REQUEST_LINE: usize = 256;

pub(super) fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn is_visible(byte: u8) -> bool {
    (0x21..=0x7e).contains(&byte)
}

fn trim_whitespace(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b" \t".contains(b));
    let end = bytes.iter().rposition(|b| !b" \t".contains(b));
    match (start, end) {
        (Some(start), Some(end)) => &bytes[start..=end],
        _ => &[],
    }
}

fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

impl Framing {
    pub fn new(limits: Limits) -> Framing {
        Framing {
            limits,
            state: State::Idle,
            head_len: 0,
            headers: 0,
            request_line: Vec::new(),
            part_len: 0,
            version: [0; 8],
            name: Vec::new(),
            tracked: None,
            value: Vec::new(),
            content_length: None,
            transfer_codings: None,
            connection: None,
            expect: None,
            chunk_size: 0,
            chunk_digits: 0,
            body_total: 0,
            stop_after_body: false,
            unanswered: VecDeque::new(),
            unanswered_bytes: 0,
        }
    }

    /// True from the first byte of a request head until its blank line.
    pub fn in_head(&self) -> bool {
        !matches!(
            self.state,
            State::Idle
                | State::Body(_)
                | State::ChunkSize
                | State::ChunkExtension
                | State::ChunkSizeEnd
                | State::ChunkData(_)
                | State::ChunkDataCr
                | State::ChunkDataLf
                | State::LastChunkCr
                | State::LastChunkLf
                | State::Unframed
                | State::Stopped
        )
    }

    /// True at a request boundary: every byte so far belongs to a whole request, and the next
    /// starts a request line (false once the stream is stopped or no longer framed).
    pub fn between_requests(&self) -> bool {
        self.state == State::Idle
    }

    /// What tiny_http holds of this connection's heads, in bytes: the one under way, and each
    /// request it has read and not yet seen answered (its head and its `Request`).
    pub fn held_bytes(&self) -> usize {
        let unfinished = if self.in_head() { self.head_len } else { 0 };
        unfinished + self.unanswered_bytes + REQUEST_OVERHEAD * self.unanswered.len()
    }

    /// Requests read and handed to tiny_http, not yet answered.
    pub fn requests_ahead(&self) -> usize {
        self.unanswered.len()
    }

    /// The oldest request handed to tiny_http has been answered (answers go in order).
    pub fn answered(&mut self) {
        if let Some(head) = self.unanswered.pop_front() {
            self.unanswered_bytes -= head;
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.state == State::Stopped
    }

    /// The start of the current (or last) request line, for the access log.
    pub fn request_line(&self) -> &[u8] {
        &self.request_line
    }

    /// Stops the stream from outside (the head's deadline passed): the answer is `status`.
    pub fn stop(&mut self) {
        self.state = State::Stopped;
    }

    /// Follows `bytes`, the next ones read from the connection.
    pub fn scan(&mut self, bytes: &[u8]) -> Scan {
        let mut at = 0;
        while at < bytes.len() {
            match self.state {
                State::Unframed => return Scan::Pass,
                State::Stopped => {
                    return Scan::Stop {
                        keep: at,
                        status: None,
                    };
                }
                State::Body(remaining) => {
                    let taken = remaining.min((bytes.len() - at) as u64);
                    at += taken as usize;
                    self.state = if taken == remaining {
                        self.after_body()
                    } else {
                        State::Body(remaining - taken)
                    };
                    continue;
                }
                State::ChunkData(remaining) => {
                    let taken = remaining.min((bytes.len() - at) as u64);
                    at += taken as usize;
                    self.state = if taken == remaining {
                        State::ChunkDataCr
                    } else {
                        State::ChunkData(remaining - taken)
                    };
                    continue;
                }
                _ => {}
            }
            if let Err(status) = self.step(bytes[at]) {
                self.state = State::Stopped;
                return Scan::Stop { keep: at, status };
            }
            at += 1;
        }
        Scan::Pass
    }

    /// One byte outside the bulk of a body. An error stops the stream, with the answer to give.
    fn step(&mut self, byte: u8) -> Result<(), Option<u16>> {
        if self.state == State::Idle {
            self.start_head();
            self.state = State::Method;
        }
        if self.in_head() {
            self.head_len += 1;
            if self.head_len > self.limits.max_head {
                return Err(Some(431));
            }
        }
        let bad = Err(Some(400));
        match self.state {
            State::Method | State::Target | State::Version => return self.step_request_line(byte),
            State::RequestLineEnd => {
                if byte != b'\n' {
                    return bad;
                }
                self.state = State::HeaderStart;
            }
            State::HeaderStart => match byte {
                b'\r' => self.state = State::HeadEnd,
                byte if is_token_byte(byte) => {
                    self.headers += 1;
                    if self.headers > self.limits.max_headers {
                        return Err(Some(431));
                    }
                    self.name.clear();
                    self.name.push(byte);
                    self.state = State::HeaderName;
                }
                // Obsolete line folding (RFC 9112 5.2), a name that is not a token.
                _ => return bad,
            },
            State::HeaderName => match byte {
                b':' => {
                    self.tracked = Tracked::of(&self.name);
                    self.value.clear();
                    self.state = State::HeaderValue;
                }
                byte if is_token_byte(byte) => {
                    // Long names need not be kept: none of the tracked ones is.
                    if self.name.len() < 32 {
                        self.name.push(byte);
                    } else {
                        self.name.clear();
                        self.name.extend_from_slice(b"-long-");
                    }
                }
                // Whitespace before the colon (RFC 9112 5.1), or any other byte.
                _ => return bad,
            },
            State::HeaderValue => match byte {
                b'\r' => {
                    self.state = State::HeaderLineEnd;
                }
                b' ' | b'\t' => self.keep_value_byte(byte),
                byte if is_visible(byte) => self.keep_value_byte(byte),
                _ => return bad,
            },
            State::HeaderLineEnd => {
                if byte != b'\n' {
                    return bad;
                }
                self.end_header();
                self.state = State::HeaderStart;
            }
            State::HeadEnd => {
                if byte != b'\n' {
                    return bad;
                }
                self.state = self.end_head()?;
            }
            State::ChunkSize => match byte {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    self.chunk_digits += 1;
                    let digit = (byte as char).to_digit(16).unwrap_or(0) as u64;
                    self.chunk_size = self.chunk_size.saturating_mul(16).saturating_add(digit);
                    if self.body_total.saturating_add(self.chunk_size) > self.limits.max_body {
                        return Err(None);
                    }
                }
                b';' if self.chunk_digits > 0 => self.state = State::ChunkExtension,
                b'\r' if self.chunk_digits > 0 => self.state = State::ChunkSizeEnd,
                _ => return Err(None),
            },
            State::ChunkExtension => match byte {
                b'\r' => self.state = State::ChunkSizeEnd,
                b'\t' => {}
                byte if byte == b' ' || is_visible(byte) => {}
                _ => return Err(None),
            },
            State::ChunkSizeEnd => {
                if byte != b'\n' {
                    return Err(None);
                }
                self.body_total += self.chunk_size;
                self.state = if self.chunk_size == 0 {
                    // tiny_http's decoder takes no trailer fields: the blank line must follow.
                    State::LastChunkCr
                } else {
                    State::ChunkData(self.chunk_size)
                };
                self.chunk_size = 0;
                self.chunk_digits = 0;
            }
            State::ChunkDataCr | State::LastChunkCr => {
                if byte != b'\r' {
                    return Err(None);
                }
                self.state = if self.state == State::ChunkDataCr {
                    State::ChunkDataLf
                } else {
                    State::LastChunkLf
                };
            }
            State::ChunkDataLf => {
                if byte != b'\n' {
                    return Err(None);
                }
                self.state = State::ChunkSize;
            }
            State::LastChunkLf => {
                if byte != b'\n' {
                    return Err(None);
                }
                self.state = self.after_body();
            }
            State::Idle
            | State::Body(_)
            | State::ChunkData(_)
            | State::Unframed
            | State::Stopped => {}
        }
        Ok(())
    }

    /// `METHOD SP TARGET SP HTTP/1.x CR`: one space each, as tiny_http splits it.
    fn step_request_line(&mut self, byte: u8) -> Result<(), Option<u16>> {
        if self.request_line.len() < LOGGED_REQUEST_LINE && byte != b'\r' {
            self.request_line.push(byte);
        }
        let bad = Err(Some(400));
        match (self.state, byte) {
            (State::Method, b' ') if self.part_len > 0 => self.next_part(State::Target),
            (State::Method, byte) if is_token_byte(byte) => self.part_len += 1,
            (State::Target, b' ') if self.part_len > 0 => self.next_part(State::Version),
            (State::Target, byte) if is_visible(byte) => self.part_len += 1,
            (State::Version, b'\r') => {
                self.state = State::RequestLineEnd;
                return match &self.version[..self.part_len] {
                    b"HTTP/1.1" | b"HTTP/1.0" => Ok(()),
                    [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                        if major.is_ascii_digit() && minor.is_ascii_digit() =>
                    {
                        Err(Some(505))
                    }
                    _ => bad,
                };
            }
            (State::Version, byte) if is_visible(byte) && self.part_len < self.version.len() => {
                self.version[self.part_len] = byte;
                self.part_len += 1;
            }
            _ => return bad,
        }
        Ok(())
    }

    fn next_part(&mut self, state: State) {
        self.state = state;
        self.part_len = 0;
    }

    fn start_head(&mut self) {
        self.head_len = 0;
        self.headers = 0;
        self.request_line.clear();
        self.part_len = 0;
        self.content_length = None;
        self.transfer_codings = None;
        self.connection = None;
        self.expect = None;
    }

    fn keep_value_byte(&mut self, byte: u8) {
        if self.tracked.is_some() {
            self.value.push(byte);
        }
    }

    fn end_header(&mut self) {
        let Some(tracked) = self.tracked.take() else {
            return;
        };
        let value = trim_whitespace(&self.value);
        match tracked {
            Tracked::ContentLength => {
                let parsed = if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                    Err(400)
                } else {
                    // Past u64, or past the limit: too large either way.
                    value
                        .iter()
                        .try_fold(0u64, |n, d| {
                            n.checked_mul(10)?.checked_add((d - b'0') as u64)
                        })
                        .ok_or(413)
                };
                self.content_length = Some(match (self.content_length, parsed) {
                    (None, parsed) => parsed,
                    (Some(Ok(first)), Ok(again)) if first == again => Ok(first),
                    (Some(Err(413)), Err(413)) => Err(413),
                    _ => Err(400),
                });
            }
            Tracked::TransferEncoding => {
                let codings = self.transfer_codings.get_or_insert_with(Vec::new);
                codings.push(b',');
                codings.extend_from_slice(value);
            }
            // tiny_http reads only the first of these.
            Tracked::Connection => {
                self.connection.get_or_insert_with(|| value.to_vec());
            }
            Tracked::Expect => {
                self.expect.get_or_insert_with(|| value.to_vec());
            }
        }
    }

    /// The blank line: where the body starts, by the same rules as tiny_http, or why not.
    fn end_head(&mut self) -> Result<State, Option<u16>> {
        let http_1_0 = self.version == *b"HTTP/1.0";
        let connection = self.connection.as_deref().unwrap_or_default();
        let upgrade = contains_ignoring_case(connection, b"upgrade");
        let last_request = contains_ignoring_case(connection, b"close")
            || upgrade
            || (http_1_0 && !contains_ignoring_case(connection, b"keep-alive"));
        // tiny_http answers 417 to any other expectation and reads no further.
        let expectation_failed = self
            .expect
            .as_deref()
            .is_some_and(|expect| !expect.eq_ignore_ascii_case(b"100-continue"));
        if expectation_failed {
            return Ok(State::Unframed);
        }
        self.unanswered.push_back(self.head_len);
        self.unanswered_bytes += self.head_len;
        if upgrade {
            // With `Connection: upgrade` tiny_http hands the rest of the stream to the handler.
            return Ok(State::Unframed);
        }
        self.stop_after_body = false;
        let body = if let Some(codings) = &self.transfer_codings {
            // RFC 9112 6.1: chunked is the final coding, applied once; HTTP/1.0 has none.
            let codings: Vec<&[u8]> = codings
                .split(|&b| b == b',')
                .map(trim_whitespace)
                .filter(|c| !c.is_empty())
                .collect();
            let chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
            let chunked_last = codings.last().is_some_and(|c| chunked(c));
            let chunked_once = codings.iter().filter(|c| chunked(c)).count() == 1;
            if http_1_0 || !chunked_last || !chunked_once {
                return Err(Some(400));
            }
            // RFC 9112 6.3: answer, then close, since a proxy in front may have framed it by
            // the Content-Length.
            self.stop_after_body = self.content_length.is_some();
            self.chunk_size = 0;
            self.chunk_digits = 0;
            self.body_total = 0;
            State::ChunkSize
        } else {
            match self.content_length {
                Some(Ok(length)) if length > self.limits.max_body => return Err(Some(413)),
                Some(Ok(length)) if length > 0 => State::Body(length),
                Some(Err(status)) => return Err(Some(status)),
                Some(Ok(_)) | None => State::Idle,
            }
        };
        self.stop_after_body |= last_request;
        Ok(match body {
            State::Idle => self.after_body(),
            body => body,
        })
    }

    fn after_body(&mut self) -> State {
        if self.stop_after_body {
            State::Stopped
        } else {
            State::Idle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_head: 200,
        max_headers: 5,
        max_body: 1000,
    };

    fn scan(bytes: &[u8]) -> Scan {
        Framing::new(LIMITS).scan(bytes)
    }

    /// Scans `bytes` a byte at a time: the verdict must not depend on how reads split them.
    fn scan_bytewise(bytes: &[u8]) -> Scan {
        let mut framing = Framing::new(LIMITS);
        for (at, byte) in bytes.iter().enumerate() {
            match framing.scan(std::slice::from_ref(byte)) {
                Scan::Pass => {}
                Scan::Stop { keep, status } => {
                    return Scan::Stop {
                        keep: at + keep,
                        status,
                    };
                }
            }
        }
        Scan::Pass
    }

    fn stop(bytes: &[u8], status: Option<u16>) -> Scan {
        let verdict = scan(bytes);
        assert_eq!(verdict, scan_bytewise(bytes), "split reads of {bytes:?}");
        match verdict {
            Scan::Stop { status: s, .. } => {
                assert_eq!(s, status, "{}", String::from_utf8_lossy(bytes))
            }
            Scan::Pass => panic!("passed: {}", String::from_utf8_lossy(bytes)),
        }
        verdict
    }

    fn pass(bytes: &[u8]) {
        assert_eq!(
            scan(bytes),
            Scan::Pass,
            "{}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(scan_bytewise(bytes), Scan::Pass);
    }

    #[test]
    fn ordinary_requests_pass() {
        pass(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        pass(b"GET /x?y=1 HTTP/1.0\r\n\r\n");
        pass(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n");
        pass(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n");
        pass(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n");
        pass(b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n");
        pass(b"GET / HTTP/1.1\r\nX:\r\nY:  spaced\tvalue \r\n\r\n");
    }

    #[test]
    fn versions_other_than_1_0_and_1_1_get_505_before_the_line_ends() {
        let line = b"GET / HTTP/2.0\r\n\r\n";
        assert_eq!(
            stop(line, Some(505)),
            Scan::Stop {
                keep: 14,
                status: Some(505)
            }
        );
        stop(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Some(505));
        stop(b"GET / HTTP/3.0\r\n", Some(505));
        stop(b"GET / HTTP/0.9\r\n", Some(505));
        stop(b"GET / HTTPS/1.1\r\n", Some(400));
        stop(b"GET /\r\n", Some(400));
        stop(b"GET  / HTTP/1.1\r\n", Some(400));
        stop(b"GET / HTTP/1.1 x\r\n", Some(400));
        stop(b"\r\nGET / HTTP/1.1\r\n", Some(400));
    }

    #[test]
    fn heads_past_the_budget_get_431_at_once() {
        let mut long = b"GET /".to_vec();
        long.extend(std::iter::repeat_n(b'a', 1000));
        assert_eq!(
            stop(&long, Some(431)),
            Scan::Stop {
                keep: 200,
                status: Some(431)
            }
        );
        let many: String = (0..6).map(|i| format!("H{i}: v\r\n")).collect();
        stop(
            format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(),
            Some(431),
        );
    }

    #[test]
    fn a_head_of_exactly_the_budget_passes_and_so_does_the_next() {
        let mut head = b"GET /".to_vec();
        let end = b" HTTP/1.1\r\nHost: a\r\n\r\n";
        head.resize(LIMITS.max_head - end.len(), b'a');
        head.extend_from_slice(end);
        head.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        pass(&head);
    }

    #[test]
    fn malformed_lines_get_400() {
        stop(b"GET / HTTP/1.1\nHost: a\r\n\r\n", Some(400));
        stop(b"GET / HTTP/1.1\r\nHost: a\n\r\n", Some(400));
        stop(b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", Some(400));
        stop(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", Some(400));
        stop(b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", Some(400));
        stop(b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", Some(400));
        stop(b"GET / HTTP/1.1\r\nA: \xc3\xa9\r\n\r\n", Some(400));
        stop(b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n", Some(400));
        stop(b"G\x00T / HTTP/1.1\r\n\r\n", Some(400));
    }

    #[test]
    fn ambiguous_framing_gets_400() {
        for length in ["-1", "+5", "0x5", "five", "5 5", "5, 5", "", "5.0"] {
            stop(
                format!("POST / HTTP/1.1\r\nContent-Length: {length}\r\n\r\n").as_bytes(),
                Some(400),
            );
        }
        stop(
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            Some(400),
        );
        for coding in ["gzip", "chunked, gzip", "chunked, chunked", "identity", ""] {
            stop(
                format!("POST / HTTP/1.1\r\nTransfer-Encoding: {coding}\r\n\r\n").as_bytes(),
                Some(400),
            );
        }
        stop(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            Some(400),
        );
        stop(
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            Some(400),
        );
    }

    #[test]
    fn bodies_past_the_limit_get_413() {
        stop(
            b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n",
            Some(413),
        );
        stop(
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            Some(413),
        );
        stop(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n",
            None,
        );
        pass(b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
    }

    #[test]
    fn what_follows_a_body_is_the_next_head() {
        // The smuggled request hides in a body tiny_http reads as chunked.
        let smuggled =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /s HTTP/2.0\r\n";
        stop(smuggled, Some(505));
        let bad_chunk = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n";
        stop(bad_chunk, None);
        stop(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nTrailer: x\r\n\r\n",
            None,
        );
    }

    #[test]
    fn both_framings_end_the_connection_after_the_body() {
        let request =
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let mut bytes = request.to_vec();
        bytes.extend_from_slice(b"GET /smuggled HTTP/1.1\r\n\r\n");
        assert_eq!(
            stop(&bytes, None),
            Scan::Stop {
                keep: request.len(),
                status: None
            }
        );
    }

    #[test]
    fn last_requests_end_the_framing() {
        stop(
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            None,
        );
        stop(b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\n\r\n", None);
        pass(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        // tiny_http hands the rest of an upgrade to the handler, and answers a 417 and stops.
        pass(b"GET / HTTP/1.1\r\nConnection: Upgrade\r\n\r\n\x00\x01anything");
        pass(b"GET / HTTP/1.1\r\nExpect: teapot\r\n\r\n\x00\x01anything");
    }

    #[test]
    fn the_head_is_tracked_for_the_deadline_and_the_log() {
        let mut framing = Framing::new(LIMITS);
        assert!(!framing.in_head());
        assert_eq!(framing.scan(b"GET /a"), Scan::Pass);
        assert!(framing.in_head());
        assert_eq!(framing.scan(b" HTTP/1.1\r\n\r\n"), Scan::Pass);
        assert!(!framing.in_head());
        assert_eq!(framing.request_line(), b"GET /a HTTP/1.1");
    }
}
