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
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    // SAFETY: pidfd_open takes no memory.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a descriptor just made, which nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    for target_fd in 0..64 {
        // SAFETY: pidfd_getfd takes no memory.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) };
        if fd < 0 {
            continue;
        }
        // SAFETY: a duplicate just made in this process, which nothing else owns.
        let socket = unsafe { socket2::Socket::from_raw_fd(fd as i32) };
        let is_it = socket.is_listener().unwrap_or(false)
            && socket
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .is_some_and(|a| a.port() == port);
        if is_it {
            return socket.into();
        }
    }
    panic!("no listening socket on port {port} in process {pid}");
}

// Helpers for tests/hostile.rs and tests/stress/: raw exchanges, strict response parsing and
// the resources a process holds.

/// How the server side of a raw exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// End of stream: the server closed (or shut) its side.
    Closed,
    /// The connection was reset.
    Reset,
    /// Still open when the reader gave up.
    StillOpen,
}

/// Reads what the server sends until it closes the connection or `limit` passes.
pub fn read_until_close(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Ending) {
    let deadline = Instant::now() + limit;
    let mut received = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (received, Ending::StillOpen);
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => return (received, Ending::Closed),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (received, Ending::StillOpen);
            }
            Err(_) => return (received, Ending::Reset),
        }
    }
}

/// One response as parsed by [`parse_responses`].
#[derive(Debug, Clone)]
pub struct Parsed {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Parses `bytes` strictly as a sequence of whole HTTP/1.x responses: `HTTP/d.d NNN reason`,
/// printable ASCII header lines `Name: value` ended by CRLF, exactly one `Content-Length` and
/// that many bytes of body (none for 1xx, 204, 304, or the final answer to a HEAD when
/// `head` is true). Anything left over, or malformed, is an error naming it.
pub fn parse_responses(bytes: &[u8], head: bool) -> Result<Vec<Parsed>, String> {
    let mut responses = Vec::new();
    let mut rest = bytes;
    let mut head_pending = head;
    while !rest.is_empty() {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("incomplete head: {:?}", String::from_utf8_lossy(rest)))?;
        let head_text = std::str::from_utf8(&rest[..end])
            .map_err(|_| format!("non-UTF-8 head: {:?}", &rest[..end]))?;
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut words = status_line.splitn(3, ' ');
        let version = words.next().unwrap_or_default();
        let code = words.next().unwrap_or_default();
        let reason = words.next().unwrap_or_default();
        let version_ok = version.len() == 8
            && version.starts_with("HTTP/")
            && version.as_bytes()[5].is_ascii_digit()
            && version.as_bytes()[6] == b'.'
            && version.as_bytes()[7].is_ascii_digit();
        let status: u16 = match code.parse() {
            Ok(status) if code.len() == 3 && (100..600).contains(&status) => status,
            _ => return Err(format!("bad status line {status_line:?}")),
        };
        if !version_ok || reason.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
            return Err(format!("bad status line {status_line:?}"));
        }
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(": ")
                .ok_or_else(|| format!("bad header line {line:?}"))?;
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if name.is_empty()
                || !name.bytes().all(token)
                || value.bytes().any(|b| !(0x20..0x7f).contains(&b))
            {
                return Err(format!("bad header line {line:?}"));
            }
            headers.push((name.to_owned(), value.to_owned()));
        }
        let lengths: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
            .map(|(_, v)| v.as_str())
            .collect();
        let length: usize = match lengths[..] {
            [one] => one
                .parse()
                .map_err(|_| format!("bad Content-Length {one:?}"))?,
            _ => return Err(format!("not one Content-Length: {headers:?}")),
        };
        rest = &rest[end + 4..];
        let interim = (100..200).contains(&status);
        let bodyless = interim || status == 204 || status == 304 || head_pending;
        let body_len = if bodyless { 0 } else { length };
        if rest.len() < body_len {
            return Err(format!(
                "body cut short: {} of {body_len} bytes after {status_line:?}",
                rest.len()
            ));
        }
        if !interim {
            head_pending = false;
        }
        responses.push(Parsed {
            version: version.to_owned(),
            status,
            headers,
            body: rest[..body_len].to_vec(),
        });
        rest = &rest[body_len..];
    }
    Ok(responses)
}

/// The statuses of the responses in `bytes`, parsed as [`parse_responses`] does.
pub fn statuses(bytes: &[u8], head: bool) -> Result<Vec<u16>, String> {
    parse_responses(bytes, head).map(|responses| responses.iter().map(|r| r.status).collect())
}

