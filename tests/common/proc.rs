//! What /proc tells of the server process and its sockets (Linux).
#![cfg(target_os = "linux")]

use super::*;

/// Names of the threads of process `pid`.
#[cfg(target_os = "linux")]
pub fn thread_names(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

/// A duplicate of the listening socket of process `pid` on `port` (pidfd_getfd), to read the
/// options set on it. Needs the right to trace `pid`, which a parent has.
#[cfg(target_os = "linux")]
pub fn steal_listener(pid: u32, port: u16) -> std::net::TcpListener {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    // SAFETY: pidfd_open takes no memory.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a descriptor just made, which nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    for target_fd in 0..64 {
        // SAFETY: pidfd_getfd takes no memory.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) };
        if fd < 0 {
            continue;
        }
        // SAFETY: a duplicate just made in this process, which nothing else owns.
        let socket = unsafe { socket2::Socket::from_raw_fd(fd as i32) };
        let is_it = socket.is_listener().unwrap_or(false)
            && socket
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .is_some_and(|a| a.port() == port);
        if is_it {
            return socket.into();
        }
    }
    panic!("no listening socket on port {port} in process {pid}");
}

// Helpers for tests/hostile.rs and tests/stress/: raw exchanges, strict response parsing and
// the resources a process holds.

/// What a process holds: resident memory, threads, open descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub rss_kib: u64,
    pub threads: usize,
    pub fds: usize,
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {} KiB, {} threads, {} fds",
            self.rss_kib, self.threads, self.fds
        )
    }
}

/// Reads [`Usage`] of `pid` from /proc; None once the process is gone.
#[cfg(target_os = "linux")]
pub fn usage(pid: u32) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Usage {
        rss_kib: field("VmRSS:")?,
        threads: usize::try_from(field("Threads:")?).ok()?,
        fds,
    })
}

/// The highest resident memory of `pid` so far (VmHWM), in KiB.
#[cfg(target_os = "linux")]
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Name and kernel wait channel (`wchan`) of each thread of `pid`: `wait_woken` for a thread
/// blocked on a socket, `futex_do_wait` or similar for one waiting on a lock or a queue.
#[cfg(target_os = "linux")]
pub fn thread_waits(pid: u32) -> Vec<(String, String)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| {
            let path = task.ok()?.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            let wchan = std::fs::read_to_string(path.join("wchan")).ok()?;
            Some((name.trim_end().to_owned(), wchan.trim_end().to_owned()))
        })
        .collect()
}

/// Bytes that the server's end of the connection `server`-`client` has received but nobody has
/// read yet (the kernel's receive queue, from /proc/net/tcp); None if there is no such socket.
#[cfg(target_os = "linux")]
pub fn unread_by_server(server: SocketAddr, client: SocketAddr) -> Option<u64> {
    tcp_sockets(server)
        .into_iter()
        .find(|s| s.local_port == server.port() && s.remote_port == client.port())
        .map(|s| s.receive_queue)
}

/// Connections to the listening socket on `server` that the kernel has set up and nobody has
/// accepted yet (a listener's receive queue in /proc/net/tcp is its accept queue); None if
/// nothing listens there. A connection accepted is one a stop can no longer turn away.
#[cfg(target_os = "linux")]
pub fn not_yet_accepted(server: SocketAddr) -> Option<u64> {
    const LISTEN: u8 = 0x0A;
    tcp_sockets(server)
        .into_iter()
        .find(|s| s.local_port == server.port() && s.state == LISTEN)
        .map(|s| s.receive_queue)
}

/// A row of /proc/net/tcp or tcp6.
#[cfg(target_os = "linux")]
struct TcpSocket {
    local_port: u16,
    remote_port: u16,
    state: u8,
    receive_queue: u64,
}

/// The sockets of `server`'s family, as /proc/net/tcp (or tcp6) lists them.
#[cfg(target_os = "linux")]
fn tcp_sockets(server: SocketAddr) -> Vec<TcpSocket> {
    let table = if server.is_ipv4() { "tcp" } else { "tcp6" };
    let text = std::fs::read_to_string(format!("/proc/net/{table}")).unwrap_or_default();
    let port_of = |address: &str| {
        let port = address.rsplit(':').next()?;
        u16::from_str_radix(port, 16).ok()
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state, queues) = (
                fields.get(1)?,
                fields.get(2)?,
                fields.get(3)?,
                fields.get(4)?,
            );
            let (_, receive_queue) = queues.split_once(':')?;
            Some(TcpSocket {
                local_port: port_of(local)?,
                remote_port: port_of(remote)?,
                state: u8::from_str_radix(state, 16).ok()?,
                receive_queue: u64::from_str_radix(receive_queue, 16).ok()?,
            })
        })
        .collect()
}
