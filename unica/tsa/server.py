"""Running the TSA: the socket and the workers through the shared server helpers
(:mod:`unica.ocsp.server`): plain HTTP on unica's fast server (:mod:`unica.ocsp.httpserver`,
which calls :meth:`unica.tsa.http.TSAApp.handle` from its parser), TLS on uvicorn (the same
app through ASGI, one worker); and the clock monitor with its audit entries.
"""

from __future__ import annotations

import logging

log = logging.getLogger("unica.tsa.server")

__all__ = ["run", "clock_auditor"]


def run(app, sock, *, workers: int = 1, ssl_context=None) -> None:
    """Serve ``app`` (a :class:`unica.tsa.http.TSAApp`) on the bound ``sock`` until SIGTERM/SIGINT."""
    from unica.ocsp.server import _config, serve

    if ssl_context is None:
        serve(app, workers=workers, sock=sock)
        return
    if workers != 1:
        from unica.errors import ConfigurationError

        raise ConfigurationError("TLS is served by one worker; for more, terminate TLS in a proxy in front of "
                                 "plain-HTTP workers")
    import uvicorn

    config = _config(app)
    config.ssl_context_factory = lambda cfg, default: ssl_context
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(1)


def clock_auditor(db_url: str, unit: str, accuracy_ms: int):
    """``on_change(reading)`` for :class:`unica.tsa.clock.ClockMonitor`: one audit entry per loss
    (``tsa.clock-lost``) and per recovery (``tsa.clock-recovered``), each in its own short-lived
    connection (the monitor runs in the parent of forked workers: no pooled connection is
    left open across a fork)."""
    def on_change(reading) -> None:
        from unica.store import open_store

        store = open_store(db_url)
        try:
            with store.write() as s:
                store.audit(s, "tsa.clock-recovered" if reading.synced else "tsa.clock-lost", target=unit,
                            details={"detail": reading.detail, "offset_seconds": reading.offset,
                                     "accuracy_ms": accuracy_ms})
        finally:
            store.dispose()
        (log.warning if not reading.synced else log.info)("TSA clock %s: %s",
                                                          "recovered" if reading.synced else "lost", reading.detail)

    return on_change
