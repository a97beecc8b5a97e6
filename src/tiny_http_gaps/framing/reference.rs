//! A second reading of a request stream, for the differential test, written from RFC 9112 and
//! not from hellod's code: heads parsed by httparse, their framing decided by RFC 9112 3.2 and
//! 6, chunked bodies by a decoder of the grammar of 7.1 (chunk extensions, trailer sections
//! parsed by httparse). It has no limits, takes what the RFC lets a recipient take (bare LF in a
//! head, bytes above 0x7e, empty lines before a request, a list of equal Content-Lengths), and
//! records what it met of each, so that the test can tell hellod's stricter rules apart.

mod uri;

use std::ops::Range;

use httparse::Status;
use uri::is_host;

/// One request as the reference reads it, as far as the stream goes.
#[derive(Debug, Default)]
pub(super) struct Message {
    /// Where its bytes start: empty lines, if any, then the request line.
    pub start: usize,
    pub empty_lines_before: bool,
    /// Where its body starts, once the head is whole.
    pub head_end: Option<usize>,
    pub http_1_0: bool,
    /// Header fields: lowercase names, values trimmed of whitespace.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Body,
    pub verdict: Verdict,
}

#[derive(Debug, Default)]
pub(super) enum Verdict {
    /// The stream ends inside it.
    #[default]
    Partial,
    /// Whole: it ends at `end`; `last` if no request may follow on the connection.
    Whole { end: usize, last: bool },
    /// Refused: with the status RFC 9112 has a server answer, where it names one; in a body,
    /// at the byte the grammar has no place for, where it is known.
    Invalid {
        status: Option<u16>,
        at: Option<usize>,
    },
}

/// What a body held that a stricter reader might refuse.
#[derive(Debug, Default)]
pub(super) struct Body {
    /// The sizes of its chunks, summed, or its Content-Length.
    pub length: u128,
    /// Whitespace in a chunk line (RFC 9112 7.1.1's BWS around extensions).
    pub whitespace_in_chunk_line: bool,
    /// The trailer section: where it starts, its field lines (to be taken out), and its lines
    /// so far.
    pub trailer_start: Option<usize>,
    pub trailer_fields: Range<usize>,
    pub trailer_lines: usize,
}

const MAX_FIELDS: usize = 128;

/// Reads `stream` as requests on one connection, up to the first that is not whole and valid.
pub(super) fn read(stream: &[u8]) -> Vec<Message> {
    let mut messages = Vec::new();
    let mut start = 0;
    while start < stream.len() {
        let message = read_message(stream, start);
        let next = match message.verdict {
            Verdict::Whole { end, last: false } => Some(end),
            _ => None,
        };
        messages.push(message);
        match next {
            Some(end) => start = end,
            None => break,
        }
    }
    messages
}

fn read_message(stream: &[u8], start: usize) -> Message {
    let mut message = Message {
        start,
        empty_lines_before: matches!(stream[start], b'\r' | b'\n'),
        ..Message::default()
    };
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut fields);
    let head_len = match request.parse(&stream[start..]) {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) => return message,
        Err(_) => {
            message.verdict = Verdict::Invalid {
                status: None,
                at: None,
            };
            return message;
        }
    };
    message.http_1_0 = request.version == Some(0);
    message.fields = request
        .headers
        .iter()
        .map(|field| {
            (
                field.name.to_ascii_lowercase().into_bytes(),
                trim(field.value).to_vec(),
            )
        })
        .collect();
    let head_end = start + head_len;
    message.head_end = Some(head_end);
    let framing = match framing(&message) {
        Ok(framing) => framing,
        Err(status) => {
            message.verdict = Verdict::Invalid {
                status: Some(status),
                at: None,
            };
            return message;
        }
    };
    let end = match framing {
        Framing::Length(length) => {
            message.body.length = length;
            let end = head_end as u128 + length;
            (end <= stream.len() as u128)
                .then_some(end as usize)
                .ok_or(Short::End)
        }
        Framing::Chunked => chunked(stream, head_end, &mut message.body),
    };
    message.verdict = match end {
        Ok(end) => Verdict::Whole {
            end,
            last: last_request(&message),
        },
        Err(Short::End) => Verdict::Partial,
        Err(Short::At(at)) => Verdict::Invalid {
            status: None,
            at: Some(at),
        },
        Err(Short::Somewhere) => Verdict::Invalid {
            status: None,
            at: None,
        },
    };
    message
}

