"""The card the agent serves: its key (on a token through :mod:`unica.hsm`, logged in once at the
agent's start) and its certificate (the one on the token for that key, or a file)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from unica.errors import InputError, KeyNotFound, UnsupportedKeyType

@dataclass(frozen=True)
class Signed:
    """One signature the card made: ``signature`` (DER ECDSA, or RSA PKCS#1 v1.5), the
    ``algorithm`` (``ecdsa-sha256``, ``ecdsa-sha384``, ``rsa-pkcs1v15-sha256``)."""

    signature: bytes
    algorithm: str


class Card:
    """A loaded card: ``key`` (a cryptography private-key object, possibly a token's) and ``cert``
    (cryptography ``x509.Certificate``), checked to belong together."""

    def __init__(self, key, cert):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        spki = PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(Encoding.DER, spki) != cert.public_key().public_bytes(Encoding.DER, spki):
            raise InputError("the certificate is not the key's: its public key differs")
        if isinstance(key, ec.EllipticCurvePrivateKey):
            h = {"secp256r1": hashes.SHA256(), "secp384r1": hashes.SHA384()}.get(key.curve.name)
            if h is None:
                raise UnsupportedKeyType(f"the card's EC curve {key.curve.name} is not taken for login "
                                         f"(P-256 or P-384)")
            self._params = (ec.ECDSA(h),)
            self.algorithm = f"ecdsa-{h.name}"
        elif isinstance(key, rsa.RSAPrivateKey):
            from cryptography.hazmat.primitives.asymmetric import padding

            self._params = (padding.PKCS1v15(), hashes.SHA256())
            self.algorithm = "rsa-pkcs1v15-sha256"
        else:
            raise UnsupportedKeyType(f"a {type(key).__name__} key is not taken for login (EC P-256/P-384, RSA)")
        self.key = key
        self.cert = cert
        self.cert_der = cert.public_bytes(Encoding.DER)

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    def describe(self) -> dict:
        """What ``GET /v1/card`` answers."""
        return {"certificate": base64.b64encode(self.cert_der).decode("ascii"), "subject": self.subject,
                "serial": format(self.cert.serial_number, "x"), "issuer": self.cert.issuer.rfc4514_string(),
                "algorithm": self.algorithm}

    def sign(self, data: bytes) -> Signed:
        """The card's signature over ``data`` (hashed here, signed on the token)."""
        return Signed(self.key.sign(data, *self._params), self.algorithm)


def _token_certificate(key):
    """The newest certificate on the key's token whose public key is the key's."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from unica.hsm.objects import certificates

    spki = PublicFormat.SubjectPublicKeyInfo
    want = key.public_key().public_bytes(Encoding.DER, spki)
    mine = [c for c in certificates(key._ts) if c.public_key().public_bytes(Encoding.DER, spki) == want]
    if not mine:
        raise KeyNotFound(f"no certificate for the key {key.uri} on its token (import one with 'unica token "
                          f"import-cert', or give --cert FILE)")
    return max(mine, key=lambda c: c.not_valid_before_utc)


def _file_certificate(path):
    from unica.boundedio import MAX_CERTIFICATE, read_limited
    from unica.hsm.objects import load_certificate_bytes

    data = read_limited(path, MAX_CERTIFICATE, "--cert")
    return load_certificate_bytes(data, f"certificate file {path}")[0]


def open_card(key_uri: str, *, cert_file=None, pin: str | None = None, passphrase: str | None = None) -> Card:
    """Load the key ``key_uri`` (logging in to its token with ``pin``) and its certificate (from
    ``cert_file``, else from the token), and check they belong together."""
    from unica.hsm import load_key
    from unica.hsm.uri import Pkcs11URI, parse_key_uri

    uri = parse_key_uri(key_uri)
    key = load_key(uri, pin=pin, passphrase=passphrase)
    if cert_file is not None:
        cert = _file_certificate(cert_file)
    elif isinstance(uri, Pkcs11URI):
        cert = _token_certificate(key)
    else:
        raise InputError("a key file has no certificate beside it: give --cert FILE")
    return Card(key, cert)
