//! Requests smuggled through framing that a proxy in front could read another way, and request
//! lines of HTTP versions tiny_http deadlocks on: each is refused, the connection closed at once,
//! and nothing pipelined after it answered.

use super::*;

/// A request, with `GET /smuggled` pipelined right behind it on the same connection.
fn with_smuggled(head: &str, body: &str) -> Vec<u8> {
    format!(
        "POST / HTTP/1.1\r\nHost: t\r\n{head}\r\n{body}GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .into_bytes()
}

/// RFC 9112 6.1 and 6.3: an invalid Content-Length (not a plain decimal, or several that
/// differ) or a Transfer-Encoding whose last coding is not chunked gets a 400, one with other
/// codings before chunked (or chunked twice) a 501; both framings at once get their answer;
/// either way the connection closes at once (the read timeout is a minute) and `/smuggled` is
/// never answered.
#[test]
fn ambiguous_framing_is_refused_and_nothing_smuggled_through() {
    let server = Server::start(&["--read-timeout", "60"]);
    let cases: [(&str, &str, &str, u16); 12] = [
        (
            "TE and CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "0\r\n\r\n",
            200,
        ),
        (
            "two CLs",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "hello!",
            400,
        ),
        ("CL -1", "Content-Length: -1\r\n", "", 400),
        ("CL +5", "Content-Length: +5\r\n", "hello", 400),
        ("CL 0x5", "Content-Length: 0x5\r\n", "hello", 400),
        ("CL five", "Content-Length: five\r\n", "hello", 400),
        ("TE gzip", "Transfer-Encoding: gzip\r\n", "hello", 400),
        (
            "TE chunked, gzip",
            "Transfer-Encoding: chunked, gzip\r\n",
            "0\r\n\r\n",
            400,
        ),
        (
            "TE identity",
            "Transfer-Encoding: identity\r\n",
            "hello",
            400,
        ),
        (
            "TE chunked twice",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
            501,
        ),
        (
            "TE gzip, chunked",
            "Transfer-Encoding: gzip, chunked\r\n",
            "0\r\n\r\n",
            501,
        ),
        (
            "TE identity; chunked",
            "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
            501,
        ),
    ];
    for (name, head, body, status) in cases {
        let started = Instant::now();
        let (received, ending) = exchange(
            &server,
            &with_smuggled(head, body),
            After::KeepOpen,
            DEADLINE,
        );
        let waited = started.elapsed();
        let responses = parse_responses(&received, false).unwrap_or_else(|e| panic!("{name}: {e}"));
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        println!("{name:<18} {statuses:?} {ending:?} after {waited:?}");
        assert_eq!(statuses, [status], "{name}: /smuggled must not be answered");
        assert_eq!(
            ending,
            Ending::Closed,
            "{name}: closed at once, not at the read timeout"
        );
        let closes = responses[0]
            .headers
            .iter()
            .any(|(name, value)| name.eq_ignore_ascii_case("connection") && value == "close");
        assert!(
            closes,
            "{name}: the answer says Connection: close: {:?}",
            responses[0]
        );
    }
    assert_eq!(server.get("/").status(), 200);
}

/// tiny_http deadlocks a connection thread on any HTTP/2.0 or HTTP/3.0 request line (its 505
/// waits for the writer of the very request it rejects). hellod answers 505 before tiny_http
/// sees the line end, so the connection closes and its thread and descriptors are released.
#[test]
fn http2_request_lines_get_505_and_leave_nothing_behind() {
    const LINES: usize = 30;
    let mut server = Server::start(&["--read-timeout", "60"]);
    assert_eq!(server.get("/").status(), 200);
    let before = usage(server.pid()).unwrap();
    let lines = [
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: t\r\n\r\n",
        "GET / HTTP/3.0\r\n",
    ];
    for i in 0..LINES {
        let (received, ending) =
            exchange(&server, lines[i % 3].as_bytes(), After::KeepOpen, DEADLINE);
        let statuses = common::statuses(&received, false).unwrap();
        assert_eq!(
            (statuses, ending),
            (vec![505], Ending::Closed),
            "{:?}",
            lines[i % 3]
        );
    }
    // tiny_http's idle pool threads leave after 5 s; descriptors go with each connection.
    let mut after = before;
    wait_for(
        "the HTTP/2 connections' threads and descriptors to go",
        DEADLINE,
        || {
            after = usage(server.pid()).unwrap();
            after.fds <= before.fds + 2 && after.threads <= before.threads + 4
        },
    );
    println!("before: {before}; {LINES} HTTP/2 request lines later: {after}");
    assert_alive(&mut server);
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(2)).success());
}
