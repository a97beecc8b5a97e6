//! Chunked bodies, as tiny_http's decoder (the `chunked_transfer` crate) reads them. A body by
//! `Content-Length` is only counted (`State::Body`), and a chunk's data taken in bulk.
//!
//! chunked_transfer 1.5.0 reads no trailer section (RFC 9112 7.1.2): after the last chunk its
//! decoder takes exactly CR LF, so a trailer field fails the body there, and tiny_http, having
//! read one byte of it, reads the rest as the next request line. hellod takes the trailer fields
//! out of the stream, each line whole: tiny_http sees `0\r\n\r\n`, and what follows is the
//! next request, as it is. A trailer section is held to a head's limits (its bytes, its lines);
//! hellod ignores its fields, as RFC 9110 6.5.1 lets a recipient.

use super::head::Field;
use super::{Framing, MAX_CHUNK_LINE, State, is_token_byte, is_visible};
use Extension::{Name, NameStart, Quoted, QuotedEnd, QuotedPair, Token, ValueStart};

/// Where in a chunked body the next byte goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunked {
    Size,
    Extension(Extension),
    SizeEnd,
    /// The bytes still to come of a chunk's data.
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section, after the last chunk.
    Trailer(Field),
    /// The LF of the blank line that ends the body.
    LastLf,
}

/// Where in a chunk extension the next byte goes: `;` name, then `=` and a token or a
/// quoted-string, or nothing (RFC 9112 7.1.1, without the whitespace its BWS allows).
/// chunked_transfer skips any bytes up to the CR; a proxy in front may read them by the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Extension {
    NameStart,
    Name,
    ValueStart,
    Token,
    Quoted,
    QuotedPair,
    QuotedEnd,
}

/// `qdtext` (RFC 9110 5.6.4), without obs-text.
fn is_quoted_text(byte: u8) -> bool {
    matches!(byte, b'\t' | b' ' | b'!' | 0x23..=0x5b | 0x5d..=0x7e)
}

impl Framing {
    /// True inside a trailer field line, whose bytes tiny_http must not see.
    pub(super) fn in_trailer_field(&self) -> bool {
        matches!(
            self.state,
            State::Chunked(Chunked::Trailer(
                Field::Name | Field::Value | Field::LineEnd
            ))
        )
    }

    /// One byte of a chunked body outside the bulk of its chunks' data. Any error stops the
    /// stream without an answer of hellod's: tiny_http has the request and answers it.
    pub(super) fn step_chunked(&mut self, part: Chunked, byte: u8) -> Result<(), Option<u16>> {
        if matches!(part, Chunked::Trailer(_) | Chunked::LastLf) {
            // The trailer section, counted as a head.
            self.head_len += 1;
            if self.head_len > self.limits.max_head {
                return Err(None);
            }
        }
        let next = match (part, byte) {
            (Chunked::Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                self.chunk_line += 1;
                let digit = (byte as char).to_digit(16).unwrap_or(0) as u64;
                self.chunk_size = self.chunk_size.saturating_mul(16).saturating_add(digit);
                if self.body_total.saturating_add(self.chunk_size) > self.limits.max_body {
                    return Err(None);
                }
                Chunked::Size
            }
            (Chunked::Size, b';' | b'\r') if self.chunk_line == 0 => return Err(None),
            (Chunked::Size | Chunked::Extension(Name | Token | QuotedEnd), b';') => {
                self.chunk_line += 1;
                Chunked::Extension(NameStart)
            }
            (Chunked::Size | Chunked::Extension(Name | Token | QuotedEnd), b'\r') => {
                Chunked::SizeEnd
            }
            (Chunked::Extension(part), byte) => {
                self.chunk_line += 1;
                Chunked::Extension(match (part, byte) {
                    (NameStart | Name, byte) if is_token_byte(byte) => Name,
                    (Name, b'=') => ValueStart,
                    (ValueStart | Token, byte) if is_token_byte(byte) => Token,
                    (ValueStart, b'"') => Quoted,
                    (Quoted, b'"') => QuotedEnd,
                    (Quoted, b'\\') => QuotedPair,
                    (Quoted, byte) if is_quoted_text(byte) => Quoted,
                    (QuotedPair, byte) if byte == b'\t' || byte == b' ' || is_visible(byte) => {
                        Quoted
                    }
                    _ => return Err(None),
                })
            }
            (Chunked::SizeEnd, b'\n') => {
                self.body_total += self.chunk_size;
                let size = std::mem::take(&mut self.chunk_size);
                self.chunk_line = 0;
                if size == 0 {
                    self.head_len = 0;
                    self.headers = 0;
                    Chunked::Trailer(Field::Start)
                } else {
                    Chunked::Data(size)
                }
            }
            (Chunked::DataCr, b'\r') => Chunked::DataLf,
            (Chunked::DataLf, b'\n') => Chunked::Size,
            (Chunked::Trailer(field), byte) => match field.next(byte) {
                Err(()) => return Err(None),
                Ok(None) => Chunked::LastLf,
                Ok(Some(next)) => {
                    if field == Field::Start && !self.count_field_line() {
                        return Err(None);
                    }
                    Chunked::Trailer(next)
                }
            },
            (Chunked::LastLf, b'\n') => {
                self.state = self.after_body();
                return Ok(());
            }
            _ => return Err(None),
        };
        if self.chunk_line > MAX_CHUNK_LINE {
            return Err(None);
        }
        self.state = State::Chunked(next);
        Ok(())
    }
}
