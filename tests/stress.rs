//! The heavy cases of issue 5, against the release binary, one at a time:
//!
//! ```text
//! cargo test --release --test stress -- --ignored --test-threads=1 --nocapture
//! ```
//!
//! (`tests/stress.sh` runs them so, with the open-files limit raised). Each is bounded in time
//! and prints what it measured: resident memory, threads, descriptors, latencies, recovery
//! times. Only two figures are asserted as timings, the two the issue names: a p99 under 10 ms
//! beside stalled clients, and serving again within one second of the end of an accept failure.

// Linux only: these read /proc (threads, descriptors, socket queues) and set process limits.
#![cfg(target_os = "linux")]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    BIN, DEADLINE, Ending, Server, Usage, parse_responses, quantile, read_until_close,
    timed_greeting, usage, wait_for,
};

const GREETING: &[u8] = b"Hello, World!";
/// The issue's bound on serving again once an accept failure's cause is gone.
const RECOVERY_BOUND: Duration = Duration::from_secs(1);
/// The issue's bound on the p99 of a normal request beside stalled clients.
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

/// hellod through `sh -c 'ulimit -n LIMIT; exec hellod ...'`.
fn start_with_open_files_limit(limit: u64, args: &[&str]) -> Server {
    let mut command = Command::new("sh");
    command
        .env_clear()
        .arg("-c")
        .arg(format!(
            "ulimit -n {limit} && exec \"$0\" --listen 127.0.0.1:0 \"$@\""
        ))
        .arg(BIN)
        .args(args);
    Server::spawn(command)
}

/// `count` connections that send `bytes` and then nothing.
fn stalled_connections(addr: SocketAddr, count: usize, bytes: &[u8]) -> Vec<TcpStream> {
    (0..count)
        .map(|i| {
            let mut stream = TcpStream::connect_timeout(&addr, DEADLINE)
                .unwrap_or_else(|e| panic!("stalled connection {i}: {e}"));
            stream.write_all(bytes).unwrap();
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

fn set_open_files_soft_limit(pid: u32, soft: u64) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit reads and writes the two structs passed, nothing else.
    let done = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE as _,
            std::ptr::null(),
            &mut old,
        ) == 0
            && libc::prlimit(
                pid as libc::pid_t,
                libc::RLIMIT_NOFILE as _,
                &libc::rlimit {
                    rlim_cur: soft.min(old.rlim_max),
                    rlim_max: old.rlim_max,
                },
                std::ptr::null_mut(),
            ) == 0
    };
    assert!(done, "prlimit: {}", std::io::Error::last_os_error());
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

/// The lowest `count` descriptor numbers that `pid` does not use.
fn free_descriptor_numbers(pid: u32, count: usize) -> Vec<u64> {
    let used: HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).filter(|n| !used.contains(n)).take(count).collect()
}

/// Sets hellod's open-files limit so that exactly `free` descriptors can still be opened, then
/// applies `pressure` (new connections) until stderr shows `symptom`, checks that clients
/// connected before keep being served, lifts the limit and measures how long until a new
/// connection is served.
fn descriptor_exhaustion(free: usize, symptom: &str, what: &str) {
    let server = Server::start(&["--workers", "2"]);
    let mut stderr = Stderr::new();
    let mut before: Vec<TcpStream> = (0..3).map(|_| keep_alive_client(server.addr)).collect();
    let idle = current(&server);
    // The limit is the first number that must stay unusable.
    let numbers = free_descriptor_numbers(server.pid(), free + 1);
    set_open_files_soft_limit(server.pid(), numbers[free]);
    let pressure_started = Instant::now();
    let mut refused = 0;
    while !stderr.poll(&server).iter().any(|l| l.contains(symptom)) {
        assert!(
            pressure_started.elapsed() < DEADLINE,
            "{what}: no {symptom:?} on stderr: {:#?}",
            stderr.lines
        );
        // A new connection: accepted into the last descriptor, or never accepted.
        if timed_greeting(server.addr, Duration::from_millis(300)).is_none() {
            refused += 1;
        }
    }
    let symptom_line = stderr.lines.iter().find(|l| l.contains(symptom)).unwrap();
    println!("{what}: {symptom_line}");
    for (i, client) in before.iter_mut().enumerate() {
        assert_eq!(ask(client), Ok(()), "{what}: client {i} connected before");
    }
    let during = current(&server);
    set_open_files_soft_limit(server.pid(), 1 << 16);
    let lifted = Instant::now();
    let recovery = time_to_first_greeting(server.addr, lifted);
    for (i, client) in before.iter_mut().enumerate() {
        assert_eq!(
            ask(client),
            Ok(()),
            "{what}: client {i} connected before, after"
        );
    }
    for _ in 0..20 {
        assert!(
            timed_greeting(server.addr, DEADLINE).is_some(),
            "{what}: after"
        );
    }
    println!(
        "{what}: idle {idle}; under pressure {during}; {refused} new connections not served \
         meanwhile; served again {recovery:?} after the limit was lifted"
    );
    assert!(
        recovery < RECOVERY_BOUND,
        "{what}: served again only {recovery:?} after the limit was lifted"
    );
}

