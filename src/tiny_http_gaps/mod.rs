//! Every workaround for a gap in tiny_http 0.12, each next to the behaviour it answers, so that
//! it can be deleted the day upstream fixes it. tiny_http itself is used as published: these act
//! from outside, on the listening socket, the process, its socket calls and the requests it hands
//! over. One file a family: the accept loop, the socket calls (and the framing they check),
//! panics; the smaller ones are here.

use std::io;
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use socket2::Socket;
use tiny_http::Request;

mod accept_loop;
pub mod framing;
mod panics;
#[cfg(target_os = "linux")]
mod socket_hooks;

pub use accept_loop::AcceptLoop;
pub use panics::{contain, install_panic_hook};
#[cfg(target_os = "linux")]
pub use socket_hooks::LINGER;

/// What the socket hooks hold every connection to.
#[derive(Debug, Clone)]
pub struct Guard {
    pub limits: framing::Limits,
    /// A request head must arrive whole within this time from its first byte.
    pub head_timeout: Duration,
    /// Connections open at once, waiting or served.
    pub max_connections: usize,
    /// Connections in tiny_http's hands at once, each on a thread of its pool.
    pub max_serving: usize,
    /// The `Server` header of hellod's own answers, as the greeting's.
    pub server: String,
    /// Bytes of unfinished request heads that all connections together may hold; past it, the
    /// connection whose head grows gets a 503.
    pub head_budget: usize,
}

/// An answer hellod gave itself, for the access log.
pub struct Refusal<'a> {
    pub client: Option<SocketAddr>,
    pub request_line: &'a [u8],
    pub status: u16,
    pub body_len: usize,
}

/// Whether [`install_guard`] guards anything in this build: only on Linux, whose static linker
/// binds tiny_http's socket calls to hellod's (see `socket_hooks`).
pub const GUARDED: bool = cfg!(target_os = "linux");

/// What a build without the guard says of itself, on stderr at start and in `--version`: it
/// takes every connection and request whole, however many and however large.
pub const UNGUARDED: &str = "this build has no connection or request limits (the guard is \
                             Linux-only); put it behind a proxy";

/// Puts the guard in tiny_http's path, and the waiting room in front of it on `listener`, where
/// the build allows it ([`GUARDED`]); elsewhere it does nothing.
#[cfg(target_os = "linux")]
pub fn install_guard(
    guard: Guard,
    access_log: Option<fn(&Refusal)>,
    listener: &std::net::TcpListener,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    socket_hooks::install(guard, access_log, listener.as_raw_fd())
}

#[cfg(not(target_os = "linux"))]
pub fn install_guard(
    _guard: Guard,
    _access_log: Option<fn(&Refusal)>,
    _listener: &std::net::TcpListener,
) -> io::Result<()> {
    Ok(())
}

/// tiny_http gives no way to close a connection: a `Connection: close` header set on a response
/// is dropped, and a keep-alive connection stays open for as long as its client keeps it. So a
/// stop is the socket hooks' (see `socket_hooks::stop`): the waiting room accepts no more, each
/// connection is read on and answered until its last answer, which says it closes, or until it
/// has been quiet for `quiet`. False where there are no hooks: off Linux, where hellod cannot see
/// its connections.
#[cfg(target_os = "linux")]
pub fn stop_gently(quiet: Duration, keep_listening: bool) -> bool {
    socket_hooks::stop(quiet, keep_listening);
    true
}

#[cfg(not(target_os = "linux"))]
pub fn stop_gently(_quiet: Duration, _keep_listening: bool) -> bool {
    false
}

/// Connections open now (0 where hellod cannot see them).
#[cfg(target_os = "linux")]
pub fn open_connections() -> usize {
    socket_hooks::open_connections()
}

#[cfg(not(target_os = "linux"))]
pub fn open_connections() -> usize {
    0
}

/// During a stop: whether the answer to a request from `client` is its connection's last, to say
/// `Connection: close` (then tiny_http reads nothing after that request). Off Linux every answer
/// of a stop is: the process ends once they are out.
#[cfg(target_os = "linux")]
pub fn ends_its_connection(client: Option<SocketAddr>) -> bool {
    client.is_none_or(socket_hooks::end_after_answer)
}

#[cfg(not(target_os = "linux"))]
pub fn ends_its_connection(_client: Option<SocketAddr>) -> bool {
    true
}

