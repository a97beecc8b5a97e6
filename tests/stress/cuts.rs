//! A cut (hellod shutting the connection of a client that does not read its answers) shuts that
//! connection only, while others open and close around it and their descriptor numbers are
//! reused at once.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{DEADLINE, Ending, Parsed, Server, parse_responses, read_until_close};
use crate::{current, settle};

/// How long the clients run.
const RUN: Duration = Duration::from_secs(20);
/// Clients that send and never read, each holding a few workers until it is cut or gives up.
const NOT_READING: usize = 48;
/// Clients that open a connection, ask once, read the answer and close, over and over.
const CHURNING: usize = 6;
/// The greeting's length, all `x`: large enough to fill a client's window at once, small enough
/// to fit in a reading client's (so that only a client that does not read can hold a worker),
/// and below the 32 KiB from which tiny_http sends an answer chunked.
const TEXT_LEN: usize = 32_000;
/// The address the clients not reading connect from. The cut picks connections by client
/// address, so one from 127.0.0.1 can only be shut by a cut meant for another connection.
const NOT_READING_FROM: &str = "127.0.0.2:0";

/// hellod cuts the client of a worker found writing the same answer at two of its checks,
/// 250 ms apart: it finds that client's connection in its registry by descriptor number, and
/// shuts it. Meanwhile connections close and their numbers are reused by the next accept or
/// duplicate, so a cut that shut a number after that connection closed (or a registry that
/// forgot a connection after closing it) would shut another connection. Here clients that do
/// not read come from 127.0.0.2 and give up after 250 to 550 ms (some are cut first, some
/// close as the cut that picked them runs), while clients from 127.0.0.1 ask and read, one
/// request a connection: every one of those must get its whole answer. Stops are not part of
/// it: a stop shuts every connection, so none is unrelated to it.
#[cfg(target_os = "linux")]
#[test]
#[ignore]
fn cuts_beside_churn_shut_only_the_clients_not_reading() {
    let text = "x".repeat(TEXT_LEN);
    // A client not reading holds a few workers: the one writing to it, and one for each request
    // after, waiting for its turn to answer.
    let server = Server::start(&["--workers", "320", "--read-timeout", "60", "--text", &text]);
    settle(&server);
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let (failed, failures) = mpsc::channel();

    let not_reading: Vec<_> = (0..NOT_READING as u64)
        .map(|client| {
            let stop = stop.clone();
            thread::spawn(move || {
                let (mut cut, mut gave_up) = (0, 0);
                for round in 0u64.. {
                    if stop.load(Relaxed) {
                        break;
                    }
                    // A worker waits on a client not reading at once, and is cut 250 to 500 ms
                    // on: giving up over 250 to 550 ms (differently for each client), some
                    // clients close just as the cut that picked them runs.
                    let patience = Duration::from_millis(250 + (round * 97 + client * 61) % 300);
                    if send_without_reading(addr, patience) {
                        cut += 1;
                    } else {
                        gave_up += 1;
                    }
                }
                (cut, gave_up)
            })
        })
        .collect();
    let churning: Vec<_> = (0..CHURNING)
        .map(|_| {
            let (stop, failed) = (stop.clone(), failed.clone());
            thread::spawn(move || {
                let mut answered = 0u64;
                while !stop.load(Relaxed) {
                    match ask_once(addr) {
                        Ok(()) => answered += 1,
                        Err(failure) => failed.send(failure).unwrap(),
                    }
                }
                answered
            })
        })
        .collect();

    drop(failed);
    let started = Instant::now();
    // The whole run, or until the first connection shut in error.
    let first_failure = failures.recv_timeout(RUN).ok();
    stop.store(true, Relaxed);
    let (mut cut, mut gave_up) = (0, 0);
    for client in not_reading {
        let (c, g) = client.join().unwrap();
        cut += c;
        gave_up += g;
    }
    let answered: u64 = churning.into_iter().map(|c| c.join().unwrap()).sum();
    let failures: Vec<String> = first_failure
        .into_iter()
        .chain(failures.try_iter())
        .collect();
    println!(
        "cuts beside churn, {:?}: {cut} clients not reading cut, {gave_up} gave up first; \
         {answered} requests answered on as many connections, {} not; hellod then: {}",
        started.elapsed(),
        failures.len(),
        current(&server),
    );
    assert!(
        failures.is_empty(),
        "connections that read their answers were shut: {failures:?}"
    );
    // Else nothing was tested.
    assert!(cut >= 10, "only {cut} clients not reading were cut");
    assert!(answered >= 1000, "only {answered} requests were answered");
}

/// Sends a few pipelined requests from [`NOT_READING_FROM`] and reads nothing, for at most
/// `patience`; true if hellod ended the connection first (a cut: nothing else ends it in that
/// time), false if the client gave up and closed it (a reset, with the answers unread).
fn send_without_reading(addr: SocketAddr, patience: Duration) -> bool {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // A small window and small segments: hellod's send buffer for this connection grows to
    // some 170 KiB, not the 4 MiB of loopback's 64 KiB segments, so that a few answers fill it
    // and the worker writing the next waits.
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_tcp_mss(536).unwrap();
    let from: SocketAddr = NOT_READING_FROM.parse().unwrap();
    socket.bind(&from.into()).unwrap();
    socket.connect_timeout(&addr.into(), DEADLINE).unwrap();
    let mut stream = TcpStream::from(socket);
    let give_up = Instant::now() + patience;
    // 250 KB of answers, and a head that never ends: it holds a few workers, not one for each
    // request read ahead.
    let requests = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(8);
    if stream.write_all(&requests).is_err() || stream.write_all(b"GET / HTTP/1.1\r\nX: ").is_err() {
        return true;
    }
    // hellod's end of the stream waits behind the answers, which are never read: a byte of that
    // head every 10 ms shows when hellod has closed the socket (a reset).
    while Instant::now() < give_up {
        if hung_up_within(&stream, Duration::from_millis(10)) || stream.write(b"x").is_err() {
            return true;
        }
    }
    false
}

/// Whether hellod's end of the stream (its FIN) comes within `limit`, however much is unread.
fn hung_up_within(stream: &TcpStream, limit: Duration) -> bool {
    use std::os::fd::AsRawFd;

    let mut poll = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd, which outlives the call.
    let ready = unsafe { libc::poll(&mut poll, 1, limit.as_millis() as libc::c_int) };
    ready == 1 && poll.revents & (libc::POLLRDHUP | libc::POLLERR | libc::POLLHUP) != 0
}

/// One request on a new connection from 127.0.0.1, which asks hellod to close it after the
/// answer: Ok once the whole greeting came, and then the end of the stream.
fn ask_once(addr: SocketAddr) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&addr, DEADLINE).map_err(|e| e.to_string())?;
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("{local}: request not sent: {e}"))?;
    let (received, ending) = read_until_close(&mut stream, DEADLINE);
    let parsed = parse_responses(&received, false);
    let greeting = |one: &Parsed| one.status == 200 && one.body == [b'x'; TEXT_LEN];
    match &parsed {
        Ok(responses)
            if ending == Ending::Closed && matches!(&responses[..], [one] if greeting(one)) =>
        {
            Ok(())
        }
        _ => {
            // Statuses and body lengths: a body of 32,000 x would say nothing more.
            let seen: Result<Vec<_>, _> =
                parsed.map(|all| all.iter().map(|r| (r.status, r.body.len())).collect());
            Err(format!(
                "{local}: {ending:?} after {} bytes, parsed as {seen:?}",
                received.len()
            ))
        }
    }
}
