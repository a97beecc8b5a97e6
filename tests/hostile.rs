//! Hostile clients against the real binary: a corpus of malformed, ambiguous and abusive
//! requests, each followed by a good request on a new connection; the Content-Length values that
//! kill tiny_http 0.12; clients stalled in bodies or not reading their answers; control bytes
//! aimed at the access log; and generated requests (proptest) against one live server.
//!
//! Where tiny_http answers, the answer must be a well-formed 4xx/5xx, or the greeting where the
//! request is one tiny_http accepts. Cases that tiny_http closes without a word, or never
//! answers, are marked as such: they are documented in the README's Limits.

// Linux only: these read /proc (threads, descriptors, socket queues) and set process limits.
#![cfg(target_os = "linux")]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::{DEADLINE, Ending, Server, parse_responses, read_until_close, usage, wait_for};

const GREETING: &[u8] = b"Hello, World!";

/// What the client does once it has written its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Shuts its writing side and reads until the server closes.
    HalfClose,
    /// Stays silent, connection open, and reads until the server closes.
    KeepOpen,
    /// Closes at once without reading anything.
    HangUp,
    /// Resets the connection at once (SO_LINGER 0).
    Reset,
}

/// What the corpus expects of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Well-formed responses with these statuses, in this order (200s carry the greeting; a 100
    /// Continue is listed where it comes), then the server closes.
    Answers(&'static [u16]),
    /// tiny_http closes the connection without a byte of response.
    ClosedSilently,
    /// tiny_http neither answers nor closes (HTTP/2.0 and HTTP/3.0 request lines: see
    /// `http2_request_lines_are_never_answered_nor_closed`).
    NeitherAnswersNorCloses,
    /// The client hung up: nothing to read; the server must simply go on.
    Nothing,
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    after: After,
    expect: Expect,
}

fn case(name: &'static str, bytes: impl Into<Vec<u8>>, after: After, expect: Expect) -> Case {
    Case {
        name,
        bytes: bytes.into(),
        after,
        expect,
    }
}

/// Sends `bytes`, then does `after`; returns what came back (nothing for hang-ups).
fn exchange(server: &Server, bytes: &[u8], after: After, limit: Duration) -> (Vec<u8>, Ending) {
    let mut stream = server.connect();
    // The server may close before reading everything (it stops at the first bad line): a
    // failed write is part of the exchange, not a test failure.
    let _ = stream.write_all(bytes);
    match after {
        After::HalfClose => {
            let _ = stream.shutdown(Shutdown::Write);
            read_until_close(&mut stream, limit)
        }
        After::KeepOpen => read_until_close(&mut stream, limit),
        After::HangUp => (Vec::new(), Ending::Closed),
        After::Reset => {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            (Vec::new(), Ending::Reset)
        }
    }
}

fn pseudo_random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 56) as u8
        })
        .collect()
}

