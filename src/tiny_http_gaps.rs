//! Every workaround for a gap in tiny_http 0.12, each next to the behaviour it answers, so that
//! it can be deleted the day upstream fixes it. tiny_http itself is used as published: these act
//! from outside, on the listening socket, the process and the requests it hands over.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::thread;
use std::time::Duration;

use socket2::Socket;
use tiny_http::Request;

/// tiny_http sets no socket options and has no timeouts at all (upstream #56): a silent client
/// holds its connection thread forever, and small responses wait for Nagle. Accepted sockets
/// inherit these options from the listener. `SO_RCVTIMEO` also makes an idle `accept()` time out,
/// which ends tiny_http's accept loop; [`AcceptLoop`] restarts it.
pub fn tune_listener(socket: &Socket, read_timeout: Duration) -> io::Result<()> {
    socket.set_tcp_nodelay(true)?;
    socket.set_read_timeout(Some(read_timeout))?;
    socket.set_write_timeout(Some(read_timeout))
}

/// tiny_http drops any `Connection` header a response sets (`Response::add_header`), so a client
/// that asked to close is not told that the connection closes after the answer (RFC 9112 section
/// 9.6 says it should be), and an HTTP/1.0 client that asked to keep it open is not told that it
/// may (ApacheBench's `-k` waits for that). tiny_http does not check header values for line breaks
/// either (upstream #288), so the header goes in after the value of another: the `Server` header
/// `hellod\r\nConnection: close`. The strings are fixed or come from the operator's `Server`
/// header, which the configuration checked for control bytes; no client data ever gets there.
pub fn server_header_with_connection(server: &str, connection: &str) -> tiny_http::Header {
    let value = format!("{server}\r\nConnection: {connection}");
    tiny_http::Header::from_bytes("Server", value).expect("fixed ASCII header is valid")
}

/// tiny_http's pool of connection threads loses a wake-up when connections arrive faster than an
/// idle pool thread wakes: `TaskPool::spawn` still counts the thread that is just waking as idle,
/// queues the new connection and notifies nobody. That connection then waits, unread, until some
/// pool thread finishes a connection of its own, which with keep-alive may be the read timeout
/// (4 of a burst of 32 keep-alive clients, measured). A connection that hellod opens to itself and
/// closes at once is one that its thread finishes at once, before taking the next queued one. The
/// supervisor opens one for each connection it finds unread twice in a row (250 ms apart), not
/// one each time it wakes: waking an idle pool thread 4 times a second keeps about 20 of them
/// from ever reaching their 5 s idle timeout.
pub fn unstick_queued_connection(server: SocketAddr) {
    let _ = std::net::TcpStream::connect_timeout(&server, Duration::from_millis(100));
}

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

/// tiny_http `unwrap`s inside its own threads (`peer_addr()` after a client reset, upstream
/// #180) and panics with "capacity overflow" when it throws away the body of a request that
/// declared a `Content-Length` above `isize::MAX`. Built with `panic = "unwind"`, such a panic
/// ends only the thread it happens in; this hook makes it one line on stderr instead of a report
/// with a backtrace hint, and `contain` keeps a worker alive through one.
pub fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let thread = thread::current();
        let location = info
            .location()
            .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("");
        eprintln!(
            "hellod: panic in thread {}{location}: {message}",
            thread.name().unwrap_or("of tiny_http")
        );
    }));
}

/// Runs `answer`, surviving a panic inside tiny_http's code that it calls.
pub fn contain(answer: impl FnOnce()) {
    let _ = panic::catch_unwind(AssertUnwindSafe(answer));
}

/// A request with a body (see [`carries_body`]) that tiny_http has not read yet (above 1 KiB, chunked, or behind
/// `Expect: 100-continue`) is read by whoever answers it, and what is left unread is thrown away
/// when the request is dropped, blocking until the client has sent it all or the read timeout
/// fires. On a worker, a few clients that declare more than they send would stop the server; so
/// such requests are answered on a thread of their own. Bodies are rare for a greeting server.
pub fn answer_on_own_thread(request: Request, answer: impl FnOnce(Request) + Send + 'static) {
    let body_thread = thread::Builder::new()
        .name("hellod-body".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            let mut request = request;
            // Read it all here, so that a chunked body is not left to be parsed as the next
            // request.
            contain(|| {
                let _ = io::copy(&mut request.as_reader(), &mut io::sink());
            });
            answer(request);
        });
    if let Err(error) = body_thread {
        // The request went with the closure: tiny_http answered it with a 500.
        eprintln!("hellod: cannot start a thread for a request body: {error}");
    }
}

