//! Serving: tiny_http accept loops, each with its fixed pool of workers, and the supervisor that
//! restarts a loop that died and stops everything on SIGTERM or SIGINT.

use std::fmt;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Request, Server};

use crate::config::{Config, MAX_BODY_BYTES, MAX_HEADER_FIELDS};
use crate::greeting::{DateHeader, Greeting, access_log_line, log_line};
use crate::listener::{self, Listening};
use crate::process;
use crate::shutdown::{self, StopSignals};
use crate::tiny_http_gaps::framing::Limits;
use crate::tiny_http_gaps::{self, AcceptLoop, Guard, Refusal};

/// How often the supervisor checks that the accept loop still runs, and that no worker is stuck
/// on a client that does not read.
const ACCEPT_CHECK: Duration = Duration::from_millis(250);
/// Longest pause between restarts of an accept loop that keeps failing (out of descriptors).
const MAX_RESTART_PAUSE: Duration = Duration::from_millis(500);

/// A failure that stops the server: one line for the operator, exit code 1.
#[derive(Debug)]
pub struct ServeError {
    context: String,
    error: io::Error,
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.error)
    }
}

fn context(context: impl Into<String>) -> impl FnOnce(io::Error) -> ServeError {
    let context = context.into();
    move |error| ServeError { context, error }
}

/// What every worker needs, whichever accept loop it serves.
struct Serving {
    greeting: Greeting,
    access_log: bool,
    /// A retired loop's workers leave once their queue has been empty this long: by then the read
    /// timeout has closed every connection of that loop that was not sending.
    retired_idle: Duration,
    /// Set on SIGTERM or SIGINT, after which the accept loop's end is expected.
    stopping: AtomicBool,
    /// Every worker's pulse, for the supervisor to find workers stuck writing an answer.
    pulses: Mutex<Vec<Weak<Pulse>>>,
    /// Requests with a body, each being read and answered on a thread of its own.
    body_threads: AtomicUsize,
}

/// What the supervisor sees of a worker: the client it is answering, if any, and how many
/// answers it has written; and what the supervisor saw of those at its last check.
#[derive(Default)]
struct Pulse {
    answering: Mutex<Option<SocketAddr>>,
    answered: AtomicU64,
    last_seen: Mutex<(u64, bool)>,
}

/// Serves until SIGTERM or SIGINT, then drains within the grace period.
pub fn run(config: Config) -> Result<(), ServeError> {
    process::raise_open_files_limit();
    let listening = listener::open(config.listen, config.read_timeout)
        .map_err(context(format!("cannot listen on {}", config.listen)))?;
    serve(listening, config)
}

