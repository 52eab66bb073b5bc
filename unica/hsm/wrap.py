"""Key wrapping and key agreement on PKCS#11 tokens: what a CA key backup needs from the token.

- :func:`wrap_private_key`: a key-encryption key (KEK) given in memory is imported as a *session*
  AES key (CKA_TOKEN false, gone when the session ends) and wraps a private key of the token
  with ``CKM_AES_KEY_WRAP_PAD`` (RFC 5649). The token refuses a key that is not extractable
  (``CKR_KEY_UNEXTRACTABLE``): only keys generated with ``backup_allowed`` can be wrapped. The
  private key never leaves the token in plaintext.
- :func:`unwrap_private_key`: the reverse, onto a token, as a sensitive token object, with a
  public-key object made from the public key the caller expects (the CA certificate's).
- :func:`ecdh_shared_secret`: ECDH (``CKM_ECDH1_DERIVE``, no KDF) with a private key on a token;
  the shared secret Z comes back to the caller (the CMS key-agreement KDF runs in software).

Unwrapping an EC private key: python-pkcs11's generic key template also sets CKA_ENCRYPT,
CKA_VERIFY, CKA_WRAP and CKA_VERIFY_RECOVER, which SoftHSM2 rejects on a private key
(CKR_ATTRIBUTE_TYPE_INVALID); the template here drops them (``DEFAULT`` removes an entry).
"""

from __future__ import annotations

import os

import pkcs11.exceptions as p11e
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pkcs11 import Attribute, KeyType as P11KeyType, Mechanism, ObjectClass
from pkcs11.constants import DEFAULT
from pkcs11.mechanisms import KDF

from unica.errors import KeyBackupRefused, KeyExists, KeyNotExtractable, TokenError, UnsupportedKeyType
from unica.hsm.keytypes import key_identifier
from unica.hsm.pkcs11 import _find_pair, _p11_name, get_module
from unica.hsm.uri import Pkcs11URI

__all__ = ["WRAP_MECHANISM", "wrap_private_key", "unwrap_private_key", "delete_private_key",
           "ecdh_shared_secret"]

#: the name recorded in a backup file for the wrapping mechanism
WRAP_MECHANISM = "CKM_AES_KEY_WRAP_PAD"


def _import_kek(session, kek: bytes):
    """``kek`` as a session AES key that can wrap and unwrap, nothing else."""
    if len(kek) != 32:
        raise ValueError("the key-encryption key must be 32 bytes (AES-256)")
    return session.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: P11KeyType.AES,
        Attribute.VALUE: kek, Attribute.TOKEN: False, Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
        Attribute.WRAP: True, Attribute.UNWRAP: True,
        Attribute.ENCRYPT: False, Attribute.DECRYPT: False, Attribute.SIGN: False, Attribute.VERIFY: False,
        Attribute.DERIVE: False,
    })


def _destroy(obj) -> None:
    try:
        obj.destroy()
    except Exception:  # a session object goes with its session anyway
        pass


