"""Keys on PKCS#11 tokens (SoftHSM2 in tests, any vendor module in the field).

Thread safety. python-pkcs11 initialises a module with ``C_Initialize(NULL)`` (no OS
locking), and two threads calling into SoftHSM2 at once -- even on separate sessions --
corrupt its state. So every call into a module goes through that module's lock
(:attr:`Module.lock`). A process has one logged-in session per token, shared by the keys
loaded from it; when the session is lost (token re-inserted, module reset) the next call
opens a new one, logs in again and retries once. Scale is by processes: each process
initialises its own copy of the module (a forked child re-initialises on first use).

Signing. ECDSA is hashed in software and sent as raw ``CKM_ECDSA`` (SoftHSM2 has no
``CKM_ECDSA_SHA256``); the raw ``r || s`` is DER-encoded. RSA uses ``CKM_SHA*_RSA_PKCS``
and ``CKM_SHA*_RSA_PKCS_PSS`` (or the raw mechanisms for pre-hashed input).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pkcs11
import pkcs11.exceptions as p11e
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from pkcs11 import Attribute, KeyType as P11KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import MGF
from pkcs11.util.ec import encode_named_curve_parameters

from unica.errors import (
    InputError,
    KeyExists,
    KeyNotFound,
    ModuleNotFound,
    PinIncorrect,
    PinLocked,
    TokenError,
    TokenNotFound,
    UnsupportedKeyType,
)
from unica.hsm.keytypes import KeyType, is_sm2, key_identifier, key_type_of
from unica.hsm.uri import Pkcs11URI
from unica.sm2 import SM2_CURVE_OID_DER

# --- modules ------------------------------------------------------------------------

_modules: dict[str, "Module"] = {}
_modules_lock = threading.Lock()

# errors after which a session is re-opened and the call retried once
_SESSION_LOST = (
    p11e.SessionHandleInvalid,
    p11e.SessionClosed,
    p11e.UserNotLoggedIn,
    p11e.DeviceRemoved,
    p11e.TokenNotPresent,
    p11e.ObjectHandleInvalid,
    p11e.KeyHandleInvalid,
)


class Module:
    """One loaded PKCS#11 module (per process), with the lock all its calls go through."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.RLock()
        self._pid = os.getpid()
        self._lib = self._load(path)
        self._sessions: dict[tuple, "TokenSession"] = {}

    @staticmethod
    def _load(path: str):
        if not Path(path).exists():
            raise ModuleNotFound(f"PKCS#11 module {path} does not exist (set UNICA_PKCS11_MODULE)")
        try:
            return pkcs11.lib(path)
        except Exception as e:
            raise ModuleNotFound(f"cannot load PKCS#11 module {path}: {e}") from None

    @property
    def lib(self):
        """The module, re-initialised if this process was forked since it was loaded."""
        if self._pid != os.getpid():
            with self.lock:
                if self._pid != os.getpid():
                    self._sessions.clear()
                    self._lib.reinitialize()
                    self._pid = os.getpid()
        return self._lib

    def tokens(self) -> list:
        with self.lock:
            return list(self.lib.get_tokens())

    def find_token(self, label: str | None = None, serial: str | None = None):
        """The one token with this label (and/or serial); :class:`TokenNotFound` otherwise.

        Not found at first, it is asked again for a few seconds: a SoftHSM2 process reading
        the token files while another process rewrites one (each login does, and key
        generation) can read it half-written. Two cases, told apart by the scan:

        - a slot answers CKR_GENERAL_ERROR (or shows a second blank token): the module re-reads
          that file by itself when it changes, so the slots are simply listed again;
        - the token is not in the module's view at all (C_Initialize skipped the half-written
          file): the module keeps that view until C_Finalize/C_Initialize, so it is re-initialised.

        Re-initialising reads every token directory and takes longer the more tokens there are
        (each read a new chance to meet another write), so it is done only when needed. Once a
        scan shows another process writing (an unreadable slot, a second blank token, the
        number of tokens changing), the window grows from about 3 s to 10 s: a quiet module
        without the token says so after the short one. Concurrent processes on one token are
        not an unplugged token.
        """
        waits, busy, counts = _reread_waits(), False, set()
        while True:
            found, unreadable, blanks, count = self._scan_tokens(label, serial)
            counts.add(count)
            if not busy and (unreadable is not None or blanks > 1 or len(counts) > 1):
                busy, waits = True, _reread_waits(_REREAD_BUSY_WINDOW)
            wait = next(waits, None)
            if found or wait is None:
                break
            time.sleep(wait)
            if unreadable is None and blanks <= 1:
                self.reinitialize()
        if not found:
            what = f"label {label!r}" if label is not None else f"serial {serial!r}"
            if unreadable is not None:
                raise TokenError(f"no readable PKCS#11 token with {what} in {self.path}: a slot kept answering "
                                 f"{unreadable} (another process busy with the token?); try again")
            raise TokenNotFound(f"no PKCS#11 token with {what} in {self.path} (is it plugged in?)")
        if len(found) > 1:
            raise TokenError(f"{len(found)} tokens have label {label!r}; name the token by serial in the URI")
        return found[0]

    def _scan_tokens(self, label, serial):
        """(matching tokens, the CKR name of a slot that could not be read or None, how many
        tokens had no label -- SoftHSM2 always shows one, its free slot --, how many slots)."""
        found, unreadable, blanks = [], None, 0
        with self.lock:
            try:
                slots = list(self.lib.get_slots(token_present=True))
            except p11e.PKCS11Error as e:
                raise TokenError(f"cannot list the slots of {self.path}: {_p11_name(e)}") from None
            for slot in slots:
                try:
                    token = slot.get_token()
                except (p11e.GeneralError, p11e.DeviceError, p11e.TokenNotRecognised, p11e.TokenNotPresent) as e:
                    unreadable = _ckr_name(e)
                    continue
                blanks += not token.label.strip()
                if label is not None and token.label != label:
                    continue
                if serial is not None and _serial_text(token.serial) != serial:
                    continue
                found.append(token)
        return found, unreadable, blanks, len(slots)

    def reinitialize(self) -> None:
        """C_Finalize + C_Initialize: the module enumerates its slots afresh, as a new process
        would. Every session of this process is closed first (keys reopen theirs on next use)."""
        with self.lock:
            self.drop_sessions()
            try:
                self.lib.reinitialize()
            except p11e.PKCS11Error as e:
                raise TokenError(f"re-initialising {self.path} failed: {_p11_name(e)}") from None

    def session(self, uri: Pkcs11URI, pin: str | None, rw: bool = False) -> "TokenSession":
        """The process's session on the token ``uri`` names, logged in with ``pin`` if given."""
        if uri.token is None and uri.serial is None:
            raise TokenNotFound("the key URI names no token (add token=LABEL)")
        key = (uri.token, uri.serial)
        with self.lock:
            self.lib  # re-initialise after a fork
            ts = self._sessions.get(key)
            if ts is None or (rw and not ts.rw) or (pin is not None and not ts.logged_in):
                if ts is not None:
                    ts.close()
                ts = TokenSession(self, uri.token, uri.serial, pin, rw=rw or (ts.rw if ts else False))
                self._sessions[key] = ts
            return ts

    def drop_sessions(self) -> None:
        with self.lock:
            for ts in self._sessions.values():
                ts.close()
            self._sessions.clear()


