//! Between the waiting room and tiny_http: the connections ready for a thread, how many tiny_http
//! holds (at most the serving limit, each on a thread of its pool), the lingering ones whose slot
//! can be asked back, and those handed over but not yet taken up by a pool thread.
//!
//! tiny_http's accept thread calls `accept4`, which takes its connections from here, never from
//! the kernel: to tiny_http, a connection handed over again is a new one from the same client.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::connection::{Connection, Linger, Stage, State};
use super::{registry, settings, sys};

struct Handoff {
    /// Whole heads waiting for a thread, oldest first.
    ready: VecDeque<Arc<Connection>>,
    /// Connections handed to tiny_http and neither given back nor closed.
    in_hand: usize,
    /// Connections that lingered, each once, in the order they were listed: those not lingering
    /// when an ask meets them are passed over and taken off, the rest swept out when they
    /// outnumber the connections in hand.
    lingering: VecDeque<Arc<Connection>>,
    /// Slots asked back from lingering connections and not yet given back.
    asked: usize,
    /// Handed over and not yet read from by a pool thread, with when, and whether a slot was
    /// asked back for it.
    pending: Vec<(Arc<Connection>, Instant, bool)>,
    /// Connections tiny_http dropped unread (see [`handover_failed`]), until they end: the
    /// duplicate it made of each is shut as it is dropped, which can come after the connection
    /// has been handed over again and read from.
    dropped: Vec<Arc<Connection>>,
}

/// The lock order, wherever two are held: `HANDOFF`, then a connection's state, then a shard of
/// the registry.
static HANDOFF: Mutex<Handoff> = Mutex::new(Handoff {
    ready: VecDeque::new(),
    in_hand: 0,
    lingering: VecDeque::new(),
    asked: 0,
    pending: Vec::new(),
    dropped: Vec::new(),
});
/// Notified when a connection is ready, a slot frees, or a connection is taken up.
static CHANGED: Condvar = Condvar::new();

fn handoff() -> MutexGuard<'static, Handoff> {
    HANDOFF
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// tiny_http's `TaskPool::spawn` loses wake-ups: it counts a thread that was notified but has not
/// woken yet as idle, so in a burst it can queue a connection and notify no one. That connection
/// then waits until one of the pool's threads finishes a task of its own. Tasks end soon now (a
/// lingering one when its slot is asked back), so a connection not taken up after this long gets
/// a lingering connection's thread asked back for it.
const STRANDED_AFTER: Duration = Duration::from_millis(10);

impl Handoff {
    /// Asks lingering connections, oldest first, to give back slots until `wanted` are asked.
    fn ask_back(&mut self, wanted: usize) {
        while self.asked < wanted {
            let Some(connection) = self.lingering.pop_front() else {
                return;
            };
            if connection.ask_back() {
                self.asked += 1;
            }
        }
    }

    fn rescue_stranded(&mut self, now: Instant) -> Option<Duration> {
        let mut soonest: Option<Duration> = None;
        let mut stranded = 0;
        for (_, handed, rescued) in &mut self.pending {
            let waited = now.duration_since(*handed);
            if waited >= STRANDED_AFTER && !*rescued {
                *rescued = true;
                stranded += 1;
            } else if !*rescued {
                let left = STRANDED_AFTER - waited;
                soonest = Some(soonest.map_or(left, |soonest| soonest.min(left)));
            }
        }
        if stranded > 0 {
            let wanted = self.asked + stranded;
            self.ask_back(wanted);
        }
        soonest
    }
}

