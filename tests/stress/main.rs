//! The heavy robustness cases, against the release binary, one at a time:
//!
//! ```text
//! cargo test --release --test stress -- --ignored --test-threads=1 --nocapture
//! ```
//!
//! (`tests/stress.sh` runs them so, with the open-files limit raised). Each is bounded in time
//! and prints what it measured: resident memory, threads, descriptors, latencies, recovery
//! times. Only the timings hellod promises are asserted: a p99 under 10 ms beside stalled
//! clients, serving again within one second of the end of an accept failure, and the bounds
//! against attacks (a head's deadline, a stop after an attack).

// Linux only: these read /proc (threads, descriptors, socket queues) and set process limits.
#![cfg(target_os = "linux")]

#[path = "../common/mod.rs"]
mod common;

mod accept_failures;
mod attacks;
mod cuts;
mod floods;
mod head_budget;
mod out_of_threads;
mod sigterm;
mod soak;
mod stalled;
mod stopping;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    DEADLINE, Ending, Parsed, Server, Usage, parse_responses, timed_greeting, usage, wait_for,
};

const GREETING: &[u8] = b"Hello, World!";
/// The bound on serving again once an accept failure's cause is gone.
const RECOVERY_BOUND: Duration = Duration::from_secs(1);
/// The bound on the p99 of a normal request beside stalled clients.
const P99_BOUND: Duration = Duration::from_millis(10);

fn current(server: &Server) -> Usage {
    usage(server.pid()).expect("hellod is running")
}

/// Every stderr line so far, kept: `Server::stderr` hands each line out once.
struct Stderr {
    lines: Vec<String>,
}

impl Stderr {
    fn new() -> Stderr {
        Stderr { lines: Vec::new() }
    }

    fn poll(&mut self, server: &Server) -> &[String] {
        self.lines.extend(server.stderr.try_iter());
        &self.lines
    }
}

/// `count` connections that send `bytes` and then nothing. A write may fail on a connection
/// hellod turned away at once (past its connection limit): the callers check what hellod holds.
fn stalled_connections(addr: SocketAddr, count: usize, bytes: &[u8]) -> Vec<TcpStream> {
    (0..count)
        .map(|i| {
            let mut stream = TcpStream::connect_timeout(&addr, DEADLINE)
                .unwrap_or_else(|e| panic!("stalled connection {i}: {e}"));
            let _ = stream.write_all(bytes);
            stream
        })
        .collect()
}

/// A keep-alive client that has had one answer.
fn keep_alive_client(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    assert_eq!(
        ask(&mut stream),
        Ok(()),
        "first answer on a keep-alive client"
    );
    stream
}

/// One GET on an open keep-alive connection; Ok once the greeting has come.
fn ask(stream: &mut TcpStream) -> Result<(), String> {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .map_err(|e| e.to_string())?;
    read_greeting(stream)
}

