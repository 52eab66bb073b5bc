"""A signing identity: a unica key (token or software) with its certificate and CA chain."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509

from unica.errors import InputError, KeyNotFound
from unica.hsm.keytypes import default_hash_for, is_sm2, public_key_of, spki_der


@dataclass(frozen=True)
class SigningIdentity:
    """A key and its certificate (with the CA chain, leaf excluded): what signing needs."""

    key: object
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = field(default_factory=tuple)
    pss: bool = False

    def __post_init__(self):
        if spki_der(self.key.public_key()) != spki_der(public_key_of(self.cert)):
            raise InputError(f"certificate {self.cert.subject.rfc4514_string()!r} is not for this key")

    @property
    def digest_algorithm(self) -> str:
        """pyHanko's name of the hash unica pairs with the key (sha256; sha384 for P-384; sm3 for
        SM2, whose signature scheme fixes it)."""
        if is_sm2(self.key):
            return "sm3"
        h = default_hash_for(self.key)
        return h.name if h is not None else "sha512"

    def pyhanko_signer(self):
        """A pyHanko :class:`Signer` over this identity (imports pyHanko: ~1 s)."""
        from unica.sign.pyhanko_signer import UnicaSigner

        return UnicaSigner(self)


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
