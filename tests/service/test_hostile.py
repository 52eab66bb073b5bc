"""Hostile input against the real ``unica serve`` (TLS on 127.0.0.1): bodies, headers, request
lines, slow clients, TLS edge cases. Whatever comes in, the service answers a 4xx problem (or
closes the connection), never a 5xx, never a traceback; it stays up and answers the next client;
and nothing it was sent lands in the database.

The service under test has small limits so the tests are quick: a 4 KiB body, 2 s for the headers,
2 s for a request."""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import subprocess
import time

import pytest

from tests.service.conftest import copy_service_ca, expired_cert, start_service

MAX_BODY = 4096


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, _service_template):
    j = copy_service_ca(_service_template, tmp_path_factory.mktemp("hostile"))
    svc = start_service(j, "--max-body", str(MAX_BODY), "--header-timeout", "2", "--request-timeout", "2")
    yield svc
    log = svc.log_text()
    svc.stop()
    assert "Traceback" not in log, log  # no request made the service fail (a 500 logs its traceback)


@pytest.fixture(autouse=True)
def _still_serving(request):
    yield
    if "hostile" in request.fixturenames:
        svc = request.getfixturevalue("hostile")
        assert svc.request("GET", "/healthz").status == 200, "the service stopped answering"


def _tls(svc, timeout: float = 10) -> ssl.SSLSocket:
    return ssl.create_default_context(cafile=str(svc.ca_pem)).wrap_socket(
        socket.create_connection((svc.host, svc.port), timeout=timeout), server_hostname=svc.host)


def _exchange(svc, data: bytes, *, wait: float = 10, chunks=None, pause: float = 0) -> bytes:
    """Send ``data`` (or ``chunks`` with ``pause`` between them), read until the server closes."""
    sock = _tls(svc, timeout=wait)
    out = b""
    try:
        try:
            for part in (chunks or [data]):
                sock.sendall(part)
                if pause:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            out += chunk
            if _complete(out):
                break
    finally:
        sock.close()
    return out


def _complete(data: bytes) -> bool:
    """One whole response (its Content-Length read): no need to wait for the server to close."""
    head, sep, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    return bool(sep and m) and len(body) >= int(m.group(1))


def _status(data: bytes) -> int:
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    assert m, data[:300]
    return int(m.group(1))


def _problem(data: bytes) -> dict:
    head, _, body = data.partition(b"\r\n\r\n")
    assert re.search(rb"(?i)content-type: application/problem\+json", head), data[:400]
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    return json.loads(body[:int(m.group(1))] if m else body)


def _refused(data: bytes, status: int, slug: str | None = None) -> dict:
    assert b"Traceback" not in data
    assert _status(data) == status, data[:400]
    p = _problem(data)
    if slug:
        assert p["type"] == f"urn:unica:problem:{slug}", p
    return p


