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


#: the type of every ``--*pin-file`` / ``--*passphrase-file`` option: a file, or ``-`` for a line of
#: standard input (several secrets read from standard input come one per line, in the order asked)
SECRET_FILE = click.Path(dir_okay=False, allow_dash=True)


def secret_file_option(name: str, what: str, env_var: str, dest: str | None = None):
    """``--NAME FILE``: read ``what`` from FILE's first line ('-': standard input), else ``$env_var``,
    else a prompt. Every secret-file option is made here, so all read the same way."""
    def deco(f):
        return click.option(name, *([dest] if dest else []), type=SECRET_FILE, metavar="FILE", default=None,
                            help=f"Read the {what} from this file's first line ('-': standard input; else "
                                 f"{env_var}, else a prompt on a terminal).")(f)
    return deco


def pin_file_option(f):
    return secret_file_option("--pin-file", "token user PIN", "UNICA_PIN")(f)


def passphrase_file_option(f):
    return secret_file_option("--passphrase-file", "key-file passphrase", "UNICA_PASSPHRASE")(f)


def module_option(f):
    return click.option("--module", "module_path", default=None, metavar="PATH",
                        help="PKCS#11 module (else UNICA_PKCS11_MODULE, else SoftHSM2).")(f)


#: ``--limit N``: a row count the database can take (SQLite INTEGER, PostgreSQL bigint)
LIMIT = click.IntRange(1, 2**31 - 1)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")(f)


def _can_prompt() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


#: the longest line a secret read from standard input may have
_MAX_STDIN_SECRET = 4096


def _stdin_secret(what: str) -> str:
    """One line of standard input (``--pin-file -``): the next secret, without its line ending."""
    from unica.errors import ConfigurationError

    line = sys.stdin.buffer.readline(_MAX_STDIN_SECRET + 1) if sys.stdin is not None else b""
    if len(line) > _MAX_STDIN_SECRET:
        raise ConfigurationError(f"the {what} line on standard input is too long for a PIN or passphrase")
    try:
        text = line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigurationError(f"the {what} on standard input is not UTF-8") from None
    if not text:
        raise ConfigurationError(f"no {what} on standard input (one line expected)")
    return text


def secret(env_var: str, file: str | None, what: str, *, confirm: bool = False, prompt: str | None = None) -> str:
    """A secret from ``file`` (``-``: a line of standard input), else ``$env_var``, else a hidden
    prompt (only on a terminal) that says what it wants: ``prompt``, e.g. "PIN for token 'CA-HSM'"."""
    if file == "-":
        return _stdin_secret(what)
    try:
        return _secrets().resolve_secret(env_var, file=file, what=what)
    except PinRequired:
        if not _can_prompt():
            raise
    text = prompt or f"{what[0].upper()}{what[1:]}"
    return click.prompt(text, hide_input=True, confirmation_prompt=confirm, err=True)


def user_pin(pin_file: str | None, token: str | None = None) -> str:
    """The user PIN of ``token`` (named in the prompt)."""
    return secret(_secrets().USER_PIN, pin_file, "token user PIN",
                  prompt=f"PIN for token {token!r}" if token else "Token user PIN")


def so_pin(so_pin_file: str | None, token: str | None = None) -> str:
    """The current SO PIN of ``token`` (named in the prompt)."""
    return secret(_secrets().SO_PIN, so_pin_file, "token SO PIN",
                  prompt=f"Current SO PIN of token {token!r}" if token else "Current token SO PIN")


def passphrase(passphrase_file: str | None, *, confirm: bool = False, path=None) -> str:
    """The passphrase of the key file ``path`` (named in the prompt; ``confirm``: a new file's)."""
    where = f" for key file {path}" if path is not None else ""
    return secret(_secrets().PASSPHRASE, passphrase_file, "key passphrase", confirm=confirm,
                  prompt=f"{'New passphrase' if confirm else 'Passphrase'}{where}")