// One case a line, as a table.
#[rustfmt::skip]
fn corpus() -> Vec<Case> {
    use After::{HalfClose, HangUp, KeepOpen, Reset};
    use Expect::{Answers, ClosedSilently, NeitherAnswersNorCloses, Nothing};
    const OK: Expect = Answers(&[200]);
    const BAD: Expect = Answers(&[400]);
    let get = |extra: &str| format!("GET / HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
    let post = |headers: &str, body: &[u8]| {
        let mut bytes = format!("POST / HTTP/1.1\r\nHost: t\r\n{headers}\r\n").into_bytes();
        bytes.extend_from_slice(body);
        bytes
    };
    let many_headers: String = (0..10_000).map(|i| format!("X-H{i}: v{i}\r\n")).collect();
    let mut pipeline_then_leave = Vec::new();
    for _ in 0..2_000 {
        pipeline_then_leave.extend_from_slice(get("").as_bytes());
    }

    vec![
        // Garbage and binary.
        case("non-ASCII garbage line", &b"\x8f\x12garbage!!\r\n\r\n"[..], HalfClose, ClosedSilently),
        case("printable garbage line", "hello there\r\n\r\n", HalfClose, BAD),
        case("pseudo-random bytes", pseudo_random_bytes(8192, 7), HalfClose, ClosedSilently),
        case("4 KiB of zeros, no line end", vec![0; 4096], HalfClose, ClosedSilently),
        case("a line of zeros", [&[0u8; 100][..], b"\r\n\r\n"].concat(), HalfClose, BAD),
        case("CRLF flood", "\r\n".repeat(10_000), HalfClose, BAD),
        case("bare LF flood", "\n".repeat(10_000), KeepOpen, ClosedSilently),
        case("bare CR flood", "\r".repeat(10_000), KeepOpen, ClosedSilently),
        case("bare LF line ends", "GET / HTTP/1.1\nHost: t\n\n", KeepOpen, ClosedSilently),
        // Malformed request lines.
        case("no version", "GET /\r\n\r\n", HalfClose, BAD),
        case("no target", "GET HTTP/1.1\r\nHost: t\r\n\r\n", HalfClose, BAD),
        case("empty method", " / HTTP/1.1\r\nHost: t\r\n\r\n", HalfClose, BAD),
        case("double space", "GET  / HTTP/1.1\r\nHost: t\r\n\r\n", HalfClose, BAD),
        case("tab separators", "GET\t/\tHTTP/1.1\r\nHost: t\r\n\r\n", HalfClose, BAD),
        case("lowercase version", "GET / http/1.1\r\nHost: t\r\n\r\n", HalfClose, BAD),
        case("fourth word", "GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n", HalfClose, OK),
        case("non-ASCII target", &b"GET /\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n"[..], HalfClose, ClosedSilently),
        // Methods.
        case("unknown method", "FOO / HTTP/1.1\r\nHost: t\r\n\r\n", HalfClose, OK),
        case("10 KB method", format!("{} / HTTP/1.1\r\nHost: t\r\n\r\n", "M".repeat(10_000)), HalfClose, OK),
        case("method with control bytes", "G\x01\x1bT / HTTP/1.1\r\nHost: t\r\n\r\n", HalfClose, OK),
        // Versions.
        case("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", HalfClose, NeitherAnswersNorCloses),
        case("HTTP/2.0 request line", get("").replace("HTTP/1.1", "HTTP/2.0"), HalfClose, NeitherAnswersNorCloses),
        case("HTTP/3.0 request line", get("").replace("HTTP/1.1", "HTTP/3.0"), KeepOpen, NeitherAnswersNorCloses),
        case("HTTP/9.9", get("").replace("HTTP/1.1", "HTTP/9.9"), HalfClose, BAD),
        case("HTTP/1.2", get("").replace("HTTP/1.1", "HTTP/1.2"), HalfClose, BAD),
        case("HTTP/0.9 with headers", get("").replace("HTTP/1.1", "HTTP/0.9"), HalfClose, OK),
        case("HTTP/0.9 simple request", "GET /\r\n", HalfClose, BAD),
        case("HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", KeepOpen, OK),
        // Sizes.
        case("1 MB target", format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(1 << 20)), HalfClose, OK),
        case("10,000 headers", get(&many_headers), HalfClose, OK),
        case("1 MB header value", get(&format!("X-Big: {}\r\n", "v".repeat(1 << 20))), HalfClose, OK),
        // Header lines.
        case("header without colon", get("Bogus\r\n"), HalfClose, BAD),
        case("space in header name", get("Bad Name: v\r\n"), HalfClose, BAD),
        case("space before colon", get("Host : t\r\n"), HalfClose, BAD),
        case("obsolete line folding", get("X-A: a\r\n folded\r\n"), HalfClose, BAD),
        case("non-ASCII header value", &b"GET / HTTP/1.1\r\nX-A: \xff\r\n\r\n"[..], HalfClose, ClosedSilently),
        case("no Host", "GET / HTTP/1.1\r\n\r\n", HalfClose, OK),
        case("two Hosts", get("Host: u\r\n"), HalfClose, OK),
        // Content-Length games. tiny_http takes the first Content-Length and ignores one it
        // cannot parse as a usize (the request then has no body).
        case("same Content-Length twice", post("Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), HalfClose, OK),
        case("conflicting Content-Lengths", post("Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), HalfClose, OK),
        case("Content-Length list", post("Content-Length: 5, 6\r\n", b""), HalfClose, OK),
        case("negative Content-Length", post("Content-Length: -1\r\n", b""), HalfClose, OK),
        case("Content-Length +5", post("Content-Length: +5\r\n", b"hello"), HalfClose, OK),
        case("Content-Length 2^64", post("Content-Length: 18446744073709551616\r\n", b""), HalfClose, OK),
        case("Content-Length in hex", post("Content-Length: 0x5\r\n", b""), HalfClose, OK),
        case("body shorter than Content-Length", post("Content-Length: 5000\r\n", b"short"), HalfClose, OK),
        // Transfer-Encoding games (request smuggling classics): Transfer-Encoding wins over
        // Content-Length, any value of it means chunked, and what follows the chunked body is
        // the next request.
        case("CL.TE", post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\nG"), HalfClose, OK),
        case("CL.TE smuggling a request", post("Content-Length: 40\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"), HalfClose, Answers(&[200, 200])),
        case("TE.CL", post("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", b"8\r\nSMUGGLED\r\n0\r\n\r\n"), HalfClose, OK),
        case("TE: identity", post("Transfer-Encoding: identity\r\n", b"hello"), HalfClose, OK),
        case("TE: gzip, chunked", post("Transfer-Encoding: gzip, chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"), HalfClose, OK),
        case("TE: xchunked", post("Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), HalfClose, OK),
        case("TE twice", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), HalfClose, OK),
        case("TE with space before colon", post("Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), HalfClose, BAD),
        case("bad chunk size", post("Transfer-Encoding: chunked\r\n", b"zz\r\nhello\r\n0\r\n\r\n"), HalfClose, Answers(&[200, 400])),
        case("chunk size above 2^64", post("Transfer-Encoding: chunked\r\n", b"1ffffffffffffffff\r\nhello\r\n0\r\n\r\n"), HalfClose, Answers(&[200, 400])),
        case("2^64-1 chunk, then silence", post("Transfer-Encoding: chunked\r\n", b"ffffffffffffffff\r\nhello"), KeepOpen, OK),
        case("1 MB chunk extension", post("Transfer-Encoding: chunked\r\n", format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(1 << 20)).as_bytes()), HalfClose, OK),
        // Bodies where none is expected.
        case("GET with a small body", get("Content-Length: 5\r\n") + "hello", HalfClose, OK),
        case("GET with a 2 KB body", get("Content-Length: 2000\r\n") + &"x".repeat(2000), HalfClose, OK),
        case("GET with a chunked body", get("Transfer-Encoding: chunked\r\n") + "5\r\nhello\r\n0\r\n\r\n", HalfClose, OK),
        // Expect and Upgrade.
        case("Expect: 100-continue", post("Expect: 100-continue\r\nContent-Length: 5\r\n", b"hello"), HalfClose, Answers(&[100, 200])),
        case("Expect: something else", post("Expect: fish\r\n", b""), HalfClose, Answers(&[417])),
        case("Upgrade: h2c", get("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"), KeepOpen, OK),
        case("Upgrade: websocket", get("Connection: Upgrade\r\nUpgrade: websocket\r\n"), KeepOpen, OK),
        // Clients that leave early, and half-closed sockets.
        case("hang up mid request line", "GET / HT", HangUp, Nothing),
        case("hang up mid headers", "GET / HTTP/1.1\r\nHost: t\r\nX-", HangUp, Nothing),
        case("hang up mid body", post("Content-Length: 5000\r\n", &[b'x'; 100]), HangUp, Nothing),
        case("reset after a whole request", get(""), Reset, Nothing),
        case("reset mid body", post("Content-Length: 5000\r\n", &[b'x'; 2000]), Reset, Nothing),
        case("hang up mid response: 2000 pipelined, none read", pipeline_then_leave, HangUp, Nothing),
        case("half-closed mid headers", "GET / HTTP/1.1\r\nHo", HalfClose, ClosedSilently),
        case("half-closed after a request", get(""), HalfClose, OK),
        case("half-closed after a pipeline of 3", get("").repeat(3), HalfClose, Answers(&[200, 200, 200])),
        case("a request, then garbage", get("") + "garbage\r\n\r\n", HalfClose, Answers(&[200, 400])),
        case("a request, then silence", get(""), KeepOpen, OK),
    ]
}

fn check(case: &Case, received: &[u8], ending: Ending) -> Result<(), String> {
    match case.expect {
        Expect::Nothing => Ok(()),
        Expect::ClosedSilently => {
            // Closed with unread bytes still queued, the kernel resets instead of closing.
            if received.is_empty() && ending != Ending::StillOpen {
                Ok(())
            } else {
                Err(format!(
                    "expected a silent close, got {ending:?} after {received:?}"
                ))
            }
        }
        Expect::NeitherAnswersNorCloses => {
            if received.is_empty() && ending == Ending::StillOpen {
                Ok(())
            } else {
                Err(format!(
                    "tiny_http used to leave this hanging; now {ending:?} after {:?}: update \
                     the corpus and the README's Limits",
                    String::from_utf8_lossy(received)
                ))
            }
        }
        Expect::Answers(statuses) => {
            let responses = parse_responses(received, false)?;
            let got: Vec<u16> = responses.iter().map(|r| r.status).collect();
            if got != statuses {
                return Err(format!("expected {statuses:?}, got {got:?}"));
            }
            if let Some(r) = responses
                .iter()
                .find(|r| r.status == 200 && r.body != GREETING)
            {
                return Err(format!("a 200 without the greeting: {r:?}"));
            }
            if ending == Ending::StillOpen {
                return Err("answered but not closed".into());
            }
            Ok(())
        }
    }
}

/// A GET on a new connection must get the greeting, within the deadline.
fn greet(server: &Server) {
    let started = Instant::now();
    let request = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let (received, ending) = exchange(server, request, After::KeepOpen, DEADLINE);
    let responses = parse_responses(&received, false);
    let greeted =
        matches!(&responses, Ok(r) if r.len() == 1 && r[0].status == 200 && r[0].body == GREETING);
    assert!(
        greeted && ending == Ending::Closed,
        "no greeting after {:?}: {ending:?} {responses:?}",
        started.elapsed()
    );
}

fn assert_alive(server: &mut Server) {
    if let Some(status) = server.child.try_wait().unwrap() {
        let stderr: Vec<String> = server.stderr.try_iter().collect();
        panic!("hellod exited ({status}); stderr: {stderr:#?}");
    }
}

#[test]
fn hostile_corpus_each_followed_by_a_good_request() {
    // A short read timeout closes what stays silent quickly.
    let mut server = Server::start(&["--read-timeout", "0.3", "--workers", "2"]);
    let mut failures = Vec::new();
    for case in corpus() {
        let limit = match case.expect {
            Expect::NeitherAnswersNorCloses => Duration::from_millis(1500),
            _ => DEADLINE,
        };
        let started = Instant::now();
        let (received, ending) = exchange(&server, &case.bytes, case.after, limit);
        let outcome = check(&case, &received, ending);
        let first_line = received.split(|&b| b == b'\r').next().unwrap_or_default();
        println!(
            "{:<48} {:>6.0?} {:?} {:?} {}",
            case.name,
            started.elapsed(),
            case.after,
            ending,
            String::from_utf8_lossy(first_line)
        );
        if let Err(error) = outcome {
            failures.push(format!("{}: {error}", case.name));
        }
        assert_alive(&mut server);
        let good = server.get("/");
        assert_eq!(good.status(), 200, "good request after {}", case.name);
        assert_eq!(good.body, GREETING, "good request after {}", case.name);
    }
    let stderr: Vec<String> = server.stderr.try_iter().collect();
    println!("stderr: {stderr:#?}");
    assert!(failures.is_empty(), "{failures:#?}");
}

/// `Content-Length: 1000000000000` made tiny_http's discard buffer abort the process, and
/// `18446744073709551615` made it panic (capacity overflow); with each way a client can go on
/// after declaring it, the server answers with a well-formed 200 or 500 and stays up and small.
#[test]
fn content_length_killers() {
    let mut server = Server::start(&["--read-timeout", "0.3", "--workers", "1"]);
    let lengths = [
        "1000000000000",
        "18446744073709551615",
        "9223372036854775807",
        "9223372036854775808",
    ];
    for length in lengths {
        for after in [
            After::HalfClose,
            After::KeepOpen,
            After::HangUp,
            After::Reset,
        ] {
            let request = format!(
                "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\nsome body bytes"
            );
            let (received, ending) = exchange(&server, request.as_bytes(), after, DEADLINE);
            let statuses: Vec<u16> = parse_responses(&received, false)
                .unwrap_or_else(|e| panic!("{length} {after:?}: {e}"))
                .iter()
                .map(|r| r.status)
                .collect();
            println!("Content-Length {length:<21} {after:?}: {statuses:?} {ending:?}");
            if matches!(after, After::HalfClose | After::KeepOpen) {
                assert!(
                    statuses == [200] || statuses == [500],
                    "{length} {after:?}: {statuses:?}"
                );
                assert_eq!(ending, Ending::Closed, "{length} {after:?}");
            }
            assert_alive(&mut server);
            assert_eq!(server.get("/").status(), 200, "after {length} {after:?}");
        }
    }
    let resident = usage(server.pid()).expect("hellod runs");
    println!("after the Content-Length killers: {resident}");
    assert!(
        resident.rss_kib < 64 * 1024,
        "the discard buffers stayed resident: {resident}"
    );
    let stderr: Vec<String> = server.stderr.try_iter().collect();
    assert!(
        !stderr.iter().any(|l| l.contains("memory allocation")),
        "{stderr:#?}"
    );
}

/// Clients stalled inside a body shorter than its Content-Length (read by tiny_http before the
/// request is queued up to 1 KiB, lazily above), inside a chunk, or behind Expect: 100-continue,
/// each pinning no worker: with one worker and a read timeout longer than the test's patience,
/// a normal request is still answered while they stall.
#[cfg(target_os = "linux")]
#[test]
fn clients_stalled_in_bodies_do_not_pin_the_worker() {
    let server = Server::start(&["--workers", "1", "--read-timeout", "60"]);
    let stalls = [
        "POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789".to_owned(),
        format!(
            "POST /large HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n{}",
            "x".repeat(100)
        ),
        "POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n100\r\nabc"
            .to_owned(),
        "POST /expect HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
            .to_owned(),
        "GET /get-body HTTP/1.1\r\nHost: t\r\nContent-Length: 3000\r\n\r\nabc".to_owned(),
    ];
    let mut stalled = Vec::new();
    for stall in &stalls {
        for _ in 0..2 {
            let mut stream = server.connect();
            stream.write_all(stall.as_bytes()).unwrap();
            // One at a time, each read by the server before the next connects: a burst would
            // meet tiny_http's thread pool race instead (`a_burst_of_keep_alive_clients...`).
            let client = stream.local_addr().unwrap();
            wait_for("the server to read the stalled request", DEADLINE, || {
                common::unread_by_server(server.addr, client) == Some(0)
            });
            stalled.push(stream);
        }
    }
    // Within the deadline (20 s), far below the 60 s a pinned worker would wait.
    for _ in 0..5 {
        greet(&server);
    }
    // The stalled clients were still stalled meanwhile: not answered (except the interim 100
    // Continue) and not closed.
    for (i, stream) in stalled.iter_mut().enumerate() {
        stream.set_nonblocking(true).unwrap();
        let mut buffer = [0u8; 512];
        match stream.read(&mut buffer) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok(n) if buffer[..n].starts_with(b"HTTP/1.1 100 ") => {}
            other => panic!("stalled client {i} was not stalled: {other:?}"),
        }
    }
}

/// tiny_http's thread pool loses wake-ups: when several connections arrive together while
/// threads are idle, it counts a woken thread as idle until that thread runs, queues the next
/// connections for it instead of starting threads, and those wait until some connection ends.
/// With keep-alive clients that is the read timeout later. Every client of a burst must get its
/// answer; the read timeout (60 s) is far beyond the test's patience (20 s). Each round is a new
/// server; the race does not hit every burst, so up to five are tried.
#[test]
fn a_burst_of_keep_alive_clients_all_get_answers() {
    const CLIENTS: usize = 32;
    for round in 0..5 {
        let server = Server::start(&["--read-timeout", "60"]);
        let mut clients: Vec<TcpStream> = (0..CLIENTS)
            .map(|_| {
                let mut stream = server.connect();
                stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                    .unwrap();
                stream
            })
            .collect();
        let deadline = Instant::now() + DEADLINE;
        let mut unanswered = 0;
        for stream in &mut clients {
            stream
                .set_read_timeout(Some(
                    deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1)),
                ))
                .unwrap();
            let mut buffer = [0u8; 256];
            match stream.read(&mut buffer) {
                Ok(n) if buffer[..n].starts_with(b"HTTP/1.1 200 OK") => {}
                _ => unanswered += 1,
            }
        }
        println!("round {round}: {unanswered} of {CLIENTS} keep-alive clients unanswered");
        assert_eq!(
            unanswered, 0,
            "clients of a burst left waiting for a thread until the read timeout"
        );
    }
}

/// A client that pipelines requests and never reads the answers fills the socket buffers, and
/// the worker writing to it blocks for up to the write timeout (--read-timeout); tiny_http has
/// meanwhile read and queued the requests that follow, and every worker that takes one waits
/// for that answer to be written first. With as many such clients as workers (here one and
/// one), nobody else is answered. Once the worker is blocked on that client (or the server has
/// cut it off), a normal request must be answered within the deadline (20 s), far below the
/// 60 s write timeout.
#[cfg(target_os = "linux")]
#[test]
fn clients_that_never_read_their_answers_do_not_pin_the_worker() {
    let server = Server::start(&["--workers", "1", "--read-timeout", "60"]);
    let stream = server.connect();
    socket2::SockRef::from(&stream)
        .set_recv_buffer_size(4096)
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pump = {
        let (mut stream, stop) = (stream.try_clone().unwrap(), stop.clone());
        stream
            .set_write_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        thread::spawn(move || {
            let batch = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(64);
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match stream.write(&batch) {
                    Ok(n) => sent += n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => return (sent, Some(e)),
                }
            }
            (sent, None)
        })
    };
    wait_for("the worker to block on the client", DEADLINE, || {
        pump.is_finished()
            || common::thread_waits(server.pid())
                .iter()
                .any(|(name, wait)| {
                    // Blocked in a socket write (the function's name varies with the kernel).
                    name == "hellod-worker"
                        && matches!(wait.as_str(), "wait_woken" | "sk_stream_wait_memory")
                })
    });
    let meanwhile = usage(server.pid()).unwrap();
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(|| greet(&server));
    let waited = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, cut) = pump.join().unwrap();
    println!(
        "{sent} bytes of pipelined requests sent ({} requests), client cut off: {cut:?}; hellod \
         meanwhile: {meanwhile}; a normal request then waited {waited:?}",
        sent / 28
    );
    drop(stream);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Control bytes in the method and the target reach the log only escaped, each request on one
/// line: bare CR and bare LF do not end a request line for tiny_http, so they get that far;
/// CR LF does end it, and the rest is no request line at all (400, not logged).
#[test]
fn access_log_escapes_cr_lf_and_control_bytes_one_line_per_request() {
    let server = Server::start(&["--access-log"]);
    let cases: &[(&[u8], &str)] = &[
        (b"GET /a\rb HTTP/1.1", "GET /a\\x0db HTTP/1.1"),
        (b"GET /a\nb HTTP/1.1", "GET /a\\x0ab HTTP/1.1"),
        (
            b"GET /x\n[Thu,_01_Jan_1970]_forged\r200 HTTP/1.1",
            "GET /x\\x0a[Thu,_01_Jan_1970]_forged\\x0d200 HTTP/1.1",
        ),
        (
            b"GET /\x1b[2J\x1b]0;title\x07 HTTP/1.1",
            "GET /\\x1b[2J\\x1b]0;title\\x07 HTTP/1.1",
        ),
        (
            b"GET /\x00nul\x7fdel\x08bs\ttab\x0bvt\x0cff HTTP/1.1",
            "GET /\\x00nul\\x7fdel\\x08bs\\x09tab\\x0bvt\\x0cff HTTP/1.1",
        ),
        (b"G\x0bE\nT /m HTTP/1.1", "G\\x0bE\\x0aT /m HTTP/1.1"),
        (
            b"GET /q\"uote\\slash HTTP/1.1",
            "GET /q\\\"uote\\\\slash HTTP/1.1",
        ),
        (
            b"GET /trailing-cr\r HTTP/1.0",
            "GET /trailing-cr\\x0d HTTP/1.0",
        ),
    ];
    for (request_line, logged) in cases {
        let mut stream = server.connect();
        stream.write_all(request_line).unwrap();
        stream
            .write_all(b"\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (received, _) = read_until_close(&mut stream, DEADLINE);
        let responses = parse_responses(&received, false).unwrap();
        assert_eq!(responses.len(), 1);
        assert_eq!(responses[0].status, 200, "{logged}");
        let line = server.next_line();
        let expected = format!("\"{logged}\" 200 13");
        assert!(
            line.ends_with(&expected),
            "{line:?} should end {expected:?}"
        );
        assert!(
            line.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "raw control byte in {line:?}"
        );
    }
    // CR LF inside what the client meant as a target ends the request line there.
    let mut stream = server.connect();
    stream
        .write_all(b"GET /split\r\n[forged] \"GET / HTTP/1.1\" 200 13\r\n\r\n")
        .unwrap();
    let (received, _) = read_until_close(&mut stream, DEADLINE);
    let statuses: Vec<u16> = parse_responses(&received, false)
        .unwrap()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [400]);
    // Nothing was logged for it: the next line is the marker's.
    let mut marker = server.connect();
    marker
        .write_all(b"GET /marker HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    read_until_close(&mut marker, DEADLINE);
    let line = server.next_line();
    assert!(line.contains("\"GET /marker HTTP/1.1\" 200 13"), "{line}");
}

/// A request answered with the greeting is logged, even when tiny_http panics afterwards while
/// throwing away the rest of its body (`Content-Length: 18446744073709551615`, client silent).
#[test]
fn access_log_has_a_line_for_every_greeting_sent() {
    let server = Server::start(&["--access-log", "--read-timeout", "0.3"]);
    let mut stream = server.connect();
    stream
        .write_all(
            b"POST /huge HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551615\r\n\r\nabc",
        )
        .unwrap();
    let (received, _) = read_until_close(&mut stream, DEADLINE);
    let statuses: Vec<u16> = parse_responses(&received, false)
        .unwrap()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [200], "answered once the body timed out");
    let mut marker = server.connect();
    marker
        .write_all(b"GET /marker HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    read_until_close(&mut marker, DEADLINE);
    let mut lines = vec![server.next_line()];
    if !lines[0].contains("/marker") {
        lines.push(server.next_line());
    }
    assert!(
        lines[0].contains("\"POST /huge HTTP/1.1\" 200 13"),
        "the greeting sent for /huge was not logged: {lines:?}"
    );
}

/// Documents a limit that cannot be worked around from outside tiny_http: a request line with
/// version HTTP/2.0 or HTTP/3.0 makes tiny_http's connection thread wait forever for itself
/// (its 505 waits, in a SequentialWriter, for the writer of the request it is rejecting, which
/// is only dropped after the 505 is written). The connection is never answered nor closed, not
/// even after the client leaves or the read timeout passes: each costs a thread and two
/// descriptors until the process exits. The server goes on serving everyone else.
#[cfg(target_os = "linux")]
#[test]
fn http2_request_lines_are_never_answered_nor_closed() {
    const LINES: usize = 20;
    let mut server = Server::start(&["--read-timeout", "0.3"]);
    let before = usage(server.pid()).unwrap();
    for i in 0..LINES {
        let version = if i % 2 == 0 { "HTTP/2.0" } else { "HTTP/3.0" };
        let mut stream = server.connect();
        write!(stream, "GET /{i} {version}\r\nHost: t\r\n\r\n").unwrap();
        // The client gives up and leaves; the server side stays.
        drop(stream);
    }
    let mut after = before;
    wait_for("the HTTP/2.0 connections to be taken up", DEADLINE, || {
        after = usage(server.pid()).unwrap();
        after.fds + 1 >= before.fds + 2 * LINES
    });
    // Not synchronisation but the observation itself: still held after more than six read
    // timeouts, within which the descriptors of any other silent connection are released.
    thread::sleep(Duration::from_secs(2));
    after = usage(server.pid()).unwrap();
    println!("before: {before}; {LINES} HTTP/2.0 request lines and 2 s later: {after}");
    // Give or take the listener's duplicate, closed for a moment when an accept loop restarts.
    assert!(
        after.fds + 1 >= before.fds + 2 * LINES,
        "hellod now releases HTTP/2.0 connections: update this test and the README's Limits"
    );
    assert_alive(&mut server);
    assert_eq!(server.get("/").status(), 200);
}

mod generated {
    //! Generated requests: a grammar of request lines, headers and bodies with bad choices mixed
    //! in, cut short at random, and ended by the client in each of its ways.

    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    #[derive(Debug, Clone)]
    struct Generated {
        bytes: Vec<u8>,
        after: After,
        head: bool,
        /// HTTP/2.0 or HTTP/3.0 in the request line: may be left hanging (documented).
        may_hang: bool,
    }

    fn text(choices: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
        prop::sample::select(choices).prop_map(|s| s.as_bytes().to_vec())
    }

    fn method() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            8 => text(&["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "BREW"]),
            1 => "[A-Za-z-]{0,12}".prop_map(String::into_bytes),
            1 => prop::collection::vec(any::<u8>(), 0..12),
        ]
    }

    fn target() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            6 => "/[a-zA-Z0-9/._~%?=&;:@!$'()*+,-]{0,40}".prop_map(String::into_bytes),
            1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| [&b"/"[..], &b].concat()),
            1 => (1usize..100_000).prop_map(|n| format!("/{}", "a".repeat(n)).into_bytes()),
            1 => text(&["*", "http://x/y", "", "//", "/%00"]),
        ]
    }

    fn version() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            16 => text(&["HTTP/1.1"]),
            4 => text(&["HTTP/1.0"]),
            2 => text(&["HTTP/0.9", "HTTP/9.9", "HTTP/1.2", "http/1.1", "HTTP/1.1 x", "", "HTTP/", "HTTP/1.1\0"]),
            1 => text(&["HTTP/2.0", "HTTP/3.0"]),
            1 => prop::collection::vec(any::<u8>(), 0..10),
        ]
    }

    fn separator() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![20 => text(&[" "]), 1 => text(&["", "  ", "\t", "\r", "\n"])]
    }

    fn line_end() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![20 => text(&["\r\n"]), 1 => text(&["\n", "\r", "\r\r\n", "\n\r"])]
    }

    fn length() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => (0usize..3000).prop_map(|n| n.to_string()),
            1 => prop::sample::select(&[
                "1000000000000", "18446744073709551615", "18446744073709551616",
                "9223372036854775808", "-1", "+5", "5, 5", "0x10", "", " 7 ",
            ][..]).prop_map(str::to_owned),
        ]
    }

    fn header() -> impl Strategy<Value = Vec<u8>> {
        let named = |name: &'static str, value: BoxedStrategy<String>| {
            value.prop_map(move |v| format!("{name}: {v}").into_bytes())
        };
        let pick = |values: &'static [&'static str]| {
            prop::sample::select(values).prop_map(str::to_owned).boxed()
        };
        prop_oneof![
            3 => named("Host", pick(&["t", "", "a b", "x:1"])),
            3 => named("Content-Length", length().boxed()),
            2 => named("Transfer-Encoding", pick(&["chunked", "identity", "gzip, chunked", "chunked, gzip", " chunked", "xchunked", ""])),
            2 => named("Connection", pick(&["close", "keep-alive", "Upgrade", "upgrade, close", ""])),
            1 => named("Expect", pick(&["100-continue", "fish", ""])),
            1 => named("Upgrade", pick(&["h2c", "websocket"])),
            2 => ("[!-9;-~]{1,12}", "[ -~]{0,30}").prop_map(|(n, v)| format!("{n}: {v}").into_bytes()),
            1 => prop::collection::vec(any::<u8>(), 0..30),
        ]
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => Just(Vec::new()),
            2 => prop::collection::vec(any::<u8>(), 0..3000),
            2 => prop::collection::vec(prop::collection::vec(any::<u8>(), 1..600), 0..4)
                .prop_map(|chunks| {
                    let mut body = Vec::new();
                    for chunk in chunks {
                        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                        body.extend_from_slice(&chunk);
                        body.extend_from_slice(b"\r\n");
                    }
                    body.extend_from_slice(b"0\r\n\r\n");
                    body
                }),
            1 => text(&["zz\r\n", "5\r\nabc", "ffffffffffffffff\r\nabc", "0\r\n", "5;ext\r\nhello\r\n0\r\n\r\n"]),
        ]
    }

    fn after() -> impl Strategy<Value = After> {
        prop_oneof![
            12 => Just(After::HalfClose),
            2 => Just(After::KeepOpen),
            1 => Just(After::HangUp),
            1 => Just(After::Reset),
        ]
    }

    prop_compose! {
        fn request()(
            method in method(),
            sep1 in separator(),
            target in target(),
            sep2 in separator(),
            version in version(),
            eol in line_end(),
            headers in prop::collection::vec(header(), 0..10),
            many in prop_oneof![8 => Just(0usize), 1 => 1usize..3000],
            body in body(),
            cut in proptest::option::weighted(0.15, any::<prop::sample::Index>()),
            after in after(),
        ) -> Generated {
            let mut bytes = [&method[..], &sep1, &target, &sep2, &version, &eol].concat();
            for header in &headers {
                bytes.extend_from_slice(header);
                bytes.extend_from_slice(&eol);
            }
            for i in 0..many {
                bytes.extend_from_slice(format!("X-{i}: v").as_bytes());
                bytes.extend_from_slice(&eol);
            }
            bytes.extend_from_slice(&eol);
            bytes.extend_from_slice(&body);
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            let may_hang = version == b"HTTP/2.0" || version == b"HTTP/3.0";
            Generated { bytes, after, head: method == b"HEAD", may_hang }
        }
    }

    fn check_generated(server: &mut Server, request: &Generated) -> Result<(), TestCaseError> {
        // The server's read timeout is 0.3 s: whatever it does not answer, it closes within a
        // few of those (a body read, its discard, the next request line).
        let limit = if request.may_hang {
            Duration::from_millis(800)
        } else {
            Duration::from_secs(5)
        };
        let (received, ending) = exchange(server, &request.bytes, request.after, limit);
        match parse_responses(&received, request.head) {
            Ok(responses) => {
                for response in &responses {
                    let allowed = matches!(response.status, 100 | 200 | 400..=599);
                    prop_assert!(allowed, "status {} in {responses:?}", response.status);
                    if response.status == 200 && !(request.head && response.body.is_empty()) {
                        prop_assert_eq!(&response.body[..], GREETING);
                    }
                }
            }
            // A reset may cut the last answer short; everything before it was parsed.
            Err(error) if ending == Ending::Reset => {
                let _ = error;
            }
            Err(error) => return Err(TestCaseError::fail(format!("malformed answer: {error}"))),
        }
        prop_assert!(
            ending != Ending::StillOpen || request.may_hang,
            "neither closed nor answered within {limit:?}: {:?}",
            String::from_utf8_lossy(&received)
        );
        if let Some(status) = server.child.try_wait().unwrap() {
            return Err(TestCaseError::fail(format!("hellod exited: {status}")));
        }
        let good = server.get("/");
        prop_assert_eq!(good.status(), 200);
        prop_assert_eq!(&good.body[..], GREETING);
        Ok(())
    }

    #[test]
    fn generated_requests_never_kill_or_silence_it() {
        let server = Mutex::new(Server::start(&["--read-timeout", "0.3", "--workers", "2"]));
        let first_failure = Mutex::new(None::<String>);
        let mut runner = TestRunner::new(Config {
            cases: 200,
            failure_persistence: None,
            max_shrink_iters: 64,
            ..Config::default()
        });
        let result = runner.run(&request(), |request| {
            let mut server = server.lock().unwrap();
            let outcome = check_generated(&mut server, &request);
            if let Err(error) = &outcome {
                first_failure.lock().unwrap().get_or_insert_with(|| {
                    format!("{error}\nfor {:?}", String::from_utf8_lossy(&request.bytes))
                });
            }
            outcome
        });
        let mut server = server.into_inner().unwrap();
        let stderr: Vec<String> = server.stderr.try_iter().collect();
        if let Err(error) = result {
            let _ = server.child.kill();
            panic!(
                "{error}\nfirst failure before shrinking: {}\nstderr: {stderr:#?}",
                first_failure.lock().unwrap().as_deref().unwrap_or("-")
            );
        }
        println!("stderr after the generated requests: {stderr:#?}");
    }
}
