//! Generated requests: a grammar of request lines, headers and bodies with bad choices mixed
//! in, cut short at random, and ended by the client in each of its ways.

use super::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

#[derive(Debug, Clone)]
struct Generated {
    bytes: Vec<u8>,
    after: After,
    head: bool,
}

fn text(choices: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(choices).prop_map(|s| s.as_bytes().to_vec())
}

fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => text(&["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "BREW"]),
        1 => "[A-Za-z-]{0,12}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..12),
    ]
}

fn target() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => "/[a-zA-Z0-9/._~%?=&;:@!$'()*+,-]{0,40}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| [&b"/"[..], &b].concat()),
        1 => (1usize..100_000).prop_map(|n| format!("/{}", "a".repeat(n)).into_bytes()),
        1 => text(&["*", "http://x/y", "", "//", "/%00"]),
    ]
}

fn version() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        16 => text(&["HTTP/1.1"]),
        4 => text(&["HTTP/1.0"]),
        2 => text(&["HTTP/0.9", "HTTP/9.9", "HTTP/1.2", "http/1.1", "HTTP/1.1 x", "", "HTTP/", "HTTP/1.1\0"]),
        1 => text(&["HTTP/2.0", "HTTP/3.0"]),
        1 => prop::collection::vec(any::<u8>(), 0..10),
    ]
}

fn separator() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![20 => text(&[" "]), 1 => text(&["", "  ", "\t", "\r", "\n"])]
}

fn line_end() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![20 => text(&["\r\n"]), 1 => text(&["\n", "\r", "\r\r\n", "\n\r"])]
}

fn length() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0usize..3000).prop_map(|n| n.to_string()),
        1 => prop::sample::select(&[
            "1000000000000", "18446744073709551615", "18446744073709551616",
            "9223372036854775808", "-1", "+5", "5, 5", "0x10", "", " 7 ",
        ][..]).prop_map(str::to_owned),
    ]
}

fn header() -> impl Strategy<Value = Vec<u8>> {
    let named = |name: &'static str, value: BoxedStrategy<String>| {
        value.prop_map(move |v| format!("{name}: {v}").into_bytes())
    };
    let pick = |values: &'static [&'static str]| {
        prop::sample::select(values).prop_map(str::to_owned).boxed()
    };
    prop_oneof![
        3 => named("Host", pick(&["t", "", "a b", "x:1"])),
        3 => named("Content-Length", length().boxed()),
        2 => named("Transfer-Encoding", pick(&["chunked", "identity", "gzip, chunked", "chunked, gzip", " chunked", "xchunked", ""])),
        2 => named("Connection", pick(&["close", "keep-alive", "Upgrade", "upgrade, close", ""])),
        1 => named("Expect", pick(&["100-continue", "fish", ""])),
        1 => named("Upgrade", pick(&["h2c", "websocket"])),
        2 => ("[!-9;-~]{1,12}", "[ -~]{0,30}").prop_map(|(n, v)| format!("{n}: {v}").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..30),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => Just(Vec::new()),
        2 => prop::collection::vec(any::<u8>(), 0..3000),
        2 => prop::collection::vec(prop::collection::vec(any::<u8>(), 1..600), 0..4)
            .prop_map(|chunks| {
                let mut body = Vec::new();
                for chunk in chunks {
                    body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    body.extend_from_slice(&chunk);
                    body.extend_from_slice(b"\r\n");
                }
                body.extend_from_slice(b"0\r\n\r\n");
                body
            }),
        1 => text(&["zz\r\n", "5\r\nabc", "ffffffffffffffff\r\nabc", "0\r\n", "5;ext\r\nhello\r\n0\r\n\r\n"]),
    ]
}

fn after() -> impl Strategy<Value = After> {
    prop_oneof![
        12 => Just(After::HalfClose),
        2 => Just(After::KeepOpen),
        1 => Just(After::HangUp),
        1 => Just(After::Reset),
    ]
}

