//! What `accept4` does besides accepting: the connection limit, the descriptor kept in reserve
//! for tiny_http, the wait for a close when out of descriptors, and the wait for the connection
//! before to be taken up.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering::{Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicI32};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use libc::{c_int, sockaddr, socklen_t};

use super::connection::{Connection, Reading, refusal_response};
use super::registry::{OPEN, PENDING_COUNT, TAKEN_UP, inode, peers, pending, shard};
use super::{raw_close, settings};
use crate::tiny_http_gaps::framing::Framing;

/// Longest an accept waits for the connection before it to be taken up; only a thread that
/// cannot be started takes this long, and no later accept waits for that one again.
const TAKE_UP_WAIT: Duration = Duration::from_millis(200);

/// Waits until the connection accepted last has been taken up by tiny_http's pool.
pub(super) fn wait_until_taken_up() {
    let deadline = Instant::now() + TAKE_UP_WAIT;
    let mut pending = pending();
    while pending.awaited().is_some() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            pending.await_take_up(None);
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

pub(super) fn hold_reserve() -> bool {
    if RESERVE.load(Relaxed) >= 0 {
        return true;
    }
    // SAFETY: creates a descriptor owned by RESERVE.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    fd >= 0 && RESERVE.compare_exchange(-1, fd, Relaxed, Relaxed).is_ok()
}

pub(super) fn release_reserve() {
    let fd = RESERVE.swap(-1, Relaxed);
    if fd >= 0 {
        // SAFETY: the reserve's own descriptor, owned by nobody else.
        unsafe { raw_close(fd) };
    }
}

/// Registers a connection just accepted, or refuses it (false) past the connection limit.
pub(super) fn admit(fd: RawFd, peer: Option<SocketAddr>) -> bool {
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
    pending.await_take_up(Some(inode));
    PENDING_COUNT.store(pending.connections.len(), Release);
    true
}

/// The client's address as `accept4` wrote it.
pub(super) unsafe fn peer_of(addr: *const sockaddr, len: *const socklen_t) -> Option<SocketAddr> {
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
pub(super) fn refuse(fd: RawFd) {
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
pub(super) static WAITING_FOR_CLOSE: AtomicBool = AtomicBool::new(false);
pub(super) static CLOSED: Condvar = Condvar::new();
static CLOSED_LOCK: Mutex<()> = Mutex::new(());
/// Also retried this often: descriptors closed without `close` (by the kernel) wake nobody.
const CLOSE_WAIT: Duration = Duration::from_millis(100);

pub(super) fn wait_for_a_close() {
    let guard = CLOSED_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    WAITING_FOR_CLOSE.store(true, SeqCst);
    let _ = CLOSED.wait_timeout(guard, CLOSE_WAIT);
    WAITING_FOR_CLOSE.store(false, SeqCst);
}
