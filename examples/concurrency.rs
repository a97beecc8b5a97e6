//! The Go article's other example, in Rust: two concurrent counters printing 0..4 a second apart.
//!
//! ```go
//! go count("first"); go count("second") // each: for i := 0; i < 5; i++ { fmt.Println(name, i); time.Sleep(time.Second) }
//! ```
//!
//! Run with `cargo run --example concurrency`. OS threads play the goroutines: scoped threads are
//! joined before `main` returns, where Go needs a WaitGroup.

use std::io::Write;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

fn count(name: &str, interval: Duration, out: &Mutex<impl Write>) {
    for i in 0..5 {
        let _ = writeln!(out.lock().unwrap(), "{name}: {i}");
        thread::sleep(interval);
    }
}

fn count_concurrently(interval: Duration, out: &Mutex<impl Write + Send>) {
    thread::scope(|scope| {
        scope.spawn(|| count("first", interval, out));
        scope.spawn(|| count("second", interval, out));
    });
}

fn main() {
    count_concurrently(Duration::from_secs(1), &Mutex::new(std::io::stdout()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_counters_print_0_to_4_in_order() {
        let out = Mutex::new(Vec::new());
        count_concurrently(Duration::from_millis(1), &out);
        let text = String::from_utf8(out.into_inner().unwrap()).unwrap();
        for name in ["first", "second"] {
            let mine: Vec<&str> = text.lines().filter(|l| l.starts_with(name)).collect();
            let expected: Vec<String> = (0..5).map(|i| format!("{name}: {i}")).collect();
            assert_eq!(mine, expected);
        }
    }
}
