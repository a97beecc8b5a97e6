//! tiny_http's sockets, seen as they are used: `accept4`, `recv`, `shutdown`, `close` and
//! `getpeername`, defined here under their libc names. On Linux the static linker binds every caller in the executable
//! to these, tiny_http's threads and std included, so each connection tiny_http takes, each byte
//! it reads and each socket it ends passes through hellod first, at the moment it happens.
//!
//! tiny_http gives every open connection a thread of its own for as long as it is open (upstream
//! #221), idle keep-alive ones included. So connections wait in hellod's waiting room (one epoll
//! thread for all of them) and are handed to tiny_http only when a whole request head is there;
//! tiny_http reads, parses and answers them as ever, and gives them back once they fall quiet.
//! A connection walks the stages of [`connection::Stage`]:
//!
//! - the waiting room accepts (`waiting_room`): the connection limit (past it, a 503 and a
//!   close), then `Waiting` until a whole head has been read, through the same [`Framing`]
//!   tiny_http's reads go through, within the head deadline and the keep-alive timeout;
//! - `accept4`, called by tiny_http's accept thread, takes the next `Ready` connection from the
//!   hand-off (`handoff`) while fewer than the serving limit are in tiny_http's hands, and hands
//!   it over as if just accepted (`HandedOver`): tiny_http duplicates it and a pool thread serves
//!   it (`Served`);
//! - `recv` gives that thread the bytes the room read first, then reads on through [`Framing`],
//!   which ends the stream before a head tiny_http must not see, with a deadline for each head,
//!   and at most 32 requests ahead of their answers; at a request boundary the thread lingers
//!   (`Lingering`) until the next request, or gives the connection back: the stream seems to end
//!   where no request has begun, which tiny_http ends silently (`GivingBack`);
//! - `shutdown`: tiny_http's teardown of a connection given back, or of one it dropped unread
//!   (`HandedOver`: no thread for it), is swallowed; for a real end, the writing half's shutdown
//!   (after every answer went out) first sends hellod's own answer to a head that was stopped;
//! - `close` of the connection's own descriptor at the end of a give-back returns it to the
//!   room, still open (`Waiting`), and frees its slot; dropped unread, it is queued again
//!   (`Ready`); any other close forgets it;
//! - `getpeername` answers for a connection whose client has already reset it.
//!
//! A stop ([`stop`]) changes three things and nothing else: the room accepts no more (it takes
//! what has already connected, then shuts the listening socket, unless systemd owns it); the last
//! answer on each connection says `Connection: close` and ends its stream ([`end_after_answer`]);
//! and a connection with nothing in flight is closed once it has been quiet a while, in the room
//! (nothing lingers on a thread any more). Requests on their way are read and answered as ever.
//!
//! Locks, wherever two are held: the hand-off's, then a connection's state, then a registry
//! shard. The hand-over gate (`handoff`: the room's accepting against the reserve's release) is
//! taken with none of them held. Hook code never calls libc's `accept4`, `recv`, `shutdown`,
//! `close` or `getpeername` (they are these functions): it calls the kernel through `sys`. Until
//! [`install`] is called, every hook only passes the call on, so other programs linking this
//! library are unaffected.
//!
//! [`Framing`]: crate::tiny_http_gaps::framing::Framing

mod connection;
mod handoff;
mod registry;
mod sys;
mod waiting_room;

use std::io;
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant};

use libc::{c_int, c_void, size_t, sockaddr, socklen_t, ssize_t};

use super::{Guard, Refusal};
pub use connection::LINGER;
use connection::Stage;
pub use registry::{answered, end_after_answer, open_connections, shut_connections};

pub(super) struct Settings {
    pub(super) guard: Guard,
    /// Where hellod's own answers go, if the access log is on.
    pub(super) access_log: Option<fn(&Refusal)>,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

const OFF: u8 = 0;
const PROBING: u8 = 1;
const ON: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(OFF);
/// One bit per hook seen while probing.
static PROBED: AtomicU8 = AtomicU8::new(0);

/// Sets the hooks to work with `settings`, after proving that tiny_http's calls reach them (a
/// toolchain that bound them elsewhere would leave every limit silently off), and opens the
/// waiting room on `listener`.
pub fn install(guard: Guard, access_log: Option<fn(&Refusal)>, listener: RawFd) -> io::Result<()> {
    let _ = SETTINGS.set(Settings { guard, access_log });
    MODE.store(PROBING, SeqCst);
    let probed = probe();
    MODE.store(OFF, SeqCst);
    probed?;
    waiting_room::open(listener)?;
    MODE.store(ON, SeqCst);
    Ok(())
}

/// One read, shutdown, accept and close through std, as tiny_http makes them, on a socket pair:
/// `RestrictAddressFamilies=` (the systemd unit's) allows no new Unix socket, but a pair. The
/// accept fails (the socket does not listen); what counts is that the call came here.
fn probe() -> io::Result<()> {
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};