def get_module(path: str) -> Module:
    path = str(path)
    with _modules_lock:
        m = _modules.get(path)
        if m is None:
            m = Module(path)
            _modules[path] = m
        return m


def _serial_text(serial: bytes | str) -> str:
    if isinstance(serial, bytes):
        return serial.decode("ascii", "replace").strip()
    return str(serial).strip()


# --- sessions -----------------------------------------------------------------------


class TokenSession:
    """A session on one token, logged in as the user when a PIN was given."""

    def __init__(self, module: Module, label: str | None, serial: str | None, pin: str | None, rw: bool):
        self.module = module
        self.label = label
        self.serial = serial
        self.rw = rw
        self._pin = pin
        self.logged_in = False
        self.session = None
        self._open()

    def _open(self) -> None:
        token = self.module.find_token(self.label, self.serial)
        self.token = token
        if self._pin is None:
            self.session = _call(token.open, rw=self.rw)
            return
        waits = _reread_waits()
        with pin_errors(token.label, "opening a session", token=token):
            while True:
                try:
                    self.session = self._login(token)
                    break
                except (p11e.UserPinNotInitialized, p11e.GeneralError) as e:
                    # SoftHSM2 reading a half-written token file (see Module.find_token). Not a
                    # PIN verdict -- a wrong PIN is CKR_PIN_INCORRECT, never retried -- so the
                    # PIN is sent again only after the token failed to judge it at all
                    wait = next(waits, None)
                    if wait is None:
                        raise TokenError(f"opening a session on token {token.label!r} failed: the token "
                                         f"kept answering {_ckr_name(e)} (another process writing it? no user PIN set?); "
                                         "try again") from None
                time.sleep(wait)
                self.module.reinitialize()
                token = self.token = self.module.find_token(self.label, self.serial)
        self.logged_in = True

    def _login(self, token):
        try:
            return token.open(rw=self.rw, user_pin=self._pin)
        except p11e.UserAlreadyLoggedIn:
            # login state is per application: another session of this process already logged in
            return token.open(rw=self.rw)

    def reopen(self) -> None:
        self.close()
        self._open()

    def close(self) -> None:
        if self.session is not None:
            try:
                self.session.close()
            except Exception:
                pass
            self.session = None

    def run(self, fn, *args, **kwargs):
        """Call ``fn(session, ...)`` under the module lock; on a lost session reopen and retry once."""
        with self.module.lock:
            self.module.lib
            if self.session is None:
                self._open()
            try:
                return fn(self.session, *args, **kwargs)
            except _SESSION_LOST:
                self.reopen()
                return fn(self.session, *args, **kwargs)


