//! What request heads cost, and the budget that bounds it. tiny_http reads a
//! header line into a buffer that doubles with no limit and keeps every header it is sent; hellod
//! refuses a head past `--max-header-size` (64 KiB by default) or past 100 header fields with a
//! 431 as soon as the byte that crosses the budget arrives, before tiny_http buffers more.

use std::io::{ErrorKind, Write};
use std::iter;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{self, DEADLINE, Ending, Server, Usage, read_until_close};
use crate::{current, peak_memory_kib, reset_peak_memory, settle};

/// The bounds on peak resident memory above idle that the budget must keep.
const ONE_LINE_BOUND_KIB: u64 = 16 * 1024;
const HUNDRED_LINES_BOUND_KIB: u64 = 48 * 1024;
const MANY_HEADERS_BOUND_KIB: u64 = 16 * 1024;
/// A server that neither takes a client's bytes nor closes for this long has not refused it.
const STALL: Duration = Duration::from_secs(5);
/// The start of a head whose last header line the attacks make long.
const LINE_START: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ";
static FILLER: [u8; 64 * 1024] = [b'v'; 64 * 1024];

/// How one attacking connection ended.
#[derive(Debug)]
struct Outcome {
    /// Bytes the client got into the connection before the server stopped taking them.
    sent: u64,
    /// Why sending stopped before the end, if it did.
    send_error: Option<ErrorKind>,
    /// The statuses the server answered with, or why its bytes are not whole responses.
    statuses: Result<Vec<u16>, String>,
    ending: Ending,
}

impl Outcome {
    /// Refused as a head past the limits must be: closed by the server, with a 431 where the
    /// client could read one (a reset may destroy it in flight) and nothing else.
    fn refused(&self) -> bool {
        self.ending != Ending::StillOpen && matches!(self.statuses.as_deref(), Ok([] | [431]))
    }

    fn answered_431(&self) -> bool {
        matches!(self.statuses.as_deref(), Ok([431]))
    }
}

/// Connects, waits at `start` (all attackers at once) if given, sends `pieces` until the server
/// stops taking them (closed, reset, or nothing taken for [`STALL`]), then reads what it
/// answers until it closes.
fn attack<'a>(
    addr: SocketAddr,
    start: Option<&Barrier>,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Outcome {
    let mut stream = TcpStream::connect_timeout(&addr, DEADLINE).expect("connects");
    stream.set_write_timeout(Some(STALL)).unwrap();
    if let Some(start) = start {
        start.wait();
    }
    let (mut sent, mut send_error) = (0, None);
    for piece in pieces {
        match stream.write_all(piece) {
            Ok(()) => sent += piece.len() as u64,
            Err(e) => {
                send_error = Some(e.kind());
                break;
            }
        }
    }
    let (received, ending) = read_until_close(&mut stream, STALL);
    let statuses = common::statuses(&received, false);
    Outcome {
        sent,
        send_error,
        statuses,
        ending,
    }
}

/// A head with a header line of `bytes` that never ends, in 64 KiB pieces.
fn endless_line<'a>(bytes: usize) -> impl Iterator<Item = &'a [u8]> {
    iter::once(LINE_START).chain(iter::repeat_n(&FILLER[..], bytes / FILLER.len()))
}

/// Idle usage, with the peak memory counted from now.
fn idle(server: &Server) -> Usage {
    settle(server);
    reset_peak_memory(server.pid());
    current(server)
}

/// One huge header line: one connection streams a 512 MiB header line. Before the budget, tiny_http
/// read all of it into one buffer: +1,023 MiB at the peak.
#[test]
#[ignore]
fn a_512_mib_header_line_is_refused_in_bounded_memory() {
    let server = Server::start(&["--workers", "2"]);
    let idle = idle(&server);
    let started = Instant::now();
    let outcome = attack(server.addr, None, endless_line(512 << 20));
    let took = started.elapsed();
    let peak = peak_memory_kib(server.pid());
    println!(
        "a 512 MiB header line: {} bytes taken in {took:?}, then {:?}; answer {:?}, {:?}; peak \
         +{} KiB (idle {idle})",
        outcome.sent,
        outcome.send_error,
        outcome.statuses,
        outcome.ending,
        peak.saturating_sub(idle.rss_kib)
    );
    assert!(outcome.refused(), "not refused: {outcome:?}");
    assert!(
        peak <= idle.rss_kib + ONE_LINE_BOUND_KIB,
        "peak {peak} KiB, idle {idle}"
    );
    assert!(crate::common::timed_greeting(server.addr, DEADLINE).is_some());
}

