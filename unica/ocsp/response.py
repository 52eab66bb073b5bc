"""Building signed OCSP responses (RFC 6960 4.2) at the DER level.

One :class:`ResponseSigner` per (CA, signing key): it precomputes the ResponderID (by key
hash), the AlgorithmIdentifier and the ``certs`` field, so signing a response is a few
byte concatenations plus one ``key.sign`` call. The same code signs pre-produced and
live responses. Error responses are constant bytes (:data:`ERROR_RESPONSES`).
"""

from __future__ import annotations

import datetime as _dt
import enum
import functools
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from unica import der
from unica.der import SignatureScheme, ctx, enumerated, extension, generalized_time, oid, seq, tlv
from unica.errors import ConfigurationError
from unica.revinfo import REASON_CODES

__all__ = ["ResponseStatus", "CertStatus", "GOOD", "UNKNOWN", "ResponseSigner", "ERROR_RESPONSES",
           "SignedResponse"]


class ResponseStatus(enum.IntEnum):
    successful = 0
    malformedRequest = 1
    internalError = 2
    tryLater = 3
    sigRequired = 5
    unauthorized = 6


#: complete OCSPResponse DER for each non-successful status
ERROR_RESPONSES = {s: seq(enumerated(int(s))) for s in ResponseStatus if s != ResponseStatus.successful}


@dataclass(frozen=True, slots=True)
class CertStatus:
    """good / revoked (time, optional reason) / unknown."""

    kind: str
    revoked_at: _dt.datetime | None = None
    reason: x509.ReasonFlags | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("good", "revoked", "unknown"):
            raise ValueError(f"certificate status {self.kind!r} is not good, revoked or unknown")
        if (self.kind == "revoked") != (self.revoked_at is not None):
            raise ValueError("a revoked status needs a revocation time, and only it")
        if self.reason is not None and self.kind != "revoked":
            raise ValueError("only a revoked status has a reason")
        if self.reason is not None and (self.reason not in REASON_CODES
                                        or self.reason is x509.ReasonFlags.remove_from_crl):
            raise ValueError(f"revocation reason {self.reason!r} is not an x509.ReasonFlags usable in OCSP")

    @classmethod
    def revoked(cls, at: _dt.datetime, reason: x509.ReasonFlags | None = None) -> "CertStatus":
        return cls("revoked", at, reason)

    def der(self) -> bytes:
        if self.kind == "good":
            return b"\x80\x00"
        if self.kind == "unknown":
            return b"\x82\x00"
        body = generalized_time(self.revoked_at)
        if self.reason is not None and self.reason is not x509.ReasonFlags.unspecified:
            body += tlv(ctx(0), enumerated(REASON_CODES[self.reason]))
        return tlv(ctx(1), body)


GOOD = CertStatus("good")
UNKNOWN = CertStatus("unknown")

_OID_BASIC = oid("1.3.6.1.5.5.7.48.1.1")
_OID_NONCE = oid("1.3.6.1.5.5.7.48.1.2")


class SignedResponse:
    """A successful OCSPResponse and the times an HTTP cache needs (``etag`` computed when
    first asked for: only cacheable GET answers need it)."""

    __slots__ = ("der", "produced_at", "this_update", "next_update", "_etag")

    def __init__(self, der: bytes, produced_at: _dt.datetime, this_update: _dt.datetime,
                 next_update: _dt.datetime, etag: str | None = None):
        self.der = der
        self.produced_at = produced_at
        self.this_update = this_update
        self.next_update = next_update
        self._etag = etag

    @property
    def etag(self) -> str:
        if self._etag is None:
            self._etag = '"' + hashlib.sha256(self.der).hexdigest()[:32] + '"'
        return self._etag

    def __eq__(self, other) -> bool:
        return isinstance(other, SignedResponse) and (self.der, self.produced_at, self.this_update,
                                                      self.next_update) == (other.der, other.produced_at,
                                                                            other.this_update, other.next_update)

    __hash__ = None

    def __repr__(self) -> str:
        return f"SignedResponse(produced_at={self.produced_at.isoformat()}, {len(self.der)} octets)"

    @classmethod
    def make(cls, der_bytes: bytes, produced_at, this_update, next_update) -> "SignedResponse":
        return cls(der_bytes, produced_at, this_update, next_update)


