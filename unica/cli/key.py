"""``unica key``: generate, list and show keys on tokens and in encrypted files."""

from __future__ import annotations

import click

from unica.cli.common import (emit_json, json_option, key_secrets, module_option, passphrase_file_option,
                              pin_file_option, show_fields, table, user_pin)
from unica.hsm import KeyType, generate_key, key_info, list_keys, load_key

KEY_TYPES = [k.value for k in KeyType]


@click.group("key")
def key_group() -> None:
    """Keys on PKCS#11 tokens (pkcs11:...) and in encrypted files (file:PATH)."""


@key_group.command("generate")
@click.argument("uri")
@click.option("--key-type", "--type", "key_type", type=click.Choice(KEY_TYPES), required=True,
              help="Key type and size (--type is the older name).")
@pin_file_option
@passphrase_file_option
@json_option
def key_generate(uri: str, key_type: str, pin_file, passphrase_file, as_json: bool) -> None:
    """Generate a key at URI: on a token (sensitive, never extractable) or in a new encrypted file.

    \b
    Examples:
      unica key generate 'pkcs11:token=unica-ca;object=root-ca' --key-type ec-p384
      unica key generate file:keys/ops.p8 --key-type ec-p256
    """
    key = generate_key(uri, key_type, **key_secrets(uri, pin_file, passphrase_file, new=True))
    _show(key_info(key, uri), as_json)


@key_group.command("show")
@click.argument("uri")
@pin_file_option
@passphrase_file_option
@json_option
def key_show(uri: str, pin_file, passphrase_file, as_json: bool) -> None:
    """Show a key: type, SPKI SHA-256 and the public key PEM.

    \b
    Examples:
      unica key show 'pkcs11:token=unica-ca;object=root-ca'
      unica key show file:keys/ops.p8 --json
    """
    key = load_key(uri, **key_secrets(uri, pin_file, passphrase_file))
    _show(key_info(key, uri), as_json)


@key_group.command("list")
@click.option("--token", "token", required=True, metavar="LABEL", help="Token label.")
@module_option
@pin_file_option
@json_option
def key_list(token: str, module_path, pin_file, as_json: bool) -> None:
    """List the key pairs on a token.

    \b
    Examples:
      unica key list --token unica-ca
    """
    from unica.hsm.tokens import require_token

    require_token(token, module_path)  # a missing token is said before a PIN is asked
    keys = list_keys(token, module_path=module_path, pin=user_pin(pin_file, token))
    if as_json:
        emit_json([k.to_dict() for k in keys])
        return
    table([[k.label or "", k.id.hex() if k.id else "", k.key_type, k.spki_sha256[:16], k.uri] for k in keys],
          ["LABEL", "ID", "TYPE", "SPKI-SHA256", "URI"])


def _show(info, as_json: bool) -> None:
    if as_json:
        emit_json(info.to_dict())
        return
    show_fields({"uri": info.uri, "type": info.key_type, "spki_sha256": info.spki_sha256})
    click.echo(info.public_pem().rstrip())


COMMANDS = [key_group]