/// `count` new connections to `server`, each with one keep-alive GET sent and nothing read.
pub fn connections_with_a_get(server: &Server, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = server.connect();
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            stream
        })
        .collect()
}

/// What a process holds: resident memory, threads, open descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub rss_kib: u64,
    pub threads: usize,
    pub fds: usize,
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {} KiB, {} threads, {} fds",
            self.rss_kib, self.threads, self.fds
        )
    }
}

/// Reads [`Usage`] of `pid` from /proc; None once the process is gone.
#[cfg(target_os = "linux")]
pub fn usage(pid: u32) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Usage {
        rss_kib: field("VmRSS:")?,
        threads: usize::try_from(field("Threads:")?).ok()?,
        fds,
    })
}

/// The highest resident memory of `pid` so far (VmHWM), in KiB.
#[cfg(target_os = "linux")]
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.split_whitespace().next()?.parse().ok()
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

/// A GET on a new connection, timed from connect to the last byte of the greeting; None if it
/// fails or is not the 200 greeting within `limit`.
pub fn timed_greeting(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, limit).ok()?;
    stream.set_nodelay(true).ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let left = limit.saturating_sub(started.elapsed());
    let (bytes, ending) = read_until_close(&mut stream, left);
    let elapsed = started.elapsed();
    let responses = parse_responses(&bytes, false).ok()?;
    let greeted = ending == Ending::Closed
        && responses.len() == 1
        && responses[0].status == 200
        && responses[0].body == b"Hello, World!";
    greeted.then_some(elapsed)
}

/// Name and kernel wait channel (`wchan`) of each thread of `pid`: `wait_woken` for a thread
/// blocked on a socket, `futex_do_wait` or similar for one waiting on a lock or a queue.
#[cfg(target_os = "linux")]
pub fn thread_waits(pid: u32) -> Vec<(String, String)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| {
            let path = task.ok()?.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            let wchan = std::fs::read_to_string(path.join("wchan")).ok()?;
            Some((name.trim_end().to_owned(), wchan.trim_end().to_owned()))
        })
        .collect()
}

/// Bytes that the server's end of the connection `server`-`client` has received but nobody has
/// read yet (the kernel's receive queue, from /proc/net/tcp); None if there is no such socket.
#[cfg(target_os = "linux")]
pub fn unread_by_server(server: SocketAddr, client: SocketAddr) -> Option<u64> {
    tcp_sockets(server)
        .into_iter()
        .find(|s| s.local_port == server.port() && s.remote_port == client.port())
        .map(|s| s.receive_queue)
}

/// Connections to the listening socket on `server` that the kernel has set up and nobody has
/// accepted yet (a listener's receive queue in /proc/net/tcp is its accept queue); None if
/// nothing listens there. A connection accepted is one a stop can no longer turn away.
#[cfg(target_os = "linux")]
pub fn not_yet_accepted(server: SocketAddr) -> Option<u64> {
    const LISTEN: u8 = 0x0A;
    tcp_sockets(server)
        .into_iter()
        .find(|s| s.local_port == server.port() && s.state == LISTEN)
        .map(|s| s.receive_queue)
}

/// A row of /proc/net/tcp or tcp6.
#[cfg(target_os = "linux")]
struct TcpSocket {
    local_port: u16,
    remote_port: u16,
    state: u8,
    receive_queue: u64,
}

/// The sockets of `server`'s family, as /proc/net/tcp (or tcp6) lists them.
#[cfg(target_os = "linux")]
fn tcp_sockets(server: SocketAddr) -> Vec<TcpSocket> {
    let table = if server.is_ipv4() { "tcp" } else { "tcp6" };
    let text = std::fs::read_to_string(format!("/proc/net/{table}")).unwrap_or_default();
    let port_of = |address: &str| {
        let port = address.rsplit(':').next()?;
        u16::from_str_radix(port, 16).ok()
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state, queues) = (
                fields.get(1)?,
                fields.get(2)?,
                fields.get(3)?,
                fields.get(4)?,
            );
            let (_, receive_queue) = queues.split_once(':')?;
            Some(TcpSocket {
                local_port: port_of(local)?,
                remote_port: port_of(remote)?,
                state: u8::from_str_radix(state, 16).ok()?,
                receive_queue: u64::from_str_radix(receive_queue, 16).ok()?,
            })
        })
        .collect()
}
