//! What request heads cost: the head budget (issue 8 item 1).

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{self, DEADLINE, Ending, Server, parse_responses, read_until_close, wait_for};
use crate::{current, settle};

/// What unlimited headers cost: tiny_http reads a header line into a growing buffer with no
/// limit, and keeps every header. Measured with the line or the headers read but not ended,
/// then after the answer.
#[cfg(target_os = "linux")]
#[test]
#[ignore]
fn header_sizes_cost() {
    let server = Server::start(&["--workers", "2"]);
    settle(&server);
    let idle = current(&server);
    let many: String = (0..100_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let line_of = |mib: usize| format!("X-Big: {}\r\n", "v".repeat(mib << 20));
    let cases = [
        ("a 1 MiB header line", line_of(1)),
        ("a 16 MiB header line", line_of(16)),
        ("a 64 MiB header line", line_of(64)),
        ("100,000 headers (1.2 MiB)", many),
    ];
    for (what, headers) in cases {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        let client = stream.local_addr().unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
        stream.write_all(headers.as_bytes()).unwrap();
        wait_for("the server to read it all", DEADLINE, || {
            common::unread_by_server(server.addr, client) == Some(0)
        });
        let reading = current(&server);
        stream
            .write_all(b"\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (received, ending) = read_until_close(&mut stream, DEADLINE);
        let statuses: Vec<u16> = parse_responses(&received, false)
            .unwrap()
            .iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(
            (statuses.as_slice(), ending),
            (&[200, 200][..], Ending::Closed)
        );
        // Freed when the connection's thread drops the request, just after the answer.
        let answered = Instant::now();
        let mut after = current(&server);
        while after.rss_kib >= idle.rss_kib + 1024 && answered.elapsed() < DEADLINE {
            thread::sleep(Duration::from_millis(10));
            after = current(&server);
        }
        println!(
            "{what}: idle {idle}; while it is read +{} KiB; {:?} after the answer +{} KiB",
            reading.rss_kib.saturating_sub(idle.rss_kib),
            answered.elapsed(),
            after.rss_kib.saturating_sub(idle.rss_kib)
        );
        assert!(
            after.rss_kib < idle.rss_kib + 1024,
            "{what}: memory kept after the answer: {after}"
        );
    }
}
