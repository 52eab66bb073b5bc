"""RFC 3161 time-stamp tokens at the DER level (RFC 3161, RFC 5816, RFC 5652).

A token is a CMS SignedData (version 3) whose encapsulated content is a TSTInfo
(eContentType id-ct-TSTInfo), signed by the unit key over the signed attributes
content-type, message-digest and signing-certificate-v2 (ESSCertIDv2 of the unit's
certificate, SHA-256). Everything that does not change from one token to the next -- the
certificate, the issuer-and-serial, the algorithm identifiers, the ESS attribute, the
``tsa`` GeneralName, the accuracy -- is encoded once per unit (:class:`TokenTemplate`);
per token only the TSTInfo, its digest and the signature are new.

Rejections (:func:`rejection`) are TimeStampResp with status ``rejection`` and a
failInfo bit: never a token.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from asn1crypto import algos, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from unica.der import oid
from unica.sign.cms import OID_CONTENT_TYPE, OID_MESSAGE_DIGEST, OID_SIGNED_DATA, OID_SIGNING_CERT_V2, tlv

__all__ = ["TokenTemplate", "Issued", "granted", "rejection", "FAILURES", "new_serial"]

OID_TST_INFO = oid("1.2.840.113549.1.9.16.1.4")

#: RFC 3161 PKIFailureInfo bits
FAILURES = {"badAlg": 0, "badRequest": 2, "badDataFormat": 5, "timeNotAvailable": 14, "unacceptedPolicy": 15,
            "unacceptedExtension": 16, "addInfoNotAvailable": 17, "systemFailure": 25}

#: the message-imprint digests accepted: name -> (DER AlgorithmIdentifier OID, digest size)
DIGESTS = {"sha256": ("2.16.840.1.101.3.4.2.1", 32), "sha384": ("2.16.840.1.101.3.4.2.2", 48),
           "sha512": ("2.16.840.1.101.3.4.2.3", 64)}

#: PKIStatusInfo granted, no statusString, no failInfo
_GRANTED = tlv(0x30, b"\x02\x01\x00")


def new_serial() -> int:
    """A positive random serial number of 127 bits (top bit set: always 16 bytes of DER)."""
    return int.from_bytes(secrets.token_bytes(16), "big") >> 1 | (1 << 126)


def _integer(n: int) -> bytes:
    return tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))


def _gen_time(t: float, accuracy_ms: int) -> bytes:
    """GeneralizedTime in UTC: seconds, or milliseconds (trailing zeros dropped, as DER wants)
    when the declared accuracy is finer than a second."""
    sec = int(t)
    s = time.strftime("%Y%m%d%H%M%S", time.gmtime(sec))
    if accuracy_ms < 1000:
        ms = int((t - sec) * 1000)
        if ms:
            s += ("." + f"{ms:03d}").rstrip("0")
    return tlv(0x18, (s + "Z").encode())


def _accuracy(accuracy_ms: int) -> bytes:
    seconds, millis = divmod(accuracy_ms, 1000)
    parts = []
    if seconds:
        parts.append(_integer(seconds))
    if millis:
        parts.append(tlv(0x80, millis.to_bytes(2, "big").lstrip(b"\x00") or b"\x00"))
    return tlv(0x30, *parts)


def _bit_string(bit: int) -> bytes:
    """A named-bit BIT STRING with only ``bit`` set (DER: trailing zero bits dropped)."""
    nbytes = bit // 8 + 1
    body = bytearray(nbytes)
    body[bit // 8] = 0x80 >> (bit % 8)
    return tlv(0x03, bytes([7 - bit % 8]) + bytes(body))


def rejection(failure: str, text: str) -> bytes:
    """A TimeStampResp: status rejection (2), ``text`` as statusString, ``failure`` as failInfo."""
    status = tlv(0x30, b"\x02\x01\x02", tlv(0x30, tlv(0x0C, text.encode("utf-8"))), _bit_string(FAILURES[failure]))
    return tlv(0x30, status)


def granted(token: bytes) -> bytes:
    return tlv(0x30, _GRANTED, token)


@dataclass(frozen=True)
class Issued:
    """What one token carried (for the archive)."""

    serial: int
    gen_time: datetime
    imprint_alg: str
    imprint: bytes
    policy: str
    nonce: bool


class TokenTemplate:
    """The constant DER parts of one unit's tokens, and :meth:`issue` that makes a token."""

    def __init__(self, key, cert: x509.Certificate, *, accuracy_ms: int = 1000, chain: tuple = ()):
        from unica.hsm import signature_params
        from unica.hsm.keytypes import default_hash_for

        self.key = key
        self.cert = cert
        self.accuracy_ms = accuracy_ms
        cert_der = cert.public_bytes(serialization.Encoding.DER)
        a_cert = asn1_x509.Certificate.load(cert_der)
        # the digest of the signature is the one unica pairs with the key (SHA-384 for P-384, ...)
        h = default_hash_for(key)
        self.digest_name = h.name if h is not None and h.name in DIGESTS else "sha256"
        self._hash = getattr(hashlib, self.digest_name)
        sid = tlv(0x30, a_cert["tbs_certificate"]["issuer"].dump(), core.Integer(cert.serial_number).dump())
        ess = tsp.SigningCertificateV2({"certs": [{
            "hash_algorithm": {"algorithm": "sha256"},
            "cert_hash": hashlib.sha256(cert_der).digest(),
            "issuer_serial": {"issuer": [asn1_x509.GeneralName(name="directory_name", value=a_cert.issuer)],
                              "serial_number": cert.serial_number},
        }]}).dump()
        digest_alg = algos.DigestAlgorithm({"algorithm": self.digest_name}).dump()
        self._sig_alg = _sig_alg(key, self.digest_name)
        fast = getattr(key, "sign_default", None)  # token EC keys: one flat locked call
        if fast is not None:
            self._sign = fast
        else:
            params = signature_params(key)
            self._sign = lambda data: key.sign(data, *params)
        self._ct_attr = tlv(0x30, OID_CONTENT_TYPE, tlv(0x31, OID_TST_INFO))
        self._ess_attr = tlv(0x30, OID_SIGNING_CERT_V2, tlv(0x31, ess))
        size = self._hash().digest_size
        md = tlv(0x30, OID_MESSAGE_DIGEST, tlv(0x31, tlv(0x04, bytes(size))))
        self._md_prefix = md[:-size]
        self._si_head = b"\x02\x01\x01" + sid + digest_alg
        self._sd_head = b"\x02\x01\x03" + tlv(0x31, digest_alg)
        certs = [cert_der] + [c.public_bytes(serialization.Encoding.DER) for c in chain]
        self._certs = tlv(0xA0, *sorted(dict.fromkeys(certs)))
        # tsa [0] EXPLICIT GeneralName, directoryName [4] EXPLICIT Name: the certificate's subject
        self._tsa = tlv(0xA0, tlv(0xA4, a_cert.subject.dump()))
        self._accuracy = _accuracy(accuracy_ms)
        self._policy_der: dict[str, bytes] = {}
        self._imprint_alg_der = {name: algos.DigestAlgorithm({"algorithm": name}).dump() for name in DIGESTS}

    def _policy(self, policy: str) -> bytes:
        der = self._policy_der.get(policy)
        if der is None:
            der = self._policy_der[policy] = oid(policy)
        return der

    def issue(self, policy: str, imprint_alg: str, imprint: bytes, nonce: bytes | int | None, cert_req: bool,
              now: float | None = None) -> tuple[bytes, Issued]:
        """A DER TimeStampResp (granted) holding a new token, and what the token says. ``nonce``:
        the content octets of the request's nonce INTEGER (copied as they are), or an int."""
        t = time.time() if now is None else now
        serial = new_serial()
        tst = tlv(0x30, b"\x02\x01\x01", self._policy(policy),
                  tlv(0x30, self._imprint_alg_der[imprint_alg], tlv(0x04, imprint)),
                  _integer(serial), _gen_time(t, self.accuracy_ms), self._accuracy,
                  (_integer(nonce) if isinstance(nonce, int) else tlv(0x02, nonce)) if nonce is not None else b"",
                  self._tsa)
        attrs = sorted((self._ct_attr, self._md_prefix + self._hash(tst).digest(), self._ess_attr))
        to_sign = tlv(0x31, *attrs)
        signature = self._sign(to_sign)  # the key's default hash: self.digest_name
        signer_info = tlv(0x30, self._si_head, b"\xa0" + to_sign[1:], self._sig_alg, tlv(0x04, signature))
        encap = tlv(0x30, OID_TST_INFO, tlv(0xA0, tlv(0x04, tst)))
        sd = tlv(0x30, self._sd_head, encap, self._certs if cert_req else b"", tlv(0x31, signer_info))
        token = tlv(0x30, OID_SIGNED_DATA, tlv(0xA0, sd))
        when = datetime.fromtimestamp(int(t) if self.accuracy_ms >= 1000 else int(t * 1000) / 1000, timezone.utc)
        return granted(token), Issued(serial, when, imprint_alg, imprint, policy, nonce is not None)


def _sig_alg(key, digest_name: str) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from unica.errors import UnsupportedKeyType

    if isinstance(key, ec.EllipticCurvePrivateKey):
        return algos.SignedDigestAlgorithm({"algorithm": f"{digest_name}_ecdsa"}).dump()
    if isinstance(key, rsa.RSAPrivateKey):
        return algos.SignedDigestAlgorithm({"algorithm": f"{digest_name}_rsa"}).dump()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return algos.SignedDigestAlgorithm({"algorithm": "ed25519"}).dump()
    raise UnsupportedKeyType(f"a TSA unit cannot sign with a {type(key).__name__}")
