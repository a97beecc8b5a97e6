//! The server as its users see it: the real binary, over loopback.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpListener;

use common::{DEADLINE, Server, hellod, read_response, wait_for};

#[test]
fn greets_every_path_and_method() {
    let server = Server::start(&[]);
    for (method, path) in [
        ("GET", "/"),
        ("POST", "/a/b?c=d"),
        ("DELETE", "/x"),
        ("BREW", "/pot"),
    ] {
        let mut stream = server.connect();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let response = read_response(&mut BufReader::new(stream), false).unwrap();
        assert_eq!(response.status_line, "HTTP/1.1 200 OK", "{method} {path}");
        assert_eq!(response.text(), "Hello, World!");
        assert_eq!(response.header("Content-Length"), Some("13"));
        assert_eq!(
            response.header("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        let date = response.header("Date").expect("a Date header");
        assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
    }
}

#[test]
fn head_gets_the_headers_and_no_body() {
    let server = Server::start(&[]);
    let mut stream = server.connect();
    // The GET after the HEAD proves no body bytes were sent for the HEAD.
    write!(
        stream,
        "HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let head = read_response(&mut reader, true).unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.header("Content-Length"), Some("13"));
    let get = read_response(&mut reader, false).unwrap();
    assert_eq!(get.status_line, "HTTP/1.1 200 OK");
    assert_eq!(get.text(), "Hello, World!");
}

#[test]
fn keep_alive_and_a_pipeline_of_16_answered_in_order() {
    let server = Server::start(&["--access-log"]);
    let mut stream = server.connect();
    let mut pipeline = String::new();
    for i in 0..16 {
        // Alternating HEAD and GET: answers out of order would not parse.
        let method = if i % 2 == 0 { "HEAD" } else { "GET" };
        pipeline.push_str(&format!("{method} /{i} HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    stream.write_all(pipeline.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for i in 0..16 {
        let response = read_response(&mut reader, i % 2 == 0).expect("answer {i}");
        assert_eq!(response.status(), 200);
        if i % 2 == 1 {
            assert_eq!(response.text(), "Hello, World!");
        }
    }
    // Still open: one more request on the same connection.
    stream
        .write_all(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut reader, false).unwrap().status(), 200);
    // Two workers log in whichever order they finish; every request is logged once.
    let mut logged: Vec<String> = (0..17)
        .map(|_| {
            let line = server.next_line();
            let request = line.split('"').nth(1).unwrap_or_default().to_owned();
            request.split(' ').nth(1).unwrap_or_default().to_owned()
        })
        .collect();
    logged.sort();
    let mut expected: Vec<String> = (0..16).map(|i| format!("/{i}")).collect();
    expected.push("/again".into());
    expected.sort();
    assert_eq!(logged, expected);
}

#[test]
fn http_1_0_is_answered_and_closed() {
    let server = Server::start(&[]);
    let mut stream = server.connect();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader, false).unwrap();
    assert_eq!(response.status_line, "HTTP/1.0 200 OK");
    assert_eq!(response.text(), "Hello, World!");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "the connection closes after an HTTP/1.0 answer"
    );
}

#[test]
fn the_answer_says_when_the_connection_closes_or_stays_open() {
    let server = Server::start(&[]);

    let mut stream = server.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader, false).unwrap();
    assert_eq!(response.header("Connection"), Some("close"));
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());

    // HTTP/1.0 clients such as ApacheBench -k reuse a connection only when told they may.
    let mut stream = server.connect();
    let keep_alive = b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    stream.write_all(keep_alive).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let response = read_response(&mut reader, false).unwrap();
    assert_eq!(response.header("Connection"), Some("keep-alive"));
    stream.write_all(keep_alive).unwrap();
    assert_eq!(read_response(&mut reader, false).unwrap().status(), 200);

    // A plain HTTP/1.1 request stays open and needs no Connection header.
    let mut stream = server.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let response = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(response.header("Connection"), None);
}

#[test]
fn readiness_line_names_version_address_workers_and_memory() {
    let server = Server::start(&["--workers", "3"]);
    let line = &server.ready_line;
    let expected = format!(
        "hellod {} listening on http://{} (3 workers, ",
        env!("CARGO_PKG_VERSION"),
        server.addr
    );
    assert!(line.starts_with(&expected), "{line}");
    assert!(line.ends_with(" KiB resident)"), "{line}");
    assert_ne!(server.addr.port(), 0, "the bound port is printed, not 0");
}

