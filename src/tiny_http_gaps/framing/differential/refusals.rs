//! Where hellod refuses what the reference reads: each refusal must be one the reference makes
//! too, or one of the [`Exemption`]s, found at the byte hellod stopped at.

use super::LIMITS;
use super::run::End;
use crate::tiny_http_gaps::framing::MAX_CHUNK_LINE;
use crate::tiny_http_gaps::framing::reference::{Body, Message, Verdict};

/// Where hellod is stricter than the reference, on purpose: each a byte (or a head) it refuses
/// that RFC 9112 lets a recipient take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Exemption {
    /// A line of a head or trailer section ended by LF alone (RFC 9112 2.2 lets a recipient
    /// take it; tiny_http hangs on it).
    BareLf,
    /// Empty lines before a request line (RFC 9112 2.2: a server SHOULD ignore at least one).
    EmptyLineFirst,
    /// A byte above 0x7e: obs-text in a field value, or any in a target (tiny_http closes without
    /// an answer on non-ASCII bytes in a head).
    NonAscii,
    /// A head or a trailer section past `max_head` bytes or `max_headers` lines (431 for a head).
    HeadLimits,
    /// A body past `max_body` (413 where declared by Content-Length).
    BodyLimit,
    /// A Content-Length that is a list of equal values, which RFC 9112 6.3 lets a recipient
    /// take as one; tiny_http parses one number and would read no body.
    ContentLengthList,
    /// Whitespace in a chunk line, which RFC 9112 7.1.1's BWS allows around an extension's `;`
    /// and `=`: chunked_transfer takes it, but implementations differ on it, and a proxy in front
    /// may read the line another way.
    ChunkLineWhitespace,
    /// A chunk-size line past [`MAX_CHUNK_LINE`] bytes, which tiny_http would buffer whole.
    ChunkLineLimit,
}

impl Exemption {
    pub(super) const ALL: [Exemption; 8] = [
        Exemption::BareLf,
        Exemption::EmptyLineFirst,
        Exemption::NonAscii,
        Exemption::HeadLimits,
        Exemption::BodyLimit,
        Exemption::ContentLengthList,
        Exemption::ChunkLineWhitespace,
        Exemption::ChunkLineLimit,
    ];

    /// hellod's answer where it refuses a head for this.
    fn status(self) -> Option<u16> {
        match self {
            Exemption::HeadLimits => Some(431),
            Exemption::BodyLimit => Some(413),
            _ => Some(400),
        }
    }
}

/// hellod refused a head, or the stream ended inside one: returns the exemption that lets
/// the refusal stand, if one had to.
pub(super) fn head_refused(
    stream: &[u8],
    end: End,
    message: &Message,
) -> Result<Option<Exemption>, String> {
    let End::Stopped { at, status } = end else {
        // The stream ended inside the head for hellod: for the reference too.
        return match (message.head_end, &message.verdict) {
            (None, Verdict::Partial) => Ok(None),
            (head_end, verdict) => Err(format!(
                "hellod is still in a head; the reference: {head_end:?} {verdict:?}"
            )),
        };
    };
    let at_head_end = message.head_end == Some(at + 1);
    match message.verdict {
        Verdict::Invalid { status: None, .. } if message.head_end.is_none() => return Ok(None),
        Verdict::Invalid {
            status: Some(expected),
            ..
        } if at_head_end && status == Some(expected) => return Ok(None),
        _ => {}
    }
    let exemptions = head_exemptions(stream, at, message);
    match exemptions
        .into_iter()
        .find(|exemption| exemption.status() == status)
    {
        Some(exemption) => Ok(Some(exemption)),
        None => Err(format!(
            "hellod refused a head at {at} ({status:?}); the reference: {:?} {:?}; exemptions: {:?}",
            message.head_end,
            message.verdict,
            head_exemptions(stream, at, message)
        )),
    }
}

