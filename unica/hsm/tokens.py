"""Tokens and slots of a PKCS#11 module: what ``unica token list`` shows."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field

import pkcs11.exceptions as p11e
from pkcs11.constants import TokenFlag

from unica.errors import InputError, PinIncorrect, PinLocked, TokenError, TokenNotFound
from unica.hsm.pkcs11 import _p11_name, _serial_text, get_module, pin_errors
from unica.hsm.uri import DEFAULT_PKCS11_MODULE

# token flags worth showing an operator, in display order
_FLAG_NAMES = [
    (TokenFlag.TOKEN_INITIALIZED, "initialized"),
    (TokenFlag.USER_PIN_INITIALIZED, "user-pin-initialized"),
    (TokenFlag.LOGIN_REQUIRED, "login-required"),
    (TokenFlag.WRITE_PROTECTED, "write-protected"),
    (TokenFlag.PROTECTED_AUTHENTICATION_PATH, "protected-auth-path"),
    (TokenFlag.RNG, "rng"),
    (TokenFlag.USER_PIN_COUNT_LOW, "user-pin-count-low"),
    (TokenFlag.USER_PIN_FINAL_TRY, "user-pin-final-try"),
    (TokenFlag.USER_PIN_LOCKED, "user-pin-locked"),
    (TokenFlag.USER_PIN_TO_BE_CHANGED, "user-pin-to-be-changed"),
    (TokenFlag.SO_PIN_COUNT_LOW, "so-pin-count-low"),
    (TokenFlag.SO_PIN_FINAL_TRY, "so-pin-final-try"),
    (TokenFlag.SO_PIN_LOCKED, "so-pin-locked"),
]


@dataclass(frozen=True)
class TokenInfo:
    slot_id: int
    slot_description: str
    label: str
    serial: str
    manufacturer: str
    model: str
    flags: tuple[str, ...] = field(default_factory=tuple)
    hardware_version: str = ""
    firmware_version: str = ""

    @property
    def initialized(self) -> bool:
        return "initialized" in self.flags

    @property
    def user_pin_status(self) -> str:
        """``locked``, ``final-try``, ``count-low``, ``to-be-changed``, ``not-initialized`` or ``ok``.

        Only as far as the token reports it in its flags: SoftHSM2, for one, counts nothing.
        """
        return _pin_status(self.flags, "user")

    @property
    def so_pin_status(self) -> str:
        return _pin_status(self.flags, "so")

    def to_dict(self) -> dict:
        return {
            "slot_id": self.slot_id, "slot_description": self.slot_description, "label": self.label,
            "serial": self.serial, "manufacturer": self.manufacturer, "model": self.model,
            "flags": list(self.flags), "hardware_version": self.hardware_version,
            "firmware_version": self.firmware_version, "user_pin": self.user_pin_status,
            "so_pin": self.so_pin_status,
        }


def _pin_status(flags: tuple[str, ...], who: str) -> str:
    for state in ("locked", "final-try", "count-low"):
        if f"{who}-pin-{state}" in flags:
            return state
    if who == "user":
        if "user-pin-to-be-changed" in flags:
            return "to-be-changed"
        if "initialized" in flags and "user-pin-initialized" not in flags:
            return "not-initialized"
    return "ok"


def module_path(path: str | None = None) -> str:
    return path or os.environ.get("UNICA_PKCS11_MODULE") or DEFAULT_PKCS11_MODULE


def token_flags(flags) -> tuple[str, ...]:
    return tuple(name for bit, name in _FLAG_NAMES if flags & bit)


def list_tokens(path: str | None = None) -> list[TokenInfo]:
    """Every slot with a token present in the module."""
    module = get_module(module_path(path))
    out = []
    with module.lock:
        try:
            for slot in module.lib.get_slots(token_present=True):
                try:
                    tok = slot.get_token()
                except (p11e.TokenNotPresent, p11e.TokenNotRecognised):
                    continue
                out.append(_info(slot, tok))
        except p11e.PKCS11Error as e:
            raise TokenError(f"cannot list tokens of {module.path}: {_p11_name(e)}") from None
    return out


def _version(v) -> str:
    try:
        return ".".join(str(x) for x in v)
    except TypeError:
        return str(v)


def _info(slot, tok) -> TokenInfo:
    return TokenInfo(
        slot_id=slot.slot_id, slot_description=slot.slot_description.strip(),
        label=tok.label, serial=_serial_text(tok.serial),
        manufacturer=tok.manufacturer_id.strip(), model=tok.model.strip(),
        flags=token_flags(tok.flags), hardware_version=_version(tok.hardware_version),
        firmware_version=_version(tok.firmware_version),
    )


def require_token(label: str | None, path: str | None = None, serial: str | None = None) -> None:
    """:class:`TokenNotFound` (or :class:`TokenError`) unless the token is there: the CLI asks
    for a PIN only after this, so a missing token is reported before anyone types a PIN."""
    if label is None and serial is None:
        return
    get_module(module_path(path)).find_token(label, serial)


def token_info(label: str, path: str | None = None) -> TokenInfo:
    """Slot, serial, model, flags and PIN state of the token labelled ``label``."""
    module = get_module(module_path(path))
    tok = module.find_token(label)
    with module.lock:
        try:
            fresh = tok.slot.get_token()  # re-read the flags: PIN counters change
            return _info(tok.slot, fresh)
        except p11e.PKCS11Error as e:
            raise TokenError(f"cannot read token {label!r}: {_p11_name(e)}") from None


# --- life cycle -------------------------------------------------------------------------

_LABEL_LEN = 32


def _pad_label(label: str) -> bytes:
    raw = label.encode("utf-8")
    if not label or len(raw) > _LABEL_LEN:
        raise InputError(f"token label {label!r} must be 1 to {_LABEL_LEN} bytes of UTF-8")
    if label != label.strip():
        raise InputError(f"token label {label!r} must not start or end with spaces")
    return raw.ljust(_LABEL_LEN, b" ")


class _FunctionList(ctypes.Structure):
    # CK_FUNCTION_LIST up to C_InitToken (PKCS#11 v2.40 section 5.14): CK_VERSION then pointers
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)] + [
        (name, ctypes.c_void_p) for name in (
            "C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList",
            "C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo",
            "C_InitToken")]


_CKR = {0x00: "OK", 0xA0: "PIN_INCORRECT", 0xA4: "PIN_LOCKED", 0xA2: "PIN_LEN_RANGE", 0xB6: "SESSION_EXISTS",
        0xE0: "TOKEN_NOT_PRESENT", 0xE2: "TOKEN_WRITE_PROTECTED", 0x03: "SLOT_ID_INVALID",
        0x101: "USER_ALREADY_LOGGED_IN", 0x190: "CRYPTOKI_NOT_INITIALIZED"}


def _c_init_token(path: str, slot_id: int, so_pin: str, label: str) -> int:
    """Call C_InitToken (python-pkcs11 0.9 has no binding) on the already-initialised module."""
    dl = ctypes.CDLL(path)  # the same handle python-pkcs11 holds: dlopen is reference counted
    flist = ctypes.POINTER(_FunctionList)()
    rv = dl.C_GetFunctionList(ctypes.byref(flist))
    if rv != 0 or not flist or not flist.contents.C_InitToken:
        raise TokenError(f"{path} has no usable C_InitToken (C_GetFunctionList returned {rv:#x})")
    proto = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
    init = proto(flist.contents.C_InitToken)
    pin = so_pin.encode("utf-8")
    return init(slot_id, pin, len(pin), _pad_label(label))


def init_token(*, label: str, so_pin: str, user_pin: str, slot_id: int | None = None, free: bool = False,
               force: bool = False, path: str | None = None) -> TokenInfo:
    """Initialise the token in slot ``slot_id`` (or the first uninitialised one with ``free``).

    Sets the token label and SO PIN (C_InitToken), then the user PIN (SO login, C_InitPIN).
    A token that is already initialised is refused unless ``force`` (which erases it).
    """
    if (slot_id is None) == (not free):
        raise InputError("give either a slot id or --free")
    _pad_label(label)
    module = get_module(module_path(path))
    with module.lock:
        lib = module.lib
        if any(t.label == label for t in lib.get_tokens()):
            raise TokenError(f"a token labelled {label!r} already exists in {module.path}")
        slot = None
        try:
            slots = list(lib.get_slots(token_present=True))
        except p11e.PKCS11Error as e:
            raise TokenError(f"cannot list slots of {module.path}: {_p11_name(e)}") from None
        for s in slots:
            tok = s.get_token()
            initialised = bool(tok.flags & TokenFlag.TOKEN_INITIALIZED)
            if free and not initialised:
                slot = s
                break
            if slot_id is not None and s.slot_id == slot_id:
                if initialised and not force:
                    raise TokenError(f"the token in slot {slot_id} ({tok.label!r}) is already initialised; "
                                     "--force erases it")
                slot = s
                break
        if slot is None:
            what = "no slot with an uninitialised token" if free else f"no slot {slot_id} with a token"
            raise TokenNotFound(f"{what} in {module.path}")
        if force:
            # C_InitToken fails with CKR_SESSION_EXISTS while this process has a session on it
            module.drop_sessions()
        rv = _c_init_token(module.path, slot.slot_id, so_pin, label)
        if rv in (0xA0, 0xA2):
            raise PinIncorrect(f"the token in slot {slot.slot_id} refused the SO PIN ({_CKR[rv]})")
        if rv == 0xA4:
            raise PinLocked(f"the SO PIN of the token in slot {slot.slot_id} is locked")
        if rv != 0:
            raise TokenError(f"C_InitToken on slot {slot.slot_id} failed: CKR_{_CKR.get(rv, hex(rv))}")
        tok = _token_by_label(lib, label)
        try:
            with tok.open(rw=True, so_pin=so_pin) as session:
                session.init_pin(user_pin)
        except (p11e.PinLenRange, p11e.PinInvalid):
            raise InputError(f"token {label!r} refused the new user PIN (length or characters); "
                             "the token is initialised, set the user PIN with 'unica token unblock'") from None
        except p11e.PKCS11Error as e:
            raise TokenError(f"setting the user PIN of token {label!r} failed: {_p11_name(e)}") from None
        # A module may move a freshly initialised token to another slot (SoftHSM2 numbers the
        # slot of an initialised token after its serial, but keeps this process's view until
        # re-initialised): enumerate afresh and report the slot every new process sees.
        module.reinitialize()
        tok = _token_by_label(module.lib, label)
        return _info(tok.slot, tok.slot.get_token())


def _token_by_label(lib, label: str):
    for t in lib.get_tokens():
        if t.label == label:
            return t
    raise TokenNotFound(f"no PKCS#11 token with label {label!r} after initialisation")


def change_pin(label: str, old_pin: str, new_pin: str, path: str | None = None) -> None:
    """The user changes their own PIN (C_SetPIN on a session that is not logged in: no C_Login)."""
    if not new_pin:
        raise InputError("the new PIN is empty")
    module = get_module(module_path(path))
    tok = module.find_token(label)
    with module.lock, pin_errors(label, "changing the PIN", new_pin=True, token=tok):
        with tok.open(rw=True) as session:
            session.set_pin(old_pin, new_pin)


def unblock_pin(label: str, so_pin: str, new_pin: str, path: str | None = None) -> None:
    """The security officer sets a new user PIN (C_Login as SO, C_InitPIN): unblocks a locked PIN."""
    if not new_pin:
        raise InputError("the new PIN is empty")
    module = get_module(module_path(path))
    tok = module.find_token(label)
    with module.lock, pin_errors(label, "unblocking the user PIN", so=True, new_pin=True, token=tok):
        with tok.open(rw=True, so_pin=so_pin) as session:
            session.init_pin(new_pin)
