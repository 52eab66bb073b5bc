"""``unica token``: the tokens (smart cards, USB keys, HSM partitions) a PKCS#11 module shows."""

from __future__ import annotations

import click

from unica.cli.common import emit_json, json_option, table


@click.group("token")
def token_group() -> None:
    """PKCS#11 tokens: list them (and manage their life cycle)."""


@token_group.command("list")
@click.option("--module", "module_path", default=None, help="PKCS#11 module (else UNICA_PKCS11_MODULE, else SoftHSM2).")
@json_option
def token_list(module_path, as_json: bool) -> None:
    """List slots with a token: label, serial, model, flags."""
    from unica.hsm.tokens import list_tokens

    tokens = list_tokens(module_path)
    if as_json:
        emit_json([t.to_dict() for t in tokens])
        return
    table([[str(t.slot_id), t.label, t.serial, t.manufacturer, t.model, ",".join(t.flags)] for t in tokens],
          ["SLOT", "LABEL", "SERIAL", "MANUFACTURER", "MODEL", "FLAGS"])


COMMANDS = [token_group]
