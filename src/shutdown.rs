//! Stopping: SIGTERM and SIGINT, then a drain bounded by the grace period.

use std::io;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::tiny_http_gaps;

/// SIGTERM and SIGINT, waited for without a thread of their own. With handlers installed, these
/// signals also work when hellod is PID 1 in a container, where the kernel ignores unhandled ones.
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

#[cfg(not(unix))]
impl StopSignals {
    pub fn install() -> io::Result<StopSignals> {
        Ok(StopSignals {})
    }

    pub fn wait(&self, timeout: Duration) -> Option<&'static str> {
        std::thread::sleep(timeout);
        None
    }
}

/// Stops accepting at once (connections waiting in the backlog are refused), then lets the
/// requests already read be answered, for at most `grace`. Returns the clients still connected
/// when it gave up.
pub fn drain(listener: &TcpListener, grace: Duration) -> usize {
    let deadline = Instant::now() + grace;
    // On Linux this also wakes the accept loop, which then ends.
    let _ = socket2::SockRef::from(listener).shutdown(std::net::Shutdown::Read);
    loop {
        // Again on every round: a connection accepted just before the listener shut is shut too.
        let connected = tiny_http_gaps::shut_connection_reads();
        if connected == 0 || Instant::now() >= deadline {
            return connected;
        }
        std::thread::sleep(Duration::from_millis(10).min(deadline - Instant::now()));
    }
}
