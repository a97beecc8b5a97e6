//! The soak: minutes of mixed load with connection churn.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{DEADLINE, Ending, Server, parse_responses, read_until_close, timed_greeting};
use crate::{back_to_idle, current, highest_usage, read_one_response, shown};

/// Three minutes (HELLOD_SOAK_SECONDS to change it) of mixed load with connection
/// churn: keep-alive, close, pipelined, slow and stalling clients and bodies. Afterwards memory,
/// threads and descriptors return to within a small margin of their idle values.
#[cfg(target_os = "linux")]
#[test]
#[ignore]
fn soak() {
    let seconds: u64 = std::env::var("HELLOD_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    let server = Server::start(&["--workers", "2", "--read-timeout", "2"]);
    // Idle: the read timeout ends idle accept loops every 2 s, so threads come and go; the
    // idle figure is the highest seen over a few seconds.
    let idle = highest_usage(&server, Duration::from_secs(8));
    println!("soak: idle (highest over 8 s) {idle}");

    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<Mutex<BTreeMap<&'static str, u64>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    type Load = fn(SocketAddr, u64) -> Result<&'static str, String>;
    let loads: [(Load, usize); 7] = [
        (keep_alive_load, 3),
        (close_load, 2),
        (pipelined_load, 2),
        (slow_load, 2),
        (stall_load, 2),
        (body_load, 1),
        (head_and_odd_load, 1),
    ];
    let mut workers = Vec::new();
    for (load, clients) in loads {
        for _ in 0..clients {
            let (stop, counts, failures, addr) =
                (stop.clone(), counts.clone(), failures.clone(), server.addr);
            workers.push(thread::spawn(move || {
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    match load(addr, round) {
                        Ok(kind) => *counts.lock().unwrap().entry(kind).or_default() += 1,
                        Err(error) => {
                            let mut failures = failures.lock().unwrap();
                            if failures.len() < 20 {
                                failures.push(error);
                            }
                        }
                    }
                }
            }));
        }
    }
    let started = Instant::now();
    let mut start_usage = None;
    let mut peak = idle;
    while started.elapsed() < Duration::from_secs(seconds) {
        thread::sleep(Duration::from_secs(1));
        let now = current(&server);
        peak.rss_kib = peak.rss_kib.max(now.rss_kib);
        peak.threads = peak.threads.max(now.threads);
        peak.fds = peak.fds.max(now.fds);
        if started.elapsed() >= Duration::from_secs(5) && start_usage.is_none() {
            start_usage = Some(now);
            println!("soak: 5 s in: {now}");
        }
        if started.elapsed().as_secs().is_multiple_of(30) {
            let total: u64 = counts.lock().unwrap().values().sum();
            println!("soak: {:?}: {now}; {total} rounds", started.elapsed());
        }
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let ended = current(&server);
    let settle_started = Instant::now();
    let settled = back_to_idle(&server, idle, 4, Duration::from_secs(30));
    let counts = counts.lock().unwrap().clone();
    let failures = failures.lock().unwrap().clone();
    println!(
        "soak: {seconds} s: rounds {counts:?}; at the end of the load {ended}; peak {peak}; \
         settled {:?} later: {settled} (idle {idle}, 5 s in {})",
        settle_started.elapsed(),
        start_usage.map_or_else(|| "-".into(), |u| u.to_string())
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        settled.rss_kib <= idle.rss_kib + 2 * 1024,
        "memory after the soak {settled}, idle {idle}"
    );
    assert!(timed_greeting(server.addr, DEADLINE).is_some());
}

fn expect_greetings(stream: &mut TcpStream, count: usize, what: &str) -> Result<(), String> {
    let mut buffer = Vec::new();
    for i in 0..count {
        match read_one_response(stream, &mut buffer) {
            Ok(true) => {}
            other => return Err(format!("{what}: answer {i}: {other:?} {}", shown(&buffer))),
        }
    }
    Ok(())
}

/// Up to 100 requests on one connection, then a new one.
fn keep_alive_load(addr: SocketAddr, round: u64) -> Result<&'static str, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("keep-alive: {e}"))?;
    for _ in 0..(round % 100 + 1) {
        stream
            .write_all(b"GET /keep-alive HTTP/1.1\r\nHost: t\r\n\r\n")
            .map_err(|e| format!("keep-alive: {e}"))?;
        expect_greetings(&mut stream, 1, "keep-alive")?;
    }
    Ok("keep-alive connections")
}

