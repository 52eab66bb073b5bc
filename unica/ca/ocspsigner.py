"""Delegated OCSP signer certificates: issued by a CA under the ``ocsp-signer`` profile.

The OCSP responder then needs only the signer's key (never the CA key). Signer
certificates are short-lived (the profile: 90 days) and carry id-pkix-ocsp-nocheck;
:func:`ensure_ocsp_signer` renews one when less than a third of its life is left -- run it
from the CA side on a timer (``unica ocsp signer --ca NAME --renew-if-due``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from unica.ca.records import get_ca_row
from unica.errors import ConfigurationError
from unica.store import models as m

PROFILE = "ocsp-signer"
RENEW_WHEN_LEFT = 1 / 3


@dataclass(frozen=True)
class OCSPSignerInfo:
    ca: str
    key_uri: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    renewed: bool

    def to_dict(self) -> dict:
        return {"ca": self.ca, "key_uri": self.key_uri, "serial": self.serial,
                "not_before": self.not_before.isoformat(), "not_after": self.not_after.isoformat(),
                "renewed": self.renewed}


def current_signer(store, ca_name: str) -> tuple[str | None, x509.Certificate | None]:
    """The CA's delegated OCSP signer: (key URI, certificate), or (None, None)."""
    with store.read() as s:
        ca = get_ca_row(s, ca_name)
        if ca.ocsp_signer_cert_id is None or not ca.ocsp_signer_key_uri:
            return None, None
        row = s.get(m.Certificate, ca.ocsp_signer_cert_id)
        if row is None or row.der is None:
            return None, None
        return ca.ocsp_signer_key_uri, x509.load_der_x509_certificate(row.der)


def _due(cert: x509.Certificate | None, now: dt.datetime) -> bool:
    if cert is None:
        return True
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    return cert.not_valid_after_utc - now < life * RENEW_WHEN_LEFT


def _new_key_uri(ca_name: str, token: str | None, now: dt.datetime) -> str:
    stamp = now.strftime("%Y%m%d%H%M%S")
    if token:
        from unica.hsm.uri import Pkcs11URI

        return str(Pkcs11URI(token=token, object=f"ocsp-{ca_name}-{stamp}"))
    from unica.config import keys_dir

    return f"file:{keys_dir() / f'ocsp-{ca_name}-{stamp}.pem'}"


def issue_ocsp_signer(store, ca_name: str, *, key_uri: str | None = None, key_type: str = "ec-p256",
                      token: str | None = None, ca_key=None, pin: str | None = None,
                      passphrase: str | None = None, now: dt.datetime | None = None, auth=None) -> OCSPSignerInfo:
    """Make a signer key (or use ``key_uri``), have the CA issue its certificate, and point the CA at it.

    ``auth``: the operator acting (see :mod:`unica.auth`): once operators exist, operation
    ``ocsp.signer``, an admin's (checked before a key is made; the issuance runs under it).
    ``ca_key``, ``pin`` and ``passphrase`` may be functions returning them, called only once the
    operator is authorized (so a refused operator is never asked for a PIN)."""
    from unica.auth import Operation, authorized

    op = Operation("ocsp.signer", ca=ca_name, params={"key_uri": key_uri, "key_type": key_type, "token": token})
    with authorized(store, op, auth):
        return _issue_ocsp_signer(store, ca_name, key_uri=key_uri, key_type=key_type, token=token, ca_key=ca_key,
                                  pin=pin, passphrase=passphrase, now=now)


def _issue_ocsp_signer(store, ca_name: str, *, key_uri, key_type, token, ca_key, pin, passphrase,
                       now) -> OCSPSignerInfo:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from unica.ca.issuance import IssuingCA
    from unica.hsm import certified_or_discarded, generate_key, load_key
    from unica.hsm.enroll import make_csr

    now = now or m.utcnow()
    ca_key, pin, passphrase = (v() if callable(v) else v for v in (ca_key, pin, passphrase))
    with store.read() as s:
        ca = get_ca_row(s, ca_name)
        ca_subject = x509.load_der_x509_certificate(ca.cert_der).subject if ca.cert_der else None
    if ca_subject is None:
        raise ConfigurationError(f"CA {ca_name!r} has no certificate yet; it cannot certify an OCSP signer")
    secrets = {"pin": pin} if (key_uri or "").startswith("pkcs11:") or token else {"passphrase": passphrase}
    generated = key_uri is None
    if generated:
        key_uri = _new_key_uri(ca_name, token, now)
        key = generate_key(key_uri, key_type, **secrets)
        key_uri = str(getattr(key, "uri", key_uri))
    else:
        key = load_key(key_uri, **secrets)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigurationError("an OCSP signer key must be EC or RSA")

    def certify_and_record() -> OCSPSignerInfo:
        name_attrs = [x509.NameAttribute(NameOID.COMMON_NAME, f"OCSP Responder for {ca_name}")]
        orgs = ca_subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        countries = ca_subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
        subject = x509.Name([*countries[:1], *orgs[:1], *name_attrs])
        csr = make_csr(key, subject)
        issuing = IssuingCA(store, ca_name, key=ca_key)
        issued = issuing.issue(csr.public_bytes(Encoding.DER), PROFILE, requester=f"ocsp-signer:{ca_name}",
                               source=f"OCSP signer request for CA {ca_name}")
        cert = x509.load_der_x509_certificate(issued.der)
        with store.write() as s:
            ca = s.get(m.CA, get_ca_row(s, ca_name).id, with_for_update=True)
            row = s.execute(select(m.Certificate).where(m.Certificate.ca_id == ca.id,
                                                        m.Certificate.serial == issued.serial_hex)).scalar_one()
            previous = ca.ocsp_signer_key_uri
            ca.ocsp_signer_key_uri = key_uri
            ca.ocsp_signer_cert_id = row.id
            store.audit(s, "ocsp.signer-issued", ca=ca_name, target=issued.serial_hex,
                        details={"key": key_uri, "previous_key": previous,
                                 "not_after": cert.not_valid_after_utc.isoformat()})
        return OCSPSignerInfo(ca_name, key_uri, issued.serial_hex, cert.not_valid_before_utc,
                              cert.not_valid_after_utc, renewed=previous is not None)

    return certified_or_discarded(certify_and_record, key, key_uri if generated else None, pin=pin)


def ensure_ocsp_signer(store, ca_name: str, *, now: dt.datetime | None = None, **kwargs) -> OCSPSignerInfo | None:
    """Issue a signer if the CA has none, or renew it when less than a third of its life is left.

    Returns the new signer, or None when the current one is good for a while yet (then nothing
    changes, and no operator is needed: ``auth`` in ``kwargs`` is checked only when due)."""
    now = now or m.utcnow()
    _, cert = current_signer(store, ca_name)
    if not _due(cert, now):
        return None
    return issue_ocsp_signer(store, ca_name, now=now, **kwargs)
