//! Panics inside tiny_http's own threads.

use std::panic::{self, AssertUnwindSafe};
use std::thread;

/// tiny_http `unwrap`s inside its own threads (`peer_addr()` after a client reset, upstream
/// #180) and in its accept thread (`try_clone()` with no descriptor left). Built with `panic = "unwind"`, such a panic
/// ends only the thread it happens in; this hook makes it one line on stderr instead of a report
/// with a backtrace hint, and `contain` keeps a worker alive through one.
pub fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let thread = thread::current();
        let location = info
            .location()
            .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("");
        eprintln!(
            "hellod: panic in thread {}{location}: {message}",
            thread.name().unwrap_or("of tiny_http")
        );
    }));
}

/// Runs `answer`, surviving a panic inside tiny_http's code that it calls.
pub fn contain(answer: impl FnOnce()) {
    let _ = panic::catch_unwind(AssertUnwindSafe(answer));
}
