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

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{DEADLINE, Server, Usage, parse_responses, timed_greeting, usage, wait_for};

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
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = first_response_end(buffer) {
            let responses = parse_responses(&buffer[..end], false)?;
            buffer.drain(..end);
            return match &responses[..] {
                [one] if one.status == 200 && one.body == GREETING => Ok(true),
                other => Err(format!("not the greeting: {other:?}")),
            };
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(false),
            Err(e) => return Err(e.to_string()),
        }
    }
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
