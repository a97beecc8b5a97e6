//! The connections that wait: until a whole head has arrived, or their deadline.

use super::*;

impl Loop {
    pub(super) fn take_welcomed(&mut self) {
        let room = ROOM.get().expect("open");
        sys::drain_eventfd(room.wake);
        if self.accept_paused_until.is_some() && !WANTS_A_CLOSE.load(SeqCst) {
            self.resume_accepting();
        }
        let welcomed = std::mem::take(
            &mut *room
                .welcomed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for connection in welcomed {
            self.wait(connection);
        }
    }

    /// Watches a connection until its next head is whole, or its deadline. One whose stream was
    /// ended after an answer (a stop) is closed now that the answer is out.
    pub(super) fn wait(&mut self, connection: Arc<Connection>) {
        let (deadline, ended) = {
            let state = connection.state();
            (deadline_of(&state), state.framing.is_stopped())
        };
        if ended {
            finish(&connection);
            return;
        }
        let fd = connection.fd;
        if watch(self.epoll, fd, fd as u64).is_err() {
            end(&connection);
            return;
        }
        self.waiting.insert(fd, (connection, deadline));
        self.deadlines.push(Reverse((deadline, fd)));
    }

    pub(super) fn read(&mut self, fd: RawFd, buffer: &mut [u8]) {
        let Some((connection, deadline)) = self.waiting.get(&fd).cloned() else {
            return;
        };
        let received = sys::recv_into(fd, buffer, libc::MSG_DONTWAIT);
        if received < 0 && matches!(sys::errno(), libc::EAGAIN | libc::EINTR) {
            return;
        }
        if received <= 0 {
            // The client left (or reset): the connection goes at once.
            self.close(fd);
            return;
        }
        let mut state = connection.state();
        let requests_before = state.framing.requests_ahead();
        state.prefetch(&mut buffer[..received as usize]);
        let whole_head = state.framing.requests_ahead() > requests_before
            || (!state.prefetched.is_empty()
                && !state.framing.in_head()
                && !state.framing.is_stopped());
        if whole_head {
            state.stage = Stage::Ready;
            drop(state);
            unwatch(self.epoll, fd);
            let (connection, _) = self.waiting.remove(&fd).expect("looked up");
            handoff::ready(connection);
        } else if state.framing.is_stopped() {
            drop(state);
            self.refuse(fd);
        } else if let Some(head_deadline) = state.head_deadline
            && head_deadline != deadline
        {
            drop(state);
            self.waiting.get_mut(&fd).expect("looked up").1 = head_deadline;
            self.deadlines.push(Reverse((head_deadline, fd)));
        }
    }

    /// Closes the connections whose deadline has passed: an unfinished head gets a 408, an idle
    /// connection is closed without a word, as tiny_http closes one that reached its read timeout.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(&Reverse((deadline, fd))) = self.deadlines.peek() {
            if deadline > now {
                return;
            }
            self.deadlines.pop();
            let Some((connection, current)) = self.waiting.get(&fd).cloned() else {
                continue;
            };
            if current != deadline {
                continue;
            }
            let mut state = connection.state();
            if state.framing.in_head() {
                state.stop(408);
                drop(state);
                self.refuse(fd);
            } else {
                drop(state);
                self.close(fd);
            }
        }
    }

    /// Sends hellod's answer to the head that stopped, then closes.
    fn refuse(&mut self, fd: RawFd) {
        if let Some((connection, _)) = self.waiting.remove(&fd) {
            unwatch(self.epoll, fd);
            finish(&connection);
        }
    }

    fn close(&mut self, fd: RawFd) {
        if let Some((connection, _)) = self.waiting.remove(&fd) {
            unwatch(self.epoll, fd);
            end(&connection);
        }
    }
}

/// When a waiting connection must have acted: its head's deadline, else the keep-alive timeout's,
/// or in a stop, sooner: once it has been quiet a while.
pub(super) fn deadline_of(state: &State) -> Instant {
    if let Some(head_deadline) = state.head_deadline {
        return head_deadline;
    }
    let keep_alive = state.idle_since + settings().guard.head_timeout;
    stopping().map_or(keep_alive, |stop| {
        keep_alive.min(stop.closes_idle_at(state.idle_since))
    })
}

/// Sends hellod's answer to a head that stopped, if any, then closes with a FIN.
pub(super) fn finish(connection: &Connection) {
    connection.answer_before_shutdown(false);
    sys::shutdown(connection.fd, libc::SHUT_WR);
    sys::discard_unread(connection.fd);
    end(connection);
}

/// Closes a connection for good.
pub(super) fn end(connection: &Connection) {
    registry::forget(connection);
    sys::close(connection.fd);
    closed_a_descriptor();
}
