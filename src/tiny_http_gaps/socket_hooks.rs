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
//! - `recv` runs what tiny_http reads through [`Framing`] and gives a request head a deadline from
//!   its first byte; a head it must not see ends the stream there. It also reads no further while
//!   a connection has [`MAX_AHEAD`] requests unanswered: tiny_http reads pipelined requests as fast
//!   as they come into a queue without bound, so a client that sends and never reads would grow
//!   it by tens of megabytes a second ([`answered`] is the workers' side).
//! - `shutdown` of a connection's writing half, which tiny_http calls once it has answered all
//!   it read, first sends hellod's own answer to the head that was stopped.
//! - `close` forgets the connection.
//!
//! tiny_http reads through a duplicate of the accepted descriptor (`try_clone`); it is matched to
//! its connection by inode at its first read. Until [`install`] is called, every hook only passes
//! the call on, so other programs linking this library are unaffected.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use libc::{c_int, c_void, size_t, sockaddr, socklen_t, ssize_t};

use super::framing::{Framing, Scan, is_token_byte};
use super::{Guard, Refusal};

struct Settings {
    guard: Guard,
    /// Where hellod's own answers go, if the access log is on.
    access_log: Option<fn(&Refusal)>,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

const OFF: u8 = 0;
const PROBING: u8 = 1;
const ON: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(OFF);
/// One bit per hook seen while probing.
static PROBED: AtomicU8 = AtomicU8::new(0);

/// Connections accepted and not yet closed.
static OPEN: AtomicUsize = AtomicUsize::new(0);
/// What tiny_http holds of request heads, all connections together: unfinished heads (in a
/// line buffer and the header strings parsed from it) and requests read but not yet answered.
static HEAD_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Requests a connection may have read and not answered before hellod stops reading from it:
/// twice the depth of common pipelining benchmarks (16).
const MAX_AHEAD: usize = 32;

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

fn settings() -> &'static Settings {
    SETTINGS.get().expect("installed before it is on")
}

fn errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn set_errno(code: c_int) {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() = code };
}

/// One accepted connection: its two descriptors (the accepted one, which tiny_http writes to,
/// and the duplicate it reads from) and what has been read of it.
struct Connection {
    accepted: RawFd,
    inode: u64,
    peer: Option<SocketAddr>,
    reading: Mutex<Reading>,
    /// Notified when a request of this connection has been answered, or the connection shut.
    room: Condvar,
}

struct Reading {
    framing: Framing,
    head_deadline: Option<Instant>,
    /// The answer to send when tiny_http has answered everything before it.
    answer: Option<u16>,
    /// This connection's share of [`HEAD_BYTES`].
    head_bytes: usize,
    /// Shut by hellod (a stop, a client not reading): nothing more to wait for.
    shut: bool,
}

impl Reading {
    /// Brings this connection's share of [`HEAD_BYTES`] up to date; returns the new total.
    fn count_head_bytes(&mut self) -> usize {
        let now = self.framing.held_bytes();
        let total = if now >= self.head_bytes {
            HEAD_BYTES.fetch_add(now - self.head_bytes, Relaxed) + (now - self.head_bytes)
        } else {
            HEAD_BYTES.fetch_sub(self.head_bytes - now, Relaxed) - (self.head_bytes - now)
        };
        self.head_bytes = now;
        total
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        HEAD_BYTES.fetch_sub(self.head_bytes, Relaxed);
    }
}

