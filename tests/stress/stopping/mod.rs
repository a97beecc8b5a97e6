//! A stop (SIGTERM) seen from the connections open at the time: busy keep-alive ones, a body on
//! its way, 10,000 idle ones, a silent one, and heads that start after the signal. What hellod
//! promises: the listening socket closes at once; every request that reaches it on an open
//! connection during the grace is answered, the last answer on a connection saying `Connection:
//! close` before hellod closes it; a connection with nothing in flight is closed only after it
//! has been quiet for [`QUIET_BEFORE_CLOSE`] (at most half the grace) since the stop or its last
//! answer; the process exits 0 once the last connection is gone, within the grace.

pub(crate) mod busy;
mod heads;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use hellod::shutdown::QUIET_BEFORE_CLOSE;

use crate::common::{
    DEADLINE, Ending, Server, first_median_last, not_yet_accepted, parse_responses,
    read_until_close, unread_by_server, wait_for,
};
use crate::{
    GREETING, keep_alive_client, raise_own_open_files_limit, read_answer, says_close, shown,
    watch_closes,
};

/// What hellod prints when it has taken a stop signal in hand (src/server.rs).
const SIGTERM_TAKEN: &str = "SIGTERM received";
/// A process cannot end at the very instant its grace does: what a bound on the grace allows
/// for starting `kill`, closing thousands of sockets and seeing the exit.
const GRACE_SLACK: Duration = Duration::from_millis(500);
/// The quiet a client measures runs from an answer's arrival, which comes a little after hellod
/// wrote it: what a client's reading of the quiet may fall short of hellod's.
const ANSWER_TRANSIT: Duration = Duration::from_millis(50);

/// The quiet hellod waits for before it closes an idle connection under `grace`.
pub(crate) fn quiet_under(grace: Duration) -> Duration {
    QUIET_BEFORE_CLOSE.min(grace / 2)
}

/// Once hellod has accepted every connection made to it (one still in the listener's queue
/// would be refused with the listener), sends SIGTERM and waits for hellod to say that it took
/// it; returns when it was sent, the earliest the stop can have begun, so that a time measured
/// from it is never longer than the one hellod measures from its stop.
fn stop(server: &Server) -> Instant {
    wait_for("hellod to accept every connection", DEADLINE, || {
        not_yet_accepted(server.addr) == Some(0)
    });
    let signalled = Instant::now();
    server.signal("TERM");
    server.wait_for_line(SIGTERM_TAKEN);
    signalled
}

/// A POST with `Content-Length: 100` whose head and first 50 bytes of body hellod has read when
/// SIGTERM comes; the other 50 follow half a second after hellod took the signal. The request is
/// answered, 200 and `Connection: close`, only once the body is whole; then hellod closes the
/// connection and exits 0, within the grace.
#[test]
#[ignore]
fn a_half_sent_post_across_a_stop() {
    let grace = Duration::from_secs(5);
    let mut server = Server::start(&["--workers", "2", "--grace", "5"]);
    let mut stream = server.connect();
    stream.set_nodelay(true).unwrap();
    let head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n";
    stream
        .write_all(&[&head[..], &[b'a'; 50]].concat())
        .unwrap();
    let client = stream.local_addr().unwrap();
    wait_for(
        "hellod to read the head and half the body",
        DEADLINE,
        || unread_by_server(server.addr, client) == Some(0),
    );
    let signalled = stop(&server);
    // The scenario: the rest of the body is slow to come.
    thread::sleep(Duration::from_millis(500));
    let (early, ending) = read_until_close(&mut stream, Duration::from_millis(1));
    assert!(
        early.is_empty() && ending == Ending::StillOpen,
        "before the rest of the body was sent: {ending:?} after {:?}",
        shown(&early)
    );
    stream
        .write_all(&[b'a'; 50])
        .expect("the rest of the body is sent");
    let (answer, ending) = read_until_close(&mut stream, DEADLINE);
    let status = server.wait_exit(grace + DEADLINE);
    let took = signalled.elapsed();
    println!(
        "a half-sent POST across a stop: {ending:?} after {}; exit {status} after {took:?}",
        shown(&answer).replace("\r\n", " | ")
    );
    let responses = parse_responses(&answer, false).expect("whole responses");
    match &responses[..] {
        [one] => {
            assert_eq!(one.status, 200, "{one:?}");
            assert_eq!(one.body, GREETING, "{one:?}");
            assert!(says_close(one), "no `Connection: close`: {one:?}");
        }
        other => panic!("not one answer: {other:?}"),
    }
    assert_eq!(ending, Ending::Closed, "the connection after the answer");
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(took < grace, "the stop took {took:?}");
}

