"""JWS signatures made by a key of :mod:`unica.hsm`: joserfc builds and parses the JOSE objects,
the signature itself comes from the key object (a token key signs on the token; its private
part never leaves it).

joserfc's own algorithms ask the JWK for its private key (``key.get_op_key("sign")``), which a
token key cannot give. :class:`HSMAlgorithm` is a joserfc ``JWSAlgModel`` that signs with
:func:`unica.hsm.sign_raw` instead; it is put in a registry of its own for one signature
(:func:`registry_for`), never in joserfc's global one. The JWK joserfc sees is the public key
(it names the key type, the curve and the ``kid``); :meth:`HSMAlgorithm.sign` checks that it is
the public half of the key it signs with.

Algorithms (RFC 7518): ES256 (P-256), ES384 (P-384) -- the DER ``Ecdsa-Sig-Value`` the key
returns becomes the fixed-size ``r || s`` JWS wants (section 3.4); RS256 (PKCS#1 v1.5,
SHA-256) and PS256 (PSS, SHA-256, MGF1-SHA-256, salt of 32 bytes) for RSA keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from joserfc.jwk import ECKey, RSAKey
from joserfc.jws import JWSRegistry
from joserfc.jwa import JWSAlgModel

__all__ = ["ALGORITHMS", "HSMAlgorithm", "algorithm_for", "public_jwk", "registry_for"]


@dataclass(frozen=True)
class _Alg:
    name: str
    kty: str
    curve: str | None
    hash_name: str
    pss: bool = False


#: the JWS algorithms an ID-token key may use, by name
ALGORITHMS: dict[str, _Alg] = {
    "ES256": _Alg("ES256", "EC", "P-256", "sha256"),
    "ES384": _Alg("ES384", "EC", "P-384", "sha384"),
    "RS256": _Alg("RS256", "RSA", None, "sha256"),
    "PS256": _Alg("PS256", "RSA", None, "sha256", pss=True),
}

#: EC curves by cryptography's name -> (JWK crv, JWS alg)
_EC_CURVES = {"secp256r1": ("P-256", "ES256"), "secp384r1": ("P-384", "ES384")}


def algorithm_for(public_key, requested: str | None = None) -> str:
    """The JWS algorithm for ``public_key``: ES256 for P-256, ES384 for P-384; for RSA (2048 bits
    or more) ``requested`` RS256 or PS256 (default RS256, what every relying party takes).
    Anything else raises :class:`~unica.errors.InputError`."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from unica.errors import InputError

    if requested is not None and requested not in ALGORITHMS:
        raise InputError(f"--alg {requested!r}: one of {', '.join(ALGORITHMS)}")
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        found = _EC_CURVES.get(public_key.curve.name)
        if found is None:
            raise InputError(f"an ID-token key on curve {public_key.curve.name} is not supported "
                                     "(P-256 for ES256, P-384 for ES384)")
        if requested is not None and requested != found[1]:
            raise InputError(f"--alg {requested}: a {found[0]} key signs with {found[1]}")
        return found[1]
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < 2048:
            raise InputError(f"an RSA ID-token key needs 2048 bits or more (this one has {public_key.key_size})")
        if requested is not None and requested not in ("RS256", "PS256"):
            raise InputError(f"--alg {requested}: an RSA key signs with RS256 or PS256")
        return requested or "RS256"
    kind = type(public_key).__name__.replace("PublicKey", "").replace("_", "")
    raise InputError(f"an ID-token key must be EC (P-256, P-384) or RSA, not {kind} (every agency system's OIDC "
                     "library must be able to check the tokens)")


def joserfc_key(public_jwk_dict: dict):
    """The joserfc key of a stored public JWK (its ``kid``, ``alg`` and ``use`` kept)."""
    cls = ECKey if public_jwk_dict.get("kty") == "EC" else RSAKey
    return cls.import_key(dict(public_jwk_dict))


def public_jwk(public_key, alg: str) -> dict:
    """The public JWK of ``public_key`` for JWS ``alg``: its members (RFC 7517/7518), ``kid`` the
    RFC 7638 thumbprint (base64url SHA-256), ``alg`` and ``use`` ``sig``."""
    cls = ECKey if ALGORITHMS[alg].kty == "EC" else RSAKey
    k = cls.import_key(public_key)
    kid = k.thumbprint()
    return {**k.as_dict(private=False), "kid": kid, "alg": alg, "use": "sig"}


class HSMAlgorithm(JWSAlgModel):
    """A JWS algorithm whose signature is made by ``key`` (a :mod:`unica.hsm` key object: a token
    key, or a key from an encrypted file) through :func:`unica.hsm.sign_raw`."""

    def __init__(self, alg: str, key, kid: str):
        spec = ALGORITHMS[alg]
        self.name = alg
        self.description = f"{alg} through unica.hsm"
        self.key_type = spec.kty
        self.algorithm_security = 256
        self._spec = spec
        self._key = key
        self._kid = kid

    def check_key(self, key) -> None:
        super().check_key(key)
        if self._spec.curve is not None and key.curve_name != self._spec.curve:
            from joserfc.errors import InvalidKeyCurveError

            raise InvalidKeyCurveError(f"{self.name} needs a {self._spec.curve} key")
        if key.kid != self._kid or key.thumbprint() != self._kid:
            from unica.errors import KeyBackendError

            raise KeyBackendError(f"the JWK {key.kid} is not the public half of the signing key {self._kid}")

    def sign(self, msg: bytes, key) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        from unica.hsm import sign_raw

        h = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}[self._spec.hash_name]()
        if self._spec.kty == "RSA":
            return sign_raw(self._key, msg, h, pss=self._spec.pss)
        r, s = decode_dss_signature(sign_raw(self._key, msg, h))
        size = (self._key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    def verify(self, msg: bytes, sig: bytes, key) -> bool:  # verification is joserfc's own algorithms'
        raise NotImplementedError("HSMAlgorithm only signs; verify with joserfc's registry")


def registry_for(alg: HSMAlgorithm) -> JWSRegistry:
    """A JWS registry that knows exactly ``alg`` (joserfc's global registry is left alone)."""

    class _OneAlgorithm(JWSRegistry):
        algorithms = {alg.name: alg}
        recommended = [alg.name]

    return _OneAlgorithm(algorithms=[alg.name])