#: how long a module is asked again (see Module.find_token) before a token is reported missing
#: or unreadable: each re-read can hit another write, so many, quickly, for about 3 s of pauses
#: (paid only when the token is not found at once), 10 s once another process is seen writing.
#: CI runs met 1.5 s and then 3 s running out on a token another process logged in to without
#: pause, on a loaded machine with hundreds of tokens (each re-initialisation reads them all).
_REREAD_WINDOW, _REREAD_BUSY_WINDOW = 3.0, 10.0
_REREAD_FIRST_DELAY, _REREAD_MAX_DELAY = 0.02, 0.2


def _reread_waits(window: float = _REREAD_WINDOW):
    """The pauses between re-reads: doubling from 20 ms to 200 ms, each jittered (so re-reads do
    not fall in step with another process's writes), until ``window`` seconds are spent."""
    delay, spent = _REREAD_FIRST_DELAY, 0.0
    while spent < window:
        wait = delay * random.uniform(0.5, 1.5)
        spent += wait
        yield wait
        delay = min(delay * 2, _REREAD_MAX_DELAY)

_CKR_NAMES = {"GeneralError": "CKR_GENERAL_ERROR", "DeviceError": "CKR_DEVICE_ERROR",
              "UserPinNotInitialized": "CKR_USER_PIN_NOT_INITIALIZED",
              "TokenNotRecognised": "CKR_TOKEN_NOT_RECOGNIZED", "TokenNotPresent": "CKR_TOKEN_NOT_PRESENT"}


def _ckr_name(e: Exception) -> str:
    return _CKR_NAMES.get(type(e).__name__, type(e).__name__)


def _p11_name(e: Exception) -> str:
    text = str(e)
    return type(e).__name__ + (f" ({text})" if text and text != type(e).__name__ else "")


@contextlib.contextmanager
def pin_errors(label: str, action: str, *, so: bool = False, new_pin: bool = False, token=None):
    """Map the PKCS#11 errors of a PIN-bearing call on token ``label`` to unica's, one message each.

    ``so``: the PIN is the security officer's; ``new_pin``: the call sets a new PIN, so a length
    or character complaint is about that new PIN (bad input), not a wrong one. ``token``: the
    token object, to add what its flags say about the attempts left -- only a final-try flag the
    token itself sets (SoftHSM2 keeps no retry counter: it never sets one)."""
    who = "SO PIN" if so else "PIN"
    try:
        yield
    except p11e.PinIncorrect:
        raise PinIncorrect(f"wrong {who} for token {label!r}: the token reported CKR_PIN_INCORRECT"
                           f"{_pin_count_note(token, so)}") from None
    except p11e.PinLocked:
        raise PinLocked(f"the SO PIN of token {label!r} is locked" if so else
                        f"the user PIN of token {label!r} is locked; the security officer must unblock it") from None
    except (p11e.PinLenRange, p11e.PinInvalid):
        if new_pin:
            raise InputError(f"token {label!r} refused the new PIN (length or characters)") from None
        raise PinIncorrect(f"the {who} given for token {label!r} has an invalid length or characters") from None
    except p11e.PKCS11Error as e:
        raise TokenError(f"{action} on token {label!r} failed: {_p11_name(e)}") from None


