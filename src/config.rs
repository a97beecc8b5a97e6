//! Command line and environment: what to run, with which settings.
//!
//! Precedence, highest first: a flag, its `HELLOD_*` variable, `PORT` (port of the default address
//! only), the built-in default.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_TEXT: &str = "Hello, World!";
pub const DEFAULT_STATUS: u16 = 200;
pub const DEFAULT_GRACE_SECS: u64 = 10;
pub const DEFAULT_READ_TIMEOUT_SECS: u64 = 75;
pub const MAX_WORKERS: usize = 1024;
/// Request head budget: 4x nginx's 8 KiB header buffers, 16x darkhttpd's 4,000 bytes, a
/// sixteenth of Go's 1 MiB. Real clients stay far below it (big cookie jars reach about 8 KiB),
/// and a hundred connections at the limit cost about 6 MiB, not Go's hundred.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
const MAX_HEADER_BYTES_RANGE: (usize, usize) = (1024, 1024 * 1024);
/// Apache's LimitRequestFields: tiny_http holds each header as two strings, about 100 bytes.
pub const MAX_HEADER_FIELDS: usize = 100;
/// nginx's client_max_body_size: bodies are read and thrown away, so none needs to be large.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;
const MAX_CONNECTIONS_RANGE: (usize, usize) = (1, 1_000_000);
const MAX_SECONDS: u64 = 86_400;

/// Where to listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// Every interface: dual-stack `[::]:PORT`, or `0.0.0.0:PORT` where IPv6 is unavailable.
    AnyAddress(u16),
    Exact(SocketAddr),
}