fn head_exemptions(stream: &[u8], at: usize, message: &Message) -> Vec<Exemption> {
    let head = &stream[message.start..=at];
    let lines = head.iter().filter(|&&b| b == b'\n').count();
    let semantic = message.head_end == Some(at + 1);
    let content_length_list = message
        .fields
        .iter()
        .any(|(name, value)| name == b"content-length" && value.contains(&b','));
    [
        (
            Exemption::BareLf,
            stream[at] == b'\n' && (at == 0 || stream[at - 1] != b'\r'),
        ),
        (
            Exemption::EmptyLineFirst,
            at == message.start && message.empty_lines_before,
        ),
        (Exemption::NonAscii, stream[at] > 0x7e),
        (
            Exemption::HeadLimits,
            head.len() > LIMITS.max_head || lines > LIMITS.max_headers,
        ),
        (
            Exemption::ContentLengthList,
            semantic && content_length_list,
        ),
        (
            Exemption::BodyLimit,
            semantic && message.body.length > LIMITS.max_body.into(),
        ),
    ]
    .into_iter()
    .filter_map(|(exemption, applies)| applies.then_some(exemption))
    .collect()
}

/// hellod stopped inside a body, or the stream ended inside one: returns the exemption that
/// lets the refusal stand, if one had to.
pub(super) fn body_refused(
    stream: &[u8],
    end: End,
    message: &Message,
) -> Result<Option<Exemption>, String> {
    let verdict = &message.verdict;
    let End::Stopped { at, status: None } = end else {
        return match (end, verdict) {
            (End::Open, Verdict::Partial) => Ok(None),
            _ => Err(format!(
                "in a body hellod ends with {end:?}; the reference: {verdict:?}"
            )),
        };
    };
    let body = &message.body;
    match verdict {
        Verdict::Invalid {
            at: Some(invalid), ..
        } if at == *invalid => return Ok(None),
        Verdict::Invalid {
            at: Some(invalid), ..
        } if at > *invalid => {
            return Err(format!(
                "hellod passed byte {invalid} of a body the reference refuses there"
            ));
        }
        Verdict::Invalid { at: None, .. }
            if body.trailer_start.is_some_and(|start| at >= start) =>
        {
            return Ok(None);
        }
        _ => {}
    }
    match body_exemptions(stream, at, body).first() {
        Some(&exemption) => Ok(Some(exemption)),
        None => Err(format!(
            "hellod refused byte {at} of a body; the reference: {verdict:?} {body:?}"
        )),
    }
}

fn body_exemptions(stream: &[u8], at: usize, body: &Body) -> Vec<Exemption> {
    let trailer = body.trailer_start.filter(|&start| at >= start);
    let trailer_limits = trailer.is_some_and(|start| {
        at + 1 - start > LIMITS.max_head || body.trailer_lines > LIMITS.max_headers
    });
    let whitespace = b" \t".contains(&stream[at]) && trailer.is_none();
    let line_start = stream[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |lf| lf + 1);
    let long_chunk_line = trailer.is_none() && at + 1 - line_start > MAX_CHUNK_LINE;
    [
        (
            Exemption::BareLf,
            stream[at] == b'\n' && stream[at - 1] != b'\r' && trailer.is_some(),
        ),
        (Exemption::NonAscii, stream[at] > 0x7e),
        (Exemption::HeadLimits, trailer_limits),
        (Exemption::BodyLimit, body.length > LIMITS.max_body.into()),
        (
            Exemption::ChunkLineWhitespace,
            whitespace && body.whitespace_in_chunk_line,
        ),
        (Exemption::ChunkLineLimit, long_chunk_line),
    ]
    .into_iter()
    .filter_map(|(exemption, applies)| applies.then_some(exemption))
    .collect()
}

/// tiny_http's own rules (client.rs, request.rs): it reads no request after one whose first
/// Connection field contains `close` (or, in HTTP/1.0, lacks `keep-alive`); it hands the rest
/// of the stream to the handler after one that contains `upgrade` or expects something other
/// than `100-continue`.
pub(super) fn tiny_http_reads_no_further(message: &Message, unframed: bool) -> bool {
    let first = |name: &[u8]| {
        message
            .fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.to_ascii_lowercase())
    };
    let contains = |value: &Option<Vec<u8>>, word: &[u8]| {
        value
            .as_ref()
            .is_some_and(|v| v.windows(word.len()).any(|w| w == word))
    };
    let connection = first(b"connection");
    if unframed {
        let expect = first(b"expect");
        return contains(&connection, b"upgrade") || expect.is_some_and(|e| e != b"100-continue");
    }
    contains(&connection, b"close") || (message.http_1_0 && !contains(&connection, b"keep-alive"))
}
