//! Running out of threads: every `thread::spawn` failing, in tiny_http and in hellod.

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{BIN, DEADLINE, Server, timed_greeting, usage, wait_for};
use crate::{
    RECOVERY_BOUND, Stderr, ask, current, keep_alive_client, read_greeting, stalled_connections,
    time_to_first_greeting,
};

/// Accept failures with threads as the exhausted limit. hellod runs as a user of its own under a
/// process limit (RLIMIT_NPROC, which root ignores, counts every thread of the user), and other
/// processes of that user take up what is left: every `thread::spawn` fails. New connections,
/// more than tiny_http's idle pool threads, make its accept thread spawn one: a panic there,
/// contained, that ends the accept loop and drops the connection it was taking up; the
/// supervisor's new one cannot start either (`Server::from_listener`'s `thread::spawn` panics in
/// the main thread). Two clients connected before keep asking meanwhile. Then the other processes
/// leave: hellod must serve new connections again within a second, and every request whose head
/// had come, the one tiny_http dropped too, is answered once its body is in.
#[cfg(target_os = "linux")]
#[test]
#[ignore]
fn survives_running_out_of_threads() {
    const LIMIT: usize = 32;
    let Some(binary) = binary_for_test_user() else {
        return;
    };
    // Not `nobody`: the limit counts the user's tasks machine-wide, and other test runs on a
    // shared machine may be using `nobody` at the same time. An unused high ID, one per run.
    let uid = 0x4000_0000 + std::process::id();
    let as_test_user = |program: &str| {
        let mut command = Command::new("setpriv");
        command.env_clear().args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            program,
        ]);
        command
    };
    let mut command = as_test_user("prlimit");
    command
        .arg(format!("--nproc={LIMIT}:{LIMIT}"))
        .arg(&binary.0)
        .args(["--listen", "127.0.0.1:0", "--read-timeout", "2"]);
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

    // Other processes of the same user take every thread left; then connections that need
    // new threads of tiny_http's pool.
    let mut hogs = Children(Vec::new());
    for _ in 0..LIMIT + 8 {
        let mut sleeper = as_test_user("sleep");
        sleeper.arg("60");
        hogs.0
            .push(sleeper.spawn().expect("a process as the test user"));
    }
    // Whole heads with bodies still to come: each needs a thread of tiny_http's pool (heads
    // still arriving wait in hellod's event loop and need none).
    let mut waiting = stalled_connections(
        server.addr,
        8,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nab",
    );
    // Until a thread has failed to start (or hellod has died of it).
    wait_for("a thread failing to start", DEADLINE, || {
        server.child.try_wait().unwrap().is_some()
            || stderr
                .poll(&server)
                .iter()
                .any(|l| l.contains("spawn") || l.contains("restart"))
    });
    let during = usage(server.pid());
    let tried_during = timed_greeting(server.addr, Duration::from_millis(300)).is_some();
    drop(hogs);
    let lifted = Instant::now();
    // The rest of each body at once, well within the read timeout of its head, wherever that
    // request is now: read on, queued in hellod, or dropped by tiny_http and queued again.
    for stream in &mut waiting {
        stream.write_all(&[b'c'; 98]).unwrap();
    }
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
    let unanswered: Vec<_> = (waiting.iter_mut().enumerate())
        .filter_map(|(i, stream)| Some((i, read_greeting(stream).err()?)))
        .collect();
    stop.store(true, Ordering::Relaxed);
    let lost: Vec<_> = (clients.into_iter())
        .filter_map(|client| client.join().unwrap().err())
        .collect();
    println!(
        "out of threads: {} of 2 keep-alive clients connected before lost their connection",
        lost.len()
    );
    println!("out of threads: served again {recovery:?} after the other processes left");
    println!(
        "out of threads: {} of {} requests whose heads had come unanswered once their bodies \
         were in: {unanswered:?}",
        unanswered.len(),
        waiting.len()
    );
    assert!(
        failed_spawns.count() > 0,
        "no thread failed to start: no pressure"
    );
    assert!(
        recovery < RECOVERY_BOUND,
        "served again only after {recovery:?}"
    );
    assert!(unanswered.is_empty(), "requests lost: {unanswered:?}");
    assert!(lost.is_empty(), "keep-alive clients lost: {lost:?}");
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

/// A copy of the binary that an unprivileged user may run, removed when dropped.
struct BinaryCopy(std::path::PathBuf);

impl Drop for BinaryCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A copy of the binary that an unprivileged user may run, when this test can switch to one (as root,
/// with setpriv and prlimit); None, with a line saying why, when it cannot.
#[cfg(target_os = "linux")]
fn binary_for_test_user() -> Option<BinaryCopy> {
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
        println!("SKIPPED: needs root, setpriv and prlimit to run hellod as an unprivileged user");
        return None;
    }
    let copy = std::env::temp_dir().join(format!("hellod-unprivileged-{}", std::process::id()));
    std::fs::copy(BIN, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(BinaryCopy(copy))
}
