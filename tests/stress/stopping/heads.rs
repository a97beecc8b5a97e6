//! Request heads that begin after the signal: still timed, and bounded by the grace.

use super::*;

/// How a trickled head ended.
struct Trickled {
    first_byte: Instant,
    sent: usize,
    received: Vec<u8>,
    /// When the server ended the connection, and how; None if it was still open at the limit.
    ended: Option<(Instant, Ending)>,
}

/// Sends a head that never ends in time (more than a hundred bytes, a byte every 100 ms) from
/// now on, reading what comes back, until the server ends the connection or `limit` has passed.
fn trickle(mut stream: TcpStream, limit: Duration) -> Trickled {
    let head = [
        &b"GET / HTTP/1.1\r\nHost: t\r\nX-Trickle: "[..],
        &[b'a'; 100][..],
    ]
    .concat();
    let pace = Duration::from_millis(100);
    stream.set_nodelay(true).unwrap();
    let first_byte = Instant::now();
    let mut trickled = Trickled {
        first_byte,
        sent: 0,
        received: Vec::new(),
        ended: None,
    };
    let mut buffer = [0u8; 1024];
    while first_byte.elapsed() < limit {
        if trickled.sent < head.len() {
            if stream.write_all(&head[trickled.sent..][..1]).is_err() {
                trickled.ended = Some((Instant::now(), Ending::Reset));
                return trickled;
            }
            trickled.sent += 1;
        }
        // Reads until the next byte is due.
        let next_byte = first_byte + pace * trickled.sent as u32;
        loop {
            let left = next_byte.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            stream.set_read_timeout(Some(left)).unwrap();
            let ending = match stream.read(&mut buffer) {
                Ok(0) => Ending::Closed,
                Ok(n) => {
                    trickled.received.extend_from_slice(&buffer[..n]);
                    continue;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break;
                }
                Err(_) => Ending::Reset,
            };
            trickled.ended = Some((Instant::now(), ending));
            return trickled;
        }
    }
    trickled
}

/// A head started after the signal, on a connection open before it, with `--read-timeout 2`
/// and `--grace 5`: the head is on its way when the stop comes, so hellod reads it until its
/// deadline (2 s from its first byte, within the grace) and answers that deadline's 408, then
/// closes; a silent connection beside it is closed once quiet. The stop then ends, exit 0.
#[test]
#[ignore]
fn a_head_started_after_the_stop_gets_its_408_at_its_deadline() {
    let grace = Duration::from_secs(5);
    let read_timeout = Duration::from_secs(2);
    let quiet = quiet_under(grace);
    let mut server = Server::start(&["--workers", "2", "--grace", "5", "--read-timeout", "2"]);
    let trickler = server.connect();
    let mut silent = vec![server.connect()];
    let signalled = stop(&server);
    let trickler = thread::spawn(move || trickle(trickler, grace + DEADLINE));
    let silent = thread::spawn(move || watch_closes(&mut silent, signalled, grace + DEADLINE));
    let status = server.wait_exit(grace + DEADLINE);
    let took = signalled.elapsed();
    let trickled = trickler.join().unwrap();
    let silent = silent.join().unwrap().pop().flatten();

    let ended = trickled
        .ended
        .map(|(at, how)| (at - trickled.first_byte, how));
    println!(
        "a head trickled after the stop (--read-timeout 2, --grace 5): {} bytes sent, ended \
         {ended:?} after its first byte with {}; a silent one closed {:?} after the signal; \
         exit {status} after {took:?}",
        trickled.sent,
        shown(&trickled.received).replace("\r\n", " | "),
        silent.as_ref().map(|c| (c.after, c.ending)),
    );
    let responses = parse_responses(&trickled.received, false).expect("whole responses");
    assert!(
        matches!(&responses[..], [one] if one.status == 408),
        "the trickler's answer: {responses:?}"
    );
    // How it ends after the 408 is left open: a byte of the head that comes as hellod closes
    // turns its FIN into a reset.
    let (after, _) = ended.expect("the trickler's connection ends");
    assert!(
        after >= read_timeout && after < read_timeout + GRACE_SLACK,
        "the trickler ended {after:?} after its first byte (its deadline: {read_timeout:?})"
    );
    let silent = silent.expect("the silent connection is closed");
    assert!(
        silent.ending == Ending::Closed && silent.received.is_empty(),
        "the silent one: {:?} after {}",
        silent.ending,
        shown(&silent.received)
    );
    assert!(
        silent.after >= quiet,
        "the silent one closed after {:?}",
        silent.after
    );
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(took < grace, "the stop took {took:?}");
}

/// The same head with `--read-timeout 30`, past the grace: hellod reads it for as long as the
/// grace lasts, then closes it (a 408 or nothing before the close) and exits 0 when the grace
/// ends, not later.
#[test]
#[ignore]
fn a_head_started_after_the_stop_is_cut_when_the_grace_ends() {
    let grace = Duration::from_secs(5);
    let mut server = Server::start(&["--workers", "2", "--grace", "5", "--read-timeout", "30"]);
    let trickler = server.connect();
    let signalled = stop(&server);
    let trickler = thread::spawn(move || trickle(trickler, grace + DEADLINE));
    let status = server.wait_exit(grace + DEADLINE);
    let took = signalled.elapsed();
    let trickled = trickler.join().unwrap();

    let ended = trickled
        .ended
        .map(|(at, how)| (at.saturating_duration_since(signalled), how));
    println!(
        "a head trickled after the stop (--read-timeout 30, --grace 5): {} bytes sent, ended \
         {ended:?} after the signal with {:?}; exit {status} after {took:?}",
        trickled.sent,
        shown(&trickled.received)
    );
    let responses = parse_responses(&trickled.received, false).expect("whole responses");
    assert!(
        responses.iter().all(|r| r.status == 408) && responses.len() <= 1,
        "the trickler's answers: {responses:?}"
    );
    let (after, _) = ended.expect("the trickler's connection ends");
    assert!(
        after >= grace && after < grace + GRACE_SLACK,
        "the trickler ended {after:?} after the signal (grace {grace:?})"
    );
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        took >= grace && took < grace + GRACE_SLACK,
        "the stop took {took:?}"
    );
}