fn trim(value: &[u8]) -> &[u8] {
    let start = value.iter().take_while(|b| b" \t".contains(b)).count();
    let end = value.len()
        - value[start..]
            .iter()
            .rev()
            .take_while(|b| b" \t".contains(b))
            .count();
    &value[start..end]
}

fn values<'a>(message: &'a Message, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    message
        .fields
        .iter()
        .filter(move |(field, _)| field == name)
        .map(|(_, value)| value.as_slice())
}

/// The elements of a comma-separated list over all of a field's lines, empty ones left out.
fn list<'a>(message: &'a Message, name: &'a [u8]) -> Vec<&'a [u8]> {
    values(message, name)
        .flat_map(|value| value.split(|&b| b == b','))
        .map(trim)
        .filter(|element| !element.is_empty())
        .collect()
}

enum Framing {
    Length(u128),
    Chunked,
}

/// RFC 9112 3.2 (Host) and 6.1 to 6.3 (the body's length), or the status to refuse with.
fn framing(message: &Message) -> Result<Framing, u16> {
    let hosts: Vec<&[u8]> = values(message, b"host").collect();
    let host_valid = match hosts[..] {
        [] => message.http_1_0,
        [host] => is_host(host),
        _ => false,
    };
    if !host_valid {
        return Err(400);
    }
    if values(message, b"transfer-encoding").next().is_some() {
        let codings = list(message, b"transfer-encoding");
        let chunked_last = codings
            .last()
            .is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked"));
        return match (message.http_1_0, chunked_last, codings.len()) {
            (true, ..) | (_, false, _) => Err(400),
            (_, true, 1) => Ok(Framing::Chunked),
            _ => Err(501),
        };
    }
    let mut lengths = values(message, b"content-length")
        .flat_map(|value| value.split(|&b| b == b','))
        .map(|element| {
            let element = trim(element);
            let digits = !element.is_empty() && element.iter().all(u8::is_ascii_digit);
            let parse = || {
                element.iter().try_fold(0u128, |n, d| {
                    n.checked_mul(10)?.checked_add((d - b'0').into())
                })
            };
            // Too large to count is larger than any stream.
            digits.then(|| parse().unwrap_or(u128::MAX))
        });
    match lengths.next() {
        None => Ok(Framing::Length(0)),
        Some(first) => match (first, lengths.all(|other| other == first)) {
            (Some(length), true) => Ok(Framing::Length(length)),
            _ => Err(400),
        },
    }
}

/// RFC 9112 9.3 and 9.6: `close`, HTTP/1.0 without `keep-alive`; and 6.3: both framings.
fn last_request(message: &Message) -> bool {
    let options = list(message, b"connection");
    let option = |name: &[u8]| options.iter().any(|o| o.eq_ignore_ascii_case(name));
    option(b"close")
        || (message.http_1_0 && !option(b"keep-alive"))
        || (values(message, b"transfer-encoding").next().is_some()
            && values(message, b"content-length").next().is_some())
}

/// Why a body is not whole.
enum Short {
    /// The stream ends first.
    End,
    /// At this byte, the grammar has no place for it.
    At(usize),
    /// Somewhere in what follows (httparse does not say where).
    Somewhere,
}

