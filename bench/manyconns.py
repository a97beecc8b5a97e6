"""Many connections at once, for bench/run: the burst (N connections opened together, one GET
each, the slowest time to the first byte of the answer) and the idle keep-alive connections
(N connections, one GET answered on each, then held open in silence while the server's CPU time is
read).

One thread, non-blocking sockets and a selector: no thread per connection on the client side, so
the time stamps are the client's reading of its sockets, taken as each becomes readable. Every
loop is bounded by a deadline and every socket is closed on the way out.

Standalone, for a look by hand: python3 bench/manyconns.py burst|idle PORT [COUNT]
"""

import errno
import selectors
import socket
import sys
import time

HOST = "127.0.0.1"  # loopback only
# Time (s) an open/answer phase may take before the connections still waiting count as unanswered.
BURST_DEADLINE_S = 10.0
OPEN_DEADLINE_S = 60.0
IDLE_OPENING_AT_ONCE = 200  # connections in flight at a time while opening the idle ones
ANSWER_MAX_BYTES = 4096  # an answer's head and body together; the greeting is far smaller


def request_for(port):
    return f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()


class Conn:
    __slots__ = ("sock", "started", "first_byte", "buf", "sent")

    def __init__(self, sock, started):
        self.sock, self.started = sock, started
        self.first_byte = None  # perf_counter() of the answer's first byte
        self.buf = b""
        self.sent = False


def answer_complete(buf):
    """True once buf holds a whole answer: its head and Content-Length bytes of body."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    length = 0
    for line in buf[:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or 0)
    return len(buf) >= head_end + 4 + length


def is_200(buf):
    return buf.startswith(b"HTTP/1.1 200 ") or buf.startswith(b"HTTP/1.0 200 ")


def exchange(port, count, deadline_s, at_once):
    """Opens `count` connections, at most `at_once` of them waiting for their answer at a time,
    and sends one GET on each as soon as it is connected. Returns (answered, failed, pending):
    the connections answered 200 (kept open, the caller closes them), the number that failed
    (refused, reset, closed early, not 200) and the number still waiting at the deadline (closed
    here)."""
    request = request_for(port)
    sel = selectors.DefaultSelector()
    answered, failed = [], 0
    waiting = {}  # fd -> Conn
    opened = 0
    deadline = time.perf_counter() + deadline_s

    def fail(conn):
        nonlocal failed
        failed += 1
        sel.unregister(conn.sock)
        del waiting[conn.sock.fileno()]
        conn.sock.close()

    def send(conn):
        try:
            conn.sock.send(request)  # a few dozen bytes into an empty buffer: sent whole
        except OSError:
            fail(conn)
            return
        conn.sent = True
        sel.modify(conn.sock, selectors.EVENT_READ, conn)

    try:
        while opened < count or waiting:
            # Open as many as `at_once` allows, sending on each one the kernel connects at once
            # (on loopback, most), so that the client's own lag stays out of its time to answer.
            while opened < count and len(waiting) < at_once:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                conn = Conn(sock, time.perf_counter())
                code = sock.connect_ex((HOST, port))
                opened += 1
                waiting[sock.fileno()] = conn
                sel.register(sock, selectors.EVENT_WRITE, conn)
                if code == 0:
                    send(conn)
                elif code not in (errno.EINPROGRESS, errno.EAGAIN):
                    fail(conn)
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            for key, _ in sel.select(timeout=min(remaining, 0.5)):
                conn = key.data
                if not conn.sent:
                    if conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        fail(conn)
                    else:
                        send(conn)
                    continue
                try:
                    data = conn.sock.recv(ANSWER_MAX_BYTES)
                except OSError:
                    fail(conn)
                    continue
                if not data:  # closed before a whole answer
                    fail(conn)
                    continue
                if conn.first_byte is None:
                    conn.first_byte = time.perf_counter()
                conn.buf += data
                if answer_complete(conn.buf):
                    if not is_200(conn.buf):
                        fail(conn)
                        continue
                    sel.unregister(conn.sock)
                    del waiting[conn.sock.fileno()]
                    answered.append(conn)
    except BaseException:
        for conn in answered:
            conn.sock.close()
        raise
    finally:
        pending = len(waiting) + (count - opened)
        for conn in waiting.values():
            conn.sock.close()
        sel.close()
    return answered, failed, pending


def burst(port, count=1000, deadline_s=BURST_DEADLINE_S):
    """`count` connections opened together, one GET each. Returns the slowest and the median time
    from a connection's connect() to its answer's first byte (ms, over those answered) and how
    many got no 200 within the deadline."""
    # The answered ones stay open until the last is answered, as keep-alive clients would: a
    # server that frees a thread only when a connection closes must answer them all regardless.
    answered, failed, pending = exchange(port, count, deadline_s, at_once=count)
    for conn in answered:
        conn.sock.close()
    times = sorted((c.first_byte - c.started) * 1000.0 for c in answered)
    return {
        "slowest_ms": times[-1] if times else None,
        "median_ms": times[len(times) // 2] if times else None,
        "unanswered": failed + pending,
    }


class IdleConnections:
    """`count` keep-alive connections, each answered once and then silent, held open for the
    duration of a `with` block; `still_open()` tells how many the server has not closed."""

    def __init__(self, port, count, deadline_s=OPEN_DEADLINE_S):
        self.port, self.count, self.deadline_s = port, count, deadline_s
        self.conns = []
        self.unanswered = 0

    def __enter__(self):
        self.conns, failed, pending = exchange(self.port, self.count, self.deadline_s,
                                               at_once=IDLE_OPENING_AT_ONCE)
        self.unanswered = failed + pending
        return self

    def still_open(self):
        """Connections on which nothing has arrived: a server that closed one makes it readable."""
        with selectors.DefaultSelector() as sel:
            for conn in self.conns:
                sel.register(conn.sock, selectors.EVENT_READ)
            return len(self.conns) - len(sel.select(timeout=0))

    def __exit__(self, *exc):
        for conn in self.conns:
            conn.sock.close()
        self.conns = []


def main(argv):
    if len(argv) not in (3, 4) or argv[1] not in ("burst", "idle"):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    port = int(argv[2])
    count = int(argv[3]) if len(argv) == 4 else 1000
    if argv[1] == "burst":
        print(burst(port, count))
    else:
        with IdleConnections(port, count) as idle:
            print(f"{len(idle.conns)} open and answered, {idle.unanswered} not; "
                  f"{idle.still_open()} still open")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