/// The next connection for tiny_http, when one is ready and the pool has room for it; for
/// `accept4`, on tiny_http's accept thread.
pub(super) fn next_for_tiny_http() -> Arc<Connection> {
    let accept_loop = this_accept_loop();
    let mut handoff = handoff();
    loop {
        let stranded_check = handoff.rescue_stranded(Instant::now());
        if !handoff.ready.is_empty() && handoff.in_hand < settings().guard.max_serving {
            let connection = handoff.ready.pop_front().expect("not empty");
            handoff.in_hand += 1;
            {
                let mut state = connection.state();
                state.stage = Stage::HandedOver;
                state.handovers += 1;
                state.accept_loop = accept_loop;
            }
            handoff
                .pending
                .push((connection.clone(), Instant::now(), false));
            return connection;
        }
        let wanted = handoff.ready.len();
        handoff.ask_back(wanted);
        handoff = match stranded_check {
            Some(left) => {
                (CHANGED.wait_timeout(handoff, left))
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0
            }
            None => (CHANGED.wait(handoff)).unwrap_or_else(|poisoned| poisoned.into_inner()),
        };
    }
}

/// A whole head has arrived on a waiting connection: it is queued for a thread.
pub(super) fn ready(connection: Arc<Connection>) {
    handoff().ready.push_back(connection);
    CHANGED.notify_one();
}

/// A pool thread has read from the duplicate `fd` for the first time: the pending connection it
/// belongs to (by inode) is taken up, and the duplicate registered to it.
pub(super) fn take_up(fd: RawFd) -> Option<Arc<Connection>> {
    let inode = sys::inode(fd)?;
    let mut handoff = handoff();
    let at = handoff
        .pending
        .iter()
        .position(|(c, ..)| c.inode == inode)?;
    let (connection, ..) = handoff.pending.swap_remove(at);
    let handover = {
        let mut state = connection.state();
        state.stage = Stage::Served;
        state.handovers
    };
    registry::register_duplicate(fd, &connection, handover);
    drop(handoff);
    CHANGED.notify_one();
    Some(connection)
}

/// The connection that `fd`, a descriptor tiny_http has not read from, duplicates: one handed over
/// and not yet taken up (for tiny_http's `peer_addr`), or one tiny_http dropped unread (whose
/// duplicate's shutdown, its teardown, would end the connection).
pub(super) fn held_as(fd: RawFd) -> Option<Arc<Connection>> {
    let inode = sys::inode(fd)?;
    let handoff = handoff();
    let mut held = handoff
        .pending
        .iter()
        .map(|(c, ..)| c)
        .chain(&handoff.dropped);
    held.find(|c| c.inode == inode).cloned()
}

/// tiny_http dropped a connection it was handed before a pool thread read from it (see
/// [`Stage::HandedOver`]): its pool could not start a thread, or it could not duplicate the
/// socket, and its accept thread panicked with it. Nothing of it was read, so it goes back to the
/// front of the queue, for the accept loop that replaces this one.
pub(super) fn handover_failed(connection: Arc<Connection>) {
    let mut handoff = handoff();
    if let Some(at) = (handoff.pending.iter()).position(|(c, ..)| Arc::ptr_eq(c, &connection)) {
        handoff.pending.swap_remove(at);
    }
    handoff.in_hand -= 1;
    {
        let mut state = connection.state();
        state.stage = Stage::Ready;
        if !state.dropped {
            state.dropped = true;
            handoff.dropped.push(connection.clone());
        }
    }
    handoff.ready.push_front(connection);
    drop(handoff);
    CHANGED.notify_one();
}

/// A connection tiny_http once dropped unread has ended.
pub(super) fn forget_dropped(connection: &Connection) {
    (handoff().dropped).retain(|c| !std::ptr::eq(c.as_ref(), connection));
}