prop_compose! {
    fn request()(
        method in method(),
        sep1 in separator(),
        target in target(),
        sep2 in separator(),
        version in version(),
        eol in line_end(),
        headers in prop::collection::vec(header(), 0..10),
        many in prop_oneof![8 => Just(0usize), 1 => 1usize..3000],
        body in body(),
        cut in proptest::option::weighted(0.15, any::<prop::sample::Index>()),
        after in after(),
    ) -> Generated {
        let mut bytes = [&method[..], &sep1, &target, &sep2, &version, &eol].concat();
        for header in &headers {
            bytes.extend_from_slice(header);
            bytes.extend_from_slice(&eol);
        }
        for i in 0..many {
            bytes.extend_from_slice(format!("X-{i}: v").as_bytes());
            bytes.extend_from_slice(&eol);
        }
        bytes.extend_from_slice(&eol);
        bytes.extend_from_slice(&body);
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let head = answered_as_head(&bytes);
        Generated { bytes, after, head }
    }
}

/// Whether hellod answers these bytes as a HEAD request (no body in its answers): their method
/// is HEAD as far as it was sent, even cut right after it, as hellod reads a request line that
/// it refuses partway.
fn answered_as_head(bytes: &[u8]) -> bool {
    let token = |byte: u8| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte);
    bytes
        .strip_prefix(b"HEAD")
        .is_some_and(|rest| rest.first().is_none_or(|&next| !token(next)))
}

fn check_generated(server: &mut Server, request: &Generated) -> Result<(), TestCaseError> {
    // The server's read timeout is 0.3 s: whatever it does not answer, it closes within a
    // few of those (a body read, its discard, the next request line).
    let limit = Duration::from_secs(5);
    let (received, ending) = exchange(server, &request.bytes, request.after, limit);
    match parse_responses(&received, request.head) {
        Ok(responses) => {
            for response in &responses {
                let allowed = matches!(response.status, 100 | 200 | 400..=599);
                prop_assert!(allowed, "status {} in {responses:?}", response.status);
                if response.status == 200 && !(request.head && response.body.is_empty()) {
                    prop_assert_eq!(&response.body[..], GREETING);
                }
            }
        }
        // A reset may cut the last answer short; everything before it was parsed.
        Err(error) if ending == Ending::Reset => {
            let _ = error;
        }
        Err(error) => return Err(TestCaseError::fail(format!("malformed answer: {error}"))),
    }
    prop_assert!(
        ending != Ending::StillOpen,
        "neither closed nor answered within {limit:?}: {:?}",
        String::from_utf8_lossy(&received)
    );
    if let Some(status) = server.child.try_wait().unwrap() {
        return Err(TestCaseError::fail(format!("hellod exited: {status}")));
    }
    let good = server.try_get("/");
    let good = good.ok_or_else(|| TestCaseError::fail("the GET after it went unanswered"))?;
    prop_assert_eq!(good.status(), 200);
    prop_assert_eq!(&good.body[..], GREETING);
    Ok(())
}

#[test]
fn generated_requests_never_kill_or_silence_it() {
    let server = Mutex::new(Server::start(&["--read-timeout", "0.3", "--workers", "2"]));
    let first_failure = Mutex::new(None::<String>);
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    });
    let result = runner.run(&request(), |request| {
        let mut server = server.lock().unwrap();
        let outcome = check_generated(&mut server, &request);
        if let Err(error) = &outcome {
            first_failure.lock().unwrap().get_or_insert_with(|| {
                format!("{error}\nfor {:?}", String::from_utf8_lossy(&request.bytes))
            });
        }
        outcome
    });
    let mut server = server.into_inner().unwrap();
    let stderr: Vec<String> = server.stderr.try_iter().collect();
    if let Err(error) = result {
        let _ = server.child.kill();
        panic!(
            "{error}\nfirst failure before shrinking: {}\nstderr: {stderr:#?}",
            first_failure.lock().unwrap().as_deref().unwrap_or("-")
        );
    }
    println!("stderr after the generated requests: {stderr:#?}");
}
