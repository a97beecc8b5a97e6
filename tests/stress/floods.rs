//! Floods of 10,000 connections.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{
    DEADLINE, Ending, Server, parse_responses, read_until_close, timed_greeting, usage,
};
use crate::{GREETING, back_to_idle, current, raise_own_open_files_limit, settle, shown};

/// 10,000 connections opened as fast as possible, each sending a request at once, with
/// `Connection: close` (the server closes each once answered). Every one is answered or
/// cleanly refused (connect refused or timed out, closed or reset before any byte of answer, or
/// a whole 503 past hellod's connection limit); nothing half-answered, no crash; memory goes back
/// near idle.
#[cfg(target_os = "linux")]
#[test]
#[ignore]
fn flood_of_ten_thousand_connections() {
    flood(false);
}

/// The same flood with keep-alive requests: each connection holds a tiny_http thread and two
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
    let after = back_to_idle(&server, idle, 8, Duration::from_secs(30));
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
            } else if one.status == 503 {
                "refused: 503 past the connection limit".into()
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
        (Ok(r), Ending::Closed) if r.len() == 1 && r[0].status == 503 => {
            "refused: 503 past the connection limit".into()
        }
        (Ok(r), ending) => format!("BAD: {ending:?} after {r:?}"),
        (Err(e), ending) => format!("BAD: {ending:?}, {e}"),
    }
}
