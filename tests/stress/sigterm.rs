//! SIGTERM under load.

use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{DEADLINE, Server, wait_for};
use crate::read_one_response;
use crate::stopping::busy::{BusyClients, busy_failures, busy_report};
use crate::stopping::quiet_under;

/// SIGTERM while wrk runs 256 connections, and tracked keep-alive clients beside it. Exit 0
/// within the grace period; from the signal on, connections are refused (once refused, never
/// accepted again); every answer hellod logged reached its client and every answer a client got
/// was logged; nothing is lost: every request a tracked client wrote whole is answered, each
/// connection ending with a `Connection: close` answer (or after the quiet), and wrk reads no
/// error and waits out no timeout; no client got a 500 or half an answer; and the drain ended
/// because every connection was done, not because the grace period ran out.
#[cfg(target_os = "linux")]
#[test]
#[ignore]
fn sigterm_under_wrk_load() {
    const TRACKED: usize = 16;
    let grace = Duration::from_secs(10);
    assert!(
        Command::new("wrk").arg("--version").output().is_ok(),
        "wrk is not installed: tests/install-deps stress"
    );
    let mut server = Server::start(&["--workers", "2", "--grace", "10", "--access-log"]);
    let url = format!("http://{}/wrk", server.addr);
    let wrk = Command::new("wrk")
        .args(["-t2", "-c256", "-d5s", "--timeout", "4s", &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wrk starts");
    let tracked = BusyClients::start(server.addr, TRACKED, grace);
    tracked.wait_until_answered();
    // Load for a while: the access log shows requests flowing.
    let mut logged = Vec::new();
    let load_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < load_until {
        if let Ok(line) = server.stdout.recv_timeout(Duration::from_millis(50)) {
            logged.push(line);
        }
    }
    assert!(
        logged.len() > 1000,
        "too little load: {} requests",
        logged.len()
    );

    // A prober connecting over and over from just before the signal until the exit.
    let exited = Arc::new(AtomicBool::new(false));
    let probes = Arc::new(AtomicU64::new(0));
    let prober = {
        let (addr, exited, probes) = (server.addr, exited.clone(), probes.clone());
        thread::spawn(move || {
            let mut attempts = Vec::new();
            while !exited.load(Ordering::Relaxed) {
                probes.fetch_add(1, Ordering::Relaxed);
                let at = Instant::now();
                let outcome = match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    Err(_) => Probe::Refused,
                    Ok(mut stream) => {
                        let _ = stream.write_all(b"GET /probe HTTP/1.1\r\nHost: t\r\n\r\n");
                        let mut buffer = Vec::new();
                        match read_one_response(&mut stream, &mut buffer) {
                            Ok(true) => Probe::Answered,
                            _ => Probe::ConnectedNotAnswered,
                        }
                    }
                };
                attempts.push((at, outcome));
                thread::sleep(Duration::from_micros(200));
            }
            attempts
        })
    };
    wait_for("the prober to start", DEADLINE, || {
        probes.load(Ordering::Relaxed) > 1
    });
    let signalled = tracked.signal(&server);
    let status = server.wait_exit(grace + Duration::from_secs(5));
    let took = signalled.elapsed();
    exited.store(true, Ordering::Relaxed);
    let attempts = prober.join().unwrap();
    let tracked = tracked.finish();
    let wrk_output = wrk.wait_with_output().unwrap();
    let wrk_text = String::from_utf8_lossy(&wrk_output.stdout).into_owned();
    logged.extend(server.stdout.try_iter());
    let stderr: Vec<String> = server.stderr.try_iter().collect();

    // Exit.
    println!("SIGTERM under load: exit {status} after {took:?} (grace {grace:?})");
    assert_eq!(status.code(), Some(0), "stderr: {stderr:#?}");
    assert!(took < grace, "took {took:?}");
    assert!(
        !logged.iter().any(|l| l.contains("grace period over")),
        "the drain ran out of time: {:?}",
        logged.iter().rev().take(3).collect::<Vec<_>>()
    );

    // No connection accepted after the first refusal. Before it, in the moment between the
    // signal and the listener's shutdown, the kernel may still complete handshakes: those are
    // answered (hellod accepted them) or reset (still in the backlog when it shut).
    let after_signal: Vec<&(Instant, Probe)> =
        attempts.iter().filter(|(at, _)| *at >= signalled).collect();
    let first_refusal = after_signal.iter().position(|(_, p)| *p == Probe::Refused);
    let before_refusal = &after_signal[..first_refusal.unwrap_or(after_signal.len())];
    let answered_after_signal = before_refusal
        .iter()
        .filter(|(_, p)| *p == Probe::Answered)
        .count();
    let refusal_delay = first_refusal.map(|i| after_signal[i].0 - signalled);
    println!(
        "prober: {} connects after the signal; before the first refusal ({refusal_delay:?} \
         after the signal) {} completed a handshake, {answered_after_signal} of them answered",
        after_signal.len(),
        before_refusal.len(),
    );
    if let Some(first) = first_refusal {
        let later: Vec<_> = after_signal[first..]
            .iter()
            .filter(|(_, p)| *p != Probe::Refused)
            .collect();
        assert!(
            later.is_empty(),
            "connections after a refusal: {}",
            later.len()
        );
    }

    // Every logged answer reached a client; every answer a client got was logged.
    let log_paths: Vec<String> = logged
        .iter()
        .filter_map(|l| l.split('"').nth(1)?.split(' ').nth(1).map(str::to_owned))
        .collect();
    let logged_tracked: HashSet<&str> = log_paths
        .iter()
        .filter(|p| p.starts_with("/t"))
        .map(String::as_str)
        .collect();
    let received_tracked: HashSet<&str> = tracked
        .iter()
        .flat_map(|t| t.answered.iter().map(String::as_str))
        .collect();
    let logged_not_received: Vec<_> = logged_tracked.difference(&received_tracked).collect();
    let received_not_logged: Vec<_> = received_tracked.difference(&logged_tracked).collect();
    let wrk_logged = log_paths.iter().filter(|p| *p == "/wrk").count();
    let wrk_requests = wrk_text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse::<usize>().ok());
    let wrk_errors = wrk_socket_errors(&wrk_text);
    println!(
        "tracked clients: {}; logged: {} tracked, {wrk_logged} from wrk; wrk counted \
         {wrk_requests:?} responses",
        busy_report(&tracked, signalled),
        logged_tracked.len(),
    );
    println!("wrk: {}", wrk_text.trim().replace('\n', "\n     "));
    let failures = busy_failures(&tracked, quiet_under(grace));
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        logged_not_received.is_empty(),
        "logged, never received: {logged_not_received:?}"
    );
    assert!(
        received_not_logged.is_empty(),
        "received, never logged: {received_not_logged:?}"
    );
    assert!(
        !wrk_text.contains("Non-2xx"),
        "wrk got error statuses: {wrk_text}"
    );
    // wrk reconnects at once after each `Connection: close` answer, and is refused from the
    // stop on: its non-blocking connect seems to succeed, and the refusal fails the request's
    // write, so those count as connect or write errors. A read error is a request written and
    // never answered (the connection ended first); a timeout, one answered too late.
    assert!(
        wrk_errors
            .iter()
            .all(|(kind, n)| !matches!(*kind, "read" | "timeout") || *n == 0),
        "wrk's socket errors: {wrk_errors:?}"
    );
    assert_eq!(
        wrk_requests,
        Some(wrk_logged),
        "responses wrk counted against those hellod logged"
    );
}

/// wrk's "Socket errors: connect N, read N, write N, timeout N", by kind; none if it saw none.
fn wrk_socket_errors(wrk_text: &str) -> Vec<(&str, u64)> {
    let Some(line) = wrk_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
    else {
        return Vec::new();
    };
    line.split(',')
        .filter_map(|part| {
            let (kind, count) = part.trim().split_once(' ')?;
            Some((kind, count.trim().parse().ok()?))
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Refused,
    Answered,
    ConnectedNotAnswered,
}