class ResponseSigner:
    """Signs OCSP responses for one CA.

    ``signer_cert`` is either the CA certificate itself (responses signed by the CA key)
    or a delegated responder certificate issued by that CA with id-kp-OCSPSigning (and
    id-pkix-ocsp-nocheck); a delegated certificate is included in ``certs`` so clients
    can validate it. ``key`` is the matching private key (any cryptography key, token
    keys included: only ``key.sign`` / ``key.public_key`` are called).
    """

    def __init__(self, issuer: x509.Certificate, signer_cert: x509.Certificate, key,
                 hash_alg: hashes.HashAlgorithm | None = None, *, rsa_pss: bool = False):
        from unica.hsm.keytypes import public_key_of, spki_der

        if spki_der(key.public_key()) != spki_der(public_key_of(signer_cert)):
            raise ConfigurationError(f"OCSP signing key does not match certificate {signer_cert.subject.rfc4514_string()}")
        self.delegated = signer_cert != issuer
        if self.delegated:
            if signer_cert.issuer != issuer.subject:
                raise ConfigurationError(f"OCSP signer {signer_cert.subject.rfc4514_string()} is not issued by "
                                         f"{issuer.subject.rfc4514_string()}")
            try:
                eku = signer_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except x509.ExtensionNotFound:
                eku = ()
            if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
                raise ConfigurationError(f"OCSP signer {signer_cert.subject.rfc4514_string()} lacks id-kp-OCSPSigning")
        self.signer_cert = signer_cert
        self.not_after = signer_cert.not_valid_after_utc
        cert_der = signer_cert.public_bytes(Encoding.DER)
        spk = der.cert_fields(cert_der)["spk"]
        self._responder_id = tlv(ctx(2), der.octet_string(hashlib.sha1(spk).digest()))
        self._certs = tlv(ctx(0), seq(cert_der)) if self.delegated else b""
        self._scheme = SignatureScheme(key, hash_alg, rsa_pss=rsa_pss)

    def sign(self, cert_id_der: bytes, status: CertStatus, this_update: _dt.datetime,
             next_update: _dt.datetime, *, nonce: bytes | None = None,
             produced_at: _dt.datetime | None = None) -> SignedResponse:
        """A complete, successful OCSPResponse for one certificate.

        ``cert_id_der`` is the CertID DER (the request's, verbatim); ``nonce`` the
        request's nonce extnValue (a DER OCTET STRING), echoed as is.
        """
        produced_at = produced_at or this_update
        this_der = _gtime(this_update)
        single = seq(cert_id_der, status.der(), this_der, tlv(ctx(0), _gtime(next_update)))
        exts = tlv(ctx(1), seq(extension(_OID_NONCE, nonce))) if nonce is not None else b""
        tbs = seq(self._responder_id, this_der if produced_at == this_update else _gtime(produced_at),
                  seq(single), exts)
        basic = seq(tbs, self._scheme.algorithm_identifier, der.bit_string(self._scheme.sign(tbs)), self._certs)
        body = seq(b"\x0a\x01\x00", tlv(ctx(0), seq(_OID_BASIC, der.octet_string(basic))))
        return SignedResponse.make(body, produced_at, this_update, next_update)


#: GeneralizedTime DER, remembered for recent times (live answers made in the same second share them)
_gtime = functools.lru_cache(maxsize=4096)(generalized_time)


def cert_id_for(issuer: x509.Certificate, serial: int, hash_name: str = "sha1") -> bytes:
    """The CertID DER for a certificate of ``issuer`` (used when pre-signing)."""
    f = der.cert_fields(issuer.public_bytes(Encoding.DER))
    h = getattr(hashlib, hash_name)
    return seq(der.hash_alg_id(hash_name), der.octet_string(h(f["subject"]).digest()),
               der.octet_string(h(f["spk"]).digest()), der.integer(serial))
