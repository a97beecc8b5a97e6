//! Response headers from `--header` and `HELLOD_HEADERS`: the rules they are held to.

use super::UsageError;
use super::values::HostName;

/// Headers that hellod or tiny_http must set, and why; names compared without regard to case.
pub(super) const REFUSED_HEADERS: [(&str, &str); 9] = [
    ("Date", "hellod sets it on every response"),
    (
        "Content-Length",
        "it would break the response's framing, which tiny_http sets",
    ),
    (
        "Transfer-Encoding",
        "it would break the response's framing, which tiny_http sets",
    ),
    ("Connection", HOP_BY_HOP),
    ("Keep-Alive", HOP_BY_HOP),
    ("Proxy-Connection", HOP_BY_HOP),
    ("TE", HOP_BY_HOP),
    ("Trailer", HOP_BY_HOP),
    ("Upgrade", HOP_BY_HOP),
];
pub(super) const HOP_BY_HOP: &str =
    "a hop-by-hop header, about the connection, which hellod and tiny_http manage";
/// Replace hellod's own, so each may come once.
pub(super) const REPLACING_HEADERS: [&str; 2] = ["Content-Type", "Server"];

/// Headers, one a line, each checked by [`parse_header`], `{hostname}` in their values replaced.
pub(super) fn parse_headers(
    name: &str,
    lines: &[String],
    host: &mut HostName,
) -> Result<Vec<(String, String)>, UsageError> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        let bad = |why: &str| {
            UsageError(format!(
                "invalid value '{}' for {name}: {why}",
                escape_controls(line)
            ))
        };
        let (field, value) = parse_header(line).map_err(|why| bad(&why))?;
        let replacing = REPLACING_HEADERS
            .iter()
            .find(|r| r.eq_ignore_ascii_case(field));
        if let Some(replacing) = replacing
            && headers
                .iter()
                .any(|(f, _)| f.eq_ignore_ascii_case(replacing))
        {
            return Err(bad(&format!(
                "{replacing} is given twice; it replaces hellod's own"
            )));
        }
        let value = host.expand(value).map_err(|why| bad(&why))?;
        headers.push((field.to_owned(), value));
    }
    Ok(headers)
}

/// One `Name: value`: the name an RFC 9110 token that hellod lets through, the value without
/// control bytes (a CR or LF would start a header or a body of the client's choosing) and in
/// ASCII, which is all tiny_http sends. Spaces and tabs around the value are dropped.
pub(super) fn parse_header(line: &str) -> Result<(&str, &str), String> {
    let Some((field, value)) = line.split_once(':') else {
        return Err("expected 'Name: value'".into());
    };
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if field.is_empty() || !field.bytes().all(token) {
        return Err(format!(
            "'{}' is not a header name (letters, digits and !#$%&'*+-.^_`|~, no spaces)",
            escape_controls(field)
        ));
    }
    if let Some((refused, why)) = REFUSED_HEADERS
        .iter()
        .find(|(r, _)| r.eq_ignore_ascii_case(field))
    {
        return Err(format!("{refused} cannot be set: {why}"));
    }
    let value = value.trim_matches([' ', '\t']);
    if let Some(control) = value.chars().find(|&c| c.is_ascii_control() && c != '\t') {
        return Err(format!(
            "the value has a control character ({})",
            escape_controls(control.encode_utf8(&mut [0; 4]))
        ));
    }
    if !value.is_ascii() {
        return Err("the value is not ASCII, the only header values tiny_http sends".into());
    }
    Ok((field, value))
}

/// `text` with each ASCII control character as `\xNN`, so that an error stays on one line. By
/// hand: `str::escape_debug` would add its Unicode tables, 1.3 KiB, to the binary.
pub(super) fn escape_controls(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_control() {
            escaped.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            escaped.push(c);
        }
    }
    escaped
}
