"""unica's HTTP server (unica.ocsp.httpserver) over real sockets on 127.0.0.1: limits,
timeouts, pipelining, HTTP/1.0 and HEAD -- hostile or odd clients never stop it serving."""

from __future__ import annotations

import socket
import time

import pytest

from serving import serving


class Echo:
    """A tiny app: the body's length back, and the method and path."""

    max_body = 1000

    def handle(self, method, path, body):
        return 200, [(b"content-type", b"text/plain")], b"%s %s %d" % (method.encode(), path, len(body))


@pytest.fixture(scope="module")
def server():
    with serving(Echo(), keep_alive=2.0, request_timeout=1.0, max_header_bytes=2048) as (srv, port):
        yield port


def _conn(port) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s


def _read_all(s: socket.socket, limit: float = 5) -> bytes:
    """Everything until the server closes the connection."""
    s.settimeout(limit)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def _read_responses(s: socket.socket, n: int) -> list[tuple[int, dict, bytes]]:
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {len(out)} responses"
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:])}
        length = int(hdrs[b"content-length"])
        while len(buf) < length:
            buf += s.recv(65536)
        out.append((int(lines[0].split()[1]), hdrs, buf[:length]))
        buf = buf[length:]
    return out


def _ok(port) -> None:
    with _conn(port) as s:
        s.sendall(b"GET /still HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_responses(s, 1)[0][0] == 200


def test_keep_alive_pipelining_head_and_date(server):
    with _conn(server) as s:
        s.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                  b"GET /b%2Fc HTTP/1.1\r\nHost: x\r\n\r\n")
        a, b = _read_responses(s, 2)
        assert a[2] == b"POST /a 3" and b[2] == b"GET /b%2Fc 0"  # in order; the path as sent
        assert b"date" in a[1] and a[1].get(b"connection") is None
        s.sendall(b"HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")  # HEAD: headers only
        assert b"content-length: 9" in head.lower()  # of "HEAD /c 0"


def test_http10_closes_unless_keep_alive(server):
    with _conn(server) as s:
        s.sendall(b"GET /x HTTP/1.0\r\n\r\n")
        assert _read_all(s).startswith(b"HTTP/1.0 200")  # the server closed it
    with _conn(server) as s:
        s.sendall(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        (status, hdrs, _), = _read_responses(s, 1)
        assert status == 200 and hdrs[b"connection"] == b"keep-alive"
        s.sendall(b"GET /y HTTP/1.0\r\n\r\n")
        assert b"GET /y 0" in _read_all(s)


def test_body_limits_answer_413_and_close_without_reading_on(server):
    with _conn(server) as s:  # declared too large: answered before any body is sent
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        out = _read_all(s)
        assert out.startswith(b"HTTP/1.1 413") and b"connection: close" in out
    with _conn(server) as s:  # chunked: as soon as the limit is passed
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            s.sendall(b"200\r\n" + b"z" * 512 + b"\r\n")
        assert _read_all(s).startswith(b"HTTP/1.1 413")
    _ok(server)


@pytest.mark.parametrize("raw, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431),
    (b"GET /" + b"p" * 5000 + b" HTTP/1.1\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 400),
])
def test_malformed_or_huge_requests_get_4xx_and_close(server, raw, status):
    with _conn(server) as s:
        s.sendall(raw)
        out = _read_all(s)
        assert out.startswith(b"HTTP/1.1 %d" % status), out[:80]
    _ok(server)


def test_stalled_and_idle_connections_are_closed(server):
    stalled, idle = _conn(server), _conn(server)
    stalled.sendall(b"GET / HTTP/1.1\r\nHost:")  # and nothing more
    idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    _read_responses(idle, 1)
    _ok(server)  # others are served meanwhile
    t0 = time.monotonic()
    assert _read_all(stalled, limit=10) == b""  # closed, not answered
    assert time.monotonic() - t0 < 4  # request_timeout 1 s (swept every 0.5 s)
    assert _read_all(idle, limit=10) == b""
    assert time.monotonic() - t0 < 6  # keep_alive 2 s
    stalled.close()
    idle.close()


def test_a_client_that_never_reads_does_not_stop_the_server(server):
    s = _conn(server)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    req = b"GET /" + b"r" * 1000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    s.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # pipeline until the server stops reading us
        try:
            sent += s.send(req * 16)
        except BlockingIOError:
            break
    assert sent < 200 * 1024 * 1024
    _ok(server)
    s.close()
