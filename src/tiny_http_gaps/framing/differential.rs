//! [`Framing`] against an independent reading of the same streams (`reference`): generated
//! ones (`generate`) and the hostile corpus, each read whole by the reference and fed to
//! hellod's framing a byte at a time and split into reads at random points.
//!
//! The properties, for each stream:
//! - the reads do not matter: split reads hand tiny_http the same bytes and end in the same
//!   state as bytes read one at a time;
//! - every head hellod hands on, the reference reads as a valid head, ending at the same byte;
//!   every body hellod follows to its end, the reference ends at the same byte; the bytes taken
//!   out are exactly the reference's trailer field lines;
//! - where the reference reads a request and hellod refuses it, or refuses a byte of it, one of
//!   the [`Exemption`]s says why, at the byte hellod stopped at, with the status hellod gave;
//!   where both refuse a head by a rule with a status (RFC 9112's 400 for Host, Content-Length
//!   and transfer codings, 501 for unsupported codings), the statuses agree;
//! - where the reference refuses a body at a byte, hellod stops at that byte or before it.
//!
//! What follows a request after which no other is read (RFC 9112 9.6, or tiny_http's own
//! reading of `Connection`, `Upgrade` and `Expect`) is not compared.
//!
//! `HELLOD_DIFF_CASES` sets how many generated streams (100,000 by default), `HELLOD_DIFF_SEED`
//! the seed they come from.

#[allow(
    dead_code,
    reason = "the corpus runner's fields the framing does not need"
)]
#[path = "../../../tests/hostile/cases.rs"]
mod hostile;
mod refusals;
mod run;

use std::collections::BTreeMap;

use super::Limits;
use super::generate::{self, Rng};
use super::reference::{self, Message, Verdict};
use refusals::{Exemption, body_refused, head_refused, tiny_http_reads_no_further};
use run::{End, Run};

/// Small limits, so that generated streams cross them.
const LIMITS: Limits = Limits {
    max_head: 600,
    max_headers: 16,
    max_body: 2000,
};

/// What the streams of a run came to: what they covered.
#[derive(Debug, Default)]
struct Tally {
    /// Requests both read whole, up to the same byte.
    requests: u64,
    /// Streams with trailer fields taken out.
    trailers: u64,
    /// How hellod's framing ended, by its answer.
    stops: BTreeMap<Option<u16>, u64>,
    exemptions: BTreeMap<Exemption, u64>,
}

/// Checks hellod's framing of `stream`, read in reads cut at `cuts`, against the reference.
fn check(stream: &[u8], cuts: &[usize], tally: &mut Tally) -> Result<(), String> {
    let (run, framing) = run::bytewise(stream);
    let (handed, stop, split_framing) = run::split(stream, cuts);
    if handed != run.handed || stop != run.stop || split_framing.state != framing.state {
        return Err(format!(
            "reads cut at {cuts:?} change what tiny_http is handed, or the verdict"
        ));
    }
    let messages = reference::read(stream);
    let compared = compare(stream, &run, &messages, tally)?;
    check_dropped(&run, &messages, compared)?;
    if let End::Stopped { status, .. } = run.end {
        *tally.stops.entry(status).or_default() += 1;
    }
    tally.trailers += u64::from(!run.dropped.is_empty());
    Ok(())
}

/// Walks hellod's requests beside the reference's; returns how far the stream was compared.
fn compare(
    stream: &[u8],
    run: &Run,
    messages: &[Message],
    tally: &mut Tally,
) -> Result<usize, String> {
    for (k, found) in run.found.iter().enumerate() {
        let last_found = k + 1 == run.found.len();
        let Some(message) = messages.get(k) else {
            return Err(format!(
                "hellod read request {k} at {}, the reference none",
                found.start
            ));
        };
        if found.start != message.start {
            return Err(format!(
                "request {k} starts at {} for hellod, {} for the reference",
                found.start, message.start
            ));
        }
        let Some(head_end) = found.head_end else {
            let exemption = head_refused(stream, run.end, message)?;
            tally.exempted(exemption);
            return Ok(stream.len());
        };
        let refused = matches!(
            message.verdict,
            Verdict::Invalid {
                status: Some(_),
                ..
            }
        );
        if message.head_end != Some(head_end) || refused {
            return Err(format!(
                "hellod passed head {k} to {head_end}; the reference: {:?} {:?}",
                message.head_end, message.verdict
            ));
        }
        if last_found && run.end == End::Unframed {
            return tiny_http_reads_no_further(message, true)
                .then_some(head_end)
                .ok_or_else(|| format!("head {k} unframed"));
        }
        match (found.body_end, &message.verdict) {
            (
                Some(end),
                Verdict::Whole {
                    end: expected,
                    last,
                },
            ) if end == *expected => {
                tally.requests += 1;
                if *last {
                    return Ok(end);
                }
                // hellod stopped at this boundary: by tiny_http's reading of Connection.
                let stopped = matches!(run.end, End::Stopped { at, status: None } if at == end);
                if last_found && stopped {
                    return tiny_http_reads_no_further(message, false)
                        .then_some(end)
                        .ok_or_else(|| format!("hellod stops after request {k}"));
                }
            }
            (Some(end), verdict) => {
                return Err(format!(
                    "hellod ended body {k} at {end}; the reference: {verdict:?}"
                ));
            }
            (None, _) => {
                let exemption = body_refused(stream, run.end, message)?;
                tally.exempted(exemption);
                return Ok(stream.len());
            }
        }
    }
    match messages.get(run.found.len()) {
        None => Ok(stream.len()),
        Some(message) => Err(format!(
            "the reference reads request {} at {}, hellod none",
            run.found.len(),
            message.start
        )),
    }
}