/// Item 1, the issue's own scenario: an open-files limit of 128 and 200 stalled sockets. Which
/// failure hellod meets depends on the parity of the descriptors left: accept() itself fails
/// (EMFILE) or tiny_http's accept thread panics on the `try_clone` of the socket it accepted.
#[test]
#[ignore]
fn recovers_after_200_stalled_sockets_against_an_open_files_limit_of_128() {
    for limit in [128, 127] {
        let server =
            start_with_open_files_limit(limit, &["--workers", "2", "--read-timeout", "30"]);
        let mut stderr = Stderr::new();
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
        assert!(
            limits
                .lines()
                .any(|l| l.starts_with("Max open files") && l.contains(&format!(" {limit} "))),
            "{limits}"
        );
        let mut before: Vec<TcpStream> = (0..2).map(|_| keep_alive_client(server.addr)).collect();
        let idle = current(&server);
        let stalled = stalled_connections(server.addr, 200, b"GET / HTTP/1.1\r\nHo");
        let symptom_started = Instant::now();
        // "os error 24" from accept(), "code: 24" from the panic in tiny_http's accept thread.
        let mut symptom = None;
        while symptom.is_none() {
            symptom = stderr
                .poll(&server)
                .iter()
                .find(|l| l.contains("os error 24") || l.contains("code: 24"))
                .cloned();
            assert!(
                symptom_started.elapsed() < DEADLINE,
                "limit {limit}: no accept failure; {}; stderr: {:#?}",
                current(&server),
                stderr.lines
            );
            thread::sleep(Duration::from_millis(5));
        }
        let during = current(&server);
        for (i, client) in before.iter_mut().enumerate() {
            assert_eq!(
                ask(client),
                Ok(()),
                "limit {limit}: client {i} connected before"
            );
        }
        drop(stalled);
        let pressure_ended = Instant::now();
        let recovery = time_to_first_greeting(server.addr, pressure_ended);
        for (i, client) in before.iter_mut().enumerate() {
            assert_eq!(ask(client), Ok(()), "limit {limit}: client {i}, after");
        }
        for _ in 0..20 {
            assert!(timed_greeting(server.addr, DEADLINE).is_some());
        }
        let failures = stderr.poll(&server).len();
        println!(
            "open files {limit}: idle {idle}; with 200 stalled {during} after {:?}; first \
             failure: {}; {failures} stderr lines; served again {recovery:?} after the stalled \
             sockets closed",
            symptom_started.elapsed(),
            symptom.unwrap_or_default()
        );
        assert!(
            recovery < RECOVERY_BOUND,
            "limit {limit}: served again only {recovery:?} after the pressure ended"
        );
    }
}

/// Item 1: accept() failing with EMFILE, the descriptor limit reached exactly.
#[cfg(target_os = "linux")]
#[test]
#[ignore]
fn recovers_after_accept_fails_with_emfile() {
    descriptor_exhaustion(0, "accepting failed: ", "accept() EMFILE");
}

/// Item 1: a panic in tiny_http's accept thread: accept() takes the last descriptor and the
/// `try_clone().unwrap()` of the accepted socket needs one more.
#[cfg(target_os = "linux")]
#[test]
#[ignore]
fn recovers_after_the_accept_thread_panics_out_of_descriptors() {
    descriptor_exhaustion(1, "refined_tcp_stream.rs", "accept-thread panic");
}

