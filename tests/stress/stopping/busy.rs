//! Busy keep-alive clients across a stop.

use super::*;

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
