//! A stop (SIGTERM) seen from the connections open at the time: busy keep-alive ones, a body on
//! its way, 10,000 idle ones, a silent one, and heads that start after the signal. What hellod
//! promises: the listening socket closes at once; every request that reaches it on an open
//! connection during the grace is answered, the last answer on a connection saying `Connection:
//! close` before hellod closes it; a connection with nothing in flight is closed only after it
//! has been quiet for [`QUIET_BEFORE_CLOSE`] (at most half the grace) since the stop or its last
//! answer; the process exits 0 once the last connection is gone, within the grace.

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

/// 32 keep-alive clients, each sending GET after GET on its connection (a whole request, then
/// its answer, then the next), SIGTERM a second in, `--grace 5`. Every request written whole on
/// an open connection is answered; each connection ends with an answer saying `Connection:
/// close` and then hellod's FIN, or (never for these busy clients) with a close after the quiet;
/// a reconnect after it is refused; the process exits 0 within the grace.
#[test]
#[ignore]
fn keep_alive_clients_across_a_stop() {
    const CLIENTS: usize = 32;
    let grace = Duration::from_secs(5);
    let mut server = Server::start(&["--workers", "2", "--grace", "5"]);
    let clients = BusyClients::start(server.addr, CLIENTS, grace);
    clients.wait_until_answered();
    // The scenario: a second of load before the stop.
    thread::sleep(Duration::from_secs(1));
    let signalled = clients.signal(&server);
    let status = server.wait_exit(grace + DEADLINE);
    let took = signalled.elapsed();
    let clients = clients.finish();
    println!(
        "stop with {CLIENTS} busy keep-alive clients: exit {status} after {took:?} (grace \
         {grace:?}); {}",
        busy_report(&clients, signalled)
    );
    let failures = busy_failures(&clients, quiet_under(grace));
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(took < grace, "the stop took {took:?}");
}

/// Keep-alive clients, each on a thread of its own, sending GET after GET (each with a path of
/// its own, `/t{client}/{request}`) on one connection until hellod ends it; after the signal,
/// each then tries one reconnect.
pub(crate) struct BusyClients {
    signalled_at: Arc<OnceLock<Instant>>,
    ready: Arc<AtomicUsize>,
    threads: Vec<thread::JoinHandle<BusyClient>>,
}

impl BusyClients {
    /// Each gives up `grace` and a deadline after the signal.
    pub(crate) fn start(addr: SocketAddr, count: usize, grace: Duration) -> BusyClients {
        let signalled_at = Arc::new(OnceLock::new());
        let ready = Arc::new(AtomicUsize::new(0));
        let threads = (0..count)
            .map(|id| {
                let (signalled_at, ready) = (signalled_at.clone(), ready.clone());
                thread::spawn(move || busy_client(addr, id, &signalled_at, &ready, grace))
            })
            .collect();
        BusyClients {
            signalled_at,
            ready,
            threads,
        }
    }

    /// Waits until every client has had an answer.
    pub(crate) fn wait_until_answered(&self) {
        wait_for("every client's first answer", DEADLINE, || {
            self.ready.load(Ordering::Relaxed) == self.threads.len()
        });
    }

    /// Sends SIGTERM to `server`, the clients told when; returns that instant.
    pub(crate) fn signal(&self, server: &Server) -> Instant {
        let signalled = Instant::now();
        self.signalled_at.set(signalled).unwrap();
        server.signal("TERM");
        signalled
    }

    pub(crate) fn finish(self) -> Vec<BusyClient> {
        self.threads
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect()
    }
}

/// One busy client's view of the stop.
#[derive(Default)]
pub(crate) struct BusyClient {
    /// Requests written whole, and answers to them.
    written: usize,
    /// The paths of the requests answered with the greeting.
    pub(crate) answered: Vec<String>,
    answered_after_signal: usize,
    last_answer: Option<Instant>,
    /// How its connection ended (none if it gave up first).
    end: Option<End>,
    /// Whether the reconnect after its connection's end was refused.
    refused_after_close: bool,
    /// Anything else that went wrong: a bad answer, a close before the stop, a reconnect that
    /// got through.
    problems: Vec<String>,
}

