//! The corpus (`cases`), each request against the binary, and a good request after each.

use super::*;

fn check(case: &Case, received: &[u8], ending: Ending) -> Result<(), String> {
    match case.expect {
        Expect::Nothing => Ok(()),
        Expect::ClosedSilently => {
            // Closed with unread bytes still queued, the kernel resets instead of closing.
            if received.is_empty() && ending != Ending::StillOpen {
                Ok(())
            } else {
                Err(format!(
                    "expected a silent close, got {ending:?} after {received:?}"
                ))
            }
        }
        Expect::Answers(statuses) => {
            let responses = parse_responses(received, false)?;
            let got: Vec<u16> = responses.iter().map(|r| r.status).collect();
            if got != statuses {
                return Err(format!("expected {statuses:?}, got {got:?}"));
            }
            if let Some(r) = responses
                .iter()
                .find(|r| r.status == 200 && r.body != GREETING)
            {
                return Err(format!("a 200 without the greeting: {r:?}"));
            }
            if ending == Ending::StillOpen {
                return Err("answered but not closed".into());
            }
            Ok(())
        }
    }
}

#[test]
fn hostile_corpus_each_followed_by_a_good_request() {
    // A short read timeout closes what stays silent quickly.
    let mut server = Server::start(&["--read-timeout", "0.3", "--workers", "2"]);
    let mut failures = Vec::new();
    for case in cases::corpus() {
        let started = Instant::now();
        let (received, ending) = exchange(&server, &case.bytes, case.after, DEADLINE);
        let outcome = check(&case, &received, ending);
        let first_line = received.split(|&b| b == b'\r').next().unwrap_or_default();
        println!(
            "{:<48} {:>6.0?} {:?} {:?} {}",
            case.name,
            started.elapsed(),
            case.after,
            ending,
            String::from_utf8_lossy(first_line)
        );
        if let Err(error) = outcome {
            failures.push(format!("{}: {error}", case.name));
        }
        assert_alive(&mut server);
        let good = server.get("/");
        assert_eq!(good.status(), 200, "good request after {}", case.name);
        assert_eq!(good.body, GREETING, "good request after {}", case.name);
    }
    let stderr: Vec<String> = server.stderr.try_iter().collect();
    println!("stderr: {stderr:#?}");
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A client that sends a whole request and resets at once makes tiny_http's `peer_addr` of the
/// connection fail (ENOTCONN), which tiny_http unwraps on the request: a panic that ends its pool
/// thread, and with it the wake-up meant for the next connection queued in the pool, which then
/// waits unserved. 300 such clients, then a GET: answered, and nothing panicked.
#[test]
fn requests_reset_as_soon_as_sent_panic_nothing() {
    let mut server = Server::start(&["--workers", "2"]);
    for _ in 0..300 {
        let request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
        exchange(&server, request, After::Reset, DEADLINE);
    }
    greet(&server);
    assert_alive(&mut server);
    let stderr: Vec<String> = server.stderr.try_iter().collect();
    assert!(
        stderr.iter().all(|line| !line.contains("panic")),
        "{stderr:#?}"
    );
}