impl Connection {
    fn reading(&self) -> MutexGuard<'_, Reading> {
        self.reading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// tiny_http's read: through [`Framing`], and within the head's deadline.
    fn recv(&self, fd: RawFd, buf: *mut c_void, len: size_t) -> ssize_t {
        let deadline = {
            let mut reading = self.reading();
            while reading.framing.requests_ahead() >= MAX_AHEAD && !reading.shut {
                reading = self
                    .room
                    .wait(reading)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if reading.framing.is_stopped() {
                return 0;
            }
            reading.head_deadline
        };
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let millis = left.as_millis().min(c_int::MAX as u128) as c_int;
            // SAFETY: one pollfd, owned here.
            if unsafe { libc::poll(&mut poll, 1, millis) } == 0 {
                self.stop(408);
                return 0;
            }
        }
        // SAFETY: the caller's buffer and length, as given.
        let received =
            unsafe { libc::recvfrom(fd, buf, len, 0, std::ptr::null_mut(), std::ptr::null_mut()) };
        if received <= 0 {
            return received;
        }
        // SAFETY: the kernel wrote `received` bytes there.
        let bytes = unsafe { std::slice::from_raw_parts(buf as *const u8, received as usize) };
        let mut reading = self.reading();
        let scan = reading.framing.scan(bytes);
        reading.head_deadline = match (reading.framing.in_head(), reading.head_deadline) {
            (false, _) => None,
            (true, None) => Some(Instant::now() + settings().guard.head_timeout),
            (true, deadline) => deadline,
        };
        let heads = reading.count_head_bytes();
        match scan {
            Scan::Pass if heads > settings().guard.head_budget && reading.framing.in_head() => {
                reading.framing.stop();
                reading.answer = Some(503);
                reading.count_head_bytes();
                0
            }
            Scan::Pass => received,
            Scan::Stop { keep, status } => {
                reading.answer = status;
                keep as ssize_t
            }
        }
    }

    fn answered(&self) {
        let mut reading = self.reading();
        reading.framing.answered();
        reading.count_head_bytes();
        self.room.notify_one();
    }

    fn wake(&self) {
        self.reading().shut = true;
        self.room.notify_one();
    }

    fn stop(&self, status: u16) {
        let mut reading = self.reading();
        if !reading.framing.is_stopped() {
            reading.framing.stop();
            reading.answer = Some(status);
            reading.count_head_bytes();
        }
    }

    /// Sends the answer to a stopped head, if any, then lets the client's remaining bytes go so
    /// that the close ends in a FIN, not a reset that could destroy the answer in flight.
    fn answer_before_shutdown(&self, fd: RawFd) {
        let (status, request_line) = {
            let mut reading = self.reading();
            let Some(status) = reading.answer.take() else {
                return;
            };
            (status, reading.framing.request_line().to_vec())
        };
        // The method as far as it goes, even in a request line refused at its next byte.
        let head = request_line
            .strip_prefix(b"HEAD")
            .is_some_and(|rest| rest.first().is_none_or(|&next| !is_token_byte(next)));
        let response = refusal_response(status, head);
        // SAFETY: sends from a buffer owned here.
        unsafe {
            libc::send(
                fd,
                response.as_ptr().cast(),
                response.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if let Some(log) = settings().access_log {
            log(&Refusal {
                client: self.peer,
                request_line: &request_line,
                status,
                body_len: if head { 0 } else { reason(status).len() },
            });
        }
    }
}

fn borrowed(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: used only for calls on a descriptor the caller is about to use anyway; a closed
    // one makes them fail.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// A whole response that closes the connection; the reason is the body too, except in the
/// answer to a HEAD.
fn refusal_response(status: u16, head: bool) -> Vec<u8> {
    let reason = reason(status);
    format!(
        "HTTP/1.1 {status} {reason}\r\nServer: hellod\r\nDate: {}\r\nContent-Type: text/plain; \
         charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        httpdate::fmt_http_date(std::time::SystemTime::now()),
        reason.len(),
        if head { "" } else { reason },
    )
    .into_bytes()
}

/// Both descriptors of every open connection, in shards so that reads on different
/// connections rarely wait for each other.
type Shard = Mutex<HashMap<RawFd, Arc<Connection>, BuildHasherDefault<KeyHasher>>>;
const SHARDS: usize = 32;
static REGISTRY: [Shard; SHARDS] =
    [const { Mutex::new(HashMap::with_hasher(BuildHasherDefault::new())) }; SHARDS];

/// Every open connection by its client's address, for the workers to say which was answered.
type PeerShard = Mutex<HashMap<SocketAddr, Arc<Connection>, BuildHasherDefault<KeyHasher>>>;
static PEERS: [PeerShard; SHARDS] =
    [const { Mutex::new(HashMap::with_hasher(BuildHasherDefault::new())) }; SHARDS];

fn peers(
    peer: SocketAddr,
) -> MutexGuard<'static, HashMap<SocketAddr, Arc<Connection>, BuildHasherDefault<KeyHasher>>> {
    PEERS[peer.port() as usize % SHARDS]
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A worker has answered a request of the connection from `peer`.
pub fn answered(peer: SocketAddr) {
    let connection = peers(peer).get(&peer).cloned();
    if let Some(connection) = connection {
        connection.answered();
    }
}

/// Descriptors and client addresses are small keys, distinct among open connections: their
/// last eight bytes (an address's port and the end of its IP) are hash enough.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8) | byte as u64;
        }
    }
    fn write_i32(&mut self, n: i32) {
        self.0 = n as u64;
    }
}

