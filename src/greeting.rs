//! The one response hellod sends, built once at start-up, and the access log line.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use tiny_http::{Header, Request, Response, StatusCode};

use crate::tiny_http_gaps;

pub struct Greeting {
    status: StatusCode,
    /// For each answer to [`Connection`], in its order: the `Server` header, carrying every other
    /// fixed line after its value (see [`tiny_http_gaps::server_header_with_lines`]).
    headers: [Header; 3],
    body: &'static [u8],
}

/// What the answer must say about the connection, mirroring when tiny_http keeps it open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connection {
    /// Nothing to say: HTTP/1.1 stays open, HTTP/1.0 closes.
    Default,
    /// The client asked to close (or to upgrade, which tiny_http answers by closing).
    Close,
    /// An HTTP/1.0 client asked to keep it open; it waits to hear that it may.
    KeepAlive,
}

impl Connection {
    fn of(request: &Request) -> Connection {
        // RFC 9112 6.3: a request framed both ways is answered, then the connection closed (the
        // socket hooks end the stream after its body).
        let has = |name: &'static str| request.headers().iter().any(|h| h.field.equiv(name));
        if has("Transfer-Encoding") && has("Content-Length") {
            return Connection::Close;
        }
        let asked = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Connection"))
            .map(|h| h.value.as_str().to_ascii_lowercase());
        match asked {
            Some(value) if value.contains("close") || value.contains("upgrade") => {
                Connection::Close
            }
            Some(value) if value.contains("keep-alive") && *request.http_version() == (1, 0) => {
                Connection::KeepAlive
            }
            _ => Connection::Default,
        }
    }
}

impl Greeting {
    /// `custom` headers come from the configuration, which has checked them: ASCII, no control
    /// bytes, none that hellod or tiny_http must set. A custom `Content-Type` or `Server` takes
    /// the place of hellod's.
    pub fn new(text: &str, status: u16, custom: &[(String, String)]) -> Greeting {
        // 205 and 304 must not carry content; tiny_http drops a 304's body by itself and keeps its
        // Content-Length, which then tells the size a 200 would have had, as RFC 9110 allows.
        let body = if status == 205 { "" } else { text };
        let custom_value = |name: &str| {
            custom
                .iter()
                .find(|(field, _)| field.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        };
        let server = custom_value("Server").unwrap_or("hellod");
        let content_type = custom_value("Content-Type").unwrap_or("text/plain; charset=utf-8");
        let mut lines = format!("\r\nContent-Type: {content_type}");
        for (field, value) in custom {
            if !field.eq_ignore_ascii_case("Server") && !field.eq_ignore_ascii_case("Content-Type")
            {
                let _ = write!(lines, "\r\n{field}: {value}");
            }
        }
        let with_connection = |connection: &str| format!("\r\nConnection: {connection}{lines}");
        Greeting {
            status: StatusCode(status),
            headers: [
                lines.clone(),
                with_connection("close"),
                with_connection("keep-alive"),
            ]
            .map(|lines| tiny_http_gaps::server_header_with_lines(server, &lines)),
            // Lives as long as the process; leaking it once lets every response borrow it.
            body: Box::leak(body.to_owned().into_boxed_str()).as_bytes(),
        }
    }

    /// The response to `request`, dated by `date`; `closing`: it says the connection closes.
    /// tiny_http adds a `Date` only where there is none.
    pub fn response(
        &self,
        request: &Request,
        date: &mut DateHeader,
        closing: bool,
    ) -> Response<&'static [u8]> {
        let connection = match closing {
            true => Connection::Close,
            false => Connection::of(request),
        };
        // Room for the `Content-Length` tiny_http adds: no reallocation.
        let mut headers = Vec::with_capacity(3);
        headers.extend([date.now(), self.headers[connection as usize].clone()]);
        Response::new(self.status, headers, self.body, Some(self.body.len()), None)
    }

    pub fn status(&self) -> u16 {
        self.status.0
    }

    /// Bytes of body a response to `request` carries.
    pub fn body_len(&self, request: &Request) -> usize {
        match (request.method(), self.status.0) {
            (tiny_http::Method::Head, _) | (_, 304) => 0,
            _ => self.body.len(),
        }
    }
}

/// A `Date` header formatted at most once a second, instead of once per response as tiny_http
/// does (about 1,800 instructions and 3 allocations each time). One per worker: no lock.
pub struct DateHeader {
    second: u64,
    header: Header,
}

impl Default for DateHeader {
    fn default() -> DateHeader {
        let now = SystemTime::now();
        DateHeader {
            second: unix_second(now),
            header: date_header(now),
        }
    }
}

impl DateHeader {
    pub fn now(&mut self) -> Header {
        let now = SystemTime::now();
        let second = unix_second(now);
        if second != self.second {
            self.second = second;
            self.header = date_header(now);
        }
        self.header.clone()
    }
}

fn unix_second(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn date_header(time: SystemTime) -> Header {
    Header::from_bytes("Date", httpdate::fmt_http_date(time)).expect("an HTTP date is ASCII")
}

/// The access log line of an answer to `request`.
pub fn access_log_line(request: &Request, status: u16, bytes: usize) -> String {
    let request_line = format!(
        "{} {} HTTP/{}",
        request.method(),
        request.url(),
        request.http_version()
    );
    log_line(
        request.remote_addr().copied(),
        request_line.as_bytes(),
        status,
        bytes,
    )
}

/// `[date] client "REQUEST LINE" status bytes`, with anything but printable ASCII escaped, so
/// that a request cannot forge or break log lines.
pub fn log_line(
    client: Option<SocketAddr>,
    request_line: &[u8],
    status: u16,
    bytes: usize,
) -> String {
    let mut line = String::with_capacity(96);
    let date = httpdate::fmt_http_date(SystemTime::now());
    let client = client.map_or_else(|| "-".to_owned(), |client| client.to_string());
    let _ = write!(line, "[{date}] {client} \"");
    escape_into(&mut line, request_line);
    let _ = write!(line, "\" {status} {bytes}");
    line
}

fn escape_into(out: &mut String, text: &[u8]) {
    for &byte in text {
        match byte {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(byte as char);
            }
            0x20..=0x7e => out.push(byte as char),
            _ => {
                let _ = write!(out, "\\x{byte:02x}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::escape_into;

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        escape_into(&mut out, text.as_bytes());
        out
    }

    #[test]
    fn control_bytes_and_quotes_are_escaped() {
        assert_eq!(escaped("/a b"), "/a b");
        assert_eq!(escaped("/\r\n\x1b[31m"), "/\\x0d\\x0a\\x1b[31m");
        assert_eq!(escaped("/\"q\"\\"), "/\\\"q\\\"\\\\");
        assert_eq!(escaped("/\u{7f}é"), "/\\x7f\\xc3\\xa9");
    }
}
