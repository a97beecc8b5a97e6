//! Every open connection, by descriptor and by client address, and the ones accepted but not
//! yet taken up by a thread of tiny_http's pool.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::connection::{Connection, borrowed};

/// Connections accepted and not yet closed.
pub(super) static OPEN: AtomicUsize = AtomicUsize::new(0);

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

pub(super) fn peers(
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

pub(super) fn shard(
    fd: RawFd,
) -> MutexGuard<'static, HashMap<RawFd, Arc<Connection>, BuildHasherDefault<KeyHasher>>> {
    REGISTRY[fd as usize % SHARDS]
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn registered(fd: RawFd) -> Option<Arc<Connection>> {
    shard(fd).get(&fd).cloned()
}

/// Connections accepted whose reading duplicate has not been read from yet, and the one the
/// next accept waits for.
pub(super) struct Pending {
    pub(super) connections: Vec<Arc<Connection>>,
    awaited: Option<u64>,
}

impl Pending {
    /// The connection (its inode) that the next accept waits for, if any.
    pub(super) fn awaited(&self) -> Option<u64> {
        self.awaited
    }

    pub(super) fn await_take_up(&mut self, inode: Option<u64>) {
        self.awaited = inode;
    }

    /// Takes the connection of `inode` off the list: taken up, or closed before it was.
    pub(super) fn remove(&mut self, inode: u64) -> Option<Arc<Connection>> {
        let at = self.connections.iter().position(|c| c.inode == inode)?;
        PENDING_COUNT.store(self.connections.len() - 1, Release);
        if self.awaited == Some(inode) {
            self.await_take_up(None);
            TAKEN_UP.notify_all();
        }
        Some(self.connections.swap_remove(at))
    }
}

static PENDING: Mutex<Pending> = Mutex::new(Pending {
    connections: Vec::new(),
    awaited: None,
});
pub(super) static PENDING_COUNT: AtomicUsize = AtomicUsize::new(0);
pub(super) static TAKEN_UP: Condvar = Condvar::new();

pub(super) fn pending() -> MutexGuard<'static, Pending> {
    PENDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The connection a read on `fd` belongs to: known already, or a pending one whose duplicate
/// this is (then it is taken up now).
pub(super) fn connection_read_on(fd: RawFd) -> Option<Arc<Connection>> {
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

pub(super) fn inode(fd: RawFd) -> Option<u64> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a whole `stat` on success and nothing else.
    (unsafe { libc::fstat(fd, stat.as_mut_ptr()) } == 0)
        .then(|| unsafe { stat.assume_init() }.st_ino)
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
