#!/usr/bin/env python3
"""A restart under socket activation refuses nothing: this script holds the listening socket, as
systemd does for hellod.socket, and hands it to hellod as descriptor 3 (LISTEN_FDS=1, LISTEN_PID
its pid). Clients connect and GET over and over, on new connections and on keep-alive ones; the
first hellod gets SIGTERM and, once it has exited, a second one is started on the same socket, as
`systemctl restart hellod` does. Every connection must be accepted and every request answered
200: the stopping hellod leaves the socket listening and its backlog to the next one.

Usage: tests/systemd-restart.py BINARY
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

CLIENTS = 8
DEADLINE = 30


def start(binary):
    # exec keeps the shell's pid, which is the LISTEN_PID hellod checks.
    wrapper = 'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" --grace 5'
    hellod = subprocess.Popen(
        ["sh", "-c", wrapper, binary],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=(3,),
    )
    ready = hellod.stdout.readline()
    if " listening on " not in ready:
        sys.exit(f"systemd-restart: hellod did not start: {ready!r}")
    return hellod


def read_response(stream, buffered):
    """One response from `stream`: (status, closes, rest), or None if the connection ended."""
    while b"\r\n\r\n" not in buffered:
        chunk = stream.recv(4096)
        if not chunk:
            return None
        buffered += chunk
    head, _, rest = buffered.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(b":") for l in lines[1:])}
    length = int(headers.get(b"content-length", b"0"))
    while len(rest) < length:
        chunk = stream.recv(4096)
        if not chunk:
            return None
        rest += chunk
    return status, headers.get(b"connection", b"").lower() == b"close", rest[length:]


def client(port, keep_alive, until, results):
    """GETs until `until`; counts answers and failures (refused, or a request unanswered)."""
    answered = failed = 0
    while time.monotonic() < until:
        try:
            stream = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError as error:
            results.append((answered, failed + 1, f"connect: {error}"))
            return
        with stream:
            buffered = b""
            while time.monotonic() < until:
                stream.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                response = read_response(stream, buffered)
                if response is None or response[0] != 200:
                    results.append((answered, failed + 1, f"unanswered: {response}"))
                    return
                answered += 1
                _, closes, buffered = response
                if closes or not keep_alive:
                    break
    results.append((answered, failed, None))


def main():
    binary = sys.argv[1]
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    port = listener.getsockname()[1]
    # Descriptor 3, where sd_listen_fds() finds it; the script keeps its own copy, as systemd does.
    os.dup2(listener.fileno(), 3)
    first = start(binary)
    results = []
    until = time.monotonic() + 3
    clients = [
        threading.Thread(target=client, args=(port, i % 2 == 0, until, results))
        for i in range(CLIENTS)
    ]
    for thread in clients:
        thread.start()
    time.sleep(1)  # the load runs a while before the restart: part of the scenario
    stopped = time.monotonic()
    first.send_signal(signal.SIGTERM)
    code = first.wait(DEADLINE)
    exited = time.monotonic()
    second = start(binary)
    restarted = time.monotonic()
    for thread in clients:
        thread.join(DEADLINE)
    second.send_signal(signal.SIGTERM)
    second_code = second.wait(DEADLINE)
    answered = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    print(
        f"systemd-restart: measured: first hellod exited {code} {1000 * (exited - stopped):.0f} ms "
        f"after SIGTERM, the second served {1000 * (restarted - exited):.0f} ms later; "
        f"{answered} requests answered, {failed} failed"
    )
    problems = [r[2] for r in results if r[2]]
    if code != 0 or second_code != 0:
        sys.exit(f"systemd-restart: exit codes {code}, {second_code}")
    if failed or problems or answered == 0:
        sys.exit(f"systemd-restart: failures across the restart: {problems}")


if __name__ == "__main__":
    main()