def key_secrets(uri: str, pin_file: str | None, passphrase_file: str | None, *, new: bool = False) -> dict:
    """``pin=`` or ``passphrase=`` for a key URI, asking only for the one that URI needs."""
    from unica.hsm.uri import FileURI, parse_key_uri

    u = parse_key_uri(uri)
    if isinstance(u, FileURI):
        return {"passphrase": passphrase(passphrase_file, confirm=new, path=u.path)}
    from unica.hsm.tokens import require_token

    require_token(u.token, u.module_path, u.serial)  # a missing token is said before a PIN is asked
    if u.pin_source and pin_file is None:
        return {"pin": _secrets().read_secret_file(u.pin_source)}
    return {"pin": user_pin(pin_file, u.token)}


def _json_value(v: Any) -> Any:
    """What ``json`` cannot write itself: times in ISO 8601, bytes in hex, enums by value."""
    import datetime as dt
    import enum

    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, (set, frozenset)):
        return sorted(v, key=str)
    return str(v)


def _without_nulls(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _without_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_without_nulls(x) for x in v if x is not None]
    return v


def emit_json(data: Any) -> None:
    """JSON on stdout, always UTF-8 (names in Chinese stay readable, not \\u-escaped), whatever
    the locale's encoding.

    Never ``null``: a field without a value (a root's parent, a certificate's revocation time
    while it is valid, a URL not set) is left out, so a reader tests for the key (``.get()``,
    jq's ``//``). Times are ISO 8601, bytes hexadecimal. ``None`` as the whole document is
    written as ``{}`` (commands give their "nothing happened" results a meaningful shape).
    """
    data = {} if data is None else _without_nulls(data)
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=_json_value).encode("utf-8"))


def show_fields(info: dict) -> None:
    """``key: value`` lines, values aligned: ``revoked_at`` reads ``revoked at:``, ``None`` is
    ``-``, a boolean ``yes`` / ``no``, a list comma-separated (``-`` when empty)."""
    if not info:
        return
    width = max(len(k) for k in info) + 1
    for k, v in info.items():
        if isinstance(v, bool):
            v = "yes" if v else "no"
        elif isinstance(v, (list, tuple)):
            v = ", ".join(map(str, v)) or "-"
        elif v is None or v == "":
            v = "-"
        click.echo(f"{(k.replace('_', ' ') + ':').ljust(width + 1)} {v}")


def table(rows: list[list[str]], header: list[str]) -> None:
    """Print a plain aligned table: the header, then one line per row, columns two spaces apart.

    Widths are counted in terminal cells by ``rich`` (:func:`rich.cells.cell_len`: East Asian
    wide characters take two), so Chinese text lines up. The same plain text on a terminal and
    in a pipe: no colour, no box, no wrapping or cutting (a long row stays one line, for grep
    and cut), no trailing spaces. An empty cell (``None``, ``""``) prints as ``-``; a control character (a
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
        return "-" if v is None or v == "" else control.sub(lambda m: f"\\x{ord(m.group()):02x}", str(v))

    text = [[cell(h) for h in header]] + [[cell(v) for v in r] for r in rows]
    cells = [[cell_len(v) for v in r] for r in text]
    widths = [max(r[i] for r in cells) for i in range(len(header))]
    for r, c in zip(text, cells):
        click.echo("  ".join(v + " " * (w - n) for v, n, w in zip(r, c, widths)).rstrip())


def access_logger(service: str):
    """A server's access log (``--access-log``): INFO lines on stderr, each stamped with the UTC
    time and ``service`` (logger ``unica.SERVICE.access``)."""
    import logging
    import time

    logger = logging.getLogger(f"unica.{service}.access")
    handler = logging.StreamHandler(sys.stderr)
    fmt = logging.Formatter(f"%(asctime)s {service} %(message)s", datefmt="%Y-%m-%dT%H:%M:%SZ")
    fmt.converter = time.gmtime
    handler.setFormatter(fmt)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger
