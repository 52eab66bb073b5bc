"""Running the responder: unica's own HTTP server (:mod:`unica.ocsp.httpserver`) for apps
with a synchronous ``handle`` (the responder's), uvicorn (httptools + uvloop) for any other
ASGI app.

:func:`serve` binds the socket once and, for ``workers > 1``, forks that many processes
that all accept on it (each with its own copy of the app: in-memory sources are per
process; a database-backed source is shared through the database). Several hosts or
processes behind a load balancer on one database are the scaling story.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

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


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket on ``host:port``; a host that does not resolve or an address that
    cannot be bound (in use, not local, a privileged port) is an EnvironmentFailure."""
    from unica.errors import EnvironmentFailure

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except socket.gaierror as e:
        sock.close()
        raise EnvironmentFailure.from_os(f"cannot resolve host {host!r}", e) from None
    except OSError as e:
        sock.close()
        raise EnvironmentFailure.from_os(f"cannot listen on {host}:{port}", e) from None
    sock.set_inheritable(True)
    return sock


def serve(app, host: str = "127.0.0.1", port: int = 8080, workers: int = 1, *,
          log_level: str = "warning", sock: socket.socket | None = None) -> None:
    """Serve ``app`` until SIGINT/SIGTERM with ``workers`` processes: each on its own socket
    bound with SO_REUSEPORT when ``sock`` has it (as :func:`bind` makes it for ``reuse_port``),
    else all accepting on ``sock``."""
    if workers < 1:
        raise ValueError(f"worker count {workers} must be at least 1")
    sock = sock or bind(host, port, reuse_port=workers > 1 and hasattr(socket, "SO_REUSEPORT"))
    if workers == 1:
        make_server(app, log_level=log_level).run(sockets=[sock])
        return
    # one listening socket per worker where the socket allows it (SO_REUSEPORT): the kernel
    # hands each connection to one worker, instead of waking every worker to race for it
    socks = [sock] * workers
    if hasattr(socket, "SO_REUSEPORT") and sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT):
        addr = sock.getsockname()
        socks = [sock] + [bind(addr[0], addr[1], reuse_port=True) for _ in range(workers - 1)]
    children = []
    for k in range(workers):
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                for other in socks:
                    if other is not socks[k]:
                        other.close()
                make_server(app, log_level=log_level).run(sockets=[socks[k]])
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    if len(set(socks)) > 1:
        # the workers hold their sockets; were the parent to keep them, the kernel would go on
        # queueing connections on the socket of a worker that died
        for s in socks:
            s.close()

    def stop(signum, frame):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    for pid in children:
        while True:
            try:
                _, st = os.waitpid(pid, 0)
                # uvicorn re-raises the signal it shut down on, so a worker ending by
                # SIGTERM/SIGINT is a clean stop (unica's server exits 0)
                status |= os.waitstatus_to_exitcode(st) not in (0, -signal.SIGTERM, -signal.SIGINT)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue
    for s in set(socks):
        s.close()
    if status:
        sys.exit(1)
