//! The bare tiny_http server: `Server::from_listener` and N workers looping on `recv()`, each
//! answering `Hello, World!` as hellod does by default. No hardening, no supervisor, no timeouts:
//! the floor and the ceiling of the engine, for bench/run to set beside hellod.
//!
//! Usage: bare-tiny-http ADDRESS [WORKERS]   (WORKERS defaults to the CPUs available, as hellod's)

use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;

use socket2::{Domain, Socket, Type};
use tiny_http::{Header, Response, Server};

/// hellod's backlog (src/listener.rs), so that a burst of connections meets the same queue.
const BACKLOG: i32 = 4096;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bare-tiny-http: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bare-tiny-http ADDRESS [WORKERS]";
    let addr: SocketAddr = args
        .next()
        .ok_or(usage)?
        .parse()
        .map_err(|e| format!("ADDRESS: {e}; {usage}"))?;
    let workers = match args.next() {
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or(format!("WORKERS must be a whole number above 0; {usage}"))?,
        None => thread::available_parallelism().map_or(1, |n| n.get()),
    };

    let listener = listen(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let server = Arc::new(Server::from_listener(listener, None).map_err(|e| e.to_string())?);
    let content_type = Header::from_bytes("Content-Type", "text/plain; charset=utf-8")
        .expect("fixed ASCII header is valid");
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (server, content_type) = (server.clone(), content_type.clone());
            thread::spawn(move || {
                // recv() fails only when the accept thread has ended: then this worker ends too.
                while let Ok(request) = server.recv() {
                    let response =
                        Response::from_data("Hello, World!").with_header(content_type.clone());
                    let _ = request.respond(response);
                }
            })
        })
        .collect();
    // The line bench/run waits for, worded like hellod's.
    println!(
        "bare-tiny-http listening on http://{addr} ({workers} worker{})",
        if workers == 1 { "" } else { "s" }
    );
    for handle in handles {
        let _ = handle.join();
    }
    Ok(())
}

/// A listener with hellod's backlog and address reuse; tiny_http's own bind would use 128.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
