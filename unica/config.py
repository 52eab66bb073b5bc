"""Where unica keeps its things, and the home's small configuration file.

``$UNICA_HOME`` (default ``./unica-data``) holds ``config.toml``, the SQLite database
``unica.db`` (unless ``UNICA_DB`` / ``--db`` / ``config.toml``'s ``db`` names another),
operator profiles in ``profiles/`` and software CA keys in ``keys/``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from unica.errors import ConfigurationError, EnvironmentFailure

CONFIG_FILE = "config.toml"
_KEYS = {"db": str, "profiles_dir": str, "keys_dir": str}


@dataclass(frozen=True)
class Config:
    home: Path
    db: str | None = None
    profiles_dir: Path | None = None
    keys_dir: Path | None = None
    #: the SM2 mechanism mappings of PKCS#11 modules (``[[pkcs11.sm2]]``: :mod:`unica.hsm.sm2map`)
    pkcs11_sm2: tuple = ()


def home() -> Path:
    return Path(os.environ.get("UNICA_HOME") or "unica-data")


def load_config(h: Path | None = None) -> Config:
    """The home's ``config.toml`` (absent file = defaults). Unknown keys are refused."""
    h = h or home()
    path = h / CONFIG_FILE
    if not path.exists():
        return Config(home=h)
    from unica.boundedio import MAX_TEXT, read_limited

    raw = read_limited(path, MAX_TEXT, "config", unreadable=ConfigurationError)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigurationError(f"config {path}: cannot read: {e}") from None
    sm2_maps: tuple = ()
    pkcs11 = data.pop("pkcs11", None)
    if pkcs11 is not None:
        if not isinstance(pkcs11, dict) or set(pkcs11) - {"sm2"}:
            raise ConfigurationError(f"config {path}: pkcs11: only [[pkcs11.sm2]] tables belong here")
        from unica.hsm.sm2map import parse_mappings

        sm2_maps = parse_mappings(pkcs11.get("sm2", []), f"config {path}")
    for k, v in data.items():
        if k not in _KEYS:
            raise ConfigurationError(f"config {path}: {k}: unknown key (known: {', '.join(sorted([*_KEYS, 'pkcs11']))})")
        if not isinstance(v, _KEYS[k]):
            raise ConfigurationError(f"config {path}: {k}: must be a string")

    def rel(v):
        return None if v is None else (Path(v) if Path(v).is_absolute() else h / v)

    return Config(home=h, db=data.get("db"), profiles_dir=rel(data.get("profiles_dir")),
                  keys_dir=rel(data.get("keys_dir")), pkcs11_sm2=sm2_maps)


def profiles_dir() -> Path:
    cfg = load_config()
    return cfg.profiles_dir or cfg.home / "profiles"


def keys_dir() -> Path:
    cfg = load_config()
    return cfg.keys_dir or cfg.home / "keys"


def db_url(explicit: str | None = None) -> str | None:
    """``--db``, else ``$UNICA_DB``, else config ``db``; None means the store's SQLite default."""
    return explicit or os.environ.get("UNICA_DB") or load_config().db


def write_default_config(h: Path) -> Path:
    """Create ``config.toml`` (if missing) and the profiles/keys directories.

    A home that cannot be created or written (read-only file system, permissions, a file
    where a directory belongs) is an :class:`~unica.errors.EnvironmentFailure`."""
    try:
        return _write_default_config(h)
    except OSError as e:
        raise EnvironmentFailure.from_os(f"cannot create unica home {h}", e) from None


def _write_default_config(h: Path) -> Path:
    h.mkdir(parents=True, exist_ok=True)
    (h / "profiles").mkdir(exist_ok=True)
    keys = h / "keys"
    keys.mkdir(exist_ok=True)
    os.chmod(keys, 0o700)
    path = h / CONFIG_FILE
    if not path.exists():
        path.write_text(
            "# unica home configuration\n"
            "# db = \"postgresql+psycopg://unica@db.example/unica\"   # default: SQLite unica.db here\n"
            "# profiles_dir = \"profiles\"                            # operator profiles (NAME.toml)\n"
            "# keys_dir = \"keys\"                                    # software CA keys\n",
            encoding="utf-8")
    return path