/// A served connection's pool thread is about to linger at a request boundary: it may, with the
/// thread's eventfd to be woken by, unless its slot is wanted now or hellod is stopping (then it
/// gives the connection back at once) or the thread has no eventfd. `stage` is set to lingering
/// under the connection's lock, so that no ask can come between.
///
/// A connection stays in the lingering list from one linger to the next: a busy one, back at a
/// boundary after every answer, takes only its own lock here, not the hand-off's, which all of
/// tiny_http's threads would queue on (and which, when the list was swept of connections that
/// had stopped lingering, held them while it locked hundreds of connections). A listed connection
/// that does not linger when an ask meets it is taken off the list, and comes back (under the
/// hand-off's lock, where the slot's being wanted is seen) at its next linger.
pub(super) fn start_lingering<'a>(
    connection: &'a Arc<Connection>,
    mut state: MutexGuard<'a, State>,
) -> (MutexGuard<'a, State>, Option<RawFd>) {
    let Some(wake) = thread_wake() else {
        return (state, None);
    };
    let lingering = Stage::Lingering(Linger {
        wake,
        asked: false,
        woken: false,
    });
    if super::stopping().is_some() || retired(&state) {
        return (state, None);
    }
    if state.listed {
        state.stage = lingering;
        return (state, Some(wake));
    }
    // The hand-off's lock comes before a connection's.
    drop(state);
    let mut handoff = handoff();
    let pool_full = handoff.in_hand >= settings().guard.max_serving;
    // Under the hand-off's lock: a stop, and a new accept loop, ask back every connection
    // lingering when they begin.
    let state = connection.state();
    if pool_full && handoff.ready.len() > handoff.asked
        || super::stopping().is_some()
        || retired(&state)
    {
        return (state, None);
    }
    drop(state);
    if handoff.lingering.len() > 2 * handoff.in_hand + 64 {
        handoff.lingering.retain(|c| c.stays_listed());
    }
    handoff.lingering.push_back(connection.clone());
    let mut state = connection.state();
    state.listed = true;
    state.stage = lingering;
    (state, Some(wake))
}

/// A stop: every lingering connection is asked to give its slot back.
pub(super) fn ask_all_back() {
    ask_all_back_from(&mut handoff());
}

fn ask_all_back_from(handoff: &mut Handoff) {
    let all = handoff.asked + handoff.lingering.len();
    handoff.ask_back(all);
}

/// The accept loop now taking connections, numbered from 1 in the order they started.
static ACCEPT_LOOP: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The number of the accept loop running on this thread; 0 on any other thread.
    static THIS_ACCEPT_LOOP: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The number of the accept loop calling, on tiny_http's accept thread; a new one retires those
/// before it. An accept loop that ended (its thread panicked, see `handover_failed`) leaves its
/// pool behind: no task comes to it any more, its threads serve on, and the connections it was
/// handed and had queued for a thread are dropped only when the last of its threads ends. A
/// thread serving a busy keep-alive client never ends its task, so those connections waited
/// unserved for as long as that client kept asking. So every connection of a retired loop gives
/// its slot back at its next request boundary, the lingering ones now, and the old pool's threads
/// end within a request.
fn this_accept_loop() -> u64 {
    THIS_ACCEPT_LOOP.with(|this| {
        if this.get() == 0 {
            let mut handoff = handoff();
            this.set(ACCEPT_LOOP.fetch_add(1, SeqCst) + 1);
            ask_all_back_from(&mut handoff);
        }
        this.get()
    })
}

/// Whether the accept loop that handed this connection over has been followed by another.
fn retired(state: &State) -> bool {
    state.accept_loop != ACCEPT_LOOP.load(SeqCst)
}

/// A connection's give-back has ended (tiny_http closed its socket): its slot is free.
pub(super) fn given_back(asked: bool) {
    let mut handoff = handoff();
    handoff.in_hand -= 1;
    if asked {
        handoff.asked -= 1;
    }
    drop(handoff);
    CHANGED.notify_one();
}

/// tiny_http closed a connection for good; `in_hand` if it held a slot.
pub(super) fn closed(in_hand: bool) {
    if in_hand {
        handoff().in_hand -= 1;
        CHANGED.notify_one();
    }
}

/// Each pool thread's eventfd, taken at its first linger and closed when the thread ends.
struct ThreadWake(std::cell::Cell<RawFd>);

impl Drop for ThreadWake {
    fn drop(&mut self) {
        if self.0.get() >= 0 {
            sys::close(self.0.get());
        }
    }
}

thread_local! {
    static THREAD_WAKE: ThreadWake = const { ThreadWake(std::cell::Cell::new(-1)) };
}

/// An eventfd made by the accept thread before it frees the reserve, for the next pool thread
/// that lingers: one made by the pool thread itself could take the descriptor the reserve just
/// freed for tiny_http's `try_clone`.
static SPARE_WAKE: AtomicI32 = AtomicI32::new(-1);

