//! What hellod does while nothing happens, and when much happens at once: an idle server keeps
//! one accept loop and a fixed set of threads, idle keep-alive connections cost it no CPU (it
//! watches tiny_http through its socket calls, not by walking descriptors on a timer), and every
//! connection of a burst is taken up by a thread at once.

// Linux only: these read /proc.
#![cfg(target_os = "linux")]

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{DEADLINE, Server, wait_for};

/// CPU time (user and system) of `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn greeted(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 512];
    matches!(stream.read(&mut buffer), Ok(n) if buffer[..n].starts_with(b"HTTP/1.1 200 OK"))
}

/// The read timeout, inherited by accepted sockets from the listener, also ends an idle
/// `accept()`, which ended tiny_http's accept loop: hellod started a new one, with new workers,
/// every read timeout. Now the wait goes on inside hellod's `accept4`.
#[test]
fn an_idle_server_keeps_one_accept_loop_and_its_threads() {
    let server = Server::start(&["--read-timeout", "0.2", "--workers", "1"]);
    assert_eq!(server.get("/").status(), 200);
    let threads = || common::thread_names(server.pid());
    let before = threads();
    // Not synchronisation but the observation itself: ten read timeouts of doing nothing.
    thread::sleep(Duration::from_secs(2));
    let after = threads();
    let workers = after.iter().filter(|name| *name == "hellod-worker").count();
    println!(
        "threads at start: {}, 2 s idle later: {}",
        before.len(),
        after.len()
    );
    assert_eq!(
        workers, 1,
        "a new accept loop came with new workers: {after:?}"
    );
    assert!(after.len() <= before.len(), "{before:?} -> {after:?}");
    assert_eq!(server.get("/").status(), 200);
}

/// With 1,000 idle keep-alive connections open, hellod used 2.2% of a core walking their
/// descriptors four times a second. Now nothing runs while nothing happens: over 3 s it may use
/// at most 3 clock ticks (30 ms, 1% of a core, a margin for the clock's granularity).
#[test]
fn idle_keep_alive_connections_cost_no_cpu() {
    const CONNECTIONS: usize = 1000;
    let server = Server::start(&["--read-timeout", "60"]);
    let own_threads = common::thread_names(server.pid()).len();
    let mut streams = common::connections_with_a_get(&server, CONNECTIONS);
    let answered = streams.iter_mut().map(greeted).filter(|&ok| ok).count();
    assert_eq!(answered, CONNECTIONS);
    // The answered connections wait in hellod's event loop, and tiny_http's pool threads leave
    // after 5 s without work; only then is nothing left to happen, so the window opens there.
    wait_for("tiny_http's pool threads to leave", DEADLINE, || {
        common::thread_names(server.pid()).len() <= own_threads
    });
    let (before, started) = (cpu_ticks(server.pid()), Instant::now());
    // The observation window itself.
    thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(server.pid()) - before;
    println!(
        "{CONNECTIONS} idle connections: {used} ticks of CPU in {:?}",
        started.elapsed()
    );
    assert!(
        used <= 3,
        "{used} ticks: hellod works while nothing happens"
    );
    drop(streams);
}

/// tiny_http's pool loses wake-ups in a burst of accepts (`TaskPool::spawn` counts a thread
/// that is being woken as idle) and left connections queued until another one ended; hellod
/// found them a quarter to half a second later. Every connection of a burst of 1,000, each
/// sending one GET on a keep-alive connection (so no thread frees up), must be answered, with
/// the read timeout (60 s) far beyond the deadline.
#[test]
fn every_connection_of_a_burst_of_1000_is_answered() {
    const CONNECTIONS: usize = 1000;
    let server = Server::start(&["--read-timeout", "60"]);
    let started = Instant::now();
    let mut streams = common::connections_with_a_get(&server, CONNECTIONS);
    let unanswered = streams.iter_mut().map(greeted).filter(|&ok| !ok).count();
    println!(
        "burst of {CONNECTIONS}: {unanswered} unanswered, all read after {:?}",
        started.elapsed()
    );
    assert_eq!(unanswered, 0);
}