/// Ok once the answer to a request sent on `stream` has come, and is the greeting.
fn read_greeting(stream: &mut TcpStream) -> Result<(), String> {
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    while !received.ends_with(GREETING) {
        match stream.read(&mut buffer) {
            Ok(0) => return Err(format!("closed after {received:?}")),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) => return Err(format!("{e} after {received:?}")),
        }
    }
    let responses = parse_responses(&received, false)?;
    match &responses[..] {
        [one] if one.status == 200 => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// Polls for a greeting on a new connection from `since` on; returns how long after `since` the
/// first one came.
fn time_to_first_greeting(addr: SocketAddr, since: Instant) -> Duration {
    let give_up = since + DEADLINE;
    loop {
        let left = give_up.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "hellod never served again");
        if timed_greeting(addr, left).is_some() {
            return since.elapsed();
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the server has finished starting: tiny_http's accept thread starts its pool
/// threads after the readiness line. Settled when two readings 50 ms apart agree.
fn settle(server: &Server) {
    wait_for("start-up to settle", DEADLINE, || {
        let before = current(server);
        thread::sleep(Duration::from_millis(50));
        let after = current(server);
        before.threads == after.threads && before.fds == after.fds
    });
}

/// Waits, up to `limit`, until `server` holds at most two descriptors more than at `idle` and
/// `spare_threads` threads more (tiny_http's pool threads leave 5 s after their last
/// connection); returns what it holds then.
fn back_to_idle(server: &Server, idle: Usage, spare_threads: usize, limit: Duration) -> Usage {
    wait_for("threads and descriptors to go back to idle", limit, || {
        let now = current(server);
        now.fds <= idle.fds + 2 && now.threads <= idle.threads + spare_threads
    });
    current(server)
}

fn highest_usage(server: &Server, over: Duration) -> Usage {
    let mut highest = current(server);
    let until = Instant::now() + over;
    while Instant::now() < until {
        let now = current(server);
        highest.rss_kib = highest.rss_kib.max(now.rss_kib);
        highest.threads = highest.threads.max(now.threads);
        highest.fds = highest.fds.max(now.fds);
        thread::sleep(Duration::from_millis(50));
    }
    highest
}

/// Reads one response to a GET from `stream`, `buffer` holding what was read beyond earlier
/// responses (pipelined answers come in one read). Ok(true): the greeting; Ok(false): the
/// connection ended first, closed or reset, with `buffer` holding any partial answer; Err:
/// anything else.
fn read_one_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<bool, String> {
    match read_answer(stream, buffer)? {
        Some(one) if one.status == 200 && one.body == GREETING => Ok(true),
        Some(other) => Err(format!("not the greeting: {other:?}")),
        None => Ok(false),
    }
}

/// Reads one whole response from `stream`, whatever its status, as [`read_one_response`] does:
/// None if the connection ended first, closed or reset, with `buffer` holding any partial answer.
fn read_answer(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<Option<Parsed>, String> {
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = first_response_end(buffer) {
            let mut responses = parse_responses(&buffer[..end], false)?;
            buffer.drain(..end);
            return match responses.len() {
                1 => Ok(responses.pop()),
                _ => Err(format!("not one response: {responses:?}")),
            };
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Whether a response says that the server closes the connection after it.
fn says_close(response: &Parsed) -> bool {
    response
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("Connection") && v.eq_ignore_ascii_case("close"))
}

/// How the server ended a connection a test watched: when, after `since`, it was seen to end,
/// what came before the end, and how it ended.
struct Closed {
    after: Duration,
    received: Vec<u8>,
    ending: Ending,
}

/// Watches `streams` (made non-blocking) until the server has ended each, or until `limit` after
/// `since`: how each ended, None for those still open then. Seen within 20 ms of the end.
fn watch_closes(streams: &mut [TcpStream], since: Instant, limit: Duration) -> Vec<Option<Closed>> {
    let mut received = vec![Vec::new(); streams.len()];
    let mut closed: Vec<Option<Closed>> = streams.iter().map(|_| None).collect();
    for stream in streams.iter() {
        stream.set_nonblocking(true).unwrap();
    }
    let mut buffer = [0u8; 4096];
    while since.elapsed() < limit && closed.iter().any(Option::is_none) {
        for ((stream, closed), received) in streams.iter_mut().zip(&mut closed).zip(&mut received) {
            if closed.is_some() {
                continue;
            }
            loop {
                let ending = match stream.read(&mut buffer) {
                    Ok(0) => Ending::Closed,
                    Ok(n) => {
                        received.extend_from_slice(&buffer[..n]);
                        continue;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => Ending::Reset,
                };
                *closed = Some(Closed {
                    after: since.elapsed(),
                    received: std::mem::take(received),
                    ending,
                });
                break;
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    closed
}

/// Where the first whole response in `buffer` ends, once it is all there (by its head and its
/// Content-Length).
fn first_response_end(buffer: &[u8]) -> Option<usize> {
    let head_end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buffer[..head_end]);
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("Content-Length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    (buffer.len() >= head_end + length).then_some(head_end + length)
}

fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() > 300 {
        format!("{}... ({} bytes)", &text[..300], bytes.len())
    } else {
        text.into_owned()
    }
}

/// Sets the peak resident memory the kernel keeps for `pid` (VmHWM) back to what it holds now
/// (`clear_refs`, Linux 4.0 on), so that the peak read afterwards is the test's own, not
/// start-up's. A sampled VmRSS would miss a spike between two samples; this cannot.
fn reset_peak_memory(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .unwrap_or_else(|e| panic!("resetting the peak memory of {pid}: {e}"));
}

/// The peak resident memory of `pid`, in KiB, since it started or [`reset_peak_memory`].
fn peak_memory_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("hellod is running");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Raises this test's own open-files soft limit as far as the hard one allows; returns it.
fn raise_own_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write the one struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE as _, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE as _, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE as _, &mut limit);
    }
    limit.rlim_cur
}