/// A request from `client` has been answered: the socket hooks let its connection read on.
#[cfg(target_os = "linux")]
pub fn answered(client: Option<SocketAddr>) {
    if let Some(client) = client {
        socket_hooks::answered(client);
    }
}

#[cfg(not(target_os = "linux"))]
pub fn answered(_client: Option<SocketAddr>) {}

/// Shuts both ways the open connections from any of `clients`.
#[cfg(target_os = "linux")]
pub fn shut_connections_to(clients: &[SocketAddr]) {
    socket_hooks::shut_connections(std::net::Shutdown::Both, |peer| clients.contains(&peer));
}

#[cfg(not(target_os = "linux"))]
pub fn shut_connections_to(_clients: &[SocketAddr]) {}

/// tiny_http sets no socket options and has no timeouts at all (upstream #56): a silent client
/// holds its connection thread forever, and small responses wait for Nagle. Accepted sockets
/// inherit these options from the listener. `SO_RCVTIMEO` also makes an idle `accept()` time out,
/// which would end tiny_http's accept loop; the `accept4` hook waits on instead.
pub fn tune_listener(socket: &Socket, read_timeout: Duration) -> io::Result<()> {
    socket.set_tcp_nodelay(true)?;
    socket.set_read_timeout(Some(read_timeout))?;
    socket.set_write_timeout(Some(read_timeout))
}

/// tiny_http drops any `Connection` header a response sets (`Response::add_header`), so a client
/// that asked to close is not told that the connection closes after the answer (RFC 9112 section
/// 9.6 says it should be), and an HTTP/1.0 client that asked to keep it open is not told that it
/// may (ApacheBench's `-k` waits for that). tiny_http does not check header values for line breaks
/// either (upstream #288), so the header goes in after the value of another: the `Server` header
/// `hellod\r\nConnection: close`. Every other fixed line goes there too: a response owns its
/// headers, and each one cloned is two allocations under musl's one malloc lock, which a
/// thousand connections' threads contend for. `lines` are fixed or come from the operator's
/// headers, which the configuration checked for control bytes; no client data ever gets there.
pub fn server_header_with_lines(server: &str, lines: &str) -> tiny_http::Header {
    let value = format!("{server}{lines}");
    tiny_http::Header::from_bytes("Server", value).expect("fixed ASCII header is valid")
}

/// A request with a body (see [`carries_body`]) that tiny_http has not read yet (above 1 KiB, chunked, or behind
/// `Expect: 100-continue`) is read by whoever answers it, and what is left unread is thrown away
/// when the request is dropped, blocking until the client has sent it all or the read timeout
/// fires. On a worker, a few clients that declare more than they send would stop the server; so
/// such requests are answered on a thread of their own. Bodies are rare for a greeting server.
pub fn answer_on_own_thread(request: Request, answer: impl FnOnce(Request) + Send + 'static) {
    let body_thread = thread::Builder::new()
        .name("hellod-body".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            let mut request = request;
            // Read it all here, so that a chunked body is not left to be parsed as the next
            // request.
            contain(|| {
                let _ = io::copy(&mut request.as_reader(), &mut io::sink());
            });
            answer(request);
        });
    if let Err(error) = body_thread {
        // The request went with the closure: tiny_http answered it with a 500.
        eprintln!("hellod: cannot start a thread for a request body: {error}");
    }
}

pub fn carries_body(request: &Request) -> bool {
    request.body_length().is_some_and(|length| length > 0)
        || request
            .headers()
            .iter()
            .any(|h| h.field.equiv("Transfer-Encoding"))
}

/// tiny_http spawns its accept thread and a thread per connection with `thread::spawn`, so each
/// reserves std's default 2 MiB stack: 1,000 connections map 2 GiB and about 4 MiB of page
/// tables, for threads that touch a few KiB of stack. std reads `RUST_MIN_STACK` at its first
/// spawn, so setting it here gives those threads the stack hellod's own workers have. A value
/// the operator set is kept.
///
/// # Safety
///
/// No other thread may be running: it changes the environment.
pub unsafe fn shrink_default_thread_stack() {
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        // SAFETY: the caller guarantees no other thread reads or writes the environment now.
        unsafe { std::env::set_var("RUST_MIN_STACK", "131072") };
    }
}