enum End {
    /// An answer said `Connection: close`, then hellod closed the connection.
    AfterClose,
    /// hellod closed (or reset) the connection without such an answer, and with no request
    /// in flight (seen before the next one was written, or its write failed): this long after
    /// the later of the signal and the connection's last answer.
    Quiet(Duration),
    /// A request written whole and never answered: the connection ended (how) first.
    Lost(String),
}

impl End {
    fn kind(&self) -> &'static str {
        match self {
            End::AfterClose => "after a `Connection: close` answer",
            End::Quiet(_) => "closed with nothing in flight",
            End::Lost(_) => "closed with a request unanswered",
        }
    }
}

/// Requests, answers and endings, for the record.
pub(crate) fn busy_report(clients: &[BusyClient], signalled: Instant) -> String {
    let written: usize = clients.iter().map(|c| c.written).sum();
    let answered: usize = clients.iter().map(|c| c.answered.len()).sum();
    let after_signal: usize = clients.iter().map(|c| c.answered_after_signal).sum();
    let mut endings = BTreeMap::<&str, usize>::new();
    for end in clients.iter().filter_map(|c| c.end.as_ref()) {
        *endings.entry(end.kind()).or_default() += 1;
    }
    let last_answer = clients
        .iter()
        .filter_map(|c| Some(c.last_answer?.saturating_duration_since(signalled)))
        .max();
    format!(
        "{written} requests written, {answered} answered, {after_signal} of them after the \
         signal; connections ended: {endings:?}; last answer {last_answer:?} after the signal"
    )
}

/// What the clients saw that the stop must not do: a request written whole and not answered, a
/// close without a `Connection: close` answer before `quiet`, a reconnect not refused, a bad
/// answer.
pub(crate) fn busy_failures(clients: &[BusyClient], quiet: Duration) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        if client.written != client.answered.len() {
            failures.push(format!(
                "client {i}: {} requests written whole, {} answered",
                client.written,
                client.answered.len()
            ));
        }
        failures.extend(client.problems.iter().map(|p| format!("client {i}: {p}")));
        match &client.end {
            Some(End::AfterClose) | None => {}
            Some(End::Quiet(after)) if *after + ANSWER_TRANSIT >= quiet => {}
            Some(End::Quiet(after)) => failures.push(format!(
                "client {i}: closed without a `Connection: close` answer, quiet only {after:?} \
                 (the quiet is {quiet:?})"
            )),
            Some(End::Lost(how)) => failures.push(format!("client {i}: {how}")),
        }
        if client.end.is_some() && !client.refused_after_close {
            failures.push(format!("client {i}: no refused reconnect after its close"));
        }
    }
    failures
}

/// GET after GET on one keep-alive connection until it ends, then (after the signal) one
/// reconnect; gives up `grace` and a deadline after the signal. `ready` counts clients that
/// have had an answer.
fn busy_client(
    addr: SocketAddr,
    id: usize,
    signalled_at: &OnceLock<Instant>,
    ready: &AtomicUsize,
    grace: Duration,
) -> BusyClient {
    let mut client = BusyClient::default();
    let past_limit = || {
        signalled_at
            .get()
            .is_some_and(|at| at.elapsed() > grace + DEADLINE)
    };
    let mut stream = match TcpStream::connect(addr) {
        Ok(stream) => stream,
        Err(e) => {
            client.problems.push(format!("connecting: {e}"));
            return client;
        }
    };
    stream.set_nodelay(true).unwrap();
    let mut buffer = Vec::new();
    let end = loop {
        if past_limit() {
            client
                .problems
                .push("still open long after the grace".into());
            return client;
        }
        if let Some(how) = ended(&stream) {
            break quiet_end(&mut client, signalled_at, how);
        }
        let path = format!("/t{id}/{}", client.written);
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        if let Err(e) = stream.write_all(request.as_bytes()) {
            break quiet_end(&mut client, signalled_at, e.to_string());
        }
        client.written += 1;
        let answer = match read_answer(&mut stream, &mut buffer) {
            Ok(Some(answer)) => answer,
            Ok(None) if buffer.is_empty() => break End::Lost(format!("{path}: closed unanswered")),
            Ok(None) => break End::Lost(format!("{path}: answer cut short: {}", shown(&buffer))),
            Err(e) => break End::Lost(format!("{path}: {e}")),
        };
        if client.answered.is_empty() {
            ready.fetch_add(1, Ordering::Relaxed);
        }
        client.last_answer = Some(Instant::now());
        if signalled_at.get().is_some() {
            client.answered_after_signal += 1;
        }
        if answer.status != 200 || answer.body != GREETING {
            client
                .problems
                .push(format!("{path}: not the greeting: {answer:?}"));
        }
        client.answered.push(path);
        if says_close(&answer) {
            // Nothing more after that answer: hellod's FIN.
            let (more, ending) = read_until_close(&mut stream, DEADLINE);
            if !buffer.is_empty() || !more.is_empty() || ending != Ending::Closed {
                client.problems.push(format!(
                    "after the `Connection: close` answer: {ending:?} after {}",
                    shown(&[&buffer[..], &more[..]].concat())
                ));
            }
            break End::AfterClose;
        }
    };
    client.end = Some(end);
    if signalled_at.get().is_none() {
        client
            .problems
            .push("its connection ended before the stop".into());
        return client;
    }
    match TcpStream::connect(addr) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => client.refused_after_close = true,
        Err(e) => client
            .problems
            .push(format!("reconnecting after the close: {e}")),
        Ok(_) => client
            .problems
            .push("a reconnect after the close was accepted".into()),
    }
    client
}

