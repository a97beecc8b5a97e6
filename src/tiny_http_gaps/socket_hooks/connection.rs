//! One connection as the hooks follow it: what tiny_http has read of it, its head's deadline,
//! the requests it has ahead of their answers, and hellod's own answer when its stream stopped.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use libc::{c_int, c_void, size_t, ssize_t};

use super::settings;
use crate::tiny_http_gaps::Refusal;
use crate::tiny_http_gaps::framing::{Framing, Scan, is_token_byte};

/// What tiny_http holds of request heads, all connections together: unfinished heads (in a
/// line buffer and the header strings parsed from it) and requests read but not yet answered.
static HEAD_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Requests a connection may have read and not answered before hellod stops reading from it:
/// twice the depth of common pipelining benchmarks (16).
pub(super) const MAX_AHEAD: usize = 32;

/// One accepted connection: its two descriptors (the accepted one, which tiny_http writes to,
/// and the duplicate it reads from) and what has been read of it.
pub(super) struct Connection {
    pub(super) accepted: RawFd,
    pub(super) inode: u64,
    pub(super) peer: Option<SocketAddr>,
    pub(super) reading: Mutex<Reading>,
    /// Notified when a request of this connection has been answered, or the connection shut.
    pub(super) room: Condvar,
}

pub(super) struct Reading {
    pub(super) framing: Framing,
    pub(super) head_deadline: Option<Instant>,
    /// The answer to send when tiny_http has answered everything before it.
    pub(super) answer: Option<u16>,
    /// This connection's share of [`HEAD_BYTES`].
    pub(super) head_bytes: usize,
    /// Shut by hellod (a stop, a client not reading): nothing more to wait for.
    pub(super) shut: bool,
}

impl Reading {
    /// Brings this connection's share of [`HEAD_BYTES`] up to date; returns the new total.
    fn count_head_bytes(&mut self) -> usize {
        let now = self.framing.held_bytes();
        let total = if now >= self.head_bytes {
            HEAD_BYTES.fetch_add(now - self.head_bytes, Relaxed) + (now - self.head_bytes)
        } else {
            HEAD_BYTES.fetch_sub(self.head_bytes - now, Relaxed) - (self.head_bytes - now)
        };
        self.head_bytes = now;
        total
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        HEAD_BYTES.fetch_sub(self.head_bytes, Relaxed);
    }
}

impl Connection {
    pub(super) fn reading(&self) -> MutexGuard<'_, Reading> {
        self.reading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// tiny_http's read: through [`Framing`], and within the head's deadline.
    pub(super) fn recv(&self, fd: RawFd, buf: *mut c_void, len: size_t) -> ssize_t {
        let deadline = {
            let mut reading = self.reading();
            // At most a read timeout: a request answered without hellod being told (tiny_http's
            // own 500 when no thread could be had for a body) must not stop the connection.
            let mut waited = false;
            while reading.framing.requests_ahead() >= MAX_AHEAD && !reading.shut && !waited {
                let timeout = settings().guard.head_timeout;
                let (guard, wait) = self
                    .room
                    .wait_timeout(reading, timeout)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                reading = guard;
                waited = wait.timed_out();
            }
            if reading.framing.is_stopped() {
                return 0;
            }
            reading.head_deadline
        };
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let millis = left.as_millis().min(c_int::MAX as u128) as c_int;
            // SAFETY: one pollfd, owned here.
            if unsafe { libc::poll(&mut poll, 1, millis) } == 0 {
                self.stop(408);
                return 0;
            }
        }
        // SAFETY: the caller's buffer and length, as given.
        let received =
            unsafe { libc::recvfrom(fd, buf, len, 0, std::ptr::null_mut(), std::ptr::null_mut()) };
        if received <= 0 {
            return received;
        }
        // SAFETY: the kernel wrote `received` bytes there.
        let bytes = unsafe { std::slice::from_raw_parts(buf as *const u8, received as usize) };
        let mut reading = self.reading();
        let scan = reading.framing.scan(bytes);
        reading.head_deadline = match (reading.framing.in_head(), reading.head_deadline) {
            (false, _) => None,
            (true, None) => Some(Instant::now() + settings().guard.head_timeout),
            (true, deadline) => deadline,
        };
        let heads = reading.count_head_bytes();
        match scan {
            Scan::Pass if heads > settings().guard.head_budget && reading.framing.in_head() => {
                reading.framing.stop();
                reading.answer = Some(503);
                reading.count_head_bytes();
                0
            }
            Scan::Pass => received,
            Scan::Stop { keep, status } => {
                reading.answer = status;
                keep as ssize_t
            }
        }
    }

    pub(super) fn answered(&self) {
        let mut reading = self.reading();
        reading.framing.answered();
        reading.count_head_bytes();
        // Only the answer that makes room wakes the reader: a notification is a system call,
        // and this runs for every request.
        if reading.framing.requests_ahead() == MAX_AHEAD - 1 {
            self.room.notify_one();
        }
    }

    pub(super) fn wake(&self) {
        self.reading().shut = true;
        self.room.notify_one();
    }

    fn stop(&self, status: u16) {
        let mut reading = self.reading();
        if !reading.framing.is_stopped() {
            reading.framing.stop();
            reading.answer = Some(status);
            reading.count_head_bytes();
        }
    }

    /// Sends the answer to a stopped head, if any, then lets the client's remaining bytes go so
    /// that the close ends in a FIN, not a reset that could destroy the answer in flight.
    pub(super) fn answer_before_shutdown(&self, fd: RawFd) {
        let (status, request_line) = {
            let mut reading = self.reading();
            let Some(status) = reading.answer.take() else {
                return;
            };
            (status, reading.framing.request_line().to_vec())
        };
        // The method as far as it goes, even in a request line refused at its next byte.
        let head = request_line
            .strip_prefix(b"HEAD")
            .is_some_and(|rest| rest.first().is_none_or(|&next| !is_token_byte(next)));
        let response = refusal_response(status, head);
        // SAFETY: sends from a buffer owned here.
        unsafe {
            libc::send(
                fd,
                response.as_ptr().cast(),
                response.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if let Some(log) = settings().access_log {
            log(&Refusal {
                client: self.peer,
                request_line: &request_line,
                status,
                body_len: if head { 0 } else { reason(status).len() },
            });
        }
    }
}

pub(super) fn borrowed(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: used only for calls on a descriptor the caller is about to use anyway; a closed
    // one makes them fail.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// A whole response that closes the connection; the reason is the body too, except in the
/// answer to a HEAD.
pub(super) fn refusal_response(status: u16, head: bool) -> Vec<u8> {
    let reason = reason(status);
    format!(
        "HTTP/1.1 {status} {reason}\r\nServer: hellod\r\nDate: {}\r\nContent-Type: text/plain; \
         charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        httpdate::fmt_http_date(std::time::SystemTime::now()),
        reason.len(),
        if head { "" } else { reason },
    )
    .into_bytes()
}
