"""Key types unica generates and recognises, and facts about public keys."""

from __future__ import annotations

import enum
import hashlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from unica.errors import UnsupportedKeyType


class KeyType(str, enum.Enum):
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    ED25519 = "ed25519"
    #: SM2 (GM/T 0003, GB/T 32918) with SM3: software keys only (see unica.sm2)
    SM2 = "sm2"

    @classmethod
    def parse(cls, text: str) -> "KeyType":
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(k.value for k in cls)
            raise UnsupportedKeyType(f"unknown key type {text!r} (one of: {names})") from None

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("rsa-")

    @property
    def is_ec(self) -> bool:
        return self.value.startswith("ec-")

    @property
    def is_sm2(self) -> bool:
        return self is KeyType.SM2

    @property
    def rsa_bits(self) -> int:
        return int(self.value.split("-")[1])

    @property
    def curve(self) -> ec.EllipticCurve:
        return {"ec-p256": ec.SECP256R1(), "ec-p384": ec.SECP384R1()}[self.value]


def is_sm2(key) -> bool:
    """Whether ``key`` (public or private) is an SM2 key of :mod:`unica.sm2`, or a token's SM2
    key (:class:`unica.hsm.pkcs11.Pkcs11SM2PrivateKey`), without loading that module's
    libcrypto binding when no SM2 key was ever made or read."""
    return type(key).__module__ == "unica.sm2" or getattr(type(key), "_unica_sm2", False)


def key_type_of(public_key) -> str:
    """A short name for a public (or private) key: ``ec-p256``, ``rsa-3072``, ``ed25519``, ``sm2``..."""
    if is_sm2(public_key):
        return "sm2"
    if hasattr(public_key, "public_key") and not isinstance(public_key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        public_key = public_key.public_key()
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}.get(
            public_key.curve.name, f"ec-{public_key.curve.name}")
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"rsa-{public_key.key_size}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "ed448"
    raise UnsupportedKeyType(f"unsupported public key type {type(public_key).__name__}")


def spki_der(public_key) -> bytes:
    if is_sm2(public_key):
        return (public_key.public_key() if hasattr(public_key, "public_key") else public_key).spki_der()
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def spki_sha256(public_key) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo (as ``openssl pkey -pubin -outform DER | sha256sum``)."""
    return hashlib.sha256(spki_der(public_key)).hexdigest()


def key_identifier(public_key) -> bytes:
    """RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING value.

    unica uses it as the CKA_ID of token keys, so a certificate's subject key identifier
    equals the id of its key on the token.
    """
    from cryptography import x509

    if is_sm2(public_key):  # the BIT STRING value is the uncompressed point, the SPKI's last 65 bytes
        return hashlib.sha1(spki_der(public_key)[-65:]).digest()
    return x509.SubjectKeyIdentifier.from_public_key(public_key).digest


def default_hash_for(public_key) -> hashes.HashAlgorithm | None:
    """The signature hash unica pairs with a key (certificates, CRLs, signatures): SHA-384 for
    P-384, SHA-512 for P-521 (RFC 5480 4), none for EdDSA and SM2 (whose scheme fixes its hash:
    SM3, with the signer's Z value), else SHA-256."""
    if is_sm2(public_key):
        return None
    if isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey,
                               ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    if isinstance(public_key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        size = public_key.curve.key_size
        return hashes.SHA512() if size >= 521 else hashes.SHA384() if size >= 384 else hashes.SHA256()
    if isinstance(public_key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        return hashes.SHA256()
    raise UnsupportedKeyType(f"unsupported key type {type(public_key).__name__}")


def public_key_of(cert):
    """The public key of a ``cryptography`` certificate (or CSR): what ``cert.public_key()``
    gives, or an :class:`unica.sm2.SM2PublicKey` for an SM2 key (which cryptography cannot
    load)."""
    try:
        return cert.public_key()
    except Exception:
        spki = _spki_of_sm2(cert)
        if spki is None:
            raise
        from unica.sm2 import SM2PublicKey

        return SM2PublicKey.from_spki_der(spki)


from unica.sm2 import SM2_CURVE_OID_DER as _SM2_CURVE_DER  # noqa: E402  (no libcrypto until used)


def _spki_of_sm2(cert) -> bytes | None:
    """The SubjectPublicKeyInfo DER of a certificate or CSR whose key is on the SM2 curve, else None
    (framed in the TBS with unica's DER reader: no second parse of the whole structure)."""
    from unica import der

    try:
        if hasattr(cert, "tbs_certrequest_bytes"):  # version, subject, subjectPKInfo
            tbs, skip = cert.tbs_certrequest_bytes, 2
        else:  # [0] version, serial, signature, issuer, validity, subject, subjectPublicKeyInfo
            tbs = cert.tbs_certificate_bytes
            _, s, e = der.read_tlv(tbs, 0)
            skip = 6 if der.read_tlv(tbs, s, e)[0] == 0xA0 else 5
        _, pos, end = der.read_tlv(tbs, 0)
        for _ in range(skip):
            pos = der.read_tlv(tbs, pos, end)[2]
        _, _, stop = der.read_tlv(tbs, pos, end)
        spki = bytes(tbs[pos:stop])
    except (der.DERError, ValueError):
        return None
    return spki if _SM2_CURVE_DER in spki[:32] else None
