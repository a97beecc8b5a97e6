//! The waiting room: one thread and one epoll for every connection that is not being served. It
//! accepts from the listening socket, enforces the connection limit, reads request heads as they
//! arrive (through the same framing as tiny_http's reads), times the keep-alive timeout and the
//! head deadline, and sends a connection on to tiny_http once a whole head is there. A waiting
//! connection costs its socket, one descriptor and a few hundred bytes here, not a thread.
//!
//! tiny_http gives every open connection a thread for as long as it is open; Apache's event MPM,
//! Tomcat's NIO connector and gunicorn's gthread worker park idle connections in a poller for
//! the same reason. `accepting` takes connections in; `waiting` watches them until a head is
//! whole or a deadline passes.

mod accepting;
mod waiting;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use libc::{c_int, sockaddr, socklen_t};

use super::connection::{Connection, Stage, State, refusal_response};
use super::handoff::{self, CLOSE_WAIT};
use super::{Stopping, registry, settings, stopping, sys};

/// What other threads hand the room: connections tiny_http gave back, and wake-ups.
struct Room {
    wake: RawFd,
    welcomed: Mutex<Vec<Arc<Connection>>>,
}

static ROOM: OnceLock<Room> = OnceLock::new();

/// Set once a stop has made the room accept no more: only then may an answer say that its
/// connection closes, so that the client's next connection is refused, not accepted.
pub(super) static REFUSING: AtomicBool = AtomicBool::new(false);

/// Set while the room waits for a descriptor to be closed before it accepts again.
pub(super) static WANTS_A_CLOSE: AtomicBool = AtomicBool::new(false);

const LISTENER: u64 = u64::MAX;
const WAKE: u64 = u64::MAX - 1;
/// Accepts per wake-up, so that reading waiting connections is not starved in a flood.
const ACCEPTS_PER_ROUND: usize = 64;
/// What one read of a waiting connection takes: tiny_http's own buffer size, so the room holds no
/// more of a connection's stream than tiny_http would.
const READ_SIZE: usize = 1024;

/// Opens the room on `listener` (made non-blocking) and starts its thread.
pub(super) fn open(listener: RawFd) -> io::Result<()> {
    // SAFETY: creates a descriptor; takes no memory.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epoll < 0 {
        return Err(io::Error::last_os_error());
    }
    let wake = sys::eventfd().ok_or_else(io::Error::last_os_error)?;
    // SAFETY: flags of a descriptor the caller owns; takes no memory.
    unsafe {
        let flags = libc::fcntl(listener, libc::F_GETFL);
        libc::fcntl(listener, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    watch(epoll, listener, LISTENER)?;
    watch(epoll, wake, WAKE)?;
    let _ = ROOM.set(Room {
        wake,
        welcomed: Mutex::new(Vec::new()),
    });
    let mut room = Loop {
        epoll,
        listener: Some(listener),
        stopped: false,
        accept_paused_until: None,
        waiting: registry::Map::default(),
        deadlines: BinaryHeap::new(),
    };
    std::thread::Builder::new()
        .name("hellod-waiting".into())
        .stack_size(128 * 1024)
        .spawn(move || room.run())?;
    Ok(())
}

fn watch(epoll: RawFd, fd: RawFd, token: u64) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
        u64: token,
    };
    // SAFETY: epoll_ctl only reads the one `event`, which outlives the call.
    if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn unwatch(epoll: RawFd, fd: RawFd) {
    // SAFETY: for a removal the event is ignored, and may be null (Linux 2.6.9 on).
    unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
}

/// A connection that tiny_http gave back: it waits here again.
pub(super) fn welcome(connection: Arc<Connection>) {
    let room = ROOM
        .get()
        .expect("the room is open before tiny_http has connections");
    let mut welcomed = room
        .welcomed
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    welcomed.push(connection);
    if welcomed.len() == 1 {
        sys::signal_eventfd(room.wake);
    }
}

/// Something for the room to see at once: a stop.
pub(super) fn wake() {
    if let Some(room) = ROOM.get() {
        sys::signal_eventfd(room.wake);
    }
}

/// A descriptor was closed: the room accepts again, if it waited for that.
pub(super) fn closed_a_descriptor() {
    if WANTS_A_CLOSE.swap(false, SeqCst)
        && let Some(room) = ROOM.get()
    {
        sys::signal_eventfd(room.wake);
    }
}

/// The room's own state, on its thread only.
struct Loop {
    epoll: RawFd,
    /// None once the listening socket was shut, or left to systemd (a stop).
    listener: Option<RawFd>,
    /// The stop has been seen to.
    stopped: bool,
    /// Out of descriptors: accepting again at this time, or at the next close.
    accept_paused_until: Option<Instant>,
    /// The waiting connections, with the deadline each must act by.
    waiting: registry::Map<RawFd, (Arc<Connection>, Instant)>,
    /// Every deadline set, soonest first; one that no longer matches `waiting` is passed over.
    deadlines: BinaryHeap<Reverse<(Instant, RawFd)>>,
}

impl Loop {
    fn run(&mut self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut buffer = [0u8; READ_SIZE];
        loop {
            let next = self.deadlines.peek().map(|Reverse((at, _))| *at);
            let timeout = match (next, self.accept_paused_until) {
                (Some(a), Some(b)) => sys::millis_until(a.min(b)),
                (Some(at), None) | (None, Some(at)) => sys::millis_until(at),
                (None, None) => -1,
            };
            // SAFETY: epoll_wait writes at most `events.len()` events, into `events`, which
            // outlives the call.
            let count = unsafe {
                libc::epoll_wait(
                    self.epoll,
                    events.as_mut_ptr(),
                    events.len() as c_int,
                    timeout,
                )
            };
            for event in &events[..count.max(0) as usize] {
                match event.u64 {
                    LISTENER => {
                        self.accept();
                    }
                    WAKE => {
                        self.take_welcomed();
                        if let Some(stop) = stopping().filter(|_| !self.stopped) {
                            self.stop(stop);
                        }
                    }
                    fd => self.read(fd as RawFd, &mut buffer),
                }
            }
            let now = Instant::now();
            self.expire(now);
            if self.accept_paused_until.is_some_and(|until| until <= now) {
                self.resume_accepting();
            }
        }
    }
}
