"""``unica sso``: the OpenID Connect provider's agency systems (clients) and ID-token keys."""

from __future__ import annotations

import click

from unica.cli.acting import as_option, operator_auth
from unica.cli.ca import _store, db_option
from unica.cli.common import emit_json, json_option, key_secrets, passphrase_file_option, pin_file_option, \
    show_fields, table


def _utc(t) -> str:
    import datetime as dt

    return "-" if t is None else t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@click.group("sso")
def sso_group() -> None:
    """Single sign-on: agency systems (OpenID Connect clients) and the ID-token signing keys."""


@sso_group.group("client")
def client_group() -> None:
    """Agency systems registered as OpenID Connect clients."""


@client_group.command("add")
@click.argument("name")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True, metavar="URI",
              help="A redirect URI, compared exactly (https; http only to 127.0.0.1/localhost; repeatable).")
@click.option("--public", is_flag=True,
              help="A public client (no secret; PKCE only), e.g. an application on the user's desktop.")
@as_option
@db_option
@json_option
def client_add(name, redirect_uris, public, db, as_json) -> None:
    """Register an agency system; print its client_id and, unless --public, its client secret
    (shown this once: only a salted hash is kept).

    \b
    Examples:
      unica sso client add customs --redirect-uri https://customs.example.cn/oidc/callback
      unica sso client add desk-app --public --redirect-uri http://127.0.0.1:8400/callback
    """
    from unica.sso.clients import add_client

    made = add_client(_store(db), name, list(redirect_uris), public=public, auth=operator_auth())
    c = made.client
    if as_json:
        emit_json({**c.to_dict(), "client_secret": made.secret})
        return
    show_fields({"name": c.name, "client_id": c.client_id, "type": "public" if c.public else "confidential",
                 "redirect_uris": list(c.redirect_uris)})
    if made.secret is not None:
        click.echo(f"client secret: {made.secret}")
        click.echo("(shown once: give it to the agency system now; unica keeps only a hash)", err=True)


@client_group.command("list")
@db_option
@json_option
def client_list(db, as_json) -> None:
    """List the agency systems.

    \b
    Examples:
      unica sso client list
      unica sso client list --json
    """
    from unica.sso.clients import list_clients

    clients = list_clients(_store(db))
    if as_json:
        emit_json([c.to_dict() for c in clients])
        return
    table([[c.name, c.status, c.client_id, "public" if c.public else "confidential", " ".join(c.redirect_uris)]
           for c in clients], ["NAME", "STATUS", "CLIENT_ID", "TYPE", "REDIRECT_URIS"])


@client_group.command("disable")
@click.argument("name")
@click.option("--note", default=None, metavar="TEXT", help="Why it is disabled (recorded in the audit log).")
@as_option
@db_option
@json_option
def client_disable(name, note, db, as_json) -> None:
    """Disable an agency system: no ID token is made for it any more.

    \b
    Examples:
      unica sso client disable customs --note "replaced by customs2"
    """
    from unica.sso.clients import disable_client

    c = disable_client(_store(db), name, reason=note, auth=operator_auth())
    if as_json:
        emit_json(c.to_dict())
        return
    click.echo(f"agency system {c.name}: disabled at {_utc(c.disabled_at)}")


@sso_group.group("key")
def key_group() -> None:
    """The ID-token signing keys: the newest active one signs, retired ones stay in the JWKS."""


@key_group.command("add")
@click.option("--key", "key_uri", required=True, metavar="URI",
              help="The key (pkcs11:... on a token, or file:... made with 'unica key generate').")
@click.option("--alg", type=click.Choice(["ES256", "ES384", "RS256", "PS256"]), default=None,
              help="For an RSA key: RS256 (default) or PS256; an EC key's follows its curve.")
@as_option
@db_option
@pin_file_option
@passphrase_file_option
@json_option
def key_add(key_uri, alg, db, pin_file, passphrase_file, as_json) -> None:
    """Make a key the ID-token signing key (the newest active key signs).

    \b
    Examples:
      unica sso key add --key 'pkcs11:token=unica-sso;object=idtoken-2026'
      unica sso key add --key file:sso-rsa.pem --alg PS256
    """
    import functools

    from unica.sso.keys import add_key

    secrets = functools.cache(lambda: key_secrets(key_uri, pin_file, passphrase_file))
    k = add_key(_store(db), key_uri, alg=alg, pin=lambda: secrets().get("pin"),
                passphrase=lambda: secrets().get("passphrase"), auth=operator_auth())
    if as_json:
        emit_json(k.to_dict())
        return
    click.echo(f"ID-token key {k.kid}: {k.alg}, {k.key_uri}, signing from now on")


@key_group.command("list")
@db_option
@json_option
def key_list(db, as_json) -> None:
    """List the ID-token signing keys, newest first.

    \b
    Examples:
      unica sso key list
      unica sso key list --json
    """
    from unica.sso.keys import list_keys

    keys = list_keys(_store(db))
    if as_json:
        emit_json([k.to_dict() for k in keys])
        return
    signing = next((k.kid for k in keys if k.status == "active"), None)
    table([[k.kid, k.alg, k.status + (" (signs)" if k.kid == signing else ""), _utc(k.created_at),
            _utc(k.retired_at), k.key_uri] for k in keys], ["KID", "ALG", "STATUS", "ADDED", "RETIRED", "KEY"])


@key_group.command("retire")
@click.argument("kid")
@as_option
@db_option
@json_option
def key_retire(kid, db, as_json) -> None:
    """Stop a key from signing; the JWKS keeps publishing it for the tokens it signed.

    \b
    Examples:
      unica sso key retire 7Uq0m3p9kXyWbq2cF4aR1d8sJtVnLhE5gZoYiC6uPwM
    """
    from unica.sso.keys import retire_key

    k = retire_key(_store(db), kid, auth=operator_auth())
    if as_json:
        emit_json(k.to_dict())
        return
    click.echo(f"ID-token key {k.kid}: retired at {_utc(k.retired_at)} (still in the JWKS)")


COMMANDS = [sso_group]
