"""The bounds every request is held to, as one ASGI middleware (:class:`Guard`), outside the
routes: the client's identity (:func:`unica.service.identity.client_of`), a rate per client
(token bucket, per process: 429 with Retry-After), the body size (Content-Length checked before
anything is read, then the bytes counted as they arrive, with or without a Content-Length: 413),
the time per request (the body included: 408 when the client was still sending, 503 when the
service was slow), metrics, and the last word on errors (a 500 problem, the traceback to the
server's log only). The URL and headers are bounded earlier, by the HTTP protocol
(:mod:`unica.service.server`: 431), as is the time to send them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from unica.service import metrics
from unica.service.identity import client_of
from unica.service.problems import Problem, from_exception

log = logging.getLogger("unica.service")

#: paths neither rate-limited nor, in proxy mode, kept for the proxy (probes and scrapes)
UNLIMITED = frozenset({"/healthz", "/readyz", "/metrics"})


class RateLimiter:
    """A token bucket per client key: ``rate`` tokens a second, at most ``burst``. Per process:
    with N workers a client may get up to N times the rate (the kernel spreads connections)."""

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000):
        self.rate = float(rate)
        self.burst = float(max(1, burst))
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float | None = None) -> float:
        """0 if the request may go; else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        if len(self._buckets) > self.max_clients:
            self._prune(now)
        return wait

    def _prune(self, now: float) -> None:
        full = self.burst / self.rate
        for k, (_t, last) in list(self._buckets.items()):
            if now - last > full:
                del self._buckets[k]
        if len(self._buckets) > self.max_clients:  # still too many: forget the oldest half
            keep = sorted(self._buckets.items(), key=lambda kv: kv[1][1])[len(self._buckets) // 2:]
            self._buckets = dict(keep)


def _content_length(scope) -> int | None:
    for k, v in scope.get("headers") or ():
        if k == b"content-length":
            try:
                n = int(v)
            except ValueError:
                raise Problem(400, "malformed", detail="Content-Length is not a number") from None
            if n < 0:
                raise Problem(400, "malformed", detail="Content-Length is negative")
            return n
    return None


def _route_of(scope) -> str:
    """The route template (``/api/v1/enterprises/{uscc}``): a bounded label, whatever the path."""
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    template = getattr(context, "path_format", None) or getattr(scope.get("route"), "path", None)
    return template or "<unmatched>"


class Guard:
    """The outermost middleware of the application (see the module's description)."""

    def __init__(self, app, settings):
        self.app = app
        self.settings = settings
        self.limiter = RateLimiter(settings.rate, settings.burst)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        state = {"status": None, "body_done": False, "exceeded": False, "received": 0}

        async def sending(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, sending, state)
        except Exception as e:  # noqa: BLE001 - the last word: a problem; a 500's traceback to the log only
            problem = from_exception(e)
            if problem.status >= 500 and problem.slug == "internal":
                log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            await self._answer(problem, sending, state)
        finally:
            metrics.observe(_route_of(scope), scope.get("method", "-"), state["status"] or 499,
                            time.perf_counter() - t0)

    async def _answer(self, problem: Problem, send, state) -> None:
        if state["status"] is not None:
            return  # the response has begun: nothing more can be said; the connection is closed
        if 400 <= problem.status < 500:
            metrics.refused(problem.slug)
        await problem.send(send)

    async def _handle(self, scope, receive, send, state) -> None:
        s = self.settings
        client = client_of(scope, s)
        if s.tls_cert is None and not client.via_proxy and scope.get("path") not in UNLIMITED:
            raise Problem(403, "untrusted-proxy", detail="without TLS this service answers its reverse proxy only")
        if scope.get("path") not in UNLIMITED:
            wait = self.limiter.take(client.key)
            if wait > 0:
                raise Problem(429, "rate-limited", detail=f"more than {s.rate:g} requests a second from this client",
                              headers={"Retry-After": str(max(1, math.ceil(wait)))})
        length = _content_length(scope)
        if length is not None and length > s.max_body:
            raise Problem(413, "body-too-large", detail=f"the body may be at most {s.max_body} bytes",
                          headers={"Connection": "close"})
        expects_body = bool(length) or any(k == b"transfer-encoding" for k, _ in scope.get("headers") or ())
        if not expects_body:
            state["body_done"] = True

        async def receiving():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > s.max_body:
                    state["exceeded"] = True
                    raise Problem(413, "body-too-large", detail=f"the body may be at most {s.max_body} bytes",
                                  headers={"Connection": "close"})
                if not message.get("more_body", False):
                    state["body_done"] = True
            return message

        async def sending(message):
            if state["exceeded"]:
                return  # whatever the route made of a cut-off body, the answer is 413 (below)
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receiving, sending), timeout=s.request_timeout)
        except asyncio.TimeoutError:
            if state["body_done"]:
                raise Problem(503, "timeout", detail=f"the request took more than {s.request_timeout:g} s",
                              headers={"Retry-After": "5"}) from None
            raise Problem(408, "client-too-slow", detail=f"the body did not arrive within {s.request_timeout:g} s",
                          headers={"Connection": "close"}) from None
        if state["exceeded"] and state["status"] is None:
            raise Problem(413, "body-too-large", detail=f"the body may be at most {s.max_body} bytes",
                          headers={"Connection": "close"})