impl Listen {
    /// The address a client on this machine uses to reach the server. An unspecified address
    /// means IPv4 loopback: hellod binds `[::]` dual-stack, and containers often have no `::1`.
    pub fn loopback_target(self) -> SocketAddr {
        match self {
            Listen::AnyAddress(port) => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
            Listen::Exact(addr) if addr.ip().is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
            }
            Listen::Exact(addr) => addr,
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::AnyAddress(port) => write!(f, "[::]:{port}"),
            Listen::Exact(addr) => write!(f, "{addr}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: Listen,
    pub workers: usize,
    pub text: String,
    pub status: u16,
    pub access_log: bool,
    pub grace: Duration,
    pub read_timeout: Duration,
    pub max_header_bytes: usize,
    /// None: derived from the memory, descriptor and task limits the process runs under.
    pub max_connections: Option<usize>,
    /// Response headers from `--header`/`HELLOD_HEADERS`, names as given, values trimmed.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, PartialEq)]
pub enum Command {
    Serve(Config),
    /// `hellod healthcheck`: GET this URL, or the listen address when there is none.
    Healthcheck {
        url: Option<String>,
        listen: Listen,
    },
    Help,
    Version,
}

/// A bad flag or value: one line naming it.
#[derive(Debug, PartialEq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<lexopt::Error> for UsageError {
    fn from(error: lexopt::Error) -> Self {
        UsageError(error.to_string())
    }
}

pub fn help_text(default_workers: usize, default_connections: usize) -> String {
    format!(
        "\
hellod {version}: a tiny static HTTP server that answers every request with a fixed greeting.

Usage: hellod [OPTIONS]
       hellod healthcheck [--url URL] [--listen ADDR]

Options (each can also be set by the environment variable shown; a flag wins):
  --listen ADDR         HELLOD_LISTEN   address to listen on: HOST:PORT, [IPv6]:PORT or :PORT
                                        [default: [::]:{DEFAULT_PORT}, dual-stack, or 0.0.0.0:{DEFAULT_PORT}
                                        without IPv6; PORT sets just the port of this default]
  --workers N           HELLOD_WORKERS  worker threads answering requests, 1 to {MAX_WORKERS}
                                        [default: CPUs available to the process, here {default_workers}]
  --text TEXT           HELLOD_TEXT     response body [default: \"{DEFAULT_TEXT}\"]
  --status CODE         HELLOD_STATUS   response status, 200 to 599 except 204; 205 and 304 are sent
                                        without a body [default: {DEFAULT_STATUS}]
  --access-log          HELLOD_ACCESS_LOG=1
                                        one line per request on stdout, control bytes escaped [default: off]
  --grace SECONDS       HELLOD_GRACE    longest a stop on SIGTERM/SIGINT (Ctrl-C) may take [default: {DEFAULT_GRACE_SECS}]
  --read-timeout SECONDS HELLOD_READ_TIMEOUT
                                        a connection silent (or not reading) this long is closed, and a
                                        request head must arrive whole this long after its first byte
                                        (else 408); also the keep-alive timeout, longer than common load
                                        balancers' 60 s [default: {DEFAULT_READ_TIMEOUT_SECS}]
  --max-header-size BYTES HELLOD_MAX_HEADER_SIZE
                                        largest request head (request line and headers), {min_head} to
                                        {max_head}; larger ones get 431 [default: {DEFAULT_MAX_HEADER_BYTES}]
  --max-connections N   HELLOD_MAX_CONNECTIONS
                                        connections open at once, 1 to {max_conns}; past it, a 503 and a
                                        close [default: what the memory limit (cgroup) allows at 48 KiB
                                        each, after 8 MiB and an 8th kept for request heads; the open-
                                        files limit at 2 descriptors each; the tasks limit at a thread
                                        each; whichever is least, here {default_connections}]
  --header 'NAME: VALUE' HELLOD_HEADERS (one header a line)
                                        a response header, repeatable; Content-Type and Server replace
                                        hellod's; Date, Content-Length, Transfer-Encoding and hop-by-hop
                                        headers (Connection, Keep-Alive, ...) are refused
  -h, --help                            print this help
  -V, --version                         print the version

healthcheck: GET URL [default: http://<listen address>/, an unspecified address meaning 127.0.0.1],
  2 s timeout; exit 0 on a 2xx answer, 1 otherwise. For images with no shell or curl.

Limits: at most {MAX_HEADER_FIELDS} header fields (431); unfinished request heads together at most a 16th of
  the memory limit, 64 MiB without one (503); bodies up to {MAX_BODY_BYTES} bytes (413), read and
  discarded; HTTP/1.0 and 1.1 only (505); framing must be unambiguous (RFC 9112: one valid
  Content-Length, chunked as the last transfer coding; 400 and close otherwise). Every refusal
  closes the connection.
Exit codes: 0 stopped by SIGTERM/SIGINT (Ctrl-C), 1 runtime failure (e.g. address in use), 2 bad flag or value.
",
        version = env!("CARGO_PKG_VERSION"),
        min_head = MAX_HEADER_BYTES_RANGE.0,
        max_head = MAX_HEADER_BYTES_RANGE.1,
        max_conns = MAX_CONNECTIONS_RANGE.1,
    )
}

/// Reads the arguments (without the program name) and the environment through `env`.
pub fn parse<I, E>(args: I, env: E, default_workers: usize) -> Result<Command, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
    E: Fn(&str) -> Option<OsString>,
{
    use lexopt::prelude::*;

    let mut parser = lexopt::Parser::from_args(args);
    let mut flags = Flags::default();
    let mut healthcheck = false;
    let mut url = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("listen") => flags.listen = Some(parser.value()?),
            Long("workers") => flags.workers = Some(parser.value()?),
            Long("text") => flags.text = Some(parser.value()?),
            Long("status") => flags.status = Some(parser.value()?),
            Long("access-log") => flags.access_log = true,
            Long("grace") => flags.grace = Some(parser.value()?),
            Long("read-timeout") => flags.read_timeout = Some(parser.value()?),
            Long("max-header-size") => flags.max_header_bytes = Some(parser.value()?),
            Long("max-connections") => flags.max_connections = Some(parser.value()?),
            Long("header") => flags.headers.push(parser.value()?),
            Long("url") if healthcheck => url = Some(utf8("--url", parser.value()?)?),
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Value(word) if word == "healthcheck" && !healthcheck => healthcheck = true,
            other => return Err(other.unexpected().into()),
        }
    }

    let config = flags.resolve(&env, default_workers)?;
    if healthcheck {
        return Ok(Command::Healthcheck {
            url,
            listen: config.listen,
        });
    }
    Ok(Command::Serve(config))
}

#[derive(Default)]
struct Flags {
    headers: Vec<OsString>,
    listen: Option<OsString>,
    workers: Option<OsString>,
    text: Option<OsString>,
    status: Option<OsString>,
    access_log: bool,
    grace: Option<OsString>,
    read_timeout: Option<OsString>,
    max_header_bytes: Option<OsString>,
    max_connections: Option<OsString>,
}

impl Flags {
    fn resolve<E>(self, env: &E, default_workers: usize) -> Result<Config, UsageError>
    where
        E: Fn(&str) -> Option<OsString>,
    {
        let setting = |flag: Option<OsString>, flag_name: &'static str, var: &'static str| {
            flag.map(|value| (flag_name, value))
                .or_else(|| env(var).map(|value| (var, value)))
        };

        let listen = match setting(self.listen, "--listen", "HELLOD_LISTEN") {
            Some((name, value)) => parse_listen(name, &value)?,
            None => match env("PORT") {
                Some(value) => Listen::AnyAddress(parse_port("PORT", &value)?),
                None => Listen::AnyAddress(DEFAULT_PORT),
            },
        };
        let workers = match setting(self.workers, "--workers", "HELLOD_WORKERS") {
            Some((name, value)) => parse_count(name, &value, (1, MAX_WORKERS))?,
            None => default_workers.clamp(1, MAX_WORKERS),
        };
        let text = match setting(self.text, "--text", "HELLOD_TEXT") {
            Some((name, value)) => utf8(name, value)?,
            None => DEFAULT_TEXT.to_owned(),
        };
        let status = match setting(self.status, "--status", "HELLOD_STATUS") {
            Some((name, value)) => parse_status(name, &value)?,
            None => DEFAULT_STATUS,
        };
        let access_log = self.access_log
            || match env("HELLOD_ACCESS_LOG") {
                Some(value) => parse_bool("HELLOD_ACCESS_LOG", &value)?,
                None => false,
            };
        let grace = match setting(self.grace, "--grace", "HELLOD_GRACE") {
            Some((name, value)) => parse_seconds(name, &value, 0)?,
            None => Duration::from_secs(DEFAULT_GRACE_SECS),
        };
        let read_timeout = match setting(self.read_timeout, "--read-timeout", "HELLOD_READ_TIMEOUT")
        {
            Some((name, value)) => parse_seconds(name, &value, 100)?,
            None => Duration::from_secs(DEFAULT_READ_TIMEOUT_SECS),
        };
        let max_header_bytes = match setting(
            self.max_header_bytes,
            "--max-header-size",
            "HELLOD_MAX_HEADER_SIZE",
        ) {
            Some((name, value)) => parse_count(name, &value, MAX_HEADER_BYTES_RANGE)?,
            None => DEFAULT_MAX_HEADER_BYTES,
        };
        let max_connections = setting(
            self.max_connections,
            "--max-connections",
            "HELLOD_MAX_CONNECTIONS",
        )
        .map(|(name, value)| parse_count(name, &value, MAX_CONNECTIONS_RANGE))
        .transpose()?;
        // Like every flag, --header wins over its variable: any --header, and HELLOD_HEADERS is
        // not read at all.
        let (headers_name, header_lines) = if self.headers.is_empty() {
            let value = env("HELLOD_HEADERS")
                .map_or(Ok(String::new()), |value| utf8("HELLOD_HEADERS", value))?;
            let lines = value.lines().filter(|line| !line.trim().is_empty());
            ("HELLOD_HEADERS", lines.map(str::to_owned).collect())
        } else {
            let lines = self
                .headers
                .into_iter()
                .map(|value| utf8("--header", value));
            ("--header", lines.collect::<Result<Vec<_>, _>>()?)
        };
        let headers = parse_headers(headers_name, &header_lines)?;
        Ok(Config {
            listen,
            workers,
            text,
            status,
            access_log,
            grace,
            read_timeout,
            max_header_bytes,
            max_connections,
            headers,
        })
    }
}

fn invalid(name: &str, value: &OsStr, expected: &str) -> UsageError {
    UsageError(format!(
        "invalid value '{}' for {name}: {expected}",
        value.to_string_lossy()
    ))
}

fn utf8(name: &str, value: OsString) -> Result<String, UsageError> {
    value
        .into_string()
        .map_err(|value| invalid(name, &value, "not valid UTF-8"))
}

fn text<'a>(name: &str, value: &'a OsStr, expected: &str) -> Result<&'a str, UsageError> {
    value
        .to_str()
        .map(str::trim)
        .ok_or_else(|| invalid(name, value, expected))
}

