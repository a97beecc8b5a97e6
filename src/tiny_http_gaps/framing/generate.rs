//! Request streams for the differential test, from a seed: one to three requests of a small
//! grammar, varied where framing is decided (Host, Content-Length, Transfer-Encoding, chunk
//! sizes, extensions and trailers, fields repeated or recased), then mutated byte by byte
//! (flips, insertions, deletions, repeated lines, case changes), and where to split them into
//! reads.

use super::MAX_CHUNK_LINE;
use std::fmt::Write;

/// SplitMix64: small, fast, and the same stream for the same seed everywhere.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

// The tables, one a line.
#[rustfmt::skip]
const METHODS: &[&str] = &["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "BREW"];
#[rustfmt::skip]
const TARGETS: &[&str] = &["/", "/a/b?c=d&e", "*", "http://h.example/x", "/%7Eu", "/a;b,c"];
#[rustfmt::skip]
const HOSTS: &[&str] = &[
    "t", "example.com:8080", "[::1]:80", "10.0.0.1", "", "a%41b", "[v1.fe:x]", "[2001:db8::1.2.3.4]",
    "[1:2:3:4:5:6:7:8]", "h:",
];
#[rustfmt::skip]
const BAD_HOSTS: &[&str] = &[
    "a b", "a:b", "[::1", "[1:2:3:4:5:6:7:8:9]", "::1", "[::1.2.3.04]", "[::1]8", "a@b", "[1::2::3]",
    "[:1::]", "x%4", "[v.x]", "[fe80::1%25eth0]", "1.2.3.4:5:6",
];
#[rustfmt::skip]
const LENGTHS: &[&str] = &[
    "0", "5", "007", "5, 5", "5,6", "-1", "+5", " 5 ", "", "1e3", "99999999999999999999999",
];
#[rustfmt::skip]
const CODINGS: &[&str] = &[
    "chunked", "Chunked", "gzip, chunked", "chunked, gzip", "identity", "", " chunked", ",chunked",
    "chunked,", "chunked;q=1", "chunked, chunked", "xchunked", "gzip",
];
#[rustfmt::skip]
const OTHER_FIELDS: &[(&str, &str)] = &[
    ("Accept", "*/*"), ("User-Agent", "x/1.0 (y)"), ("X-Empty", ""), ("X-Spaced", " a \t b "),
    ("Cookie", "a=b; c=\"d\""), ("Connection", "keep-alive"), ("Expect", "100-continue"),
];
/// Fields after which no further request is read: by RFC 9112 9.6, or by tiny_http's reading.
#[rustfmt::skip]
const LAST_FIELDS: &[(&str, &str)] = &[
    ("Connection", "close"), ("Connection", "Upgrade"), ("Connection", "xclosex"),
    ("Connection", "keep-alive, close"), ("Expect", "fish"), ("Upgrade", "h2c"),
];
/// Chunk extensions by RFC 9112 7.1.1's grammar, and ones off it (its BWS included).
#[rustfmt::skip]
pub(super) const EXTENSIONS: &[&str] = &[";a", ";a=b", ";a=\"q s\"", ";a=\"\\\"\"", ";a;b=c", ";n=\"\"", ";a=b;c"];
#[rustfmt::skip]
pub(super) const OFF_GRAMMAR_EXTENSIONS: &[&str] = &[
    ";", ";=a", ";a=", ";a=\"open", ";a b", ";a=b c", " ;a", "; a", "; a = b", ";a =b", ";a@b",
    ";a=\"\u{e9}\"", ";a=\"\\\u{1}\"",
];
#[rustfmt::skip]
const TRAILERS: &[&str] = &[
    "X-Trailer: 1", "Expires: x y", "A:", "Checksum: abc==", "X: a\n", " folded", "Bad Name: x",
    "X : y", "X: \u{e9}", "Content-Length: 5",
];
const INTERESTING: &[u8] = b"\r\n \t:;,\"0a=5\x80\xff\x00\x7f";

/// A stream to read as one connection.
pub(super) fn stream(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = Vec::new();
    for _ in 0..1 + rng.below(3) {
        request(rng, &mut bytes);
    }
    let mutations = match rng.below(10) {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2 + rng.below(2),
    };
    for _ in 0..mutations {
        mutate(rng, &mut bytes);
    }
    bytes
}

/// Where to cut `len` bytes into reads: up to five points, in order.
pub(super) fn splits(rng: &mut Rng, len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..rng.below(6)).map(|_| rng.below(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

fn request(rng: &mut Rng, out: &mut Vec<u8>) {
    let http_1_0 = rng.one_in(8);
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut field = |name: &str, value: &str| fields.push((name.to_owned(), value.to_owned()));
    if !http_1_0 || rng.one_in(2) {
        field("Host", rng.pick(HOSTS));
    }
    for _ in 0..rng.below(4) {
        let (name, value) = rng.pick(OTHER_FIELDS);
        field(name, value);
    }
    let body = body(rng, &mut field);
    if rng.one_in(4) {
        vary(rng, &mut fields);
    }
    let (method, target) = (rng.pick(METHODS), rng.pick(TARGETS));
    let version = if http_1_0 { "HTTP/1.0" } else { "HTTP/1.1" };
    let mut head = format!("{method} {target} {version}\r\n");
    for (name, value) in fields {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&body);
}

/// A body, none, by Content-Length or chunked, with the fields that frame it.
fn body(rng: &mut Rng, field: &mut impl FnMut(&str, &str)) -> Vec<u8> {
    let data = |rng: &mut Rng, len: usize| -> Vec<u8> {
        (0..len).map(|_| rng.pick(b"ab\r\n0;:GET ")).collect()
    };
    match rng.below(3) {
        0 => Vec::new(),
        1 => {
            let len = rng.below(40);
            field("Content-Length", &len.to_string());
            data(rng, len)
        }
        _ => {
            field("Transfer-Encoding", "chunked");
            let mut body = String::new();
            let sizes: Vec<usize> = (0..rng.below(4))
                .map(|_| 1 + rng.below(20))
                .chain([0])
                .collect();
            for size in sizes {
                let declared = if rng.one_in(12) { size + 1 } else { size };
                let digits = match rng.below(40) {
                    0 => format!("{}{declared:x}", "0".repeat(MAX_CHUNK_LINE)),
                    1..=8 => format!("00{declared:X}"),
                    _ => format!("{declared:x}"),
                };
                body.push_str(&digits);
                if rng.one_in(4) {
                    let grammar = [EXTENSIONS, OFF_GRAMMAR_EXTENSIONS][rng.below(2)];
                    body.push_str(rng.pick(grammar));
                }
                body.push_str(if rng.one_in(20) { "\n" } else { "\r\n" });
                if size == 0 {
                    for _ in 0..if rng.one_in(2) { 1 + rng.below(3) } else { 0 } {
                        body.push_str(rng.pick(TRAILERS));
                        body.push_str("\r\n");
                    }
                } else {
                    body.push_str(&String::from_utf8_lossy(&data(rng, size)));
                }
                body.push_str("\r\n");
            }
            body.into_bytes()
        }
    }
}

/// One change to the fields where framing is decided.
fn vary(rng: &mut Rng, fields: &mut Vec<(String, String)>) {
    let any = |rng: &mut Rng, fields: &[(String, String)]| rng.below(fields.len().max(1));
    match rng.below(9) {
        0 if !fields.is_empty() => {
            let copy = fields[any(rng, fields)].clone();
            fields.insert(any(rng, fields), copy);
        }
        1 if !fields.is_empty() => {
            let at = any(rng, fields);
            let name = &mut fields[at].0;
            *name = if rng.one_in(2) {
                name.to_uppercase()
            } else {
                name.to_lowercase()
            };
        }
        2 if !fields.is_empty() => {
            fields.remove(any(rng, fields));
        }
        3 => fields.push(("Host".into(), rng.pick(BAD_HOSTS).into())),
        4 => fields.push(("Content-Length".into(), rng.pick(LENGTHS).into())),
        5 => fields.push(("Transfer-Encoding".into(), rng.pick(CODINGS).into())),
        6 => fields.extend((0..20).map(|i| (format!("X-{i}"), "v".into()))),
        7 => {
            let (name, value) = rng.pick(LAST_FIELDS);
            fields.push((name.into(), value.into()));
        }
        _ => fields.push(("X-Long".into(), "v".repeat(700))),
    }
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    let at = rng.below(bytes.len());
    match rng.below(6) {
        0 => bytes[at] ^= 1 << rng.below(8),
        1 => bytes[at] = rng.pick(INTERESTING),
        2 => bytes.insert(at, rng.pick(INTERESTING)),
        3 => drop(bytes.drain(at..(at + 1 + rng.below(4)).min(bytes.len()))),
        4 => {
            // A line again, right after itself.
            let start = bytes[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |lf| lf + 1);
            let end = bytes[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |lf| at + lf + 1);
            let line = bytes[start..end].to_vec();
            bytes.splice(end..end, line);
        }
        _ => {
            let end = (at + 1 + rng.below(12)).min(bytes.len());
            for byte in &mut bytes[at..end] {
                if byte.is_ascii_alphabetic() {
                    *byte ^= 0x20;
                }
            }
        }
    }
}