def _post(path: str, body: bytes, *, ctype: str = "application/json", extra: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n").encode() + extra + b"\r\n" + body


# --- bodies ------------------------------------------------------------------------------------------


def test_oversized_body_with_content_length(hostile):
    out = _exchange(hostile, _post("/api/v1/applications/self-service", b"x" * (MAX_BODY + 1)))
    _refused(out, 413, "body-too-large")


def test_oversized_body_without_content_length(hostile):
    """Chunked: no length to check first, so the bytes are counted as they arrive."""
    chunk = b"y" * 1024
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"
    head = (b"POST /api/v1/applications/self-service HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    out = _exchange(hostile, head + body)
    _refused(out, 413, "body-too-large")
    for path in ("/.well-known/est/simpleenroll", "/api/v1/enterprises"):
        out = _exchange(hostile, head.replace(b"/api/v1/applications/self-service", path.encode()) + body)
        assert _status(out) in (401, 413), out[:300]  # EST/officer routes may refuse the client first
        assert b"Traceback" not in out


def test_lying_content_length(hostile):
    out = _exchange(hostile, b"POST /api/v1/enterprises HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    assert _status(out) == 400 and b"Traceback" not in out
    out = _exchange(hostile, b"POST /api/v1/enterprises HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
    assert _status(out) == 400
    out = _exchange(hostile, b"POST /api/v1/enterprises HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                             b"Content-Length: 7\r\n\r\nabcdefg")
    assert _status(out) == 400


@pytest.mark.parametrize("body,ctype", [
    (b'{"uscc": ', "application/json"),  # cut off
    (b"\xff\xfe\x00garbage", "application/json"),  # not UTF-8
    (b"[" * 3000 + b"]" * 3000, "application/json"),  # deep nesting, within the size limit
    (b'{"uscc": "91350100M000100Y43", "uscc": 5}', "application/json"),  # duplicate key, wrong type
    (b"uscc=1&name=2", "application/x-www-form-urlencoded"),  # not the content type
    (b"<xml/>", "text/xml"),
    (b"null", "application/json"),
    (b"1e999999", "application/json"),
])
def test_garbage_bodies_and_content_types(hostile, body, ctype):
    for path in ("/api/v1/applications/self-service", "/api/v1/applications/a000000000000/status"):
        out = _exchange(hostile, _post(path, body, ctype=ctype))
        status = _status(out)
        assert 400 <= status < 500 and b"Traceback" not in out, out[:400]
        _problem(out)
    out = _exchange(hostile, _post("/.well-known/est/simpleenroll", body, ctype=ctype))
    assert 400 <= _status(out) < 500 and b"Traceback" not in out, out[:400]


def _counts(svc) -> tuple:
    return tuple(svc.sql(f"SELECT count(*) FROM {t}")[0][0] for t in ("applications", "enterprises", "certificates"))


def test_nothing_lands_in_the_database(hostile):
    before = _counts(hostile)
    for body in (b'{"uscc": "x"}', b"{}", b'{"uscc": "91350100M000100Y43", "name": 1}', b"x" * (MAX_BODY + 10)):
        _exchange(hostile, _post("/api/v1/applications/self-service", body))
    assert _counts(hostile) == before


# --- headers and request lines ------------------------------------------------------------------------


def test_huge_headers_are_refused(hostile):
    out = _exchange(hostile, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
    _refused(out, 431, "headers-too-large")
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(500))
    out = _exchange(hostile, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    _refused(out, 431, "headers-too-large")
    out = _exchange(hostile, b"GET /healthz?" + b"q" * 40000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    _refused(out, 431, "headers-too-large")


@pytest.mark.parametrize("line", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"\x00\x01\x02\x03\r\n\r\n",
    b"GET /\x7fhealthz HTTP/1.1\r\nHost: x\r\n\r\n",
])
def test_malformed_requests(hostile, line):
    out = _exchange(hostile, line)
    if out:  # a 400 problem, or the connection closed
        assert _status(out) == 400 and b"Traceback" not in out, out[:300]
        _problem(out)


def test_odd_paths_and_methods(hostile):
    for path in ("/%ff%fe", "/..%2f..%2fetc/passwd", "/.well-known/est/%00/cacerts", "/api/v1/enterprises/%", "//"):
        out = _exchange(hostile, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert 400 <= _status(out) < 500 and b"Traceback" not in out, (path, out[:300])
    out = _exchange(hostile, b"BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert 400 <= _status(out) < 500
    out = _exchange(hostile, b"POST /api/v1/enterprises HTTP/1.1\r\nHost: x\r\nIdempotency-Key: \x01\x02\r\n"
                             b"Content-Length: 2\r\n\r\n{}")
    assert 400 <= _status(out) < 500


def test_http_1_0(hostile):
    out = _exchange(hostile, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b'{"status":"ok"}'), out  # and the server closed
    out = _exchange(hostile, b"POST /api/v1/applications/self-service HTTP/1.0\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 2\r\n\r\n{}")
    assert 400 <= _status(out) < 500


# --- slow clients ------------------------------------------------------------------------------------


def test_slowloris_headers_are_cut_off(hostile):
    """Headers trickled byte by byte: a 408 and the connection closed once the header time (2 s)
    is up, not when the client is done."""
    t0 = time.monotonic()
    sock = _tls(hostile, timeout=20)
    got, closed_at = b"", None
    try:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 400
        sock.settimeout(0.05)
        for i in range(len(request)):
            try:
                sock.sendall(request[i:i + 1])
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                closed_at = time.monotonic()
                break
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except (ConnectionResetError, ssl.SSLError, OSError):
                closed_at = time.monotonic()
                break
            got += chunk
            if not chunk or _complete(got):
                closed_at = time.monotonic()
                break
    finally:
        sock.close()
    assert closed_at is not None and closed_at - t0 < 6, "the slow client was not cut off"
    if got:
        _refused(got, 408, "client-too-slow")


def test_an_idle_connection_is_closed(hostile):
    t0 = time.monotonic()
    sock = _tls(hostile, timeout=20)
    try:
        assert sock.recv(1024) == b""  # closed by the server, nothing said
    except (ConnectionResetError, ssl.SSLError):
        pass
    finally:
        sock.close()
    assert time.monotonic() - t0 < 10


def test_slow_body_is_bounded(hostile):
    t0 = time.monotonic()
    head = (b"POST /api/v1/applications/self-service HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n")
    out = _exchange(hostile, b"", chunks=[head] + [b" "] * 40, pause=0.1, wait=15)
    _refused(out, 408, "client-too-slow")
    assert time.monotonic() - t0 < 10


# --- TLS ----------------------------------------------------------------------------------------------


def test_plain_http_to_the_tls_port(hostile):
    sock = socket.create_connection((hostile.host, hostile.port), timeout=10)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            out = sock.recv(65536)
        except ConnectionResetError:
            out = b""
    finally:
        sock.close()
    assert not out.startswith(b"HTTP/1.1 5") and b"Traceback" not in out, out


def test_old_tls_versions_are_refused(hostile):
    ctx = ssl.create_default_context(cafile=str(hostile.ca_pem))
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with pytest.warns(DeprecationWarning):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        ctx.wrap_socket(socket.create_connection((hostile.host, hostile.port), timeout=10),
                        server_hostname=hostile.host).close()


def test_garbage_tls_handshake(hostile):
    sock = socket.create_connection((hostile.host, hostile.port), timeout=10)
    try:
        sock.sendall(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00" + b"\x00" * 100)
        try:
            out = sock.recv(65536)
        except ConnectionResetError:
            out = b""
    finally:
        sock.close()
    assert not out.startswith(b"HTTP")


def test_no_client_certificate_where_one_is_needed(hostile):
    for method, path in (("GET", "/api/v1/me"), ("GET", "/api/v1/me/certificates"), ("GET", "/api/v1/enterprises"),
                         ("POST", "/.well-known/est/simplereenroll")):
        r = hostile.request(method, path, body=b"" if method == "POST" else None)
        assert r.status == 401, (path, r.body)
        assert r.problem["status"] == 401


def test_an_expired_client_certificate(hostile):
    """Past its notAfter: the handshake goes through (OpenSSL's time check is the service's), and
    the service refuses it with a problem, audited with the client's address and why."""
    old = expired_cert(hostile.joint)
    r = hostile.request("GET", "/whoami", cert=old)
    assert r.status == 403 and r.problem["type"] == "urn:unica:problem:client-certificate", r.body
    assert "not valid now" in r.problem["detail"]
    r = hostile.request("GET", "/api/v1/me", cert=old)
    assert r.status in (401, 403), r.body
    rows = hostile.sql("SELECT details FROM audit_log WHERE event = 'service.client_refused'")
    assert any("not valid now" in json.dumps(d) and "127.0.0.1" in json.dumps(d) for (d,) in rows), rows


def test_curl_with_a_certificate_of_another_ca(hostile, tmp_path):
    from tests.service.test_core import other_ca_cert

    mallory = other_ca_cert(tmp_path)
    p = hostile.curl("/whoami", "--cert", str(mallory.cert), "--key", str(mallory.key))
    assert p.returncode != 0  # the handshake fails: no HTTP answer at all
    assert b"HTTP/1.1 5" not in p.stdout


def test_many_connections_at_once(hostile):
    socks = []
    try:
        for _ in range(50):
            socks.append(socket.create_connection((hostile.host, hostile.port), timeout=10))
        r = hostile.request("GET", "/healthz")
        assert r.status == 200
    finally:
        for s in socks:
            s.close()


def test_openssl_s_client_sees_the_unica_certificate(hostile):
    p = subprocess.run(["openssl", "s_client", "-connect", f"{hostile.host}:{hostile.port}", "-CAfile",
                        str(hostile.ca_pem), "-verify_return_error", "-verify_ip", "127.0.0.1", "-brief"],
                       input=b"", capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert b"Verification: OK" in p.stderr or b"Verify return code: 0" in p.stdout + p.stderr


def test_above_the_connection_limit_a_problem_with_retry_after(_service_template, tmp_path):
    """--max-connections 3: with three TLS connections open and idle, a fourth client's request
    gets 503 as a problem document with Retry-After (not uvicorn's plain text), counted in the
    metrics; once they close, requests are served again."""
    j = copy_service_ca(_service_template, tmp_path)
    svc = start_service(j, "--max-connections", "3")
    idle = []
    try:
        for _ in range(3):
            idle.append(_tls(svc))
            idle[-1].do_handshake()
        deadline = time.monotonic() + 5  # the server has taken the three connections in
        while True:
            r = svc.request("GET", "/healthz")
            if r.status == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert r.status == 503, r
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["retry-after"] == "1"
        doc = json.loads(r.body)
        assert doc["type"] == "urn:unica:problem:overloaded" and doc["status"] == 503
        assert "3 connections" in doc["detail"]
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 10
    while (r := svc.request("GET", "/healthz")).status != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert r.status == 200
    metrics = svc.request("GET", "/metrics").body.decode()
    assert re.search(r'unica_refusals_total\{slug="overloaded"\} [1-9]', metrics), metrics[-2000:]
    log = svc.log_text()
    svc.stop()
    assert "Traceback" not in log, log
