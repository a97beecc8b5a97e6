//! Stopping: SIGTERM and SIGINT, then a drain bounded by the grace period.

use std::io;
use std::net::TcpListener;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::tiny_http_gaps;

/// Sends the name of each SIGTERM or SIGINT to `stop`. With handlers installed, these signals
/// also work when hellod is PID 1 in a container, where the kernel ignores unhandled ones.
#[cfg(unix)]
pub fn forward_signals(stop: Sender<&'static str>) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};

    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("hellod-signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            for signal in signals.forever() {
                let name = if signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                if stop.send(name).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}

#[cfg(not(unix))]
pub fn forward_signals(_stop: Sender<&'static str>) -> io::Result<()> {
    Ok(())
}

/// Stops accepting at once (connections waiting in the backlog are refused), then lets the
/// requests already read be answered, for at most `grace`. Returns the clients still connected
/// when it gave up.
pub fn drain(listener: &TcpListener, grace: Duration) -> usize {
    let deadline = Instant::now() + grace;
    let port = listener.local_addr().map_or(0, |addr| addr.port());
    // On Linux this also wakes the accept loop, which then ends.
    let _ = socket2::SockRef::from(listener).shutdown(std::net::Shutdown::Read);
    loop {
        // Again on every round: a connection accepted just before the listener shut is shut too.
        let connected = tiny_http_gaps::shut_connection_reads(port).unwrap_or(0);
        if connected == 0 || Instant::now() >= deadline {
            return connected;
        }
        std::thread::sleep(Duration::from_millis(10).min(deadline - Instant::now()));
    }
}
