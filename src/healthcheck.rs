//! `hellod healthcheck`: one GET, for images that have no shell and no curl.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::Listen;

/// For connecting, for sending the request and for each read of the answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// GETs `url` (default: the server at `listen`, over loopback when it listens on every address)
/// and returns its status line if the status is 2xx, or why it failed.
pub fn check(url: Option<&str>, listen: Listen) -> Result<String, String> {
    let url = url.map_or_else(
        || format!("http://{}/", listen.loopback_target()),
        str::to_owned,
    );
    let fail = |why: String| format!("{url}: {why}");
    let (authority, path) =
        split_http_url(&url).ok_or_else(|| fail("expected http://HOST[:PORT][/PATH]".into()))?;
    let address = socket_address(authority)
        .ok_or_else(|| fail("expected an IP address or localhost as the host".into()))?;
    let status_line = get(address, authority, path).map_err(|e| fail(e.to_string()))?;
    let code = status_line.split(' ').nth(1).unwrap_or("");
    if code.len() == 3 && code.starts_with('2') {
        Ok(status_line)
    } else {
        Err(fail(status_line))
    }
}

/// `IP[:PORT]`, `[IPv6][:PORT]` or `localhost[:PORT]`: no resolver, to keep the binary small.
fn socket_address(authority: &str) -> Option<SocketAddr> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
        _ => (authority, 80),
    };
    let ip: IpAddr = match host {
        "localhost" => Ipv4Addr::LOCALHOST.into(),
        _ => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?,
    };
    Some(SocketAddr::new(ip, port))
}

fn split_http_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    (!authority.is_empty()).then_some((authority, path))
}

fn get(address: SocketAddr, host: &str, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: hellod-healthcheck\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut byte = [0; 1];
    // The status line is all that matters; it is short, so byte reads cost nothing here.
    while !head.ends_with(b"\r\n") && head.len() < 1024 && stream.read(&mut byte)? == 1 {
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head).trim_end().to_owned();
    if line.starts_with("HTTP/") {
        Ok(line)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no HTTP status line in the answer",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{socket_address, split_http_url};

    #[test]
    fn urls() {
        assert_eq!(split_http_url("http://a:1/b?c"), Some(("a:1", "/b?c")));
        assert_eq!(
            split_http_url("http://[::1]:8080"),
            Some(("[::1]:8080", "/"))
        );
        assert_eq!(split_http_url("https://a/"), None);
        assert_eq!(split_http_url("http:///"), None);
    }

    #[test]
    fn hosts() {
        let addr = |s: &str| socket_address(s).map(|a| a.to_string());
        assert_eq!(addr("127.0.0.1:9"), Some("127.0.0.1:9".into()));
        assert_eq!(addr("[::1]:9"), Some("[::1]:9".into()));
        assert_eq!(addr("[::1]"), Some("[::1]:80".into()));
        assert_eq!(addr("localhost"), Some("127.0.0.1:80".into()));
        assert_eq!(addr("example.com:80"), None);
        assert_eq!(addr("127.0.0.1:x"), None);
    }
}
