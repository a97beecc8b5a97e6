//! The access log: one line for every answer, hellod's own included, nothing unescaped.

use super::*;

/// Control bytes in the method and the target never reach tiny_http (a 400 from hellod), and
/// reach the log only escaped, each request on one line: what was read of the request line, up
/// to the byte that was refused.
#[test]
fn access_log_escapes_cr_lf_and_control_bytes_one_line_per_request() {
    let server = Server::start(&["--access-log"]);
    let cases: &[(&[u8], &str)] = &[
        (b"GET /a\rb HTTP/1.1", "GET /a"),
        (b"GET /a\nb HTTP/1.1", "GET /a\\x0a"),
        (
            b"GET /x\n[Thu,_01_Jan_1970]_forged\r200 HTTP/1.1",
            "GET /x\\x0a",
        ),
        (b"GET /\x1b[2J\x1b]0;title\x07 HTTP/1.1", "GET /\\x1b"),
        (b"G\x0bE\nT /m HTTP/1.1", "G\\x0b"),
        (b"GET /\xc3\xa9 HTTP/1.1", "GET /\\xc3"),
        (
            b"GET /q\"uote\\slash HTTP/1.1\r\nBad\x7f: v",
            "GET /q\\\"uote\\\\slash HTTP/1.1",
        ),
    ];
    for (request, logged) in cases {
        let mut stream = server.connect();
        stream.write_all(request).unwrap();
        stream
            .write_all(b"\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (received, _) = read_until_close(&mut stream, DEADLINE);
        let responses = parse_responses(&received, false).unwrap();
        assert_eq!(responses.len(), 1);
        assert_eq!(responses[0].status, 400, "{logged}");
        let line = server.next_line();
        let expected = format!("\"{logged}\" 400 11");
        assert!(
            line.ends_with(&expected),
            "{line:?} should end {expected:?}"
        );
        assert!(
            line.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "raw control byte in {line:?}"
        );
    }
}

/// hellod's own answers, given before tiny_http sees a request, are logged like the greeting:
/// 431, 400, 413, 505 and the head deadline's 408.
#[test]
fn access_log_has_a_line_for_every_answer_hellod_gives_itself() {
    let server = Server::start(&["--access-log", "--read-timeout", "0.5"]);
    let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(70_000));
    let cases: [(&str, &[u8], u16); 5] = [
        ("GET /aaaa", long_line.as_bytes(), 431),
        (
            "POST /two HTTP/1.1",
            b"POST /two HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
        ),
        (
            "POST /big HTTP/1.1",
            b"POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n",
            413,
        ),
        ("GET /h2 HTTP/2.0", b"GET /h2 HTTP/2.0\r\n\r\n", 505),
        ("GET /slow HTTP/1.1", b"GET /slow HTTP/1.1\r\nHost: t", 408),
    ];
    for (logged, request, status) in cases {
        let (received, ending) = exchange(&server, request, After::KeepOpen, DEADLINE);
        let statuses = common::statuses(&received, false).unwrap();
        assert_eq!(
            (statuses, ending),
            (vec![status], Ending::Closed),
            "{logged}"
        );
        let line = server.next_line();
        assert!(line.contains("] 127.0.0.1:"), "{line}");
        assert!(
            line.contains(&format!("\"{logged}")) && line.contains(&format!("\" {status} ")),
            "{line}"
        );
    }
}
