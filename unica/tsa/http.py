"""The HTTP front of the TSA (RFC 3161 section 3.4): ``handle()`` for unica's fast HTTP server
(plain HTTP), and the same as a raw ASGI application (uvicorn, for TLS).

- ``POST /`` with ``Content-Type: application/timestamp-query`` -> 200
  ``application/timestamp-reply`` (a token, or a rejection TimeStampResp: bad DER is
  answered ``badDataFormat`` with 200, as RFC 3161 leaves errors to the TSP layer);
- another content type: 415; a body larger than ``max_body``: 413, refused on the
  Content-Length before anything is read (or as soon as a chunked body passes it);
- ``GET /healthz``: 200 ``ok`` while tokens can be issued, else 503 (clock out of sync,
  unit disabled); other paths 404, other methods 405. Never a 5xx for what a client sends.

The responder is built at the ASGI lifespan startup (in each worker process, after the fork)
and closed at shutdown (the archive writes what is left).
"""

from __future__ import annotations

import logging
import time

from unica.tsa.responder import MAX_REQUEST, Responder
from unica.tsa.token import rejection

log = logging.getLogger("unica.tsa.http")

__all__ = ["TSAApp"]

_REPLY = [(b"content-type", b"application/timestamp-reply"), (b"cache-control", b"no-store")]


def _plain(status: int, text: bytes, extra=()):
    return status, [(b"content-type", b"text/plain; charset=utf-8"), *extra], text


class TSAApp:
    """``make_responder()`` builds the :class:`Responder` (called at startup, per process)."""

    def __init__(self, make_responder, *, max_body: int = MAX_REQUEST, access_log: logging.Logger | None = None):
        self.make_responder = make_responder
        self.responder: Responder | None = None
        self.max_body = max_body
        self.access_log = access_log

    def start(self) -> None:
        if self.responder is None:
            self.responder = self.make_responder()

    def stop(self) -> None:
        if self.responder is not None:
            self.responder.close()
            self.responder = None

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    try:
                        self.start()
                    except Exception as e:
                        await send({"type": "lifespan.startup.failed", "message": str(e)})
                        return
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    self.stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "http":
            status, headers, body = await self._http(scope, receive)
            await send({"type": "http.response.start", "status": status,
                        "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

    # the fast server (unica.ocsp.httpserver) calls handle() straight from its parser, with the
    # Content-Type; the body's size is checked by the server against max_body before it is read
    wants_content_type = True

    def startup(self) -> None:
        self.start()

    def shutdown(self) -> None:
        self.stop()

    def handle(self, method: str, path: bytes, body: bytes = b"", content_type: bytes | None = None):
        """One request (``path`` the raw path): (status, headers, body)."""
        t0 = time.perf_counter()
        trace: dict = {}
        status, headers, answer = self._handle(method, path, body, content_type, trace)
        if self.access_log is not None:
            self.access_log.info("%s %s http=%d tsp=%s%s %.2fms", method, path[:120].decode("latin-1"), status,
                                 trace.get("tsp", "-"), f" serial={trace['serial']:x}" if trace.get("serial") else "",
                                 (time.perf_counter() - t0) * 1000)
        return status, headers, answer

    def _handle(self, method, path, body, content_type, trace):
        if method in ("GET", "HEAD"):
            if path == b"/healthz":
                ok = self.responder is not None and self.responder.healthy()
                return _plain(200 if ok else 503, b"ok\n" if ok else b"unavailable\n")
            return _plain(404 if path != b"/" else 405, b"not found\n" if path != b"/" else b"POST a time-stamp query\n",
                          [(b"allow", b"POST")] if path == b"/" else [])
        if method != "POST":
            return _plain(405, b"method not allowed\n", [(b"allow", b"GET, POST")])
        if path != b"/":
            return _plain(404, b"not found\n")
        if not _is_query(content_type):
            return _plain(415, b"expected Content-Type: application/timestamp-query\n")
        if len(body) > self.max_body:
            return _plain(413, b"request body too large\n", [(b"connection", b"close")])
        if self.responder is None:  # not started (no lifespan): cannot happen under unica tsa serve
            trace["tsp"] = "systemFailure"
            return 200, _REPLY, rejection("systemFailure", "the TSA is not started")
        try:
            answer = self.responder.answer(body)
        except Exception:
            log.exception("TSA responder failed")
            trace["tsp"] = "systemFailure"
            return 200, _REPLY, rejection("systemFailure", "internal error")
        trace["tsp"] = answer.failure or answer.status
        trace["serial"] = answer.serial
        return 200, _REPLY, answer.body

    async def _http(self, scope, receive):
        """The ASGI path (uvicorn, for TLS): the size and type decided on the headers before the
        body is read, then :meth:`handle`."""
        method, path = scope["method"], scope["path"].encode("utf-8", "surrogateescape")
        ctype = None
        if method == "POST" and path == b"/":
            length = None
            for name, value in scope["headers"]:
                if name == b"content-type":
                    ctype = value
                elif name == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        return _plain(400, b"bad content-length\n")
            if length is not None and length > self.max_body:
                return _plain(413, b"request body too large\n", [(b"connection", b"close")])
            if not _is_query(ctype):
                return _plain(415, b"expected Content-Type: application/timestamp-query\n")
            chunks, size, more = [], 0, True
            while more:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return _plain(400, b"client went away\n")
                chunk = msg.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    return _plain(413, b"request body too large\n", [(b"connection", b"close")])
                chunks.append(chunk)
                more = msg.get("more_body", False)
            return self.handle(method, path, b"".join(chunks), ctype)
        return self.handle(method, path, b"", ctype)


def _is_query(content_type: bytes | None) -> bool:
    return content_type is not None and content_type.split(b";")[0].strip().lower() == b"application/timestamp-query"
