"""Key URIs: ``pkcs11:`` (RFC 7512) and ``file:``.

A key is named by a URI. ``pkcs11:token=CA%20Root;object=root-2026;id=%01%02?module-path=/x.so``
selects a key on a PKCS#11 token; ``file:/etc/unica/keys/sub.pem`` (or ``file:keys/sub.pem``,
relative to the working directory) a software key in an encrypted PKCS#8 PEM file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

from unica.errors import URIError

DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"

# RFC 7512 section 2.3: path attributes and query attributes unica understands.
_PATH_ATTRS = {
    "token", "object", "id", "type", "serial", "manufacturer", "model",
    "library-manufacturer", "library-description", "library-version", "slot-id",
    "slot-description", "slot-manufacturer",
}
_QUERY_ATTRS = {"module-path", "module-name", "pin-source"}
_MAX_URI = 4096


@dataclass(frozen=True)
class Pkcs11URI:
    """A parsed ``pkcs11:`` URI. ``id`` is raw bytes; text attributes are decoded UTF-8."""

    token: str | None = None
    object: str | None = None
    id: bytes | None = None
    type: str | None = None
    serial: str | None = None
    slot_id: int | None = None
    module_path: str | None = None
    pin_source: str | None = None

    @property
    def module(self) -> str:
        """The PKCS#11 module: the URI's ``module-path``, ``UNICA_PKCS11_MODULE``, or SoftHSM2."""
        return self.module_path or os.environ.get("UNICA_PKCS11_MODULE") or DEFAULT_PKCS11_MODULE

    def with_(self, **changes) -> "Pkcs11URI":
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        values.update(changes)
        return Pkcs11URI(**values)

    def __str__(self) -> str:
        parts = []
        if self.token is not None:
            parts.append("token=" + _pct(self.token.encode()))
        if self.serial is not None:
            parts.append("serial=" + _pct(self.serial.encode()))
        if self.slot_id is not None:
            parts.append(f"slot-id={self.slot_id}")
        if self.object is not None:
            parts.append("object=" + _pct(self.object.encode()))
        if self.id is not None:
            parts.append("id=" + "".join(f"%{b:02x}" for b in self.id))
        if self.type is not None:
            parts.append("type=" + self.type)
        query = []
        if self.module_path is not None:
            query.append("module-path=" + _pct(self.module_path.encode(), safe="/"))
        if self.pin_source is not None:
            query.append("pin-source=" + _pct(self.pin_source.encode(), safe="/:"))
        return "pkcs11:" + ";".join(parts) + ("?" + "&".join(query) if query else "")


@dataclass(frozen=True)
class FileURI:
    """A ``file:`` URI naming an encrypted PKCS#8 PEM key file."""

    path: Path

    def __str__(self) -> str:
        return f"file:{self.path}"


KeyURI = Pkcs11URI | FileURI


def _pct(raw: bytes, safe: str = "") -> str:
    return quote(raw, safe=safe)


def _decode(value: str, what: str, uri: str) -> bytes:
    try:
        return unquote_to_bytes(value)
    except Exception as e:  # pragma: no cover - unquote_to_bytes is lenient
        raise URIError(f"bad key URI {uri!r}: cannot decode {what}: {e}") from None


def parse_key_uri(text: str) -> KeyURI:
    """Parse a key URI; raise :class:`URIError` naming the problem."""
    if not isinstance(text, str):
        raise URIError(f"key URI must be a string, not {type(text).__name__}")
    if len(text) > _MAX_URI:
        raise URIError(f"key URI is too long ({len(text)} characters; at most {_MAX_URI})")
    if any(ord(c) < 0x20 for c in text):
        raise URIError("key URI contains control characters")
    scheme, sep, rest = text.partition(":")
    if not sep:
        raise URIError(f"bad key URI {text!r}: expected 'pkcs11:...' or 'file:PATH'")
    scheme = scheme.lower()
    if scheme == "file":
        return _parse_file(text, rest)
    if scheme == "pkcs11":
        return _parse_pkcs11(text, rest)
    raise URIError(f"bad key URI {text!r}: unknown scheme {scheme!r} (use pkcs11: or file:)")


def _parse_file(text: str, rest: str) -> FileURI:
    if rest.startswith("//"):
        # file:///abs/path or file://localhost/abs/path
        host, _, path = rest[2:].partition("/")
        if host not in ("", "localhost"):
            raise URIError(f"bad key URI {text!r}: remote file hosts are not supported")
        rest = "/" + path
    try:
        path = _decode(rest, "path", text).decode("utf-8", "strict") if "%" in rest else rest
    except UnicodeDecodeError:
        raise URIError(f"bad key URI {text!r}: the file path is not UTF-8") from None
    if not path:
        raise URIError(f"bad key URI {text!r}: empty file path")
    return FileURI(Path(path))


def _parse_pkcs11(text: str, rest: str) -> Pkcs11URI:
    path_part, _, query_part = rest.partition("?")
    values: dict[str, object] = {}
    for attr in filter(None, path_part.split(";")):
        name, eq, value = attr.partition("=")
        if not eq:
            raise URIError(f"bad key URI {text!r}: attribute {name!r} has no value")
        name = name.lower()
        if name not in _PATH_ATTRS:
            raise URIError(f"bad key URI {text!r}: unknown attribute {name!r}")
        if name in values:
            raise URIError(f"bad key URI {text!r}: attribute {name!r} given twice")
        raw = _decode(value, name, text)
        if name == "id":
            if not raw:
                raise URIError(f"bad key URI {text!r}: empty id")
            values["id"] = raw
        elif name == "slot-id":
            try:
                values["slot_id"] = int(raw.decode("ascii"))
            except ValueError:
                raise URIError(f"bad key URI {text!r}: slot-id must be a number") from None
        elif name == "type":
            t = raw.decode("ascii", "replace")
            if t not in ("private", "public", "cert", "secret-key", "data"):
                raise URIError(f"bad key URI {text!r}: unknown object type {t!r}")
            values["type"] = t
        elif name in ("token", "object", "serial"):
            try:
                values[name] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise URIError(f"bad key URI {text!r}: {name} is not UTF-8") from None
        # other RFC 7512 attributes are accepted and ignored
    for attr in filter(None, query_part.split("&")):
        name, eq, value = attr.partition("=")
        name = name.lower()
        if name == "pin-value":
            raise URIError(
                "bad key URI: a PIN must not be written into a key URI (pin-value); "
                "use UNICA_PIN, --pin-file or pin-source=FILE"
            )
        if name not in _QUERY_ATTRS:
            raise URIError(f"bad key URI {text!r}: unknown query attribute {name!r}")
        if not eq:
            raise URIError(f"bad key URI {text!r}: query attribute {name!r} has no value")
        decoded = _decode(value, name, text).decode("utf-8", "replace")
        if name == "module-path":
            values["module_path"] = decoded
        elif name == "pin-source":
            values["pin_source"] = decoded[len("file:"):] if decoded.startswith("file:") else decoded
    return Pkcs11URI(**values)
