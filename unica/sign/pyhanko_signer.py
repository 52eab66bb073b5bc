"""pyHanko's :class:`Signer` over a unica key, for PDF (PAdES) signing.

pyHanko builds the CMS structure (signed attributes, certificates, timestamps); the only
thing it asks of a signer is the raw signature over the DER signed attributes. That comes
from :func:`unica.hsm.sign_raw` -- on the token for ``pkcs11:`` keys, inside unica's module
lock and cached session, so pyHanko never talks to the PKCS#11 module itself.
"""

from __future__ import annotations

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko_certvalidator.registry import SimpleCertificateStore
from pyhanko_certvalidator.util import get_pyca_cryptography_hash, process_pss_params

from unica.errors import UnsupportedKeyType
from unica.hsm import sign_raw
from unica.sign.signer import SigningIdentity


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


class UnicaSigner(Signer):
    """pyHanko signer over any unica key (token or software)."""

    def __init__(self, identity: SigningIdentity):
        self.identity = identity
        store = SimpleCertificateStore.from_certs([_asn1(c) for c in identity.chain])
        super().__init__(signing_cert=_asn1(identity.cert), cert_registry=store, prefer_pss=identity.pss)

    def _placeholder_size(self) -> int:
        key = self.identity.key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return 2 * ((key.curve.key_size + 7) // 8) + 8
        if isinstance(key, rsa.RSAPrivateKey):
            return (key.key_size + 7) // 8
        return 64

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        if dry_run:
            return bytes(self._placeholder_size())
        return self.sign_raw(data, digest_algorithm)

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        key = self.identity.key
        mech = self.get_signature_mechanism_for_digest(digest_algorithm)
        name = mech["algorithm"].native
        if name == "rsassa_pss":
            pad, h = process_pss_params(mech["parameters"])
            return key.sign(data, pad, h)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return sign_raw(key, data)
        h: hashes.HashAlgorithm = get_pyca_cryptography_hash(digest_algorithm)
        if isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            return sign_raw(key, data, h)
        raise UnsupportedKeyType(f"cannot sign CMS with a {type(key).__name__}")
