#!/usr/bin/env python3
"""How many connections a server holds under its memory limit, and what it costs to hold them:
the capacity figures of the docker stage (tests/docker-memory.sh's memory_capacity) and of
bench/run's capacity row.

Run just this part, on a Docker engine of its own, against the real image (and Go's hello beside
it), as root, in about 3 minutes:
    tests/docker.sh capacity
Or against any server already listening on 127.0.0.1:PORT:
    tests/docker-capacity.py PORT idle|mixed|served --server-pid PID [--cgroup DIR]
        [--container NAME] [--check] [--label NAME]

Scenarios (all traffic to 127.0.0.1:PORT; one thread, non-blocking sockets, epoll):
  idle    --connections N (10,000) keep-alive connections opened one after another (--window in
          flight at a time, 1 by default: each waits for the one before it), each sends one GET,
          reads the answer and stays open and silent. --wait (7) s after the last one, the
          server's threads, descriptors and cgroup memory are read; then every connection still
          holding its answer sends a second GET at once, and each answer is timed from its own
          request (--answer-within, 3 s).
  mixed   N connections opened (--window 64 in flight), in turn: silent (nothing sent), half a
          request head sent, a whole GET sent and answered; --wait s after the last one is open,
          the same readings; then the silent and the half ones finish their heads at once, and
          each answer is timed from the moment its head became whole.
  served  N (200) connections each with a request in flight: a POST head with Content-Length
          200,000 and its first 1,024 bytes of body, then nothing; held --hold (3) s after the
          last is open, then the readings. Below 256 KiB of body left, Go's net/http too keeps
          reading the body instead of closing: both servers hold a request being served.

Readings: the server's threads and descriptors from /proc/PID (--server-pid: the host PID of a
container's process), its memory cgroup's usage and peak (--cgroup, else found from
/proc/PID/cgroup; memory.usage_in_bytes/max_usage_in_bytes on cgroup v1, memory.current/peak on
v2), sampled every 100 ms and read at the moments above; with --container, `docker inspect` at
the end: running, OOM-killed, the same PID. The peak is the cgroup's since it was made (a fresh
container per scenario), the baseline its usage just before the first connection; the charge per
connection is (usage at the reading - baseline) / connections held, and (peak - baseline) / held;
for a server that died on the way (Go's hello, OOM-killed), the largest usage sampled over the
most connections held at once, both reached just before the kill.

With --check the bounds are enforced (idle and mixed: every connection answered, every second
answer within --answer-within s, at most --max-threads threads at the reading, a peak of at most
--max-peak-mib MiB, not OOM-killed, the same PID): each missed one prints a FAIL line and the
exit status is 1. Without it (Go's record, bench/run), the same figures, exit status 0.
Every line starts with --stage (`docker`); the last one is `figures: name=value ...` for
programs. Exit status 2 on a usage or setup error. Every phase is bounded by --deadline, every
socket is closed on the way out (with a reset: no TIME_WAIT left to use up loopback ports).
"""

import argparse
import collections
import errno
import json
import os
import resource
import selectors
import socket
import struct
import subprocess
import sys
import time

from nonblocking import connect_failed, receive

