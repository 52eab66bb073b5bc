"""A small HTTP/1.1 server for the responder: asyncio protocol + httptools parser, no ASGI.

An OCSP answer is a dictionary lookup (pre-signed) or one signature (live); what a general
ASGI server does around it per request -- scope and message dicts, awaits, timers -- costs
more than the answer, and per *connection* far more (clients like ``ab`` or OCSP stacks
without keep-alive open one per request). This server calls the application's synchronous
``handle(method, raw_path, body) -> (status, headers, body)`` straight from the parser's
callbacks (with ``content_type=`` -- the request's Content-Type header, or None -- for an
application whose ``wants_content_type`` is true: the TSA's).

What it guarantees, whatever the client sends:

- request line + headers at most ``max_header_bytes`` (else 431), the body at most the
  app's ``max_body`` (413 on the Content-Length, or as soon as the body passes it), an
  unparseable request 400 -- each followed by a *lingering close*: the server half-closes
  (the client reads the answer, then the end), then reads and discards what the client is
  still sending -- the rest of the declared body, at most ``drain_bytes`` and for at most
  ``drain_seconds`` -- and closes. (Closing with unread data makes the kernel send a reset,
  which destroys the answer before the client has read it.)
- a connection mid-request for more than ``request_timeout`` seconds, or idle for more
  than ``keep_alive`` seconds, is closed (slow clients cannot hold workers);
- pipelined requests are answered in order; a client that does not read its answers is
  not read from until it does (no unbounded buffering);
- HTTP/1.0 connections close after the answer unless they ask for keep-alive; HTTP/1.1
  ones stay open unless they send ``Connection: close``; HEAD gets the headers only.

The application may also have ``startup()`` and ``shutdown()`` (called in the serving
process, after any fork) and ``max_body``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from email.utils import formatdate

import httptools

log = logging.getLogger("unica.ocsp.httpserver")

__all__ = ["HTTPServer"]

_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed", 413: b"Payload Too Large",
            414: b"URI Too Long", 431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
            503: b"Service Unavailable"}
_STATUS_LINES = {(v, s): b"HTTP/%s %d %s\r\n" % (v, s, r) for v in (b"1.0", b"1.1") for s, r in _REASONS.items()}


class _Clock:
    """The Date header, formatted once a second."""

    def __init__(self):
        self._second = -1
        self._header = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._header = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._header


class _Connection(asyncio.Protocol):
    __slots__ = ("server", "transport", "parser", "url", "body", "body_len", "header_bytes", "busy_since",
                 "last_seen", "closing", "paused", "keep_alive", "drain_left", "drain_until", "content_type")

    def __init__(self, server: "HTTPServer"):
        self.server = server
        self.transport = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body = []
        self.body_len = 0
        self.header_bytes = 0
        self.busy_since = None  # loop time the current request began (None: between requests)
        self.last_seen = 0.0
        self.closing = False
        self.paused = False
        self.keep_alive = True
        self.drain_left = None  # lingering close: bytes still to discard (None: not lingering)
        self.drain_until = 0.0
        self.content_type = None

    # --- transport events ------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.last_seen = self.server.now()
        self.server.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.server.connections.discard(self)
        self.closing = True

    def data_received(self, data: bytes) -> None:
        if self.drain_left is not None:  # an error was answered: discard, up to the bound
            self.drain_left -= len(data)
            if self.drain_left <= 0:
                self.transport.close()
            return
        if self.closing:
            return
        self.last_seen = self.server.now()
        if self.busy_since is None:
            self.busy_since = self.last_seen
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, b"protocol upgrades are not supported\n")
        except httptools.HttpParserError:
            if not self.closing:
                self._fail(400, b"malformed HTTP request\n")

    def pause_writing(self) -> None:  # the client is not reading its answers: stop reading requests
        self.paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if not self.closing or self.drain_left is not None:
            self.transport.resume_reading()

    # --- parser callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []
        self.body_len = 0
        self.header_bytes = 0
        self.content_type = None
        if self.busy_since is None:
            self.busy_since = self.last_seen

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if len(name) == 14 and name.lower() == b"content-length":
            try:
                too_large = int(value) > self.server.max_body
            except ValueError:
                too_large = False  # the parser refuses a bad length itself
            if too_large:  # answer now, parse no further (the body is drained, not read)
                self._fail(413, b"request body too large\n", drain=int(value))
                raise httptools.HttpParserError("body too large")
        elif len(name) == 12 and name.lower() == b"content-type":
            self.content_type = value

    def _count(self, n: int) -> None:
        self.header_bytes += n
        if self.header_bytes > self.server.max_header_bytes and not self.closing:
            self._fail(431, b"request header fields too large\n")
            raise httptools.HttpParserError("headers too large")  # stop parsing this connection

    def on_headers_complete(self) -> None:
        if self.parser.should_upgrade():
            self._fail(400, b"protocol upgrades are not supported\n")
            raise httptools.HttpParserError("upgrade")

    def on_body(self, chunk: bytes) -> None:
        if self.closing:
            return
        self.body.append(chunk)
        self.body_len += len(chunk)
        if self.body_len > self.server.max_body:  # a chunked body: stop at the limit
            self._fail(413, b"request body too large\n")
            raise httptools.HttpParserError("body too large")

    def on_message_complete(self) -> None:
        if self.closing:
            return
        self.busy_since = None
        parser = self.parser
        method = parser.get_method().decode("latin-1")
        version = parser.get_http_version().encode()
        self.keep_alive = parser.should_keep_alive()
        try:
            path = httptools.parse_url(self.url).path if self.url else b"/"
        except httptools.HttpParserInvalidURLError:
            self._respond(version, method, 400, [(b"content-type", b"text/plain; charset=utf-8")],
                          b"malformed request URL\n", close=True)
            return
        try:
            if self.server.wants_content_type:
                status, headers, body = self.server.handle(method, path, b"".join(self.body),
                                                           content_type=self.content_type)
            else:
                status, headers, body = self.server.handle(method, path, b"".join(self.body))
        except Exception:
            log.exception("HTTP handler failed")
            status, headers, body = 500, [(b"content-type", b"text/plain; charset=utf-8")], b"internal error\n"
        self._respond(version, method, status, headers, body, close=not self.keep_alive)

    # --- answers ----------------------------------------------------------------------

    def _respond(self, version: bytes, method: str, status: int, headers, body: bytes, *, close: bool,
                 linger: bool = False) -> None:
        if version not in (b"1.0", b"1.1"):
            version = b"1.1"
        line = _STATUS_LINES.get((version, status)) or b"HTTP/%s %d Unknown\r\n" % (version, status)
        parts = [line, self.server.clock.date()]
        for name, value in headers:
            parts.append(name + b": " + value + b"\r\n")
        parts.append(b"content-length: %d\r\n" % len(body))
        if close:
            parts.append(b"connection: close\r\n\r\n")
        elif version == b"1.0":
            parts.append(b"connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        if method != "HEAD":
            parts.append(body)
        self.transport.write(b"".join(parts))
        if close:
            self.closing = True
            if not linger:
                self.transport.close()

    def _fail(self, status: int, text: bytes, drain: int | None = None) -> None:
        """Answer an error and close lingering: half-close, then discard up to ``drain`` bytes
        (what the client declared it still sends; at most the server's ``drain_bytes``)."""
        self.keep_alive = False
        self._respond(b"1.1", "GET", status, [(b"content-type", b"text/plain; charset=utf-8")], text, close=True,
                      linger=True)
        limit = self.server.drain_bytes
        self.drain_left = limit if drain is None else max(1, min(drain, limit))
        self.drain_until = self.server.now() + self.server.drain_seconds
        if self.transport.is_closing():
            return
        try:
            self.transport.write_eof()  # sent once the answer is: the client reads it, then the end
        except (OSError, RuntimeError, NotImplementedError):
            self.transport.close()
            return
        self.transport.resume_reading()

    def expire(self, now: float) -> None:
        """Close this connection if it is stalled mid-request or idle too long, or has lingered
        long enough after an error."""
        if self.drain_left is not None:
            if now > self.drain_until and not self.transport.is_closing():
                self.transport.close()
            return
        if self.closing or self.paused:
            return
        if self.busy_since is not None:
            if now - self.busy_since > self.server.request_timeout:
                self.closing = True
                self.transport.close()
        elif now - self.last_seen > self.server.keep_alive:
            self.closing = True
            self.transport.close()


class HTTPServer:
    """Serve ``app`` (``handle(method, raw_path, body)``) on already bound sockets.

    ``run(sockets=[...])`` blocks until SIGTERM/SIGINT (when run in the main thread) or until
    ``should_exit`` is set (the same interface as ``uvicorn.Server``)."""

    def __init__(self, app, *, keep_alive: float = 30.0, request_timeout: float = 10.0,
                 max_header_bytes: int = 16384, backlog: int = 2048, drain_bytes: int = 16 * 1024 * 1024,
                 drain_seconds: float = 5.0):
        self.app = app
        self.keep_alive = keep_alive
        self.request_timeout = request_timeout
        #: the lingering close after an error answer: at most this much read and dropped, for at most this long
        self.drain_bytes = drain_bytes
        self.drain_seconds = drain_seconds
        self.max_header_bytes = max_header_bytes
        self.backlog = backlog
        self.should_exit = False
        self.connections: set[_Connection] = set()
        self.clock = _Clock()
        self.max_body = 0
        self.handle = None
        self.wants_content_type = False
        self.now = time.monotonic

    def run(self, sockets) -> None:
        try:
            import uvloop
        except ImportError:  # pragma: no cover (uvloop is a dependency off Windows)
            asyncio.run(self.serve(sockets))
            return
        uvloop.run(self.serve(sockets))

    async def serve(self, sockets) -> None:
        loop = asyncio.get_running_loop()
        self.now = loop.time
        startup = getattr(self.app, "startup", None)
        if startup is not None:
            startup()
        self.handle = self.app.handle
        self.wants_content_type = bool(getattr(self.app, "wants_content_type", False))
        self.max_body = getattr(self.app, "max_body", 64 * 1024)
        stop = asyncio.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        servers = [await loop.create_server(lambda: _Connection(self), sock=s, backlog=self.backlog)
                   for s in sockets]
        try:
            while not self.should_exit and not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
                now = loop.time()
                for conn in list(self.connections):
                    conn.expire(now)
        finally:
            for srv in servers:
                srv.close()
            for conn in list(self.connections):  # in-flight answers are written already (handle is sync)
                conn.closing = True
                conn.transport.close()
            shutdown = getattr(self.app, "shutdown", None)
            if shutdown is not None:
                shutdown()
