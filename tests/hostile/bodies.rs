//! Bodies: declared past the limit, stalled half-way, and answers a client never reads.

use super::*;

/// `Content-Length: 1000000000000` made tiny_http's discard buffer abort the process, and
/// `18446744073709551615` made it panic (capacity overflow). Any length past the 1 MiB body
/// limit now gets a 413 before tiny_http sees the head, whatever the client does next, and the
/// connection closes at once.
#[test]
fn declared_bodies_past_the_limit_get_413() {
    let mut server = Server::start(&["--read-timeout", "60", "--workers", "1"]);
    let lengths = [
        "1048577",
        "1000000000000",
        "18446744073709551615",
        "99999999999999999999999999",
    ];
    for length in lengths {
        for after in [
            After::HalfClose,
            After::KeepOpen,
            After::HangUp,
            After::Reset,
        ] {
            let request = format!(
                "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\nsome body bytes"
            );
            let (received, ending) = exchange(&server, request.as_bytes(), after, DEADLINE);
            let statuses = common::statuses(&received, false)
                .unwrap_or_else(|e| panic!("{length} {after:?}: {e}"));
            println!("Content-Length {length:<26} {after:?}: {statuses:?} {ending:?}");
            if matches!(after, After::HalfClose | After::KeepOpen) {
                assert_eq!(statuses, [413], "{length} {after:?}");
                assert_ne!(ending, Ending::StillOpen, "{length} {after:?}");
            }
            assert_alive(&mut server);
            assert_eq!(server.get("/").status(), 200, "after {length} {after:?}");
        }
    }
}

/// Clients stalled inside a body shorter than its Content-Length (read by tiny_http before the
/// request is queued up to 1 KiB, lazily above), inside a chunk, or behind Expect: 100-continue,
/// each pinning no worker: with one worker and a read timeout longer than the test's patience,
/// a normal request is still answered while they stall.
#[cfg(target_os = "linux")]
#[test]
fn clients_stalled_in_bodies_do_not_pin_the_worker() {
    let server = Server::start(&["--workers", "1", "--read-timeout", "60"]);
    let stalls = [
        "POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789".to_owned(),
        format!(
            "POST /large HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n{}",
            "x".repeat(100)
        ),
        "POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n100\r\nabc"
            .to_owned(),
        "POST /expect HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
            .to_owned(),
        "GET /get-body HTTP/1.1\r\nHost: t\r\nContent-Length: 3000\r\n\r\nabc".to_owned(),
    ];
    let mut stalled = Vec::new();
    for stall in &stalls {
        for _ in 0..2 {
            let mut stream = server.connect();
            stream.write_all(stall.as_bytes()).unwrap();
            // One at a time, each read by the server before the next connects: a burst would
            // meet tiny_http's thread pool race instead (`a_burst_of_keep_alive_clients...`).
            let client = stream.local_addr().unwrap();
            wait_for("the server to read the stalled request", DEADLINE, || {
                common::unread_by_server(server.addr, client) == Some(0)
            });
            stalled.push(stream);
        }
    }
    // Within the deadline (20 s), far below the 60 s a pinned worker would wait.
    for _ in 0..5 {
        greet(&server);
    }
    // The stalled clients were still stalled meanwhile: not answered (except the interim 100
    // Continue) and not closed.
    for (i, stream) in stalled.iter_mut().enumerate() {
        stream.set_nonblocking(true).unwrap();
        let mut buffer = [0u8; 512];
        match stream.read(&mut buffer) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok(n) if buffer[..n].starts_with(b"HTTP/1.1 100 ") => {}
            other => panic!("stalled client {i} was not stalled: {other:?}"),
        }
    }
}

