"""The HTTP front of the responder: ``handle(method, path, body)``, served by
:mod:`unica.ocsp.httpserver`, and the same as a raw ASGI application (no framework).

- ``GET <prefix><url-encoded base64 of the DER request>`` and ``POST <prefix>`` with an
  ``application/ocsp-request`` body; answers ``application/ocsp-response``.
- Bad OCSP input gets HTTP 200 with ``malformedRequest`` (RFC 6960 leaves the status to
  the OCSP layer); an oversized body 413 (read no further); other methods 405; paths
  outside the prefix 404. Never a 5xx for bad input.
- GET answers that may be cached carry RFC 5019 headers: Last-Modified (producedAt),
  Expires (nextUpdate), ETag, Cache-Control ``max-age=<seconds to nextUpdate>, public,
  no-transform, must-revalidate``. Nonce answers and POST answers are ``no-store``.
- A request that needs the database while it is unreachable (a cache miss) gets
  ``tryLater`` (RFC 6960 2.3); cached responses keep being served.
- ``GET /healthz``: 200 ``ok`` when the responder can answer, else 503.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from email.utils import format_datetime

from unica.errors import MalformedInput, StoreError
from unica.ocsp.request import decode_get_path
from unica.ocsp.responder import INTERNAL_ERROR, MALFORMED, TRY_LATER, Answer, Responder

__all__ = ["OCSPApp"]

log = logging.getLogger("unica.ocsp.http")

_CT = (b"content-type", b"application/ocsp-response")
_NO_STORE = (b"cache-control", b"no-store")


def _plain(status: int, text: bytes, extra=()) -> tuple[int, list, bytes]:
    return status, [(b"content-type", b"text/plain; charset=utf-8"), *extra], text


def _printable(raw: bytes) -> str:
    """A path for a log line: bytes outside printable ASCII percent-escaped (no log injection)."""
    return "".join(chr(b) if 0x21 <= b < 0x7f else "%%%02X" % b for b in raw)


def _http_date(t: _dt.datetime) -> bytes:
    return format_datetime(t, usegmt=True).encode()


class OCSPApp:
    """ASGI app over a :class:`Responder`. ``prefix`` is the URL path the responder is
    published at (the AIA OCSP URL's path), ending in ``/``."""

    def __init__(self, responder: Responder, prefix: str = "/", health_path: str = "/healthz",
                 access_log: logging.Logger | None = None):
        if not prefix.startswith("/") or not prefix.endswith("/"):
            raise ValueError(f"OCSP URL prefix {prefix!r} must start and end with '/'")
        #: where each request is logged, one INFO line (None: nowhere, the fast path)
        self.access_log = access_log
        if access_log is not None:
            self.handle = self._handle_logged
        self.responder = responder
        self.prefix = prefix.encode()
        self.health_path = health_path.encode()
        self.max_body = responder.limits.max_body
        # a base64 GET path is 4/3 of the DER, URL-encoding at most triples '+', '/', '='
        self.max_path = len(self.prefix) + 4 * self.max_body
        #: the per-response part of the caching headers, by ETag
        self._fixed_headers: dict[str, tuple] = {}

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            status, headers, body = await self._http(scope, receive)
            await send({"type": "http.response.start", "status": status,
                        "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
        elif kind == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _http(self, scope, receive):
        method = scope["method"]
        path = scope.get("raw_path") or scope["path"].encode()
        if method != "POST":
            return self.handle(method, path)
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    if int(value) > self.max_body:
                        return _plain(413, b"request body too large\n", [(b"connection", b"close")])
                except ValueError:
                    return _plain(400, b"bad content-length\n")
        body = b""
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return _plain(400, b"client went away\n")
            body += msg.get("body", b"")
            if len(body) > self.max_body:
                return _plain(413, b"request body too large\n", [(b"connection", b"close")])
            more = msg.get("more_body", False)
        return self.handle(method, path, body)

    def handle(self, method: str, path: bytes, body: bytes = b"",
               trace: dict | None = None) -> tuple[int, list, bytes]:
        """One request: ``path`` is the raw (percent-encoded) path, ``body`` the whole POST body
        (its size already checked against ``max_body`` by the server). ``trace``: see
        :meth:`Responder.respond`, plus ``ocsp`` (the OCSP response status)."""
        if method == "GET" or method == "HEAD":
            if path == self.health_path:
                ok = self.responder.healthy()
                return _plain(200 if ok else 503, b"ok\n" if ok else b"unavailable\n")
            if not path.startswith(self.prefix):
                return _plain(404, b"not found\n")
            if len(path) > self.max_path:
                return _plain(414, b"request path too long\n")
            try:
                der = decode_get_path(path, self.prefix)
            except MalformedInput:
                if trace is not None:
                    trace["ocsp"] = MALFORMED.status.name
                return 200, [_CT, _NO_STORE], MALFORMED.body
            answer = self._respond(der, trace)
            return 200, self._cache_headers(answer), answer.body
        if method == "POST":
            if not (path.startswith(self.prefix) or path + b"/" == self.prefix):
                return _plain(404, b"not found\n")
            return 200, [_CT, _NO_STORE], self._respond(body, trace).body
        return _plain(405, b"method not allowed\n", [(b"allow", b"GET, POST")])

    def _respond(self, der: bytes, trace: dict | None = None) -> Answer:
        try:
            answer = self.responder.respond(der, trace)
        except StoreError as e:  # the database is down: what is cached was served; ask again later
            log.warning("OCSP answer needs the database, which failed: %s", e)
            answer = TRY_LATER
        except Exception:  # a bug or a failing source: an OCSP internalError, never a 5xx page
            log.exception("OCSP responder failed")
            answer = INTERNAL_ERROR
        if trace is not None:
            trace["ocsp"] = answer.status.name
        return answer

    def _handle_logged(self, method: str, path: bytes, body: bytes = b"") -> tuple[int, list, bytes]:
        """:meth:`handle`, then one access-log line: method, path (the prefix for an OCSP GET,
        whose path is the request itself), CA, serial, HTTP and OCSP status, whether a stored
        (pre-signed) response was served, and the time taken."""
        trace: dict = {}
        t0 = time.perf_counter()
        status, headers, out = OCSPApp.handle(self, method, path, body, trace)
        ms = (time.perf_counter() - t0) * 1000
        ocsp_status = trace.get("ocsp")
        shown = self.prefix if ocsp_status is not None and method != "POST" else path[:120]
        serial = trace.get("serial")
        self.access_log.info("%s %s ca=%s serial=%s http=%d ocsp=%s cache=%s signed=%s %.2fms",
                             method, _printable(shown), trace.get("ca", "-"),
                             format(serial, "x") if serial is not None else "-", status, ocsp_status or "-",
                             trace.get("cache", "-"), trace.get("signed", "-"), ms)
        return status, headers, out

    def _cache_headers(self, answer: Answer) -> list:
        r = answer.cacheable
        if r is None:
            return [_CT, _NO_STORE]
        fixed = self._fixed_headers.get(r.etag)
        if fixed is None:
            if len(self._fixed_headers) >= 65536:
                self._fixed_headers.clear()
            fixed = self._fixed_headers[r.etag] = (
                _CT, (b"last-modified", _http_date(r.produced_at)), (b"expires", _http_date(r.next_update)),
                (b"etag", r.etag.encode()), r.next_update.timestamp())
        max_age = max(0, int(fixed[4] - time.time()))
        return [*fixed[:4], (b"cache-control", b"max-age=%d, public, no-transform, must-revalidate" % max_age)]
