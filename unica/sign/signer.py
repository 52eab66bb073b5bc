"""One signer for CMS and PDF: a pyHanko :class:`Signer` whose raw signature comes from a unica key.

pyHanko builds the CMS structure (signed attributes, certificates, timestamps); the only
thing it asks of a signer is the raw signature over the DER signed attributes. That comes
from :func:`unica.hsm.sign_raw` -- on the token for ``pkcs11:`` keys, inside unica's module
lock and cached session, so pyHanko never talks to the PKCS#11 module itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko_certvalidator.registry import SimpleCertificateStore
from pyhanko_certvalidator.util import get_pyca_cryptography_hash, process_pss_params

from unica.errors import InputError, KeyNotFound, UnsupportedKeyType
from unica.hsm import sign_raw
from unica.hsm.keytypes import default_hash_for, spki_der


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


@dataclass(frozen=True)
class SigningIdentity:
    """A key and its certificate (with the CA chain, leaf excluded): what signing needs."""

    key: object
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = field(default_factory=tuple)
    pss: bool = False

    def __post_init__(self):
        if spki_der(self.key.public_key()) != spki_der(self.cert.public_key()):
            raise InputError(f"certificate {self.cert.subject.rfc4514_string()!r} is not for this key")

    @property
    def digest_algorithm(self) -> str:
        """pyHanko's name of the hash unica pairs with the key (sha256; sha384 for P-384)."""
        h = default_hash_for(self.key)
        return h.name if h is not None else "sha512"

    def pyhanko_signer(self) -> "UnicaSigner":
        return UnicaSigner(self)


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


def load_signer(key_uri: str, *, pin: str | None = None, passphrase: str | None = None,
                cert: x509.Certificate | None = None, chain: list[x509.Certificate] | None = None,
                pss: bool = False) -> SigningIdentity:
    """The key ``key_uri`` names, with its certificate and chain.

    For a token key the certificate and CA chain are read from the token (the certificate
    with the key's CKA_ID) unless given. A software key needs ``cert``.
    """
    from unica.hsm import load_key
    from unica.hsm.pkcs11 import TokenKey

    key = load_key(key_uri, pin=pin, passphrase=passphrase)
    token_chain: list[x509.Certificate] = []
    if cert is None:
        if not isinstance(key, TokenKey):
            raise KeyNotFound(f"the key {key_uri} is not on a token: give its certificate (--cert)")
        from unica.hsm.objects import certificate_for_key

        cert, token_chain = certificate_for_key(key)
    elif chain is None and isinstance(key, TokenKey):
        from unica.hsm.objects import build_chain, certificates

        token_chain = build_chain(cert, certificates(key._ts))
    return SigningIdentity(key=key, cert=cert, chain=tuple(chain if chain is not None else token_chain), pss=pss)
