"""CMS EnvelopedData to one EC certificate, by ECDH key agreement (RFC 5652, RFC 5753).

The form ``openssl cms -encrypt -aes256 -recip CERT -keyopt ecdh_kdf_md:sha256`` writes, and
``openssl cms -decrypt`` reads:

- one KeyAgreeRecipientInfo: an ephemeral originator key (id-ecPublicKey, parameters absent),
  ``dhSinglePass-stdDH-sha256kdf-scheme`` with ``aes256-wrap``, the recipient named by the
  certificate's issuer and serial number;
- the key-encryption key from the ANSI X9.63 KDF (SHA-256) over Z and the DER
  ECC-CMS-SharedInfo; the content-encryption key wrapped with AES key wrap (RFC 3394);
- the content encrypted with AES-256-CBC.

:func:`open_envelope` takes any private key with cryptography's ``exchange(ECDH(), peer)``: a
software key, or a key on a card (:class:`~unica.hsm.pkcs11.Pkcs11ECPrivateKey`, where ECDH
runs on the token and only Z comes back).
"""

from __future__ import annotations

import os

from asn1crypto import algos, cms, core, keys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from unica.errors import KeyBackupRefused, MalformedInput

__all__ = ["seal_envelope", "open_envelope", "DH_SHA256KDF", "AES256_WRAP"]

DH_SHA256KDF = "1.3.132.1.11.1"  # dhSinglePass-stdDH-sha256kdf-scheme (RFC 5753 / SEC 1)
AES256_WRAP = "2.16.840.1.101.3.4.1.45"  # id-aes256-wrap (RFC 3565)
_CURVES = {"secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1}


class _SharedInfo(core.Sequence):
    """ECC-CMS-SharedInfo (RFC 5753 section 7.2)."""

    _fields = [
        ("key_info", algos.AlgorithmIdentifier),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


def _wrap_alg() -> algos.AlgorithmIdentifier:
    return algos.AlgorithmIdentifier({"algorithm": AES256_WRAP})


def _kek(z: bytes, ukm: bytes | None) -> bytes:
    info = {"key_info": _wrap_alg(), "supp_pub_info": (256).to_bytes(4, "big")}
    if ukm is not None:
        info["entity_u_info"] = ukm
    return X963KDF(algorithm=hashes.SHA256(), length=32, sharedinfo=_SharedInfo(info).dump()).derive(z)


def seal_envelope(content: bytes, recipient: x509.Certificate) -> bytes:
    """DER ContentInfo: ``content`` encrypted to ``recipient`` (an EC P-256/P-384 certificate)."""
    pub = recipient.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name not in _CURVES:
        raise KeyBackupRefused("an envelope needs an EC P-256 or P-384 recipient certificate")
    eph = ec.generate_private_key(_CURVES[pub.curve.name]())
    kek = _kek(eph.exchange(ec.ECDH(), pub), None)
    cek, iv = os.urandom(32), os.urandom(16)
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = enc.update(padder.update(content) + padder.finalize()) + enc.finalize()
    eph_point = eph.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    rc = cms.Certificate.load(recipient.public_bytes(Encoding.DER))
    kari = cms.KeyAgreeRecipientInfo({
        "version": "v3",
        "originator": cms.OriginatorIdentifierOrKey(name="originator_key", value=keys.PublicKeyInfo({
            "algorithm": keys.PublicKeyAlgorithm({"algorithm": "ec"}), "public_key": eph_point})),
        "key_encryption_algorithm": cms.KeyEncryptionAlgorithm({
            "algorithm": DH_SHA256KDF, "parameters": core.Any.load(_wrap_alg().dump())}),
        "recipient_encrypted_keys": [cms.RecipientEncryptedKey({
            "rid": cms.KeyAgreementRecipientIdentifier(
                name="issuer_and_serial_number", value=cms.IssuerAndSerialNumber({
                    "issuer": rc.issuer, "serial_number": rc.serial_number})),
            "encrypted_key": aes_key_wrap(kek, cek),
        })],
    })
    ed = cms.EnvelopedData({
        "version": "v2",
        "recipient_infos": [cms.RecipientInfo(name="kari", value=kari)],
        "encrypted_content_info": cms.EncryptedContentInfo({
            "content_type": "data",
            "content_encryption_algorithm": cms.EncryptionAlgorithm({"algorithm": "aes256_cbc", "parameters": iv}),
            "encrypted_content": ciphertext,
        }),
    })
    return cms.ContentInfo({"content_type": "enveloped_data", "content": ed}).dump()


def _parse(envelope: bytes):
    try:
        ci = cms.ContentInfo.load(envelope, strict=True)
        if ci["content_type"].native != "enveloped_data":
            raise ValueError("not EnvelopedData")
        ed = ci["content"]
        ris = ed["recipient_infos"]
        if len(ris) != 1 or ris[0].name != "kari":
            raise ValueError("not one key-agreement recipient")
        kari = ris[0].chosen
        if kari["originator"].name != "originator_key":
            raise ValueError("no originator key")
        if kari["key_encryption_algorithm"]["algorithm"].dotted != DH_SHA256KDF:
            raise ValueError("not dhSinglePass-stdDH-sha256kdf-scheme")
        wrap = algos.AlgorithmIdentifier.load(kari["key_encryption_algorithm"]["parameters"].dump())
        if wrap["algorithm"].dotted != AES256_WRAP:
            raise ValueError("not aes256-wrap")
        reks = kari["recipient_encrypted_keys"]
        if len(reks) != 1:
            raise ValueError("not one recipient key")
        eci = ed["encrypted_content_info"]
        if eci["content_encryption_algorithm"]["algorithm"].native != "aes256_cbc":
            raise ValueError("content not AES-256-CBC")
        ukm = kari["ukm"].native if kari["ukm"].native is not None else None
        return (kari["originator"].chosen["public_key"].native, reks[0]["encrypted_key"].native, ukm,
                eci["content_encryption_algorithm"]["parameters"].native, eci["encrypted_content"].native)
    except (ValueError, TypeError, KeyError) as e:
        raise MalformedInput(f"a custodian envelope is not the CMS EnvelopedData unica writes: {e}") from None


def open_envelope(envelope: bytes, key, *, who: str = "the key") -> bytes:
    """The content of ``envelope``, decrypted with ``key`` (anything with ``exchange(ECDH(), peer)``).
    :class:`KeyBackupRefused` when ``key`` is not the recipient's."""
    point, encrypted_key, ukm, iv, ciphertext = _parse(envelope)
    try:
        eph = ec.EllipticCurvePublicKey.from_encoded_point(key.public_key().curve, point)
    except ValueError:
        raise KeyBackupRefused(f"{who} is on another curve than this envelope's recipient") from None
    kek = _kek(key.exchange(ec.ECDH(), eph), ukm)
    try:
        cek = aes_key_unwrap(kek, encrypted_key)
    except InvalidUnwrap:
        raise KeyBackupRefused(f"{who} does not open this envelope (not the recipient's key)") from None
    if len(cek) != 32 or not iv or len(iv) != 16:
        raise MalformedInput("a custodian envelope has a bad content key or IV")
    dec = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(dec.update(ciphertext) + dec.finalize()) + unpadder.finalize()
    except ValueError:
        raise MalformedInput("a custodian envelope's content does not decrypt (damaged)") from None
