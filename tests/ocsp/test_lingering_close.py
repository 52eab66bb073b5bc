"""An oversized POST gets its 413, even when the client is still sending the body (issue #11, 3).

The server answers 413 on the Content-Length. Were it to close at once with the body still
arriving, the kernel would reset the connection and the client, busy sending, would often
lose the answer. The server half-closes and drains the declared body (bounded) instead:
real sockets, 1 MiB and 8 MiB bodies, 20 tries each, every try reads the 413."""

from __future__ import annotations

import socket
import time

import pytest

from serving import serving


class Small:
    max_body = 64 * 1024

    def handle(self, method, path, body):
        return 200, [(b"content-type", b"text/plain")], b"%d" % len(body)


@pytest.fixture(scope="module")
def server():
    with serving(Small(), request_timeout=5.0) as (srv, port):
        yield srv, port


def _post_and_read(port: int, size: int) -> bytes:
    """POST ``size`` bytes as a plain client does (send the whole body, then read), and read
    the answer until the server's end of the stream. A reset, while sending or reading, fails."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\n"
                  b"Content-Length: %d\r\n\r\n" % size)
        chunk = b"\x30" * 65536
        sent = 0
        try:
            for _ in range(size // len(chunk)):
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise AssertionError(f"{type(e).__name__} after sending {sent} of {size} body bytes") from e
        out = b""
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError as e:
                raise AssertionError(f"connection reset after {len(out)} bytes of the answer") from e
            if not data:
                return out
            out += data
    finally:
        s.close()


@pytest.mark.parametrize("size", [1024 * 1024, 8 * 1024 * 1024])
def test_oversized_post_always_reads_413(server, size):
    _, port = server
    for attempt in range(20):
        out = _post_and_read(port, size)
        assert out.startswith(b"HTTP/1.1 413 "), (attempt, out[:80])
        assert b"connection: close" in out.lower()


def test_draining_is_bounded_in_bytes_and_time(server):
    srv, port = server
    # a client that declares a huge body and keeps sending: cut off after drain_bytes ...
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n")
    sent, t0 = 0, time.monotonic()
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        while time.monotonic() - t0 < 30:
            s.sendall(b"\0" * 65536)
            sent += 65536
    assert sent < srv.drain_bytes + 16 * 1024 * 1024  # the drain bound, plus what socket buffers held
    s.close()
    # ... and one that sends nothing more: closed after drain_seconds
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n")
    t0 = time.monotonic()
    assert s.recv(4096).startswith(b"HTTP/1.1 413")
    assert s.recv(4096) == b""  # half-closed: the end of the answer comes at once
    s.sendall(b"more")  # the server still reads (drains) ...
    time.sleep(srv.drain_seconds + 1.5)
    with pytest.raises((BrokenPipeError, ConnectionResetError)):  # ... until the lingering ends
        for _ in range(50):
            s.sendall(b"\0" * 65536)
            time.sleep(0.02)
    assert time.monotonic() - t0 < srv.drain_seconds + 10
    s.close()


def test_still_serving_after(server):
    _, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
        out = b""
        while chunk := s.recv(4096):
            out += chunk
        assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"3")