fn thread_wake() -> Option<RawFd> {
    THREAD_WAKE
        .try_with(|wake| {
            if wake.0.get() < 0 {
                wake.0.set(SPARE_WAKE.swap(-1, Relaxed));
            }
            wake.0.get()
        })
        .ok()
        .filter(|&fd| fd >= 0)
}

/// Before a hand-over, while the reserve is held: a spare eventfd for the next lingering thread.
pub(super) fn make_spare_wake() {
    if SPARE_WAKE.load(Relaxed) < 0
        && let Some(fd) = sys::eventfd()
        && SPARE_WAKE
            .compare_exchange(-1, fd, Relaxed, Relaxed)
            .is_err()
    {
        sys::close(fd);
    }
}

/// One descriptor kept free for tiny_http, which duplicates each socket it is handed
/// (`try_clone`) and panics when it cannot, ending its accept loop: the reserve is closed just
/// before a socket is handed over, and taken again before the next.
static RESERVE: AtomicI32 = AtomicI32::new(-1);

pub(super) fn hold_reserve() -> bool {
    if RESERVE.load(Relaxed) >= 0 {
        return true;
    }
    let Some(fd) = sys::eventfd() else {
        return false;
    };
    if RESERVE.compare_exchange(-1, fd, Relaxed, Relaxed).is_err() {
        sys::close(fd);
    }
    true
}

pub(super) fn release_reserve() {
    let fd = RESERVE.swap(-1, Relaxed);
    if fd >= 0 {
        enter_gate(HANDING_OVER);
        sys::close(fd);
    }
}

/// Who may take a descriptor now. From the reserve's release until tiny_http's accept thread
/// calls `accept4` again (tiny_http's `try_clone` of the socket just handed over comes in
/// between), the waiting room does not accept: out of descriptors, it would take the very one
/// the reserve freed, and tiny_http's `try_clone` would panic. Nor is the reserve released while
/// the room accepts. Each side holds it for microseconds.
static GATE: AtomicU8 = AtomicU8::new(OPEN);
const OPEN: u8 = 0;
const ROOM_ACCEPTING: u8 = 1;
const HANDING_OVER: u8 = 2;
/// Longest either side waits for the other before it goes on regardless.
const GATE_WAIT: Duration = Duration::from_millis(10);

fn enter_gate(who: u8) -> bool {
    let until = Instant::now() + GATE_WAIT;
    while GATE.compare_exchange(OPEN, who, SeqCst, SeqCst).is_err() {
        if Instant::now() >= until {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// tiny_http's accept thread is back in `accept4`: what it was handed is duplicated.
pub(super) fn handover_done() {
    let _ = GATE.compare_exchange(HANDING_OVER, OPEN, SeqCst, SeqCst);
}

/// The waiting room accepting, for as long as it lives.
pub(super) struct RoomAccepting(bool);

impl RoomAccepting {
    pub(super) fn enter() -> RoomAccepting {
        RoomAccepting(enter_gate(ROOM_ACCEPTING))
    }
}

impl Drop for RoomAccepting {
    fn drop(&mut self) {
        if self.0 {
            GATE.store(OPEN, SeqCst);
        }
    }
}

/// Set while anyone waits for a descriptor to be closed.
pub(super) static WAITING_FOR_CLOSE: AtomicBool = AtomicBool::new(false);
pub(super) static CLOSED: Condvar = Condvar::new();
static CLOSED_LOCK: Mutex<()> = Mutex::new(());
/// Also retried this often: descriptors closed without `close` (by the kernel) wake nobody.
pub(super) const CLOSE_WAIT: Duration = Duration::from_millis(100);

pub(super) fn wait_for_a_close() {
    let guard = CLOSED_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    WAITING_FOR_CLOSE.store(true, SeqCst);
    let _ = CLOSED.wait_timeout(guard, CLOSE_WAIT);
    WAITING_FOR_CLOSE.store(false, SeqCst);
}
