"""Small helpers shared by the CLI modules: secrets, output, options."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from unica.errors import PinRequired


def _secrets():
    """unica.hsm.secrets, imported when a secret is needed (importing unica.hsm loads cryptography:
    not at the start of every command)."""
    from unica.hsm import secrets

    return secrets


def pin_file_option(f):
    return click.option("--pin-file", type=click.Path(dir_okay=False), default=None,
                        help="Read the token user PIN from this file (else UNICA_PIN, else a prompt).")(f)


def passphrase_file_option(f):
    return click.option("--passphrase-file", type=click.Path(dir_okay=False), default=None,
                        help="Read the key-file passphrase from this file (else UNICA_PASSPHRASE, else a prompt).")(f)


#: ``--limit N``: a row count the database can take (SQLite INTEGER, PostgreSQL bigint)
LIMIT = click.IntRange(1, 2**31 - 1)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")(f)


def _can_prompt() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def secret(env_var: str, file: str | None, what: str, *, confirm: bool = False) -> str:
    """A secret from ``file``, else ``$env_var``, else a hidden prompt (only on a terminal)."""
    try:
        return _secrets().resolve_secret(env_var, file=file, what=what)
    except PinRequired:
        if not _can_prompt():
            raise
    return click.prompt(f"{what[0].upper()}{what[1:]}", hide_input=True, confirmation_prompt=confirm,
                        err=True)


def user_pin(pin_file: str | None) -> str:
    return secret(_secrets().USER_PIN, pin_file, "token user PIN")


def so_pin(so_pin_file: str | None) -> str:
    return secret(_secrets().SO_PIN, so_pin_file, "token SO PIN")


def passphrase(passphrase_file: str | None, *, confirm: bool = False) -> str:
    return secret(_secrets().PASSPHRASE, passphrase_file, "key passphrase", confirm=confirm)


def key_secrets(uri: str, pin_file: str | None, passphrase_file: str | None, *, new: bool = False) -> dict:
    """``pin=`` or ``passphrase=`` for a key URI, asking only for the one that URI needs."""
    from unica.hsm.uri import FileURI, parse_key_uri

    u = parse_key_uri(uri)
    if isinstance(u, FileURI):
        return {"passphrase": passphrase(passphrase_file, confirm=new)}
    from unica.hsm.tokens import require_token

    require_token(u.token, u.module_path, u.serial)  # a missing token is said before a PIN is asked
    if u.pin_source and pin_file is None:
        return {"pin": _secrets().read_secret_file(u.pin_source)}
    return {"pin": user_pin(pin_file)}


def emit_json(data: Any) -> None:
    """JSON on stdout, always UTF-8 (names in Chinese stay readable, not \\u-escaped), whatever
    the locale's encoding."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str).encode("utf-8"))


def table(rows: list[list[str]], header: list[str]) -> None:
    """Print a plain aligned table."""
    cols = [header] + rows
    widths = [max(len(str(r[i])) for r in cols) for i in range(len(header))]
    for r in cols:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
