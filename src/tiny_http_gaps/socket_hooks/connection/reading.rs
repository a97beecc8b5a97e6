//! What a pool thread of tiny_http's does in `recv`: take the bytes the waiting room read first,
//! read on through the framing, linger at a request boundary, or give the connection back.

use libc::{c_void, size_t, ssize_t};

use super::*;

impl Connection {
    /// tiny_http's read on `fd`, a duplicate of the socket, from a pool thread.
    ///
    /// # Safety
    ///
    /// As `recv(2)`: `buf` points to `len` writable bytes (initialised or not).
    pub(in crate::tiny_http_gaps::socket_hooks) unsafe fn recv(
        self: &Arc<Self>,
        fd: RawFd,
        buf: *mut c_void,
        len: size_t,
    ) -> ssize_t {
        loop {
            // A read that was all trailer fields, taken out, leaves nothing to hand over, and
            // tiny_http would take an empty read for the end of the stream: read on.
            // SAFETY: the caller's buffer, as this function's contract gives it.
            if let Some(received) = unsafe { self.read_some(fd, buf, len) } {
                return received;
            }
        }
    }

    /// One read for [`Connection::recv`]: None if nothing of it is for tiny_http.
    ///
    /// # Safety
    ///
    /// As [`Connection::recv`].
    unsafe fn read_some(
        self: &Arc<Self>,
        fd: RawFd,
        buf: *mut c_void,
        len: size_t,
    ) -> Option<ssize_t> {
        let mut state = self.state();
        if !state.prefetched.is_empty() {
            let n = len.min(state.prefetched.len());
            // SAFETY: the caller's buffer holds `len` writable bytes (this function's contract),
            // `n` is at most that, and `prefetched` is our own allocation, so the two are apart.
            unsafe { std::ptr::copy_nonoverlapping(state.prefetched.as_ptr(), buf.cast(), n) };
            state.prefetched.drain(..n);
            if state.prefetched.is_empty() {
                state.forget_prefetched();
            }
            return Some(n as ssize_t);
        }
        // At most a read timeout: a request answered without hellod being told (tiny_http's own
        // 500 when no thread could be had for a body) must not stop the connection.
        let mut waited = false;
        while state.framing.requests_ahead() >= MAX_AHEAD && !state.shut && !waited {
            let timeout = settings().guard.head_timeout;
            let (guard, wait) = self
                .answers
                .wait_timeout(state, timeout)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state = guard;
            waited = wait.timed_out();
        }
        if state.framing.is_stopped() {
            return Some(0);
        }
        if state.framing.between_requests() && !state.shut {
            match self.linger(state, fd) {
                Some(guard) => state = guard,
                None => return Some(0),
            }
        }
        let deadline = state.head_deadline;
        drop(state);
        if let Some(deadline) = deadline
            && sys::poll_readable([fd], sys::millis_until(deadline)).is_none()
        {
            self.state().stop(408);
            return Some(0);
        }
        // SAFETY: `buf` points to `len` writable bytes, this function's own contract, which is
        // the one `sys::recv` asks for.
        let received = unsafe { sys::recv(fd, buf, len, 0) };
        if received <= 0 {
            return Some(received);
        }
        // SAFETY: the read succeeded, so the kernel has initialised the first `received` bytes
        // of `buf`, at most its `len`, which are the caller's to change; nothing else touches
        // them while this slice lives.
        let bytes = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, received as usize) };
        let mut state = self.state();
        let kept = state.take_in(bytes);
        (kept > 0 || state.framing.is_stopped()).then_some(kept as ssize_t)
    }

    /// At a request boundary, the pool thread waits for the next request, at most [`LINGER`] and
    /// the keep-alive timeout, or until it is woken: the hand-off asks for the slot, or the stream
    /// was ended after an answer. Then (None) the connection is given back, its stream seen by
    /// tiny_http to end where no request has begun, which tiny_http ends silently. Bytes that
    /// arrive meanwhile stay in the socket for the waiting room.
    fn linger<'a>(
        self: &'a Arc<Self>,
        mut state: MutexGuard<'a, State>,
        fd: RawFd,
    ) -> Option<MutexGuard<'a, State>> {
        let now = Instant::now();
        state.idle_since = now;
        let until = now + LINGER.min(settings().guard.head_timeout);
        let (mut state, wake) = handoff::start_lingering(self, state);
        let mut asked = false;
        // None: no lingering (the slot is wanted now, a stop, no eventfd to be woken by).
        if let Some(wake) = wake {
            let readable = if state.framing.is_stopped() {
                None
            } else {
                drop(state);
                let readable = sys::poll_readable([fd, wake], sys::millis_until(until));
                state = self.state();
                readable
            };
            // Only this thread moves a lingering connection on.
            if let Stage::Lingering(linger) = state.stage {
                asked = linger.asked;
                if linger.woken {
                    sys::drain_eventfd(wake);
                }
            }
            let data = readable.is_some_and(|[data, _]| data);
            if data && !asked && !state.framing.is_stopped() {
                state.stage = Stage::Served;
                return Some(state);
            }
        }
        state.stage = Stage::GivingBack { asked };
        state.given_back = state.handovers;
        None
    }
}