/// Many huge header lines: 100 connections send 1 MiB header lines at once. Before the budget:
/// +101 MiB at the peak, and none cut.
#[test]
#[ignore]
fn a_hundred_1_mib_header_lines_at_once_are_refused_in_bounded_memory() {
    const CLIENTS: usize = 100;
    let server = Server::start(&["--workers", "2"]);
    let idle = idle(&server);
    let start = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (start, addr) = (start.clone(), server.addr);
            thread::spawn(move || attack(addr, Some(&start), endless_line(1 << 20)))
        })
        .collect();
    let outcomes: Vec<Outcome> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let peak = peak_memory_kib(server.pid());
    let answered_431 = outcomes.iter().filter(|o| o.answered_431()).count();
    let not_refused: Vec<&Outcome> = outcomes.iter().filter(|o| !o.refused()).collect();
    println!(
        "{CLIENTS} clients sending 1 MiB header lines at once: {answered_431} read a 431, {} \
         closed without one, {} not refused; peak +{} KiB (idle {idle})",
        CLIENTS - answered_431 - not_refused.len(),
        not_refused.len(),
        peak.saturating_sub(idle.rss_kib)
    );
    assert!(
        not_refused.is_empty(),
        "{} not refused, the first: {:?}",
        not_refused.len(),
        not_refused.first()
    );
    assert!(
        peak <= idle.rss_kib + HUNDRED_LINES_BOUND_KIB,
        "peak {peak} KiB, idle {idle}"
    );
}

/// Many small headers: one head of 100,000 small headers (1.2 MiB), which tiny_http kept every one
/// of and answered.
#[test]
#[ignore]
fn a_head_of_100_000_headers_is_refused_in_bounded_memory() {
    let server = Server::start(&["--workers", "2"]);
    let idle = idle(&server);
    let headers: Vec<String> = (0..100_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let head = iter::once(&b"GET / HTTP/1.1\r\nHost: t\r\n"[..])
        .chain(headers.iter().map(|h| h.as_bytes()))
        .chain(iter::once(&b"\r\n"[..]));
    let outcome = attack(server.addr, None, head);
    let peak = peak_memory_kib(server.pid());
    println!(
        "100,000 headers: {} bytes taken, then {:?}; answer {:?}, {:?}; peak +{} KiB (idle {idle})",
        outcome.sent,
        outcome.send_error,
        outcome.statuses,
        outcome.ending,
        peak.saturating_sub(idle.rss_kib)
    );
    assert!(
        outcome.refused() && outcome.answered_431(),
        "not refused with 431: {outcome:?}"
    );
    assert!(
        peak <= idle.rss_kib + MANY_HEADERS_BOUND_KIB,
        "peak {peak} KiB, idle {idle}"
    );
}

/// A request head, as the pieces [`attack`] sends.
type Head<'a> = Box<dyn Iterator<Item = &'a [u8]> + 'a>;

#[derive(Debug, Clone, Copy)]
enum Expect {
    Greeting,
    Answered431,
    /// A 431 if the client can read it, and the close.
    Refused,
}

/// Heads at the budget and past it, each on a new connection: a head of 64 KiB (the default
/// budget) or of 100 header fields is served; one byte or one field more gets 431 and the close,
/// as does a header line of 1 or 64 MiB (tiny_http alone grew 65 MB for the latter), each within
/// the memory bound of one long line.
#[test]
#[ignore]
fn header_sizes_cost() {
    const BUDGET: usize = 64 * 1024;
    let server = Server::start(&["--workers", "2"]);
    let padded_to = |bytes: usize| {
        let fixed = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Pad: \r\n\r\n".len();
        format!(
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(bytes - fixed)
        )
        .into_bytes()
    };
    // Host and Connection are two of the fields.
    let fields = |count: usize| {
        let more: String = (2..count).map(|i| format!("X-H{i}: v\r\n")).collect();
        format!("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{more}\r\n").into_bytes()
    };
    let cases = [
        (
            "a head of 64 KiB, the budget",
            padded_to(BUDGET),
            Expect::Greeting,
        ),
        (
            "a head of 64 KiB and 1 byte",
            padded_to(BUDGET + 1),
            Expect::Answered431,
        ),
        ("a head of 100 header fields", fields(100), Expect::Greeting),
        (
            "a head of 101 header fields",
            fields(101),
            Expect::Answered431,
        ),
    ];
    let mut runs: Vec<(&str, Head, Expect)> = Vec::new();
    for (what, head, expected) in &cases {
        runs.push((what, Box::new(iter::once(&head[..])), *expected));
    }
    // Still sending when the 431 comes: a reset may destroy it.
    for (what, bytes) in [
        ("a 1 MiB header line", 1 << 20),
        ("a 64 MiB header line", 64 << 20),
    ] {
        runs.push((what, Box::new(endless_line(bytes)), Expect::Refused));
    }
    for (what, head, expected) in runs {
        let idle = idle(&server);
        let outcome = attack(server.addr, None, head);
        let peak = peak_memory_kib(server.pid());
        println!(
            "{what}: answer {:?}, {:?}, after {} bytes; peak +{} KiB (idle {idle})",
            outcome.statuses,
            outcome.ending,
            outcome.sent,
            peak.saturating_sub(idle.rss_kib)
        );
        let as_expected = match expected {
            Expect::Greeting => {
                matches!(outcome.statuses.as_deref(), Ok([200])) && outcome.ending == Ending::Closed
            }
            Expect::Answered431 => outcome.refused() && outcome.answered_431(),
            Expect::Refused => outcome.refused(),
        };
        assert!(as_expected, "{what}: expected {expected:?}: {outcome:?}");
        assert!(
            peak <= idle.rss_kib + ONE_LINE_BOUND_KIB,
            "{what}: peak {peak} KiB, idle {idle}"
        );
    }
}
