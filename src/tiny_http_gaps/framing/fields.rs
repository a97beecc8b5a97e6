//! The values of the header fields that decide a request's framing and its validity, by the
//! grammars of RFC 9110, RFC 9112 and RFC 3986. Each takes a value with its surrounding
//! whitespace trimmed.

use std::net::Ipv6Addr;

/// `Content-Length = 1*DIGIT` (RFC 9110 8.6), as tiny_http parses it (one `usize`): a list of
/// equal values, which RFC 9112 6.3 lets a recipient take as one, is not one number to tiny_http.
/// Counted in a u128, so that two lengths past any limit can still be told apart (400, not 413);
/// past u128 (39 digits) all are one, and too large.
pub(super) fn content_length(value: &[u8]) -> Result<u128, u16> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(400);
    }
    Ok(value.iter().fold(0u128, |n, d| {
        n.saturating_mul(10).saturating_add((d - b'0').into())
    }))
}

/// `Host = uri-host [ ":" port ]` (RFC 9112 3.2, RFC 3986 3.2.2 and 3.2.3): an IP literal in
/// brackets or a reg-name (which IPv4 addresses are too), then digits after a colon. An empty
/// value is a valid (empty) reg-name: RFC 9112 3.2 has clients send it for a target without an
/// authority, and hellod, which serves every host alike, takes it with any target.
pub(super) fn is_host(value: &[u8]) -> bool {
    let (host_valid, port) = match value.strip_prefix(b"[") {
        Some(literal) => match literal.iter().position(|&b| b == b']') {
            Some(end) => (is_ip_literal(&literal[..end]), &literal[end + 1..]),
            None => return false,
        },
        None => {
            let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
            (is_reg_name(&value[..end]), &value[end..])
        }
    };
    let port_valid = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    host_valid && port_valid
}

fn is_unreserved_or_sub_delim(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&byte)
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`
fn is_reg_name(name: &[u8]) -> bool {
    let mut bytes = name.iter();
    while let Some(&byte) = bytes.next() {
        let valid = if byte == b'%' {
            bytes.next().is_some_and(u8::is_ascii_hexdigit)
                && bytes.next().is_some_and(u8::is_ascii_hexdigit)
        } else {
            is_unreserved_or_sub_delim(byte)
        };
        if !valid {
            return false;
        }
    }
    true
}

/// Inside the brackets of `IP-literal = "[" ( IPv6address / IPvFuture ) "]"`; the IPv6 address
/// as std parses it, with no zone identifier, as RFC 3986 has none.
fn is_ip_literal(inner: &[u8]) -> bool {
    // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
    if let Some(future) = inner.strip_prefix(b"v").or(inner.strip_prefix(b"V")) {
        let digits = future.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        return match future[digits..].split_first() {
            Some((b'.', rest)) => {
                digits > 0
                    && !rest.is_empty()
                    && rest
                        .iter()
                        .all(|&b| b == b':' || is_unreserved_or_sub_delim(b))
            }
            _ => false,
        };
    }
    std::str::from_utf8(inner).is_ok_and(|text| text.parse::<Ipv6Addr>().is_ok())
}
/// `Transfer-Encoding = #transfer-coding` (RFC 9112 6.1), all its field lines joined by commas:
/// what tiny_http reads (any `Transfer-Encoding` means chunked to it) is right only for the one
/// coding `chunked`. RFC 9112 6.3 has a server answer 400 when chunked is not the final coding
/// (the body's length cannot be known), and 6.1 answer 501 to a coding it does not implement:
/// any before chunked, or chunked twice. HTTP/1.0 has no transfer codings: its framing is
/// faulty (6.1).
pub(super) fn transfer_codings(codings: &[u8], http_1_0: bool) -> Result<(), u16> {
    let mut codings = codings
        .split(|&b| b == b',')
        .map(super::trim_whitespace)
        // Empty list elements count for nothing (RFC 9110 5.6.1).
        .filter(|coding| !coding.is_empty());
    let last = codings.next_back();
    if http_1_0 || !last.is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked")) {
        Err(400)
    } else if codings.next().is_some() {
        Err(501)
    } else {
        Ok(())
    }
}
