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
    """Print a plain aligned table: the header, then one line per row, columns two spaces apart.

    Widths are counted in terminal cells by ``rich`` (:func:`rich.cells.cell_len`: East Asian
    wide characters take two), so Chinese text lines up. The same plain text on a terminal and
    in a pipe: no colour, no box, no wrapping or cutting (a long row stays one line, for grep
    and cut), no trailing spaces. A cell ``None`` prints as ``-``; a control character (a
    hostile subject's newline or carriage return) as a ``\\xNN`` escape, so that one row stays
    one line.

    Not ``rich.table.Table``: it renders about 1 ms a row (20 s for a 20,000-certificate
    ``cert list``); measuring with rich and padding is linear and instant. rich is imported
    here, not at start-up (``unica ca list`` start-up time is benchmarked).
    """
    import re

    from rich.cells import cell_len

    control = re.compile(r"[\x00-\x1f\x7f-\x9f]")

    def cell(v) -> str:
        return "-" if v is None else control.sub(lambda m: f"\\x{ord(m.group()):02x}", str(v))

    text = [[cell(h) for h in header]] + [[cell(v) for v in r] for r in rows]
    cells = [[cell_len(v) for v in r] for r in text]
    widths = [max(r[i] for r in cells) for i in range(len(header))]
    for r, c in zip(text, cells):
        click.echo("  ".join(v + " " * (w - n) for v, n, w in zip(r, c, widths)).rstrip())
