//! Taking connections in: from the listening socket, within the connection limit, pausing when
//! out of descriptors, and no more once a stop begins.

use super::waiting::deadline_of;
use super::*;

impl Loop {
    /// Accepts a round of connections; true when none are left to accept for now.
    pub(super) fn accept(&mut self) -> bool {
        let Some(listener) = self.listener else {
            return true;
        };
        let _gate = handoff::RoomAccepting::enter();
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
    pub(super) fn stop(&mut self, stop: Stopping) {
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

    pub(super) fn resume_accepting(&mut self) {
        self.accept_paused_until = None;
        WANTS_A_CLOSE.store(false, SeqCst);
        if let Some(listener) = self.listener {
            let _ = watch(self.epoll, listener, LISTENER);
            self.accept();
        }
    }
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
