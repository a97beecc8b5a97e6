//! Chunked bodies, as tiny_http's decoder (the `chunked_transfer` crate) reads them. A body by
//! `Content-Length` is only counted (`State::Body`), and a chunk's data taken in bulk.

use super::{Framing, State, is_visible};

/// Where in a chunked body the next byte goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunked {
    Size,
    Extension,
    SizeEnd,
    /// The bytes still to come of a chunk's data.
    Data(u64),
    DataCr,
    DataLf,
    LastCr,
    LastLf,
}

impl Framing {
    /// One byte of a chunked body outside the bulk of its chunks' data. Any error stops the
    /// stream without an answer of hellod's: tiny_http has the request and answers it.
    pub(super) fn step_chunked(&mut self, part: Chunked, byte: u8) -> Result<(), Option<u16>> {
        let next = match (part, byte) {
            (Chunked::Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                self.chunk_digits += 1;
                let digit = (byte as char).to_digit(16).unwrap_or(0) as u64;
                self.chunk_size = self.chunk_size.saturating_mul(16).saturating_add(digit);
                if self.body_total.saturating_add(self.chunk_size) > self.limits.max_body {
                    return Err(None);
                }
                Chunked::Size
            }
            (Chunked::Size, b';') if self.chunk_digits > 0 => Chunked::Extension,
            (Chunked::Size | Chunked::Extension, b'\r') if self.chunk_digits > 0 => {
                Chunked::SizeEnd
            }
            (Chunked::Extension, byte) if byte == b'\t' || byte == b' ' || is_visible(byte) => {
                Chunked::Extension
            }
            (Chunked::SizeEnd, b'\n') => {
                self.body_total += self.chunk_size;
                let size = std::mem::take(&mut self.chunk_size);
                self.chunk_digits = 0;
                if size == 0 {
                    // tiny_http's decoder takes no trailer fields: the blank line must follow.
                    Chunked::LastCr
                } else {
                    Chunked::Data(size)
                }
            }
            (Chunked::DataCr, b'\r') => Chunked::DataLf,
            (Chunked::DataLf, b'\n') => Chunked::Size,
            (Chunked::LastCr, b'\r') => Chunked::LastLf,
            (Chunked::LastLf, b'\n') => {
                self.state = self.after_body();
                return Ok(());
            }
            _ => return Err(None),
        };
        self.state = State::Chunked(next);
        Ok(())
    }
}
