//! One connection as the hooks follow it: the stage it is at (see [`Stage`]), what has been read
//! of it, its head's deadline, the requests it has ahead of their answers, and hellod's own answer
//! when its stream stopped. Here too is what a pool thread of tiny_http's does in `recv`: take
//! the bytes the waiting room read first, linger at a request boundary, or give the connection
//! back.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use libc::{c_void, size_t, ssize_t};

use super::{handoff, settings, sys};
use crate::tiny_http_gaps::Refusal;
use crate::tiny_http_gaps::framing::{Framing, Scan, is_token_byte};

/// What the connections hold of request heads, all together: unfinished heads (in hellod's
/// buffers, or in tiny_http's line buffer and the header strings parsed from it) and requests
/// read but not yet answered.
static HEAD_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Requests a connection may have read and not answered before hellod stops reading from it:
/// twice the depth of common pipelining benchmarks (16). tiny_http reads pipelined requests into
/// a queue without bound, so a client that sends and never reads would grow it by tens of
/// megabytes a second.
pub(super) const MAX_AHEAD: usize = 32;

/// Longest a pool thread waits at a request boundary for the next request before it gives the
/// connection back to the waiting room. A busy client's next request comes well within it, so
/// busy connections keep their thread (and their speed); a quiet one costs a thread this long at
/// most. A connection waiting for a thread cuts it short.
pub const LINGER: Duration = Duration::from_secs(1);

/// Where a connection is, and who holds it. A connection walks these in a circle for as long as
/// it is open; it can end (a close, a refusal, a time-out) at any stage.
///
/// ```text
///  accept ─> Waiting ─(a whole head)─> Ready ─(accept4)─> Served ─(at a boundary)─> Lingering
///              ^                                            ^                           │
///              │                                            └───────(next request)──────┤
///              └──(tiny_http's close of `fd`)── GivingBack <─(linger over, slot wanted)─┘
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// In the waiting room: its epoll watches the socket; no thread is spent on it. A new
    /// connection, an idle keep-alive one, and one whose head is still arriving wait here.
    Waiting,
    /// A whole request head has arrived (in [`State::prefetched`]): queued for tiny_http's accept
    /// thread, which `accept4` hands it to when the pool has room.
    Ready,
    /// tiny_http's: one of its pool threads reads requests from a duplicate of the socket, and
    /// hellod's workers answer them.
    Served,
    /// Served everything up to a request boundary: its pool thread waits in `recv` for the next
    /// request, for at most [`LINGER`], or until the hand-off asks for its slot or a stop ends
    /// the stream after an answer.
    Lingering(Linger),
    /// Its pool thread was told the stream ended. tiny_http tears the connection down, its
    /// shutdowns are swallowed, and its close of `fd` (after the last answer went out) returns the
    /// connection to `Waiting`, still open.
    GivingBack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Linger {
    /// The lingering thread's eventfd, which wakes it.
    pub(super) wake: RawFd,
    /// The hand-off wants the slot back.
    pub(super) asked: bool,
    /// `wake` was signalled (and must be drained).
    pub(super) woken: bool,
}

impl Linger {
    fn wake(&mut self) {
        if !self.woken {
            self.woken = true;
            sys::signal_eventfd(self.wake);
        }
    }
}

/// One accepted connection. `fd`, the descriptor the waiting room accepted, stays open from the
/// accept to the end, whoever holds the connection: tiny_http writes to it and reads from a
/// duplicate it makes at each hand-over.
pub(super) struct Connection {
    pub(super) fd: RawFd,
    pub(super) inode: u64,
    pub(super) peer: SocketAddr,
    state: Mutex<State>,
    /// Notified when a request of this connection has been answered, or the connection shut.
    answers: Condvar,
}

pub(super) struct State {
    pub(super) stage: Stage,
    pub(super) framing: Framing,
    /// Bytes the waiting room read that tiny_http has not yet: they start the requests it is
    /// handed the connection for, and were checked by `framing` already.
    pub(super) prefetched: Vec<u8>,
    pub(super) head_deadline: Option<Instant>,
    /// Since when the connection has had nothing to read: the keep-alive timeout runs from here.
    pub(super) idle_since: Instant,
    /// The answer to send when tiny_http has answered everything before it.
    pub(super) answer: Option<u16>,
    /// This connection's share of [`HEAD_BYTES`].
    head_bytes: usize,
    /// Shut by hellod (a stop, a client not reading): nothing more to wait for.
    pub(super) shut: bool,
    /// How many times the connection was handed to tiny_http; each duplicate it reads through
    /// belongs to one of those hand-overs.
    pub(super) handovers: u64,
    /// The last hand-over that ended in a give-back: the shutdowns of its descriptors are
    /// tiny_http's teardown, not an end of the connection.
    pub(super) given_back: u64,
}

impl State {
    /// Brings this connection's share of [`HEAD_BYTES`] up to date; returns the new total.
    fn count_head_bytes(&mut self) -> usize {
        // What the room read of a head is what the framing counts of it: not twice.
        let now = self.framing.held_bytes().max(self.prefetched.len());
        let total = if now >= self.head_bytes {
            HEAD_BYTES.fetch_add(now - self.head_bytes, Relaxed) + (now - self.head_bytes)
        } else {
            HEAD_BYTES.fetch_sub(self.head_bytes - now, Relaxed) - (self.head_bytes - now)
        };
        self.head_bytes = now;
        total
    }

