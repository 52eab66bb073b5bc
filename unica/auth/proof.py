"""Operator signatures: what the card signs, and checking it.

The card signs a short text naming the purpose (a request, or an approval or rejection of
request ID), the operation's digest, a fresh nonce and the time::

    unica-operator-signature v1
    purpose=request
    digest=<sha-256 hex>
    nonce=<32 hex>
    at=<ISO 8601 UTC>

The library checks the signature with the public key of the operator's *stored* certificate
(never with a key the caller hands over), that the time is within :data:`MAX_SKEW` of now, and
that the nonce was not used before (a signed request runs once).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

#: how far a signature's time may be from the checker's clock
MAX_SKEW = dt.timedelta(minutes=5)


def signed_message(purpose: str, digest: str, nonce: str, at: dt.datetime) -> bytes:
    if at.tzinfo is None:
        raise ValueError("the time of an operator signature must be timezone-aware")
    return (f"unica-operator-signature v1\npurpose={purpose}\ndigest={digest}\nnonce={nonce}\n"
            f"at={at.astimezone(dt.timezone.utc).isoformat(timespec='microseconds')}\n").encode()


@dataclass(frozen=True)
class Proof:
    """A card's signature over ``(purpose, digest, nonce, at)``, by the key ``spki_sha256`` names."""

    spki_sha256: str
    purpose: str
    digest: str
    nonce: str
    at: dt.datetime
    signature: bytes

    def message(self) -> bytes:
        return signed_message(self.purpose, self.digest, self.nonce, self.at)


#: SubjectPublicKeyInfo prefixes of named-curve EC keys (uncompressed point follows)
_EC_SPKI_PREFIX = {"secp256r1": bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200"),
                   "secp384r1": bytes.fromhex("3076301006072a8648ce3d020106052b81040022036200")}


def spki_sha256_of(public_key) -> str:
    """SHA-256 (hex) of the key's DER SubjectPublicKeyInfo: how an operator's card key is found.
    A P-256 / P-384 key's SPKI is built from its point (no serialization machinery to load on
    every operator action)."""
    import hashlib

    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name in _EC_SPKI_PREFIX:
        n = (public_key.curve.key_size + 7) // 8
        nums = public_key.public_numbers()
        point = b"\x04" + nums.x.to_bytes(n, "big") + nums.y.to_bytes(n, "big")
        return hashlib.sha256(_EC_SPKI_PREFIX[public_key.curve.name] + point).hexdigest()
    from cryptography.hazmat.primitives import serialization

    return hashlib.sha256(public_key.public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


class OperatorSigner:
    """The operator's card, as the CLI holds it: the key ``uri`` names (``pkcs11:...``; a
    ``file:`` key is for tests and drills only), loaded on first use.

    ``pin``: the card's PIN (or a function returning it, asked only when the card is first
    used); else the URI's ``pin-source``, else ``UNICA_PIN``.
    """

    def __init__(self, uri: str, *, pin: str | None = None, passphrase: str | None = None, key=None):
        self.uri = uri
        self._pin, self._passphrase, self._key = pin, passphrase, key
        self._spki: str | None = None

    def key(self):
        if self._key is None:
            from unica.hsm import load_key

            pin = self._pin() if callable(self._pin) else self._pin
            self._key = load_key(self.uri, pin=pin, passphrase=self._passphrase)
        return self._key

    def public_key(self):
        return self.key().public_key()

    def spki_sha256(self) -> str:
        if self._spki is None:
            self._spki = spki_sha256_of(self.public_key())
        return self._spki

    def prove(self, purpose: str, digest: str, *, now: dt.datetime | None = None) -> Proof:
        """Sign ``(purpose, digest)`` with a fresh nonce and the time, on the card."""
        from unica.hsm import sign_raw

        at = now or dt.datetime.now(dt.timezone.utc)
        nonce = os.urandom(16).hex()
        sig = sign_raw(self.key(), signed_message(purpose, digest, nonce, at))
        return Proof(self.spki_sha256(), purpose, digest, nonce, at, sig)

    def __repr__(self) -> str:
        return f"<OperatorSigner {self.uri.split('?')[0]}>"


def signature_ok(public_key, signature: bytes, message: bytes) -> bool:
    """Does ``signature`` over ``message`` verify with ``public_key`` (unica's default hash for it)?"""
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            size = public_key.curve.key_size
            h = hashes.SHA512() if size >= 521 else hashes.SHA384() if size >= 384 else hashes.SHA256()
            public_key.verify(signature, message, ec.ECDSA(h))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, message)
        else:
            return False
        return True
    except (InvalidSignature, ValueError):
        return False