fn close_load(addr: SocketAddr, _round: u64) -> Result<&'static str, String> {
    timed_greeting(addr, DEADLINE)
        .map(|_| "close connections")
        .ok_or_else(|| "close: no greeting".into())
}

/// Batches of 16 pipelined requests, a few batches per connection.
fn pipelined_load(addr: SocketAddr, round: u64) -> Result<&'static str, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("pipelined: {e}"))?;
    let batch = b"GET /pipelined HTTP/1.1\r\nHost: t\r\n\r\n".repeat(16);
    for _ in 0..(round % 8 + 1) {
        stream
            .write_all(&batch)
            .map_err(|e| format!("pipelined: {e}"))?;
        expect_greetings(&mut stream, 16, "pipelined")?;
    }
    Ok("pipelined connections")
}

/// A request sent in small pieces, each well within the read timeout.
fn slow_load(addr: SocketAddr, _round: u64) -> Result<&'static str, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("slow: {e}"))?;
    stream.set_nodelay(true).unwrap();
    for piece in b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Slow: yes\r\n\r\n".chunks(6) {
        stream.write_all(piece).map_err(|e| format!("slow: {e}"))?;
        thread::sleep(Duration::from_millis(40));
    }
    expect_greetings(&mut stream, 1, "slow")?;
    Ok("slow clients")
}

/// Half a request, then silence: the server closes it after the read timeout.
fn stall_load(addr: SocketAddr, round: u64) -> Result<&'static str, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("stall: {e}"))?;
    let half: &[u8] = if round.is_multiple_of(2) {
        b"GET /stall HTTP/1.1\r\nHo"
    } else {
        b"POST /stall HTTP/1.1\r\nHost: t\r\nContent-Length: 300\r\n\r\nabc"
    };
    stream.write_all(half).map_err(|e| format!("stall: {e}"))?;
    let (received, ending) = read_until_close(&mut stream, Duration::from_secs(15));
    if ending == Ending::StillOpen {
        return Err(format!(
            "stall: not closed by the server: {}",
            shown(&received)
        ));
    }
    Ok("stalled clients closed")
}

/// Bodies: lazily read (above 1 KiB), small, chunked; then a hang-up mid-body.
fn body_load(addr: SocketAddr, round: u64) -> Result<&'static str, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("body: {e}"))?;
    let large = "b".repeat(5000);
    let request = match round % 3 {
        0 => format!("POST /large HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n{large}"),
        1 => "POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello".to_owned(),
        _ => "POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            .to_owned(),
    };
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("body: {e}"))?;
    expect_greetings(&mut stream, 1, "body")?;
    if round.is_multiple_of(10) {
        let mut leaving = TcpStream::connect(addr).map_err(|e| format!("body: {e}"))?;
        let _ =
            leaving.write_all(b"POST /gone HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\nabc");
        let _ = leaving.shutdown(Shutdown::Both);
    }
    Ok("bodies")
}

/// HEAD requests, HTTP/1.0, and now and then hellod's own refusals: an unsupported version
/// (505) and an invalid Content-Length (400), each answered and closed.
fn head_and_odd_load(addr: SocketAddr, round: u64) -> Result<&'static str, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("odd: {e}"))?;
    let (request, expected): (&[u8], u16) = match round % 4 {
        0 => (
            b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            200,
        ),
        1 => (b"GET / HTTP/1.0\r\n\r\n", 200),
        2 => (b"GET / HTTP/9.9\r\nHost: t\r\n\r\n", 505),
        _ => (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: five\r\n\r\n",
            400,
        ),
    };
    stream.write_all(request).map_err(|e| format!("odd: {e}"))?;
    let (received, ending) = read_until_close(&mut stream, DEADLINE);
    match parse_responses(&received, round.is_multiple_of(4)) {
        Ok(r) if r.len() == 1 && r[0].status == expected && ending == Ending::Closed => {
            Ok("HEAD, HTTP/1.0, 505s and 400s")
        }
        other => Err(format!("odd {round}: {ending:?} {other:?}")),
    }
}