    let (mut ours, mut theirs) = UnixStream::pair()?;
    theirs.write_all(b"x")?;
    ours.read_exact(&mut [0])?;
    ours.shutdown(std::net::Shutdown::Write)?;
    let _ = ours.peer_addr();
    let _ = UnixListener::from(std::os::fd::OwnedFd::from(ours)).accept();
    if PROBED.load(SeqCst) == 0b1_1111 {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "tiny_http's socket calls do not reach hellod's guard (seen: {:05b}); \
             refusing to serve without its limits",
            PROBED.load(SeqCst)
        )))
    }
}

/// Whether the hooks act; while probing, notes that the hook of `probe_bit` was reached.
fn active(probe_bit: u8) -> bool {
    match MODE.load(Relaxed) {
        ON => true,
        PROBING => {
            PROBED.fetch_or(probe_bit, SeqCst);
            false
        }
        _ => false,
    }
}

/// A stop under way.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stopping {
    since: Instant,
    /// How long a connection with nothing in flight is left open after the stop, or after its
    /// last answer if that came later.
    quiet: Duration,
    /// The listening socket is systemd's: it stays open, its queue kept for the next instance.
    pub(super) keep_listening: bool,
}

impl Stopping {
    /// When a connection idle since `idle_since` is closed.
    pub(super) fn closes_idle_at(&self, idle_since: Instant) -> Instant {
        idle_since.max(self.since) + self.quiet
    }
}

static STOPPING: OnceLock<Stopping> = OnceLock::new();

pub(super) fn stopping() -> Option<Stopping> {
    STOPPING.get().copied()
}

/// Stops gently: no new connections; a connection is closed once it has been quiet for `quiet`,
/// or after an answer that says so. `keep_listening`: the listening socket is systemd's.
pub fn stop(quiet: Duration, keep_listening: bool) {
    let since = Instant::now();
    let _ = STOPPING.set(Stopping {
        since,
        quiet,
        keep_listening,
    });
    // Lingering threads give their connections back, to be timed in the room.
    handoff::ask_all_back();
    waiting_room::wake();
}

pub(super) fn settings() -> &'static Settings {
    SETTINGS.get().expect("installed before it is on")
}

// The hooks.

/// tiny_http's accept thread takes its connections from the hand-off, never from the kernel.
///
/// # Safety
///
/// As `accept4(2)`: `addr` and `len` are null, or point to a writable address buffer and its
/// length.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    if !active(0b0001) {
        // SAFETY: passed on unchanged, under the contract this hook's caller upholds (# Safety
        // above), which is the one `sys::accept4` asks for.
        return unsafe { sys::accept4(fd, addr, len, flags) };
    }
    handoff::handover_done();
    while !handoff::hold_reserve() {
        handoff::wait_for_a_close();
    }
    let connection = handoff::next_for_tiny_http();
    handoff::make_spare_wake();
    handoff::release_reserve();
    // SAFETY: `accept4(2)`'s contract, which this hook's caller upholds, is `write_address`'s.
    unsafe { write_address(connection.peer, addr, len) };
    connection.fd
}

/// tiny_http asks a connection's address when a pool thread takes it up, and panics on its first
/// request if that failed (`remote_addr.unwrap()` in `ClientConnection::read`): a client that
/// resets first makes it fail (ENOTCONN). The panic ends the pool thread, and with it the
/// wake-up meant for the next connection queued in the pool (see `handoff`), which then waits
/// unserved. A connection hellod handed over keeps the address it was accepted with.
///
/// # Safety
///
/// As `getpeername(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: passed on unchanged, under the contract this hook's caller upholds.
    let result = unsafe { sys::getpeername(fd, addr, len) };
    if !active(0b1_0000) || result == 0 || sys::errno() != libc::ENOTCONN {
        return result;
    }
    let peer = match registry::lookup(fd) {
        Some(entry) => Some(entry.connection.peer),
        None => handoff::held_as(fd).map(|connection| connection.peer),
    };
    match peer {
        Some(peer) => {
            // SAFETY: `getpeername(2)`'s contract, which this hook's caller upholds, is
            // `write_address`'s.
            unsafe { write_address(peer, addr, len) };
            0
        }
        None => result,
    }
}

