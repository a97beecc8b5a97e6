//! Starts the real `hellod` binary and talks HTTP to it over loopback.
#![allow(dead_code)] // each test binary uses its own share of these helpers

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
        let mut stream = self.connect();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        read_response(&mut BufReader::new(stream), false).expect("a response")
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

/// Names of the threads of process `pid`.
#[cfg(target_os = "linux")]
pub fn thread_names(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

/// A duplicate of the listening socket of process `pid` on `port` (pidfd_getfd), to read the
/// options set on it. Needs the right to trace `pid`, which a parent has.
#[cfg(target_os = "linux")]
pub fn steal_listener(pid: u32, port: u16) -> std::net::TcpListener {
    use std::os::fd::FromRawFd;

    // SAFETY: plain syscalls; every descriptor they return is owned here and closed or returned.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        for target_fd in 0..64 {
            let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd, target_fd, 0) as i32;
            if fd < 0 {
                continue;
            }
            let socket = socket2::Socket::from_raw_fd(fd);
            let is_it = socket.is_listener().unwrap_or(false)
                && socket
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .is_some_and(|a| a.port() == port);
            if is_it {
                libc::close(pidfd);
                return socket.into();
            }
        }
        panic!("no listening socket on port {port} in process {pid}");
    }
}