/// The bytes taken out, up to `compared`, are the trailer field lines of the whole requests
/// there (up to where hellod stopped); of an unfinished one, bytes of its trailer section.
fn check_dropped(run: &Run, messages: &[Message], compared: usize) -> Result<(), String> {
    let stopped_at = match run.end {
        End::Stopped { at, .. } => at,
        End::Open | End::Unframed => compared,
    };
    let mut expected = Vec::new();
    let mut unfinished_trailer = None;
    for message in messages
        .iter()
        .take_while(|message| message.start < compared)
    {
        match message.verdict {
            Verdict::Whole { .. } => expected.extend(
                message
                    .body
                    .trailer_fields
                    .clone()
                    .take_while(|&at| at < stopped_at.min(compared)),
            ),
            _ => unfinished_trailer = message.body.trailer_start,
        }
    }
    let dropped = run.dropped.iter().filter(|&&at| at < compared);
    let (whole, unfinished): (Vec<usize>, Vec<usize>) =
        dropped.partition(|&&at| unfinished_trailer.is_none_or(|start| at < start));
    if whole != expected {
        return Err(format!(
            "took out {whole:?} ({unfinished:?} of an unfinished trailer), not the trailer fields {expected:?}"
        ));
    }
    Ok(())
}

impl Tally {
    fn exempted(&mut self, exemption: Option<Exemption>) {
        if let Some(exemption) = exemption {
            *self.exemptions.entry(exemption).or_default() += 1;
        }
    }
}

fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Generated streams in a normal test run: about 10 s in a debug build, 2 cores.
const CASES: u64 = 100_000;

#[test]
fn framing_agrees_with_the_reference_on_generated_streams() {
    let number =
        |name, default| std::env::var(name).map_or(default, |n: String| n.parse().expect(name));
    let cases = number("HELLOD_DIFF_CASES", CASES);
    let seed = number("HELLOD_DIFF_SEED", 0x6865_6c6c_6f64);
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    for case in 0..cases {
        let mut rng = Rng::new(seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let stream = generate::stream(&mut rng);
        let cuts = generate::splits(&mut rng, stream.len());
        if let Err(disagreement) = check(&stream, &cuts, &mut tally) {
            panic!(
                "case {case} of seed {seed}: {disagreement}\n  b\"{}\"",
                escaped(&stream)
            );
        }
    }
    println!(
        "{cases} generated streams agree ({:?}): {tally:?}",
        started.elapsed()
    );
    // The streams reach every answer and every exemption, or the generator has lost its way.
    if cases >= CASES {
        for status in [None, Some(400), Some(413), Some(431), Some(501), Some(505)] {
            assert!(tally.stops.contains_key(&status), "no stop with {status:?}");
        }
        for exemption in Exemption::ALL {
            assert!(
                tally.exemptions.contains_key(&exemption),
                "{exemption:?} never needed"
            );
        }
    }
}

#[test]
fn framing_agrees_with_the_reference_on_the_hostile_corpus() {
    let mut rng = Rng::new(7);
    for case in hostile::corpus() {
        for _ in 0..20 {
            let cuts = generate::splits(&mut rng, case.bytes.len());
            if let Err(disagreement) = check(&case.bytes, &cuts, &mut Tally::default()) {
                panic!("{}: {disagreement}", case.name);
            }
        }
    }
}