def _pin_count_note(token, so: bool) -> str:
    """What the token's flags say after a wrong PIN ("" when they say nothing, or cannot be read)."""
    if token is None:
        return ""
    from pkcs11.constants import TokenFlag

    try:
        flags = token.slot.get_token().flags
    except Exception:
        return ""
    # CKF_*_PIN_COUNT_LOW only means "a wrong PIN since the last good one" (SoftHSM2 sets it and
    # counts nothing): the final-try flag is the one that says something about attempts left
    final = TokenFlag.SO_PIN_FINAL_TRY if so else TokenFlag.USER_PIN_FINAL_TRY
    if flags & final:
        return "; the token reports that the next wrong PIN locks it"
    return ""


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except p11e.PKCS11Error as e:
        raise TokenError(f"PKCS#11 call failed: {_p11_name(e)}") from None


# --- key generation and lookup ---------------------------------------------------------


@dataclass(frozen=True)
class TokenKeyInfo:
    """A key pair found on a token."""

    uri: str
    label: str | None
    id: bytes | None
    key_type: str
    public_key: object | None


def _public_key_from_objects(priv, pub, module: str | None = None):
    """The cryptography public key of a token key pair (from the public object or the private
    one); an :class:`unica.sm2.SM2PublicKey` for an SM2 key of ``module``'s SM2 mapping, looked
    up only for a key that may be one (on the SM2 curve, or of a key type PKCS#11 does not define)."""
    src = pub if pub is not None else priv
    kt = int(src.key_type)
    params = bytes(src[Attribute.EC_PARAMS]) if kt == P11KeyType.EC else None
    if kt not in (P11KeyType.EC, P11KeyType.RSA) or params == SM2_CURVE_OID_DER:
        sm2 = _sm2_mapping(module) if module is not None else None
        if sm2 is not None and kt == sm2.key_type:
            if pub is None:
                raise KeyNotFound("the token has no public key object for this SM2 key")
            from unica.sm2 import SM2PublicKey

            return SM2PublicKey.from_spki_der(decode_ec_public_key_der(SM2_CURVE_OID_DER, pub[Attribute.EC_POINT]))
        if params is not None:
            raise UnsupportedKeyType("an SM2 key on this token needs the module's SM2 mapping in config.toml "
                                     "([[pkcs11.sm2]], docs/sm2.md)")
    if kt == P11KeyType.EC:
        if pub is None:
            raise KeyNotFound("the token has no public key object for this EC key")
        der = decode_ec_public_key_der(params, pub[Attribute.EC_POINT])
        return serialization.load_der_public_key(der)
    if kt == P11KeyType.RSA:
        n = int.from_bytes(src[Attribute.MODULUS], "big")
        e = int.from_bytes(src[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    raise UnsupportedKeyType(f"unsupported key type on token: {src.key_type!r}")


def decode_ec_public_key_der(ec_params: bytes, ec_point: bytes) -> bytes:
    """SubjectPublicKeyInfo DER from CKA_EC_PARAMS and CKA_EC_POINT (an OCTET STRING)."""
    from asn1crypto import core, keys

    point = ec_point
    try:
        parsed = core.OctetString.load(ec_point)
        if parsed.contents and parsed.contents[0] in (4, 2, 3):
            point = parsed.native
    except Exception:
        pass
    curve = keys.ECDomainParameters.load(ec_params)
    spki = keys.PublicKeyInfo({
        "algorithm": keys.PublicKeyAlgorithm({"algorithm": "ec", "parameters": curve}),
        "public_key": point,
    })
    return spki.dump()


def _find_pair(session, uri: Pkcs11URI):
    """(private, public) objects matching the URI's label and/or id. Public may be None."""
    attrs = {Attribute.CLASS: ObjectClass.PRIVATE_KEY}
    if uri.object is not None:
        attrs[Attribute.LABEL] = uri.object
    if uri.id is not None:
        attrs[Attribute.ID] = uri.id
    privs = list(session.get_objects(attrs))
    if not privs:
        raise KeyNotFound(f"no private key {_describe(uri)} on token {uri.token or uri.serial!r}")
    if len(privs) > 1:
        raise KeyNotFound(f"{len(privs)} private keys match {_describe(uri)}; add id=... to the URI")
    priv = privs[0]
    pub_attrs = {Attribute.CLASS: ObjectClass.PUBLIC_KEY}
    key_id = priv[Attribute.ID]
    if key_id:
        pub_attrs[Attribute.ID] = key_id
    elif uri.object is not None:
        pub_attrs[Attribute.LABEL] = uri.object
    pubs = list(session.get_objects(pub_attrs))
    return priv, (pubs[0] if len(pubs) == 1 else None)


def _describe(uri: Pkcs11URI) -> str:
    bits = []
    if uri.object is not None:
        bits.append(f"label {uri.object!r}")
    if uri.id is not None:
        bits.append(f"id {uri.id.hex()}")
    return " and ".join(bits) or "(no label or id given)"


def generate_token_key(uri: Pkcs11URI, key_type: KeyType, pin: str, *, backup_allowed: bool = False,
                       key_agreement: bool = False) -> "TokenKey":
    """Generate a key pair on the token: private key sensitive, never extractable, with CKA_ID.

    ``backup_allowed``: the private key is extractable (still sensitive): the token wraps it under
    another key (``unica key backup``) but never reveals it in plaintext.

    ``key_agreement`` (EC keys): the key also does ECDH on the token (CKA_DERIVE): an operator's
    card key that opens a key-backup share as a custodian.

    The CKA_ID is the URI's ``id``, or else the key identifier (SHA-1 of the public key),
    which is also what a certificate for it carries as subject key identifier.
    """
    if uri.object is None:
        raise KeyNotFound("a new token key needs a label: add object=LABEL to the URI")
    sm2 = None
    if key_type.is_sm2:
        sm2 = _sm2_mapping(uri.module)
        if sm2 is None:
            raise UnsupportedKeyType(f"SM2 keys cannot be generated on PKCS#11 module {uri.module}: PKCS#11 defines no "
                                     "SM2 mechanism (each vendor has its own; SoftHSM2 has none). Map the module's "
                                     "own codes in config.toml ([[pkcs11.sm2]], docs/sm2.md), or keep the SM2 key "
                                     "in an encrypted file (file:PATH)")
    elif not (key_type.is_ec or key_type.is_rsa):
        raise UnsupportedKeyType(f"key type {key_type.value} cannot be generated on a PKCS#11 token (use ec-* or rsa-*)")
    module = get_module(uri.module)
    ts = module.session(uri, pin, rw=True)

    def gen(session):
        existing = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: uri.object}))
        if existing:
            raise KeyExists(f"token {uri.token!r} already has a key labelled {uri.object!r}")
        temp_id = uri.id or os.urandom(20)
        priv_t = {
            Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: bool(backup_allowed), Attribute.SIGN: True, Attribute.DECRYPT: False,
            Attribute.UNWRAP: False, Attribute.DERIVE: bool(key_agreement and key_type.is_ec),
            Attribute.LABEL: uri.object, Attribute.ID: temp_id,
        }
        pub_t = {
            Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.VERIFY: True,
            Attribute.ENCRYPT: False, Attribute.WRAP: False,
            Attribute.LABEL: uri.object, Attribute.ID: temp_id,
        }
        try:
            if sm2 is not None:
                from unica.hsm.sm2map import vendor_mechanism

                pub_t[Attribute.KEY_TYPE] = priv_t[Attribute.KEY_TYPE] = sm2.key_type
                params = session.create_domain_parameters(
                    P11KeyType.EC, {Attribute.EC_PARAMS: SM2_CURVE_OID_DER}, local=True)
                pub, priv = params.generate_keypair(store=True, public_template=pub_t, private_template=priv_t,
                                                    mechanism=vendor_mechanism(sm2.keygen))
            elif key_type.is_ec:
                curve_oid = {"ec-p256": "secp256r1", "ec-p384": "secp384r1"}[key_type.value]
                params = session.create_domain_parameters(
                    P11KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(curve_oid)}, local=True)
                pub, priv = params.generate_keypair(store=True, public_template=pub_t, private_template=priv_t)
            else:
                pub_t[Attribute.PUBLIC_EXPONENT] = b"\x01\x00\x01"
                pub, priv = session.generate_keypair(
                    P11KeyType.RSA, key_type.rsa_bits, store=True, public_template=pub_t, private_template=priv_t)
        except p11e.MechanismInvalid:
            via = f" (mechanism {sm2.keygen:#x} of config.toml's [[pkcs11.sm2]])" if sm2 is not None else ""
            raise UnsupportedKeyType(f"token {uri.token!r} cannot generate {key_type.value} keys{via}") from None
        except p11e.PKCS11Error as e:
            raise TokenError(f"key generation on token {uri.token!r} failed: {_p11_name(e)}") from None
        public_key = _public_key_from_objects(priv, pub, uri.module)
        if uri.id is None:
            kid = key_identifier(public_key)
            priv[Attribute.ID] = kid
            pub[Attribute.ID] = kid
        return public_key

    public_key = ts.run(gen)
    final_uri = uri if uri.id is not None else uri.with_(id=key_identifier(public_key))
    return _make_key(ts, final_uri, public_key)