/// Item 1 with threads as the exhausted limit. hellod runs as `nobody` under a process limit
/// (RLIMIT_NPROC, which root ignores, counts every thread of the user), and other processes of
/// that user take up what is left: every `thread::spawn` fails. In tiny_http's accept thread
/// that is a panic, contained; but when the supervisor starts a new accept loop (here the read
/// timeout of 0.2 s ends idle ones), `Server::from_listener`'s `thread::spawn` panics in the
/// main thread. Two clients connected before keep asking meanwhile. Then the other processes
/// leave: hellod must serve new connections again within a second.
#[cfg(target_os = "linux")]
#[test]
#[ignore]
fn survives_running_out_of_threads() {
    const LIMIT: usize = 32;
    let Some(binary) = binary_for_nobody() else {
        return;
    };
    let as_nobody = |program: &str| {
        let mut command = Command::new("setpriv");
        command
            .env_clear()
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", program]);
        command
    };
    let mut command = as_nobody("prlimit");
    command
        .arg(format!("--nproc={LIMIT}:{LIMIT}"))
        .arg(&binary.0)
        .args(["--listen", "127.0.0.1:0", "--read-timeout", "0.2"]);
    let mut server = Server::spawn(command);
    let mut stderr = Stderr::new();
    let idle = current(&server);

    // Clients connected before, asking every 50 ms (well within the read timeout).
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, mut stream) = (stop.clone(), keep_alive_client(server.addr));
            thread::spawn(move || {
                let mut answered = 0;
                while !stop.load(Ordering::Relaxed) {
                    ask(&mut stream)?;
                    answered += 1;
                    thread::sleep(Duration::from_millis(50));
                }
                Ok::<_, String>(answered)
            })
        })
        .collect();

    // Other processes of the same user take every thread left, for two seconds in which idle
    // accept loops end and new ones cannot start.
    let mut hogs = Children(Vec::new());
    for _ in 0..LIMIT + 8 {
        let mut sleeper = as_nobody("sleep");
        sleeper.arg("60");
        hogs.0.push(sleeper.spawn().expect("a process as nobody"));
    }
    // Until a new accept loop has failed to start (or hellod has died of it).
    wait_for("an accept loop failing to start", DEADLINE, || {
        server.child.try_wait().unwrap().is_some()
            || stderr
                .poll(&server)
                .iter()
                .any(|l| l.contains("restart") || l.contains("thread main"))
    });
    let during = usage(server.pid());
    let tried_during = timed_greeting(server.addr, Duration::from_millis(300)).is_some();
    drop(hogs);
    let lifted = Instant::now();
    let exit = server.child.try_wait().unwrap();
    let lines = stderr.poll(&server).to_vec();
    let failed_spawns = lines
        .iter()
        .filter(|l| l.contains("spawn") || l.contains("restart"));
    println!(
        "out of threads (RLIMIT_NPROC {LIMIT}, taken by other processes): idle {idle}; under \
         pressure {during:?}, a new connection served: {tried_during}; {} failures on stderr, \
         first {:?}; exit {exit:?}",
        failed_spawns.clone().count(),
        failed_spawns.clone().next()
    );
    if let Some(status) = exit {
        stop.store(true, Ordering::Relaxed);
        let main_panic = lines.iter().find(|l| l.contains("thread main"));
        panic!("hellod died out of threads: {status}, {main_panic:?}");
    }
    let recovery = time_to_first_greeting(server.addr, lifted);
    stop.store(true, Ordering::Relaxed);
    for (i, client) in clients.into_iter().enumerate() {
        let answered = client.join().unwrap();
        assert!(
            answered.is_ok(),
            "client {i} connected before: {answered:?}"
        );
    }
    println!("out of threads: served again {recovery:?} after the other processes left");
    assert!(
        failed_spawns.count() > 0,
        "no thread failed to start: no pressure"
    );
    assert!(
        recovery < RECOVERY_BOUND,
        "served again only after {recovery:?}"
    );
}

/// Child processes killed when dropped.
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// A copy of the binary that user `nobody` may run, removed when dropped.
struct BinaryCopy(std::path::PathBuf);

