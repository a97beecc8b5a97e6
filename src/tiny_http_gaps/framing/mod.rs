//! What tiny_http reads from a connection, checked byte by byte before it sees it: request heads
//! within a size budget, request lines it can answer, and framing that cannot be read two ways.
//!
//! tiny_http has no limit on a head's size or number of headers (upstream #56), deadlocks a
//! connection thread on an `HTTP/2.0` or `HTTP/3.0` request line, takes any number of `Host`s,
//! none included, lets the first of several `Content-Length`s win, ignores one it cannot parse,
//! reads any `Transfer-Encoding` as chunked (upstream #287), and cannot read a chunked body's
//! trailer section: behind a proxy that reads them differently, a request smuggled in a body.
//! [`Framing`] follows the byte stream as tiny_http will read it (heads, then bodies by
//! `Content-Length` or chunked), so it knows where each head starts, and stops the stream before
//! a head that tiny_http must not see: the connection then ends, with hellod's own answer. The
//! rules, by RFC 9112 where it has one:
//!
//! - a head within `max_head` bytes and `max_headers` field lines (431);
//! - `HTTP/1.0` or `HTTP/1.1` (505 for another `HTTP/x.y`, 400 for anything else);
//! - one `Host`, its value RFC 3986's `uri-host [":" port]` (an empty one too), which HTTP/1.0
//!   may leave out (400; RFC 9112 3.2);
//! - `Transfer-Encoding` only as the one coding `chunked`, over any number of field lines, in any
//!   case: 400 where chunked is not the last coding, 501 for codings before it or chunked twice
//!   (6.1, 6.3); 400 in HTTP/1.0; beside a `Content-Length`, the request is read as chunked and
//!   the connection closed after its answer (6.3);
//! - otherwise `Content-Length` as digits, one value however many lines (400), within
//!   `max_body` (413);
//! - chunk sizes within `max_body` in all, chunk extensions by 7.1.1's grammar, a trailer
//!   section held to a head's limits and grammar and taken out of what tiny_http reads (see
//!   `body`); a broken body stops the stream with no answer of hellod's (tiny_http answers the
//!   request);
//! - no request read after one tiny_http takes as the last (by its reading of `Connection`), or
//!   hands to the handler with the rest of the stream (`Connection: upgrade`, an unknown
//!   `Expect`).
//!
//! It is stricter than RFC 9112 requires a server to be, never more lenient than tiny_http:
//! bare LF line ends, obsolete line folding, empty lines before a request line, bytes above 0x7e
//! in a head, a list of equal Content-Lengths, and whitespace in chunk lines are refused. The
//! differential test (`differential`) holds it to a reading of RFC 9112 of its own, and names
//! each of these exemptions.
//!
//! `head` follows request heads, `fields` checks the values that decide their framing, `body`
//! follows the bodies after them.

mod body;
#[cfg(test)]
mod differential;
mod fields;
#[cfg(test)]
mod generate;
mod head;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use body::Chunked;
use head::{Head, Tracked};

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

/// What to do with a chunk of bytes just read from the connection, which [`Framing::scan`] may
/// have rewritten: trailer fields taken out, what follows moved up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Hand tiny_http the first `len` bytes: all of them, but for trailer fields.
    Pass(usize),
    /// Hand tiny_http the first `keep` bytes, then the end of the stream; answer with `status`
    /// (where there is one) once tiny_http has answered what came before.
    Stop { keep: usize, status: Option<u16> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between requests: the next byte starts a request line.
    Idle,
    /// From the first byte of a request head to its blank line.
    Head(Head),
    /// The bytes still to come of a body framed by `Content-Length`.
    Body(u64),
    Chunked(Chunked),
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
    /// Host field lines in this head, and whether any had an invalid value.
    hosts: usize,
    bad_host: bool,
    content_length: Option<Result<u128, u16>>,
    transfer_codings: Option<Vec<u8>>,
    connection: Option<Vec<u8>>,
    expect: Option<Vec<u8>>,
    chunk_size: u64,
    /// Bytes of the chunk-size line so far: its digits, then its extensions.
    chunk_line: usize,
    body_total: u64,
    /// After this request's body, stop (a request framed by both `Transfer-Encoding` and
    /// `Content-Length`).
    stop_after_body: bool,
    /// The head sizes of the requests handed to tiny_http and not yet answered, oldest first.
    unanswered: VecDeque<usize>,
    unanswered_bytes: usize,
}