def load_token_key(uri: Pkcs11URI, pin: str) -> "TokenKey":
    module = get_module(uri.module)
    ts = module.session(uri, pin)
    priv, pub = ts.run(_find_pair, uri)
    public_key = ts.run(lambda s: _public_key_from_objects(priv, pub, uri.module))
    key_id = ts.run(lambda s: priv[Attribute.ID])
    key = _make_key(ts, uri.with_(id=uri.id or key_id or None), public_key)
    if isinstance(key, Pkcs11SM2PrivateKey):  # a wrong mapping is found before the key is used
        key.sign(b"unica: does the module's SM2 mapping sign SM2?")
    return key


def _sm2_mapping(module: str):
    from unica.hsm.sm2map import mechanisms_for

    return mechanisms_for(module)


def list_token_keys(uri: Pkcs11URI, pin: str | None) -> list[TokenKeyInfo]:
    """Every private key on the token (needs the PIN: private objects are hidden otherwise)."""
    module = get_module(uri.module)
    ts = module.session(uri, pin)

    def scan(session):
        out = []
        # materialise: a second search cannot start while one is active (CKR_OPERATION_ACTIVE)
        for priv in list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})):
            label = priv[Attribute.LABEL]
            kid = priv[Attribute.ID] or None
            pub = None
            if kid:
                pubs = list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: kid}))
                pub = pubs[0] if len(pubs) == 1 else None
            try:
                public_key = _public_key_from_objects(priv, pub, uri.module)
                ktype = key_type_of(public_key)
            except Exception:
                public_key, ktype = None, str(priv.key_type).split(".")[-1].lower()
            key_uri = Pkcs11URI(token=ts.token.label, object=label or None, id=kid,
                                module_path=uri.module_path)
            out.append(TokenKeyInfo(str(key_uri), label or None, kid, ktype, public_key))
        return out

    return ts.run(scan)


