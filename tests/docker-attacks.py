#!/usr/bin/env python3
"""The attacks that tests/docker-memory.sh makes on a container, and the loads it
measures the cgroup's charge per connection with.

Usage: docker-attacks.py PORT ATTACK [options]
  long-lines  --connections N --bytes B   N connections at once, each sends one header line of
                                          B bytes (then the end of the head), until hellod
                                          answers or closes
  http2       --connections N             N connections, each sends a request line ending in
                                          HTTP/2.0, waits briefly for an answer, then leaves
  stall       --connections N --hold S    N connections send the start of a head (and
              [--bytes B]                 B bytes of a header's value) and nothing more; held S
                                          seconds after the last one is open, then all closed
  busy        --connections N --hold S    N keep-alive connections, each sending its next GET as
                                          soon as the last is answered, for S seconds after the
                                          last one is open

Traffic goes to 127.0.0.1:PORT only (tests/docker-memory.sh runs this in the container's network
namespace, where that is hellod). Non-blocking sockets in one epoll loop; every phase has a
deadline (--deadline), so the script always ends. Prints one line of `name=value` figures:
connections, answers by status (s431=...), eof (closed without an answer), reset, failed (to
connect), silent (open with no answer but 200s at the end), bytes sent; for stall also admitted/refused, for busy
the answers read and the connections still busy; for both, with
--server-pid/--cgroup, the server's threads, descriptors and cgroup memory at the end of the
hold. Exit status 0 if the run completed (whatever hellod did), 2 on a usage or setup error.
"""

import argparse
import errno
import os
import resource
import selectors
import socket
import sys
import time

from nonblocking import connect_failed, receive

HOST = "127.0.0.1"
# Connects in progress at once: the listen backlog of the proxy in front of the container is
# not exceeded, so no SYN waits out a retransmission.
CONNECTING_AT_ONCE = 256
CHUNK = b"a" * 65536


