//! Flag and variable values, each parsed and checked, with an error naming the flag or variable.

use std::ffi::{OsStr, OsString};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::headers::escape_controls;
use super::{Listen, MAX_SECONDS, UsageError};

pub(super) fn invalid(name: &str, value: &OsStr, expected: &str) -> UsageError {
    UsageError(format!(
        "invalid value '{}' for {name}: {expected}",
        value.to_string_lossy()
    ))
}

pub(super) fn utf8(name: &str, value: OsString) -> Result<String, UsageError> {
    value
        .into_string()
        .map_err(|value| invalid(name, &value, "not valid UTF-8"))
}

pub(super) fn text<'a>(
    name: &str,
    value: &'a OsStr,
    expected: &str,
) -> Result<&'a str, UsageError> {
    value
        .to_str()
        .map(str::trim)
        .ok_or_else(|| invalid(name, value, expected))
}

pub(super) fn parse_listen(name: &str, value: &OsStr) -> Result<Listen, UsageError> {
    const EXPECTED: &str = "expected IP:PORT, [IPv6]:PORT, localhost:PORT or :PORT";
    let address = text(name, value, EXPECTED)?;
    let bad = || invalid(name, value, EXPECTED);
    if let Some(port) = address.strip_prefix(':') {
        return port.parse().map(Listen::AnyAddress).map_err(|_| bad());
    }
    // Names other than localhost would need a resolver, which would cost the binary ~30 KiB.
    if let Some(port) = address.strip_prefix("localhost:") {
        let port = port.parse().map_err(|_| bad())?;
        return Ok(Listen::Exact(SocketAddr::new(
            Ipv4Addr::LOCALHOST.into(),
            port,
        )));
    }
    address.parse().map(Listen::Exact).map_err(|_| bad())
}

pub(super) fn parse_port(name: &str, value: &OsStr) -> Result<u16, UsageError> {
    const EXPECTED: &str = "expected a port number from 0 to 65535";
    text(name, value, EXPECTED)?
        .parse()
        .map_err(|_| invalid(name, value, EXPECTED))
}

pub(super) fn parse_count(
    name: &str,
    value: &OsStr,
    (min, max): (usize, usize),
) -> Result<usize, UsageError> {
    let expected = format!("expected a whole number from {min} to {max}");
    match text(name, value, &expected)?.parse() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(name, value, &expected)),
    }
}

pub(super) fn parse_status(name: &str, value: &OsStr) -> Result<u16, UsageError> {
    const EXPECTED: &str = "expected a status from 200 to 599";
    match text(name, value, EXPECTED)?.parse() {
        // tiny_http sends Content-Length with every status, which RFC 9110 forbids for 204.
        Ok(204) => Err(invalid(
            name,
            value,
            "204 cannot be sent without a Content-Length here; use 200 with --text ''",
        )),
        Ok(code) if (200..=599).contains(&code) => Ok(code),
        _ => Err(invalid(name, value, EXPECTED)),
    }
}

pub(super) fn parse_bool(name: &str, value: &OsStr) -> Result<bool, UsageError> {
    const EXPECTED: &str = "expected 1, true, yes, on, 0, false, no or off";
    match text(name, value, EXPECTED)?.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(invalid(name, value, EXPECTED)),
    }
}

/// Whole or decimal seconds, to the millisecond, from `min_ms` to a day. Parsed by hand: std's
/// float parsing and printing would add ~25 KiB to the binary.
pub(super) fn parse_seconds(
    name: &str,
    value: &OsStr,
    min_ms: u64,
) -> Result<Duration, UsageError> {
    let millis_text = format!("{:03}", min_ms % 1000);
    let min = match millis_text.trim_end_matches('0') {
        "" => format!("{}", min_ms / 1000),
        millis => format!("{}.{millis}", min_ms / 1000),
    };
    let expected = format!("expected seconds from {min} to {MAX_SECONDS}, such as 10 or 0.5");
    let bad = || invalid(name, value, &expected);
    let seconds = text(name, value, &expected)?;
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 3 {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let fraction_ms = format!("{fraction:0<3}")
        .parse::<u64>()
        .map_err(|_| bad())?;
    let millis = whole
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(fraction_ms))
        .filter(|ms| (min_ms..=MAX_SECONDS * 1000).contains(ms))
        .ok_or_else(bad)?;
    Ok(Duration::from_millis(millis))
}

/// What `--text` and header values say for the machine's host name.
pub(super) const HOST_NAME: &str = "{hostname}";
/// What they say for a literal `{hostname}`.
pub(super) const LITERAL_HOST_NAME: &str = "{{hostname}}";

/// The host name for [`HOST_NAME`], read at most once, and only if a value asks for it.
pub(super) struct HostName<'a> {
    read: &'a dyn Fn() -> Option<String>,
    name: Option<Result<String, String>>,
}

impl<'a> HostName<'a> {
    pub(super) fn new(read: &'a dyn Fn() -> Option<String>) -> HostName<'a> {
        HostName { read, name: None }
    }

    /// `value` with each `{hostname}` replaced by the host name and each `{{hostname}}` by a
    /// literal `{hostname}`; nothing else changes. Err: why the host name cannot be used.
    pub(super) fn expand(&mut self, value: &str) -> Result<String, String> {
        let mut expanded = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(at) = rest.find('{') {
            expanded.push_str(&rest[..at]);
            rest = &rest[at..];
            if let Some(after) = rest.strip_prefix(LITERAL_HOST_NAME) {
                expanded.push_str(HOST_NAME);
                rest = after;
            } else if let Some(after) = rest.strip_prefix(HOST_NAME) {
                expanded.push_str(self.name()?);
                rest = after;
            } else {
                expanded.push('{');
                rest = &rest[1..];
            }
        }
        expanded.push_str(rest);
        Ok(expanded)
    }

    /// The host name, if it is one: printable ASCII, as host names are, and so a valid header
    /// value too.
    fn name(&mut self) -> Result<&str, String> {
        let read = self.read;
        let name = self.name.get_or_insert_with(|| match read() {
            None => Err("the host name cannot be read".to_owned()),
            Some(name) if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) => {
                Err(format!(
                    "the host name '{}' is not printable ASCII",
                    escape_controls(&name)
                ))
            }
            Some(name) => Ok(name),
        });
        name.as_deref()
            .map_err(|why| format!("{HOST_NAME} cannot be replaced: {why}"))
    }
}
