//! Request heads: the request line as tiny_http splits it, header lines, and, at the blank line,
//! where the body starts and whether tiny_http reads on after it.

use super::{Chunked, Framing, State, fields, is_token_byte, is_visible, trim_whitespace};

/// Where in a head the next byte goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Head {
    Method,
    Target,
    Version,
    RequestLineEnd,
    Field(Field),
    /// The blank line's LF.
    End,
}

/// Where in a field line, of a head or of a chunked body's trailer section, the next byte goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    /// At the start of a field line, or of the blank line that ends the section.
    Start,
    Name,
    Value,
    LineEnd,
}

impl Field {
    /// `field-name ":" OWS field-value OWS CRLF` (RFC 9112 5), byte by byte: the part `byte`
    /// leads to, None for the CR of the blank line, or Err for a byte the line may not have:
    /// whitespace at its start (obsolete line folding, RFC 9112 5.2) or before the colon (5.1),
    /// a name that is not a token, a control byte or one above 0x7e in the value, a bare CR.
    pub(super) fn next(self, byte: u8) -> Result<Option<Field>, ()> {
        match (self, byte) {
            (Field::Start, b'\r') => Ok(None),
            (Field::Start | Field::Name, byte) if is_token_byte(byte) => Ok(Some(Field::Name)),
            (Field::Name, b':') => Ok(Some(Field::Value)),
            (Field::Value, b'\r') => Ok(Some(Field::LineEnd)),
            (Field::Value, byte) if byte == b' ' || byte == b'\t' || is_visible(byte) => {
                Ok(Some(Field::Value))
            }
            (Field::LineEnd, b'\n') => Ok(Some(Field::Start)),
            _ => Err(()),
        }
    }
}

/// The headers whose values [`Framing`] needs, as tiny_http reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tracked {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    Expect,
}

impl Tracked {
    fn of(name: &[u8]) -> Option<Tracked> {
        [
            (&b"host"[..], Tracked::Host),
            (b"content-length", Tracked::ContentLength),
            (b"transfer-encoding", Tracked::TransferEncoding),
            (b"connection", Tracked::Connection),
            (b"expect", Tracked::Expect),
        ]
        .into_iter()
        .find(|(known, _)| name.eq_ignore_ascii_case(known))
        .map(|(_, tracked)| tracked)
    }
}

/// Request lines longer than this are cut short in the access log.
const LOGGED_REQUEST_LINE: usize = 256;

/// Field names longer than this are kept as [`LONG_NAME`]: none of the tracked ones is.
const MAX_KEPT_NAME: usize = 32;
const LONG_NAME: &[u8] = b"-long-";

/// The request line's version, a `0` standing for any digit.
const VERSION: &[u8; 8] = b"HTTP/0.0";

fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

/// How many of `bytes` lead with `class`.
fn leading(bytes: &[u8], class: impl Fn(u8) -> bool) -> usize {
    bytes.iter().position(|&b| !class(b)).unwrap_or(bytes.len())
}

fn is_value_byte(byte: u8) -> bool {
    byte == b' ' || byte == b'\t' || is_visible(byte)
}

impl Framing {
    /// The run of bytes at the start of `bytes` that [`Framing::step_head`] would take one by
    /// one without leaving `part` (a method, a target, a field name or value), taken at once:
    /// how many. Most of a head is such runs, and a byte at a time they cost tiny_http's own
    /// parsing of the request over again.
    pub(super) fn take_run(&mut self, part: Head, bytes: &[u8]) -> usize {
        let bytes = &bytes[..bytes.len().min(self.limits.max_head - self.head_len)];
        let run = match part {
            Head::Method | Head::Field(Field::Name) => leading(bytes, is_token_byte),
            Head::Target => leading(bytes, is_visible),
            Head::Field(Field::Value) => leading(bytes, is_value_byte),
            // `HTTP/` DIGIT `.` DIGIT, refused at the first byte that cannot be part of it.
            Head::Version => (bytes.iter())
                .zip(VERSION.get(self.part_len..).unwrap_or_default())
                .take_while(|&(&byte, &expected)| match expected {
                    b'0' => byte.is_ascii_digit(),
                    expected => byte == expected,
                })
                .count(),
            _ => 0,
        };
        let run_bytes = &bytes[..run];
        match part {
            Head::Method | Head::Target | Head::Version => {
                let logged = run.min(LOGGED_REQUEST_LINE.saturating_sub(self.request_line.len()));
                self.request_line.extend_from_slice(&run_bytes[..logged]);
                if part == Head::Version {
                    self.version[self.part_len..self.part_len + run].copy_from_slice(run_bytes);
                }
                self.part_len += run;
            }
            // Long names need not be kept: none of the tracked ones is.
            Head::Field(Field::Name) if self.name.len() + run <= MAX_KEPT_NAME => {
                self.name.extend_from_slice(run_bytes);
            }
            Head::Field(Field::Name) => {
                self.name.clear();
                self.name.extend_from_slice(LONG_NAME);
            }
            Head::Field(Field::Value) if self.tracked.is_some() => {
                self.value.extend_from_slice(run_bytes);
            }
            _ => {}
        }
        self.head_len += run;
        run
    }

