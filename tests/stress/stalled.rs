//! Clients stalled in their heads or bodies, beside normal requests.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::{self, DEADLINE, Server, quantile, timed_greeting, wait_for};
use crate::{P99_BOUND, back_to_idle, current, settle, stalled_connections, watch_closes};

/// 2,000 connections stalled in their request headers. A normal request still gets the
/// greeting with p99 under 10 ms; the stalled ones cost memory, threads and descriptors until
/// the read timeout closes them, and what they cost is released.
#[cfg(target_os = "linux")]
#[test]
#[ignore]
fn two_thousand_stalled_connections() {
    const STALLED: usize = 2000;
    let read_timeout = Duration::from_secs(8);
    let server = Server::start(&["--workers", "2", "--read-timeout", "8"]);
    settle(&server);
    let idle = current(&server);
    let opened = Instant::now();
    let mut stalled = stalled_connections(
        server.addr,
        STALLED,
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Stalled: ",
    );
    let last_write = Instant::now();
    // One descriptor per connection waiting in the waiting room, and no thread.
    wait_for("the stalled connections to be accepted", DEADLINE, || {
        current(&server).fds >= idle.fds + STALLED
    });
    let with_stalled = current(&server);
    assert!(
        with_stalled.threads <= idle.threads + 4,
        "connections stalled in their heads hold threads: idle {idle}, with them {with_stalled}"
    );
    let latencies = latencies_beside_stalled(server.addr, 1000, last_write, read_timeout);
    println!(
        "{STALLED} stalled, opened in {:?}: idle {idle}; with them {with_stalled} (+{} KiB, +{} \
         threads, +{} fds); {latencies}",
        last_write - opened,
        with_stalled.rss_kib.saturating_sub(idle.rss_kib),
        with_stalled.threads.saturating_sub(idle.threads),
        with_stalled.fds.saturating_sub(idle.fds),
    );

    // Released after the read timeout: each stalled client sees the server close.
    let closed_at = closes(&mut stalled, last_write, 4 * read_timeout);
    let released = current(&server);
    report_closes(&closed_at, STALLED, read_timeout);
    let settled = back_to_idle(&server, idle, 8, DEADLINE);
    println!("after the read timeout: {released}; settled: {settled}");
    assert_eq!(
        closed_at.iter().filter(|c| c.is_some()).count(),
        STALLED,
        "some stalled connections were never closed by the server"
    );
}

/// Twice as many clients as workers, each stalled inside a body shorter than its
/// Content-Length (above 1 KiB, read lazily on a thread of its own, and below, read by tiny_http
/// before the request is queued), beside a normal request's p99.
#[cfg(target_os = "linux")]
#[test]
#[ignore]
fn clients_stalled_in_bodies() {
    const WORKERS: usize = 2;
    let read_timeout = Duration::from_secs(3);
    let server = Server::start(&["--workers", "2", "--read-timeout", "3"]);
    settle(&server);
    let idle = current(&server);
    let mut stalled = Vec::new();
    let large = format!(
        "POST /large HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n{}",
        "x".repeat(100)
    );
    let small = "POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n0123456789";
    for body in [large.as_str(), small] {
        for _ in 0..2 * WORKERS {
            let mut stream = TcpStream::connect(server.addr).unwrap();
            stream.write_all(body.as_bytes()).unwrap();
            // One at a time (see hostile.rs, a_burst_of_keep_alive_clients_all_get_answers).
            let client = stream.local_addr().unwrap();
            wait_for("the server to read the stalled request", DEADLINE, || {
                common::unread_by_server(server.addr, client) == Some(0)
            });
            stalled.push(stream);
        }
    }
    let last_write = Instant::now();
    let with_stalled = current(&server);
    let latencies = latencies_beside_stalled(server.addr, 500, last_write, read_timeout);
    println!(
        "{} clients stalled in bodies ({WORKERS} workers): idle {idle}; with them {with_stalled}; \
         {latencies}",
        stalled.len()
    );
    let closed_at = closes(&mut stalled, last_write, 5 * read_timeout);
    report_closes(&closed_at, closed_at.len(), read_timeout);
    assert!(closed_at.iter().all(Option::is_some), "not all closed");
    println!("settled: {}", back_to_idle(&server, idle, 8, DEADLINE));
}

/// Greetings on new connections, one after another, beside clients stalled since
/// `stalled_since`: the figures, as a line. Asserts the p99 bound, and that the stalls had not
/// timed out (`read_timeout`) before the last greeting.
fn latencies_beside_stalled(
    addr: SocketAddr,
    count: usize,
    stalled_since: Instant,
    read_timeout: Duration,
) -> String {
    let (p50, p99, max, samples) = greeting_latencies(addr, count);
    let sampled_by = stalled_since.elapsed();
    let figures = format!(
        "{samples} greetings meanwhile (done {sampled_by:?} after the last stalled write): p50 \
         {p50:?}, p99 {p99:?}, max {max:?}"
    );
    assert!(
        sampled_by < read_timeout,
        "the stalled clients may have timed out before the latencies were measured: {figures}"
    );
    assert!(p99 < P99_BOUND, "p99 over {P99_BOUND:?}: {figures}");
    figures
}

/// Greetings on new connections, one after another: p50, p99, max and how many.
fn greeting_latencies(addr: SocketAddr, count: usize) -> (Duration, Duration, Duration, usize) {
    let mut samples: Vec<Duration> = (0..count)
        .map(|i| timed_greeting(addr, DEADLINE).unwrap_or_else(|| panic!("greeting {i} failed")))
        .collect();
    let p50 = quantile(&mut samples, 0.50);
    let p99 = quantile(&mut samples, 0.99);
    let max = quantile(&mut samples, 1.0);
    (p50, p99, max, count)
}

/// When the server closed each of `streams` (after `since`), within `limit`.
fn closes(streams: &mut [TcpStream], since: Instant, limit: Duration) -> Vec<Option<Duration>> {
    watch_closes(streams, since, limit)
        .into_iter()
        .map(|closed| closed.map(|c| c.after))
        .collect()
}

fn report_closes(closed_at: &[Option<Duration>], total: usize, read_timeout: Duration) {
    let mut by_multiple: BTreeMap<u128, usize> = BTreeMap::new();
    for closed in closed_at.iter().flatten() {
        let multiple = closed.as_millis() / read_timeout.as_millis().max(1);
        *by_multiple.entry(multiple).or_default() += 1;
    }
    let mut times: Vec<Duration> = closed_at.iter().flatten().copied().collect();
    let never = closed_at.iter().filter(|c| c.is_none()).count();
    if times.is_empty() {
        println!("none of {total} closed; {never} still open");
        return;
    }
    let first = quantile(&mut times, 0.0);
    let last = quantile(&mut times, 1.0);
    println!(
        "closed by the server: first after {first:?}, last after {last:?} (read timeout \
         {read_timeout:?}; count by whole read timeouts elapsed: {by_multiple:?}); {never} of \
         {total} still open"
    );
}
