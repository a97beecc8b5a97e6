//! tiny_http's accept loop, watched from outside.

use std::io;
use std::net::TcpListener;

/// tiny_http's accept loop ends for good on the first `accept()` error (upstream #283), and a
/// panic in it (`try_clone().unwrap()` when out of descriptors) ends it without a word. Each loop
/// gets its own duplicate of the listening socket and closes it when it ends, so whether the
/// duplicate is still open tells whether that loop still accepts; the original keeps the socket
/// and its backlog alive in between.
pub struct AcceptLoop {
    #[cfg(unix)]
    duplicate: (std::os::fd::RawFd, libc::dev_t, libc::ino_t),
    #[cfg(windows)]
    duplicate: std::os::windows::io::RawSocket,
}

impl AcceptLoop {
    /// A duplicate of `listener` for a new tiny_http server, and the means to watch it.
    pub fn duplicate(listener: &TcpListener) -> io::Result<(TcpListener, AcceptLoop)> {
        let duplicate = listener.try_clone()?;
        #[cfg(unix)]
        let watch = {
            use std::os::fd::AsRawFd;
            let fd = duplicate.as_raw_fd();
            let stat = fstat(fd).ok_or_else(io::Error::last_os_error)?;
            AcceptLoop {
                duplicate: (fd, stat.st_dev, stat.st_ino),
            }
        };
        #[cfg(windows)]
        let watch = {
            use std::os::windows::io::AsRawSocket;
            AcceptLoop {
                duplicate: duplicate.as_raw_socket(),
            }
        };
        #[cfg(not(any(unix, windows)))]
        let watch = AcceptLoop {};
        Ok((duplicate, watch))
    }

    /// False once the loop has ended and closed its duplicate (its descriptor number may since
    /// name another file, hence the inode check; on Windows a handle value may since name another
    /// socket, hence the check that it is a listening one: hellod makes no other, but the next
    /// loop's duplicate, once this one is seen ended).
    pub fn is_running(&self) -> bool {
        #[cfg(unix)]
        {
            let (fd, dev, ino) = self.duplicate;
            fstat(fd).is_some_and(|stat| stat.st_dev == dev && stat.st_ino == ino)
        }
        #[cfg(windows)]
        {
            winsock::is_listening(self.duplicate)
        }
        #[cfg(not(any(unix, windows)))]
        true
    }
}

#[cfg(unix)]
fn fstat(fd: std::os::fd::RawFd) -> Option<libc::stat> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes nothing but the one `stat` passed, which outlives the call; a
    // descriptor number that names nothing is an error (EBADF), not undefined behaviour.
    let found = unsafe { libc::fstat(fd, stat.as_mut_ptr()) } == 0;
    // SAFETY: fstat succeeded, and on success it has written the whole `stat`.
    found.then(|| unsafe { stat.assume_init() })
}

/// The one Winsock call needed, declared here rather than through a bindings crate.
#[cfg(windows)]
mod winsock {
    use std::os::windows::io::RawSocket;

    const SOL_SOCKET: i32 = 0xffff;
    const SO_ACCEPTCONN: i32 = 0x0002;

    #[link(name = "ws2_32")]
    unsafe extern "system" {
        fn getsockopt(s: usize, level: i32, optname: i32, optval: *mut u8, optlen: *mut i32)
        -> i32;
    }

    /// Whether `socket` is an open, listening socket: a closed one, or a handle value since
    /// reused for something else, fails (`WSAENOTSOCK`) or is not listening (an accepted
    /// connection).
    pub(super) fn is_listening(socket: RawSocket) -> bool {
        let mut listening: i32 = 0;
        let mut len = size_of::<i32>() as i32;
        // SAFETY: getsockopt writes at most `len` bytes into `listening`, and a handle that is no
        // socket is an error, not undefined behaviour.
        let status = unsafe {
            getsockopt(
                socket as usize,
                SOL_SOCKET,
                SO_ACCEPTCONN,
                (&raw mut listening).cast(),
                &mut len,
            )
        };
        status == 0 && listening != 0
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::AcceptLoop;

    /// What the supervisor relies on, on every platform: a loop is seen running while its
    /// duplicate is open, and ended once the duplicate is closed, even when new sockets (an
    /// accepted connection, a new duplicate) may have taken its descriptor or handle value.
    #[test]
    fn a_loop_is_seen_ended_once_its_duplicate_is_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (duplicate, watch) = AcceptLoop::duplicate(&listener).unwrap();
        assert!(watch.is_running());
        drop(duplicate);
        assert!(!watch.is_running());

        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(
            !watch.is_running(),
            "an accepted connection is no accept loop"
        );

        let (next, next_watch) = AcceptLoop::duplicate(&listener).unwrap();
        assert!(next_watch.is_running());
        drop((client, accepted));
        assert!(next_watch.is_running(), "the listener is still open");
        drop(next);
        assert!(!next_watch.is_running());
    }
}
