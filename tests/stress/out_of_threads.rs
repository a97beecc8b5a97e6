//! Running out of threads: every `thread::spawn` failing, in tiny_http and in hellod (issue 5
//! item 1).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{BIN, DEADLINE, Server, timed_greeting, usage, wait_for};
use crate::{RECOVERY_BOUND, Stderr, ask, current, keep_alive_client, time_to_first_greeting};

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