fn parse_listen(name: &str, value: &OsStr) -> Result<Listen, UsageError> {
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

fn parse_port(name: &str, value: &OsStr) -> Result<u16, UsageError> {
    const EXPECTED: &str = "expected a port number from 0 to 65535";
    text(name, value, EXPECTED)?
        .parse()
        .map_err(|_| invalid(name, value, EXPECTED))
}

fn parse_count(name: &str, value: &OsStr, (min, max): (usize, usize)) -> Result<usize, UsageError> {
    let expected = format!("expected a whole number from {min} to {max}");
    match text(name, value, &expected)?.parse() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(name, value, &expected)),
    }
}

fn parse_status(name: &str, value: &OsStr) -> Result<u16, UsageError> {
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

fn parse_bool(name: &str, value: &OsStr) -> Result<bool, UsageError> {
    const EXPECTED: &str = "expected 1, true, yes, on, 0, false, no or off";
    match text(name, value, EXPECTED)?.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(invalid(name, value, EXPECTED)),
    }
}

/// Headers that hellod or tiny_http must set, and why; names compared without regard to case.
const REFUSED_HEADERS: [(&str, &str); 9] = [
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
const HOP_BY_HOP: &str =
    "a hop-by-hop header, about the connection, which hellod and tiny_http manage";
/// Replace hellod's own, so each may come once.
const REPLACING_HEADERS: [&str; 2] = ["Content-Type", "Server"];

/// Headers, one a line, each checked by [`parse_header`].
fn parse_headers(name: &str, lines: &[String]) -> Result<Vec<(String, String)>, UsageError> {
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
        headers.push((field.to_owned(), value.to_owned()));
    }
    Ok(headers)
}

