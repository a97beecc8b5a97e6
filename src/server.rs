//! Serving: tiny_http accept loops, each with its fixed pool of workers, and the supervisor that
//! restarts a loop that died and stops everything on SIGTERM or SIGINT.

use std::fmt;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Request, Server};

use crate::config::{Config, Listen};
use crate::greeting::{DateHeader, Greeting, access_log_line};
use crate::shutdown::{self, StopSignals};
use crate::tiny_http_gaps::{self, AcceptLoop};
use crate::{listener, process};

/// How often the supervisor checks that the accept loop still runs, and unsticks a connection.
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
}

/// Serves until SIGTERM or SIGINT, then drains within the grace period.
pub fn run(config: Config) -> Result<(), ServeError> {
    process::raise_open_files_limit();
    let listener = listener::open(config.listen, config.read_timeout)
        .map_err(context(format!("cannot listen on {}", config.listen)))?;
    let local_addr = listener.local_addr().map_err(context("listening socket"))?;
    serve(listener, local_addr, config)
}

fn serve(listener: TcpListener, local_addr: SocketAddr, config: Config) -> Result<(), ServeError> {
    let signals = StopSignals::install().map_err(context("cannot handle signals"))?;
    tiny_http_gaps::install_panic_hook();

    let serving = Arc::new(Serving {
        greeting: Greeting::new(&config.text, config.status),
        access_log: config.access_log,
        retired_idle: config.read_timeout + Duration::from_secs(1),
        stopping: AtomicBool::new(false),
    });
    let start = || AcceptGeneration::start(&listener, &serving, config.workers);
    let mut current = start().map_err(context("cannot start serving"))?;

    println!(
        "hellod {} listening on http://{local_addr} ({} worker{}, {} resident)",
        env!("CARGO_PKG_VERSION"),
        config.workers,
        if config.workers == 1 { "" } else { "s" },
        process::resident_kib().map_or_else(|| "unknown".into(), |kib| format!("{kib} KiB")),
    );

    let reachable_addr = Listen::Exact(local_addr).loopback_target();
    let mut restart_pause = Duration::ZERO;
    let signal = loop {
        if let Some(signal) = signals.wait(ACCEPT_CHECK) {
            break signal;
        }
        tiny_http_gaps::unstick_queued_connection(reachable_addr);
        if current.accept.is_running() {
            continue;
        }
        // An idle accept() timing out ends the loop after a long life; anything that ends young
        // is a failure that may go on (out of descriptors), so wait longer each time.
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

    serving.stopping.store(true, Ordering::Relaxed);
    println!("hellod: {signal} received, stopping");
    let still_connected = shutdown::drain(&listener, config.grace);
    if still_connected > 0 {
        println!("hellod: grace period over, closing {still_connected} connection(s) still open");
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
        let server = Arc::new(Server::from_listener(duplicate, None).map_err(io::Error::other)?);
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

fn work(server: &Server, serving: &Arc<Serving>, retired: &AtomicBool) {
    let mut date = DateHeader::default();
    loop {
        match server.recv_timeout(serving.retired_idle) {
            Ok(Some(request)) if tiny_http_gaps::carries_body(&request) => {
                let serving = serving.clone();
                tiny_http_gaps::answer_on_own_thread(request, move |r| {
                    serving.answer(r, &mut DateHeader::default())
                });
            }
            Ok(Some(request)) => serving.answer(request, &mut date),
            Ok(None) if retired.load(Ordering::Relaxed) => return,
            Ok(None) => {}
            // The accept loop ended. An idle accept() timing out (the read timeout, inherited from
            // the listener) is routine; the supervisor restarts the loop either way.
            Err(error)
                if error.kind() == io::ErrorKind::WouldBlock
                    || serving.stopping.load(Ordering::Relaxed) => {}
            Err(error) => eprintln!("hellod: accepting failed: {error}"),
        }
    }
}

impl Serving {
    fn answer(&self, request: Request, date: &mut DateHeader) {
        let log_line = self.access_log.then(|| {
            let bytes = self.greeting.body_len(&request);
            access_log_line(&request, self.greeting.status(), bytes)
        });
        let response = self.greeting.response(&request, date);
        // A client gone before its answer is no concern of the server's; tiny_http may panic after
        // the answer went out, throwing away an unread body, and the answer is still logged.
        tiny_http_gaps::contain(|| {
            let _ = request.respond(response);
        });
        if let Some(line) = log_line {
            let _ = writeln!(io::stdout().lock(), "{line}");
        }
    }
}
