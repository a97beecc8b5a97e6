//! Every open connection by descriptor (its own, and each duplicate tiny_http reads through) and
//! by client address.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};

use super::connection::Connection;
use super::sys;

/// Connections accepted and not yet closed.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// What a descriptor is to its connection: the connection's own (`handover` None), or the
/// duplicate tiny_http made at that hand-over.
#[derive(Clone)]
pub(super) struct Entry {
    pub(super) connection: Arc<Connection>,
    pub(super) handover: Option<u64>,
}

/// Keyed by descriptor or client address, hashed by [`KeyHasher`].
pub(super) type Map<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;
const SHARDS: usize = 32;

/// A shard's map is made at its first use: an empty `HashMap` points at a static of hashbrown's,
/// which would put every shard in the executable's data (2.5 KiB); `None` is zeros, in `.bss`.
type Shard<K, V> = Mutex<Option<Map<K, V>>>;

/// In shards, so that reads on different connections rarely wait for each other. A descriptor
/// leaves its shard before it is closed, under the shard's lock: whoever holds that lock can act
/// on the descriptors in it knowing that their numbers name those connections still.
static DESCRIPTORS: [Shard<RawFd, Entry>; SHARDS] = [const { Mutex::new(None) }; SHARDS];

/// Every open connection by its client's address, for the workers to say which was answered.
static PEERS: [Shard<SocketAddr, Arc<Connection>>; SHARDS] = [const { Mutex::new(None) }; SHARDS];

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn in_shard<K, V, R>(shard: &Shard<K, V>, act: impl FnOnce(&mut Map<K, V>) -> R) -> R {
    act(locked(shard).get_or_insert_with(Map::default))
}

fn descriptors<R>(fd: RawFd, act: impl FnOnce(&mut Map<RawFd, Entry>) -> R) -> R {
    in_shard(&DESCRIPTORS[fd as usize % SHARDS], act)
}

fn peers<R>(peer: SocketAddr, act: impl FnOnce(&mut Map<SocketAddr, Arc<Connection>>) -> R) -> R {
    in_shard(&PEERS[peer.port() as usize % SHARDS], act)
}

/// Descriptors and client addresses are small keys, distinct among open connections: their
/// last eight bytes (an address's port and the end of its IP) are hash enough.
#[derive(Default)]
pub(super) struct KeyHasher(u64);

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

/// A connection just accepted.
pub(super) fn register(connection: &Arc<Connection>) {
    OPEN.fetch_add(1, Relaxed);
    let entry = Entry {
        connection: connection.clone(),
        handover: None,
    };
    descriptors(connection.fd, |map| map.insert(connection.fd, entry));
    peers(connection.peer, |map| {
        map.insert(connection.peer, connection.clone())
    });
}

pub(super) fn register_duplicate(fd: RawFd, connection: &Arc<Connection>, handover: u64) {
    let entry = Entry {
        connection: connection.clone(),
        handover: Some(handover),
    };
    descriptors(fd, |map| map.insert(fd, entry));
}

pub(super) fn lookup(fd: RawFd) -> Option<Entry> {
    descriptors(fd, |map| map.get(&fd).cloned())
}

/// The connection a read on `fd` belongs to: known already, or a pending one whose duplicate
/// this is (then it is taken up now).
pub(super) fn connection_read_on(fd: RawFd) -> Option<Arc<Connection>> {
    match lookup(fd) {
        Some(entry) => Some(entry.connection),
        None => super::handoff::take_up(fd),
    }
}

/// Forgets a duplicate about to be closed.
pub(super) fn forget_duplicate(fd: RawFd) {
    descriptors(fd, |map| map.remove(&fd));
}

/// Forgets a connection whose own descriptor is about to be closed.
pub(super) fn forget(connection: &Connection) {
    descriptors(connection.fd, |map| map.remove(&connection.fd));
    peers(connection.peer, |map| map.remove(&connection.peer));
    OPEN.fetch_sub(1, Relaxed);
    // The hand-off's lock comes before a connection's: the flag is read, then the lock taken.
    let dropped = connection.state().dropped;
    if dropped {
        super::handoff::forget_dropped(connection);
    }
}

/// A worker has answered a request of the connection from `peer`.
pub fn answered(peer: SocketAddr) {
    let connection = peers(peer, |map| map.get(&peer).cloned());
    if let Some(connection) = connection {
        connection.answered();
    }
}

/// During a stop, before a worker answers a request from `peer`: whether the answer is the
/// connection's last, to say `Connection: close` (see [`Connection::end_after_answer`]): not
/// before the room refuses new connections. A connection not found is closing anyway.
pub fn end_after_answer(peer: SocketAddr) -> bool {
    if !super::waiting_room::REFUSING.load(std::sync::atomic::Ordering::SeqCst) {
        return false;
    }
    let connection = peers(peer, |map| map.get(&peer).cloned());
    connection.is_none_or(|connection| connection.end_after_answer())
}

/// Shuts `how` the open connections whose client `which` picks, and wakes their reading
/// threads if they wait for answers. Each is shut under its shard's lock, so a descriptor closed
/// and its number reused meanwhile is never shut in its place.
pub fn shut_connections(how: std::net::Shutdown, which: impl Fn(SocketAddr) -> bool) {
    let how = match how {
        std::net::Shutdown::Read => libc::SHUT_RD,
        std::net::Shutdown::Write => libc::SHUT_WR,
        std::net::Shutdown::Both => libc::SHUT_RDWR,
    };
    for shard in &DESCRIPTORS {
        let shut: Vec<Arc<Connection>> = {
            let shard = locked(shard);
            let picked = (shard.iter().flatten())
                .filter(|(_, entry)| entry.handover.is_none() && which(entry.connection.peer))
                .map(|(fd, entry)| (*fd, entry.connection.clone()));
            picked
                .inspect(|(fd, _)| {
                    sys::shutdown(*fd, how);
                })
                .map(|(_, connection)| connection)
                .collect()
        };
        for connection in shut {
            connection.wake();
        }
    }
}

/// Connections open now.
pub fn open_connections() -> usize {
    OPEN.load(Relaxed)
}
