//! Flags and environment: what they set, what a bad one gets, what hellod says at start.

use super::*;

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
