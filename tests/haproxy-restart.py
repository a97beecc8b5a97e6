#!/usr/bin/env python3
"""A rolling restart behind HAProxy under load: two hellod instances behind HAProxy 2.6
(roundrobin, `http-reuse always`, `option httpchk GET /` every 200 ms, HAProxy's default
retries), wrk through HAProxy at 128 connections for 8 s. Two seconds in, one instance gets
SIGTERM; a second after it exits, a new one starts on its port. Asserted: wrk saw no socket error
and no non-2xx answer, and the stopped instance exited 0. Then the same with SIGKILL instead,
printed for comparison only: what a stop that loses what it had in hand costs behind a proxy.

Usage: haproxy-restart.py HELLOD_BINARY

Everything listens on 127.0.0.1, on ports picked here; HAProxy's config, its stats socket and
the logs live in a temporary directory. Every wait has a deadline and every process started here
is killed by its PID at the end, so the script always ends (in about 25 s). Exit status 0 if the
assertions held, 1 if not, 2 if something it needs is missing.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.stdout.reconfigure(line_buffering=True)

HOST = "127.0.0.1"
WRK_SECONDS = 8
STOP_AT = 2.0  # seconds into the load
RESTART_AFTER = 1.0  # seconds after the stopped instance exits
# hellod's default grace is 10 s; it must be gone well before that.
EXIT_WITHIN = 15.0
DEADLINE = 20.0  # for anything that should take a moment: readiness, a server coming up

# HAProxy's own defaults for everything not named here; `retries` in particular stays at 3, on
# the same server (no `option redispatch`), each after a turn-around of min(timeout connect,
# 1 s) when the connect was refused. That is enough: a request first refused at the signal is
# retried 1, 2 and 3 s later, so it is served if the port listens again within 3 s, and it
# refuses from the signal until the new instance listens, the stop's length plus the 1 s wait
# (and a few ms to start). hellod's stop ends at once when HAProxy's connections to it are busy
# (each gets a `Connection: close` answer), and a quiet second after the signal at most for
# those HAProxy keeps idle: about 2 s in all, so the stop has some 0.9 s in hand. HAProxy marks
# the server down at its third refused check (the default `fall`), some 600 ms in, and sends it
# nothing more; a request already sent on a connection hellod keeps is answered, not lost.
# `option redispatch` is left off: not needed, and without it a stop that lasts too long shows.
CONFIG = """\
global
    maxconn 4096
    stats socket {work}/stats.sock level admin

defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s

frontend web
    bind {host}:{port}
    default_backend hellods

backend hellods
    balance roundrobin
    http-reuse always
    option httpchk GET /
    server a {host}:{port_a} check inter 200ms
    server b {host}:{port_b} check inter 200ms
"""


class Failure(Exception):
    pass


def free_port():
    """A port free now on HOST (the kernel's pick), for HAProxy to bind a moment later."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def wait_until(what, condition, limit=DEADLINE):
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise Failure(f"timed out waiting for {what}")
        time.sleep(0.02)


class Processes:
    """Every process started here, killed by PID at the end if still running."""

    def __init__(self):
        self.started = []

    def start(self, args, **kwargs):
        process = subprocess.Popen(args, **kwargs)
        self.started.append(process)
        return process

    def end_all(self):
        for process in self.started:
            if process.poll() is None:
                process.kill()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


class Hellod:
    """One hellod instance; its stdout read on a thread, for the readiness line."""

    def __init__(self, processes, binary, port, log):
        self.process = processes.start(
            [binary, "--listen", f"{HOST}:{port}", "--workers", "2"],
            stdout=subprocess.PIPE, stderr=log, text=True, env={})
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()
        wait_until("hellod's readiness line",
                   lambda: self.lines or self.process.poll() is not None)
        match = re.search(r" listening on http://[^ ]+:(\d+) ", self.lines[0] if self.lines else "")
        if not match:
            raise Failure(f"hellod did not start: {self.lines}, exit {self.process.poll()}")
        self.port = int(match.group(1))

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))


def haproxy_stat(work):
    """HAProxy's `show stat` as a dict of (proxy, server) to a dict of its fields."""
    with socket.socket(socket.AF_UNIX) as stats:
        stats.settimeout(2)
        stats.connect(f"{work}/stats.sock")
        stats.sendall(b"show stat\n")
        text = b""
        while chunk := stats.recv(65536):
            text += chunk
    lines = text.decode().splitlines()
    names = lines[0].lstrip("# ").split(",")
    rows = {}
    for line in lines[1:]:
        if line:
            row = dict(zip(names, line.split(",")))
            rows[(row["pxname"], row["svname"])] = row
    return rows


def server_up(work, name):
    try:
        return haproxy_stat(work)[("hellods", name)]["status"] == "UP"
    except (OSError, KeyError, IndexError):
        return False


def wrk_figures(text):
    """Requests, non-2xx answers and socket errors by kind from wrk's summary."""
    requests = re.search(r"(\d+) requests in ", text)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       text)
    return {
        "requests": int(requests.group(1)) if requests else None,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": dict(zip(("connect", "read", "write", "timeout"),
                                  map(int, errors.groups()))) if errors else {},
    }