fn serve(listening: Listening, config: Config) -> Result<(), ServeError> {
    let Listening {
        socket: listener,
        from_systemd,
    } = listening;
    let local_addr = listener.local_addr().map_err(context("listening socket"))?;
    let signals = StopSignals::install().map_err(context("cannot handle signals"))?;
    tiny_http_gaps::install_panic_hook();
    let max_serving = config.max_serving.unwrap_or_else(process::serving_allowed);
    let max_connections = config
        .max_connections
        .unwrap_or_else(|| process::connections_allowed(max_serving));
    let server = config
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("Server"))
        .map_or("hellod", |(_, value)| value.as_str())
        .to_owned();
    let guard = Guard {
        limits: Limits {
            max_head: config.max_header_bytes,
            max_headers: MAX_HEADER_FIELDS,
            max_body: MAX_BODY_BYTES,
        },
        head_timeout: config.read_timeout,
        max_connections,
        max_serving,
        server,
        head_budget: process::head_budget(config.max_header_bytes),
    };
    let log_refusals = config.access_log.then_some(log_refusal as fn(&Refusal));
    tiny_http_gaps::install_guard(guard, log_refusals, &listener)
        .map_err(context("cannot guard"))?;

    let serving = Arc::new(Serving {
        greeting: Greeting::new(&config.text, config.status, &config.headers),
        access_log: config.access_log,
        retired_idle: config.read_timeout + Duration::from_secs(1),
        stopping: AtomicBool::new(false),
        pulses: Mutex::new(Vec::new()),
        body_threads: AtomicUsize::new(0),
    });
    let start = || AcceptGeneration::start(&listener, &serving, config.workers);
    let mut current = start().map_err(context("cannot start serving"))?;

    if !tiny_http_gaps::GUARDED {
        eprintln!("hellod: warning: {}", tiny_http_gaps::UNGUARDED);
    }
    println!(
        "hellod {} listening on http://{local_addr} ({} worker{}, {}, {} resident)",
        env!("CARGO_PKG_VERSION"),
        config.workers,
        if config.workers == 1 { "" } else { "s" },
        if tiny_http_gaps::GUARDED {
            format!("up to {max_connections} connections, {max_serving} served at once")
        } else {
            "no connection or request limits in this build".to_owned()
        },
        process::resident_kib().map_or_else(|| "unknown".into(), |kib| format!("{kib} KiB")),
    );

    let mut restart_pause = Duration::ZERO;
    let signal = loop {
        if let Some(signal) = signals.wait(ACCEPT_CHECK) {
            break signal;
        }
        cut_clients_not_reading(&serving);
        if current.accept.is_running() {
            continue;
        }
        // A loop that ends young (tiny_http's accept thread panicking, out of descriptors or
        // threads) may fail again at once: wait longer each time.
        restart_pause = if current.started.elapsed() > Duration::from_secs(1) {
            Duration::ZERO
        } else {
            (restart_pause * 2).clamp(Duration::from_millis(50), MAX_RESTART_PAUSE)
        };
        current.retire();
        if let Some(signal) = signals.wait(restart_pause) {
            break signal;
        }
        match start() {
            Ok(next) => current = next,
            Err(error) => eprintln!("hellod: cannot restart accepting, will retry: {error}"),
        }
    };

    serving.stopping.store(true, Ordering::SeqCst);
    println!("hellod: {signal} received, stopping");
    match shutdown::drain(listener, from_systemd, config.grace, || serving.answering()) {
        None => {}
        Some(0) => println!("hellod: grace period over, closing the connections still open"),
        Some(open) => {
            println!("hellod: grace period over, closing {open} connection(s) still open")
        }
    }
    Ok(())
}

/// One tiny_http server (its accept loop, with a duplicate of the listening socket) and its
/// fixed pool of workers. tiny_http's accept loop cannot be restarted, so each restart starts a
/// new generation; a retired one keeps serving the connections it accepted until they go quiet.
struct AcceptGeneration {
    accept: AcceptLoop,
    retired: Arc<AtomicBool>,
    started: Instant,
}

impl AcceptGeneration {
    fn start(
        listener: &TcpListener,
        serving: &Arc<Serving>,
        workers: usize,
    ) -> io::Result<AcceptGeneration> {
        let (duplicate, accept) = AcceptLoop::duplicate(listener)?;
        // tiny_http starts its accept thread with `thread::spawn`, which panics when no thread
        // can be had (a process or cgroup limit): in the supervisor, that is a failed start.
        let server =
            panic::catch_unwind(AssertUnwindSafe(|| Server::from_listener(duplicate, None)))
                .map_err(|_| io::Error::other("cannot start tiny_http's accept thread"))?
                .map_err(io::Error::other)?;
        let server = Arc::new(server);
        let retired = Arc::new(AtomicBool::new(false));
        for started in 0..workers {
            let (server, serving, retired) = (server.clone(), serving.clone(), retired.clone());
            let spawned = thread::Builder::new()
                .name("hellod-worker".into())
                .stack_size(128 * 1024)
                .spawn(move || work(&server, &serving, &retired));
            match spawned {
                Ok(_) => {}
                // With no worker, the server is dropped here, which ends its accept loop.
                Err(error) if started == 0 => return Err(error),
                Err(error) => {
                    eprintln!("hellod: serving with {started} of {workers} workers: {error}");
                    break;
                }
            }
        }
        Ok(AcceptGeneration {
            accept,
            retired,
            started: Instant::now(),
        })
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }
}

