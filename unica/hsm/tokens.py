"""Tokens and slots of a PKCS#11 module: what ``unica token list`` shows."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pkcs11.exceptions as p11e
from pkcs11.constants import TokenFlag

from unica.errors import TokenError
from unica.hsm.pkcs11 import _p11_name, _serial_text, get_module
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

    def to_dict(self) -> dict:
        return {
            "slot_id": self.slot_id, "slot_description": self.slot_description, "label": self.label,
            "serial": self.serial, "manufacturer": self.manufacturer, "model": self.model,
            "flags": list(self.flags),
        }


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
                out.append(TokenInfo(
                    slot_id=slot.slot_id, slot_description=slot.slot_description.strip(),
                    label=tok.label, serial=_serial_text(tok.serial),
                    manufacturer=tok.manufacturer_id.strip(), model=tok.model.strip(),
                    flags=token_flags(tok.flags),
                ))
        except p11e.PKCS11Error as e:
            raise TokenError(f"cannot list tokens of {module.path}: {_p11_name(e)}") from None
    return out
