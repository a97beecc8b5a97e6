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
        #[cfg(not(unix))]
        let watch = AcceptLoop {};
        Ok((duplicate, watch))
    }

    /// False once the loop has ended and closed its duplicate (its descriptor number may since
    /// name another file, hence the inode check).
    pub fn is_running(&self) -> bool {
        #[cfg(unix)]
        {
            let (fd, dev, ino) = self.duplicate;
            fstat(fd).is_some_and(|stat| stat.st_dev == dev && stat.st_ino == ino)
        }
        #[cfg(not(unix))]
        true
    }
}

#[cfg(unix)]
fn fstat(fd: std::os::fd::RawFd) -> Option<libc::stat> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a whole `stat` on success and nothing else.
    (unsafe { libc::fstat(fd, stat.as_mut_ptr()) } == 0).then(|| unsafe { stat.assume_init() })
}
