//! One connection as the hooks follow it: the stage it is at (see [`Stage`]), what has been read
//! of it, its head's deadline, the requests it has ahead of their answers, and hellod's own answer
//! when its stream stopped. What a pool thread of tiny_http's does in `recv` is in `reading`;
//! hellod's own answers are in `refusal`.

mod reading;
mod refusal;

pub(super) use refusal::refusal_response;

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{handoff, settings, sys};
use crate::tiny_http_gaps::framing::{Framing, Scan};

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
///  accept ─> Waiting ─(a whole head)─> Ready ─(accept4)─> HandedOver ─(first read)─> Served
///              ^                         ^                    │                          │  ^
///              │                         └─(no thread for it)─┘          (at a boundary) │  │ (next
///              │                                                                         v  │ request)
///              └──(tiny_http's close of `fd`)── GivingBack <─(linger over, slot wanted)─ Lingering
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// In the waiting room: its epoll watches the socket; no thread is spent on it. A new
    /// connection, an idle keep-alive one, and one whose head is still arriving wait here.
    Waiting,
    /// A whole request head has arrived (in [`State::prefetched`]): queued for tiny_http's accept
    /// thread, which `accept4` hands it to when the pool has room.
    Ready,
    /// Handed to tiny_http's accept thread, and not yet read from by a pool thread. tiny_http
    /// drops it unread when its pool cannot start a thread for it (`TaskPool::spawn` panics, and
    /// the accept thread with it) or it cannot duplicate the socket: then the shutdowns are
    /// swallowed and the close returns it to `Ready`, its head still whole, for the next
    /// accept loop, which retires the old loop's pool (see `handoff::this_accept_loop`).
    HandedOver,
    /// tiny_http's: one of its pool threads reads requests from a duplicate of the socket, and
    /// hellod's workers answer them.
    Served,
    /// Served everything up to a request boundary: its pool thread waits in `recv` for the next
    /// request, for at most [`LINGER`], or until the hand-off asks for its slot or a stop ends
    /// the stream after an answer. The hand-off finds it on its lingering list, where it stays
    /// between lingers ([`State::listed`]).
    Lingering(Linger),
    /// Its pool thread was told the stream ended. tiny_http tears the connection down, its
    /// shutdowns are swallowed, and its close of `fd` (after the last answer went out) returns the
    /// connection to `Waiting`, still open, and only then frees its slot: freed as the thread was
    /// told, the slot went to the next connection while the thread was still ending its task, and
    /// tiny_http's pool, finding no thread idle, started one more each time (387 threads for
    /// 170 slots in a burst). `asked`: the hand-off asked for the slot.
    GivingBack { asked: bool },
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
    /// The accept loop of tiny_http's that the last hand-over went to (see
    /// `handoff::this_accept_loop`).
    pub(super) accept_loop: u64,
    /// On the hand-off's lingering list (see `handoff::start_lingering`).
    pub(super) listed: bool,
    /// Dropped unread by tiny_http once: on the hand-off's list of such connections until it
    /// ends (see `handoff::handover_failed`).
    pub(super) dropped: bool,
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
                accept_loop: 0,
                listed: false,
                dropped: false,
            }),
            answers: Condvar::new(),
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// For the hand-off's sweep of its lingering list: whether this connection stays on it.
    pub(super) fn stays_listed(&self) -> bool {
        let mut state = self.state();
        state.listed = matches!(state.stage, Stage::Lingering(_));
        state.listed
    }

    /// The hand-off wants this connection's slot, and has taken it off the lingering list: wakes
    /// its lingering thread. False if it is not lingering (any more), or was asked already.
    pub(super) fn ask_back(&self) -> bool {
        let mut state = self.state();
        state.listed = false;
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
}
