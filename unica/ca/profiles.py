"""Operator profiles: adding, replacing and removing ``$UNICA_HOME/profiles/NAME.toml``.

Each change is operation ``profile.change`` (admin; see :mod:`unica.auth`). Its parameters carry
the file's text (and, for a replacement or a removal, the SHA-256 of the file as it was when
asked), so that an approved request installs exactly the approved text, and refuses to replace or
remove a file that changed since it was approved. The text is checked with the strict loader
before anything is written; the file is installed atomically (a temporary file in the same
directory, then ``os.replace``) inside the transaction that appends its audit entry
(``profile.added``, ``profile.replaced``, ``profile.removed``).
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from pathlib import Path

from sqlalchemy import select

from unica.errors import InputError, PolicyViolation, ProfileError, ProfileNotFound
from unica.policies import builtin_names, operator_dir, parse_profile
from unica.store import models as m

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith(".toml"):
        raise InputError(f"bad profile name {name!r} (letters, digits, '.', '_', '-'; at most 64)")
    if name in builtin_names():
        raise ProfileError(f"{name!r} is a built-in profile: an operator profile needs another name")


def check_text(name: str, text: str, source: str):
    """The :class:`~unica.policies.Profile` ``text`` defines (strict loader), or ProfileError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"profile {source}: not valid TOML: {e}") from None
    return parse_profile(data, name=name, source=source)


def _path(name: str, directory: Path | None) -> Path:
    return (directory if directory is not None else operator_dir()) / f"{name}.toml"


def _current(path: Path) -> str | None:
    from unica.boundedio import MAX_TEXT, read_limited

    if not path.is_file():
        return None
    raw = read_limited(path, MAX_TEXT, "profile", unreadable=ProfileError)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError(f"profile {path}: not UTF-8 text") from None


def change_operation(action: str, name: str, *, text: str | None = None, previous: str | None = None):
    """The ``profile.change`` operation: ``action`` add, replace or remove."""
    from unica.auth import Operation

    params = {"action": action, "name": name}
    if text is not None:
        params["text"] = text
    if previous is not None:
        params["previous_sha256"] = _sha256(previous)
    return Operation("profile.change", params=params)


def add_profile(store, name: str, text: str, *, replace: bool = False, directory: Path | None = None,
                auth=None) -> dict:
    """Install ``text`` as operator profile ``name`` (``replace``: over the existing one).

    The text must pass the strict loader; a new name must be free, a replacement must have a
    file to replace."""
    check_name(name)
    path = _path(name, directory)
    profile = check_text(name, text, f"{name}.toml")
    previous = _current(path)
    if previous is None and replace:
        raise ProfileNotFound(f"no operator profile {name!r} to replace (add it without --replace)")
    if previous is not None and not replace:
        raise ProfileError(f"operator profile {name!r} exists ({path}): give --replace to replace it")
    action = "replace" if replace else "add"
    from unica.auth import authorized

    with authorized(store, change_operation(action, name, text=text, previous=previous), auth):
        with store.write() as s:
            store.audit(s, f"profile.{'replaced' if replace else 'added'}", target=name, details={
                "profile": name, "kind": profile.kind, "sha256": _sha256(text),
                **({"previous_sha256": _sha256(previous)} if previous is not None else {})})
            _install(path, text)
    return {"profile": name, "kind": profile.kind, "path": str(path), "sha256": _sha256(text),
            "action": "replaced" if replace else "added"}


def _install(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ProfileError(f"cannot install profile {path}: {e.strerror or e}") from None


def users_of(session, name: str) -> list[str]:
    """Who uses profile ``name``: CAs that list it, RA offices that name it."""
    out = [f"CA {c.name}" for c in session.scalars(select(m.CA).order_by(m.CA.name)) if name in (c.profiles or [])]
    out += [f"office {o.name}" for o in session.scalars(select(m.Office).order_by(m.Office.name))
            if name in (o.profiles or [])]
    return out


def remove_profile(store, name: str, *, directory: Path | None = None, auth=None) -> dict:
    """Remove operator profile ``name``; refused while a CA lists it or an office uses it."""
    check_name(name)
    path = _path(name, directory)
    previous = _current(path)
    if previous is None:
        raise ProfileNotFound(f"no operator profile {name!r} (in {path.parent})")
    with store.read() as s:
        users = users_of(s, name)
    if users:
        raise PolicyViolation(f"profile {name!r} is in use ({', '.join(users)}): take it out of their profile "
                              f"lists first")
    from unica.auth import authorized

    with authorized(store, change_operation("remove", name, previous=previous), auth):
        with store.write() as s:
            users = users_of(s, name)  # again, under the authority: nothing changed since the check
            if users:
                raise PolicyViolation(f"profile {name!r} is in use ({', '.join(users)})")
            store.audit(s, "profile.removed", target=name, details={"profile": name, "sha256": _sha256(previous)})
            try:
                path.unlink()
            except FileNotFoundError:
                raise ProfileNotFound(f"no operator profile {name!r} (in {path.parent})") from None
            except OSError as e:
                raise ProfileError(f"cannot remove profile {path}: {e.strerror or e}") from None
    return {"profile": name, "path": str(path), "action": "removed", "sha256": _sha256(previous)}


def apply_change(store, params: dict, *, auth=None) -> dict:
    """Run a ``profile.change`` from its parameters (an approved request)."""
    action = params["action"]
    if action == "remove":
        return remove_profile(store, params["name"], auth=auth)
    return add_profile(store, params["name"], params["text"], replace=action == "replace", auth=auth)