impl Drop for BinaryCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A copy of the binary that user `nobody` may run, when this test can switch to it (as root,
/// with setpriv and prlimit); None, with a line saying why, when it cannot.
#[cfg(target_os = "linux")]
fn binary_for_nobody() -> Option<BinaryCopy> {
    use std::os::unix::fs::PermissionsExt;

    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["setpriv", "prlimit"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !root || !tools {
        println!("SKIPPED: needs root, setpriv and prlimit to run hellod as nobody");
        return None;
    }
    let copy = std::env::temp_dir().join(format!("hellod-nobody-{}", std::process::id()));
    std::fs::copy(BIN, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(BinaryCopy(copy))
}

/// Item 3: 2,000 connections stalled in their request headers. A normal request still gets the
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
    // Two descriptors per accepted connection, taken in tiny_http's accept thread.
    wait_for("the stalled connections to be accepted", DEADLINE, || {
        current(&server).fds >= idle.fds + 2 * STALLED
    });
    let with_stalled = current(&server);
    let (p50, p99, max, samples) = greeting_latencies(server.addr, 1000);
    let sampled_by = last_write.elapsed();
    println!(
        "{STALLED} stalled, opened in {:?}: idle {idle}; with them {with_stalled} (+{} KiB, +{} \
         threads, +{} fds); {samples} greetings meanwhile (done {sampled_by:?} after the \
         last stalled write): p50 {p50:?}, p99 {p99:?}, max {max:?}",
        last_write - opened,
        with_stalled.rss_kib.saturating_sub(idle.rss_kib),
        with_stalled.threads.saturating_sub(idle.threads),
        with_stalled.fds.saturating_sub(idle.fds),
    );
    assert!(
        sampled_by < read_timeout,
        "the stalled connections may have timed out before the latencies were measured"
    );
    assert!(
        p99 < P99_BOUND,
        "p99 {p99:?} beside {STALLED} stalled connections"
    );

    // Released after the read timeout: each stalled client sees the server close.
    let closed_at = closes(&mut stalled, last_write, 4 * read_timeout);
    let released = current(&server);
    report_closes(&closed_at, STALLED, read_timeout);
    wait_for(
        "threads and descriptors to go back to idle",
        DEADLINE,
        || {
            let now = current(&server);
            now.fds <= idle.fds + 2 && now.threads <= idle.threads + 8
        },
    );
    let settled = current(&server);
    println!("after the read timeout: {released}; settled: {settled}");
    assert_eq!(
        closed_at.iter().filter(|c| c.is_some()).count(),
        STALLED,
        "some stalled connections were never closed by the server"
    );
}

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

/// Item 3: twice as many clients as workers, each stalled inside a body shorter than its
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
    let (p50, p99, max, samples) = greeting_latencies(server.addr, 500);
    let sampled_by = last_write.elapsed();
    println!(
        "{} clients stalled in bodies ({WORKERS} workers): idle {idle}; with them {with_stalled}; \
         {samples} greetings (done {sampled_by:?} after the last stalled write): p50 {p50:?}, \
         p99 {p99:?}, max {max:?}",
        stalled.len()
    );
    assert!(
        sampled_by < read_timeout,
        "measured after the stalls timed out"
    );
    assert!(
        p99 < P99_BOUND,
        "p99 {p99:?} beside clients stalled in bodies"
    );
    let closed_at = closes(&mut stalled, last_write, 5 * read_timeout);
    report_closes(&closed_at, closed_at.len(), read_timeout);
    assert!(closed_at.iter().all(Option::is_some), "not all closed");
    wait_for(
        "threads and descriptors to go back to idle",
        DEADLINE,
        || {
            let now = current(&server);
            now.fds <= idle.fds + 2 && now.threads <= idle.threads + 8
        },
    );
    println!("settled: {}", current(&server));
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
    let mut closed_at = vec![None; streams.len()];
    for stream in streams.iter() {
        stream.set_nonblocking(true).unwrap();
    }
    let mut buffer = [0u8; 4096];
    while since.elapsed() < limit && closed_at.iter().any(Option::is_none) {
        for (stream, closed) in streams.iter_mut().zip(closed_at.iter_mut()) {
            if closed.is_some() {
                continue;
            }
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) => {
                        *closed = Some(since.elapsed());
                        break;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        *closed = Some(since.elapsed());
                        break;
                    }
                }
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    closed_at
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

/// Item 4: 10,000 connections opened as fast as possible, each sending a request at once, with
/// `Connection: close` (the server closes each once answered). Every one is answered or
/// cleanly refused (connect refused or timed out, or closed or reset before any byte of
/// answer); nothing half-answered, no crash; memory goes back near idle.
#[cfg(target_os = "linux")]
#[test]
#[ignore]
fn flood_of_ten_thousand_connections() {
    flood(false);
}

/// Item 4 again, with keep-alive requests: each connection holds a tiny_http thread and two
/// descriptors until the client reads its answer and leaves, so the flood costs the most it
/// can. With the usual hard limit of open files (hellod needs two per connection) the last
/// ones wait for descriptors, in the backlog, until earlier clients leave.
#[cfg(target_os = "linux")]
#[test]
#[ignore]
fn flood_of_ten_thousand_keep_alive_connections() {
    flood(true);
}

fn flood(keep_alive: bool) {
    const OPENERS: usize = 8;
    let what = if keep_alive { "keep-alive" } else { "close" };
    let limit = raise_own_open_files_limit();
    let connections = 10_000.min(usize::try_from(limit).unwrap_or(usize::MAX) - 200);
    if connections < 10_000 {
        println!("WARNING: open-files limit {limit}: only {connections} connections");
    }
    let server = Server::start(&["--workers", "2", "--read-timeout", "30"]);
    settle(&server);
    let idle = current(&server);
    let peak = Arc::new(Mutex::new(idle));
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (peak, stop, pid) = (peak.clone(), stop.clone(), server.pid());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(now) = usage(pid) {
                    let mut peak = peak.lock().unwrap();
                    peak.rss_kib = peak.rss_kib.max(now.rss_kib);
                    peak.threads = peak.threads.max(now.threads);
                    peak.fds = peak.fds.max(now.fds);
                }
                thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let request: &'static [u8] = if keep_alive {
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    } else {
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    };
    let started = Instant::now();
    let refused_connect = Arc::new(AtomicU64::new(0));
    let openers: Vec<_> = (0..OPENERS)
        .map(|i| {
            let (refused_connect, addr) = (refused_connect.clone(), server.addr);
            let count = connections / OPENERS + usize::from(i < connections % OPENERS);
            thread::spawn(move || {
                let mut opened = Vec::with_capacity(count);
                for _ in 0..count {
                    match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                        Ok(mut stream) => {
                            let _ = stream.write_all(request);
                            opened.push((Instant::now(), stream));
                        }
                        Err(_) => {
                            refused_connect.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                opened
            })
        })
        .collect();
    let mut streams: Vec<(Instant, TcpStream)> = openers
        .into_iter()
        .flat_map(|opener| opener.join().unwrap())
        .collect();
    let opened_in = started.elapsed();
    let open_at_once = streams.len();
    // Oldest first: those were accepted first, and leaving frees what the later ones wait for.
    streams.sort_by_key(|(at, _)| *at);
    let streams: Vec<TcpStream> = streams.into_iter().map(|(_, s)| s).collect();

    // Read every answer, then leave; a deadline for the whole flood.
    let deadline = Instant::now() + Duration::from_secs(60);
    let streams = Arc::new(Mutex::new(streams.into_iter()));
    let outcomes = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let readers: Vec<_> = (0..OPENERS)
        .map(|_| {
            let (streams, outcomes) = (streams.clone(), outcomes.clone());
            thread::spawn(move || {
                loop {
                    let Some(mut stream) = streams.lock().unwrap().next() else {
                        break;
                    };
                    let outcome = if keep_alive {
                        read_keep_alive_answer(&mut stream, deadline)
                    } else {
                        let left = deadline
                            .saturating_duration_since(Instant::now())
                            .max(Duration::from_millis(1));
                        let (received, ending) = read_until_close(&mut stream, left);
                        classify(&received, ending)
                    };
                    *outcomes.lock().unwrap().entry(outcome).or_default() += 1;
                }
            })
        })
        .collect();
    for reader in readers {
        reader.join().unwrap();
    }
    let answered_in = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    monitor.join().unwrap();
    let peak = *peak.lock().unwrap();
    let mut outcomes = outcomes.lock().unwrap().clone();
    let refused = refused_connect.load(Ordering::Relaxed) as usize;
    if refused > 0 {
        outcomes.insert("refused: connect failed".into(), refused);
    }
    let stderr: Vec<String> = server.stderr.try_iter().collect();
    println!(
        "flood of {connections} ({what}): all opened in {opened_in:?} ({open_at_once} open at \
         once), all done in {answered_in:?}; outcomes {outcomes:?}; idle {idle}; peak {peak}; \
         {} stderr lines, first {:?}",
        stderr.len(),
        stderr.first()
    );
    assert!(usage(server.pid()).is_some(), "hellod is gone: {stderr:#?}");
    assert_eq!(outcomes.values().sum::<usize>(), connections);
    let bad: Vec<_> = outcomes
        .iter()
        .filter(|(k, _)| !k.starts_with("answered") && !k.starts_with("refused"))
        .collect();
    assert!(
        bad.is_empty(),
        "neither answered nor cleanly refused: {bad:?}"
    );

    // Afterwards: idle tiny_http threads leave 5 s after their last connection.
    let settle_started = Instant::now();
    wait_for(
        "threads and descriptors to go back to idle",
        Duration::from_secs(30),
        || {
            let now = current(&server);
            now.threads <= idle.threads + 8 && now.fds <= idle.fds + 2
        },
    );
    let after = current(&server);
    println!(
        "settled {:?} after the {what} flood: {after} (idle {idle}, +{} KiB)",
        settle_started.elapsed(),
        after.rss_kib.saturating_sub(idle.rss_kib)
    );
    assert!(timed_greeting(server.addr, DEADLINE).is_some());
    assert!(
        after.rss_kib <= idle.rss_kib + 4 * 1024,
        "memory after the flood {after}, idle {idle}"
    );
}

/// Reads the answer to one keep-alive GET, then closes; the outcome as [`classify`] names it.
fn read_keep_alive_answer(stream: &mut TcpStream, deadline: Instant) -> String {
    let mut buffer = Vec::new();
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left)).unwrap();
    let mut chunk = [0u8; 512];
    loop {
        if let Ok(responses) = parse_responses(&buffer, false)
            && let [one] = &responses[..]
        {
            return if one.status == 200 && one.body == GREETING {
                "answered".into()
            } else {
                format!("BAD: status {}", one.status)
            };
        }
        match stream.read(&mut chunk) {
            Ok(0) if buffer.is_empty() => return "refused: Closed before any byte".into(),
            Err(e) if buffer.is_empty() && e.kind() == ErrorKind::ConnectionReset => {
                return "refused: Reset before any byte".into();
            }
            Ok(0) => return format!("BAD: closed after {}", shown(&buffer)),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) => return format!("BAD: {e} after {}", shown(&buffer)),
        }
    }
}