    /// One byte of a head.
    pub(super) fn step_head(&mut self, part: Head, byte: u8) -> Result<(), Option<u16>> {
        self.head_len += 1;
        if self.head_len > self.limits.max_head {
            return Err(Some(431));
        }
        let bad = Err(Some(400));
        let next = match part {
            Head::Method | Head::Target | Head::Version => {
                return self.step_request_line(part, byte);
            }
            Head::RequestLineEnd if byte == b'\n' => Head::Field(Field::Start),
            Head::Field(part) => {
                let Ok(next) = part.next(byte) else {
                    return bad;
                };
                match (part, next) {
                    (_, None) => {}
                    (Field::Start, _) => {
                        if !self.count_field_line() {
                            return Err(Some(431));
                        }
                        self.name.clear();
                        self.name.push(byte);
                    }
                    (Field::Name, Some(Field::Value)) => {
                        self.tracked = Tracked::of(&self.name);
                        self.value.clear();
                    }
                    // The rest of a name or a value is taken by `take_run`; a byte of it
                    // comes here only past `max_head`, refused above.
                    (Field::Name | Field::Value, _) => {}
                    (Field::LineEnd, _) => self.end_header(),
                }
                next.map_or(Head::End, Head::Field)
            }
            Head::End if byte == b'\n' => {
                self.state = self.end_head()?;
                return Ok(());
            }
            Head::RequestLineEnd | Head::End => return bad,
        };
        self.state = State::Head(next);
        Ok(())
    }

    /// `METHOD SP TARGET SP HTTP/1.x CR`: one space each, as tiny_http splits it. Bytes that go
    /// on a part are `take_run`'s but for a method's first.
    fn step_request_line(&mut self, part: Head, byte: u8) -> Result<(), Option<u16>> {
        if self.request_line.len() < LOGGED_REQUEST_LINE && byte != b'\r' {
            self.request_line.push(byte);
        }
        let bad = Err(Some(400));
        match (part, byte) {
            (Head::Method, b' ') if self.part_len > 0 => self.next_part(Head::Target),
            (Head::Method, byte) if is_token_byte(byte) => self.part_len += 1,
            (Head::Target, b' ') if self.part_len > 0 => self.next_part(Head::Version),
            (Head::Version, b'\r') => {
                self.state = State::Head(Head::RequestLineEnd);
                return match &self.version[..self.part_len] {
                    b"HTTP/1.1" | b"HTTP/1.0" => Ok(()),
                    [_, _, _, _, _, _, _, _] => Err(Some(505)),
                    _ => bad,
                };
            }
            _ => return bad,
        }
        Ok(())
    }

    /// Counts a field line, of a head or of a trailer section: false past the limit.
    pub(super) fn count_field_line(&mut self) -> bool {
        self.headers += 1;
        self.headers <= self.limits.max_headers
    }

    fn next_part(&mut self, part: Head) {
        self.state = State::Head(part);
        self.part_len = 0;
    }

    pub(super) fn start_head(&mut self) {
        self.state = State::Head(Head::Method);
        self.head_len = 0;
        self.headers = 0;
        self.request_line.clear();
        self.part_len = 0;
        self.hosts = 0;
        self.bad_host = false;
        self.content_length = None;
        self.transfer_codings = None;
        self.connection = None;
        self.expect = None;
    }

    fn end_header(&mut self) {
        let Some(tracked) = self.tracked.take() else {
            return;
        };
        let value = trim_whitespace(&self.value);
        match tracked {
            Tracked::Host => {
                self.hosts += 1;
                self.bad_host |= !fields::is_host(value);
            }
            Tracked::ContentLength => {
                let parsed = fields::content_length(value);
                self.content_length = Some(match (self.content_length, parsed) {
                    (None, parsed) => parsed,
                    (Some(Ok(first)), Ok(again)) if first == again => Ok(first),
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
        // RFC 9112 3.2: exactly one valid Host, which HTTP/1.0 may leave out; tiny_http
        // takes any number of them, none included.
        if self.bad_host || self.hosts > 1 || (self.hosts == 0 && !http_1_0) {
            return Err(Some(400));
        }
        let body = if let Some(codings) = &self.transfer_codings {
            fields::transfer_codings(codings, http_1_0).map_err(Some)?;
            self.chunk_size = 0;
            self.chunk_line = 0;
            self.body_total = 0;
            State::Chunked(Chunked::Size)
        } else {
            match self.content_length {
                Some(Ok(length)) if length > self.limits.max_body.into() => {
                    return Err(Some(413));
                }
                Some(Ok(length)) if length > 0 => State::Body(length as u64),
                Some(Err(status)) => return Err(Some(status)),
                Some(Ok(_)) | None => State::Idle,
            }
        };
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
        let connection = self.connection.as_deref().unwrap_or_default();
        if contains_ignoring_case(connection, b"upgrade") {
            // With `Connection: upgrade` tiny_http hands the rest of the stream to the handler.
            return Ok(State::Unframed);
        }
        // RFC 9112 6.3: with both framings, answer and then close, since a proxy in front may
        // have framed the request by its Content-Length.
        self.stop_after_body = (self.transfer_codings.is_some() && self.content_length.is_some())
            || contains_ignoring_case(connection, b"close")
            || (http_1_0 && !contains_ignoring_case(connection, b"keep-alive"));
        Ok(match body {
            State::Idle => self.after_body(),
            body => body,
        })
    }
}
