//! Starts the real `hellod` binary and talks HTTP to it over loopback.
#![allow(dead_code)] // each test binary uses its own share of these helpers

mod proc;
mod responses;

// Re-exported whole: each test binary uses its own share.
#[cfg(target_os = "linux")]
#[allow(unused_imports)]
pub use proc::*;
#[allow(unused_imports)]
pub use responses::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hellod");
/// Generous: machines running these tests are shared and noisy. Nothing waits this long when
/// things work.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A `hellod` command with a clean environment (no HELLOD_* or PORT from the caller).
pub fn hellod() -> Command {
    let mut command = Command::new(BIN);
    command.env_clear();
    command
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub ready_line: String,
    /// Lines printed on stdout after the readiness line.
    pub stdout: Receiver<String>,
    pub stderr: Receiver<String>,
}

fn lines_of(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Server {
    /// Starts hellod on 127.0.0.1:0 with `args` and waits for its readiness line.
    pub fn start(args: &[&str]) -> Server {
        let mut command = hellod();
        command.args(["--listen", "127.0.0.1:0"]).args(args);
        Server::spawn(command)
    }

    pub fn spawn(mut command: Command) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hellod starts");
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        let ready_line = match stdout.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let errors: Vec<String> = stderr.try_iter().collect();
                panic!("no readiness line; stderr: {errors:?}");
            }
        };
        let url = ready_line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("http://"))
            .unwrap_or_else(|| panic!("no address in {ready_line:?}"));
        let addr = url
            .parse()
            .expect("the readiness line has a socket address");
        Server {
            child,
            addr,
            ready_line,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connects");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream
    }

    /// One request on a new connection; the whole response.
    pub fn get(&self, path: &str) -> Response {
        self.try_get(path).expect("a response")
    }

    /// One request on a new connection; the whole response, if one came within [`DEADLINE`].
    pub fn try_get(&self, path: &str) -> Option<Response> {
        let mut stream = self.connect();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        read_response(&mut BufReader::new(stream), false)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to end, failing the test after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "hellod did not exit within {limit:?}"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The next stdout line, within the deadline.
    pub fn next_line(&self) -> String {
        self.stdout
            .recv_timeout(DEADLINE)
            .expect("a line on stdout")
    }

    /// Passes over stdout lines until one holds `needle` (such as hellod's acknowledgement of a
    /// signal), and returns it; fails the test if none comes within the deadline.
    pub fn wait_for_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no stdout line with {needle:?} within {DEADLINE:?}"),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.status_line.split(' ').nth(1).unwrap().parse().unwrap()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response; `head_only` for an answer to HEAD. None when the connection ends first.
pub fn read_response(reader: &mut impl BufRead, head_only: bool) -> Option<Response> {
    let mut status_line = String::new();
    if reader.read_line(&mut status_line).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let mut response = Response {
        status_line: status_line.trim_end().to_owned(),
        headers,
        body: Vec::new(),
    };
    if !head_only {
        let length: usize = response.header("Content-Length")?.parse().ok()?;
        response.body.resize(length, 0);
        reader.read_exact(&mut response.body).ok()?;
    }
    Some(response)
}

/// Polls `condition` until it holds, failing the test after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// The `q`-quantile (0.0 to 1.0) of `samples`, which it sorts.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    assert!(!samples.is_empty(), "no samples");
    samples.sort_unstable();
    let rank = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

/// The first, median and last of `samples` (which it sorts), or None if there are none.
pub fn first_median_last(samples: &mut [Duration]) -> Option<(Duration, Duration, Duration)> {
    if samples.is_empty() {
        return None;
    }
    let first = quantile(samples, 0.0);
    Some((first, quantile(samples, 0.5), quantile(samples, 1.0)))
}
