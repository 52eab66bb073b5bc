"""Small helpers between database rows and engine values (no transactions here)."""

from __future__ import annotations

import datetime as dt
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from unica.ca.engine import Issuer
from unica.errors import CAUnusable
from unica.hsm.keytypes import public_key_of
from unica.store.cas import get_ca_row  # noqa: F401 (it lives below both the CA and OCSP services)


def issuer_from_row(row) -> Issuer:
    """The engine's view of a CA row that has its certificate."""
    if row.cert_der is None:
        raise CAUnusable(f"CA {row.name!r} is awaiting its certificate (run 'unica ca import-cert {row.name} FILE')")
    if row.status != "active":
        raise CAUnusable(f"CA {row.name!r} is {row.status}; it cannot issue")
    cert = x509.load_der_x509_certificate(row.cert_der)
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        path_length = bc.path_length
    except x509.ExtensionNotFound:
        path_length = None
    try:
        nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        nc = None
    return Issuer(
        name=row.name, subject=cert.subject, public_key=public_key_of(cert), ski=row.ski,
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        crl_url=row.crl_url, crl_shards=row.crl_shards or 1, ocsp_url=row.ocsp_url,
        ca_issuers_url=row.ca_issuers_url, path_length=path_length,
        is_root=cert.issuer == cert.subject and row.parent_id in (None, row.id), name_constraints=nc,
    )


def name_hash(name: x509.Name) -> bytes:
    return hashlib.sha1(name.public_bytes()).digest()


def pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def utc(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