def wrap_private_key(uri: Pkcs11URI, pin: str, kek: bytes) -> bytes:
    """The private key at ``uri`` wrapped under ``kek`` with CKM_AES_KEY_WRAP_PAD, on the token."""
    ts = get_module(uri.module).session(uri, pin)

    def op(session):
        priv, _ = _find_pair(session, uri)
        wrapping = _import_kek(session, kek)
        try:
            return wrapping.wrap_key(priv, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        finally:
            _destroy(wrapping)

    try:
        return ts.run(op)
    except p11e.KeyUnextractable:
        raise KeyNotExtractable(
            f"the token refuses to wrap the key {uri} (CKR_KEY_UNEXTRACTABLE): it was not generated with "
            f"--backup-allowed, so it cannot be backed up") from None
    except p11e.MechanismInvalid:
        raise UnsupportedKeyType(f"token {uri.token!r} cannot wrap keys with {WRAP_MECHANISM}") from None
    except p11e.PKCS11Error as e:
        raise TokenError(f"wrapping the key {uri} failed: {_p11_name(e)}") from None


def _public_template(public_key) -> tuple[object, dict]:
    """(PKCS#11 key type, attributes of a public-key object) for ``public_key``."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        from asn1crypto import core, keys

        spki = keys.PublicKeyInfo.load(public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
        params = spki["algorithm"]["parameters"].dump()
        point = core.OctetString(public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)).dump()
        return P11KeyType.EC, {Attribute.EC_PARAMS: params, Attribute.EC_POINT: point}
    if isinstance(public_key, rsa.RSAPublicKey):
        n = public_key.public_numbers()
        return P11KeyType.RSA, {
            Attribute.MODULUS: n.n.to_bytes((n.n.bit_length() + 7) // 8, "big"),
            Attribute.PUBLIC_EXPONENT: n.e.to_bytes((n.e.bit_length() + 7) // 8, "big"),
        }
    raise UnsupportedKeyType(f"cannot restore a {type(public_key).__name__} key onto a token")


def unwrap_private_key(token: Pkcs11URI, pin: str, kek: bytes, wrapped: bytes, public_key, *,
                       label: str, key_id: bytes | None = None, extractable: bool = True) -> Pkcs11URI:
    """Unwrap ``wrapped`` under ``kek`` onto ``token`` as a sensitive token key labelled ``label``
    (CKA_ID ``key_id``, else the key identifier of ``public_key``), with a public-key object for
    ``public_key``; return the key's URI. ``extractable``: the restored key can be backed up again.

    The caller checks that the key unwrapped is the one ``public_key`` says
    (:func:`delete_private_key` removes it otherwise).
    """
    kid = key_id or key_identifier(public_key)
    p11_type, pub_attrs = _public_template(public_key)
    uri = Pkcs11URI(token=token.token, serial=token.serial, object=label, id=kid, module_path=token.module_path,
                    pin_source=token.pin_source)
    ts = get_module(token.module).session(uri, pin, rw=True)

    def op(session):
        if list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})):
            raise KeyExists(f"token {token.token!r} already has a key labelled {label!r}")
        if list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: kid})):
            raise KeyExists(f"token {token.token!r} already has a private key with id {kid.hex()}")
        wrapping = _import_kek(session, kek)
        try:
            priv = wrapping.unwrap_key(
                ObjectClass.PRIVATE_KEY, p11_type, wrapped, mechanism=Mechanism.AES_KEY_WRAP_PAD,
                label=label, id=kid, store=True,
                template={
                    Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: bool(extractable), Attribute.SIGN: True,
                    Attribute.DECRYPT: False, Attribute.UNWRAP: False, Attribute.DERIVE: False,
                    # not private-key attributes (SoftHSM2: CKR_ATTRIBUTE_TYPE_INVALID)
                    Attribute.ENCRYPT: DEFAULT, Attribute.VERIFY: DEFAULT, Attribute.WRAP: DEFAULT,
                    Attribute.VERIFY_RECOVER: DEFAULT,
                })
        finally:
            _destroy(wrapping)
        try:
            session.create_object({
                Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: p11_type,
                Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.VERIFY: True,
                Attribute.ENCRYPT: False, Attribute.WRAP: False, Attribute.LABEL: label, Attribute.ID: kid,
                **pub_attrs,
            })
        except BaseException:
            _destroy(priv)
            raise

    try:
        ts.run(op)
    except (p11e.WrappedKeyInvalid, p11e.EncryptedDataInvalid, p11e.WrappedKeyLenRange):
        raise KeyBackupRefused("the wrapped key does not unwrap under the key-encryption key rebuilt from the "
                               "shares (a share of another backup, or a damaged file)") from None
    except p11e.GeneralError:
        # SoftHSM2 answers a failed RFC 5649 integrity check with CKR_GENERAL_ERROR
        raise KeyBackupRefused(f"token {token.token!r} could not unwrap the key (CKR_GENERAL_ERROR): the wrapped key "
                               f"does not unwrap under the key-encryption key rebuilt from the shares (a share of "
                               f"another backup, or a damaged file), or the token failed") from None
    except p11e.MechanismInvalid:
        raise UnsupportedKeyType(f"token {token.token!r} cannot unwrap keys with {WRAP_MECHANISM}") from None
    except p11e.PKCS11Error as e:
        raise TokenError(f"unwrapping the key onto token {token.token!r} failed: {_p11_name(e)}") from None
    return uri


def delete_private_key(uri: Pkcs11URI, pin: str) -> None:
    """Remove the private and public key objects ``uri`` names (a restore that did not check out)."""
    ts = get_module(uri.module).session(uri, pin, rw=True)

    def op(session):
        for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
            attrs = {Attribute.CLASS: cls}
            if uri.object is not None:
                attrs[Attribute.LABEL] = uri.object
            if uri.id is not None:
                attrs[Attribute.ID] = uri.id
            for obj in list(session.get_objects(attrs)):
                obj.destroy()

    try:
        ts.run(op)
    except p11e.PKCS11Error as e:
        raise TokenError(f"removing the key {uri} failed: {_p11_name(e)}") from None


def ecdh_shared_secret(key, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
    """ECDH on the token: Z (the x-coordinate of the shared point) of the token key ``key`` (a
    :class:`~unica.hsm.pkcs11.Pkcs11ECPrivateKey`) and ``peer_public_key``. The secret is derived
    as a session object, read and destroyed; the private key never leaves the token."""
    if not isinstance(peer_public_key, ec.EllipticCurvePublicKey) or peer_public_key.curve.name != key.curve.name:
        raise UnsupportedKeyType(f"the key {key.uri} is on {key.curve.name}: ECDH needs a peer key on the same curve")
    point = peer_public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    size = (key.curve.key_size + 7) // 8

    def op(session):
        priv = key._priv(session)
        if not hasattr(priv, "derive_key"):  # python-pkcs11 gives a key without CKA_DERIVE no derive_key
            raise UnsupportedKeyType(f"the key {key.uri} cannot do key agreement (CKA_DERIVE is false)")
        secret = priv.derive_key(
            P11KeyType.GENERIC_SECRET, size * 8, mechanism=Mechanism.ECDH1_DERIVE,
            mechanism_param=(KDF.NULL, None, point),
            template={Attribute.TOKEN: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True,
                      Attribute.PRIVATE: True, Attribute.LABEL: "unica-ecdh-" + os.urandom(4).hex()})
        try:
            return bytes(secret[Attribute.VALUE])
        finally:
            _destroy(secret)

    try:
        return key._ts.run(op)
    except p11e.MechanismInvalid:
        raise UnsupportedKeyType(f"token {key.uri.token!r} cannot do ECDH (CKM_ECDH1_DERIVE)") from None
    except p11e.PKCS11Error as e:
        raise TokenError(f"ECDH with {key.uri} failed: {_p11_name(e)}") from None
