//! RFC 3986's host and port, for the reference's reading of `Host` (RFC 9112 3.2): written from
//! the ABNF, IPv6 addresses included, apart from hellod's own check (which leaves them to std).

/// `Host = uri-host [ ":" port ]` (RFC 9112 3.2, RFC 3986 3.2.2 and 3.2.3).
pub(super) fn is_host(value: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((literal, port)) => (is_ipv6(literal) || is_ipv_future(literal), port),
            None => return false,
        },
        None => {
            let (name, port) = text
                .find(':')
                .map_or((text, ""), |colon| text.split_at(colon));
            (is_reg_name(name), port)
        }
    };
    let port_valid = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()));
    host && port_valid
}

const SUB_DELIMS: &str = "!$&'()*+,;=";

fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~".contains(c)
}

fn is_reg_name(name: &str) -> bool {
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if c == '%' {
            let hex = rest
                .get(1..3)
                .is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
            if !hex {
                return false;
            }
            rest = &rest[3..];
        } else if is_unreserved(c) || SUB_DELIMS.contains(c) {
            rest = &rest[1..];
        } else {
            return false;
        }
    }
    true
}

/// RFC 3986's `IPv6address`: eight h16 groups, the last two of which may be an IPv4 address,
/// with one run of them elided by `::`.
fn is_ipv6(text: &str) -> bool {
    let (before, after, elided) = match text.split_once("::") {
        Some((before, after)) => (before, after, true),
        None => (text, "", false),
    };
    fn groups(part: &str) -> Vec<&str> {
        if part.is_empty() {
            Vec::new()
        } else {
            part.split(':').collect()
        }
    }
    let all = [groups(before), groups(after)].concat();
    if after.contains("::") || (!elided && all.is_empty()) {
        return false;
    }
    let ends_in_group = !elided || !after.is_empty();
    let mut count = 0;
    for (i, group) in all.iter().enumerate() {
        if i == all.len() - 1 && ends_in_group && group.contains('.') {
            if !is_ipv4(group) {
                return false;
            }
            count += 2;
        } else if (1..=4).contains(&group.len()) && group.chars().all(|c| c.is_ascii_hexdigit()) {
            count += 1;
        } else {
            return false;
        }
    }
    if elided { count <= 7 } else { count == 8 }
}

/// Four `dec-octet`s: 0 to 255, no leading zeros.
fn is_ipv4(text: &str) -> bool {
    let octets: Vec<&str> = text.split('.').collect();
    octets.len() == 4
        && octets.iter().all(|o| {
            (1..=3).contains(&o.len())
                && o.chars().all(|c| c.is_ascii_digit())
                && (o.len() == 1 || !o.starts_with('0'))
                && o.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

/// `IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )`
fn is_ipv_future(text: &str) -> bool {
    let Some(rest) = text.strip_prefix(['v', 'V']) else {
        return false;
    };
    let Some((version, address)) = rest.split_once('.') else {
        return false;
    };
    !version.is_empty()
        && version.chars().all(|c| c.is_ascii_hexdigit())
        && !address.is_empty()
        && address
            .chars()
            .all(|c| is_unreserved(c) || SUB_DELIMS.contains(c) || c == ':')
}
