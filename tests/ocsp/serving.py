"""unica's HTTP server (unica.ocsp.httpserver) run in a thread on 127.0.0.1 for a test."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator

from ocsppki import free_port
from unica.ocsp.httpserver import HTTPServer
from unica.ocsp.server import bind


@contextlib.contextmanager
def serving(app, **options) -> Iterator[tuple[HTTPServer, int]]:
    """Serve ``app`` (HTTPServer ``options``) on a free port; yield (server, port) once it accepts
    connections; stop it and close the socket afterwards."""
    port = free_port()
    sock = bind("127.0.0.1", port)
    srv = HTTPServer(app, **options)
    t = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start accepting in 10 s"
                time.sleep(0.05)
        yield srv, port
    finally:
        srv.should_exit = True
        t.join(10)
        sock.close()
