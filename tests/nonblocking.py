"""What the event-loop clients of tests/docker-*.py share: reading a non-blocking socket."""

import socket


def connect_failed(sock):
    """Whether a non-blocking connect, now writable, failed."""
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0


def receive(sock):
    """What a readable non-blocking socket has: bytes, None for nothing yet, or how the
    connection ended: "eof" or "reset"."""
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return None
    except OSError:
        return "reset"
    return data or "eof"
