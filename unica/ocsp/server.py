"""Running the responder: unica's own HTTP server (:mod:`unica.ocsp.httpserver`) for apps
with a synchronous ``handle`` (the responder's), uvicorn (httptools + uvloop) for any other
ASGI app.

:func:`serve` binds the socket once and, for ``workers > 1``, forks that many processes
that all accept on it (each with its own copy of the app: in-memory sources are per
process; a database-backed source is shared through the database). Several hosts or
processes behind a load balancer on one database are the scaling story.
"""

from __future__ import annotations

import socket

from unica.serving import bind, run_workers

__all__ = ["serve", "make_server"]


def _config(app, *, log_level: str = "warning", access_log: bool = False):
    import uvicorn

    return uvicorn.Config(app, loop="uvloop", http="httptools", lifespan="auto", log_level=log_level,
                          access_log=access_log, timeout_keep_alive=30, server_header=False,
                          date_header=True, backlog=2048, h11_max_incomplete_event_size=16384)


def make_server(app, **kw):
    """A server for ``app`` (start it with ``server.run(sockets=[sock])``, stop it with
    ``server.should_exit = True`` or SIGTERM): :class:`HTTPServer` for an app with ``handle``
    (or ``startup``, which provides it), else a ``uvicorn.Server``."""
    if hasattr(app, "handle") or hasattr(app, "startup"):
        from unica.ocsp.httpserver import HTTPServer

        return HTTPServer(app)
    import uvicorn

    return uvicorn.Server(_config(app, **kw))


def serve(app, host: str = "127.0.0.1", port: int = 8080, workers: int = 1, *,
          log_level: str = "warning", sock: socket.socket | None = None) -> None:
    """Serve ``app`` until SIGINT/SIGTERM with ``workers`` processes: each on its own socket
    bound with SO_REUSEPORT when ``sock`` has it (as :func:`bind` makes it for ``reuse_port``),
    else all accepting on ``sock``."""
    if workers < 1:
        raise ValueError(f"worker count {workers} must be at least 1")
    sock = sock or bind(host, port, reuse_port=workers > 1 and hasattr(socket, "SO_REUSEPORT"))
    run_workers(lambda s: make_server(app, log_level=log_level).run(sockets=[s]), sock, workers)