# --- key classes --------------------------------------------------------------------


class TokenKey:
    """Common part of keys that live on a token: locate, and sign with a retry on a lost session."""

    uri: Pkcs11URI

    def _init_token(self, ts: TokenSession, uri: Pkcs11URI, public_key) -> None:
        self._ts = ts
        self.uri = uri
        self._public_key = public_key
        self._handle = None  # cached private key object, per session
        self._handle_session = None

    def _priv(self, session):
        if self._handle is None or self._handle_session is not session:
            self._handle, _ = _find_pair(session, self.uri)
            self._handle_session = session
        return self._handle

    def _token_sign(self, data: bytes, mechanism, mechanism_param=None) -> bytes:
        def op(session):
            return self._priv(session).sign(data, mechanism=mechanism, mechanism_param=mechanism_param)

        try:
            return self._ts.run(op)
        except p11e.PKCS11Error as e:
            raise TokenError(f"signing with {self.uri} failed: {_p11_name(e)}") from None

    def public_key(self):
        return self._public_key

    def private_bytes(self, *args, **kwargs):
        raise UnsupportedKeyType(f"the key {self.uri} lives on a token and cannot be exported")

    def private_numbers(self):
        raise UnsupportedKeyType(f"the key {self.uri} lives on a token and cannot be exported")

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"


