"""The HTTP front of the TSA (RFC 3161 section 3.4): a raw ASGI application.

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
            t0 = time.perf_counter()
            trace: dict = {}
            status, headers, body = await self._http(scope, receive, trace)
            await send({"type": "http.response.start", "status": status,
                        "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            if self.access_log is not None:
                self.access_log.info("%s %s http=%d tsp=%s%s %.2fms", scope["method"], scope["path"][:120], status,
                                     trace.get("tsp", "-"),
                                     f" serial={trace['serial']:x}" if trace.get("serial") else "",
                                     (time.perf_counter() - t0) * 1000)

    async def _http(self, scope, receive, trace):
        method, path = scope["method"], scope["path"]
        if method in ("GET", "HEAD"):
            if path == "/healthz":
                ok = self.responder is not None and self.responder.healthy()
                return _plain(200 if ok else 503, b"ok\n" if ok else b"unavailable\n")
            return _plain(404 if path != "/" else 405, b"not found\n" if path != "/" else b"POST a time-stamp query\n",
                          [(b"allow", b"POST")] if path == "/" else [])
        if method != "POST":
            return _plain(405, b"method not allowed\n", [(b"allow", b"GET, POST")])
        if path != "/":
            return _plain(404, b"not found\n")
        ctype = None
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
        if ctype is None or ctype.split(b";")[0].strip().lower() != b"application/timestamp-query":
            return _plain(415, b"expected Content-Type: application/timestamp-query\n")
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
