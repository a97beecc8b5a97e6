//! The waiting room: one thread and one epoll for every connection that is not being served. It
//! accepts from the listening socket, enforces the connection limit, reads request heads as they
//! arrive (through the same framing as tiny_http's reads), times the keep-alive timeout and the
//! head deadline, and sends a connection on to tiny_http once a whole head is there. A waiting
//! connection costs its socket, one descriptor and a few hundred bytes here, not a thread.
//!
//! tiny_http gives every open connection a thread for as long as it is open; Apache's event MPM,
//! Tomcat's NIO connector and gunicorn's gthread worker park idle connections in a poller for
//! the same reason.

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

    /// Accepts a round of connections; true when none are left to accept for now.
    fn accept(&mut self) -> bool {
        let Some(listener) = self.listener else {
            return true;
        };
        for _ in 0..ACCEPTS_PER_ROUND {
            // SAFETY: sockaddr_storage is plain integers, for which all zeroes are valid.
            let mut address: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of_val(&address) as socklen_t;
            let address_ptr = (&raw mut address).cast::<sockaddr>();
            // SAFETY: `address_ptr` points to `address`, whose size `len` holds; both outlive
            // the call.
            let fd = unsafe { sys::accept4(listener, address_ptr, &mut len, libc::SOCK_CLOEXEC) };
            if fd < 0 {
                match sys::errno() {
                    libc::EINTR | libc::ECONNABORTED | libc::EPROTO => continue,
                    libc::EAGAIN => return true,
                    libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                        self.pause_accepting();
                        return true;
                    }
                    // The listening socket is gone.
                    _ => {
                        unwatch(self.epoll, listener);
                        self.listener = None;
                        return true;
                    }
                }
            }
            // SAFETY: the accept succeeded, so the kernel wrote an address of `len` bytes into
            // `address` (at most its size, which is any family's).
            let peer = unsafe { peer_of(address_ptr, len) };
            match (peer, sys::inode(fd)) {
                (Some(peer), Some(inode))
                    if registry::open_connections() < settings().guard.max_connections =>
                {
                    let connection = Arc::new(Connection::new(fd, inode, peer));
                    registry::register(&connection);
                    self.wait(connection);
                }
                _ => refuse_at_once(fd),
            }
        }
        false
    }

    /// A stop: the clients that have connected are taken in, for what they may have sent; then
    /// the listening socket is shut, so that the kernel refuses new ones at once (a load balancer
    /// tries another backend), unless it is systemd's: that one stays open, its queue left for
    /// the next instance. Idle connections get their closing time.
    fn stop(&mut self, stop: Stopping) {
        self.stopped = true;
        if let Some(listener) = self.listener {
            if !stop.keep_listening {
                while !self.accept() {}
                sys::shutdown(listener, libc::SHUT_RD);
            }
            unwatch(self.epoll, listener);
            self.listener = None;
        }
        REFUSING.store(true, SeqCst);
        let sooner: Vec<(RawFd, Instant)> = (self.waiting.iter())
            .map(|(&fd, (connection, deadline))| (fd, *deadline, deadline_of(&connection.state())))
            .filter(|(_, deadline, closing)| closing < deadline)
            .map(|(fd, _, closing)| (fd, closing))
            .collect();
        for (fd, closing) in sooner {
            self.waiting.get_mut(&fd).expect("just seen").1 = closing;
            self.deadlines.push(Reverse((closing, fd)));
        }
    }

    /// tiny_http's accept loop ended for good on its first error (upstream #283); the room
    /// waits for a descriptor to be closed, or tries again after a while.
    fn pause_accepting(&mut self) {
        if let Some(listener) = self.listener {
            unwatch(self.epoll, listener);
            self.accept_paused_until = Some(Instant::now() + CLOSE_WAIT);
            WANTS_A_CLOSE.store(true, SeqCst);
        }
    }

    fn resume_accepting(&mut self) {
        self.accept_paused_until = None;
        WANTS_A_CLOSE.store(false, SeqCst);
        if let Some(listener) = self.listener {
            let _ = watch(self.epoll, listener, LISTENER);
            self.accept();
        }
    }

    fn take_welcomed(&mut self) {
        let room = ROOM.get().expect("open");
        sys::drain_eventfd(room.wake);
        if self.accept_paused_until.is_some() && !WANTS_A_CLOSE.load(SeqCst) {
            self.resume_accepting();
        }
        let welcomed = std::mem::take(
            &mut *room
                .welcomed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for connection in welcomed {
            self.wait(connection);
        }
    }

    /// Watches a connection until its next head is whole, or its deadline. One whose stream was
    /// ended after an answer (a stop) is closed now that the answer is out.
    fn wait(&mut self, connection: Arc<Connection>) {
        let (deadline, ended) = {
            let state = connection.state();
            (deadline_of(&state), state.framing.is_stopped())
        };
        if ended {
            finish(&connection);
            return;
        }
        let fd = connection.fd;
        if watch(self.epoll, fd, fd as u64).is_err() {
            end(&connection);
            return;
        }
        self.waiting.insert(fd, (connection, deadline));
        self.deadlines.push(Reverse((deadline, fd)));
    }

    fn read(&mut self, fd: RawFd, buffer: &mut [u8]) {
        let Some((connection, deadline)) = self.waiting.get(&fd).cloned() else {
            return;
        };
        let received = sys::recv_into(fd, buffer, libc::MSG_DONTWAIT);
        if received < 0 && matches!(sys::errno(), libc::EAGAIN | libc::EINTR) {
            return;
        }
        if received <= 0 {
            // The client left (or reset): the connection goes at once.
            self.close(fd);
            return;
        }
        let mut state = connection.state();
        let requests_before = state.framing.requests_ahead();
        state.prefetch(&mut buffer[..received as usize]);
        let whole_head = state.framing.requests_ahead() > requests_before
            || (!state.prefetched.is_empty()
                && !state.framing.in_head()
                && !state.framing.is_stopped());
        if whole_head {
            state.stage = Stage::Ready;
            drop(state);
            unwatch(self.epoll, fd);
            let (connection, _) = self.waiting.remove(&fd).expect("looked up");
            handoff::ready(connection);
        } else if state.framing.is_stopped() {
            drop(state);
            self.refuse(fd);
        } else if let Some(head_deadline) = state.head_deadline
            && head_deadline != deadline
        {
            drop(state);
            self.waiting.get_mut(&fd).expect("looked up").1 = head_deadline;
            self.deadlines.push(Reverse((head_deadline, fd)));
        }
    }

    /// Closes the connections whose deadline has passed: an unfinished head gets a 408, an idle
    /// connection is closed without a word, as tiny_http closes one that reached its read timeout.
    fn expire(&mut self, now: Instant) {
        while let Some(&Reverse((deadline, fd))) = self.deadlines.peek() {
            if deadline > now {
                return;
            }
            self.deadlines.pop();
            let Some((connection, current)) = self.waiting.get(&fd).cloned() else {
                continue;
            };
            if current != deadline {
                continue;
            }
            let mut state = connection.state();
            if state.framing.in_head() {
                state.stop(408);
                drop(state);
                self.refuse(fd);
            } else {
                drop(state);
                self.close(fd);
            }
        }
    }

    /// Sends hellod's answer to the head that stopped, then closes.
    fn refuse(&mut self, fd: RawFd) {
        if let Some((connection, _)) = self.waiting.remove(&fd) {
            unwatch(self.epoll, fd);
            finish(&connection);
        }
    }

    fn close(&mut self, fd: RawFd) {
        if let Some((connection, _)) = self.waiting.remove(&fd) {
            unwatch(self.epoll, fd);
            end(&connection);
        }
    }
}