fn shard(
    fd: RawFd,
) -> MutexGuard<'static, HashMap<RawFd, Arc<Connection>, BuildHasherDefault<KeyHasher>>> {
    REGISTRY[fd as usize % SHARDS]
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn registered(fd: RawFd) -> Option<Arc<Connection>> {
    shard(fd).get(&fd).cloned()
}

/// Connections accepted whose reading duplicate has not been read from yet, and the one the
/// next accept waits for.
struct Pending {
    connections: Vec<Arc<Connection>>,
    awaited: Option<u64>,
}

impl Pending {
    /// Takes the connection of `inode` off the list: taken up, or closed before it was.
    fn remove(&mut self, inode: u64) -> Option<Arc<Connection>> {
        let at = self.connections.iter().position(|c| c.inode == inode)?;
        PENDING_COUNT.store(self.connections.len() - 1, Release);
        if self.awaited == Some(inode) {
            self.awaited = None;
            TAKEN_UP.notify_all();
        }
        Some(self.connections.swap_remove(at))
    }
}

static PENDING: Mutex<Pending> = Mutex::new(Pending {
    connections: Vec::new(),
    awaited: None,
});
static PENDING_COUNT: AtomicUsize = AtomicUsize::new(0);
static TAKEN_UP: Condvar = Condvar::new();

/// Longest an accept waits for the connection before it to be taken up; only a thread that
/// cannot be started takes this long, and no later accept waits for that one again.
const TAKE_UP_WAIT: Duration = Duration::from_millis(200);

fn pending() -> MutexGuard<'static, Pending> {
    PENDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The connection a read on `fd` belongs to: known already, or a pending one whose duplicate
/// this is (then it is taken up now).
fn connection_read_on(fd: RawFd) -> Option<Arc<Connection>> {
    if let Some(connection) = registered(fd) {
        return Some(connection);
    }
    if PENDING_COUNT.load(Acquire) == 0 {
        return None;
    }
    let connection = pending().remove(inode(fd)?)?;
    shard(fd).insert(fd, connection.clone());
    Some(connection)
}

fn inode(fd: RawFd) -> Option<u64> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a whole `stat` on success and nothing else.
    (unsafe { libc::fstat(fd, stat.as_mut_ptr()) } == 0)
        .then(|| unsafe { stat.assume_init() }.st_ino)
}

/// Waits until the connection accepted last has been taken up by tiny_http's pool.
fn wait_until_taken_up() {
    let deadline = Instant::now() + TAKE_UP_WAIT;
    let mut pending = pending();
    while pending.awaited.is_some() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            pending.awaited = None;
            return;
        }
        pending = TAKEN_UP
            .wait_timeout(pending, left)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
    }
}

/// One descriptor kept free for tiny_http, which duplicates each socket it accepts
/// (`try_clone`) and panics when it cannot, ending its accept loop: the reserve is closed just
/// before an accepted socket is handed over, and taken again before the next accept.
static RESERVE: AtomicI32 = AtomicI32::new(-1);

fn hold_reserve() -> bool {
    if RESERVE.load(Relaxed) >= 0 {
        return true;
    }
    // SAFETY: creates a descriptor owned by RESERVE.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    fd >= 0 && RESERVE.compare_exchange(-1, fd, Relaxed, Relaxed).is_ok()
}

