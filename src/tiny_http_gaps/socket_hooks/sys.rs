//! The kernel's socket calls, made directly. hellod defines `accept4`, `recv`, `shutdown`,
//! `close` and `getpeername` itself, so code in the hooks that called libc's names would call the
//! hooks again: every such call goes through here instead (clippy's `disallowed-methods` refuses
//! the libc names).

use std::io;
use std::os::fd::RawFd;

use libc::{c_int, c_void};

pub(super) fn errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn set_errno(code: c_int) {
    // SAFETY: __errno_location returns a valid pointer to this thread's errno, which no other
    // thread touches.
    unsafe { *libc::__errno_location() = code };
}

/// musl's `close`: an interrupted close has closed the descriptor all the same.
pub(super) fn close(fd: RawFd) -> c_int {
    // SAFETY: closing takes no memory; the caller owns the descriptor.
    match unsafe { libc::syscall(libc::SYS_close, fd) } {
        -1 if errno() == libc::EINTR => {
            set_errno(0);
            0
        }
        result => result as c_int,
    }
}

pub(super) fn shutdown(fd: RawFd, how: c_int) -> c_int {
    // SAFETY: shutting down takes no memory.
    unsafe { libc::syscall(libc::SYS_shutdown, fd, how) as c_int }
}

/// # Safety
///
/// As `accept4(2)`: `addr` and `len` are null or point to a writable address buffer and its length.
pub(super) unsafe fn accept4(
    fd: RawFd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: the kernel writes to `addr` and `len` only as this function's contract allows, and
    // checks the pointers itself (a bad one is EFAULT).
    unsafe { libc::syscall(libc::SYS_accept4, fd, addr, len, flags) as c_int }
}

/// # Safety
///
/// As `getpeername(2)`: `addr` and `len` point to a writable address buffer and its length.
pub(super) unsafe fn getpeername(
    fd: RawFd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> c_int {
    // SAFETY: the caller's address buffer, as `getpeername(2)` takes it.
    unsafe { libc::syscall(libc::SYS_getpeername, fd, addr, len) as c_int }
}

/// # Safety
///
/// As `recv(2)`: `buf` points to `len` writable bytes.
pub(super) unsafe fn recv(fd: RawFd, buf: *mut c_void, len: usize, flags: c_int) -> isize {
    // SAFETY: `buf` has `len` writable bytes (this function's contract), and with null address
    // pointers recvfrom writes nothing else.
    unsafe {
        libc::recvfrom(
            fd,
            buf,
            len,
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
}

/// Reads into a buffer of hellod's own.
pub(super) fn recv_into(fd: RawFd, buf: &mut [u8], flags: c_int) -> isize {
    // SAFETY: a mutable slice is `buf.len()` writable bytes, borrowed for the whole call.
    unsafe { recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) }
}

/// Sends what it can without waiting, and never raises SIGPIPE.
pub(super) fn send_now(fd: RawFd, bytes: &[u8]) {
    // SAFETY: send only reads `bytes.len()` bytes of `bytes`, which outlives the call.
    unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
}

/// Reads and drops what the client has sent and nobody will read, at most 64 KiB, without
/// waiting: a close with unread data sends a reset, which can destroy an answer in flight.
pub(super) fn discard_unread(fd: RawFd) {
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        if recv_into(fd, &mut sink, libc::MSG_DONTWAIT) <= 0 {
            return;
        }
    }
}

/// The inode of the socket behind `fd`: the same for a descriptor and its duplicates.
pub(super) fn inode(fd: RawFd) -> Option<u64> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes nothing but the one `stat` passed, which outlives the call; a
    // descriptor number that names nothing is an error (EBADF), not undefined behaviour.
    let found = unsafe { libc::fstat(fd, stat.as_mut_ptr()) } == 0;
    // SAFETY: fstat succeeded, and on success it has written the whole `stat`.
    found.then(|| unsafe { stat.assume_init() }.st_ino)
}

/// An eventfd, for waking a thread or the waiting room.
pub(super) fn eventfd() -> Option<RawFd> {
    // SAFETY: creates a descriptor; takes no memory.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    (fd >= 0).then_some(fd)
}

pub(super) fn signal_eventfd(fd: RawFd) {
    let one = 1u64;
    // SAFETY: write only reads the 8 bytes of `one`, which outlives the call.
    unsafe { libc::write(fd, (&raw const one).cast(), 8) };
}

pub(super) fn drain_eventfd(fd: RawFd) {
    let mut count = 0u64;
    // SAFETY: read writes at most 8 bytes, the size of `count`, which outlives the call.
    unsafe { libc::read(fd, (&raw mut count).cast(), 8) };
}

/// Waits for any of `fds` to be readable (or closed), at most `millis` (-1: no limit). Returns
/// which were, or None when the time ran out (or on an error, as a time-out).
pub(super) fn poll_readable<const N: usize>(fds: [RawFd; N], millis: c_int) -> Option<[bool; N]> {
    let mut polls = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    // SAFETY: poll reads and writes exactly the N pollfds of `polls`, which outlives the call.
    if unsafe { libc::poll(polls.as_mut_ptr(), N as libc::nfds_t, millis) } <= 0 {
        return None;
    }
    Some(polls.map(|poll| poll.revents != 0))
}

pub(super) fn millis_until(deadline: std::time::Instant) -> c_int {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    // Rounded up: a poll woken a little early would find the deadline not yet passed.
    (left.as_micros().div_ceil(1000)).min(c_int::MAX as u128) as c_int
}
