//! hellod's own answers: to a head whose stream was stopped, and past the connection limit.

use super::*;
use crate::tiny_http_gaps::Refusal;
use crate::tiny_http_gaps::framing::is_token_byte;

impl Connection {
    /// Sends the answer to a stopped head, if any, then lets the client's remaining bytes go so
    /// that the close ends in a FIN, not a reset that could destroy the answer in flight.
    pub(in crate::tiny_http_gaps::socket_hooks) fn answer_before_shutdown(&self, wait: bool) {
        let (status, request_line) = {
            let mut state = self.state();
            let Some(status) = state.answer.take() else {
                return;
            };
            (status, state.framing.request_line().to_vec())
        };
        // The method as far as it goes, even in a request line refused at its next byte.
        let head = request_line
            .strip_prefix(b"HEAD")
            .is_some_and(|rest| rest.first().is_none_or(|&next| !is_token_byte(next)));
        let response = refusal_response(status, head);
        let flags = libc::MSG_NOSIGNAL | if wait { 0 } else { libc::MSG_DONTWAIT };
        // SAFETY: send only reads `response.len()` bytes of `response`, which outlives the call.
        unsafe { libc::send(self.fd, response.as_ptr().cast(), response.len(), flags) };
        if let Some(log) = settings().access_log {
            log(&Refusal {
                client: Some(self.peer),
                request_line: &request_line,
                status,
                body_len: if head { 0 } else { reason(status).len() },
            });
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// A whole response that closes the connection; the reason is the body too, except in the
/// answer to a HEAD. It names the server as the greeting does.
pub(in crate::tiny_http_gaps::socket_hooks) fn refusal_response(
    status: u16,
    head: bool,
) -> Vec<u8> {
    let reason = reason(status);
    format!(
        "HTTP/1.1 {status} {reason}\r\nServer: {}\r\nDate: {}\r\nContent-Type: text/plain; \
         charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        settings().guard.server,
        httpdate::fmt_http_date(std::time::SystemTime::now()),
        reason.len(),
        if head { "" } else { reason },
    )
    .into_bytes()
}
