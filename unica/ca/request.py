"""Certificate signing requests (PKCS#10) as untrusted input.

:func:`parse_csr` accepts PEM or DER, checks the self-signature (proof of possession) and
returns a :class:`CSRRequest`: the public key, the requested subject and what the request
asks for. Nothing here decides what goes into a certificate -- the profile does.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from unica.errors import MalformedInput, PolicyViolation
from unica.hsm.keytypes import key_type_of

MAX_CSR_BYTES = 64 * 1024


@dataclass(frozen=True)
class CSRRequest:
    """What a request asks for. Every field is the requester's claim, not a decision."""

    public_key: object
    key_type: str
    subject: x509.Name
    requested_sans: tuple[x509.GeneralName, ...]
    requested_extensions: tuple[str, ...]  # dotted OIDs of the extensionRequest
    csr: x509.CertificateSigningRequest | None = None


def parse_csr(data: bytes, source: str = "CSR") -> CSRRequest:
    """Parse a PEM or DER PKCS#10 request and verify its signature."""
    if not isinstance(data, (bytes, bytearray)):
        raise MalformedInput(f"{source}: expected bytes")
    if len(data) > MAX_CSR_BYTES:
        raise MalformedInput(f"{source}: too large ({len(data)} bytes; at most {MAX_CSR_BYTES})")
    stripped = bytes(data).lstrip()
    try:
        if stripped.startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(stripped)
        else:
            csr = x509.load_der_x509_csr(bytes(data))
    except (ValueError, x509.InvalidVersion):
        raise MalformedInput(f"{source}: not a PKCS#10 certificate request (PEM or DER)") from None
    try:
        public_key = csr.public_key()
        kt = key_type_of(public_key)
    except Exception:
        raise PolicyViolation(f"{source}: the request's public key type is not supported") from None
    try:
        ok = csr.is_signature_valid
    except Exception:
        ok = False
    if not ok:
        raise PolicyViolation(f"{source}: the request's signature does not verify (no proof of possession "
                              "of the private key)")
    try:
        exts = csr.extensions
    except (ValueError, KeyError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:
        raise MalformedInput(f"{source}: malformed requested extensions: {type(e).__name__}: {e}") from None
    sans: tuple = ()
    for ext in exts:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            sans = tuple(ext.value)
    try:
        subject = csr.subject
    except (ValueError, KeyError, TypeError) as e:  # Key/TypeError: an attribute string of an odd ASN.1 type
        raise MalformedInput(f"{source}: malformed subject: {type(e).__name__}: {e}") from None
    return CSRRequest(public_key=public_key, key_type=kt, subject=subject, requested_sans=sans,
                      requested_extensions=tuple(e.oid.dotted_string for e in exts), csr=csr)
