"""Where PINs and passphrases come from: an explicit value, a file, or an environment variable.

Never a default, never a log line. Prompting is the CLI's job: the library raises
:class:`PinRequired` when it has no secret, and the CLI asks the operator and calls again.
"""

from __future__ import annotations

import os
from pathlib import Path

from unica.errors import ConfigurationError, PinRequired

USER_PIN = "UNICA_PIN"
SO_PIN = "UNICA_SO_PIN"
PASSPHRASE = "UNICA_PASSPHRASE"

_MAX_SECRET_FILE = 4096


def read_secret_file(path: str | os.PathLike) -> str:
    """The first line of a secret file, without its line ending."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(_MAX_SECRET_FILE + 1)
    except OSError as e:
        raise ConfigurationError(f"cannot read secret file {p}: {e.strerror or e}") from None
    if len(data) > _MAX_SECRET_FILE:
        raise ConfigurationError(f"secret file {p} is too large to hold a PIN or passphrase")
    text = data.decode("utf-8", "strict").splitlines()
    if not text or not text[0]:
        raise ConfigurationError(f"secret file {p} is empty")
    return text[0]


def resolve_secret(env_var: str, *, value: str | None = None, file: str | os.PathLike | None = None,
                   what: str = "PIN") -> str:
    """The secret from ``value``, else ``file``, else ``$env_var``; else :class:`PinRequired`."""
    if value is not None:
        return value
    if file is not None:
        return read_secret_file(file)
    env = os.environ.get(env_var)
    if env:
        return env
    raise PinRequired(f"a {what} is needed: set {env_var}, give a file, or run interactively")