    /// Follows bytes just read from the socket; returns how many of them, moved to the front,
    /// go on to tiny_http (the rest, and the end of the stream after them, it must not see).
    pub(super) fn take_in(&mut self, bytes: &mut [u8]) -> usize {
        let scan = self.framing.scan(bytes);
        self.head_deadline = match (self.framing.in_head(), self.head_deadline) {
            (false, _) => None,
            (true, None) => Some(Instant::now() + settings().guard.head_timeout),
            (true, deadline) => deadline,
        };
        let heads = self.count_head_bytes();
        match scan {
            Scan::Pass(_) if heads > settings().guard.head_budget && self.framing.in_head() => {
                self.stop(503);
                0
            }
            Scan::Pass(len) => len,
            Scan::Stop { keep, status } => {
                self.answer = status;
                keep
            }
        }
    }

    /// Keeps what the waiting room read for tiny_http, as far as tiny_http may see it.
    pub(super) fn prefetch(&mut self, bytes: &mut [u8]) {
        let kept = self.take_in(bytes);
        self.prefetched.extend_from_slice(&bytes[..kept]);
        self.count_head_bytes();
    }

    /// Ends the stream from hellod's side (a deadline, the head budget): `status` is the answer.
    pub(super) fn stop(&mut self, status: u16) {
        if !self.framing.is_stopped() {
            self.framing.stop();
            self.answer = Some(status);
            self.count_head_bytes();
        }
    }

    /// Gives back what the waiting room read and no longer holds.
    pub(super) fn forget_prefetched(&mut self) {
        self.prefetched = Vec::new();
        self.count_head_bytes();
    }
}

impl Drop for State {
    fn drop(&mut self) {
        HEAD_BYTES.fetch_sub(self.head_bytes, Relaxed);
    }
}

impl Connection {
    pub(super) fn new(fd: RawFd, inode: u64, peer: SocketAddr) -> Connection {
        Connection {
            fd,
            inode,
            peer,
            state: Mutex::new(State {
                stage: Stage::Waiting,
                framing: Framing::new(settings().guard.limits),
                prefetched: Vec::new(),
                head_deadline: None,
                idle_since: Instant::now(),
                answer: None,
                head_bytes: 0,
                shut: false,
                handovers: 0,
                given_back: 0,
            }),
            answers: Condvar::new(),
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// tiny_http's read on `fd`, a duplicate of the socket, from a pool thread.
    ///
    /// # Safety
    ///
    /// As `recv(2)`: `buf` points to `len` writable bytes (initialised or not).
    pub(super) unsafe fn recv(
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
        // The hand-off's lock comes before a connection's.
        drop(state);
        let wake = handoff::start_lingering(self);
        let mut state = self.state();
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
        state.stage = Stage::GivingBack;
        state.given_back = state.handovers;
        drop(state);
        handoff::given_back(asked);
        None
    }

    pub(super) fn is_lingering(&self) -> bool {
        matches!(self.state().stage, Stage::Lingering(_))
    }

    /// The hand-off wants this connection's slot: wakes its lingering thread. False if it is not
    /// lingering (any more), or was asked already.
    pub(super) fn ask_back(&self) -> bool {
        let mut state = self.state();
        match &mut state.stage {
            Stage::Lingering(linger) if !linger.asked => {
                linger.asked = true;
                linger.wake();
                true
            }
            _ => false,
        }
    }

    /// During a stop, before a worker answers a request of this connection: if it is the last one
    /// read, its answer says `Connection: close` (true) and tiny_http reads nothing after it; the
    /// connection then closes once that answer is out. With more requests read (pipelined), this
    /// answer keeps the connection open for theirs.
    pub(super) fn end_after_answer(&self) -> bool {
        let mut state = self.state();
        if state.framing.requests_ahead() > 1 {
            return false;
        }
        state.framing.stop();
        if let Stage::Lingering(linger) = &mut state.stage {
            linger.wake();
        }
        true
    }

    pub(super) fn answered(&self) {
        let mut state = self.state();
        state.framing.answered();
        state.count_head_bytes();
        // Only the answer that makes room wakes the reader: a notification is a system call,
        // and this runs for every request.
        if state.framing.requests_ahead() == MAX_AHEAD - 1 {
            self.answers.notify_one();
        }
    }

    pub(super) fn wake(&self) {
        self.state().shut = true;
        self.answers.notify_one();
    }

    /// Sends the answer to a stopped head, if any, then lets the client's remaining bytes go so
    /// that the close ends in a FIN, not a reset that could destroy the answer in flight.
    pub(super) fn answer_before_shutdown(&self, wait: bool) {
        let (status, request_line) = {
            let mut state = self.state();
            let Some(status) = state.answer.take() else {
                return;
            };
            (status, state.framing.request_line().to_vec())
        };
        // The method as far as it goes, even in a request line refused at its next byte.
        let head = request_line
            .strip_prefix(b"HEAD")
            .is_some_and(|rest| rest.first().is_none_or(|&next| !is_token_byte(next)));
        let response = refusal_response(status, head);
        let flags = libc::MSG_NOSIGNAL | if wait { 0 } else { libc::MSG_DONTWAIT };
        // SAFETY: send only reads `response.len()` bytes of `response`, which outlives the call.
        unsafe { libc::send(self.fd, response.as_ptr().cast(), response.len(), flags) };
        if let Some(log) = settings().access_log {
            log(&Refusal {
                client: Some(self.peer),
                request_line: &request_line,
                status,
                body_len: if head { 0 } else { reason(status).len() },
            });
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// A whole response that closes the connection; the reason is the body too, except in the
/// answer to a HEAD. It names the server as the greeting does.
pub(super) fn refusal_response(status: u16, head: bool) -> Vec<u8> {
    let reason = reason(status);
    format!(
        "HTTP/1.1 {status} {reason}\r\nServer: {}\r\nDate: {}\r\nContent-Type: text/plain; \
         charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        settings().guard.server,
        httpdate::fmt_http_date(std::time::SystemTime::now()),
        reason.len(),
        if head { "" } else { reason },
    )
    .into_bytes()
}
