#!/usr/bin/env python3
"""`docker stop` of a busy container: keep-alive clients sending GET after GET and a POST
half-sent, across the stop of hellod running as PID 1 with `docker stop`'s default timeout (10 s,
hellod's default grace). Nothing is lost: every request written whole is answered, each
connection ends with an answer saying `Connection: close` (then a FIN) and a refused reconnect;
the POST's body, finished half a second after hellod took the signal, is answered 200; the
container exits with code 0, not killed.

Usage: docker-stop.py CONTAINER PORT [--clients N]

Run in the container's network namespace (tests/docker.sh does, with nsenter) against
127.0.0.1:PORT there; `docker` on PATH talks to the engine (DOCKER_HOST), for `docker stop`,
`docker logs` and `docker inspect`. Every wait has a deadline, so the script always ends (in
about 2 s when hellod does what it should). Prints one line of figures; exit status 0 if every
check held, 1 if not, 2 on a usage error.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
DEADLINE = 20.0
GREETING = b"Hello, World!"
SIGTERM_TAKEN = "SIGTERM received"  # what hellod prints when it takes the signal


def quiet_before_close():
    """hellod's QUIET_BEFORE_CLOSE (src/shutdown.rs), in seconds: a connection closed without a
    `Connection: close` answer must have been quiet that long."""
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "shutdown.rs")
    with open(source) as f:
        match = re.search(r"QUIET_BEFORE_CLOSE: Duration = Duration::from_(secs|millis)\((\d+)\)",
                          f.read())
    if not match:
        sys.exit("docker-stop: no QUIET_BEFORE_CLOSE in src/shutdown.rs")
    return int(match.group(2)) / (1 if match.group(1) == "secs" else 1000)


def read_response(sock, buffer):
    """One whole response from sock, after what buffer (a bytearray) holds: (status, headers,
    body), or None if the connection ended first; what follows it stays in buffer."""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(buffer) >= end + 4 + length:
                body = bytes(buffer[end + 4:end + 4 + length])
                del buffer[:end + 4 + length]
                return int(lines[0].split(" ")[1]), headers, body
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        buffer += chunk


def rest_of(sock):
    """What comes until the server closes, and how it closed: 'closed', 'reset' or 'open'."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
        return received, "closed"
    except ConnectionResetError:
        return received, "reset"
    except socket.timeout:
        return received, "open"


def ended(sock):
    """Whether the server has ended sock (closed, reset, or sent what no request asked for),
    without waiting."""
    timeout = sock.gettimeout()
    # A socket with a timeout waits for readability before it reads, whatever the flags.
    sock.setblocking(False)
    try:
        data = sock.recv(64, socket.MSG_PEEK)
    except BlockingIOError:
        return None
    except OSError as e:
        return str(e)
    finally:
        sock.settimeout(timeout)
    return "closed" if not data else f"{len(data)} bytes unasked for"


class Stop:
    signalled = None  # time.monotonic() just before `docker stop` was started


