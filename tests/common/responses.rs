//! Reading what the server sent: answers parsed from raw bytes, how a connection ended.

use super::*;

/// How the server side of a raw exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// End of stream: the server closed (or shut) its side.
    Closed,
    /// The connection was reset.
    Reset,
    /// Still open when the reader gave up.
    StillOpen,
}

/// Reads what the server sends until it closes the connection or `limit` passes.
pub fn read_until_close(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Ending) {
    let deadline = Instant::now() + limit;
    let mut received = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (received, Ending::StillOpen);
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => return (received, Ending::Closed),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (received, Ending::StillOpen);
            }
            Err(_) => return (received, Ending::Reset),
        }
    }
}

/// One response as parsed by [`parse_responses`].
#[derive(Debug, Clone)]
pub struct Parsed {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Parses `bytes` strictly as a sequence of whole HTTP/1.x responses: `HTTP/d.d NNN reason`,
/// printable ASCII header lines `Name: value` ended by CRLF, exactly one `Content-Length` and
/// that many bytes of body (none for 1xx, 204, 304, or the final answer to a HEAD when
/// `head` is true). Anything left over, or malformed, is an error naming it.
pub fn parse_responses(bytes: &[u8], head: bool) -> Result<Vec<Parsed>, String> {
    let mut responses = Vec::new();
    let mut rest = bytes;
    let mut head_pending = head;
    while !rest.is_empty() {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("incomplete head: {:?}", String::from_utf8_lossy(rest)))?;
        let head_text = std::str::from_utf8(&rest[..end])
            .map_err(|_| format!("non-UTF-8 head: {:?}", &rest[..end]))?;
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut words = status_line.splitn(3, ' ');
        let version = words.next().unwrap_or_default();
        let code = words.next().unwrap_or_default();
        let reason = words.next().unwrap_or_default();
        let version_ok = version.len() == 8
            && version.starts_with("HTTP/")
            && version.as_bytes()[5].is_ascii_digit()
            && version.as_bytes()[6] == b'.'
            && version.as_bytes()[7].is_ascii_digit();
        let status: u16 = match code.parse() {
            Ok(status) if code.len() == 3 && (100..600).contains(&status) => status,
            _ => return Err(format!("bad status line {status_line:?}")),
        };
        if !version_ok || reason.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
            return Err(format!("bad status line {status_line:?}"));
        }
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(": ")
                .ok_or_else(|| format!("bad header line {line:?}"))?;
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if name.is_empty()
                || !name.bytes().all(token)
                || value.bytes().any(|b| !(0x20..0x7f).contains(&b))
            {
                return Err(format!("bad header line {line:?}"));
            }
            headers.push((name.to_owned(), value.to_owned()));
        }
        let lengths: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
            .map(|(_, v)| v.as_str())
            .collect();
        let length: usize = match lengths[..] {
            [one] => one
                .parse()
                .map_err(|_| format!("bad Content-Length {one:?}"))?,
            _ => return Err(format!("not one Content-Length: {headers:?}")),
        };
        rest = &rest[end + 4..];
        let interim = (100..200).contains(&status);
        let bodyless = interim || status == 204 || status == 304 || head_pending;
        let body_len = if bodyless { 0 } else { length };
        if rest.len() < body_len {
            return Err(format!(
                "body cut short: {} of {body_len} bytes after {status_line:?}",
                rest.len()
            ));
        }
        if !interim {
            head_pending = false;
        }
        responses.push(Parsed {
            version: version.to_owned(),
            status,
            headers,
            body: rest[..body_len].to_vec(),
        });
        rest = &rest[body_len..];
    }
    Ok(responses)
}

/// The statuses of the responses in `bytes`, parsed as [`parse_responses`] does.
pub fn statuses(bytes: &[u8], head: bool) -> Result<Vec<u16>, String> {
    parse_responses(bytes, head).map(|responses| responses.iter().map(|r| r.status).collect())
}

/// `count` new connections to `server`, each with one keep-alive GET sent and nothing read.
pub fn connections_with_a_get(server: &Server, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = server.connect();
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            stream
        })
        .collect()
}

/// A GET on a new connection, timed from connect to the last byte of the greeting; None if it
/// fails or is not the 200 greeting within `limit`.
pub fn timed_greeting(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, limit).ok()?;
    stream.set_nodelay(true).ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let left = limit.saturating_sub(started.elapsed());
    let (bytes, ending) = read_until_close(&mut stream, left);
    let elapsed = started.elapsed();
    let responses = parse_responses(&bytes, false).ok()?;
    let greeted = ending == Ending::Closed
        && responses.len() == 1
        && responses[0].status == 200
        && responses[0].body == b"Hello, World!";
    greeted.then_some(elapsed)
}
