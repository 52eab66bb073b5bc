"""``--as KEY_URI``: the operator acting, on every state-changing command.

Operators act with their own card: ``--as KEY_URI`` (or ``UNICA_OPERATOR``) names the key on
the card, which signs the request (:class:`unica.auth.OperatorSigner`); the card's PIN comes
from the URI's ``pin-source``, else ``UNICA_PIN``, else a prompt naming the card.
"""

from __future__ import annotations

import os

import click

_META = "unica.operator"


def _remember(ctx: click.Context, _param, value):
    if value:
        ctx.meta[_META] = value
    return value


def as_option(f):
    """``--as KEY_URI``: act as the operator whose card holds this key (else ``UNICA_OPERATOR``)."""
    return click.option("--as", "operator_uri", metavar="KEY_URI", default=None, expose_value=False,
                        is_eager=True, callback=_remember,
                        help="Act as the operator whose card holds this key (pkcs11:...): the card signs the "
                             "request. Else UNICA_OPERATOR.")(f)


def operator_uri() -> str | None:
    ctx = click.get_current_context(silent=True)
    uri = ctx.meta.get(_META) if ctx is not None else None
    return uri or os.environ.get("UNICA_OPERATOR") or None


def operator_auth():
    """The operator's card as the library's ``auth`` (None: no --as and no UNICA_OPERATOR)."""
    uri = operator_uri()
    if not uri:
        return None
    from unica.auth import OperatorSigner
    from unica.hsm.uri import Pkcs11URI, parse_key_uri

    u = parse_key_uri(uri)

    def pin():
        if not isinstance(u, Pkcs11URI) or u.pin_source:
            return None  # the URI's pin-source (or a file key's passphrase) is read by the key loader
        from unica.cli.common import user_pin

        return user_pin(None, u.token)

    return OperatorSigner(uri, pin=pin)
