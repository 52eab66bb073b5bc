"""The service's settings: one frozen value, made by ``unica serve`` from its options."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

#: the default bound of a request body (EST requests and API calls are a few KiB)
DEFAULT_MAX_BODY = 64 * 1024

#: the default bound of a request's URL and headers together
DEFAULT_MAX_HEADER_BYTES = 32 * 1024

#: the header a trusting reverse proxy puts the client certificate in (nginx:
#: ``proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;``)
DEFAULT_PROXY_CERT_HEADER = "X-SSL-Client-Cert"


def parse_networks(values) -> tuple:
    """``--trusted-proxy`` values: addresses or networks (``127.0.0.1``, ``10.0.0.0/8``, ``::1``)."""
    from unica.errors import InputError

    out = []
    for v in values or ():
        try:
            out.append(ipaddress.ip_network(v, strict=False))
        except ValueError:
            raise InputError(f"--trusted-proxy {v!r} is not an IP address or network") from None
    return tuple(out)


@dataclass(frozen=True)
class Settings:
    """What a service process needs to know. ``tls_cert`` None: plain HTTP, served only to the
    trusted proxies (proxy mode without TLS on the hop from the proxy)."""

    db_url: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    trusted_proxies: tuple = ()
    proxy_cert_header: str = DEFAULT_PROXY_CERT_HEADER
    max_body: int = DEFAULT_MAX_BODY
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    #: requests per second per client (sustained) and the burst allowed above it
    rate: float = 20.0
    burst: int = 40
    #: seconds a request may take, body included (slower: 408 if the client was sending, else 503)
    request_timeout: float = 30.0
    #: seconds a client may take to send a request's headers
    header_timeout: float = 10.0
    max_connections: int = 1024
    workers: int = 1
    extra: dict = field(default_factory=dict)

    def is_trusted_proxy(self, address: str | None) -> bool:
        if not address or not self.trusted_proxies:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted_proxies)