fn release_reserve() {
    let fd = RESERVE.swap(-1, Relaxed);
    if fd >= 0 {
        // SAFETY: the reserve's own descriptor, owned by nobody else.
        unsafe { raw_close(fd) };
    }
}

/// Registers a connection just accepted, or refuses it (false) past the connection limit.
fn admit(fd: RawFd, peer: Option<SocketAddr>) -> bool {
    if OPEN.load(Relaxed) >= settings().guard.max_connections {
        return false;
    }
    let Some(inode) = inode(fd) else {
        return false;
    };
    OPEN.fetch_add(1, Relaxed);
    let connection = Arc::new(Connection {
        accepted: fd,
        inode,
        peer,
        reading: Mutex::new(Reading {
            framing: Framing::new(settings().guard.limits),
            head_deadline: None,
            answer: None,
            head_bytes: 0,
            shut: false,
        }),
        room: Condvar::new(),
    });
    shard(fd).insert(fd, connection.clone());
    if let Some(peer) = peer {
        peers(peer).insert(peer, connection.clone());
    }
    let mut pending = pending();
    pending.connections.push(connection);
    pending.awaited = Some(inode);
    PENDING_COUNT.store(pending.connections.len(), Release);
    true
}

/// The client's address as `accept4` wrote it.
unsafe fn peer_of(addr: *const sockaddr, len: *const socklen_t) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr};

    if addr.is_null() || len.is_null() {
        return None;
    }
    // SAFETY: the kernel wrote a socket address of `*len` bytes at `addr`; each family's
    // structure is read only when that many bytes are there.
    unsafe {
        let len = *len as usize;
        match (*addr).sa_family as c_int {
            libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
                let v4 = addr.cast::<libc::sockaddr_in>().read_unaligned();
                let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
                Some(SocketAddr::new(ip.into(), u16::from_be(v4.sin_port)))
            }
            libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
                let v6 = addr.cast::<libc::sockaddr_in6>().read_unaligned();
                // As std reads it for tiny_http's `remote_addr`, flow and scope included.
                Some(SocketAddr::V6(std::net::SocketAddrV6::new(
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

/// Past the connection limit: said at once, without reading the request, then closed.
fn refuse(fd: RawFd) {
    let response = refusal_response(503, false);
    // SAFETY: a descriptor just accepted and owned here; a buffer owned here.
    unsafe {
        libc::send(
            fd,
            response.as_ptr().cast(),
            response.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        );
        raw_close(fd);
    }
}

/// Set while an accept waits for a descriptor to be closed.
static WAITING_FOR_CLOSE: AtomicBool = AtomicBool::new(false);
static CLOSED: Condvar = Condvar::new();
static CLOSED_LOCK: Mutex<()> = Mutex::new(());
/// Also retried this often: descriptors closed without `close` (by the kernel) wake nobody.
const CLOSE_WAIT: Duration = Duration::from_millis(100);

fn wait_for_a_close() {
    let guard = CLOSED_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    WAITING_FOR_CLOSE.store(true, SeqCst);
    let _ = CLOSED.wait_timeout(guard, CLOSE_WAIT);
    WAITING_FOR_CLOSE.store(false, SeqCst);
}

/// Shuts `how` the open connections whose client `which` picks, and wakes their reading
/// threads if they wait for answers.
pub fn shut_connections(how: std::net::Shutdown, which: impl Fn(Option<SocketAddr>) -> bool) {
    for shard in &REGISTRY {
        let connections: Vec<Arc<Connection>> = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|(fd, connection)| **fd == connection.accepted && which(connection.peer))
            .map(|(_, connection)| connection.clone())
            .collect();
        for connection in connections {
            let _ = socket2::SockRef::from(&borrowed(connection.accepted)).shutdown(how);
            connection.wake();
        }
    }
}

/// Connections open now.
pub fn open_connections() -> usize {
    OPEN.load(Relaxed)
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
unsafe fn raw_close(fd: c_int) -> c_int {
    // SAFETY: the caller's descriptor.
    match unsafe { libc::syscall(libc::SYS_close, fd) } {
        -1 if errno() == libc::EINTR => {
            set_errno(0);
            0
        }
        result => result as c_int,
    }
}