/// When a waiting connection must have acted: its head's deadline, else the keep-alive timeout's,
/// or in a stop, sooner: once it has been quiet a while.
fn deadline_of(state: &State) -> Instant {
    if let Some(head_deadline) = state.head_deadline {
        return head_deadline;
    }
    let keep_alive = state.idle_since + settings().guard.head_timeout;
    stopping().map_or(keep_alive, |stop| {
        keep_alive.min(stop.closes_idle_at(state.idle_since))
    })
}

/// Sends hellod's answer to a head that stopped, if any, then closes with a FIN.
fn finish(connection: &Connection) {
    connection.answer_before_shutdown(false);
    sys::shutdown(connection.fd, libc::SHUT_WR);
    sys::discard_unread(connection.fd);
    end(connection);
}

/// Closes a connection for good.
fn end(connection: &Connection) {
    registry::forget(connection);
    sys::close(connection.fd);
    closed_a_descriptor();
}

/// Past the connection limit: said at once, without reading the request, then closed.
fn refuse_at_once(fd: RawFd) {
    sys::send_now(fd, &refusal_response(503, false));
    sys::close(fd);
}

/// The client's address as `accept4` wrote it.
///
/// # Safety
///
/// `addr` points to a socket address of `len` bytes.
unsafe fn peer_of(addr: *const sockaddr, len: socklen_t) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    let len = len as usize;
    // SAFETY: the caller's address; each family's structure is read only when that many bytes
    // are there.
    unsafe {
        match (*addr).sa_family as c_int {
            libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
                let v4 = addr.cast::<libc::sockaddr_in>().read_unaligned();
                let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
                Some(SocketAddr::new(ip.into(), u16::from_be(v4.sin_port)))
            }
            libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
                let v6 = addr.cast::<libc::sockaddr_in6>().read_unaligned();
                // As std reads it for tiny_http's `remote_addr`, flow and scope included.
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(v6.sin6_addr.s6_addr),
                    u16::from_be(v6.sin6_port),
                    u32::from_be(v6.sin6_flowinfo),
                    v6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}
