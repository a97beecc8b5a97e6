//! What the greeting server answers, and what it says about the connection.

use super::*;

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