/// 10,000 idle keep-alive connections (each has had one answer) and one that never sent a byte,
/// `--grace 5`: each is closed (a FIN, nothing sent) once quiet, not before; the stop ends when
/// they are all closed: after the quiet, within the grace.
#[test]
#[ignore]
fn ten_thousand_idle_connections_and_a_silent_one_across_a_stop() {
    const IDLE: usize = 10_000;
    const OPENERS: usize = 8;
    const _: () = assert!(IDLE.is_multiple_of(OPENERS));
    let grace = Duration::from_secs(5);
    let quiet = quiet_under(grace);
    // A descriptor for each connection here, and one in hellod, which inherits the limit.
    let limit = raise_own_open_files_limit();
    assert!(
        limit >= IDLE as u64 + 200,
        "the open-files limit is {limit}: tests/stress.sh raises it"
    );
    let mut server = Server::start(&["--workers", "2", "--grace", "5", "--read-timeout", "30"]);
    let opened = Instant::now();
    let openers: Vec<_> = (0..OPENERS)
        .map(|_| {
            let addr = server.addr;
            let count = IDLE / OPENERS;
            thread::spawn(move || {
                (0..count)
                    .map(|_| keep_alive_client(addr))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut streams: Vec<TcpStream> = openers
        .into_iter()
        .flat_map(|o| o.join().unwrap())
        .collect();
    let opened_in = opened.elapsed();
    streams.push(server.connect());
    let signalled = stop(&server);
    let watcher = thread::spawn(move || watch_closes(&mut streams, signalled, grace + DEADLINE));
    let status = server.wait_exit(grace + DEADLINE);
    let took = signalled.elapsed();
    let closes = watcher.join().unwrap();

    let (idle, silent) = closes.split_at(IDLE);
    let mut idle_after: Vec<Duration> = idle.iter().flatten().map(|c| c.after).collect();
    let open_at_end = closes.iter().filter(|c| c.is_none()).count();
    let not_clean: Vec<String> = closes
        .iter()
        .flatten()
        .filter(|c| c.ending != Ending::Closed || !c.received.is_empty())
        .map(|c| format!("{:?} after {}", c.ending, shown(&c.received)))
        .collect();
    println!(
        "stop with {IDLE} idle connections (opened in {opened_in:?}) and a silent one: exit \
         {status} after {took:?} (grace {grace:?}, quiet {quiet:?}); idle ones closed after \
         the signal (first, median, last): {:?}; the silent one after {:?}; {} not cleanly \
         closed, {open_at_end} never",
        first_median_last(&mut idle_after),
        silent[0].as_ref().map(|c| c.after),
        not_clean.len(),
    );
    assert_eq!(open_at_end, 0, "connections never closed");
    assert!(
        not_clean.is_empty(),
        "not a plain close: {:?}",
        &not_clean[..not_clean.len().min(10)]
    );
    let early = closes.iter().flatten().filter(|c| c.after < quiet).count();
    assert_eq!(early, 0, "connections closed before the quiet ({quiet:?})");
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(took >= quiet, "the stop took only {took:?}");
    assert!(took < grace, "the stop took {took:?}");
}