def raise_open_files(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < needed:
        sys.exit(f"docker-attacks: {needed} descriptors needed, the hard limit is {hard}")


class Connection:
    __slots__ = ("sock", "head", "body_left", "tail", "sent", "answer", "state", "done_at",
                 "request", "received", "answered")

    def __init__(self, head, body_bytes=0, tail=b"", keep_alive=False):
        # keep_alive: head is a whole request, sent again each time its answer has arrived.
        self.request = head if keep_alive else None
        self.received = b""       # keep-alive: what is read of the answer in progress
        self.answered = 0         # keep-alive: whole 200 answers read
        self.sock = None
        self.head = head          # bytes still to send before the body
        self.body_left = body_bytes
        self.tail = tail          # after the body
        self.sent = 0
        self.answer = b""         # the first bytes hellod (through the proxy) sent back
        self.state = "new"        # new, connecting, open, eof, reset, failed, closed
        self.done_at = None

    def take_answers(self, data):
        """Keep-alive: reads whole answers from data; a 200 asks for the next request, any other
        answer is kept as the connection's answer (and asks for nothing more)."""
        self.received += data
        while True:
            end = self.received.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.received[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if len(self.received) < end + 4 + length:
                return
            answer = self.received[: end + 4 + length]
            self.received = self.received[end + 4 + length:]
            if answer.startswith(b"HTTP/1.1 200 "):
                self.answered += 1
                self.head = self.request
            else:
                self.answer = answer[:256]

    def pending(self):
        return self.head or self.body_left or self.tail

    def next_bytes(self):
        if self.head:
            return self.head
        if self.body_left:
            return memoryview(CHUNK)[: self.body_left]
        return self.tail

    def consume(self, count):
        self.sent += count
        if self.head:
            self.head = self.head[count:]
        elif self.body_left:
            self.body_left -= count
        else:
            self.tail = self.tail[count:]

    def status(self):
        """The answer's status code, 'eof' or 'reset' for none, None if still open and silent."""
        if self.answer.startswith(b"HTTP/"):
            parts = self.answer.split(b" ", 2)
            if len(parts) > 1 and parts[1].isdigit():
                return "s" + parts[1].decode()
            return "other"
        if self.answer:
            return "other"
        if self.state in ("eof", "reset", "failed", "unconnected"):
            return self.state
        return None


class Loop:
    def __init__(self, port, deadline):
        self.port = port
        self.selector = selectors.DefaultSelector()
        self.deadline = time.monotonic() + deadline
        self.connecting = 0
        self.connected = 0

    def time_left(self):
        return self.deadline - time.monotonic()

    def start(self, conn):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        conn.sock = sock
        error = sock.connect_ex((HOST, self.port))
        if error not in (0, errno.EINPROGRESS):
            sock.close()
            conn.state = "failed"
            return
        conn.state = "connecting"
        self.connecting += 1
        self.selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)

    def finish(self, conn, state):
        if conn.sock is None:
            return
        if conn.state == "connecting":
            self.connecting -= 1
        self.selector.unregister(conn.sock)
        conn.sock.close()
        conn.sock = None
        conn.state = state
        conn.done_at = time.monotonic()

    def leave(self, conn):
        """Closes a connection from this side; its figures stay as they were."""
        if conn.sock is not None:
            self.finish(conn, "left" if conn.state == "open" else "unconnected")

    def drain(self, conn):
        while len(conn.answer) < 256:
            try:
                data = conn.sock.recv(256 - len(conn.answer), socket.MSG_DONTWAIT)
            except OSError:
                return
            if not data:
                return
            conn.answer += data

    def want_write(self, conn, on):
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if on else 0)
        self.selector.modify(conn.sock, events, conn)

    def step(self, timeout):
        for key, events in self.selector.select(max(0.0, timeout)):
            conn = key.data
            if conn.sock is None:
                continue
            if conn.state == "connecting":
                if connect_failed(conn.sock):
                    self.finish(conn, "failed")
                    continue
                self.connecting -= 1
                self.connected += 1
                conn.state = "open"
            if events & selectors.EVENT_READ:
                data = receive(conn.sock)
                if isinstance(data, str):
                    self.finish(conn, data)
                    continue
                if data and conn.request is not None:
                    conn.take_answers(data)
                    if conn.pending():
                        self.want_write(conn, True)
                elif data and len(conn.answer) < 256:
                    conn.answer += data[: 256 - len(conn.answer)]
            if conn.state == "open" and conn.pending():
                try:
                    while conn.pending():
                        count = conn.sock.send(conn.next_bytes())
                        conn.consume(count)
                except BlockingIOError:
                    pass
                except OSError:
                    # Closed by the peer: an answer sent before the close may still be queued.
                    self.drain(conn)
                    self.finish(conn, "reset")
                    continue
                if not conn.pending():
                    self.want_write(conn, False)
            elif conn.state == "open" and not conn.pending():
                self.want_write(conn, False)

    def open_all(self, conns, on_opened=None):
        """Starts every connection, CONNECTING_AT_ONCE at a time, until all are connected or
        failed, or the deadline passes."""
        waiting = list(reversed(conns))
        while (waiting or self.connecting) and self.time_left() > 0:
            while waiting and self.connecting < CONNECTING_AT_ONCE:
                self.start(waiting.pop())
            self.step(min(0.05, self.time_left()))
        return not waiting and self.connecting == 0


def figures(conns, extra):
    counts = {}
    for conn in conns:
        status = conn.status()
        key = status if status is not None else "silent"
        counts[key] = counts.get(key, 0) + 1
    out = {"connections": len(conns)}
    out.update(sorted(counts.items()))
    out["sent_max"] = max((c.sent for c in conns), default=0)
    out["sent_total"] = sum(c.sent for c in conns)
    out.update(extra)
    return " ".join(f"{name}={value}" for name, value in out.items())


def long_lines(loop, args):
    head = b"GET / HTTP/1.1\r\nHost: attack\r\nX-Long: "
    conns = [Connection(head, args.bytes, b"\r\n\r\n") for _ in range(args.connections)]
    loop.open_all(conns)
    # Until each is answered or closed, or has sent everything and waited a while for its answer.
    all_sent_at = None
    while loop.time_left() > 0:
        live = [c for c in conns if c.sock is not None]
        if not live or all(c.answer for c in live):
            break
        if all_sent_at is None and all(not c.pending() for c in live):
            all_sent_at = time.monotonic()
        if all_sent_at is not None and time.monotonic() - all_sent_at > args.answer_wait:
            break
        loop.step(min(0.1, loop.time_left()))
    result = figures(conns, {"deadline_hit": int(loop.time_left() <= 0)})
    for conn in conns:
        loop.leave(conn)
    return result


