"""``unica key``: generate, list and show keys on tokens and in encrypted files; back up a CA key
to M-of-N custodians and restore it."""

from __future__ import annotations

from pathlib import Path

import click

from unica.cli.acting import as_option, operator_auth
from unica.cli.ca import _store, db_option
from unica.cli.common import (emit_json, json_option, key_secrets, module_option, passphrase_file_option,
                              pin_file_option, show_fields, table, user_pin)
from unica.cli.completion import complete_ca
from unica.cli.output import check_output_path, write_atomic
from unica.hsm import KeyType, generate_key, key_info, list_keys, load_key

KEY_TYPES = [k.value for k in KeyType]


@click.group("key")
def key_group() -> None:
    """Keys on PKCS#11 tokens (pkcs11:...) and in encrypted files (file:PATH); CA key backup and restore."""


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


@key_group.command("backup")
@click.option("--ca", "ca_name", shell_complete=complete_ca, required=True, metavar="NAME",
              help="The CA whose token key is backed up (created with --backup-allowed).")
@click.option("--custodian", "custodians", multiple=True, required=True, metavar="CERT",
              type=click.Path(dir_okay=False),
              help="A custodian's card certificate (PEM or DER; EC P-256/P-384, keyAgreement); once per custodian.")
@click.option("--threshold", type=int, required=True, metavar="M",
              help="How many custodians must come together to restore (2 to the number of custodians).")
@click.option("--out", required=True, metavar="FILE",
              help="The backup file to write (it holds no secret in the clear).")
@as_option
@pin_file_option
@db_option
@json_option
def key_backup(ca_name, custodians, threshold, out, pin_file, db, as_json) -> None:
    """Back up CA NAME's token key to M-of-N custodians: wrapped on the token under a fresh AES-256
    key, whose Shamir shares are each encrypted to one custodian's card certificate (CMS, ECDH).

    \b
    Examples:
      unica key backup --ca port-root --custodian customs.pem --custodian port.pem \\
          --custodian inspection.pem --threshold 2 --out port-root.keybackup
    """
    from unica.boundedio import MAX_CERTIFICATE, read_limited
    from unica.ca.keybackup import backup_ca_key, check_backup_request, load_custodian_certificate

    certs = [load_custodian_certificate(read_limited(f, MAX_CERTIFICATE, "custodian certificate"), f)
             for f in custodians]
    check_backup_request(certs, threshold)  # before the token is asked anything
    check_output_path(out, "--out", allow_stdout=False)
    store = _store(db)
    from unica.ca.authority import ca_info

    key_uri = ca_info(store, ca_name)["key_uri"]
    pin = key_secrets(key_uri, pin_file, None).get("pin") if key_uri.startswith("pkcs11:") else None
    data = backup_ca_key(store, ca_name, certs, threshold, pin=pin, out=str(Path(out).resolve()),
                         write=lambda d: write_atomic(out, d, what="--out"), auth=operator_auth())
    from unica.ca.keybackup import load_backup

    summary = load_backup(data).summary()
    if as_json:
        emit_json({**summary, "out": out})
        return
    click.echo(f"CA {ca_name!r}: key backed up to {out} (backup {summary['backup_id']}); "
               f"{threshold} of {len(certs)} custodians restore it:")
    for c in summary["custodians"]:
        click.echo(f"  {c['subject']} (serial {c['serial']})")


@key_group.command("restore")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--token", required=True, metavar="LABEL", help="The token to restore the CA key onto.")
@click.option("--share-key", "share_keys", multiple=True, required=True, metavar="URI",
              help="A custodian's card key (pkcs11:...; its PIN: pin-source in the URI, else UNICA_PIN, "
                   "else a prompt naming the card); once per custodian present.")
@click.option("--label", default=None, metavar="LABEL", help="Label of the restored key (default ca-NAME).")
@as_option
@module_option
@pin_file_option
@db_option
@json_option
def key_restore(file, token, share_keys, label, module_path, pin_file, db, as_json) -> None:
    """Restore a CA key from a backup FILE onto --token: M custodians' cards each open their share
    (ECDH on the card); the key is unwrapped on the token and checked against the CA certificate.
    Then point the CA at it with 'unica ca set NAME --key URI'.

    \b
    Examples:
      unica key restore port-root.keybackup --token unica-ca-new \\
          --share-key 'pkcs11:token=customs-card;object=custodian' \\
          --share-key 'pkcs11:token=port-card;object=custodian'
    """
    from unica.boundedio import read_limited
    from unica.ca.keybackup import MAX_BACKUP_FILE, load_backup, restore_ca_key
    from unica.hsm import load_key
    from unica.hsm.tokens import require_token
    from unica.hsm.uri import Pkcs11URI

    data = read_limited(file, MAX_BACKUP_FILE, "key backup file")
    backup = load_backup(data)
    backup.require_shares(len(set(share_keys)))  # before any card is asked for a PIN
    store = _store(db)
    require_token(token, module_path)
    target = Pkcs11URI(token=token, module_path=module_path)
    target_pin = user_pin(pin_file, token)
    keys = [load_key(uri, **key_secrets(uri, None, None)) for uri in dict.fromkeys(share_keys)]
    result = restore_ca_key(data, target, keys, store=store, label=label, pin=target_pin, auth=operator_auth(),
                            source=str(Path(file).resolve()), share_key_uris=list(dict.fromkeys(share_keys)))
    if as_json:
        emit_json(result)
        return
    show_fields({"ca": result["ca"], "backup_id": result["backup_id"], "key_uri": result["key_uri"],
                 "type": result["key_type"], "spki_sha256": result["spki_sha256"],
                 "custodians": [f"{c['subject']} (serial {c['serial']})" for c in result["custodians_used"]]})
    click.echo(f"next: unica ca set {result['ca']} --key '{result['key_uri']}'")


def _show(info, as_json: bool) -> None:
    if as_json:
        emit_json(info.to_dict())
        return
    show_fields({"uri": info.uri, "type": info.key_type, "spki_sha256": info.spki_sha256})
    click.echo(info.public_pem().rstrip())


COMMANDS = [key_group]
