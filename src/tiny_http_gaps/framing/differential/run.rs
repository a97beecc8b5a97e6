//! hellod's framing fed a stream a byte at a time (noting where each request's parts end, and
//! which bytes it takes out), and in reads cut at given points.

use super::LIMITS;
use crate::tiny_http_gaps::framing::{Framing, Scan, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Idle,
    Head,
    Body,
    Unframed,
    Stopped,
}

fn part(framing: &Framing) -> Part {
    match framing.state {
        State::Idle => Part::Idle,
        State::Head(_) => Part::Head,
        State::Body(_) | State::Chunked(_) => Part::Body,
        State::Unframed => Part::Unframed,
        State::Stopped => Part::Stopped,
    }
}

/// A request as hellod's framing followed it.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub(super) start: usize,
    pub(super) head_end: Option<usize>,
    pub(super) body_end: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The stream ended with the framing still reading it.
    Open,
    Unframed,
    /// Stopped before the byte at `at`, with hellod's answer.
    Stopped {
        at: usize,
        status: Option<u16>,
    },
}

#[derive(Debug)]
pub(super) struct Run {
    /// What tiny_http is handed.
    pub(super) handed: Vec<u8>,
    /// Where the bytes taken out were, in the stream.
    pub(super) dropped: Vec<usize>,
    pub(super) found: Vec<Found>,
    pub(super) end: End,
    /// The status of the stop the framing answered, if one was.
    pub(super) stop: Option<Option<u16>>,
}

/// Feeds `stream` a byte at a time, noting where each request's parts end.
pub(super) fn bytewise(stream: &[u8]) -> (Run, Framing) {
    let mut framing = Framing::new(LIMITS);
    let mut run = Run {
        handed: Vec::new(),
        dropped: Vec::new(),
        found: Vec::new(),
        end: End::Open,
        stop: None,
    };
    for (at, &byte) in stream.iter().enumerate() {
        let before = part(&framing);
        if before == Part::Idle {
            run.found.push(Found {
                start: at,
                ..Found::default()
            });
        }
        let mut read = [byte];
        match framing.scan(&mut read) {
            Scan::Stop { status, .. } => {
                run.end = End::Stopped { at, status };
                run.stop = Some(status);
                return (run, framing);
            }
            Scan::Pass(0) => run.dropped.push(at),
            Scan::Pass(_) => run.handed.push(byte),
        }
        let after = part(&framing);
        let request = run.found.last_mut().expect("a request started");
        if before == Part::Head && after != Part::Head {
            request.head_end = Some(at + 1);
        }
        if before != Part::Idle && matches!(after, Part::Idle | Part::Stopped) {
            request.body_end = Some(at + 1);
        }
        if after == Part::Unframed {
            run.end = End::Unframed;
            run.handed.extend_from_slice(&stream[at + 1..]);
            return (run, framing);
        }
    }
    if framing.is_stopped() {
        run.end = End::Stopped {
            at: stream.len(),
            status: None,
        };
    }
    (run, framing)
}

/// Feeds `stream` in reads cut at `cuts`: what tiny_http is handed, and how it ends.
pub(super) fn split(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<Option<u16>>, Framing) {
    let mut framing = Framing::new(LIMITS);
    let mut handed = Vec::new();
    let bounds = cuts.iter().copied().chain([stream.len()]);
    let mut from = 0;
    for to in bounds {
        let mut read = stream[from..to].to_vec();
        from = to;
        match framing.scan(&mut read) {
            Scan::Pass(len) => handed.extend_from_slice(&read[..len]),
            Scan::Stop { keep, status } => {
                handed.extend_from_slice(&read[..keep]);
                return (handed, Some(status), framing);
            }
        }
    }
    (handed, None, framing)
}
