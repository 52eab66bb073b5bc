"""The agent's HTTP face (ASGI, Starlette's request/response objects, served by uvicorn).

Two endpoints, both answered only to an allowed origin:

- ``GET /v1/card``: the card's certificate (base64 DER), subject, serial, issuer, algorithm;
- ``POST /v1/sign`` with ``{"challenge": TEXT}`` (``application/json``, at most
  :data:`MAX_BODY` bytes): ``{"signature": base64, "certificate": base64 DER, "algorithm": ...}``.

Every request must come from a page whose ``Origin`` header is one of ``--allow-origin``; any
other (or none) gets 403 and no CORS header, so the page can read nothing. The ``Host`` header
must be the agent's own address (``127.0.0.1:PORT`` or ``localhost:PORT``): a DNS-rebinding page
is refused even before its origin is looked at. The agent signs only a text that parses as a
unica login challenge, names the requesting origin, and has not expired: it is not a signing
oracle for anything else. Preflights (``OPTIONS``) are answered for allowed origins, with
``Access-Control-Allow-Private-Network: true`` (Chromium's Private Network Access).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
from collections.abc import Callable

from unica.errors import ChallengeFormatError, UnicaError
from unica.portal.challenge import check_origin, parse_challenge

#: the largest request body read (bytes)
MAX_BODY = 4096

_PATHS = {"/v1/card": "GET", "/v1/sign": "POST"}
_SECURITY_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff",
                     "content-security-policy": "default-src 'none'; frame-ancestors 'none'"}


def stderr_line(text: str) -> None:
    """One line on stderr, with the UTC time."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    sys.stderr.write(f"{now} unica agent: {text}\n")
    sys.stderr.flush()


class AgentApp:
    """The ASGI application of one agent: ``card`` (:class:`unica.agent.card.Card`), the allowed
    origins, the agent's ``port`` (for the Host check), ``log`` (one line per signature or
    refusal), ``clock`` (aware UTC now)."""

    def __init__(self, card, origins, port: int, *, log: Callable[[str], None] = stderr_line,
                 clock: Callable[[], dt.datetime] | None = None, max_body: int = MAX_BODY):
        self.card = card
        self.origins = frozenset(check_origin(o, "--allow-origin") for o in origins)
        if not self.origins:
            raise ValueError("at least one allowed origin is needed")
        self.hosts = frozenset((f"127.0.0.1:{port}", f"localhost:{port}") +
                               (("127.0.0.1", "localhost") if port == 80 else ()))
        self.log = log
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.max_body = max_body

    async def __call__(self, scope, receive, send) -> None:
        from starlette.requests import Request

        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self._handle(request)
        await response(scope, receive, send)

    # --- answers --------------------------------------------------------------------------

    def _json(self, status: int, body: dict, origin: str | None = None, headers: dict | None = None):
        from starlette.responses import Response

        h = {**_SECURITY_HEADERS, "vary": "Origin", **(headers or {})}
        if origin is not None:  # an allowed origin: the page may read the answer
            h["access-control-allow-origin"] = origin
        data = b"" if status == 204 else json.dumps(body).encode()
        return Response(data, status_code=status, headers=h,
                        media_type=None if status == 204 else "application/json")

    def _refuse(self, status: int, error: str, detail: str, origin: str | None = None, *, note: str | None = None):
        self.log(f"refused {error} ({note or detail})"[:300])
        return self._json(status, {"error": error, "detail": detail}, origin)

    async def _handle(self, request):
        host = request.headers.get("host", "")
        origin = request.headers.get("origin")
        shown = "no origin" if origin is None else f"origin {origin[:100]!r}"
        if host not in self.hosts:
            return self._refuse(403, "wrong-host", "the agent answers only at its own address",
                                note=f"host {host[:100]!r}, {shown}")
        if origin is None or origin not in self.origins:
            return self._refuse(403, "origin-not-allowed", "this page's origin is not allowed to use the card",
                                note=shown)
        method = _PATHS.get(request.url.path)
        if method is None:
            return self._json(404, {"error": "not-found", "detail": "no such endpoint"}, origin)
        if request.method == "OPTIONS":
            return self._json(204, {}, origin, {
                "access-control-allow-methods": "GET, POST, OPTIONS",
                "access-control-allow-headers": "Content-Type",
                "access-control-allow-private-network": "true",
                "access-control-max-age": "600"})
        if request.method != method:
            return self._json(405, {"error": "method-not-allowed", "detail": f"use {method}"}, origin,
                              {"allow": f"{method}, OPTIONS"})
        if method == "GET":
            return self._json(200, self.card.describe(), origin)
        return await self._sign(request, origin)

    async def _read_body(self, request) -> bytes | None:
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body:
                return None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _sign(self, request, origin: str):
        from starlette.concurrency import run_in_threadpool

        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return self._refuse(415, "unsupported-media-type", "send the challenge as application/json", origin)
        body = await self._read_body(request)
        if body is None:
            return self._refuse(413, "body-too-large", f"the request body is larger than {self.max_body} bytes",
                                origin)
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return self._refuse(400, "malformed", "the body is not JSON", origin)
        if not isinstance(doc, dict) or set(doc) != {"challenge"} or not isinstance(doc["challenge"], str):
            return self._refuse(400, "malformed", 'the body must be {"challenge": TEXT}', origin)
        try:
            ch = parse_challenge(doc["challenge"])
        except ChallengeFormatError as e:
            return self._refuse(400, "not-a-challenge", f"the agent signs only unica login challenges: {e}", origin)
        if ch.origin != origin:
            return self._refuse(403, "wrong-origin", "the challenge names another origin than this page's", origin,
                                note=f"page {origin}, challenge for {ch.origin}")
        if ch.expired(self.clock()):
            return self._refuse(400, "expired", "the challenge has expired (or this PC's clock is wrong): "
                                                "ask the portal for a new one", origin)
        try:
            signed = await run_in_threadpool(self.card.sign, ch.data)
        except UnicaError as e:  # the token was removed, its session lost, ...
            return self._refuse(503, "card-unavailable", f"the card cannot sign: {e}", origin)
        self.log(f"signed a login challenge for {origin}, nonce {ch.nonce[:8]}..., certificate "
                 f"{format(self.card.cert.serial_number, 'x')}")
        return self._json(200, {"signature": base64.b64encode(signed.signature).decode("ascii"),
                                "certificate": base64.b64encode(self.card.cert_der).decode("ascii"),
                                "algorithm": signed.algorithm}, origin)


def run(app: AgentApp, sock) -> None:
    """Serve ``app`` on the bound socket until SIGINT/SIGTERM."""
    import uvicorn

    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False, server_header=False,
                            date_header=True, proxy_headers=False, forwarded_allow_ips="", timeout_keep_alive=5,
                            limit_concurrency=64, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(1)