/// Longest chunk-size line (size, extensions, not the line end): tiny_http's chunked decoder
/// buffers the line whole, without a bound, so an endless run of zeros or of extensions would
/// grow it for as long as the client sends. Past it the stream stops.
pub const MAX_CHUNK_LINE: usize = 1024;

/// What a request costs tiny_http besides its head's bytes (the `Request`, its header vector,
/// its channels), about.
const REQUEST_OVERHEAD: usize = 512;

/// `tchar` (RFC 9110 5.6.2).
pub(super) fn is_token_byte(byte: u8) -> bool {
    matches!(byte, b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~')
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
            hosts: 0,
            bad_host: false,
            content_length: None,
            transfer_codings: None,
            connection: None,
            expect: None,
            chunk_size: 0,
            chunk_line: 0,
            body_total: 0,
            stop_after_body: false,
            unanswered: VecDeque::new(),
            unanswered_bytes: 0,
        }
    }

    /// True from the first byte of a request head until its blank line.
    pub fn in_head(&self) -> bool {
        matches!(self.state, State::Head(_))
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

    /// Follows `bytes`, the next ones read from the connection, and moves what tiny_http is to
    /// read of them to their front.
    pub fn scan(&mut self, bytes: &mut [u8]) -> Scan {
        let (mut at, mut kept) = (0, 0);
        while at < bytes.len() {
            if let State::Head(part) = self.state {
                let run = self.take_run(part, &bytes[at..]);
                if run > 0 {
                    if kept != at {
                        bytes.copy_within(at..at + run, kept);
                    }
                    (at, kept) = (at + run, kept + run);
                    continue;
                }
            }
            let remaining = match self.state {
                State::Unframed => {
                    bytes.copy_within(at.., kept);
                    return Scan::Pass(kept + bytes.len() - at);
                }
                State::Stopped => {
                    return Scan::Stop {
                        keep: kept,
                        status: None,
                    };
                }
                State::Body(remaining) | State::Chunked(Chunked::Data(remaining)) => remaining,
                State::Idle | State::Head(_) | State::Chunked(_) => {
                    let dropped = self.in_trailer_field();
                    if let Err(status) = self.step(bytes[at]) {
                        self.state = State::Stopped;
                        return Scan::Stop { keep: kept, status };
                    }
                    if !dropped && !self.in_trailer_field() {
                        bytes[kept] = bytes[at];
                        kept += 1;
                    }
                    at += 1;
                    continue;
                }
            };
            // The bulk of a body, taken at once.
            let taken = remaining.min((bytes.len() - at) as u64);
            if kept != at {
                bytes.copy_within(at..at + taken as usize, kept);
            }
            at += taken as usize;
            kept += taken as usize;
            self.state = match (self.state, remaining - taken) {
                (State::Body(_), 0) => self.after_body(),
                (State::Body(_), left) => State::Body(left),
                (_, 0) => State::Chunked(Chunked::DataCr),
                (_, left) => State::Chunked(Chunked::Data(left)),
            };
        }
        Scan::Pass(kept)
    }

    /// One byte outside the bulk of a body. An error stops the stream, with the answer to give.
    fn step(&mut self, byte: u8) -> Result<(), Option<u16>> {
        match self.state {
            State::Idle => {
                self.start_head();
                self.step_head(Head::Method, byte)
            }
            State::Head(part) => self.step_head(part, byte),
            State::Chunked(part) => self.step_chunked(part, byte),
            State::Body(_) | State::Unframed | State::Stopped => Ok(()),
        }
    }

    fn after_body(&mut self) -> State {
        if self.stop_after_body {
            State::Stopped
        } else {
            State::Idle
        }
    }
}
