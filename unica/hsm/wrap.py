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

The algorithm is RFC 5649 (AES key wrap with padding, :data:`WRAP_ALGORITHM`) on every module,
but its PKCS#11 mechanism is not the same everywhere, so it is chosen per module
(:func:`rfc5649_mechanism`): SoftHSM2 2.6.1's ``CKM_AES_KEY_WRAP_PAD`` is RFC 5649, while NSS
softokn's ``CKM_AES_KEY_WRAP_PAD`` is RFC 3394 over PKCS#7 padding and its RFC 5649 is
``CKM_AES_KEY_WRAP_KWP`` (PKCS#11 3.0, which deprecates ``_PAD`` for this ambiguity; SoftHSM2
2.6.1 lacks it). A module that lists ``CKM_AES_KEY_WRAP_KWP`` gets it, any other
``CKM_AES_KEY_WRAP_PAD``. NSS softokn also wants the public value of an EC private key it
unwraps in its vendor attribute ``CKA_NSS_DB`` (else CKR_TEMPLATE_INCOMPLETE); the unwrap adds
it on NSS (the module's manufacturer "Mozilla Foundation", or a CKR_TEMPLATE_INCOMPLETE answer).
SoftHSM2's RFC 5649 plaintext of a P-256 key is the PKCS#8 followed by zero bytes (MLI 72 for 67
bytes); NSS accepts it.
"""

from __future__ import annotations

import os

import pkcs11.exceptions as p11e
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pkcs11 import Attribute, KeyType as P11KeyType, Mechanism, ObjectClass
from pkcs11.attributes import AttributeMapper, handle_bytes
from pkcs11.constants import DEFAULT
from pkcs11.mechanisms import KDF

from unica.errors import KeyBackupRefused, KeyExists, KeyNotExtractable, TokenError, UnsupportedKeyType
from unica.hsm.keytypes import key_identifier
from unica.hsm.pkcs11 import _find_pair, _p11_name, get_module
from unica.hsm.uri import Pkcs11URI

__all__ = ["WRAP_MECHANISM", "WRAP_ALGORITHM", "rfc5649_mechanism", "wrap_private_key", "wrap_private_key_rfc5649",
           "unwrap_private_key", "delete_private_key", "ecdh_shared_secret"]

#: the name recorded in a backup file for the wrapping mechanism (version 1 files: SoftHSM2's, RFC 5649)
WRAP_MECHANISM = "CKM_AES_KEY_WRAP_PAD"
#: the wrapping algorithm, whatever a module calls it: AES key wrap with padding, RFC 5649
WRAP_ALGORITHM = "rfc5649"
#: NSS's vendor attribute (CKA_NETSCAPE_DB): the public value of a private key it unwraps
CKA_NSS_DB = 0xD5A0DB00

_NSS_MAPPER = AttributeMapper()
_NSS_MAPPER.register_handler(CKA_NSS_DB, *handle_bytes)


def _is_nss(module) -> bool:
    """The module is NSS softokn (or built on it): it wants CKA_NSS_DB when it unwraps a private key."""
    try:
        lib = module.lib
        return (str(lib.manufacturer_id).strip().startswith("Mozilla")
                or str(lib.library_description).strip().startswith("NSS"))
    except Exception:
        return False


def rfc5649_mechanism(token) -> Mechanism:
    """The mechanism that is RFC 5649 on the python-pkcs11 ``token``: CKM_AES_KEY_WRAP_KWP where the
    module lists it (NSS), else CKM_AES_KEY_WRAP_PAD (SoftHSM2's is RFC 5649)."""
    try:
        mechanisms = set(token.slot.get_mechanisms())
    except p11e.PKCS11Error:
        mechanisms = set()
    if Mechanism.AES_KEY_WRAP_KWP in mechanisms:
        return Mechanism.AES_KEY_WRAP_KWP
    return Mechanism.AES_KEY_WRAP_PAD


def _ckm(mechanism: Mechanism) -> str:
    return "CKM_" + mechanism.name


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
    """The private key at ``uri`` wrapped under ``kek`` with RFC 5649, on the token."""
    return wrap_private_key_rfc5649(uri, pin, kek)[0]


def wrap_private_key_rfc5649(uri: Pkcs11URI, pin: str, kek: bytes) -> tuple[bytes, str]:
    """(the private key at ``uri`` wrapped under ``kek`` with RFC 5649 on the token, the name of the
    module's mechanism used: :func:`rfc5649_mechanism`)."""
    module = get_module(uri.module)
    ts = module.session(uri, pin)
    chosen: dict = {}

    def op(session):
        priv, _ = _find_pair(session, uri)
        mechanism = chosen["mechanism"] = rfc5649_mechanism(session.token)
        wrapping = _import_kek(session, kek)
        try:
            try:
                return wrapping.wrap_key(priv, mechanism=mechanism)
            except p11e.PKCS11Error as e:
                # python-pkcs11 0.9.5 sizes its buffer by C_WrapKey's length query, and NSS's
                # CKM_AES_KEY_WRAP_KWP answers the unpadded length: CKR_BUFFER_TOO_SMALL
                if type(e) is not p11e.PKCS11Error or "too small" not in str(e).lower():
                    raise
                return _c_wrap_key(module.path, session, mechanism, wrapping, priv)
        finally:
            _destroy(wrapping)

    try:
        blob = ts.run(op)
    except p11e.KeyUnextractable:
        raise KeyNotExtractable(
            f"the token refuses to wrap the key {uri} (CKR_KEY_UNEXTRACTABLE): it was not generated with "
            f"--backup-allowed, so it cannot be backed up") from None
    except p11e.MechanismInvalid:
        used = chosen.get("mechanism", Mechanism.AES_KEY_WRAP_PAD)
        raise UnsupportedKeyType(f"token {uri.token!r} cannot wrap keys with {_ckm(used)} "
                                 f"(CKR_MECHANISM_INVALID)") from None
    except p11e.PKCS11Error as e:
        raise TokenError(f"wrapping the key {uri} failed: {_p11_name(e)}") from None
    return blob, _ckm(chosen["mechanism"])


#: C_WrapKey's place in a Cryptoki 2.x CK_FUNCTION_LIST (after the CK_VERSION)
_C_WRAPKEY_INDEX = 60


def _c_wrap_key(module_path: str, session, mechanism: Mechanism, wrapping, key) -> bytes:
    """C_WrapKey (no mechanism parameter) through the module's own function list, with a buffer
    large enough for any RFC 5649 output: python-pkcs11's call fails on a module whose length
    query answers too little. Same process, same loaded module: the handles are python-pkcs11's."""
    import ctypes

    ulong = ctypes.c_ulong  # CK_ULONG: unsigned long on Unix

    class CK_MECHANISM(ctypes.Structure):
        _fields_ = [("mechanism", ulong), ("pParameter", ctypes.c_void_p), ("ulParameterLen", ulong)]

    class CK_VERSION(ctypes.Structure):
        _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]

    wrap_type = ctypes.CFUNCTYPE(ulong, ulong, ctypes.POINTER(CK_MECHANISM), ulong, ulong,
                                 ctypes.c_char_p, ctypes.POINTER(ulong))

    class CK_FUNCTION_LIST(ctypes.Structure):
        _fields_ = [("version", CK_VERSION), ("functions", ctypes.c_void_p * (_C_WRAPKEY_INDEX + 1))]

    lib = ctypes.CDLL(module_path)  # already loaded by python-pkcs11: the same library
    funcs = ctypes.POINTER(CK_FUNCTION_LIST)()
    get = lib.C_GetFunctionList
    get.restype, get.argtypes = ulong, [ctypes.POINTER(ctypes.POINTER(CK_FUNCTION_LIST))]
    if get(ctypes.byref(funcs)) != 0 or not funcs:
        raise TokenError(f"C_GetFunctionList of {module_path} failed")
    if funcs.contents.version.major != 2:
        raise TokenError(f"{module_path}: C_WrapKey with a large buffer needs a Cryptoki 2.x function list "
                         f"(this one is {funcs.contents.version.major}.{funcs.contents.version.minor})")
    c_wrap_key = wrap_type(funcs.contents.functions[_C_WRAPKEY_INDEX])
    mech = CK_MECHANISM(int(mechanism), None, 0)
    length = ulong(0)
    rv = c_wrap_key(session.handle, ctypes.byref(mech), wrapping.handle, key.handle, None, ctypes.byref(length))
    if rv != 0:
        raise TokenError(f"C_WrapKey (length) on {module_path} failed: CKR 0x{rv:x}")
    size = length.value + 64  # RFC 5649 adds at most 15 bytes (8 of IV, up to 7 of padding)
    buf = ctypes.create_string_buffer(size)
    length = ulong(size)
    rv = c_wrap_key(session.handle, ctypes.byref(mech), wrapping.handle, key.handle, buf, ctypes.byref(length))
    if rv != 0:
        raise TokenError(f"C_WrapKey on {module_path} failed: CKR 0x{rv:x}")
    return buf.raw[:length.value]


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
                       label: str, key_id: bytes | None = None, extractable: bool = True,
                       algorithm: str = WRAP_ALGORITHM, mechanism: Mechanism | None = None) -> Pkcs11URI:
    """Unwrap ``wrapped`` under ``kek`` onto ``token`` as a sensitive token key labelled ``label``
    (CKA_ID ``key_id``, else the key identifier of ``public_key``), with a public-key object for
    ``public_key``; return the key's URI. ``extractable``: the restored key can be backed up again.

    ``wrapped`` is RFC 5649 (``algorithm``, the only one there is); the mechanism is the module's
    RFC 5649 one (:func:`rfc5649_mechanism`) unless ``mechanism`` names another. When the token
    refuses the blob, a test blob tells a mechanism that is not RFC 5649 on this module
    (:class:`UnsupportedKeyType`) from a wrong key-encryption key or a damaged file
    (:class:`KeyBackupRefused`).

    The caller checks that the key unwrapped is the one ``public_key`` says
    (:func:`delete_private_key` removes it otherwise).
    """
    if algorithm != WRAP_ALGORITHM:
        raise UnsupportedKeyType(f"the wrapped key is {algorithm!r}: unica unwraps {WRAP_ALGORITHM} (RFC 5649) only")
    kid = key_id or key_identifier(public_key)
    p11_type, pub_attrs = _public_template(public_key)
    uri = Pkcs11URI(token=token.token, serial=token.serial, object=label, id=kid, module_path=token.module_path,
                    pin_source=token.pin_source)
    module = get_module(token.module)
    ts = module.session(uri, pin, rw=True)
    nss = _is_nss(module)
    nss_db = {}
    if p11_type == P11KeyType.EC:
        nss_db = {CKA_NSS_DB: public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)}
    chosen: dict = {}
    template = {
        Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: bool(extractable), Attribute.SIGN: True,
        Attribute.DECRYPT: False, Attribute.UNWRAP: False, Attribute.DERIVE: False,
        # not private-key attributes (SoftHSM2: CKR_ATTRIBUTE_TYPE_INVALID)
        Attribute.ENCRYPT: DEFAULT, Attribute.VERIFY: DEFAULT, Attribute.WRAP: DEFAULT,
        Attribute.VERIFY_RECOVER: DEFAULT,
    }

    def unwrap_in(session, extra: dict) -> None:
        wrapping = _import_kek(session, kek)
        try:
            wrapping.unwrap_key(ObjectClass.PRIVATE_KEY, p11_type, wrapped, mechanism=chosen["mechanism"],
                                label=label, id=kid, store=True, template={**template, **extra})
        finally:
            _destroy(wrapping)

    def unwrap_nss(session) -> None:
        # CKA_NSS_DB is no attribute python-pkcs11 knows: a second session of this (logged-in)
        # application, with a mapper that packs it; its session objects (the KEK) go with it
        extra = session.token.open(rw=True, attribute_mapper=_NSS_MAPPER)
        try:
            unwrap_in(extra, nss_db)
        finally:
            extra.close()

    def op(session):
        if list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})):
            raise KeyExists(f"token {token.token!r} already has a key labelled {label!r}")
        if list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: kid})):
            raise KeyExists(f"token {token.token!r} already has a private key with id {kid.hex()}")
        chosen["mechanism"] = mechanism or rfc5649_mechanism(session.token)
        if nss and nss_db:
            unwrap_nss(session)
        else:
            try:
                unwrap_in(session, {})
            except p11e.TemplateIncomplete:
                if not nss_db:
                    raise
                unwrap_nss(session)  # an NSS-based module that does not say so
        try:
            session.create_object({
                Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: p11_type,
                Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.VERIFY: True,
                Attribute.ENCRYPT: False, Attribute.WRAP: False, Attribute.LABEL: label, Attribute.ID: kid,
                **pub_attrs,
            })
        except BaseException:
            for priv in list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label,
                                                  Attribute.ID: kid})):
                _destroy(priv)
            raise

    def refused(ckr: str) -> Exception:
        used = chosen.get("mechanism", mechanism or Mechanism.AES_KEY_WRAP_PAD)
        verdict = _rfc5649_check(ts, used)
        if verdict is not None:
            return UnsupportedKeyType(
                f"token {token.token!r} cannot unwrap the backup's key with {_ckm(used)} ({ckr}): the backup is RFC "
                f"5649 (AES key wrap with padding), and {_ckm(used)} of this module ({module.path}) is not RFC 5649 "
                f"-- an RFC 5649 test blob {verdict}. A module whose CKM_AES_KEY_WRAP_KWP or CKM_AES_KEY_WRAP_PAD "
                f"is RFC 5649 is needed")
        return KeyBackupRefused(
            f"token {token.token!r} could not unwrap the key with {_ckm(used)} ({ckr}): the wrapped key does not "
            f"unwrap under the key-encryption key rebuilt from the shares (a share of another backup, or a damaged "
            f"file); the token unwraps RFC 5649 test blobs with {_ckm(used)}")

    try:
        ts.run(op)
    except p11e.WrappedKeyInvalid:
        raise refused("CKR_WRAPPED_KEY_INVALID") from None
    except p11e.EncryptedDataInvalid:
        raise refused("CKR_ENCRYPTED_DATA_INVALID") from None
    except p11e.WrappedKeyLenRange:
        raise refused("CKR_WRAPPED_KEY_LEN_RANGE") from None
    except p11e.GeneralError:
        # SoftHSM2 answers a failed RFC 5649 integrity check with CKR_GENERAL_ERROR
        raise refused("CKR_GENERAL_ERROR") from None
    except p11e.MechanismInvalid:
        used = chosen.get("mechanism", mechanism or Mechanism.AES_KEY_WRAP_PAD)
        raise UnsupportedKeyType(f"token {token.token!r} cannot unwrap keys with {_ckm(used)} "
                                 f"(CKR_MECHANISM_INVALID)") from None
    except p11e.PKCS11Error as e:
        raise TokenError(f"unwrapping the key onto token {token.token!r} failed: {_p11_name(e)}") from None
    return uri