def restart_under_load(binary, how, work):
    """One run: HAProxy and two hellods, wrk through it, instance a stopped by `how` (a signal)
    and replaced. Returns what was measured."""
    processes = Processes()
    log = open(f"{work}/{how.name}.log", "w")
    try:
        a = Hellod(processes, binary, 0, log)
        b = Hellod(processes, binary, 0, log)
        port = free_port()
        config = f"{work}/haproxy.cfg"
        with open(config, "w") as f:
            f.write(CONFIG.format(work=work, host=HOST, port=port, port_a=a.port, port_b=b.port))
        haproxy = processes.start(["haproxy", "-db", "-f", config], stdout=log, stderr=log)
        wait_until("both servers up in HAProxy",
                   lambda: haproxy.poll() is None and server_up(work, "a") and server_up(work, "b"))

        wrk = processes.start(
            ["wrk", "-t2", "-c128", f"-d{WRK_SECONDS}s", "--timeout", "5s",
             f"http://{HOST}:{port}/"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started = time.monotonic()
        # The scenario: two seconds of load before the stop (wrk's own clock runs alike).
        time.sleep(STOP_AT)
        signalled = time.monotonic()
        a.process.send_signal(how)
        try:
            exit_code = a.process.wait(timeout=EXIT_WITHIN)
        except subprocess.TimeoutExpired:
            raise Failure(f"the instance sent {how.name} did not exit within {EXIT_WITHIN} s")
        exited = time.monotonic()
        # The scenario: the new instance a second after the old one has gone.
        time.sleep(RESTART_AFTER)
        replacement = Hellod(processes, binary, a.port, log)
        listening = time.monotonic()
        wait_until("the new instance up in HAProxy", lambda: server_up(work, "a"))
        back_up = time.monotonic()
        try:
            wrk_text, _ = wrk.communicate(timeout=WRK_SECONDS + DEADLINE)
        except subprocess.TimeoutExpired:
            raise Failure("wrk did not end")
        stat = haproxy_stat(work)
        if replacement.process.poll() is not None or b.process.poll() is not None:
            raise Failure("a hellod instance died during the run")
        return {
            "how": how.name,
            "exit_code": exit_code,
            "stop_took": exited - signalled,
            "refusing": listening - signalled,
            "back_up": back_up - signalled,
            "signalled_at": signalled - started,
            "wrk": wrk_figures(wrk_text),
            "wrk_text": wrk_text,
            "retries": {name: stat[("hellods", name)].get("wretr") for name in ("a", "b")},
            "redispatches": stat[("hellods", "BACKEND")].get("wredis"),
            "backend_5xx": stat[("hellods", "BACKEND")].get("hrsp_5xx"),
        }
    finally:
        processes.end_all()
        log.close()


def report(run):
    wrk = run["wrk"]
    print(f"haproxy restart ({run['how']}): stopped instance exit {run['exit_code']} after "
          f"{run['stop_took']:.3f} s; its port refused for {run['refusing']:.3f} s; back up in "
          f"HAProxy {run['back_up']:.3f} s after the signal; wrk: {wrk['requests']} requests, "
          f"{wrk['non_2xx']} non-2xx, socket errors {wrk['socket_errors'] or 'none'}; HAProxy: "
          f"retries {run['retries']}, redispatches {run['redispatches']}, backend 5xx "
          f"{run['backend_5xx']}")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    binary = os.path.abspath(sys.argv[1])
    for command in ("haproxy", "wrk"):
        if not shutil.which(command):
            print(f"haproxy-restart: {command} not found (tests/install-deps stress)",
                  file=sys.stderr)
            return 2
    work = tempfile.mkdtemp(prefix="hellod-haproxy.")
    try:
        try:
            stopped = restart_under_load(binary, signal.SIGTERM, work)
        except Failure as failure:
            print(f"haproxy restart (SIGTERM): FAIL: {failure}; the log's last lines:",
                  file=sys.stderr)
            with open(f"{work}/SIGTERM.log") as log:
                print("".join(log.readlines()[-20:]), file=sys.stderr)
            return 1
        report(stopped)
        failures = []
        if stopped["exit_code"] != 0:
            failures.append(f"the stopped instance exited {stopped['exit_code']}")
        if stopped["wrk"]["requests"] is None:
            failures.append(f"no summary from wrk: {stopped['wrk_text']}")
        if stopped["wrk"]["non_2xx"]:
            failures.append(f"{stopped['wrk']['non_2xx']} non-2xx answers")
        if any(stopped["wrk"]["socket_errors"].values()):
            failures.append(f"socket errors {stopped['wrk']['socket_errors']}")
        try:
            report(restart_under_load(binary, signal.SIGKILL, work))
        except Failure as failure:
            print(f"haproxy restart (SIGKILL, not asserted): {failure}")
        if failures:
            print("haproxy restart (SIGTERM): FAIL: " + "; ".join(failures), file=sys.stderr)
            print(stopped["wrk_text"], file=sys.stderr)
            return 1
        print("haproxy restart (SIGTERM): ok")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