/// Records a close with nothing in flight: how long the connection had been quiet by then,
/// from the later of the signal and its last answer.
fn quiet_end(client: &mut BusyClient, signalled_at: &OnceLock<Instant>, how: String) -> End {
    let Some(&signalled) = signalled_at.get() else {
        client
            .problems
            .push(format!("closed before the stop: {how}"));
        return End::Quiet(Duration::ZERO);
    };
    let since = client
        .last_answer
        .map_or(signalled, |answer| answer.max(signalled));
    End::Quiet(since.elapsed())
}

/// Whether the server has ended `stream` (closed, reset, or sent bytes no request asked for),
/// without waiting.
fn ended(stream: &TcpStream) -> Option<String> {
    stream.set_nonblocking(true).unwrap();
    let seen = match stream.peek(&mut [0u8; 64]) {
        Ok(0) => Some("closed".to_owned()),
        Ok(n) => Some(format!("{n} bytes unasked for")),
        Err(e) if e.kind() == ErrorKind::WouldBlock => None,
        Err(e) => Some(e.to_string()),
    };
    stream.set_nonblocking(false).unwrap();
    seen
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

/// How a trickled head ended.
struct Trickled {
    first_byte: Instant,
    sent: usize,
    received: Vec<u8>,
    /// When the server ended the connection, and how; None if it was still open at the limit.
    ended: Option<(Instant, Ending)>,
}

/// Sends a head that never ends in time (more than a hundred bytes, a byte every 100 ms) from
/// now on, reading what comes back, until the server ends the connection or `limit` has passed.
fn trickle(mut stream: TcpStream, limit: Duration) -> Trickled {
    let head = [
        &b"GET / HTTP/1.1\r\nHost: t\r\nX-Trickle: "[..],
        &[b'a'; 100][..],
    ]
    .concat();
    let pace = Duration::from_millis(100);
    stream.set_nodelay(true).unwrap();
    let first_byte = Instant::now();
    let mut trickled = Trickled {
        first_byte,
        sent: 0,
        received: Vec::new(),
        ended: None,
    };
    let mut buffer = [0u8; 1024];
    while first_byte.elapsed() < limit {
        if trickled.sent < head.len() {
            if stream.write_all(&head[trickled.sent..][..1]).is_err() {
                trickled.ended = Some((Instant::now(), Ending::Reset));
                return trickled;
            }
            trickled.sent += 1;
        }
        // Reads until the next byte is due.
        let next_byte = first_byte + pace * trickled.sent as u32;
        loop {
            let left = next_byte.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            stream.set_read_timeout(Some(left)).unwrap();
            let ending = match stream.read(&mut buffer) {
                Ok(0) => Ending::Closed,
                Ok(n) => {
                    trickled.received.extend_from_slice(&buffer[..n]);
                    continue;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break;
                }
                Err(_) => Ending::Reset,
            };
            trickled.ended = Some((Instant::now(), ending));
            return trickled;
        }
    }
    trickled
}

/// A head started after the signal, on a connection open before it, with `--read-timeout 2`
/// and `--grace 5`: the head is on its way when the stop comes, so hellod reads it until its
/// deadline (2 s from its first byte, within the grace) and answers that deadline's 408, then
/// closes; a silent connection beside it is closed once quiet. The stop then ends, exit 0.
#[test]
#[ignore]
fn a_head_started_after_the_stop_gets_its_408_at_its_deadline() {
    let grace = Duration::from_secs(5);
    let read_timeout = Duration::from_secs(2);
    let quiet = quiet_under(grace);
    let mut server = Server::start(&["--workers", "2", "--grace", "5", "--read-timeout", "2"]);
    let trickler = server.connect();
    let mut silent = vec![server.connect()];
    let signalled = stop(&server);
    let trickler = thread::spawn(move || trickle(trickler, grace + DEADLINE));
    let silent = thread::spawn(move || watch_closes(&mut silent, signalled, grace + DEADLINE));
    let status = server.wait_exit(grace + DEADLINE);
    let took = signalled.elapsed();
    let trickled = trickler.join().unwrap();
    let silent = silent.join().unwrap().pop().flatten();

    let ended = trickled
        .ended
        .map(|(at, how)| (at - trickled.first_byte, how));
    println!(
        "a head trickled after the stop (--read-timeout 2, --grace 5): {} bytes sent, ended \
         {ended:?} after its first byte with {}; a silent one closed {:?} after the signal; \
         exit {status} after {took:?}",
        trickled.sent,
        shown(&trickled.received).replace("\r\n", " | "),
        silent.as_ref().map(|c| (c.after, c.ending)),
    );
    let responses = parse_responses(&trickled.received, false).expect("whole responses");
    assert!(
        matches!(&responses[..], [one] if one.status == 408),
        "the trickler's answer: {responses:?}"
    );
    // How it ends after the 408 is left open: a byte of the head that comes as hellod closes
    // turns its FIN into a reset.
    let (after, _) = ended.expect("the trickler's connection ends");
    assert!(
        after >= read_timeout && after < read_timeout + GRACE_SLACK,
        "the trickler ended {after:?} after its first byte (its deadline: {read_timeout:?})"
    );
    let silent = silent.expect("the silent connection is closed");
    assert!(
        silent.ending == Ending::Closed && silent.received.is_empty(),
        "the silent one: {:?} after {}",
        silent.ending,
        shown(&silent.received)
    );
    assert!(
        silent.after >= quiet,
        "the silent one closed after {:?}",
        silent.after
    );
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(took < grace, "the stop took {took:?}");
}

/// The same head with `--read-timeout 30`, past the grace: hellod reads it for as long as the
/// grace lasts, then closes it (a 408 or nothing before the close) and exits 0 when the grace
/// ends, not later.
#[test]
#[ignore]
fn a_head_started_after_the_stop_is_cut_when_the_grace_ends() {
    let grace = Duration::from_secs(5);
    let mut server = Server::start(&["--workers", "2", "--grace", "5", "--read-timeout", "30"]);
    let trickler = server.connect();
    let signalled = stop(&server);
    let trickler = thread::spawn(move || trickle(trickler, grace + DEADLINE));
    let status = server.wait_exit(grace + DEADLINE);
    let took = signalled.elapsed();
    let trickled = trickler.join().unwrap();

    let ended = trickled
        .ended
        .map(|(at, how)| (at.saturating_duration_since(signalled), how));
    println!(
        "a head trickled after the stop (--read-timeout 30, --grace 5): {} bytes sent, ended \
         {ended:?} after the signal with {:?}; exit {status} after {took:?}",
        trickled.sent,
        shown(&trickled.received)
    );
    let responses = parse_responses(&trickled.received, false).expect("whole responses");
    assert!(
        responses.iter().all(|r| r.status == 408) && responses.len() <= 1,
        "the trickler's answers: {responses:?}"
    );
    let (after, _) = ended.expect("the trickler's connection ends");
    assert!(
        after >= grace && after < grace + GRACE_SLACK,
        "the trickler ended {after:?} after the signal (grace {grace:?})"
    );
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        took >= grace && took < grace + GRACE_SLACK,
        "the stop took {took:?}"
    );
}