def http2(loop, args):
    conns = [Connection(b"GET / HTTP/2.0\r\nHost: attack\r\n\r\n") for _ in range(args.connections)]
    # Opened in waves; each leaves once answered, closed, or answer_wait after its line went out.
    waiting = list(reversed(conns))
    sent_at = {}
    while loop.time_left() > 0:
        while waiting and loop.connecting < CONNECTING_AT_ONCE:
            loop.start(waiting.pop())
        loop.step(min(0.05, loop.time_left()))
        now = time.monotonic()
        for conn in conns:
            if conn.sock is None or conn.state != "open" or conn.pending():
                continue
            started = sent_at.setdefault(id(conn), now)
            if conn.answer or now - started > args.answer_wait:
                loop.leave(conn)
        if not waiting and all(c.sock is None for c in conns):
            break
    result = figures(conns, {"deadline_hit": int(loop.time_left() <= 0)})
    for conn in conns:
        loop.leave(conn)
    return result


def server_readings(args):
    readings = {}
    if args.server_pid:
        try:
            with open(f"/proc/{args.server_pid}/status") as status:
                for line in status:
                    if line.startswith("Threads:"):
                        readings["server_threads"] = int(line.split()[1])
            readings["server_fds"] = len(os.listdir(f"/proc/{args.server_pid}/fd"))
        except OSError:
            readings["server_gone"] = 1
    if args.cgroup:
        for name in ("memory.usage_in_bytes", "memory.current"):
            try:
                with open(os.path.join(args.cgroup, name)) as usage:
                    readings["usage_held"] = int(usage.read())
                break
            except OSError:
                continue
    return readings


def stall(loop, args):
    head = b"GET / HTTP/1.1\r\nHost: attack\r\nX-Stalled: "
    conns = [Connection(head, args.bytes) for _ in range(args.connections)]
    all_open = loop.open_all(conns)
    opened_in = args.deadline - loop.time_left()
    hold_until = time.monotonic() + args.hold
    while time.monotonic() < hold_until and loop.time_left() > 0:
        loop.step(min(0.1, hold_until - time.monotonic()))
    extra = server_readings(args)
    refused = sum(1 for c in conns if c.status() not in (None, "failed", "unconnected"))
    admitted = sum(1 for c in conns if c.status() is None)
    extra = {"all_open": int(all_open), "opened_in_ms": int(opened_in * 1000),
             "admitted": admitted, "refused": refused, **extra}
    result = figures(conns, extra)
    for conn in conns:
        loop.leave(conn)
    return result


def busy(loop, args):
    request = b"GET / HTTP/1.1\r\nHost: attack\r\n\r\n"
    conns = [Connection(request, keep_alive=True) for _ in range(args.connections)]
    all_open = loop.open_all(conns)
    hold_until = time.monotonic() + args.hold
    while time.monotonic() < hold_until and loop.time_left() > 0:
        loop.step(min(0.1, hold_until - time.monotonic()))
    extra = server_readings(args)
    extra = {"all_open": int(all_open), "answers": sum(c.answered for c in conns),
             "busy": sum(1 for c in conns if c.answered and c.status() is None), **extra}
    result = figures(conns, extra)
    for conn in conns:
        loop.leave(conn)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("attack", choices=["long-lines", "http2", "stall", "busy"])
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--bytes", type=int, default=None,
                        help="long-lines: the line's size [1 MiB]; stall: sent of the stalled "
                        "header's value before stalling [0]")
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--answer-wait", type=float, default=3.0,
                        help="seconds to wait for an answer once a request is sent")
    parser.add_argument("--deadline", type=float, default=60.0, help="whole run, seconds")
    parser.add_argument("--server-pid", type=int, help="stall: read its threads and descriptors")
    parser.add_argument("--cgroup", help="stall: read this memory cgroup's usage")
    args = parser.parse_args()
    if not 0 < args.port < 65536 or args.connections < 1:
        parser.error("bad port or connection count")
    if args.bytes is None:
        args.bytes = 1 << 20 if args.attack == "long-lines" else 0
    raise_open_files(args.connections + 64)
    loop = Loop(args.port, args.deadline)
    attack = {"long-lines": long_lines, "http2": http2, "stall": stall, "busy": busy}[args.attack]
    print(attack(loop, args), flush=True)


if __name__ == "__main__":
    main()
