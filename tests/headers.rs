//! Custom response headers (`--header`, `HELLOD_HEADERS`), against the real binary over loopback.

mod common;

use std::io::{BufReader, Read, Write};

use common::{Response, Server, hellod, read_response};

/// Every value of header `name` in `response`, in order.
fn values<'a>(response: &'a Response, name: &str) -> Vec<&'a str> {
    response
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A HEAD then a GET on one keep-alive connection: the answers to both.
fn head_and_get(server: &Server) -> (Response, Response) {
    let mut stream = server.connect();
    stream
        .write_all(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let head = read_response(&mut reader, true).expect("an answer to HEAD");
    let get = read_response(&mut reader, false).expect("an answer to GET");
    (head, get)
}

/// What hellod's errors show of a value: ASCII control characters as `\xNN`.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            c if c.is_ascii_control() => format!("\\x{:02x}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

#[test]
fn without_headers_hellod_sends_its_own() {
    let server = Server::start(&[]);
    let response = server.get("/");
    assert_eq!(values(&response, "Server"), ["hellod"]);
    assert_eq!(
        values(&response, "Content-Type"),
        ["text/plain; charset=utf-8"]
    );
}

#[test]
fn json_content_type_replaces_the_default_and_other_headers_are_added_on_get_and_head() {
    let server = Server::start(&[
        "--header",
        "Content-Type: application/json",
        "--text",
        r#"{"hello":"world"}"#,
        "--header",
        "Cache-Control: no-store",
        "--header",
        "X-Tab:\ta\tb ",
        "--header",
        "Vary: Origin",
        "--header",
        "vary: Accept",
    ]);
    let (head, get) = head_and_get(&server);
    for (method, response) in [("HEAD", &head), ("GET", &get)] {
        assert_eq!(response.status(), 200, "{method}");
        assert_eq!(
            values(response, "Content-Type"),
            ["application/json"],
            "{method}"
        );
        assert_eq!(values(response, "Cache-Control"), ["no-store"], "{method}");
        assert_eq!(values(response, "X-Tab"), ["a\tb"], "{method}");
        assert_eq!(values(response, "Vary"), ["Origin", "Accept"], "{method}");
        assert_eq!(values(response, "Server"), ["hellod"], "{method}");
        assert_eq!(values(response, "Content-Length"), ["17"], "{method}");
        assert_eq!(values(response, "Date").len(), 1, "{method}");
    }
    assert_eq!(get.text(), r#"{"hello":"world"}"#);
}

#[test]
fn a_custom_server_header_still_says_when_the_connection_closes_or_stays_open() {
    let server = Server::start(&["--header", "Server: edge/1.2 (replica a)"]);

    let (head, get) = head_and_get(&server);
    for response in [&head, &get] {
        assert_eq!(values(response, "Server"), ["edge/1.2 (replica a)"]);
        assert_eq!(values(response, "Connection"), Vec::<&str>::new());
    }

    let mut stream = server.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader, false).unwrap();
    assert_eq!(values(&response, "Server"), ["edge/1.2 (replica a)"]);
    assert_eq!(values(&response, "Connection"), ["close"]);
    assert_eq!(response.text(), "Hello, World!");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "closed after the answer");

    let mut stream = server.connect();
    let keep_alive = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    stream.write_all(keep_alive).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let response = read_response(&mut reader, false).unwrap();
    assert_eq!(values(&response, "Server"), ["edge/1.2 (replica a)"]);
    assert_eq!(values(&response, "Connection"), ["keep-alive"]);
    stream.write_all(keep_alive).unwrap();
    assert_eq!(read_response(&mut reader, false).unwrap().status(), 200);
}

