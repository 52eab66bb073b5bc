"""Running the service: uvicorn (httptools, uvloop) with TLS, N worker processes.

- :func:`tls_context` builds the server's TLS context once, in the parent, so a missing or bad
  certificate or key (or a wrong passphrase, from ``UNICA_PASSPHRASE``) fails before anything
  listens. Client certificates are asked for but optional (``CERT_OPTIONAL``); one that is
  presented must chain to the CAs of the database (or ``--client-ca``). Its validity period is
  left to the application (OpenSSL's time check is off), so an expired certificate is refused by
  the service with a problem and an audit entry rather than by a failed handshake.
- :func:`protocol_class` is uvicorn's httptools protocol with what the service needs of it: the
  peer certificate in the ASGI scope (``scope["extensions"]["tls"]``, the ASGI TLS extension:
  uvicorn does not put it there), a bound on the request line and headers (431), a time limit
  for receiving them (a connection that trickles its headers is closed), and problem documents
  for requests the parser rejects and for those above the worker's connection limit
  (``--max-connections``: 503 with Retry-After, where uvicorn would answer plain text).
- :func:`serve` binds the socket (an address in use fails at once), then runs uvicorn in this
  process or forks ``workers`` processes that accept on it, each with its own application (its
  own database connections, opened after the fork).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl

from unica.errors import ConfigurationError, EnvironmentFailure
from unica.serving import bind  # noqa: F401 - the CLI binds through this module

log = logging.getLogger("unica.service")

#: OpenSSL's X509_V_FLAG_NO_CHECK_TIME: chain and signatures checked, validity left to the service
_NO_CHECK_TIME = 0x200000

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def _readable(path, what: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise EnvironmentFailure.from_os(f"cannot read the {what} {path}", e) from None


def tls_context(cert_file, key_file, client_ca_pem: str | None) -> ssl.SSLContext:
    """The server's TLS context (TLS 1.2 or later). ``client_ca_pem``: the CA certificates a
    client certificate may chain to (None: no client certificates asked for)."""
    if str(key_file).startswith("pkcs11:"):
        raise ConfigurationError("--tls-key must be a PEM key file: for a TLS key on a token, run the service behind "
                                 "a reverse proxy that holds it (docs/service.md, proxy mode)")
    _readable(cert_file, "TLS certificate")
    _readable(key_file, "TLS key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    passphrase = os.environ.get("UNICA_PASSPHRASE")
    asked = []

    def password():
        asked.append(True)
        if not passphrase:
            raise EnvironmentFailure(f"the TLS key {key_file} is encrypted: set UNICA_PASSPHRASE")
        return passphrase

    try:
        ctx.load_cert_chain(str(cert_file), str(key_file), password=password)
    except EnvironmentFailure:
        raise
    except ssl.SSLError as e:
        if asked:
            raise EnvironmentFailure(f"cannot use the TLS key {key_file}: wrong passphrase (UNICA_PASSPHRASE) "
                                     f"or not a key") from None
        why = "the key does not match the certificate" if "KEY_VALUES_MISMATCH" in str(e) else \
            "not a PEM certificate and private key"
        raise EnvironmentFailure(f"cannot use the TLS certificate {cert_file} with the key {key_file}: {why}") from None
    except (OSError, ValueError) as e:
        raise EnvironmentFailure(f"cannot use the TLS certificate {cert_file} with the key {key_file}: "
                                 f"{getattr(e, 'strerror', None) or e}") from None
    if client_ca_pem:
        try:
            ctx.load_verify_locations(cadata=client_ca_pem)
        except ssl.SSLError:
            raise EnvironmentFailure("the client CA certificates are not PEM certificates") from None
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.verify_flags |= _NO_CHECK_TIME
    return ctx


def client_ca_bundle(store, client_ca_file=None) -> str | None:
    """The CA certificates client certificates may chain to: ``client_ca_file`` (PEM), else every
    CA of the database (their status is checked per request, not here)."""
    if client_ca_file is not None:
        from unica.boundedio import read_limited

        try:
            data = read_limited(client_ca_file, 4 * 1024 * 1024, what="client CA file")
        except OSError as e:
            raise EnvironmentFailure.from_os(f"cannot read the client CA file {client_ca_file}", e) from None
        text = data.decode("ascii", "replace")
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise EnvironmentFailure(f"the client CA file {client_ca_file} holds no PEM certificate")
        return text
    from sqlalchemy import select

    from unica.store import models as m

    with store.read() as s:
        ders = [d for d in s.scalars(select(m.CA.cert_der)) if d]
    return "".join(ssl.DER_cert_to_PEM_cert(d) for d in ders) or None


def _problem_body(status: int, slug: str, title: str, detail: str) -> bytes:
    return json.dumps({"type": f"urn:unica:problem:{slug}", "title": title, "status": status,
                       "detail": detail}).encode()


def _problem(status: int, slug: str, title: str, detail: str) -> bytes:
    body = _problem_body(status, slug, title, detail)
    reason = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}[status]
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


#: seconds an overloaded worker asks a client to wait (503 Retry-After)
OVERLOADED_RETRY_AFTER = 1


def _overloaded_app(limit: int):
    """The ASGI answer of a worker at its connection limit, in place of uvicorn's plain-text 503:
    a problem document with Retry-After, counted in the metrics."""
    body = _problem_body(503, "overloaded", "Service overloaded",
                         f"this worker has {limit} connections or requests in progress; try again shortly")
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
               (b"retry-after", str(OVERLOADED_RETRY_AFTER).encode()), (b"connection", b"close")]

    async def overloaded(scope, receive, send) -> None:
        from unica.service import metrics

        metrics.refused("overloaded")
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return overloaded


class _HeadersTooLarge(Exception):
    pass


def protocol_class(settings):
    """uvicorn's httptools protocol for ``settings`` (see the module's description)."""
    from uvicorn.protocols.http.flow_control import service_unavailable
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    limit = settings.max_header_bytes
    header_timeout = settings.header_timeout
    overloaded = _overloaded_app(settings.max_connections)

    class UnicaHttpProtocol(HttpToolsProtocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._tls = None
            self._too_large = False
            self._header_bytes = 0
            self._in_headers = False
            self._header_timer = None
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                der = ssl_object.getpeercert(binary_form=True)
                cipher = ssl_object.cipher()
                self._tls = {"server_cert": None,
                             "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
                             "client_cert_name": None, "client_cert_error": None,
                             "tls_version": _TLS_VERSIONS.get(ssl_object.version()),
                             "cipher_suite": None, "unica_cipher": cipher[0] if cipher else None}
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self._in_headers:
                self.transport.write(_problem(408, "client-too-slow", "Request not received in time",
                                              f"the request headers did not arrive within {header_timeout:g} s"))
            self.transport.close()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            self._in_headers = True
            if self._header_timer is None:
                self._arm()
            if self._tls is not None:
                self.scope["extensions"] = {"tls": self._tls}

        def _count(self, n: int) -> None:
            self._header_bytes += n
            if self._header_bytes > limit:
                self._too_large = True
                raise _HeadersTooLarge()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._disarm()
            super().on_headers_complete()

        def _start_asgi_task(self, cycle, app) -> None:
            # uvicorn answers a request above limit_concurrency with its own plain-text 503
            super()._start_asgi_task(cycle, overloaded if app is service_unavailable else app)

        def send_400_response(self, msg: str) -> None:
            if self._too_large:
                data = _problem(431, "headers-too-large", "Request headers too large",
                                f"the request line and headers may be at most {limit} bytes")
            else:
                data = _problem(400, "malformed", "Malformed request", "not an HTTP/1.x request")
            self.transport.write(data)
            self.transport.close()

    return UnicaHttpProtocol


def _config(app, settings, context):
    import uvicorn

    return uvicorn.Config(app, loop="uvloop", http=protocol_class(settings), lifespan="on", log_level="warning",
                          access_log=False, timeout_keep_alive=15, server_header=False, date_header=True,
                          backlog=2048, limit_concurrency=settings.max_connections,
                          ssl_context_factory=(lambda config, default: context) if context is not None else None,
                          timeout_graceful_shutdown=10,
                          # uvicorn would believe X-Forwarded-For from 127.0.0.1 by default: the service
                          # decides itself whom to believe (--trusted-proxy, unica.service.identity)
                          proxy_headers=False, forwarded_allow_ips="")


def _run_one(settings, context, sock) -> None:
    import uvicorn

    from unica.service.app import create_app

    server = uvicorn.Server(_config(create_app(settings), settings, context))
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(1)


def serve(settings, context, sock: socket.socket) -> None:
    """Serve until SIGINT/SIGTERM: in this process (one worker) or in ``settings.workers``
    forked processes, each accepting on its own SO_REUSEPORT socket on the same address."""
    from unica.serving import run_workers
    from unica.service import metrics

    run_workers(lambda s: _run_one(settings, context, s), sock, settings.workers, on_exit=metrics.process_exited)