/// One `Name: value`: the name an RFC 9110 token that hellod lets through, the value without
/// control bytes (a CR or LF would start a header or a body of the client's choosing) and in
/// ASCII, which is all tiny_http sends. Spaces and tabs around the value are dropped.
fn parse_header(line: &str) -> Result<(&str, &str), String> {
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
fn escape_controls(text: &str) -> String {
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

/// Whole or decimal seconds, to the millisecond, from `min_ms` to a day. Parsed by hand: std's
/// float parsing and printing would add ~25 KiB to the binary.
fn parse_seconds(name: &str, value: &OsStr, min_ms: u64) -> Result<Duration, UsageError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(args: &[&str], vars: &[(&str, &str)]) -> Result<Command, UsageError> {
        let env = |key: &str| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| OsString::from(v))
        };
        parse(args.iter().copied(), env, 2)
    }

    fn serve(args: &[&str], vars: &[(&str, &str)]) -> Config {
        match parse_with(args, vars) {
            Ok(Command::Serve(config)) => config,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    fn error(args: &[&str], vars: &[(&str, &str)]) -> String {
        parse_with(args, vars).unwrap_err().0
    }

    #[test]
    fn defaults() {
        let config = serve(&[], &[]);
        assert_eq!(config.listen, Listen::AnyAddress(8080));
        assert_eq!(config.workers, 2);
        assert_eq!(config.text, "Hello, World!");
        assert_eq!(config.status, 200);
        assert!(!config.access_log);
        assert_eq!(config.grace, Duration::from_secs(10));
        assert_eq!(config.read_timeout, Duration::from_secs(75));
        assert_eq!(config.max_header_bytes, 65536);
        assert_eq!(config.max_connections, None);
    }

    #[test]
    fn limits_from_flags_and_environment() {
        let config = serve(&["--max-header-size", "2048", "--max-connections=10"], &[]);
        assert_eq!(
            (config.max_header_bytes, config.max_connections),
            (2048, Some(10))
        );
        let vars = [
            ("HELLOD_MAX_HEADER_SIZE", "4096"),
            ("HELLOD_MAX_CONNECTIONS", "7"),
        ];
        let config = serve(&[], &vars);
        assert_eq!(
            (config.max_header_bytes, config.max_connections),
            (4096, Some(7))
        );
        assert_eq!(
            error(&["--max-header-size", "100"], &[]),
            "invalid value '100' for --max-header-size: expected a whole number from 1024 to 1048576"
        );
        assert!(error(&[], &[("HELLOD_MAX_CONNECTIONS", "0")]).contains("HELLOD_MAX_CONNECTIONS"));
    }

    #[test]
    fn flag_beats_environment_beats_port() {
        let vars = [("HELLOD_LISTEN", "127.0.0.1:9000"), ("PORT", "7000")];
        assert_eq!(
            serve(&["--listen", "127.0.0.1:9100"], &vars).listen,
            Listen::Exact("127.0.0.1:9100".parse().unwrap())
        );
        assert_eq!(
            serve(&[], &vars).listen,
            Listen::Exact("127.0.0.1:9000".parse().unwrap())
        );
        assert_eq!(
            serve(&[], &[("PORT", "7000")]).listen,
            Listen::AnyAddress(7000)
        );
        assert_eq!(
            serve(&["--workers=3"], &[("HELLOD_WORKERS", "5")]).workers,
            3
        );
        assert_eq!(serve(&[], &[("HELLOD_WORKERS", "5")]).workers, 5);
    }

    #[test]
    fn listen_forms() {
        let listen = |a: &str| serve(&["--listen", a], &[]).listen;
        assert_eq!(listen(":0"), Listen::AnyAddress(0));
        assert_eq!(
            listen("[::1]:80"),
            Listen::Exact("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            listen("localhost:81"),
            Listen::Exact("127.0.0.1:81".parse().unwrap())
        );
        assert!(error(&["--listen", "example.com:80"], &[]).contains("example.com:80"));
    }

    #[test]
    fn loopback_target_of_unspecified_addresses() {
        assert_eq!(
            Listen::AnyAddress(1).loopback_target(),
            "127.0.0.1:1".parse().unwrap()
        );
        assert_eq!(
            Listen::Exact("[::]:3".parse().unwrap()).loopback_target(),
            "127.0.0.1:3".parse().unwrap()
        );
        assert_eq!(
            Listen::Exact("0.0.0.0:2".parse().unwrap()).loopback_target(),
            "127.0.0.1:2".parse().unwrap()
        );
        assert_eq!(
            Listen::Exact("10.1.2.3:4".parse().unwrap()).loopback_target(),
            "10.1.2.3:4".parse().unwrap()
        );
    }

    #[test]
    fn bad_values_name_the_flag_and_value() {
        assert_eq!(
            error(&["--workers", "0"], &[]),
            "invalid value '0' for --workers: expected a whole number from 1 to 1024"
        );
        assert!(
            error(&[], &[("HELLOD_WORKERS", "lots")])
                .starts_with("invalid value 'lots' for HELLOD_WORKERS")
        );
        assert!(error(&[], &[("PORT", "99999")]).starts_with("invalid value '99999' for PORT"));
        assert!(error(&["--listen", "nowhere"], &[]).contains("'nowhere' for --listen"));
        assert!(error(&["--status", "99"], &[]).contains("'99' for --status"));
        assert!(error(&["--status", "204"], &[]).contains("'204' for --status"));
        assert!(error(&["--grace", "-1"], &[]).contains("'-1' for --grace"));
        assert_eq!(
            error(&["--read-timeout", "0"], &[]),
            "invalid value '0' for --read-timeout: expected seconds from 0.1 to 86400, such as 10 or 0.5"
        );
        for bad in ["1e3", ".5", "1.2345", "86400.001", "NaN", "1,5"] {
            assert!(error(&["--grace", bad], &[]).contains(bad), "{bad}");
        }
        assert!(error(&[], &[("HELLOD_ACCESS_LOG", "maybe")]).contains("HELLOD_ACCESS_LOG"));
        assert!(error(&["--bogus"], &[]).contains("--bogus"));
        assert!(error(&["--workers"], &[]).contains("--workers"));
    }

    #[test]
    fn status_without_body_is_accepted_where_tiny_http_sends_it_right() {
        assert_eq!(serve(&["--status", "304"], &[]).status, 304);
        assert_eq!(serve(&[], &[("HELLOD_STATUS", "503")]).status, 503);
    }

    #[test]
    fn access_log_switches() {
        assert!(serve(&["--access-log"], &[]).access_log);
        assert!(serve(&[], &[("HELLOD_ACCESS_LOG", "true")]).access_log);
        assert!(!serve(&[], &[("HELLOD_ACCESS_LOG", "0")]).access_log);
    }

    #[test]
    fn fractional_seconds() {
        let grace = |s: &str| serve(&["--grace", s], &[]).grace;
        assert_eq!(grace("0.5"), Duration::from_millis(500));
        assert_eq!(grace("2.25"), Duration::from_millis(2250));
        assert_eq!(grace("0"), Duration::ZERO);
        assert_eq!(grace("86400"), Duration::from_secs(86400));
        assert_eq!(
            serve(&["--read-timeout", "0.1"], &[]).read_timeout,
            Duration::from_millis(100)
        );
    }

    #[test]
    fn headers_from_flags_or_environment() {
        assert_eq!(serve(&[], &[]).headers, []);
        let headers = serve(
            &[
                "--header",
                "X-Replica:pod-1",
                "--header=Cache-Control:  no-store \t",
            ],
            &[("HELLOD_HEADERS", "X-Ignored: yes")],
        )
        .headers;
        assert_eq!(
            headers,
            [
                ("X-Replica".into(), "pod-1".into()),
                ("Cache-Control".into(), "no-store".into())
            ]
        );
        // A Kubernetes `value: |` block: one header a line, a newline at the end; CRLF too.
        let headers = serve(
            &[],
            &[(
                "HELLOD_HEADERS",
                "X-Pod: web-1\r\n\nX-Tab: a\tb\nX-Empty:\n",
            )],
        )
        .headers;
        assert_eq!(
            headers,
            [
                ("X-Pod".into(), "web-1".into()),
                ("X-Tab".into(), "a\tb".into()),
                ("X-Empty".into(), "".into())
            ]
        );
        // Names may repeat, except the two that replace hellod's own.
        assert_eq!(
            serve(&["--header", "Vary: a", "--header", "vary: b"], &[])
                .headers
                .len(),
            2
        );
    }

    #[test]
    fn bad_headers_name_the_header_and_why() {
        assert_eq!(
            error(&["--header", "Content-Length: 5"], &[]),
            "invalid value 'Content-Length: 5' for --header: Content-Length cannot be set: \
             it would break the response's framing, which tiny_http sets"
        );
        for name in [
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "Keep-Alive",
            "Proxy-Connection",
            "te",
            "Trailer",
            "UPGRADE",
            "Date",
        ] {
            assert!(
                error(&["--header", &format!("{name}: x")], &[]).contains("cannot be set"),
                "{name}"
            );
        }
        for (header, why) in [
            ("X A: b", "is not a header name"),
            (": b", "is not a header name"),
            ("X-(A): b", "is not a header name"),
            ("Ä: b", "is not a header name"),
            ("No colon", "expected 'Name: value'"),
            ("", "expected 'Name: value'"),
            ("X-A: a\r\nSet-Cookie: x", "control character (\\x0d)"),
            ("X-A: a\nb", "control character (\\x0a)"),
            ("X-A: a\0b", "control character (\\x00)"),
            ("X-A: \x1b[31m", "control character (\\x1b)"),
            ("X-A: a\x7f", "control character (\\x7f)"),
            ("X-A: café", "not ASCII"),
        ] {
            let message = error(&["--header", header], &[]);
            assert!(message.contains(why), "{header:?}: {message}");
            assert!(!message.contains(['\r', '\n', '\0']), "{message:?}");
        }
        assert!(
            error(&["--header", "server: a", "--header", "Server: b"], &[])
                .contains("Server is given twice")
        );
        assert_eq!(
            error(
                &[],
                &[(
                    "HELLOD_HEADERS",
                    "X-Ok: 1\nContent-Type: a\ncontent-type: b"
                )]
            ),
            "invalid value 'content-type: b' for HELLOD_HEADERS: Content-Type is given twice; \
             it replaces hellod's own"
        );
    }

    #[test]
    fn subcommand_and_info() {
        assert_eq!(
            parse_with(&["healthcheck", "--url", "http://x/"], &[("PORT", "81")]),
            Ok(Command::Healthcheck {
                url: Some("http://x/".into()),
                listen: Listen::AnyAddress(81)
            })
        );
        assert_eq!(parse_with(&["--help"], &[]), Ok(Command::Help));
        assert_eq!(parse_with(&["-V"], &[]), Ok(Command::Version));
        assert!(error(&["--url", "http://x/"], &[]).contains("--url"));
        assert!(error(&["serve"], &[]).contains("serve"));
    }
}