/// Writes `peer` as the kernel writes a socket address: at most `*len` bytes of it, and its
/// whole length in `*len`.
///
/// # Safety
///
/// `addr` and `len` are null or point to a writable buffer of `*len` bytes and its length.
unsafe fn write_address(peer: std::net::SocketAddr, addr: *mut sockaddr, len: *mut socklen_t) {
    if addr.is_null() || len.is_null() {
        return;
    }
    let peer = socket2::SockAddr::from(peer);
    // SAFETY: neither is null, so by the contract `*len` is readable and `addr` has `*len`
    // writable bytes: at most that many are written, from `peer`, which is apart.
    unsafe {
        let n = (peer.len() as usize).min(*len as usize);
        std::ptr::copy_nonoverlapping(peer.as_ptr().cast::<u8>(), addr.cast::<u8>(), n);
        *len = peer.len();
    }
}

/// # Safety
///
/// As `recv(2)`: `buf` points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    if active(0b0010)
        && flags == 0
        && let Some(connection) = registry::connection_read_on(fd)
    {
        // SAFETY: passed on unchanged, under the contract this hook's caller upholds (# Safety
        // above), which is the one `Connection::recv` asks for.
        return unsafe { connection.recv(fd, buf, len) };
    }
    // SAFETY: passed on unchanged, under the contract this hook's caller upholds (# Safety
    // above), which is the one `sys::recv` asks for.
    unsafe { sys::recv(fd, buf, len, flags) }
}

/// # Safety
///
/// As `shutdown(2)`: `fd` is the caller's to shut.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    if !active(0b0100) {
        return sys::shutdown(fd, how);
    }
    let Some(entry) = registry::lookup(fd) else {
        // tiny_http's duplicate of a connection it dropped unread (`HandedOver`) is registered
        // nowhere: the hand-off keeps that connection on its list until it ends.
        if handoff::held_as(fd).is_some() {
            return 0;
        }
        return sys::shutdown(fd, how);
    };
    let connection = &entry.connection;
    let teardown = {
        let state = connection.state();
        match entry.handover {
            Some(handover) => handover <= state.given_back,
            None => matches!(state.stage, Stage::GivingBack { .. } | Stage::HandedOver),
        }
    };
    if teardown {
        return 0;
    }
    let own_write_half = entry.handover.is_none() && how == libc::SHUT_WR;
    if own_write_half {
        connection.answer_before_shutdown(true);
    }
    let result = sys::shutdown(fd, how);
    if own_write_half {
        sys::discard_unread(fd);
    }
    result
}

/// # Safety
///
/// As `close(2)`: `fd` is the caller's to close, and not used again after.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if !active(0b1000) {
        return sys::close(fd);
    }
    match registry::lookup(fd) {
        Some(entry) if entry.handover.is_none() => {
            let connection = entry.connection;
            let mut state = connection.state();
            match state.stage {
                Stage::GivingBack { asked } => {
                    state.stage = Stage::Waiting;
                    drop(state);
                    handoff::given_back(asked);
                    waiting_room::welcome(connection);
                    return 0;
                }
                Stage::HandedOver => {
                    // The hand-off's lock comes before the connection's.
                    drop(state);
                    handoff::handover_failed(connection);
                    return 0;
                }
                _ => {}
            }
            let in_hand = matches!(state.stage, Stage::Served | Stage::Lingering(_));
            drop(state);
            // Forgotten before the number can be reused.
            registry::forget(&connection);
            handoff::closed(in_hand);
        }
        Some(_) => registry::forget_duplicate(fd),
        None => {}
    }
    let result = sys::close(fd);
    if handoff::WAITING_FOR_CLOSE.load(SeqCst) {
        handoff::CLOSED.notify_all();
    }
    waiting_room::closed_a_descriptor();
    result
}
