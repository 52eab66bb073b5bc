"""Small helpers of unica.verify: loading certificates, identities, times."""

from __future__ import annotations

import datetime as _dt
import os
import re
from typing import Iterable, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from unica.errors import MalformedInput, VerificationError

from .report import CertInfo, SignerIdentity

CertLike = Union[x509.Certificate, bytes, str, "os.PathLike[str]"]

OID_ORGANIZATION_IDENTIFIER = x509.ObjectIdentifier("2.5.4.97")
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def as_utc(t: _dt.datetime | None) -> _dt.datetime:
    if t is None:
        return utcnow()
    if not isinstance(t, _dt.datetime):
        raise TypeError("validation time must be a datetime")
    if t.tzinfo is None:
        raise ValueError("validation time must be timezone-aware")
    return t.astimezone(_dt.timezone.utc)


def parse_time(text: str) -> _dt.datetime:
    """ISO-8601 time; a value without zone is taken as UTC."""
    try:
        t = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise MalformedInput(f"time {text!r} is not ISO-8601 (e.g. 2026-05-01T12:00:00Z)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.astimezone(_dt.timezone.utc)


def one_line(text: object) -> str:
    """An exception text on one line (asn1crypto's messages span several)."""
    return " ".join(str(text).split())


def read_bytes(src: bytes | str | os.PathLike[str], what: str) -> tuple[bytes, str]:
    """-> (bytes, label for messages: ``what`` for bytes given, ``what PATH`` for a file).

    A file is read through :func:`unica.boundedio.read_limited` with the limit for ``what``."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src), what
    from unica.boundedio import limit_for, read_limited

    # bounded: /dev/zero, a FIFO or a huge file costs at most the limit (MalformedInput beyond it)
    return read_limited(src, limit_for(what), what, unreadable=VerificationError), f"{what} {src}"


def load_certificates(src: CertLike | Iterable[CertLike], what: str = "certificate") -> list[x509.Certificate]:
    """Certificates from cryptography objects, PEM/DER bytes or file paths (a PEM may hold many)."""
    if isinstance(src, x509.Certificate):
        return [src]
    if isinstance(src, (bytes, bytearray, memoryview, str, os.PathLike)):
        data, name = read_bytes(src, what)
        if b"-----BEGIN" in data:
            blocks = _PEM_CERT.findall(data)
            if not blocks:
                raise MalformedInput(f"{name}: no PEM CERTIFICATE block")
            try:
                return _names_parsed([x509.load_pem_x509_certificate(b) for b in blocks])
            except (ValueError, KeyError, TypeError, x509.InvalidVersion) as e:
                raise MalformedInput(f"{name}: bad PEM certificate: {type(e).__name__}: {one_line(e)}") from None
        try:
            return _names_parsed([x509.load_der_x509_certificate(data)])
        except (ValueError, KeyError, TypeError, x509.InvalidVersion) as e:
            raise MalformedInput(f"{name}: not a PEM or DER X.509 certificate: {type(e).__name__}: {one_line(e)}") \
                from None
    out: list[x509.Certificate] = []
    for item in src:
        out.extend(load_certificates(item, what))
    return out


def _names_parsed(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """Parse the (lazily parsed) names now: a name string with an unknown ASN.1 type raises
    KeyError (a BIT STRING for another attribute: TypeError) in cryptography, which must not
    surface later in path building."""
    for c in certs:
        c.subject, c.issuer
    return certs


def fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


def cert_info(cert: x509.Certificate) -> CertInfo:
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        sha256=fingerprint(cert).hex(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        signature_algorithm=signature_algorithm_name(cert.signature_algorithm_oid.dotted_string),
        public_key=public_key_name(cert),
    )


#: signature algorithms by OID, named as the reports name them
_SIGNATURE_ALGORITHMS = {
    "1.2.840.10045.4.3.2": "ecdsa-with-sha256", "1.2.840.10045.4.3.3": "ecdsa-with-sha384",
    "1.2.840.10045.4.3.4": "ecdsa-with-sha512", "1.2.840.10045.4.1": "ecdsa-with-sha1",
    "1.2.840.113549.1.1.11": "sha256-with-rsa", "1.2.840.113549.1.1.12": "sha384-with-rsa",
    "1.2.840.113549.1.1.13": "sha512-with-rsa", "1.2.840.113549.1.1.5": "sha1-with-rsa",
    "1.2.840.113549.1.1.10": "rsassa-pss", "1.3.101.112": "ed25519", "1.3.101.113": "ed448",
    "1.2.156.10197.1.501": "sm2-with-sm3",
}


def signature_algorithm_name(dotted: str) -> str:
    return _SIGNATURE_ALGORITHMS.get(dotted, dotted)


from unica.sm2 import SM2_CURVE_OID_DER as _SM2_CURVE_DER  # noqa: E402  (no libcrypto until used)


def public_key_name(cert: x509.Certificate) -> str:
    """``ec-p256``, ``rsa-3072``, ``ed25519``, ``sm2``... (the certified key, for a report)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    try:
        key = cert.public_key()
    except Exception:  # a key cryptography cannot load: SM2, or another algorithm
        from asn1crypto import x509 as ax

        try:
            spki = ax.Certificate.load(cert.public_bytes(Encoding.DER))["tbs_certificate"]["subject_public_key_info"]
            if _SM2_CURVE_DER in spki["algorithm"].dump():
                return "sm2"
            return spki["algorithm"]["algorithm"].dotted
        except Exception:
            return "unreadable"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}.get(
            key.curve.name, f"ec-{key.curve.name}")
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448"
    return type(key).__name__


def _first(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    attrs = name.get_attributes_for_oid(oid)
    if not attrs:
        return None
    v = attrs[0].value
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


_USCC = re.compile(r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}")


def signer_identity(cert: x509.Certificate | None) -> SignerIdentity:
    if cert is None:
        return SignerIdentity(subject="")
    name = cert.subject
    uscc = src = None
    org_id = _first(name, OID_ORGANIZATION_IDENTIFIER)
    serial = _first(name, NameOID.SERIAL_NUMBER)
    for value, source in ((org_id, "organizationIdentifier"), (serial, "serialNumber")):
        if not value:
            continue
        m = _USCC.search(value.upper())
        if m:
            uscc, src = m.group(0), source
            break
        if source == "organizationIdentifier":
            # a semantics prefix such as NTRCN- / VATCN-: keep what follows it
            uscc, src = re.sub(r"^[A-Z]{3}[A-Z]{2}[-:]", "", value), source
            break
    return SignerIdentity(
        subject=name.rfc4514_string(),
        common_name=_first(name, NameOID.COMMON_NAME),
        organization=_first(name, NameOID.ORGANIZATION_NAME),
        uscc=uscc,
        uscc_source=src,
        organization_identifier=org_id,
    )
