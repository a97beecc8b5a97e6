//! Command line and environment: what to run, with which settings.
//!
//! Precedence, highest first: a flag, its `HELLOD_*` variable, `PORT` (port of the default address
//! only), the built-in default.

use std::ffi::OsString;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::{healthcheck, process};

mod headers;
#[cfg(test)]
mod tests;
mod values;

use headers::parse_headers;
use values::{
    HostName, parse_bool, parse_count, parse_listen, parse_port, parse_seconds, parse_status, utf8,
};

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
const MAX_SERVING_RANGE: (usize, usize) = (1, 100_000);
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
    /// None: derived from the memory, task and descriptor limits.
    pub max_serving: Option<usize>,
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

/// The `--help` text. Every limit a constant sets is formatted from that constant (a named
/// argument at the end, through [`size`] or [`seconds`] where it has a unit), never written out,
/// so that the help cannot drift from what hellod does; a new limit is one more argument.
pub fn help_text(
    default_workers: usize,
    default_serving: usize,
    default_connections: usize,
) -> String {
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
  --text TEXT           HELLOD_TEXT     response body; {{hostname}} in it becomes the machine's host name
                                        (the container's, the pod's), {{{{hostname}}}} a literal {{hostname}}
                                        [default: \"{DEFAULT_TEXT}\"]
  --status CODE         HELLOD_STATUS   response status, 200 to 599 except 204; 205 and 304 are sent
                                        without a body [default: {DEFAULT_STATUS}]
  --access-log          HELLOD_ACCESS_LOG=1
                                        one line per request on stdout, control bytes escaped [default: off]
  --grace SECONDS       HELLOD_GRACE    longest a stop on SIGTERM/SIGINT (Ctrl-C) may take: new connections
                                        are refused at once; each open one is read on, its last answer
                                        says Connection: close, or it is closed once quiet for {quiet}
                                        (at most half the grace) [default: {DEFAULT_GRACE_SECS}]
  --read-timeout SECONDS HELLOD_READ_TIMEOUT
                                        a connection silent (or not reading) this long is closed, and a
                                        request head must arrive whole this long after its first byte
                                        (else 408); also the keep-alive timeout, longer than common load
                                        balancers' 60 s [default: {DEFAULT_READ_TIMEOUT_SECS}]
  --max-header-size BYTES HELLOD_MAX_HEADER_SIZE
                                        largest request head (request line and headers), {min_head} to
                                        {max_head}; larger ones get 431 [default: {DEFAULT_MAX_HEADER_BYTES}]
  --max-connections N   HELLOD_MAX_CONNECTIONS
                                        connections open at once, waiting or served, 1 to {max_conns};
                                        past it, a 503 and a close [default: what the memory limit
                                        (cgroup) allows at {waiting_memory} a waiting connection, after
                                        {base_memory}, 1/{head_reserve} for request heads and what --max-serving
                                        takes; the open-files limit at one descriptor each (three
                                        served); whichever is least, here {default_connections}]
  --max-serving N       HELLOD_MAX_SERVING
                                        connections served at once, each on a thread of tiny_http's,
                                        1 to {max_serving}; the others wait in one event loop at the cost of
                                        a socket until a whole request head is there [default: 1/{serving_share} of
                                        the memory limit at {served_memory} each, the tasks limit, at most
                                        {default_max_serving}; here {default_serving}]
  --header 'NAME: VALUE' HELLOD_HEADERS (one header a line)
                                        a response header, repeatable; Content-Type and Server replace
                                        hellod's; Date, Content-Length, Transfer-Encoding and hop-by-hop
                                        headers (Connection, Keep-Alive, ...) are refused; {{hostname}}
                                        in a value as in --text (a host name not printable ASCII: exit 2)
  -h, --help                            print this help
  -V, --version                         print the version

healthcheck: GET URL [default: http://<listen address>/, an unspecified address meaning 127.0.0.1],
  {healthcheck_timeout} timeout; exit 0 on a 2xx answer, 1 otherwise. For images with no shell or curl.

Limits: at most {MAX_HEADER_FIELDS} header fields (431); unfinished request heads together at most 1/{head_share}
  of the memory limit, {head_budget} without one (503); bodies up to {MAX_BODY_BYTES} bytes (413), read and
  discarded; HTTP/1.0 and 1.1 only (505); one valid Host, which HTTP/1.0 may leave out (400);
  framing must be unambiguous (RFC 9112: one valid Content-Length, or the one transfer coding
  chunked; 400, or 501 for codings before chunked); chunk-size lines up to {MAX_CHUNK_LINE}
  bytes; chunked trailer fields are dropped. Every refusal closes the connection.
Exit codes: 0 stopped by SIGTERM/SIGINT (Ctrl-C), 1 runtime failure (e.g. address in use), 2 bad flag or value.
",
        version = env!("CARGO_PKG_VERSION"),
        MAX_CHUNK_LINE = crate::tiny_http_gaps::framing::MAX_CHUNK_LINE,
        min_head = MAX_HEADER_BYTES_RANGE.0,
        max_head = MAX_HEADER_BYTES_RANGE.1,
        max_conns = MAX_CONNECTIONS_RANGE.1,
        max_serving = MAX_SERVING_RANGE.1,
        waiting_memory = size(process::WAITING_MEMORY),
        served_memory = size(process::SERVED_MEMORY),
        serving_share = process::SERVING_SHARE,
        default_max_serving = process::DEFAULT_MAX_SERVING,
        base_memory = size(process::BASE_MEMORY),
        head_reserve = process::HEAD_RESERVE_SHARE,
        head_share = process::HEAD_SHARE,
        head_budget = size(process::DEFAULT_HEAD_BUDGET),
        healthcheck_timeout = seconds(healthcheck::TIMEOUT),
        quiet = seconds(crate::shutdown::QUIET_BEFORE_CLOSE),
    )
}

/// `bytes` in the largest binary unit that divides it: "48 KiB", "8 MiB", "1000 bytes".
fn size(bytes: u64) -> String {
    match bytes {
        0 => "0 bytes".to_owned(),
        b if b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// `duration` as seconds, to the millisecond: "2 s", "0.25 s".
fn seconds(duration: Duration) -> String {
    let millis = duration.subsec_millis();
    let fraction = format!(".{millis:03}");
    let fraction = fraction.trim_end_matches('0').trim_end_matches('.');
    format!("{}{fraction} s", duration.as_secs())
}

/// Reads the arguments (without the program name) and the environment through `env`, and the
/// machine's host name through `host_name` if a `{hostname}` asks for it.
pub fn parse<I, E, H>(
    args: I,
    env: E,
    host_name: H,
    default_workers: usize,
) -> Result<Command, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
    E: Fn(&str) -> Option<OsString>,
    H: Fn() -> Option<String>,
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
            Long("max-serving") => flags.max_serving = Some(parser.value()?),
            Long("header") => flags.headers.push(parser.value()?),
            Long("url") if healthcheck => url = Some(utf8("--url", parser.value()?)?),
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Value(word) if word == "healthcheck" && !healthcheck => healthcheck = true,
            other => return Err(other.unexpected().into()),
        }
    }

    let config = flags.resolve(&env, &mut HostName::new(&host_name), default_workers)?;
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
    max_serving: Option<OsString>,
}

impl Flags {
    fn resolve<E>(
        self,
        env: &E,
        host: &mut HostName,
        default_workers: usize,
    ) -> Result<Config, UsageError>
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
            Some((name, value)) => {
                let text = utf8(name, value)?;
                host.expand(&text).map_err(|why| {
                    UsageError(format!(
                        "invalid value '{}' for {name}: {why}",
                        headers::escape_controls(&text)
                    ))
                })?
            }
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
        let max_serving = setting(self.max_serving, "--max-serving", "HELLOD_MAX_SERVING")
            .map(|(name, value)| parse_count(name, &value, MAX_SERVING_RANGE))
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
        let headers = parse_headers(headers_name, &header_lines, host)?;
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
            max_serving,
            headers,
        })
    }
}
