"""``unica revoke``, ``unica release`` and ``unica crl generate``."""

from __future__ import annotations

import datetime as dt

import click

from unica.cli.ca import _store, db_option
from unica.cli.common import emit_json, json_option, key_secrets, passphrase_file_option, pin_file_option

REASONS = ["unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
           "cessationOfOperation", "certificateHold", "privilegeWithdrawn", "aACompromise"]


def _when(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    from unica.errors import InputError

    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"bad time {text!r} (ISO 8601 expected, e.g. 2026-11-20T08:00:00Z)") from None
    if t.tzinfo is None:
        raise InputError(f"time {text!r} has no time zone (add Z or +08:00)")
    return t


def _print_state(st, as_json: bool) -> None:
    if as_json:
        emit_json(st.to_dict())
        return
    line = f"{st.ca} {st.serial_hex}: {st.status}"
    if st.reason:
        line += f" ({st.reason}, {st.revoked_at:%Y-%m-%dT%H:%M:%SZ})"
    click.echo(line)
    if st.sub_ca:
        click.echo(f"subordinate CA {st.sub_ca!r} is now marked revoked; what it issued is listed by "
                   f"'unica cert list --issued-by {st.sub_ca}'")


@click.command("revoke")
@click.argument("serial")
@click.option("--ca", "ca_name", default=None, help="Issuing CA (needed when the serial is not unique).")
@click.option("--reason", default="unspecified", show_default=True,
              help="RFC 5280 reason: " + ", ".join(REASONS) + " (certificateHold suspends).")
@click.option("--invalidity-date", default=None, help="When the key was (suspected) compromised, ISO 8601.")
@db_option
@json_option
def revoke_cmd(serial, ca_name, reason, invalidity_date, db, as_json) -> None:
    """Revoke a certificate (or put it on hold with --reason certificateHold)."""
    from unica.ca.revocation import revoke
    st = revoke(_store(db), serial, ca=ca_name, reason=reason, invalidity_date=_when(invalidity_date))
    _print_state(st, as_json)


@click.command("release")
@click.argument("serial")
@click.option("--ca", "ca_name", default=None, help="Issuing CA (needed when the serial is not unique).")
@db_option
@json_option
def release_cmd(serial, ca_name, db, as_json) -> None:
    """Lift a certificate hold."""
    from unica.ca.revocation import release
    _print_state(release(_store(db), serial, ca=ca_name), as_json)


@click.group("crl")
def crl_group() -> None:
    """Certificate revocation lists."""


@crl_group.command("generate")
@click.option("--ca", "ca_name", required=True, help="The CA whose CRL to sign.")
@click.option("--delta", is_flag=True, help="A delta CRL against the latest base CRL.")
@click.option("--shard", type=int, default=None, help="Only this shard of a partitioned CA.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Output file (DER).")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Output directory (default UNICA_HOME/crl); files are CA[-SHARD][-delta].crl.")
@click.option("--validity", default=None, help="How long until nextUpdate, e.g. 7d, 12h (default: 7d base, 1d delta).")
@db_option
@pin_file_option
@passphrase_file_option
@json_option
def crl_generate(ca_name, delta, shard, out, out_dir, validity, db, pin_file, passphrase_file, as_json) -> None:
    """Generate and sign the CA's CRL (all shards unless --shard)."""
    from unica.ca.records import get_ca_row
    from unica.ca.revocation import generate_crl
    from unica.hsm import load_key
    store = _store(db)
    with store.read() as s:
        key_uri = get_ca_row(s, ca_name).key_uri
    key = load_key(key_uri, **key_secrets(key_uri, pin_file, passphrase_file))
    def progress(g):
        if not as_json:
            click.echo(f"CRL {g.number}{' (delta of ' + str(g.base_number) + ')' if g.is_delta else ''}"
                       f"{'' if g.shard is None else ' shard ' + str(g.shard)}: {g.entries} entries, "
                       f"{g.size} bytes, next update {g.next_update:%Y-%m-%dT%H:%M:%SZ} -> {g.path}", err=False)

    results = generate_crl(store, ca_name, key=key, delta=delta, shard=shard, out=out, out_dir=out_dir,
                           validity=_duration(validity), progress=progress)
    if as_json:
        emit_json([r.to_dict() for r in results])


def _duration(text: str | None) -> dt.timedelta | None:
    if text is None:
        return None
    from unica.errors import InputError
    from unica.policies.duration import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise InputError(str(e)) from None


@click.command("recover")
@click.option("--older-than", default="10m", show_default=True,
              help="Treat issuance intents older than this as abandoned (an issuance takes milliseconds).")
@db_option
@json_option
def recover_cmd(older_than, db, as_json) -> None:
    """Roll back what killed processes left: pending issuance intents, temporary CRL files."""
    from unica.ca.recovery import recover

    age = _duration(older_than) if older_than not in ("0", "0s") else dt.timedelta(0)
    report = recover(_store(db), older_than=age)
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(f"{len(report.abandoned)} abandoned issuance intent(s) rolled back"
               + (": " + ", ".join(report.abandoned) if report.abandoned else ""))
    for f in report.removed_files:
        click.echo(f"removed {f}")
    for lease in report.released_leases:
        click.echo(f"released the OCSP pre-signing lease of a stopped process: {lease}")


COMMANDS = [revoke_cmd, release_cmd, crl_group, recover_cmd]
