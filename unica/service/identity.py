"""Who is asking: the client's address and certificate, and the checks a certificate passes.

The certificate comes from the TLS connection (:mod:`unica.service.server` puts the peer's
certificate into the ASGI scope as ``scope["extensions"]["tls"]["client_cert_chain"]``, PEM, as
the ASGI TLS extension has it) or, in proxy mode, from the header the reverse proxy sets
(``--proxy-cert-header``, nginx's ``$ssl_client_escaped_cert``), accepted only from the
``--trusted-proxy`` addresses. The TLS layer asks for a certificate but does not require one
(``CERT_OPTIONAL``) and checks its signature chain against the CAs of the database; what it
cannot know -- the certificate's status in this CA's records, the CAs above it, its validity
now -- :func:`check_certificate` checks on every request, with :mod:`unica.verify` for the path
and the database rows for revocation (a revocation takes effect at the next request).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from unica.service.problems import Problem

#: parsed peer certificates (cryptography objects) and passed path validations, per process
_CACHE_SIZE = 4096
_PATH_TTL = 300.0


@dataclass(frozen=True)
class Client:
    """The client of one request: its address (the proxy's client in proxy mode), its certificate
    (DER; None: none presented) and whether the certificate came through a trusted proxy."""

    address: str | None
    cert_der: bytes | None = None
    via_proxy: bool = False
    _cert: list = field(default_factory=list, compare=False, repr=False)

    @property
    def cert(self):
        """The certificate, parsed (cryptography ``x509.Certificate``), or None."""
        if self.cert_der is None:
            return None
        if not self._cert:
            from cryptography import x509

            try:
                self._cert.append(x509.load_der_x509_certificate(self.cert_der))
            except ValueError:
                raise Problem(400, "client-certificate", detail="the client certificate is not DER X.509") from None
        return self._cert[0]

    @property
    def fingerprint(self) -> str | None:
        return hashlib.sha256(self.cert_der).hexdigest() if self.cert_der else None

    @property
    def key(self) -> str:
        """The client as one string (rate limits, idempotency keys, audit): the certificate's
        SHA-256 when there is one, else the address."""
        if self.cert_der is not None:
            return f"cert:{self.fingerprint}"
        return f"ip:{self.address or '-'}"


def _pem_to_der(text: str) -> bytes:
    import base64
    import binascii

    body = text.replace("-----BEGIN CERTIFICATE-----", "").replace("-----END CERTIFICATE-----", "")
    body = "".join(body.split())
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise Problem(400, "client-certificate", detail="the client certificate is not PEM") from None


def _header(scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers") or ():
        if k == name:
            return v
    return None


def client_of(scope, settings) -> Client:
    """The :class:`Client` of an ASGI request (computed once per request, kept in the scope)."""
    found = scope.get("unica.client")
    if found is not None:
        return found
    peer = (scope.get("client") or (None,))[0]
    header = settings.proxy_cert_header.lower().encode("latin-1")
    forwarded = _header(scope, header)
    if settings.is_trusted_proxy(peer):
        address = peer
        xff = _header(scope, b"x-forwarded-for")
        if xff:
            address = xff.decode("latin-1").split(",")[-1].strip() or peer
        der = None
        if forwarded and forwarded.strip():
            text = urllib.parse.unquote(forwarded.decode("latin-1"))
            der = _pem_to_der(text)
        c = Client(address, der, via_proxy=True)
    else:
        if forwarded is not None:
            raise Problem(403, "untrusted-proxy",
                          detail=f"the {settings.proxy_cert_header} header is accepted only from a trusted proxy")
        der = None
        tls = (scope.get("extensions") or {}).get("tls") or {}
        chain = tls.get("client_cert_chain") or ()
        if chain:
            der = _pem_to_der(chain[0])
        c = Client(peer, der)
    scope["unica.client"] = c
    return c


async def client(request) -> Client:
    """FastAPI dependency: the request's :class:`Client`."""
    return client_of(request.scope, request.app.state.settings)


# --- checking a client certificate ------------------------------------------------------------


@dataclass(frozen=True)
class CheckedCertificate:
    """A client certificate that passed :func:`check_certificate`."""

    der: bytes
    ca: str
    serial: str
    profile: str | None
    office: str | None
    subject: str


_paths: dict[str, float] = {}
_paths_lock = threading.Lock()


def _office_of(session, der: bytes, row=None) -> str | None:
    """The RA office a client certificate belongs to, for the audit: its operator's office, else
    the office recorded with the certificate, else its enterprise's."""
    from sqlalchemy import select

    from unica.store import models as m

    office = session.scalars(select(m.Operator.office).where(m.Operator.cert_der == der)).first()
    if office is None and row is not None:
        office = getattr(row, "office", None)
        if office is None and getattr(row, "enterprise_id", None) is not None:
            office = session.scalars(select(m.Enterprise.office).where(m.Enterprise.id == row.enterprise_id)).first()
    return office


def _refused(store, client: Client, reason: str, *, audit: bool = True, row=None, ca: str | None = None) -> Problem:
    """A refused client certificate: audited (who -- the certificate's SHA-256 and serial, from
    where, its office -- and why), then answered 403."""
    if audit:
        try:
            with store.write() as s:
                office = _office_of(s, client.cert_der, row) if client.cert_der else None
                store.audit(s, "service.client_refused", ca=ca, target=client.fingerprint,
                            details={"client": client.address, "certificate_sha256": client.fingerprint,
                                     "serial": getattr(row, "serial", None), "office": office, "reason": reason})
        except Exception:  # noqa: BLE001 - the refusal stands whether or not the audit could be written
            import logging

            logging.getLogger("unica.service").exception("cannot audit a refused client certificate")
    return Problem(403, "client-certificate", detail=reason)


def _issuer_row(session, cert):
    from cryptography import x509
    from sqlalchemy import select

    from unica.store import models as m

    for ca in session.scalars(select(m.CA).where(m.CA.subject_der == cert.issuer.public_bytes())):
        if ca.cert_der is None:
            continue
        try:
            cert.verify_directly_issued_by(x509.load_der_x509_certificate(ca.cert_der))
        except Exception:  # noqa: BLE001 - any failure: not this CA
            continue
        return ca
    return None


def check_certificate(store, client: Client, now: dt.datetime | None = None) -> CheckedCertificate:
    """Check the client's certificate against this CA database: issued by one of its CAs and
    recorded there, valid now and not revoked or on hold (the row's status, read at every
    call), every CA above it active and current, and its path valid for client authentication
    (:func:`unica.verify.validate_certificate`, cached per process for a few minutes). Raises
    :class:`Problem` 401 without a certificate, 403 (audited) for a refused one."""
    from sqlalchemy import select

    from unica.store import models as m

    if client.cert_der is None:
        raise Problem(401, "client-certificate-required", detail="this request needs a TLS client certificate")
    cert = client.cert
    now = now or dt.datetime.now(dt.timezone.utc)
    with store.read() as s:
        ca = _issuer_row(s, cert)
        if ca is None:
            raise _refused(store, client, "the client certificate was not issued by a CA of this service")
        serial = m.serial_hex(cert.serial_number)
        row = s.scalars(select(m.Certificate).where(m.Certificate.ca_id == ca.id,
                                                    m.Certificate.serial == serial)).first()
        if row is None:
            raise _refused(store, client, f"the client certificate (serial {serial}) is not recorded by CA {ca.name}")
        if row.der != client.cert_der:
            raise _refused(store, client, row=row, ca=ca.name,
                           reason=f"the client certificate (serial {serial}) is not the one CA {ca.name} issued")
        if row.status in ("revoked", "hold"):
            raise _refused(store, client, row=row, ca=ca.name,
                           reason=f"the client certificate (serial {serial}) is "
                                  f"{'on hold' if row.status == 'hold' else 'revoked'}")
        if row.status != "valid":
            raise _refused(store, client, row=row, ca=ca.name,
                           reason=f"the client certificate (serial {serial}) is {row.status}")
        if now < _aware(row.not_before) or now > _aware(row.not_after):
            raise _refused(store, client, row=row, ca=ca.name,
                           reason=f"the client certificate (serial {serial}) is not valid now "
                                  f"(valid {_aware(row.not_before):%Y-%m-%d %H:%M}Z to "
                                  f"{_aware(row.not_after):%Y-%m-%d %H:%M}Z)")
        chain, up, seen = [], ca, set()
        while up is not None and up.id not in seen:
            seen.add(up.id)
            if up.status != "active":
                raise _refused(store, client, row=row, ca=ca.name,
                           reason=f"CA {up.name}, above the client certificate, is {up.status}")
            if up.not_after is not None and now > _aware(up.not_after):
                raise _refused(store, client, row=row, ca=ca.name,
                           reason=f"CA {up.name}, above the client certificate, expired")
            chain.append(up.cert_der)
            up = s.get(m.CA, up.parent_id) if up.parent_id else None
        checked = CheckedCertificate(client.cert_der, ca.name, serial, row.profile, getattr(row, "office", None),
                                     cert.subject.rfc4514_string())
    _validate_path(store, client, cert, chain, now)
    return checked


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def _validate_path(store, client: Client, cert, chain_der: list[bytes], now: dt.datetime) -> None:
    key = client.fingerprint + hashlib.sha256(b"".join(chain_der)).hexdigest()
    t = time.monotonic()
    with _paths_lock:
        until = _paths.get(key)
        if until is not None and until > t:
            return
    from cryptography import x509

    from unica.verify import OFF, validate_certificate

    chain = [x509.load_der_x509_certificate(d) for d in chain_der]
    report = validate_certificate(cert, trust=[chain[-1]], intermediates=chain[:-1], at=now,
                                  usage="client-auth", revocation=OFF)
    if not report.passed:
        why = "; ".join(report.messages) or str(report.sub_indication)
        raise _refused(store, client, f"the client certificate does not validate: {why}"[:400])
    with _paths_lock:
        if len(_paths) >= _CACHE_SIZE:
            _paths.clear()
        _paths[key] = t + _PATH_TTL


# --- what routes ask for ----------------------------------------------------------------------


def _store(request):
    return request.app.state.store


def require_certificate(request) -> CheckedCertificate:
    """The request's client certificate, checked (:func:`check_certificate`)."""
    c = client_of(request.scope, request.app.state.settings)
    return check_certificate(_store(request), c)


def require_operator(request) -> bytes:
    """The DER of the client's certificate, checked, when it is an active operator's: pass it
    as ``auth=unica.auth.TLSClient(der)`` (the operation checks role, office and rules)."""
    from sqlalchemy import select

    from unica.store import models as m

    checked = require_certificate(request)
    with _store(request).read() as s:
        op = s.scalars(select(m.Operator).where(m.Operator.cert_der == checked.der)).first()
        name, status = (op.name, op.status) if op is not None else (None, None)
    if name is None:
        c = client_of(request.scope, request.app.state.settings)
        raise _refused(_store(request), c, "the client certificate is not an operator's")
    if status != "active":
        c = client_of(request.scope, request.app.state.settings)
        raise _refused(_store(request), c, f"operator {name} is {status}")
    return checked.der


def require_enterprise(request) -> tuple[bytes, dict]:
    """The client's certificate (DER, checked) and the enterprise it was issued to."""
    from unica import ra

    checked = require_certificate(request)
    enterprise = ra.enterprise_of_certificate(_store(request), checked.der)
    if enterprise is None:
        c = client_of(request.scope, request.app.state.settings)
        raise _refused(_store(request), c, "the client certificate was not issued to a registered enterprise")
    return checked.der, enterprise