fn classify(received: &[u8], ending: Ending) -> String {
    match (parse_responses(received, false), ending) {
        (Ok(r), Ending::Closed) if r.len() == 1 && r[0].status == 200 && r[0].body == GREETING => {
            "answered".into()
        }
        (Ok(r), Ending::Closed | Ending::Reset) if r.is_empty() => {
            format!("refused: {ending:?} before any byte")
        }
        (Ok(r), ending) => format!("BAD: {ending:?} after {r:?}"),
        (Err(e), ending) => format!("BAD: {ending:?}, {e}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Refused,
    Answered,
    ConnectedNotAnswered,
}

/// One client's view of the shutdown: requests on keep-alive connections, each with its own
/// path, one at a time.
#[derive(Default)]
struct Tracked {
    /// Paths of the requests answered with the greeting.
    answered: Vec<String>,
    /// How each connection's last request ended when no answer came.
    unanswered: Vec<String>,
    /// Anything else: a malformed or partial answer, or an error status.
    bad: Vec<String>,
}

fn tracked_client(addr: SocketAddr, id: usize, stop: Arc<AtomicBool>) -> Tracked {
    let mut tracked = Tracked::default();
    let mut sequence = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(addr) else {
            thread::sleep(Duration::from_millis(1));
            continue;
        };
        stream.set_nodelay(true).unwrap();
        let mut buffer = Vec::new();
        loop {
            let path = format!("/t{id}/{sequence}");
            sequence += 1;
            let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
            if stream.write_all(request.as_bytes()).is_err() {
                tracked.unanswered.push(format!("{path}: write failed"));
                break;
            }
            match read_one_response(&mut stream, &mut buffer) {
                Ok(true) => tracked.answered.push(path),
                Ok(false) if buffer.is_empty() => {
                    tracked.unanswered.push(format!("{path}: closed"));
                    break;
                }
                Ok(false) => {
                    tracked
                        .bad
                        .push(format!("{path}: cut short: {}", shown(&buffer)));
                    break;
                }
                Err(error) => {
                    tracked.bad.push(format!("{path}: {error}"));
                    break;
                }
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    tracked
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

/// Item 5: SIGTERM while wrk runs 256 connections, and tracked clients beside it. Exit 0 within
/// the grace period; from the signal on, connections are refused (once refused, never accepted
/// again); every answer hellod logged reached its client and every answer a client got was
/// logged; no client got a 500 or half an answer; what went unanswered is at most the one
/// request each connection had in flight when its connection was shut; and the drain ended
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
    let stop = Arc::new(AtomicBool::new(false));
    let tracked: Vec<_> = (0..TRACKED)
        .map(|id| {
            let (stop, addr) = (stop.clone(), server.addr);
            thread::spawn(move || tracked_client(addr, id, stop))
        })
        .collect();
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
    let signalled = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(grace + Duration::from_secs(5));
    let took = signalled.elapsed();
    exited.store(true, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let attempts = prober.join().unwrap();
    let tracked: Vec<Tracked> = tracked.into_iter().map(|t| t.join().unwrap()).collect();
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
    let unanswered: Vec<&String> = tracked.iter().flat_map(|t| &t.unanswered).collect();
    let bad: Vec<&String> = tracked.iter().flat_map(|t| &t.bad).collect();
    let wrk_logged = log_paths.iter().filter(|p| *p == "/wrk").count();
    let wrk_requests = wrk_text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse::<usize>().ok());
    println!(
        "tracked clients: {} answered, {} unanswered (each the last of its connection), {} bad; \
         logged: {} tracked, {wrk_logged} from wrk; wrk counted {wrk_requests:?} responses",
        received_tracked.len(),
        unanswered.len(),
        bad.len(),
        logged_tracked.len(),
    );
    println!("wrk: {}", wrk_text.trim().replace('\n', "\n     "));
    assert!(bad.is_empty(), "{bad:#?}");
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
    assert_eq!(
        wrk_requests,
        Some(wrk_logged),
        "responses wrk counted against those hellod logged"
    );
}

/// Item 6: three minutes (HELLOD_SOAK_SECONDS to change it) of mixed load with connection
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
    wait_for(
        "threads and descriptors back to idle",
        Duration::from_secs(30),
        || {
            let now = current(&server);
            now.threads <= idle.threads + 4 && now.fds <= idle.fds + 2
        },
    );
    let settled = current(&server);
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

/// HEAD requests, HTTP/1.0, and a malformed line (400) now and then.
fn head_and_odd_load(addr: SocketAddr, round: u64) -> Result<&'static str, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("odd: {e}"))?;
    let request: &[u8] = match round % 3 {
        0 => b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        1 => b"GET / HTTP/1.0\r\n\r\n",
        _ => b"GET / HTTP/9.9\r\nHost: t\r\n\r\n",
    };
    stream.write_all(request).map_err(|e| format!("odd: {e}"))?;
    let (received, ending) = read_until_close(&mut stream, DEADLINE);
    let expected = match round % 3 {
        0 | 1 => 200,
        _ => 400,
    };
    match parse_responses(&received, round.is_multiple_of(3)) {
        Ok(r) if r.len() == 1 && r[0].status == expected && ending == Ending::Closed => {
            Ok("HEAD, HTTP/1.0 and 400s")
        }
        other => Err(format!("odd {round}: {ending:?} {other:?}")),
    }
}
