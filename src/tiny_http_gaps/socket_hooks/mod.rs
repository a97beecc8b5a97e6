//! tiny_http's sockets, seen as they are used: `accept4`, `recv`, `shutdown` and `close`, defined
//! here under their libc names. In the static musl build the linker binds every caller to these,
//! tiny_http's threads included, so each connection it accepts and each byte it reads passes
//! through hellod first, at the moment it happens, with nothing walked on a timer.
//!
//! - `accept4` admits at most the connection limit (past it: a 503 and a close), waits for an
//!   open descriptor instead of failing (tiny_http's accept loop ends for good on its first
//!   error, upstream #283), keeps one in reserve for tiny_http's duplicate of each socket, and
//!   waits until the connection accepted before it has been taken up by a thread of tiny_http's
//!   pool (whose `TaskPool::spawn` otherwise loses wake-ups in bursts and leaves a connection
//!   queued, unread, behind a long keep-alive one).
//! - `recv` runs what tiny_http reads through `Framing` and gives a request head a deadline from
//!   its first byte; a head it must not see ends the stream there. It also reads no further while
//!   a connection has 32 requests unanswered: tiny_http reads pipelined requests as fast
//!   as they come into a queue without bound, so a client that sends and never reads would grow
//!   it by tens of megabytes a second (`answered` is the workers' side).
//! - `shutdown` of a connection's writing half, which tiny_http calls once it has answered all
//!   it read, first sends hellod's own answer to the head that was stopped.
//! - `close` forgets the connection.
//!
//! tiny_http reads through a duplicate of the accepted descriptor (`try_clone`); it is matched to
//! its connection by inode at its first read. Until [`install`] is called, every hook only passes
//! the call on, so other programs linking this library are unaffected.

mod accepting;
mod connection;
mod registry;

use std::io;
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};

use libc::{c_int, c_void, size_t, sockaddr, socklen_t, ssize_t};

use super::{Guard, Refusal};
use accepting::{
    CLOSED, WAITING_FOR_CLOSE, admit, hold_reserve, peer_of, refuse, release_reserve,
    wait_for_a_close, wait_until_taken_up,
};
use registry::{OPEN, PENDING_COUNT, connection_read_on, peers, pending, registered, shard};
pub use registry::{answered, open_connections, shut_connections};

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

/// Sets the hooks to work with `settings`, after proving that tiny_http's calls reach them: a
/// toolchain that bound them elsewhere would leave every limit silently off.
pub fn install(guard: Guard, access_log: Option<fn(&Refusal)>) -> io::Result<()> {
    let _ = SETTINGS.set(Settings { guard, access_log });
    MODE.store(PROBING, SeqCst);
    let probed = probe();
    MODE.store(if probed.is_ok() { ON } else { OFF }, SeqCst);
    probed
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
    let _ = UnixListener::from(std::os::fd::OwnedFd::from(ours)).accept();
    if PROBED.load(SeqCst) == 0b1111 {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "tiny_http's socket calls do not reach hellod's guard (seen: {:04b}); \
             refusing to serve without its limits",
            PROBED.load(SeqCst)
        )))
    }
}

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

pub(super) fn settings() -> &'static Settings {
    SETTINGS.get().expect("installed before it is on")
}

fn errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn set_errno(code: c_int) {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() = code };
}

// The hooks. Each passes the call on to the kernel as musl would, and does its work around it.

/// # Safety
///
/// As `accept4(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    loop {
        if MODE.load(Relaxed) == ON {
            wait_until_taken_up();
            if !hold_reserve() {
                wait_for_a_close();
                continue;
            }
        }
        // SAFETY: the caller's arguments, as given.
        let accepted = unsafe { libc::syscall(libc::SYS_accept4, fd, addr, len, flags) } as c_int;
        if !active(0b0001) {
            return accepted;
        }
        if accepted >= 0 {
            // SAFETY: the kernel filled the caller's address buffer, if there was one.
            if admit(accepted, unsafe { peer_of(addr, len) }) {
                release_reserve();
                return accepted;
            }
            refuse(accepted);
            continue;
        }
        match errno() {
            // The listener's read timeout (inherited by accepted sockets) ends an idle wait.
            libc::EAGAIN | libc::EINTR | libc::ECONNABORTED => {}
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => wait_for_a_close(),
            _ => return accepted,
        }
    }
}

/// # Safety
///
/// As `recv(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    if active(0b0010)
        && flags == 0
        && let Some(connection) = connection_read_on(fd)
    {
        return connection.recv(fd, buf, len);
    }
    // SAFETY: the caller's arguments, as given.
    unsafe {
        libc::recvfrom(
            fd,
            buf,
            len,
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
}

/// # Safety
///
/// As `shutdown(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    let connection = (active(0b0100) && how == libc::SHUT_WR)
        .then(|| registered(fd))
        .flatten()
        .filter(|connection| connection.accepted == fd);
    if let Some(connection) = &connection {
        connection.answer_before_shutdown(fd);
    }
    // SAFETY: as given.
    let result = unsafe { libc::syscall(libc::SYS_shutdown, fd, how) } as c_int;
    if connection.is_some() {
        discard_unread(fd);
    }
    result
}

/// Reads and drops what the client has sent and nobody will read, at most 64 KiB, without
/// waiting.
fn discard_unread(fd: RawFd) {
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        // SAFETY: into a buffer owned here.
        let n = unsafe { libc::recv(fd, sink.as_mut_ptr().cast(), sink.len(), libc::MSG_DONTWAIT) };
        if n <= 0 {
            return;
        }
    }
}

/// # Safety
///
/// As `close(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if active(0b1000) {
        // Forgotten before the number can be reused.
        if let Some(connection) = shard(fd).remove(&fd)
            && connection.accepted == fd
        {
            if let Some(peer) = connection.peer {
                peers(peer).remove(&peer);
            }
            // Never taken up: tiny_http's accept thread or pool failed before it read.
            if PENDING_COUNT.load(Acquire) > 0 {
                pending().remove(connection.inode);
            }
            OPEN.fetch_sub(1, Relaxed);
        }
        if WAITING_FOR_CLOSE.load(SeqCst) {
            CLOSED.notify_all();
        }
    }
    // SAFETY: as given.
    unsafe { raw_close(fd) }
}

/// musl's `close`: an interrupted close has closed the descriptor all the same.
pub(super) unsafe fn raw_close(fd: c_int) -> c_int {
    // SAFETY: the caller's descriptor.
    match unsafe { libc::syscall(libc::SYS_close, fd) } {
        -1 if errno() == libc::EINTR => {
            set_errno(0);
            0
        }
        result => result as c_int,
    }
}