class Client(threading.Thread):
    """GET after GET on one keep-alive connection until hellod ends it; then one reconnect."""

    def __init__(self, port, quiet, ready):
        super().__init__(daemon=True)
        self.port, self.quiet, self.ready = port, quiet, ready
        self.written = self.answered = self.after_signal = 0
        self.last_answer = None
        self.end = None  # 'after close', or what went wrong
        self.problems = []

    def run(self):
        try:
            self.converse()
        except Exception as e:  # anything unforeseen is a failure, not a hung thread
            self.problems.append(f"{type(e).__name__}: {e}")
            self.ready.release()

    def converse(self):
        sock = socket.create_connection((HOST, self.port), timeout=DEADLINE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray()
        while True:
            how = ended(sock)
            if how is None:
                try:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                except OSError as e:
                    how = str(e)
            if how is not None:
                # Closed with nothing in flight: only after a quiet.
                if Stop.signalled is None:
                    self.problems.append(f"closed before the stop: {how}")
                else:
                    since = max(Stop.signalled, self.last_answer or Stop.signalled)
                    quiet = time.monotonic() - since
                    self.end = "closed with nothing in flight"
                    if quiet < self.quiet:
                        self.problems.append(f"closed without a `Connection: close` answer, "
                                             f"quiet only {quiet:.3f} s")
                break
            self.written += 1
            answer = read_response(sock, buffer)
            if answer is None:
                self.problems.append("a request written whole was never answered")
                break
            status, headers, body = answer
            if self.answered == 0:
                self.ready.release()
            self.answered += 1
            self.last_answer = time.monotonic()
            if Stop.signalled is not None:
                self.after_signal += 1
            if status != 200 or body != GREETING:
                self.problems.append(f"not the greeting: {status} {body!r}")
            if headers.get("connection", "").lower() == "close":
                more, how = rest_of(sock)
                self.end = "after close"
                if buffer or more or how != "closed":
                    self.problems.append(f"after the close answer: {how} after "
                                         f"{bytes(buffer) + more!r}")
                break
        sock.close()
        if Stop.signalled is None:
            self.problems.append("the connection ended before the stop")
            return
        try:
            socket.create_connection((HOST, self.port), timeout=5).close()
            self.problems.append("a reconnect after the close was accepted")
        except ConnectionRefusedError:
            pass


def unread_at_server(port, client_port):
    """Bytes the server's end of the connection has not read, from this namespace's socket
    tables: tcp6 too, where hellod listens on [::] and takes IPv4 as mapped addresses."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, remote = fields[1].split(":")[-1], fields[2].split(":")[-1]
                if int(local, 16) == port and int(remote, 16) == client_port:
                    return int(fields[4].split(":")[1], 16)
    return None


def wait_until(what, condition, limit=DEADLINE):
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"docker-stop: timed out waiting for {what}")
        time.sleep(0.01)


def main():
    parser = argparse.ArgumentParser(usage=__doc__)
    parser.add_argument("container")
    parser.add_argument("port", type=int)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    quiet = quiet_before_close()

    ready = threading.Semaphore(0)
    clients = [Client(args.port, quiet, ready) for _ in range(args.clients)]
    for client in clients:
        client.start()
    for _ in clients:
        if not ready.acquire(timeout=DEADLINE):
            problems = [p for c in clients for p in c.problems]
            sys.exit(f"docker-stop: a client had no first answer; problems: {problems}")

    post = socket.create_connection((HOST, args.port), timeout=DEADLINE)
    post.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    post.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n" + b"a" * 50)
    client_port = post.getsockname()[1]
    wait_until("hellod to read the POST's head and half its body",
               lambda: unread_at_server(args.port, client_port) == 0)

    logs = subprocess.Popen(["docker", "logs", "-f", args.container],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    taken = threading.Event()
    threading.Thread(target=lambda: [taken.set() for line in logs.stdout
                                     if SIGTERM_TAKEN in line], daemon=True).start()
    Stop.signalled = time.monotonic()
    stopper = subprocess.Popen(["docker", "stop", args.container], stdout=subprocess.DEVNULL)
    failures = []
    try:
        if not taken.wait(DEADLINE):
            sys.exit("docker-stop: hellod never said it took SIGTERM")
        # The scenario: the rest of the body is slow to come.
        time.sleep(0.5)
        if ended(post) is not None:
            failures.append(f"the POST's connection before the rest of its body: {ended(post)}")
        post.sendall(b"a" * 50)
        answer = read_response(post, bytearray())
        rest, how = rest_of(post)
        if answer is None:
            failures.append("the POST was not answered")
        else:
            status, headers, body = answer
            if status != 200 or body != GREETING:
                failures.append(f"the POST's answer: {status} {body!r}")
            if headers.get("connection", "").lower() != "close":
                failures.append("the POST's answer does not say `Connection: close`")
            if rest or how != "closed":
                failures.append(f"after the POST's answer: {how} after {rest!r}")
        try:
            stopper.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sys.exit("docker-stop: docker stop did not end in 30 s")
        took = time.monotonic() - Stop.signalled
        for client in clients:
            client.join(timeout=DEADLINE)
        exit_code = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.ExitCode}}", args.container],
            capture_output=True, text=True, timeout=DEADLINE).stdout.strip()
    finally:
        for process in (stopper, logs):
            if process.poll() is None:
                process.kill()
                process.wait()

    written = sum(c.written for c in clients)
    answered = sum(c.answered for c in clients)
    endings = {}
    for client in clients:
        endings[client.end] = endings.get(client.end, 0) + 1
    print(f"docker stop under load: {len(clients)} keep-alive clients wrote {written} requests, "
          f"{answered} answered, {sum(c.after_signal for c in clients)} after the signal; "
          f"connections ended: {endings}; the half-sent POST: "
          f"{answer[0] if answer else 'unanswered'}; docker stop took {took:.3f} s; "
          f"exit code {exit_code}")
    for i, client in enumerate(clients):
        if client.is_alive():
            failures.append(f"client {i} still running")
        if client.written != client.answered:
            failures.append(f"client {i}: {client.written} written whole, {client.answered} "
                            f"answered")
        failures.extend(f"client {i}: {problem}" for problem in client.problems)
    if exit_code != "0":
        failures.append(f"exit code {exit_code} (137: killed at the end of the timeout)")
    for failure in failures:
        print(f"docker-stop: FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