#[test]
fn text_and_status_from_flags_and_environment() {
    let server = Server::start(&["--text", "hi there", "--status", "503"]);
    let response = server.get("/");
    assert_eq!(response.status_line, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(response.text(), "hi there");

    let mut command = hellod();
    command
        .args(["--listen", "127.0.0.1:0"])
        .env("HELLOD_TEXT", "from env")
        .env("HELLOD_STATUS", "201");
    let server = Server::spawn(command);
    let response = server.get("/");
    assert_eq!(response.status(), 201);
    assert_eq!(response.text(), "from env");

    let mut command = hellod();
    command
        .args(["--listen", "127.0.0.1:0", "--text", "flag"])
        .env("HELLOD_TEXT", "env");
    assert_eq!(Server::spawn(command).get("/").text(), "flag");
}

#[test]
fn statuses_that_forbid_a_body_are_sent_without_one() {
    let server = Server::start(&["--status", "304"]);
    let mut stream = server.connect();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..2 {
        let response = read_response(&mut reader, true).unwrap();
        assert_eq!(response.status(), 304);
    }
    let server = Server::start(&["--status", "205"]);
    let response = server.get("/");
    assert_eq!(response.status(), 205);
    assert_eq!(response.header("Content-Length"), Some("0"));
}

#[test]
fn listen_address_precedence() {
    // HELLOD_LISTEN beats PORT.
    let mut command = hellod();
    command.env("HELLOD_LISTEN", "127.0.0.1:0").env("PORT", "1");
    let server = Server::spawn(command);
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    assert_eq!(server.get("/").status(), 200);

    // The flag beats HELLOD_LISTEN.
    let mut command = hellod();
    command
        .args(["--listen", "[::1]:0"])
        .env("HELLOD_LISTEN", "127.0.0.1:1");
    let server = Server::spawn(command);
    assert_eq!(server.addr.ip().to_string(), "::1");
    assert_eq!(server.get("/").status(), 200);

    // PORT alone sets the port of the dual-stack default, reachable over IPv4 and IPv6.
    let free_port = TcpListener::bind("[::]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = hellod();
    command.env("PORT", free_port.to_string());
    let server = Server::spawn(command);
    assert_eq!(server.addr.to_string(), format!("[::]:{free_port}"));
    for loopback in ["127.0.0.1", "[::1]"] {
        let mut stream = std::net::TcpStream::connect(format!("{loopback}:{free_port}")).unwrap();
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let response = read_response(&mut BufReader::new(stream), false).unwrap();
        assert_eq!(response.status(), 200, "over {loopback}");
    }
}

#[test]
fn workers_from_flag_and_environment() {
    let mut command = hellod();
    command
        .args(["--listen", "127.0.0.1:0"])
        .env("HELLOD_WORKERS", "5");
    assert!(Server::spawn(command).ready_line.contains("(5 workers"));
    let mut command = hellod();
    command
        .args(["--listen", "127.0.0.1:0", "--workers", "1"])
        .env("HELLOD_WORKERS", "5");
    assert!(Server::spawn(command).ready_line.contains("(1 worker, "));
}

#[test]
fn bad_flags_and_values_exit_2_with_one_line_naming_them() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--workers", "0"], &[], "'0' for --workers"),
        (&["--workers", "many"], &[], "'many' for --workers"),
        (&[], &[("HELLOD_WORKERS", "-3")], "'-3' for HELLOD_WORKERS"),
        (&["--listen", "nowhere"], &[], "'nowhere' for --listen"),
        (
            &[],
            &[("HELLOD_LISTEN", "1.2.3.4")],
            "'1.2.3.4' for HELLOD_LISTEN",
        ),
        (&[], &[("PORT", "http")], "'http' for PORT"),
        (&["--status", "99"], &[], "'99' for --status"),
        (&["--status", "204"], &[], "'204' for --status"),
        (&[], &[("HELLOD_STATUS", "600")], "'600' for HELLOD_STATUS"),
        (&["--grace", "soon"], &[], "'soon' for --grace"),
        (&[], &[("HELLOD_GRACE", "-1")], "'-1' for HELLOD_GRACE"),
        (&["--read-timeout", "0"], &[], "'0' for --read-timeout"),
        (
            &[],
            &[("HELLOD_READ_TIMEOUT", "1e9")],
            "'1e9' for HELLOD_READ_TIMEOUT",
        ),
        (
            &[],
            &[("HELLOD_ACCESS_LOG", "perhaps")],
            "'perhaps' for HELLOD_ACCESS_LOG",
        ),
        (&["--frobnicate"], &[], "--frobnicate"),
        (&["--text"], &[], "--text"),
        (&["extra"], &[], "extra"),
    ];
    for (args, vars, expected) in cases {
        let output = hellod()
            .args(*args)
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} {vars:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?} {vars:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn address_in_use_exits_1_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = hellod().args(["--listen", &addr]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("in use"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn help_and_version() {
    let output = hellod().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "--listen",
        "HELLOD_LISTEN",
        "PORT",
        "--workers",
        "--text",
        "--status",
        "--access-log",
        "--grace",
        "--read-timeout",
        "healthcheck",
        "[default: [::]:8080",
        "Exit codes",
    ] {
        assert!(help.contains(needle), "help lacks {needle}");
    }
    let output = hellod().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        format!("hellod {}", env!("CARGO_PKG_VERSION"))
    );
}

/// The Linux build has the guard, so it warns of nothing: `--version` is the version alone, and a
/// server writes nothing on stderr from start to stop. (The Windows build's warning is checked
/// under Wine by tests/windows.sh.)
#[cfg(target_os = "linux")]
#[test]
fn linux_build_is_guarded_and_warns_of_nothing() {
    let output = hellod().arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("hellod {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(String::from_utf8(output.stderr).unwrap(), "");

    let mut server = Server::start(&[]);
    assert!(
        server.ready_line.contains(" served at once, "),
        "the readiness line states the limits: {}",
        server.ready_line
    );
    server.signal("TERM");
    assert_eq!(server.wait_exit(DEADLINE).code(), Some(0));
    // The process is gone, so its stderr is closed: this reads every line it wrote.
    let stderr: Vec<String> = server.stderr.iter().collect();
    assert!(stderr.is_empty(), "stderr: {stderr:?}");
}

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