/// A client that pipelines requests and never reads the answers fills the socket buffers, and
/// the worker writing to it blocks for up to the write timeout (--read-timeout); tiny_http has
/// meanwhile read and queued the requests that follow, and every worker that takes one waits
/// for that answer to be written first. With as many such clients as workers (here one and
/// one), nobody else is answered. Once the worker is blocked on that client (or the server has
/// cut it off), a normal request must be answered within the deadline (20 s), far below the
/// 60 s write timeout.
#[cfg(target_os = "linux")]
#[test]
fn clients_that_never_read_their_answers_do_not_pin_the_worker() {
    let server = Server::start(&["--workers", "1", "--read-timeout", "60"]);
    let stream = server.connect();
    socket2::SockRef::from(&stream)
        .set_recv_buffer_size(4096)
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pump = {
        let (mut stream, stop) = (stream.try_clone().unwrap(), stop.clone());
        stream
            .set_write_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        thread::spawn(move || {
            let batch = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(64);
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match stream.write(&batch) {
                    Ok(n) => sent += n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => return (sent, Some(e)),
                }
            }
            (sent, None)
        })
    };
    wait_for("the worker to block on the client", DEADLINE, || {
        pump.is_finished()
            || common::thread_waits(server.pid())
                .iter()
                .any(|(name, wait)| {
                    // Blocked in a socket write (the function's name varies with the kernel).
                    name == "hellod-worker"
                        && matches!(wait.as_str(), "wait_woken" | "sk_stream_wait_memory")
                })
    });
    let meanwhile = usage(server.pid()).unwrap();
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(|| greet(&server));
    let waited = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, cut) = pump.join().unwrap();
    println!(
        "{sent} bytes of pipelined requests sent ({} requests), client cut off: {cut:?}; hellod \
         meanwhile: {meanwhile}; a normal request then waited {waited:?}",
        sent / 28
    );
    drop(stream);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// tiny_http reads pipelined requests into its queue as fast as they come, while the answers
/// wait for a client that does not read them: one such client grew hellod by 75 MB in 3 s.
/// hellod stops reading from a connection 32 requests ahead of its answers, so the same client
/// now costs next to nothing until it is cut off.
#[test]
fn a_client_pipelining_without_reading_costs_bounded_memory() {
    let server = Server::start(&["--read-timeout", "60"]);
    assert_eq!(server.get("/").status(), 200);
    let before = common::peak_rss_kib(server.pid()).unwrap();
    let mut stream = server.connect();
    socket2::SockRef::from(&stream)
        .set_recv_buffer_size(4096)
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let batch = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(1000);
    let (started, mut sent) = (Instant::now(), 0);
    // The attack itself: two seconds of requests, or until hellod cuts the client off.
    while started.elapsed() < Duration::from_secs(2) {
        match stream.write(&batch) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let grown = common::peak_rss_kib(server.pid()).unwrap() - before;
    println!(
        "{} requests pipelined in {:?}, never read: peak resident memory +{grown} KiB",
        sent / 28,
        started.elapsed()
    );
    assert!(grown < 4096, "+{grown} KiB for one client");
    greet(&server);
}

/// tiny_http's chunked decoder reads no trailer section; hellod takes the trailer fields out of
/// what it reads. Sent on its own, after the server has read the body, a trailer line is a read
/// with nothing left in it for tiny_http, which must not look like the end of the stream: the
/// request and the one pipelined behind it are both answered.
#[test]
fn a_trailer_read_on_its_own_is_taken_out_and_the_connection_goes_on() {
    let server = Server::start(&["--read-timeout", "60"]);
    let mut stream = server.connect();
    let client = stream.local_addr().unwrap();
    let parts: [&[u8]; 3] = [
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
        b"X-Trailer: 1\r\n",
        b"\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ];
    for part in parts {
        stream.write_all(part).unwrap();
        wait_for("the server to read what was sent", DEADLINE, || {
            common::unread_by_server(server.addr, client) == Some(0)
        });
    }
    let (received, ending) = read_until_close(&mut stream, DEADLINE);
    let statuses = common::statuses(&received, false).unwrap();
    assert_eq!((statuses, ending), (vec![200, 200], Ending::Closed));
}