def _rfc5649_check(ts, mechanism: Mechanism) -> str | None:
    """None if ``mechanism`` on the token of ``ts`` unwraps an RFC 5649 blob made here (a random AES
    key under a random session KEK) to the right value; else what went wrong."""
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

    test_kek, value = os.urandom(32), os.urandom(24)  # 24 bytes: RFC 5649 pads, RFC 3394 would not take it
    blob = aes_key_wrap_with_padding(test_kek, value)

    def op(session):
        wrapping = _import_kek(session, test_kek)
        try:
            key = wrapping.unwrap_key(ObjectClass.SECRET_KEY, P11KeyType.AES, blob, mechanism=mechanism, store=False,
                                      template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True,
                                                Attribute.TOKEN: False, Attribute.LABEL: "unica-rfc5649-check"})
        finally:
            _destroy(wrapping)
        try:
            return bytes(key[Attribute.VALUE])
        finally:
            _destroy(key)

    try:
        got = ts.run(op)
    except p11e.PKCS11Error as e:
        return f"failed with {_ckr(e)}"
    return None if got == value else "unwrapped to another value"


def _ckr(e: Exception) -> str:
    name = _p11_name(e)
    known = {"WrappedKeyInvalid": "CKR_WRAPPED_KEY_INVALID", "EncryptedDataInvalid": "CKR_ENCRYPTED_DATA_INVALID",
             "WrappedKeyLenRange": "CKR_WRAPPED_KEY_LEN_RANGE", "GeneralError": "CKR_GENERAL_ERROR",
             "MechanismInvalid": "CKR_MECHANISM_INVALID", "MechanismParamInvalid": "CKR_MECHANISM_PARAM_INVALID"}
    return known.get(type(e).__name__, name)


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
        # python-pkcs11 0.9.5 has no class for CKR_KEY_FUNCTION_NOT_PERMITTED (0x68): "Unmapped error code 0x68"
        if type(e) is p11e.PKCS11Error and str(e).endswith(" 0x68"):
            raise UnsupportedKeyType(f"the key {key.uri} cannot do key agreement (CKR_KEY_FUNCTION_NOT_PERMITTED: "
                                     f"CKA_DERIVE is false)") from None
        raise TokenError(f"ECDH with {key.uri} failed: {_p11_name(e)}") from None