HOST = "127.0.0.1"
GET = b"GET / HTTP/1.1\r\nHost: capacity\r\n\r\n"
HALF = 18  # bytes of GET sent by the half-head connections: "GET / HTTP/1.1\r\nHo"
POST_LENGTH = 200_000
POST = (b"POST / HTTP/1.1\r\nHost: capacity\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % POST_LENGTH) + b"b" * 1024
SAMPLE_EVERY_S = 0.1
FIRST_ANSWER_TIMEOUT_S = 5.0  # a connection still unanswered then leaves the opening window
LATE_GRACE_S = 2.0  # answers are waited for this long past --answer-within, to count late ones
LINGER_RESET = struct.pack("ii", 1, 0)


class Conn:
    __slots__ = ("sock", "group", "out", "buf", "statuses", "times", "state", "opened_at",
                 "asked_at", "connected")

    def __init__(self, group):
        self.group = group
        self.sock = None
        self.out = b""
        self.buf = b""
        self.statuses = []   # status code of each whole answer read
        self.times = []      # monotonic time each was read
        self.state = "new"   # new, connecting, open, eof, reset, failed
        self.opened_at = None
        self.asked_at = None  # when the request now awaited was sent whole
        self.connected = False

    def is_open(self):
        return self.state in ("connecting", "open")


class Readings:
    """The server's threads and descriptors, its cgroup's usage and peak: the last values read
    and the largest seen (a cgroup goes with its container: the last reading stays)."""

    def __init__(self, pid, cgroup):
        self.pid, self.cgroup = pid, cgroup
        self.threads = self.fds = self.usage = self.peak = None
        self.max_threads = 0
        self.max_usage = 0
        self.max_peak = 0
        self.gone = False
        self.next_at = 0.0

    def _file(self, *names):
        for name in names:
            try:
                with open(os.path.join(self.cgroup, name)) as f:
                    return int(f.read())
            except (OSError, ValueError):
                continue
        return None

    def read(self, fds=False):
        if self.pid:
            try:
                with open(f"/proc/{self.pid}/status") as status:
                    for line in status:
                        if line.startswith("Threads:"):
                            self.threads = int(line.split()[1])
                            self.max_threads = max(self.max_threads, self.threads)
                if fds:
                    self.fds = len(os.listdir(f"/proc/{self.pid}/fd"))
            except OSError:
                self.gone = True
        if self.cgroup:
            usage = self._file("memory.usage_in_bytes", "memory.current")
            if usage is not None:
                self.usage = usage
                self.max_usage = max(self.max_usage, usage)
            peak = self._file("memory.max_usage_in_bytes", "memory.peak")
            if peak is not None:
                self.peak = peak
                self.max_peak = max(self.max_peak, peak)
        return self

    def tick(self):
        now = time.monotonic()
        if now >= self.next_at:
            self.next_at = now + SAMPLE_EVERY_S
            self.read()

    def best_peak(self):
        """The cgroup's peak if it keeps one, else the largest usage sampled."""
        return max(self.max_peak, self.max_usage) if self.max_peak else self.max_usage

    def oom_kills(self):
        try:
            with open(os.path.join(self.cgroup, "memory.oom_control")) as f:
                for line in f:
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
        except (OSError, TypeError):
            pass
        try:
            with open(os.path.join(self.cgroup, "memory.events")) as f:
                for line in f:
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
        except (OSError, TypeError):
            pass
        return None


class Client:
    def __init__(self, port, deadline_s, readings):
        self.port = port
        self.sel = selectors.DefaultSelector()
        self.deadline = time.monotonic() + deadline_s
        self.readings = readings
        self.held = 0      # open connections that have had a 200
        self.max_held = 0
        self.conns = []

    def time_left(self):
        return self.deadline - time.monotonic()

    def open(self, conn, first=b""):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        conn.sock, conn.out, conn.opened_at = sock, first, time.monotonic()
        self.conns.append(conn)
        error = sock.connect_ex((HOST, self.port))
        if error not in (0, errno.EINPROGRESS):
            sock.close()
            conn.sock, conn.state = None, "failed"
            return
        conn.state = "connecting"
        self.sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)

    def close(self, conn, state):
        if conn.sock is None:
            return
        if conn.statuses and 200 in conn.statuses:
            self.held -= 1
        self.sel.unregister(conn.sock)
        try:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        except OSError:
            pass
        conn.sock.close()
        conn.sock, conn.state = None, state

    def send(self, conn, data):
        """Queues data and writes what the socket takes; asked_at is set once all is written."""
        if conn.sock is None:
            return
        conn.out += data
        if conn.state == "open":
            self._flush(conn)
            if conn.out and conn.sock is not None:
                self.sel.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)

    def _flush(self, conn):
        try:
            while conn.out:
                sent = conn.sock.send(conn.out)
                conn.out = conn.out[sent:]
        except BlockingIOError:
            return
        except OSError:
            self.close(conn, "reset")
            return
        conn.asked_at = time.monotonic()

    def _answers(self, conn):
        now = time.monotonic()
        while True:
            end = conn.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            lines = conn.buf[:end].split(b"\r\n")
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            if len(conn.buf) < end + 4 + length:
                return
            conn.buf = conn.buf[end + 4 + length:]
            parts = lines[0].split(b" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
            if status == 200 and 200 not in conn.statuses:
                self.held += 1
                self.max_held = max(self.max_held, self.held)
            conn.statuses.append(status)
            conn.times.append(now)

    def step(self, timeout):
        self.readings.tick()
        for key, events in self.sel.select(max(0.0, min(timeout, SAMPLE_EVERY_S))):
            conn = key.data
            if conn.sock is None:
                continue
            if conn.state == "connecting":
                if connect_failed(conn.sock):
                    self.close(conn, "failed")
                    continue
                conn.state, conn.connected = "open", True
                if not conn.out:
                    self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
            if events & selectors.EVENT_READ:
                data = receive(conn.sock)
                if isinstance(data, str):
                    self.close(conn, data)
                    continue
                if data:
                    conn.buf += data
                    self._answers(conn)
            if conn.out and conn.state == "open":
                self._flush(conn)
                if not conn.out and conn.sock is not None:
                    self.sel.modify(conn.sock, selectors.EVENT_READ, conn)

    def run_until(self, when, done=None):
        """Steps the loop until `when` (monotonic), the deadline, or done() is true."""
        while time.monotonic() < when and self.time_left() > 0:
            if done is not None and done():
                return True
            self.step(min(when - time.monotonic(), self.time_left()))
        return done is not None and done()

    def open_in_order(self, conns, window, first, settled):
        """Opens conns in order, at most `window` of them not yet settled at a time. first(conn):
        the bytes it sends once connected; settled(conn): no longer in the window."""
        waiting = collections.deque(conns)
        flight = []
        while (waiting or flight) and self.time_left() > 0:
            while waiting and len(flight) < window:
                conn = waiting.popleft()
                self.open(conn, first(conn))
                flight.append(conn)
            self.step(min(0.05, self.time_left()))
            now = time.monotonic()
            flight = [c for c in flight if c.sock is not None and not settled(c)
                      and now - c.opened_at < FIRST_ANSWER_TIMEOUT_S]
        return not waiting and not flight

    def close_all(self):
        for conn in self.conns:
            self.close(conn, conn.state if conn.state not in ("connecting", "open") else "left")


def first_outcome(conn):
    """200, 503, ... for a connection's first answer; eof/reset/failed if closed without one;
    silent if open without one."""
    if conn.statuses:
        return f"s{conn.statuses[0]}"
    return conn.state if conn.state in ("eof", "reset", "failed") else "silent"


def outcome_counts(conns):
    counts = collections.Counter(first_outcome(c) for c in conns)
    return " ".join(f"{name}={counts[name]}" for name in sorted(counts))


class Answers(collections.namedtuple("Answers", "in_time late unanswered slowest bad")):
    """How a round of requests was answered: 200 in time, late, not at all, the slowest (s),
    and a count of each failure (another status, or how the connection ended)."""

    def figures(self, prefix):
        return {f"{prefix}_in_time": self.in_time, f"{prefix}_late": self.late,
                f"{prefix}_unanswered": self.unanswered,
                f"{prefix}_slowest_s": round(self.slowest, 3)}

    def rest(self):
        """The report's words for all but the answers in time."""
        failures = "".join(f", {k}={v}" for k, v in sorted(self.bad.items()))
        return (f"{self.late} later, {self.unanswered} unanswered{failures}; slowest "
                f"{self.slowest:.3f} s")


def timed_answers(client, asked, within, index):
    """Waits for answer number `index` (0-based) of every connection in asked, each timed from
    its own request."""
    def done():
        return all(len(c.statuses) > index or c.sock is None for c in asked)
    started = time.monotonic()
    client.run_until(started + within + LATE_GRACE_S + 1.0, done)
    in_time = late = unanswered = 0
    slowest = 0.0
    bad = collections.Counter()
    for conn in asked:
        if len(conn.statuses) > index and conn.asked_at is not None:
            took = conn.times[index] - conn.asked_at
            slowest = max(slowest, took)
            if conn.statuses[index] != 200:
                bad[f"s{conn.statuses[index]}"] += 1
            elif took <= within:
                in_time += 1
            else:
                late += 1
        else:
            unanswered += 1
            if conn.sock is None:
                bad[conn.state] += 1
    return Answers(in_time, late, unanswered, slowest, bad)


def mib(value):
    return "?" if value is None else f"{value / 1048576:.1f}"


def kib(value):
    return "?" if value is None else f"{value / 1024:.1f}"


class Report:
    def __init__(self, args):
        self.stage, self.label, self.check = args.stage, args.label, args.check
        self.failures = 0
        self.figures = {}

    def line(self, kind, text):
        print(f"{self.stage}: {kind}: {self.label} {text}", flush=True)

    def measured(self, text):
        self.line("measured", text)

    def bound(self, ok, text):
        if not self.check:
            self.line("measured", text + ("" if ok else " (bound missed; not enforced here)"))
        elif ok:
            self.line("ok", text)
        else:
            self.failures += 1
            self.line("FAIL", text)


def docker_state(container):
    try:
        out = subprocess.run(
            ["docker", "inspect", "-f", "{{json .State}}", container],
            capture_output=True, text=True, timeout=30)
        return json.loads(out.stdout) if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


def cgroup_of(pid):
    """The memory cgroup directory of pid: v1's memory hierarchy, else v2's."""
    try:
        lines = open(f"/proc/{pid}/cgroup").read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") and os.path.isdir(f"/sys/fs/cgroup/memory{path}"):
            return f"/sys/fs/cgroup/memory{path}"
    for line in lines:
        number, _, path = line.split(":", 2)
        if number == "0" and os.path.isfile(f"/sys/fs/cgroup{path}/memory.current"):
            return f"/sys/fs/cgroup{path}"
    return None


def count(value):
    return "?" if value is None else str(value)


def after(report, client, args, readings, baseline):
    """What every scenario ends with: the server still there as the same process, its peak."""
    readings.read()
    peak = readings.best_peak()
    report.figures.update(peak=peak, max_held=client.max_held, max_threads=readings.max_threads,
                          oom_kills=readings.oom_kills())
    alive = not readings.gone
    if args.container:
        state = docker_state(args.container)
        if state is None:
            report.bound(False, f"docker inspect {args.container} failed")
            alive = False
        else:
            same = state.get("Pid") == args.server_pid
            alive = bool(state.get("Running")) and same
            report.figures.update(oom_killed=int(bool(state.get("OOMKilled"))), running=int(
                bool(state.get("Running"))))
            report.bound(alive and not state.get("OOMKilled"),
                         f"container running={str(state.get('Running')).lower()} "
                         f"oomkilled={str(state.get('OOMKilled')).lower()} "
                         f"pid={state.get('Pid')} (started as {args.server_pid}), "
                         f"exit code {state.get('ExitCode')}")
    else:
        report.bound(alive, f"server pid {args.server_pid} "
                     f"{'still running' if alive else 'gone'}"
                     + ("" if readings.oom_kills() is None else
                        f", cgroup OOM kills {readings.oom_kills()}"))
    report.figures["alive"] = int(alive)
    limit = args.max_peak_mib
    held = ("" if args.scenario == "served" else
            f", at most {client.max_held} answered connections held at once")
    last = " (the last read before the server went)" if not alive else ""
    report.bound(peak <= limit * 1048576, f"cgroup peak {mib(peak)} MiB{last} (bound {limit:.0f} "
                 f"MiB), baseline {mib(baseline)} MiB{held}")


def charge_line(report, what, held, usage, peak, baseline, client=None):
    if not held and client is not None and client.max_held:
        # The server failed on the way (an OOM kill): the largest usage sampled over the most
        # connections held at once, both reached just before the failure.
        held, usage = client.max_held, client.readings.max_usage
        what_read = "at most, sampled before the failure,"
    else:
        what_read = "at the reading"
    if not held or usage is None or baseline is None:
        report.measured(f"no charge per {what} connection ({held} held)")
        return
    per_usage = (usage - baseline) / held
    per_peak = (peak - baseline) / held
    report.figures.update({f"{what}_per_conn": int(per_usage), f"{what}_per_conn_peak":
                           int(per_peak), f"{what}_held": held})
    report.measured(f"charge per {what} connection: {kib(per_usage)} KiB "
                    f"((usage {mib(usage)} MiB {what_read} - baseline {mib(baseline)} MiB) / "
                    f"{held} held), {kib(per_peak)} KiB by the peak ({mib(peak)} MiB)")


def idle(client, args, report, readings):
    n = args.connections
    conns = [Conn("idle") for _ in range(n)]
    baseline = readings.read().usage
    started = time.monotonic()
    client.open_in_order(conns, args.window, lambda c: GET, lambda c: bool(c.statuses))
    last = time.monotonic()
    opened_s = last - started
    admitted = sum(1 for c in conns if c.statuses and c.statuses[0] == 200)
    report.figures.update(connections=n, admitted=admitted, opened_s=round(opened_s, 2))
    report.bound(admitted == n, f"(a) {n} keep-alive connections one after another "
                 f"({args.window} in flight) in {opened_s:.1f} s: {admitted} admitted and "
                 f"answered 200 (bound: all); first answers: {outcome_counts(conns)}")
    client.run_until(last + args.wait)  # the deliberate wait: what the server keeps when idle
    readings.read(fds=True)
    held = [c for c in conns if c.sock is not None and c.statuses == [200]]
    report.figures.update(held=len(held), threads=readings.threads, fds=readings.fds,
                          usage_held=readings.usage)
    report.bound(readings.threads is not None and readings.threads <= args.max_threads,
                 f"(a) {args.wait:.0f} s after the last: {len(held)} connections held idle, "
                 f"{count(readings.threads)} threads (bound {args.max_threads}), "
                 f"{count(readings.fds)} descriptors, cgroup usage {mib(readings.usage)} MiB")
    charge_line(report, "idle", len(held), readings.usage, readings.best_peak(), baseline,
                client)
    for conn in held:
        client.send(conn, GET)
    sent_s = time.monotonic() - last - args.wait
    answers = timed_answers(client, held, args.answer_within, 1)
    report.figures.update(answers.figures("second"))
    report.bound(len(held) == n and answers.in_time == n,
                 f"(a) second GET on all {len(held)} held at once (sent in {sent_s:.2f} s): "
                 f"{answers.in_time} answered 200 within {args.answer_within:.0f} s (bound: all "
                 f"{n}), {answers.rest()}")
    after(report, client, args, readings, baseline)


def mixed(client, args, report, readings):
    n = args.connections
    kinds = ("silent", "half", "whole")
    conns = [Conn(kinds[i % 3]) for i in range(n)]
    first = {"silent": b"", "half": GET[:HALF], "whole": GET}

    def settled(conn):
        if conn.group == "whole":
            return bool(conn.statuses)
        return conn.connected and not conn.out

    baseline = readings.read().usage
    started = time.monotonic()
    client.open_in_order(conns, args.window, lambda c: first[c.group], settled)
    last = time.monotonic()
    report.figures.update(connections=n, opened_s=round(last - started, 2))
    groups = {kind: [c for c in conns if c.group == kind] for kind in kinds}
    whole_ok = sum(1 for c in groups["whole"] if c.statuses[:1] == [200])
    report.bound(whole_ok == len(groups["whole"]),
                 f"(b) {n} connections in {last - started:.1f} s ({args.window} in flight): "
                 f"{len(groups['silent'])} silent, {len(groups['half'])} with half a head, "
                 f"{len(groups['whole'])} with a whole GET, of which {whole_ok} answered 200 "
                 f"(bound: all); "
                 + "; ".join(f"{k}: {outcome_counts(v)}" for k, v in groups.items()))
    client.run_until(last + args.wait)
    readings.read(fds=True)
    waiting = [c for c in groups["silent"] + groups["half"]
               if c.sock is not None and not c.statuses]
    held_whole = sum(1 for c in groups["whole"] if c.sock is not None and c.statuses == [200])
    report.figures.update(held=len(waiting) + held_whole, threads=readings.threads,
                          fds=readings.fds, usage_held=readings.usage)
    report.bound(readings.threads is not None and readings.threads <= args.max_threads,
                 f"(b) {args.wait:.0f} s after the last: {len(waiting)} unfinished heads and "
                 f"{held_whole} answered connections held, {count(readings.threads)} threads "
                 f"(bound {args.max_threads}), {count(readings.fds)} descriptors, cgroup usage "
                 f"{mib(readings.usage)} MiB")
    charge_line(report, "waiting", len(waiting) + held_whole, readings.usage,
                readings.best_peak(), baseline)
    finishing = time.monotonic()
    for conn in waiting:
        client.send(conn, GET if conn.group == "silent" else GET[HALF:])
    sent_s = time.monotonic() - finishing
    answers = timed_answers(client, waiting, args.answer_within, 0)
    still = sum(1 for c in groups["whole"] if c.sock is not None)
    report.figures.update(answers.figures("finished"), whole_still_open=still)
    expected = len(groups["silent"]) + len(groups["half"])
    report.bound(answers.in_time == expected and still == len(groups["whole"]),
                 f"(b) {len(waiting)} heads finished at once (in {sent_s:.2f} s): "
                 f"{answers.in_time} of {expected} answered 200 within "
                 f"{args.answer_within:.0f} s of their head's end (bound: all), "
                 f"{answers.rest()}; {still} of {len(groups['whole'])} answered ones still open "
                 f"(bound: all)")
    after(report, client, args, readings, baseline)


def served(client, args, report, readings):
    n = args.connections
    conns = [Conn("served") for _ in range(n)]
    baseline = readings.read().usage
    started = time.monotonic()
    client.open_in_order(conns, args.window, lambda c: POST,
                         lambda c: c.connected and not c.out)
    last = time.monotonic()
    client.run_until(last + args.hold)
    readings.read(fds=True)
    held = [c for c in conns if c.sock is not None]
    report.figures.update(connections=n, held=len(held), threads=readings.threads,
                          fds=readings.fds, usage_held=readings.usage,
                          opened_s=round(last - started, 2))
    report.measured(f"{n} connections each with a request in flight (POST, {len(POST)} of its "
                    f"head and body's {len(POST) + POST_LENGTH - 1024} bytes sent) in "
                    f"{last - started:.1f} s, held {args.hold:.0f} s: {len(held)} still open; "
                    f"{outcome_counts(conns)}; {count(readings.threads)} threads, "
                    f"{count(readings.fds)} descriptors, cgroup usage {mib(readings.usage)} MiB")
    charge_line(report, "served", len(held), readings.usage, readings.best_peak(), baseline)
    after(report, client, args, readings, baseline)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("scenario", choices=["idle", "mixed", "served"])
    parser.add_argument("--connections", type=int, help="10,000 (served: 200)")
    parser.add_argument("--window", type=int,
                        help="connections opening at a time (idle: 1, others: 64)")
    parser.add_argument("--wait", type=float, default=7.0,
                        help="seconds after the last is open before the readings")
    parser.add_argument("--hold", type=float, default=3.0, help="served: seconds held")
    parser.add_argument("--answer-within", type=float, default=3.0)
    parser.add_argument("--max-threads", type=int, default=32)
    parser.add_argument("--max-peak-mib", type=float, default=40.0)
    parser.add_argument("--deadline", type=float, default=180.0, help="whole run, seconds")
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--cgroup", help="the server's memory cgroup [from /proc/PID/cgroup]")
    parser.add_argument("--container", help="docker inspect it at the end")
    parser.add_argument("--check", action="store_true", help="enforce the bounds")
    parser.add_argument("--label", default="server")
    parser.add_argument("--stage", default="capacity")
    args = parser.parse_args()
    if args.connections is None:
        args.connections = 200 if args.scenario == "served" else 10_000
    if args.window is None:
        args.window = 1 if args.scenario == "idle" else 64
    if not 0 < args.port < 65536 or args.connections < 1 or args.window < 1:
        parser.error("bad port, connection count or window")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < args.connections + 64:
        sys.exit(f"docker-capacity: {args.connections + 64} descriptors needed, hard limit {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    cgroup = args.cgroup or cgroup_of(args.server_pid)
    if cgroup is None:
        sys.exit(f"docker-capacity: no memory cgroup found for pid {args.server_pid}")
    readings = Readings(args.server_pid, cgroup)
    report = Report(args)
    client = Client(args.port, args.deadline, readings)
    try:
        {"idle": idle, "mixed": mixed, "served": served}[args.scenario](
            client, args, report, readings)
        if client.time_left() <= 0:
            report.bound(False, f"the run hit its deadline of {args.deadline:.0f} s")
    finally:
        client.close_all()
    print(f"{args.stage}: figures: {args.label} {args.scenario} "
          + " ".join(f"{k}={v}" for k, v in report.figures.items()), flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