pub fn carries_body(request: &Request) -> bool {
    request.body_length().is_some_and(|length| length > 0)
        || request
            .headers()
            .iter()
            .any(|h| h.field.equiv("Transfer-Encoding"))
}

/// When tiny_http drops a request whose body was not read to its end, it allocates the whole
/// remaining `Content-Length` at once (`vec![0; remaining]` in `EqualReader::drop`) and reads into
/// it: `Content-Length: 1000000000000` makes that allocation fail and the process abort. So
/// allocations of 1 GiB or more (nothing else in hellod asks for one) get an anonymous mapping
/// with no swap reserved, which costs only the pages actually written. Where even that cannot be
/// had (beyond the address space, or with strict overcommit), a zeroed one gets a mapping of
/// 256 MiB: such a buffer only ever receives what one `read()` returns, which a
/// TCP socket bounds by its receive buffer.
#[cfg(target_os = "linux")]
pub struct HugeAllocations;

#[cfg(target_os = "linux")]
mod huge {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    const HUGE: usize = 1 << 30;
    /// Far above the largest TCP receive buffer Linux allows by default (`tcp_rmem`: 6 MiB).
    pub const DISCARD_PREFIX: usize = 256 << 20;
    /// The discard buffers alive now, so that `dealloc` unmaps what was mapped.
    static DISCARD_BUFFERS: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];

    fn is_huge(layout: Layout) -> bool {
        layout.size() >= HUGE && layout.align() <= 4096
    }

    fn map(len: usize) -> *mut u8 {
        // SAFETY: a fresh private anonymous mapping touches no existing memory.
        let mapping = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            mapping.cast()
        }
    }

    fn discard_buffer() -> *mut u8 {
        let buffer = map(DISCARD_PREFIX);
        if buffer.is_null() {
            return buffer;
        }
        for slot in &DISCARD_BUFFERS {
            if slot
                .compare_exchange(0, buffer as usize, Relaxed, Relaxed)
                .is_ok()
            {
                return buffer;
            }
        }
        // SAFETY: just mapped above, never handed out.
        unsafe { libc::munmap(buffer.cast(), DISCARD_PREFIX) };
        std::ptr::null_mut()
    }

    unsafe impl GlobalAlloc for super::HugeAllocations {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if is_huge(layout) {
                return map(layout.size());
            }
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if is_huge(layout) {
                let full = map(layout.size());
                return if full.is_null() {
                    discard_buffer()
                } else {
                    full
                };
            }
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if !is_huge(layout) {
                return unsafe { System.dealloc(ptr, layout) };
            }
            let discarded = DISCARD_BUFFERS.iter().any(|slot| {
                slot.compare_exchange(ptr as usize, 0, Relaxed, Relaxed)
                    .is_ok()
            });
            let len = if discarded {
                DISCARD_PREFIX
            } else {
                layout.size()
            };
            // SAFETY: `ptr` is a mapping of `len` bytes made by `alloc` or `alloc_zeroed`.
            unsafe { libc::munmap(ptr.cast(), len) };
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let new_layout = Layout::from_size_align(new_size, layout.align());
            let stays_small = !is_huge(layout) && new_layout.as_ref().is_ok_and(|l| !is_huge(*l));
            if stays_small {
                return unsafe { System.realloc(ptr, layout, new_size) };
            }
            // Crossing the threshold (a header line past 1 GiB): move between the allocators.
            let Ok(new_layout) = new_layout else {
                return std::ptr::null_mut();
            };
            let new = unsafe { self.alloc(new_layout) };
            if !new.is_null() {
                // SAFETY: both blocks are valid for the shorter length and do not overlap.
                unsafe {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
            }
            new
        }
    }
}