# hashlib for the SHA-2 family: in a process that also has SoftHSM2's libcrypto loaded,
# cryptography's hashes.Hash costs ~10 us per call (vs ~1 us) -- 15% of a token signature
_HASHLIB = {"sha224": hashlib.sha224, "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


def _hash_data(data: bytes, algorithm) -> tuple[bytes, hashes.HashAlgorithm]:
    if isinstance(algorithm, utils.Prehashed):
        if len(data) != algorithm.digest_size:
            raise ValueError("prehashed data has the wrong length for its hash algorithm")
        return data, algorithm._algorithm
    fast = _HASHLIB.get(algorithm.name)
    if fast is not None:
        return fast(data).digest(), algorithm
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize(), algorithm


class Pkcs11ECPrivateKey(TokenKey, ec.EllipticCurvePrivateKey):
    """An EC private key on a token, usable wherever cryptography takes an EC private key."""

    def __init__(self, ts: TokenSession, uri: Pkcs11URI, public_key: ec.EllipticCurvePublicKey):
        self._init_token(ts, uri, public_key)
        self._size = (public_key.curve.key_size + 7) // 8
        self._default_hash = hashlib.sha384 if self._size > 32 else hashlib.sha256

    @property
    def curve(self):
        return self._public_key.curve

    @property
    def key_size(self) -> int:
        return self._public_key.curve.key_size

    def exchange(self, algorithm, peer_public_key):
        """ECDH on the token (CKM_ECDH1_DERIVE): the shared secret, as cryptography's exchange.
        The key needs CKA_DERIVE (a key-backup custodian's card key)."""
        if not isinstance(algorithm, ec.ECDH):
            raise UnsupportedKeyType(f"the key {self.uri} does ECDH key agreement only")
        from unica.hsm.wrap import ecdh_shared_secret

        return ecdh_shared_secret(self, peer_public_key)

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise UnsupportedKeyType("token EC keys sign with ECDSA only")
        digest, _ = _hash_data(bytes(data), signature_algorithm.algorithm)
        return _ecdsa_der(self._token_sign(digest, Mechanism.ECDSA))

    def sign_default(self, data: bytes) -> bytes:
        """ECDSA with the key's default hash (SHA-256, or SHA-384 for P-384): the hot path of
        :func:`unica.hsm.sign_raw`, flattened into one locked call on the cached key handle.
        Anything unusual (no session yet, a lost session, a fork) takes the general path."""
        digest = self._default_hash(data).digest()
        ts = self._ts
        module = ts.module
        with module.lock:
            session = ts.session
            handle = self._handle
            if handle is not None and session is not None and self._handle_session is session \
                    and module._pid == os.getpid():
                try:
                    return _ecdsa_der(handle.sign(digest, mechanism=Mechanism.ECDSA))
                except _SESSION_LOST:
                    pass
                except p11e.PKCS11Error as e:
                    raise TokenError(f"signing with {self.uri} failed: {_p11_name(e)}") from None
        return _ecdsa_der(self._token_sign(digest, Mechanism.ECDSA))


def _ecdsa_der(raw: bytes) -> bytes:
    """DER Ecdsa-Sig-Value from the token's ``r || s`` (the same bytes as cryptography's
    encode_dss_signature, in one %-format: this is on the signing hot path)."""
    n = len(raw) >> 1
    r = raw[:n].lstrip(b"\x00") or b"\x00"
    s = raw[n:].lstrip(b"\x00") or b"\x00"
    if r[0] & 0x80:
        r = b"\x00" + r
    if s[0] & 0x80:
        s = b"\x00" + s
    body = len(r) + len(s) + 4
    if body < 0x80:
        return b"0%c\x02%c%b\x02%c%b" % (body, len(r), r, len(s), s)
    return b"0\x81%c\x02%c%b\x02%c%b" % (body, len(r), r, len(s), s)


_RSA_PKCS_MECH = {
    "sha256": Mechanism.SHA256_RSA_PKCS, "sha384": Mechanism.SHA384_RSA_PKCS,
    "sha512": Mechanism.SHA512_RSA_PKCS, "sha224": Mechanism.SHA224_RSA_PKCS, "sha1": Mechanism.SHA1_RSA_PKCS,
}
_RSA_PSS_MECH = {
    "sha256": Mechanism.SHA256_RSA_PKCS_PSS, "sha384": Mechanism.SHA384_RSA_PKCS_PSS,
    "sha512": Mechanism.SHA512_RSA_PKCS_PSS, "sha224": Mechanism.SHA224_RSA_PKCS_PSS,
}
_HASH_MECH = {
    "sha256": (Mechanism.SHA256, MGF.SHA256), "sha384": (Mechanism.SHA384, MGF.SHA384),
    "sha512": (Mechanism.SHA512, MGF.SHA512), "sha224": (Mechanism.SHA224, MGF.SHA224),
}
# DER DigestInfo prefixes (RFC 8017 9.2 note 1) for raw CKM_RSA_PKCS on pre-hashed input
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
    "sha224": bytes.fromhex("302d300d06096086480165030402040500041c"),
}


