"""Key backends: software keys in encrypted files and keys on PKCS#11 tokens.

A key is named by a URI (see :mod:`unica.hsm.uri`). Whatever the backend, a loaded key is
a ``cryptography`` private-key object: pass it to ``CertificateBuilder.sign``,
``CertificateRevocationListBuilder.sign`` or ``OCSPResponseBuilder.sign`` as it is, or call
:func:`sign_raw` for a bare signature (CMS, pyHanko).

Secrets: ``pin`` / ``passphrase`` arguments, else ``pin-source`` in the URI, else the
``UNICA_PIN`` / ``UNICA_PASSPHRASE`` environment variables; otherwise
:class:`~unica.errors.PinRequired` (the CLI then prompts).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from unica.errors import UnsupportedKeyType
from unica.hsm.keytypes import KeyType, default_hash_for, is_sm2, key_type_of, spki_sha256
from unica.hsm.secrets import PASSPHRASE, USER_PIN, resolve_secret
from unica.hsm.uri import FileURI, KeyURI, Pkcs11URI, parse_key_uri

__all__ = [
    "KeyType", "KeyInfo", "parse_key_uri", "load_key", "generate_key", "list_keys",
    "key_info", "sign_raw", "signature_params", "key_type_of", "spki_sha256",
]


@dataclass(frozen=True)
class KeyInfo:
    """What ``unica key show`` prints about a key."""

    uri: str
    key_type: str
    public_key: object
    spki_sha256: str
    label: str | None = None
    id: bytes | None = None

    def public_pem(self) -> str:
        from cryptography.hazmat.primitives import serialization

        if is_sm2(self.public_key):
            import base64
            import textwrap

            b64 = "\n".join(textwrap.wrap(base64.b64encode(self.public_key.spki_der()).decode(), 64))
            return f"-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def to_dict(self) -> dict:
        return {
            "uri": self.uri, "type": self.key_type, "spki_sha256": self.spki_sha256,
            "label": self.label, "id": self.id.hex() if self.id else None,
            "public_key_pem": self.public_pem(),
        }


def _as_uri(uri: str | KeyURI) -> KeyURI:
    return parse_key_uri(uri) if isinstance(uri, str) else uri


def _pin_for(uri: Pkcs11URI, pin: str | None) -> str:
    return resolve_secret(USER_PIN, value=pin, file=uri.pin_source, what="token PIN")


def load_key(uri: str | KeyURI, *, pin: str | None = None, passphrase: str | None = None):
    """Load the private key ``uri`` names (a cryptography private-key object)."""
    u = _as_uri(uri)
    if isinstance(u, FileURI):
        from unica.hsm.software import load_file_key

        return load_file_key(u.path, resolve_secret(PASSPHRASE, value=passphrase, what="key passphrase"))
    from unica.hsm.pkcs11 import load_token_key

    return load_token_key(u, _pin_for(u, pin))


def generate_key(uri: str | KeyURI, key_type: str | KeyType, *, pin: str | None = None,
                 passphrase: str | None = None, backup_allowed: bool = False, key_agreement: bool = False):
    """Generate a new key where ``uri`` says (on the token, or an encrypted file) and return it.

    ``backup_allowed`` (token keys only): sensitive but wrappable, for ``unica key backup``;
    ``key_agreement`` (EC token keys): also ECDH on the token (a custodian's card key)."""
    u = _as_uri(uri)
    kt = key_type if isinstance(key_type, KeyType) else KeyType.parse(key_type)
    if isinstance(u, FileURI):
        if backup_allowed:
            from unica.errors import InputError

            raise InputError("--backup-allowed is for keys generated on a token (add --token LABEL)")
        from unica.hsm.software import generate_file_key

        return generate_file_key(u.path, kt, resolve_secret(PASSPHRASE, value=passphrase, what="key passphrase"))
    from unica.hsm.pkcs11 import generate_token_key

    return generate_token_key(u, kt, _pin_for(u, pin), backup_allowed=backup_allowed, key_agreement=key_agreement)


def discard_generated_key(key, uri: str | KeyURI, *, pin: str | None = None) -> str | None:
    """Remove a key :func:`generate_key` just made for a step that then failed (the pair on the
    token, by its CKA_ID and nothing else; or the encrypted file), so that the same command can
    simply be run again. None when removed; else one line saying what is left and how to remove
    it (the cleanup never hides the failure that called it)."""
    u = _as_uri(uri)
    try:
        if isinstance(u, FileURI):
            u.path.unlink(missing_ok=True)
            return None
        from unica.hsm.objects import delete_key_objects

        kuri = getattr(key, "uri", None) or u
        if kuri.id is None:
            raise ValueError("its CKA_ID is unknown")
        delete_key_objects(kuri.token, kuri.id, _pin_for(kuri, pin), kuri.module_path)
        return None
    except Exception as e:  # noqa: BLE001 - reported in the returned line, the first failure stands
        return f"the new key {u} could not be removed ({' '.join(str(e).split())}); remove it by hand"


def certified_or_discarded(step, key, generated_uri: str | KeyURI | None, *, pin: str | None = None):
    """``step()`` (certify ``key`` and record it); when it fails and ``generated_uri`` says the
    key was generated for it, the key is removed (:func:`discard_generated_key`) and the failure
    raised, its message saying so. An issuance waiting for approvers (ApprovalPending) keeps the
    key: its certificate is still to come."""
    from unica.errors import ApprovalPending, UnicaError

    try:
        return step()
    except ApprovalPending:
        raise
    except BaseException as e:
        if generated_uri is not None:
            left = discard_generated_key(key, generated_uri, pin=pin)
            if isinstance(e, UnicaError) and e.args:
                e.args = (" ".join(str(e).split()) + ("; " + left if left else
                                                        f"; the new key {generated_uri} was removed"),)
        raise


def key_info(key, uri: str | KeyURI | None = None) -> KeyInfo:
    pub = key.public_key()
    kuri = getattr(key, "uri", None) or uri
    return KeyInfo(
        uri=str(kuri) if kuri is not None else "",
        key_type=key_type_of(pub),
        public_key=pub,
        spki_sha256=spki_sha256(pub),
        label=getattr(getattr(key, "uri", None), "object", None),
        id=getattr(getattr(key, "uri", None), "id", None),
    )


def list_keys(token: str, *, module_path: str | None = None, pin: str | None = None) -> list[KeyInfo]:
    """The key pairs on the token labelled ``token``."""
    from unica.hsm.pkcs11 import list_token_keys

    u = Pkcs11URI(token=token, module_path=module_path)
    out = []
    for info in list_token_keys(u, _pin_for(u, pin)):
        pub = info.public_key
        out.append(KeyInfo(uri=info.uri, key_type=info.key_type, public_key=pub,
                           spki_sha256=spki_sha256(pub) if pub is not None else "",
                           label=info.label, id=info.id))
    return out


def signature_params(key, hash_alg: hashes.HashAlgorithm | None = None, *, pss: bool = False):
    """The ``(padding, algorithm)`` / ``algorithm`` cryptography's ``sign`` wants for ``key``."""
    if is_sm2(key):  # SM3 with the signer ID's Z value, fixed by the scheme (unica.sm2)
        if hash_alg is not None or pss:
            raise UnsupportedKeyType("SM2 keys sign with SM3 only (no other hash, no PSS)")
        return ()
    h = hash_alg or default_hash_for(key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return (ec.ECDSA(h),)
    if isinstance(key, rsa.RSAPrivateKey):
        pad = padding.PSS(padding.MGF1(h), padding.PSS.DIGEST_LENGTH) if pss else padding.PKCS1v15()
        return (pad, h)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return ()
    raise UnsupportedKeyType(f"unsupported key type {type(key).__name__}")


def sign_raw(key, data: bytes, hash_alg: hashes.HashAlgorithm | None = None, *, pss: bool = False) -> bytes:
    """A bare signature over ``data``: DER ECDSA, PKCS#1 v1.5 / PSS RSA, or Ed25519."""
    if hash_alg is None and not pss:
        fast = getattr(key, "sign_default", None)
        if fast is not None:  # token EC keys: one flat locked call
            return fast(data)
        # the default parameters, cached on keys that take attributes (token keys: the hot path)
        params = getattr(key, "_unica_default_params", None)
        if params is None:
            params = signature_params(key)
            try:
                key._unica_default_params = params
            except AttributeError:  # cryptography's own key objects take no attributes
                pass
        return key.sign(data, *params)
    return key.sign(data, *signature_params(key, hash_alg, pss=pss))
