//! Stopping: SIGTERM and SIGINT, or Ctrl-C and the other console events on Windows, then a
//! drain bounded by the grace period.

use std::io;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::tiny_http_gaps;

/// On a stop, a connection with nothing in flight is closed once it has been quiet this long
/// since the stop (or since its last answer): a request already on its way is answered, not
/// dropped, and a load balancer has time to see the listening socket refuse and move on. At most
/// half the grace period.
pub const QUIET_BEFORE_CLOSE: Duration = Duration::from_secs(1);

/// SIGTERM and SIGINT (Unix) or console events (Windows), waited for without a thread of their
/// own. With handlers installed, the signals also work when hellod is PID 1 in a container, where
/// the kernel ignores unhandled ones.
pub struct StopSignals {
    #[cfg(unix)]
    wake: std::os::unix::net::UnixStream,
    #[cfg(unix)]
    terminate: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[cfg(unix)]
impl StopSignals {
    pub fn install() -> io::Result<StopSignals> {
        use signal_hook::consts::{SIGINT, SIGTERM};

        let (wake, wake_writer) = std::os::unix::net::UnixStream::pair()?;
        let terminate = std::sync::Arc::default();
        signal_hook::flag::register(SIGTERM, std::sync::Arc::clone(&terminate))?;
        for signal in [SIGTERM, SIGINT] {
            signal_hook::low_level::pipe::register(signal, wake_writer.try_clone()?)?;
        }
        Ok(StopSignals { wake, terminate })
    }

    /// Waits at most `timeout` for SIGTERM or SIGINT and returns its name.
    pub fn wait(&self, timeout: Duration) -> Option<&'static str> {
        use std::io::Read;

        // A zero timeout would mean "none" to the socket.
        let timeout = timeout.max(Duration::from_millis(1));
        self.wake.set_read_timeout(Some(timeout)).ok()?;
        match (&self.wake).read(&mut [0]) {
            Ok(1) if self.terminate.load(std::sync::atomic::Ordering::Relaxed) => Some("SIGTERM"),
            Ok(1) => Some("SIGINT"),
            _ => None,
        }
    }
}

/// Windows: Ctrl-C and Ctrl-Break, and the console window closing, the user logging off or the
/// system shutting down (for those three, Windows ends the process once the handler returns, and
/// at the latest after about 5 s, whatever the grace period).
#[cfg(windows)]
impl StopSignals {
    pub fn install() -> io::Result<StopSignals> {
        // SAFETY: registers a handler that touches only statics; it stays for the process's life.
        if unsafe { console::SetConsoleCtrlHandler(Some(console::on_event), 1) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(StopSignals {})
    }

    /// Waits at most `timeout` for a console event that stops hellod and returns its name.
    pub fn wait(&self, timeout: Duration) -> Option<&'static str> {
        let received = console::RECEIVED.lock().unwrap_or_else(|e| e.into_inner());
        let (received, _) = console::ARRIVED
            .wait_timeout_while(received, timeout, |name| name.is_none())
            .unwrap_or_else(|e| e.into_inner());
        *received
    }
}

#[cfg(windows)]
mod console {
    use std::sync::{Condvar, Mutex};

    /// The name of the console event that came, for [`super::StopSignals::wait`].
    pub static RECEIVED: Mutex<Option<&'static str>> = Mutex::new(None);
    pub static ARRIVED: Condvar = Condvar::new();

    #[link(name = "kernel32")]
    unsafe extern "system" {
        pub fn SetConsoleCtrlHandler(
            handler: Option<extern "system" fn(u32) -> i32>,
            add: i32,
        ) -> i32;
    }

    /// Runs on a thread that Windows starts for the event. Returning 1 means handled.
    pub extern "system" fn on_event(event: u32) -> i32 {
        let (name, ends_the_process) = match event {
            0 => ("Ctrl-C", false),
            1 => ("Ctrl-Break", false),
            2 => ("console close", true),
            5 => ("logoff", true),
            6 => ("system shutdown", true),
            _ => return 0,
        };
        *RECEIVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(name);
        ARRIVED.notify_all();
        if ends_the_process {
            // Windows would end the process on return: hold on until the drain ends it.
            loop {
                std::thread::park();
            }
        }
        1
    }
}

/// Stops accepting at once, then lets every request that arrives on an open connection be read
/// and answered (the last answer on each saying that it closes), for at most `grace`. Where
/// hellod sees its connections (Linux) it waits for each to close, one with nothing in flight
/// once it has been quiet for [`QUIET_BEFORE_CLOSE`]; elsewhere only for the answers being
/// written. `answering` tells whether any request received is still being answered. Returns None
/// when all were done in time, else the number of clients still connected (0 where hellod cannot
/// see its connections).
pub fn drain(
    listener: TcpListener,
    from_systemd: bool,
    grace: Duration,
    answering: impl Fn() -> bool,
) -> Option<usize> {
    let deadline = Instant::now() + grace;
    let quiet = QUIET_BEFORE_CLOSE.min(grace / 2);
    // Off Linux, the socket is shut here; on Linux the waiting room shuts it (kept till the end).
    let _listener = match tiny_http_gaps::stop_gently(quiet, from_systemd) {
        true => Some(listener),
        false => {
            stop_accepting(listener);
            None
        }
    };
    // Idle at two checks in a row: a request taken from tiny_http's queue just before the first
    // check is marked as being answered by the second.
    let mut idle_checks = 0;
    loop {
        let connected = tiny_http_gaps::open_connections();
        idle_checks = if connected == 0 && !answering() {
            idle_checks + 1
        } else {
            0
        };
        if idle_checks == 2 {
            return None;
        }
        if Instant::now() >= deadline {
            return Some(connected);
        }
        std::thread::sleep(Duration::from_millis(10).min(deadline - Instant::now()));
    }
}

/// Off Linux and Windows (macOS), shutting the listening socket refuses new connections and wakes
/// the accept loop, which then ends.
#[cfg(not(windows))]
fn stop_accepting(listener: TcpListener) {
    let _ = socket2::SockRef::from(&listener).shutdown(std::net::Shutdown::Read);
}

/// Windows cannot shut a listening socket, and closing this handle leaves the socket open for the
/// duplicate that tiny_http's accept loop blocks on. Non-blocking mode belongs to the socket, not
/// to a handle (Winsock's "Shared Sockets": the state of a socket is held in common across its
/// descriptors): once set, the loop's next `accept()` fails at once, and the loop ends and closes
/// its duplicate. A connection of hellod's own wakes it from the `accept()` it is blocked in.
#[cfg(windows)]
fn stop_accepting(listener: TcpListener) {
    use crate::config::Listen;

    let _ = listener.set_nonblocking(true);
    if let Ok(addr) = listener.local_addr() {
        let reachable = Listen::Exact(addr).loopback_target();
        let _ = std::net::TcpStream::connect_timeout(&reachable, Duration::from_millis(100));
    }
}
