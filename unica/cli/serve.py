"""``unica serve``: the CA as a service over HTTPS (EST, the REST API, health and metrics).

Everything is checked before the socket opens, so a bad start is one ``unica: error:`` line and
exit 1 (a missing or bad TLS certificate or key, a wrong passphrase, an address in use, a
database that does not answer or is at another schema). Secrets come from the environment only:
the TLS key's passphrase from ``UNICA_PASSPHRASE``, the CA keys' PIN from ``UNICA_PIN`` (a CA key
is opened at the first issuance, once per worker process).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from unica.cli.ca import db_option


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8443, show_default=True, help="0: any free port.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes sharing the port (each with its own database connections).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="The server certificate (PEM; the chain may follow it).")
@click.option("--tls-key", metavar="FILE",
              help="The server's private key (PEM; if encrypted, the passphrase from UNICA_PASSPHRASE).")
@click.option("--client-ca", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="CA certificates (PEM) client certificates may chain to [default: every CA of the database].")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="ADDR",
              help="Proxy mode: a reverse proxy's address or network; only from there is the client "
                   "certificate header (and X-Forwarded-For) believed (repeatable).")
@click.option("--proxy-cert-header", default="X-SSL-Client-Cert", show_default=True, metavar="NAME",
              help="The header the trusted proxy puts the client certificate in (URL-encoded PEM).")
@click.option("--max-body", type=click.IntRange(1024, 16 * 1024 * 1024), default=64 * 1024, show_default=True,
              metavar="BYTES", help="Largest request body.")
@click.option("--rate", type=click.FloatRange(0), default=20.0, show_default=True, metavar="PER_SECOND",
              help="Requests per second per client and worker (0: unlimited); above it 429.")
@click.option("--burst", type=click.IntRange(1), default=40, show_default=True, metavar="N",
              help="Requests a client may send at once above --rate.")
@click.option("--request-timeout", type=click.FloatRange(0.1, 3600), default=30.0, show_default=True,
              metavar="SECONDS", help="Longest time for one request, its body included.")
@click.option("--header-timeout", type=click.FloatRange(0.1, 600), default=10.0, show_default=True,
              metavar="SECONDS", help="Longest time for a client to send a request's headers.")
@click.option("--max-connections", type=click.IntRange(1, 1_000_000), default=1024, show_default=True, metavar="N",
              help="Connections (or requests in progress) per worker; a request above it gets 503 with Retry-After.")
@db_option
def serve(host, port, workers, tls_cert, tls_key, client_ca, trusted_proxies, proxy_cert_header, max_body, rate,
          burst, request_timeout, header_timeout, max_connections, db) -> None:
    """Serve the CA over HTTPS until stopped: EST under /.well-known/est/, the REST API under
    /api/v1, /healthz, /readyz, /metrics and /openapi.json.

    \b
    Examples:
      unica serve --tls-cert server.pem --tls-key server.key --port 8443 --workers 4
      unica serve --host 127.0.0.1 --port 8080 --trusted-proxy 127.0.0.1   # behind nginx (proxy mode)
    """
    from unica.errors import InputError

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_cert is None and not trusted_proxies:
        raise click.UsageError("give --tls-cert and --tls-key, or --trusted-proxy for proxy mode "
                               "(the proxy terminates TLS)")
    if not proxy_cert_header or any(ch in proxy_cert_header for ch in " :\r\n"):
        raise InputError(f"--proxy-cert-header {proxy_cert_header!r} is not a header name")
    # metrics of every worker in one place (prometheus_client's multiprocess mode): set before
    # prometheus_client is imported
    import tempfile

    metrics_dir = tempfile.mkdtemp(prefix="unica-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        _serve(host, port, workers, tls_cert, tls_key, client_ca, trusted_proxies, proxy_cert_header, max_body,
               rate, burst, request_timeout, header_timeout, max_connections, db)
    finally:
        import shutil

        shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve(host, port, workers, tls_cert, tls_key, client_ca, trusted_proxies, proxy_cert_header, max_body, rate,
           burst, request_timeout, header_timeout, max_connections, db) -> None:
    from unica.config import db_url
    from unica.service.server import bind, client_ca_bundle, serve as run, tls_context
    from unica.service.settings import Settings, parse_networks
    from unica.store import open_store

    url = db_url(db)
    settings = Settings(db_url=url, tls_cert=tls_cert, tls_key=Path(tls_key) if tls_key else None,
                        client_ca=client_ca, trusted_proxies=parse_networks(trusted_proxies),
                        proxy_cert_header=proxy_cert_header, max_body=max_body, rate=rate, burst=burst,
                        request_timeout=request_timeout, header_timeout=header_timeout,
                        max_connections=max_connections, workers=workers)
    store = open_store(url)  # a database that is missing or at another schema fails here
    try:
        context = None
        if tls_cert is not None:
            context = tls_context(tls_cert, tls_key, client_ca_bundle(store, client_ca))
    finally:
        store.dispose()
    sock = bind(host, port, reuse_port=workers > 1)
    scheme = "https" if context is not None else "http"
    shown = f"[{host}]" if ":" in host else host
    mode = "" if context is not None else f" (proxy mode: answers {', '.join(trusted_proxies)} only)"
    click.echo(f"unica service on {scheme}://{shown}:{sock.getsockname()[1]}/ ({workers} worker"
               f"{'s' if workers > 1 else ''}){mode}; health: /healthz, /readyz", err=True)
    run(settings, context, sock)


COMMANDS = [serve]