/// hellod's own answers (a head too large, a bad request line, an HTTP version tiny_http would
/// mishandle, past the connection limit) name the server as the greeting does. Linux only: the
/// socket hooks that write them are.
#[cfg(target_os = "linux")]
#[test]
fn hellods_own_refusals_name_the_configured_server() {
    const SERVER: &str = "edge/1.2 (replica a)";
    let server = Server::start(&[
        "--header",
        &format!("Server: {SERVER}"),
        "--max-connections",
        "2",
    ]);
    let too_large = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let refused: [(&[u8], u16); 3] = [
        (too_large.as_bytes(), 431),
        (b"GE\x01T / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    ];
    for (request, status) in refused {
        let mut stream = server.connect();
        stream.write_all(request).unwrap();
        let response = read_response(&mut BufReader::new(stream), false).expect("an answer");
        assert_eq!(response.status(), status);
        assert_eq!(values(&response, "Server"), [SERVER], "{status}");
    }

    // Two connections held open, which hellod accepts (and counts) in the order they came; the
    // third is answered at once, before it sends anything.
    let held = [server.connect(), server.connect()];
    let response = read_response(&mut BufReader::new(server.connect()), false).expect("an answer");
    assert_eq!(response.status(), 503);
    assert_eq!(values(&response, "Server"), [SERVER], "503");
    drop(held);
}

#[test]
fn headers_from_the_environment_one_a_line_and_the_flag_wins() {
    // What a Kubernetes `value: |` block gives: one header a line, a newline at the end.
    let mut command = hellod();
    command.args(["--listen", "127.0.0.1:0"]).env(
        "HELLOD_HEADERS",
        "X-Pod: web-7d9f-abcde\nContent-Type: text/html\n\nCache-Control: max-age=60\n",
    );
    let server = Server::spawn(command);
    let (head, get) = head_and_get(&server);
    for response in [&head, &get] {
        assert_eq!(values(response, "X-Pod"), ["web-7d9f-abcde"]);
        assert_eq!(values(response, "Content-Type"), ["text/html"]);
        assert_eq!(values(response, "Cache-Control"), ["max-age=60"]);
    }

    let mut command = hellod();
    command
        .args(["--listen", "127.0.0.1:0", "--header", "X-From: flag"])
        .env("HELLOD_HEADERS", "X-From: env\nX-Env-Only: 1");
    let response = Server::spawn(command).get("/");
    assert_eq!(values(&response, "X-From"), ["flag"]);
    assert_eq!(values(&response, "X-Env-Only"), Vec::<&str>::new());
}

#[test]
fn refused_headers_exit_2_with_one_line_naming_them() {
    let flag_cases = [
        // Framing.
        ("Content-Length: 5", "Content-Length cannot be set"),
        (
            "transfer-encoding: chunked",
            "Transfer-Encoding cannot be set",
        ),
        // The connection: hop-by-hop headers.
        ("Connection: close", "Connection cannot be set"),
        ("Keep-Alive: timeout=5", "Keep-Alive cannot be set"),
        (
            "Proxy-Connection: keep-alive",
            "Proxy-Connection cannot be set",
        ),
        ("TE: trailers", "TE cannot be set"),
        ("Trailer: X-A", "Trailer cannot be set"),
        ("Upgrade: websocket", "Upgrade cannot be set"),
        // Set by hellod on every response.
        ("Date: Thu, 01 Jan 1970 00:00:00 GMT", "Date cannot be set"),
        // Malformed names.
        ("X Replica: a", "'X Replica' is not a header name"),
        ("X-Replica : a", "'X-Replica ' is not a header name"),
        (": a", "'' is not a header name"),
        ("X-[a]: b", "'X-[a]' is not a header name"),
        ("no colon", "expected 'Name: value'"),
        // Control bytes in the value: a header or a body of the value's choosing.
        ("X-A: a\r\nSet-Cookie: b", "control character (\\x0d)"),
        ("X-A: a\nb", "control character (\\x0a)"),
        ("X-A: \x1b[2J", "control character (\\x1b)"),
        ("X-A: a\x7f", "control character (\\x7f)"),
        ("X-A: né", "not ASCII"),
    ];
    // Arguments, environment, then what stderr must name: the header and the flag or variable,
    // and why.
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, String, &'a str);
    let mut cases: Vec<Case> = flag_cases
        .iter()
        .map(|(header, why)| {
            let named = format!("'{}' for --header: ", escape_controls(header));
            (vec!["--header", *header], vec![], named, *why)
        })
        .collect();
    cases.push((
        vec!["--header", "Server: a", "--header", "server: b"],
        vec![],
        "'server: b' for --header: ".into(),
        "Server is given twice",
    ));
    cases.push((
        vec![],
        vec![("HELLOD_HEADERS", "X-Ok: 1\nConnection: close\n")],
        "'Connection: close' for HELLOD_HEADERS: ".into(),
        "Connection cannot be set",
    ));
    cases.push((
        vec![],
        vec![("HELLOD_HEADERS", "X-A: 1\nContent-Type: a\nContent-Type: b")],
        "'Content-Type: b' for HELLOD_HEADERS: ".into(),
        "Content-Type is given twice",
    ));
    // Were a header let through, hellod would fail on this address (exit 1) instead of serving.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for (args, vars, named, why) in &cases {
        let output = hellod()
            .args(["--listen", &taken])
            .args(args)
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} {vars:?}: {stderr}");
        assert!(
            stderr.starts_with("hellod: invalid value ")
                && stderr.contains(named.as_str())
                && stderr.contains(why),
            "{args:?} {vars:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn help_lists_the_flag_and_its_variable() {
    let output = hellod().arg("--help").output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("--header 'NAME: VALUE'"), "{help}");
    assert!(help.contains("HELLOD_HEADERS"), "{help}");
}

/// The machine's host name as the kernel gives it, read here as hellod must read it.
#[cfg(unix)]
fn host_name() -> String {
    // SAFETY: utsname is arrays of C chars, for which all zeroes are valid.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes only into the one struct passed, which outlives the call.
    assert_eq!(unsafe { libc::uname(&mut names) }, 0);
    // The kernel ends the name with a NUL within the field.
    let node: Vec<u8> = (names.nodename.iter().map(|&c| c as u8))
        .take_while(|&byte| byte != 0)
        .collect();
    String::from_utf8(node).expect("a UTF-8 host name")
}

// Unix: on Windows hellod reads COMPUTERNAME, which `hellod()`'s clean environment drops.
#[cfg(unix)]
#[test]
fn hostname_becomes_the_machines_host_name_in_the_text_and_header_values() {
    let host = host_name();
    assert!(!host.is_empty() && !host.contains('{'), "{host:?}");
    let server = Server::start(&[
        "--text",
        "served by {hostname}, not {{hostname}}",
        "--header",
        "X-Served-By: {hostname}",
        "--header",
        "X-Template: {{hostname}}",
    ]);
    let (head, get) = head_and_get(&server);
    for response in [&head, &get] {
        assert_eq!(values(response, "X-Served-By"), [host.as_str()]);
        assert_eq!(values(response, "X-Template"), ["{hostname}"]);
    }
    assert_eq!(get.text(), format!("served by {host}, not {{hostname}}"));

    let mut command = hellod();
    command
        .args(["--listen", "127.0.0.1:0"])
        .env("HELLOD_TEXT", "{hostname}")
        .env("HELLOD_HEADERS", "X-Replica: {hostname}\n");
    let response = Server::spawn(command).get("/");
    assert_eq!(values(&response, "X-Replica"), [host.as_str()]);
    assert_eq!(response.text(), host);
}
