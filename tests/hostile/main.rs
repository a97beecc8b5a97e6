//! Hostile clients against the real binary: a corpus of malformed, ambiguous and abusive
//! requests, each followed by a good request on a new connection (`corpus`); smuggling through
//! ambiguous framing and HTTP/2 request lines (`framing`); bodies declared too large, stalled, or
//! answers never read (`bodies`); control bytes aimed at the access log (`access_log`); and
//! generated requests (proptest) against one live server (`generated`).
//!
//! Every answer must be a well-formed 4xx/5xx, or the greeting where the request is a good one,
//! and every connection must end. A case that closes without a word is marked as such.

// Linux only: these read /proc (threads, descriptors, socket queues) and set process limits.
#![cfg(target_os = "linux")]

#[path = "../common/mod.rs"]
mod common;

mod access_log;
mod bodies;
mod cases;
mod corpus;
mod framing;
mod generated;

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use cases::{After, Case, Expect};
use common::{DEADLINE, Ending, Server, parse_responses, read_until_close, usage, wait_for};

const GREETING: &[u8] = b"Hello, World!";

/// Sends `bytes`, then does `after`; returns what came back (nothing for hang-ups).
fn exchange(server: &Server, bytes: &[u8], after: After, limit: Duration) -> (Vec<u8>, Ending) {
    let mut stream = server.connect();
    // The server may close before reading everything (it stops at the first bad line): a
    // failed write is part of the exchange, not a test failure.
    let _ = stream.write_all(bytes);
    match after {
        After::HalfClose => {
            let _ = stream.shutdown(Shutdown::Write);
            read_until_close(&mut stream, limit)
        }
        After::KeepOpen => read_until_close(&mut stream, limit),
        After::HangUp => (Vec::new(), Ending::Closed),
        After::Reset => {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            (Vec::new(), Ending::Reset)
        }
    }
}

/// A GET on a new connection must get the greeting, within the deadline.
fn greet(server: &Server) {
    let started = Instant::now();
    let request = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let (received, ending) = exchange(server, request, After::KeepOpen, DEADLINE);
    let responses = parse_responses(&received, false);
    let greeted =
        matches!(&responses, Ok(r) if r.len() == 1 && r[0].status == 200 && r[0].body == GREETING);
    assert!(
        greeted && ending == Ending::Closed,
        "no greeting after {:?}: {ending:?} {responses:?}",
        started.elapsed()
    );
}

fn assert_alive(server: &mut Server) {
    if let Some(status) = server.child.try_wait().unwrap() {
        let stderr: Vec<String> = server.stderr.try_iter().collect();
        panic!("hellod exited ({status}); stderr: {stderr:#?}");
    }
}