/// tiny_http spawns its accept thread and a thread per connection with `thread::spawn`, so each
/// reserves std's default 2 MiB stack: 1,000 connections map 2 GiB and about 4 MiB of page
/// tables, for threads that touch a few KiB of stack. std reads `RUST_MIN_STACK` at its first
/// spawn, so setting it here gives those threads the stack hellod's own workers have. A value
/// the operator set is kept.
///
/// # Safety
///
/// No other thread may be running: it changes the environment.
pub unsafe fn shrink_default_thread_stack() {
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        // SAFETY: the caller guarantees no other thread reads or writes the environment now.
        unsafe { std::env::set_var("RUST_MIN_STACK", "131072") };
    }
}

/// Calls `each` with every socket of this process accepted on `port` (not the listener), and its
/// descriptor. tiny_http keeps its connections to itself; this is how hellod reaches them.
#[cfg(target_os = "linux")]
fn for_each_accepted(
    port: u16,
    mut each: impl FnMut(socket2::SockRef<'_>, std::os::fd::RawFd),
) -> io::Result<()> {
    use std::os::fd::{BorrowedFd, RawFd};

    for entry in std::fs::read_dir("/proc/self/fd")? {
        let name = entry?.file_name();
        let Some(fd) = name.to_str().and_then(|n| n.parse::<RawFd>().ok()) else {
            continue;
        };
        // SAFETY: borrowed only for the calls below; a descriptor closed meanwhile makes them
        // fail, and one reused meanwhile for another accepted connection is one of those sought.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        let accepted_here = socket
            .local_addr()
            .ok()
            .and_then(|addr| addr.as_socket())
            .is_some_and(|addr| addr.port() == port)
            && socket.is_listener().is_ok_and(|listening| !listening);
        if accepted_here {
            each(socket, fd);
        }
    }
    Ok(())
}

/// tiny_http gives no way to close a connection: a `Connection: close` header set on a response
/// is dropped, and a keep-alive connection stays open for as long as its client keeps it. To stop
/// cleanly, hellod shuts the reading side of every connection accepted on `port`: tiny_http's
/// connection threads see the end of the stream and read no more requests, the requests already
/// read are answered, and then tiny_http closes the sockets. Returns the clients still connected.
#[cfg(target_os = "linux")]
pub fn shut_connection_reads(port: u16) -> io::Result<usize> {
    let mut clients = Vec::new();
    for_each_accepted(port, |socket, _| {
        if let Ok(peer) = socket.peer_addr() {
            let _ = socket.shutdown(std::net::Shutdown::Read);
            clients.push(peer.as_socket());
        }
    })?;
    // Two descriptors per connection (tiny_http splits each into reading and writing halves).
    clients.sort_unstable();
    clients.dedup();
    Ok(clients.len())
}

#[cfg(not(target_os = "linux"))]
pub fn shut_connection_reads(_port: u16) -> io::Result<usize> {
    Ok(0)
}

/// Shuts both ways the connections accepted on `port` from any of `clients`.
#[cfg(target_os = "linux")]
pub fn shut_connections_to(port: u16, clients: &[SocketAddr]) -> io::Result<()> {
    for_each_accepted(port, |socket, _| {
        let peer = socket.peer_addr().ok().and_then(|addr| addr.as_socket());
        if peer.is_some_and(|peer| clients.contains(&peer)) {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    })
}

#[cfg(not(target_os = "linux"))]
pub fn shut_connections_to(_port: u16, _clients: &[SocketAddr]) -> io::Result<()> {
    Ok(())
}

/// The connections accepted on `port` with bytes waiting to be read (their sockets' inodes):
/// among them, any that tiny_http's pool left queued (see [`unstick_queued_connection`]).
#[cfg(target_os = "linux")]
pub fn connections_left_unread(port: u16) -> io::Result<Vec<u64>> {
    let mut unread = Vec::new();
    for_each_accepted(port, |_, fd| {
        let mut waiting: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        let queued = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut waiting) } == 0 && waiting > 0;
        if let (true, Some(stat)) = (queued, fstat(fd)) {
            unread.push(stat.st_ino);
        }
    })?;
    // Two descriptors per connection.
    unread.sort_unstable();
    unread.dedup();
    Ok(unread)
}

#[cfg(not(target_os = "linux"))]
pub fn connections_left_unread(_port: u16) -> io::Result<Vec<u64>> {
    Ok(Vec::new())
}
