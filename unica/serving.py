"""Listening sockets and forked workers, for every server unica runs (the OCSP responder, the
CA service, the TSA).

:func:`run_workers` runs ``run_one(sock)`` in this process for one worker, or forks that many
processes, each accepting on its own SO_REUSEPORT socket on the same address where the socket
allows it (the kernel hands each connection to one worker, instead of waking every worker to
race for it), else all on ``sock``. SIGINT/SIGTERM to the parent stops the workers; it exits 1
if a worker failed.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable

__all__ = ["bind", "run_workers"]


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


def run_workers(run_one: Callable[[socket.socket], None], sock: socket.socket, workers: int, *,
                on_exit: Callable[[int], None] | None = None) -> None:
    """Serve with ``run_one(sock)`` until SIGINT/SIGTERM: here for one worker, else in
    ``workers`` forked processes (``on_exit(pid)`` after each ends)."""
    if workers < 1:
        raise ValueError(f"worker count {workers} must be at least 1")
    if workers == 1:
        run_one(sock)
        return
    socks = [sock]
    if hasattr(socket, "SO_REUSEPORT") and sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT):
        addr = sock.getsockname()
        socks += [bind(addr[0], addr[1], reuse_port=True) for _ in range(workers - 1)]
    else:
        socks *= workers
    children = []
    for k in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                for other in set(socks):
                    if other is not socks[k]:
                        other.close()
                run_one(socks[k])
            except BaseException:  # noqa: BLE001 - a worker ends here, whatever happened
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
                # SIGTERM/SIGINT is a clean stop (the server exits 0)
                status |= os.waitstatus_to_exitcode(st) not in (0, -signal.SIGTERM, -signal.SIGINT)
                if on_exit is not None:
                    on_exit(pid)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue
    for s in set(socks):
        s.close()
    if status:
        sys.exit(1)