/// A client that sends requests and does not read the answers fills its socket's buffers; the
/// worker writing to it then blocks for up to the write timeout (--read-timeout), and so do the
/// workers taking its next requests, which tiny_http has queued already and makes wait for that
/// answer. A few such clients would stop every answer. A worker found writing the same answer
/// at two checks in a row (so for 250 ms at least) is stuck on a client that does not read: that
/// client's connection is shut, which fails the write, and the queued requests after it fail as
/// fast.
fn cut_clients_not_reading(serving: &Serving) {
    let mut stuck = Vec::new();
    serving.pulses.lock().unwrap().retain(|pulse| {
        let Some(pulse) = pulse.upgrade() else {
            return false;
        };
        let answered = pulse.answered.load(Ordering::Relaxed);
        let client = *pulse.answering.lock().unwrap();
        let mut last_seen = pulse.last_seen.lock().unwrap();
        if let (Some(client), (before, true)) = (client, *last_seen)
            && before == answered
        {
            stuck.push(client);
        }
        *last_seen = (answered, client.is_some());
        true
    });
    if !stuck.is_empty() {
        tiny_http_gaps::shut_connections_to(&stuck);
    }
}

fn work(server: &Server, serving: &Arc<Serving>, retired: &AtomicBool) {
    let mut date = DateHeader::default();
    let pulse = Arc::new(Pulse::default());
    serving.pulses.lock().unwrap().push(Arc::downgrade(&pulse));
    loop {
        match server.recv_timeout(serving.retired_idle) {
            Ok(Some(request)) if tiny_http_gaps::carries_body(&request) => {
                let body_thread = BodyThread::count(serving);
                tiny_http_gaps::answer_on_own_thread(request, move |r| {
                    body_thread.0.answer(r, &mut DateHeader::default())
                });
            }
            Ok(Some(request)) => {
                *pulse.answering.lock().unwrap() = request.remote_addr().copied();
                serving.answer(request, &mut date);
                *pulse.answering.lock().unwrap() = None;
                pulse.answered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) if retired.load(Ordering::Relaxed) => return,
            Ok(None) => {}
            // The accept loop ended: expected once stopping; the supervisor restarts it otherwise.
            Err(_) if serving.stopping.load(Ordering::Relaxed) => {}
            Err(error) => eprintln!("hellod: accepting failed: {error}"),
        }
    }
}

/// Counts a request in [`Serving::body_threads`] for as long as it lives: dropped with the closure
/// that answers it, whether that ran or no thread could be had for it.
struct BodyThread(Arc<Serving>);

impl BodyThread {
    fn count(serving: &Arc<Serving>) -> BodyThread {
        serving.body_threads.fetch_add(1, Ordering::Relaxed);
        BodyThread(serving.clone())
    }
}

impl Drop for BodyThread {
    fn drop(&mut self) {
        self.0.body_threads.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Serving {
    /// Whether a request received is still being answered, by a worker or a body thread.
    fn answering(&self) -> bool {
        self.body_threads.load(Ordering::Relaxed) > 0
            || self.pulses.lock().unwrap().iter().any(|pulse| {
                pulse
                    .upgrade()
                    .is_some_and(|pulse| pulse.answering.lock().unwrap().is_some())
            })
    }

    fn answer(&self, request: Request, date: &mut DateHeader) {
        let log_line = self.access_log.then(|| {
            let bytes = self.greeting.body_len(&request);
            access_log_line(&request, self.greeting.status(), bytes)
        });
        let client = request.remote_addr().copied();
        // Read after a stop began: the connection's last answer says it closes.
        let closing =
            self.stopping.load(Ordering::SeqCst) && tiny_http_gaps::ends_its_connection(client);
        let response = self.greeting.response(&request, date, closing);
        // A client gone before its answer is no concern of the server's; tiny_http may panic after
        // the answer went out, throwing away an unread body, and the answer is still logged.
        tiny_http_gaps::contain(|| {
            let _ = request.respond(response);
        });
        tiny_http_gaps::answered(client);
        if let Some(line) = log_line {
            let _ = writeln!(io::stdout().lock(), "{line}");
        }
    }
}

/// hellod's own answers (431, 400, 505, ...) in the access log, like every other.
fn log_refusal(refusal: &Refusal) {
    let line = log_line(
        refusal.client,
        refusal.request_line,
        refusal.status,
        refusal.body_len,
    );
    let _ = writeln!(io::stdout().lock(), "{line}");
}