/// A chunked body from `at` (RFC 9112 7.1): where it ends, or why not.
fn chunked(stream: &[u8], mut at: usize, body: &mut Body) -> Result<usize, Short> {
    let byte = |at: usize| stream.get(at).copied().ok_or(Short::End);
    loop {
        let digits = stream[at..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if digits == 0 {
            byte(at)?;
            return Err(Short::At(at));
        }
        let size = stream[at..at + digits].iter().fold(0u128, |n, &d| {
            n.saturating_mul(16)
                .saturating_add((d as char).to_digit(16).unwrap_or(0).into())
        });
        at += digits;
        body.length = body.length.saturating_add(size);
        at = chunk_extensions(stream, at, body)?;
        for expected in *b"\r\n" {
            if byte(at)? != expected {
                return Err(Short::At(at));
            }
            at += 1;
        }
        if size == 0 {
            return trailer_section(stream, at, body);
        }
        if ((stream.len() - at) as u128) < size {
            return Err(Short::End);
        }
        at += size as usize;
        for expected in *b"\r\n" {
            if byte(at)? != expected {
                return Err(Short::At(at));
            }
            at += 1;
        }
    }
}

fn is_token(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// `*( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`, up to the CR after them.
fn chunk_extensions(stream: &[u8], mut at: usize, body: &mut Body) -> Result<usize, Short> {
    let whitespace = |at: &mut usize, body: &mut Body| {
        let spaces = stream[*at..]
            .iter()
            .take_while(|b| b" \t".contains(b))
            .count();
        body.whitespace_in_chunk_line |= spaces > 0;
        *at += spaces;
    };
    let token = |at: &mut usize| {
        let len = stream[*at..].iter().take_while(|&&b| is_token(b)).count();
        *at += len;
        len > 0
    };
    loop {
        let before = at;
        whitespace(&mut at, body);
        match stream.get(at) {
            None => return Err(Short::End),
            Some(b'\r') if at == before => return Ok(at),
            Some(b';') => at += 1,
            Some(_) => return Err(Short::At(at)),
        }
        whitespace(&mut at, body);
        if !token(&mut at) {
            return Err(stream.get(at).map_or(Short::End, |_| Short::At(at)));
        }
        let before = at;
        whitespace(&mut at, body);
        if stream.get(at) != Some(&b'=') {
            at = before;
            continue;
        }
        at += 1;
        whitespace(&mut at, body);
        match stream.get(at) {
            Some(b'"') => at = quoted_string(stream, at + 1)?,
            _ if token(&mut at) => {}
            _ => return Err(stream.get(at).map_or(Short::End, |_| Short::At(at))),
        }
    }
}

/// The rest of a quoted-string (RFC 9110 5.6.4) from after its opening quote.
fn quoted_string(stream: &[u8], mut at: usize) -> Result<usize, Short> {
    loop {
        let byte = *stream.get(at).ok_or(Short::End)?;
        match byte {
            b'"' => return Ok(at + 1),
            b'\\' => {
                let escaped = *stream.get(at + 1).ok_or(Short::End)?;
                if !(escaped == b'\t' || escaped >= b' ') || escaped == 0x7f {
                    return Err(Short::At(at + 1));
                }
                at += 2;
            }
            b'\t' | b' '..=0x7e | 0x80.. => at += 1,
            _ => return Err(Short::At(at)),
        }
    }
}

/// `*( field-line CRLF ) CRLF`, by httparse.
fn trailer_section(stream: &[u8], at: usize, body: &mut Body) -> Result<usize, Short> {
    body.trailer_start = Some(at);
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let parsed = httparse::parse_headers(&stream[at..], &mut fields);
    let seen = match parsed {
        Ok(Status::Complete((len, _))) => &stream[at..at + len],
        _ => &stream[at..],
    };
    body.trailer_lines = seen.iter().filter(|&&b| b == b'\n').count();
    match parsed {
        Ok(Status::Complete((len, _))) => {
            let blank_line = if seen.ends_with(b"\r\n") { 2 } else { 1 };
            body.trailer_fields = at..at + len - blank_line;
            Ok(at + len)
        }
        Ok(Status::Partial) => Err(Short::End),
        Err(_) => Err(Short::Somewhere),
    }
}
