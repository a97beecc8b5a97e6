//! The listening socket: built here rather than by tiny_http, for its backlog, its dual-stack
//! default and the options that accepted connections inherit from it.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::config::Listen;
use crate::tiny_http_gaps;

/// Go's backlog; the kernel caps it at `net.core.somaxconn`. tiny_http's own bind uses 128.
const BACKLOG: i32 = 4096;

/// The listening socket, and whose it is.
pub struct Listening {
    pub socket: TcpListener,
    /// Passed by systemd, which keeps it open across restarts: a stop must leave it listening.
    pub from_systemd: bool,
}

/// Opens the listening socket, ready for tiny_http: the one systemd passed, if it did, else a new
/// one bound to `listen`.
pub fn open(listen: Listen, read_timeout: Duration) -> io::Result<Listening> {
    let (socket, from_systemd) = match systemd_socket()? {
        Some(socket) => (socket, true),
        None => (bind_listen(listen)?, false),
    };
    tiny_http_gaps::tune_listener(&socket, read_timeout)?;
    Ok(Listening {
        socket: socket.into(),
        from_systemd,
    })
}

fn bind_listen(listen: Listen) -> io::Result<Socket> {
    Ok(match listen {
        Listen::AnyAddress(port) => {
            match bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)) {
                Err(error) if ipv6_unavailable(&error) => {
                    bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port))?
                }
                other => other?,
            }
        }
        Listen::Exact(addr) => bind(addr)?,
    })
}

/// Socket activation (`sd_listen_fds`): systemd passes listening sockets from descriptor 3 on,
/// with `LISTEN_FDS` their number and `LISTEN_PID` the process meant to take them.
#[cfg(target_os = "linux")]
fn systemd_socket() -> io::Result<Option<Socket>> {
    use std::os::fd::FromRawFd;

    const FIRST_PASSED_FD: i32 = 3;
    let var = |name| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
    if var("LISTEN_PID") != Some(std::process::id()) || var("LISTEN_FDS").unwrap_or(0) == 0 {
        return Ok(None);
    }
    // SAFETY: systemd hands descriptor 3 to this process (LISTEN_PID) and nothing else owns it.
    let socket = unsafe { Socket::from_raw_fd(FIRST_PASSED_FD) };
    if !socket.is_listener()? {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptor 3 from systemd is not a listening socket",
        ));
    }
    socket.set_nonblocking(false)?;
    Ok(Some(socket))
}

#[cfg(not(target_os = "linux"))]
fn systemd_socket() -> io::Result<Option<Socket>> {
    Ok(None)
}

fn bind(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    // A restarted server must not wait for the old one's TIME_WAIT connections.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}

fn ipv6_unavailable(error: &io::Error) -> bool {
    #[cfg(unix)]
    if let Some(code) = error.raw_os_error() {
        return [
            libc::EAFNOSUPPORT,
            libc::EADDRNOTAVAIL,
            libc::EPROTONOSUPPORT,
        ]
        .contains(&code);
    }
    error.kind() == io::ErrorKind::AddrNotAvailable
}