class Pkcs11RSAPrivateKey(TokenKey, rsa.RSAPrivateKey):
    """An RSA private key on a token (PKCS#1 v1.5 and PSS signatures)."""

    def __init__(self, ts: TokenSession, uri: Pkcs11URI, public_key: rsa.RSAPublicKey):
        self._init_token(ts, uri, public_key)

    @property
    def key_size(self) -> int:
        return self._public_key.key_size

    def decrypt(self, ciphertext, padding):
        raise UnsupportedKeyType(f"the key {self.uri} is for signing only")

    def sign(self, data: bytes, padding_: padding.AsymmetricPadding, algorithm) -> bytes:
        data = bytes(data)
        prehashed = isinstance(algorithm, utils.Prehashed)
        hash_alg = algorithm._algorithm if prehashed else algorithm
        name = hash_alg.name
        if isinstance(padding_, padding.PKCS1v15):
            if prehashed:
                if name not in _DIGEST_INFO:
                    raise UnsupportedKeyType(f"hash {name} is not supported for token RSA signatures")
                return self._token_sign(_DIGEST_INFO[name] + data, Mechanism.RSA_PKCS)
            if name not in _RSA_PKCS_MECH:
                raise UnsupportedKeyType(f"hash {name} is not supported for token RSA signatures")
            return self._token_sign(data, _RSA_PKCS_MECH[name])
        if isinstance(padding_, padding.PSS):
            if name not in _HASH_MECH:
                raise UnsupportedKeyType(f"hash {name} is not supported for RSA-PSS on a token")
            salt = _pss_salt_length(padding_, self.key_size, hash_alg)
            hmech, mgf = _HASH_MECH[name]
            if padding_._mgf._algorithm.name != name:
                raise UnsupportedKeyType("RSA-PSS on a token needs MGF1 with the same hash as the signature")
            param = (hmech, mgf, salt)
            if prehashed:
                return self._token_sign(data, Mechanism.RSA_PKCS_PSS, param)
            return self._token_sign(data, _RSA_PSS_MECH[name], param)
        raise UnsupportedKeyType(f"padding {type(padding_).__name__} is not supported for token RSA signatures")


def _pss_salt_length(p: padding.PSS, key_size: int, hash_alg) -> int:
    salt = p._salt_length
    if isinstance(salt, int):
        return salt
    if salt is padding.PSS.DIGEST_LENGTH or isinstance(salt, padding._DigestLength):
        return hash_alg.digest_size
    if salt is padding.PSS.MAX_LENGTH or isinstance(salt, padding._MaxLength):
        return (key_size + 7) // 8 - hash_alg.digest_size - 2
    if isinstance(salt, padding._Auto):
        raise UnsupportedKeyType("PSS.AUTO is only for verification")
    raise UnsupportedKeyType(f"unsupported PSS salt length {salt!r}")


class Pkcs11SM2PrivateKey(TokenKey):
    """An SM2 private key on a token with an SM2 mapping (:mod:`unica.hsm.sm2map`): signs as
    :meth:`unica.sm2.SM2PrivateKey.sign` does -- ``e = SM3(Z || data)`` computed here with the
    signer ID, the module's SM2 mechanism signing ``e`` -- and checks each signature with the
    public key before it leaves (a mapping to a mechanism that is not SM2 fails there)."""

    _unica_sm2 = True  # unica.hsm.keytypes.is_sm2

    def __init__(self, ts: TokenSession, uri: Pkcs11URI, public_key, mechanisms):
        from unica.hsm.sm2map import vendor_mechanism

        self._init_token(ts, uri, public_key)
        self._mechanisms = mechanisms
        self._sign_mechanism = vendor_mechanism(mechanisms.sign)

    def sign(self, data: bytes, *, signer_id: bytes | None = None) -> bytes:
        from unica.errors import SM2SignatureInvalid
        from unica.sm2 import DEFAULT_ID, digest

        signer_id = DEFAULT_ID if signer_id is None else signer_id
        e = digest(self._public_key, bytes(data), signer_id=signer_id)
        raw = self._token_sign(e, self._sign_mechanism)
        sig = _ecdsa_der(raw) if len(raw) == 64 else raw  # r || s, or DER already (checked next)
        try:
            self._public_key.verify(sig, bytes(data), signer_id=signer_id)
        except SM2SignatureInvalid:
            raise TokenError(f"the signature {self.uri} made with mechanism {self._mechanisms.sign:#x} does not verify "
                             "as SM2 with SM3: check the module's [[pkcs11.sm2]] sign code in config.toml (it must "
                             "sign a 32-byte digest e with SM2)") from None
        return sig


def _make_key(ts: TokenSession, uri: Pkcs11URI, public_key) -> TokenKey:
    if is_sm2(public_key):  # made as SM2 only under the module's mapping
        return Pkcs11SM2PrivateKey(ts, uri, public_key, _sm2_mapping(uri.module))
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return Pkcs11ECPrivateKey(ts, uri, public_key)
    if isinstance(public_key, rsa.RSAPublicKey):
        return Pkcs11RSAPrivateKey(ts, uri, public_key)
    raise UnsupportedKeyType(f"unsupported token key type {type(public_key).__name__}")
