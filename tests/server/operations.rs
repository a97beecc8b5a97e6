//! Running it: SIGTERM, the health check, the access log, descriptors and timeouts.

use super::*;

#[test]
fn sigterm_when_idle_exits_0() {
    for signal in ["TERM", "INT"] {
        let mut server = Server::start(&["--grace", "60"]);
        // An idle keep-alive connection must not hold the stop up for the grace period.
        let mut idle = server.connect();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut reader = BufReader::new(idle.try_clone().unwrap());
        assert_eq!(read_response(&mut reader, false).unwrap().status(), 200);
        server.signal(signal);
        let status = server.wait_exit(DEADLINE);
        assert_eq!(status.code(), Some(0), "SIG{signal}");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "the idle connection was closed");
    }
}

#[test]
fn sigterm_answers_the_request_in_flight_then_exits_0() {
    let mut server = Server::start(&["--grace", "60"]);
    let mut stream = server.connect();
    // A request whose body is still arriving is in flight when the signal comes.
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 4000\r\n\r\n")
        .unwrap();
    stream.write_all(&[b'x'; 2000]).unwrap();
    #[cfg(target_os = "linux")]
    {
        let client = stream.local_addr().unwrap();
        wait_for("the server to read what was sent", DEADLINE, || {
            common::unread_by_server(server.addr, client) == Some(0)
        });
    }
    server.signal("TERM");
    assert_eq!(server.next_line(), "hellod: SIGTERM received, stopping");
    // New connections are refused from now on.
    wait_for("the listener to close", DEADLINE, || {
        std::net::TcpStream::connect(server.addr).is_err()
    });
    let _ = stream.write_all(&[b'x'; 2000]);
    let response = read_response(&mut BufReader::new(stream), false).expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text(), "Hello, World!");
    assert_eq!(server.wait_exit(DEADLINE).code(), Some(0));
}

#[test]
fn healthcheck_against_live_and_dead_servers() {
    let server = Server::start(&[]);
    let url = format!("http://{}/health", server.addr);
    let output = hellod()
        .args(["healthcheck", "--url", &url])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("200 OK"));

    // Without --url, the listen address from the same flags and environment.
    let output = hellod()
        .args(["healthcheck"])
        .env("HELLOD_LISTEN", server.addr.to_string())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");

    // A server answering with an error status is unhealthy.
    let failing = Server::start(&["--status", "500"]);
    let output = hellod()
        .args(["healthcheck", "--listen", &failing.addr.to_string()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));

    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = hellod()
        .args(["healthcheck", "--url", &format!("http://{dead}/")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(!output.stderr.is_empty());
}

#[test]
fn healthcheck_of_an_unspecified_address_asks_loopback() {
    let free_port = TcpListener::bind("[::]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server::spawn({
        let mut command = hellod();
        command.env("PORT", free_port.to_string());
        command
    });
    let output = hellod()
        .args(["healthcheck"])
        .env("PORT", free_port.to_string())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    drop(server);
}

#[test]
fn access_log_escapes_control_bytes() {
    let server = Server::start(&["--access-log"]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /\"q\"\\b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    read_response(&mut BufReader::new(stream), false).unwrap();
    let line = server.next_line();
    assert!(
        line.contains("\"GET /\\\"q\\\"\\\\b HTTP/1.1\" 200 13"),
        "{line}"
    );
    // A control byte never gets past the request line's check: a 400, logged escaped.
    let mut stream = server.connect();
    stream.write_all(b"GET /\x1b[31m HTTP/1.1\r\n\r\n").unwrap();
    let response = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(response.status(), 400);
    let line = server.next_line();
    assert!(line.ends_with("\"GET /\\x1b\" 400 11"), "{line}");
}

#[test]
fn no_access_log_by_default() {
    let server = Server::start(&[]);
    server.get("/");
    let mut server = server;
    server.signal("TERM");
    server.wait_exit(DEADLINE);
    let lines: Vec<String> = server.stdout.try_iter().collect();
    assert_eq!(lines, ["hellod: SIGTERM received, stopping"]);
}

#[cfg(target_os = "linux")]
#[test]
fn raises_the_open_files_limit_and_stays_small_when_idle() {
    let mut command = std::process::Command::new("sh");
    command
        .env_clear()
        .args([
            "-c",
            "ulimit -Sn 64 && exec \"$0\" --listen 127.0.0.1:0 --workers 2",
        ])
        .arg(common::BIN);
    let server = Server::spawn(command);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(
        numbers[0], numbers[1],
        "soft limit raised to the hard one: {open_files}"
    );
    assert_ne!(numbers[0], "64");

    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let threads: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // main (which also waits for signals), the waiting room, tiny_http's accept thread and its
    // 4 idle pool threads, 2 workers.
    assert!(threads <= 9, "{threads} threads at idle");
}

#[cfg(target_os = "linux")]
#[test]
fn listener_options_that_accepted_sockets_inherit() {
    let server = Server::start(&["--read-timeout", "7.5"]);
    let listener = common::steal_listener(server.pid(), server.addr.port());
    let sock = socket2::SockRef::from(&listener);
    assert!(sock.tcp_nodelay().unwrap(), "TCP_NODELAY on the listener");
    assert_eq!(
        sock.read_timeout().unwrap(),
        Some(std::time::Duration::from_millis(7500))
    );
    assert_eq!(
        sock.write_timeout().unwrap(),
        Some(std::time::Duration::from_millis(7500))
    );
}

#[test]
fn idle_connections_are_closed_after_the_read_timeout() {
    let server = Server::start(&["--read-timeout", "0.3"]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    assert_eq!(read_response(&mut reader, false).unwrap().status(), 200);
    let mut rest = Vec::new();
    // Returns (end of stream) only because the server closes the silent connection; the
    // client's own read timeout is DEADLINE, far longer.
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

/// With every slot of the pool held by a keep-alive connection whose thread lingers, a request on
/// another connection gets a slot asked back at once, not when a linger ends; the connections
/// that gave theirs back are served again, each the same way. Keep-alive clients take turns, so
/// that every request but the first two needs a slot asked back.
#[cfg(target_os = "linux")]
#[test]
fn a_full_pool_asks_a_lingering_connection_for_its_slot() {
    use hellod::tiny_http_gaps::LINGER;
    use std::time::Instant;

    let server = Server::start(&["--max-serving", "2"]);
    let mut clients: Vec<BufReader<std::net::TcpStream>> =
        (0..6).map(|_| BufReader::new(server.connect())).collect();
    let mut slowest = std::time::Duration::ZERO;
    for round in 0..4 {
        for (n, client) in clients.iter_mut().enumerate() {
            let asked = Instant::now();
            client
                .get_mut()
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            let response = read_response(client, false);
            assert_eq!(
                response.map(|r| r.status()),
                Some(200),
                "round {round}, client {n}"
            );
            slowest = slowest.max(asked.elapsed());
        }
    }
    // Served only once a linger had ended, a request would wait most of LINGER.
    assert!(
        slowest < LINGER / 2,
        "slowest answer after {slowest:?} (LINGER {LINGER:?})"
    );
}
