"""``unica revoke``, ``unica release`` and ``unica crl generate``."""

from __future__ import annotations

import datetime as dt

import click

from unica.cli.acting import as_option, operator_auth
from unica.cli.ca import _store, cert_group, db_option
from unica.cli.common import (LIMIT, emit_json, json_option, key_secrets, passphrase_file_option,
                               pin_file_option, table)
from unica.cli.show import entries_option
from unica.cli.completion import complete_ca, complete_choices

REASONS = ["unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
           "cessationOfOperation", "certificateHold", "privilegeWithdrawn", "aACompromise"]


def _when(text: str | None, option: str = "--invalidity-date") -> dt.datetime | None:
    """A time from the command line, read by the one parser (unica.cli.when): no zone means UTC."""
    if text is None:
        return None
    from unica.cli.when import parse_when

    return parse_when(text, option)


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
@click.argument("serial", required=False)
@click.option("--serials-file", default=None, metavar="FILE",
              help="Revoke every serial listed in FILE: one hexadecimal serial a line, '#' starts a comment, "
                   "'-' reads standard input. Refused ones are reported; the others are revoked.")
@click.option("--spki-sha256", "spki", default=None, metavar="HEX",
              help="Revoke every certificate of this public key (SHA-256 of its DER SubjectPublicKeyInfo, "
                   "64 hex digits, as 'unica cert show' prints it): a compromised key.")
@click.option("--ca", "ca_name", shell_complete=complete_ca, default=None, metavar="NAME",
              help="Issuing CA (needed when the serial is not unique).")
@click.option("--reason", shell_complete=complete_choices(REASONS), default="unspecified", show_default=True,
              metavar="REASON",
              help="RFC 5280 reason: " + ", ".join(REASONS) + " (certificateHold suspends).")
@click.option("--invalidity-date", default=None, metavar="WHEN",
              help="When the key was (suspected) compromised: a date or an ISO 8601 time; no zone means UTC.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True, metavar="N",
              help="With --serials-file / --spki-sha256: certificates per transaction (each audited).")
@as_option
@db_option
@json_option
def revoke_cmd(serial, serials_file, spki, ca_name, reason, invalidity_date, batch_size, db, as_json) -> None:
    """Revoke a certificate (or put it on hold with --reason certificateHold); with --serials-file or
    --spki-sha256, many.

    Once operators exist, an ra-officer revokes the certificates of their own RA office (--as
    their card), an admin the CA-level ones; in a list, the others are refused one by one.

    \b
    Examples:
      unica cert revoke 5F3A9C01D27E --ca issuing --reason keyCompromise
      unica cert revoke --serials-file serials.txt --ca issuing --reason superseded \\
          --as 'pkcs11:token=card-li;object=operator'
      unica cert revoke \\
          --spki-sha256 9b1e0c6f4d2a7e83c5f0b8d91a6e2c47f3d85b09e1a7c64d28f5b3e0a9c71d46 \\
          --reason keyCompromise
    """
    from unica.errors import InputError

    given = [n for n, v in (("SERIAL", serial), ("--serials-file", serials_file), ("--spki-sha256", spki))
             if v is not None]
    if len(given) != 1:
        raise InputError("give one of SERIAL, --serials-file FILE or --spki-sha256 HEX"
                         + (f", not {' and '.join(given)}" if given else ""))
    if serial is not None:
        from unica.ca.revocation import revoke
        st = revoke(_store(db), serial, ca=ca_name, reason=reason, invalidity_date=_when(invalidity_date),
                    auth=operator_auth())
        _print_state(st, as_json)
        return
    from unica.ca import revocation as rv

    when = _when(invalidity_date)
    rv.reason_value(reason)  # a bad reason is refused before anything is read or opened
    from unica.cli.progress import Progress

    def shown(p):
        return lambda revoked, refused: p.update(revoked + refused, note=f"{refused} refused")

    if spki is not None:
        digest = rv.parse_spki_sha256(spki)
        store = _store(db)
        with Progress("unica revoke", rv.count_by_spki(store, digest, ca=ca_name)) as p:
            res = rv.revoke_by_spki(store, digest, ca=ca_name, reason=reason, invalidity_date=when,
                                    batch_size=batch_size, progress=shown(p), auth=operator_auth())
        total = len(res.revoked) + len(res.refused) + len(res.already_revoked)
    else:
        serials = _read_serials(serials_file)
        store = _store(db)
        with Progress("unica revoke", len(serials)) as p:
            res = rv.revoke_many(store, serials, ca=ca_name, reason=reason, invalidity_date=when,
                                 batch_size=batch_size, progress=shown(p), auth=operator_auth())
        total = len(serials)
    if as_json:
        emit_json(res.to_dict())
    else:
        verb = "put on hold" if res.reason == "certificateHold" else "revoked"
        click.echo(f"{verb} {len(res.revoked)} of {total} certificate(s) ({res.reason}) in {res.batches} "
                   f"transaction(s); refused {len(res.refused)}"
                   + (f"; {len(res.already_revoked)} revoked already" if res.already_revoked else ""))
        for r in res.refused:
            click.echo(f"refused {r.serial}{' (CA ' + r.ca + ')' if r.ca else ''}: {r.code}: {r.message}")
    if res.refused:
        from unica.errors import NotAuthorized, RevocationError

        others = sum(r.code == "other-office" for r in res.refused)
        # refused by the operator's role or office: exit 3 (policy), like any other refusal of an operator
        raise (NotAuthorized if others else RevocationError)(
            f"{len(res.refused)} of {total} refused (listed above"
            + (f"; {others} of another RA office or CA-level" if others else "") + "); the other "
            f"{len(res.revoked)} are {'on hold' if res.reason == 'certificateHold' else 'revoked'}")


#: a serials file: ~10 million serials of 128 bits
MAX_SERIALS_FILE = 512 * 1024 * 1024


def _read_serials(path: str) -> list[str]:
    """The serials of a --serials-file (bounded read; '-' is stdin). A malformed line is an input
    error naming the line, before anything is revoked."""
    from unica.boundedio import label, read_limited
    from unica.ca.revocation import parse_serial
    from unica.errors import InputError, MalformedInput

    data = read_limited(path, MAX_SERIALS_FILE, "serials file", stdin=True)
    name = f"serials file {label(path, stdin=True)}"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MalformedInput(f"{name}: not UTF-8 text (byte {e.start})") from None
    serials = []
    for n, line in enumerate(text.splitlines(), 1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        try:
            parse_serial(item)
        except InputError:
            raise MalformedInput(f"{name} line {n}: bad serial number {item[:80]!r} (one hexadecimal serial "
                                 "a line expected)") from None
        serials.append(item)
    if not serials:
        raise InputError(f"{name}: no serial numbers in it")
    return serials


@click.command("release")
@click.argument("serial")
@click.option("--ca", "ca_name", shell_complete=complete_ca, default=None, metavar="NAME",
              help="Issuing CA (needed when the serial is not unique).")
@as_option
@db_option
@json_option
def release_cmd(serial, ca_name, db, as_json) -> None:
    """Lift a certificate hold.

    \b
    Examples:
      unica cert release 5F3A9C01D27E --ca issuing
      unica cert release 5F3A9C01D27E --ca issuing --as 'pkcs11:token=card-li;object=operator'
    """
    from unica.ca.revocation import release
    _print_state(release(_store(db), serial, ca=ca_name, auth=operator_auth()), as_json)


@click.command("hold")
@click.argument("serial")
@click.option("--ca", "ca_name", shell_complete=complete_ca, default=None, metavar="NAME",
              help="Issuing CA (needed when the serial is not unique).")
@click.option("--invalidity-date", default=None, metavar="WHEN",
              help="When the key was (suspected) compromised: a date or an ISO 8601 time; no zone means UTC.")
@as_option
@db_option
@json_option
def hold_cmd(serial, ca_name, invalidity_date, db, as_json) -> None:
    """Put a certificate on hold (revocation reason certificateHold, lifted by 'unica cert release').

    \b
    Examples:
      unica cert hold 5F3A9C01D27E --ca issuing
      unica cert hold 5F3A9C01D27E --ca issuing --json --as 'pkcs11:token=card-li;object=operator'
    """
    from unica.ca.revocation import revoke

    _print_state(revoke(_store(db), serial, ca=ca_name, reason="certificateHold",
                        invalidity_date=_when(invalidity_date), auth=operator_auth()), as_json)


@click.group("crl")
def crl_group() -> None:
    """Certificate revocation lists."""


@crl_group.command("generate")
@click.option("--ca", "ca_name", shell_complete=complete_ca, required=True, metavar="NAME",
              help="The CA whose CRL to sign.")
@click.option("--delta", is_flag=True, help="A delta CRL against the latest base CRL.")
@click.option("--shard", type=click.IntRange(0, 2**31 - 1), default=None, metavar="N",
              help="Only this shard of a partitioned CA.")
@click.option("--out", metavar="FILE", default=None, help="Output file (DER).")
@click.option("--out-dir", metavar="DIR", default=None,
              help="Output directory (default UNICA_HOME/crl); files are CA[-SHARD][-delta].crl.")
@click.option("--validity", default=None, metavar="DURATION",
              help="How long until nextUpdate, e.g. 7d, 12h (default: 7d base, 1d delta).")
@as_option
@db_option
@pin_file_option
@passphrase_file_option
@json_option
def crl_generate(ca_name, delta, shard, out, out_dir, validity, db, pin_file, passphrase_file, as_json) -> None:
    """Generate and sign the CA's CRL (all shards unless --shard).

    \b
    Examples:
      unica crl generate --ca issuing --out issuing.crl
      unica crl generate --ca issuing --delta --validity 12h --out-dir /srv/www/crl \\
          --as 'pkcs11:token=card-wang;object=operator'
    """
    from unica.ca.revocation import generate_crl
    from unica.cli.output import check_output_dir, check_output_path
    from unica.errors import OutputError
    from unica.hsm import load_key
    # before any CRL number is reserved; the CRL is renamed into place, so no special files, no stdout
    check_output_path(out, allow_stdout=False, special_ok=False)
    check_output_dir(out_dir)
    store = _store(db)

    def key_loader(key_uri):  # after the CA and shard are checked; a refused key is audited (crl.refused)
        return load_key(key_uri, **key_secrets(key_uri, pin_file, passphrase_file))

    def progress(g):
        if not as_json:
            click.echo(f"CRL {g.number}{' (delta of ' + str(g.base_number) + ')' if g.is_delta else ''}"
                       f"{'' if g.shard is None else ' shard ' + str(g.shard)}: {g.entries} entries, "
                       f"{g.size} bytes, next update {g.next_update:%Y-%m-%dT%H:%M:%SZ} -> {g.path}", err=False)

    try:
        results = generate_crl(store, ca_name, key_loader=key_loader, delta=delta, shard=shard, out=out,
                               out_dir=out_dir, validity=_duration(validity), progress=progress,
                               auth=operator_auth())
    except OSError as e:  # the file could not be written: the CRL is not recorded, its number is skipped
        raise OutputError(f"cannot write the CRL: {e.strerror or e}"
                          + (f" ({e.filename})" if getattr(e, "filename", None) else "")) from None
    if as_json:
        emit_json([r.to_dict() for r in results])


@crl_group.command("list")
@click.option("--ca", "ca_name", shell_complete=complete_ca, default=None, metavar="NAME", help="Only this CA's CRLs.")
@click.option("--latest", is_flag=True, help="Only the newest CRL of each kind (base, delta) and shard per CA.")
@click.option("--limit", type=LIMIT, default=None, metavar="N", help="At most N CRLs.")
@db_option
@json_option
def crl_list(ca_name, latest, limit, db, as_json) -> None:
    """List the CRLs issued, per CA, newest first: number, base or delta, this and next update,
    entries, where it was published (file and URL).

    \b
    Examples:
      unica crl list
      unica crl list --ca root --latest --json
    """
    from unica.ca.crls import list_crls

    records = list_crls(_store(db), ca=ca_name, latest=latest, limit=limit)
    if as_json:
        emit_json([r.to_dict() for r in records])
        return
    if not records:
        click.echo("no CRLs issued yet" + (f" by CA {ca_name}" if ca_name else "")
                   + " ('unica crl generate --ca NAME' makes one)", err=True)
        return
    table([[r.ca, str(r.number), _crl_kind(r), None if r.shard is None else str(r.shard),
            f"{r.this_update:%Y-%m-%dT%H:%M:%SZ}",
            f"{r.next_update:%Y-%m-%dT%H:%M:%SZ}" + (" (overdue)" if r.overdue() else ""),
            str(r.entries), r.path or "(not written: a newer CRL was published first)", r.url]
           for r in records],
          ["CA", "NUMBER", "KIND", "SHARD", "THIS-UPDATE", "NEXT-UPDATE", "ENTRIES", "FILE", "URL"])


def _crl_kind(r) -> str:
    return f"delta of {r.base_number}" if r.is_delta else "base"


_FILE_STATES = {
    "current": "holds this CRL",
    "replaced": "now holds another CRL, normally a newer one",
    "missing": "missing",
    "unpublished": "not written: a newer CRL had been published to its file first",
}


@crl_group.command("show")
@click.option("--ca", "ca_name", shell_complete=complete_ca, required=True, metavar="NAME", help="The CA that issued the CRL.")
@click.option("--number", type=click.IntRange(1, 2**63 - 1), default=None, metavar="N",
              help="CRL number N (default: the newest base CRL, or delta CRL with --delta).")
@click.option("--delta", is_flag=True, help="The newest delta CRL.")
@click.option("--shard", type=click.IntRange(0, 2**31 - 1), default=None, metavar="N",
              help="Of this shard (a partitioned CA).")
@entries_option
@db_option
@json_option
def crl_show(ca_name, number, delta, shard, entries, db, as_json) -> None:
    """Show a CRL the CA issued: its record (number, kind, this and next update, entries, where it
    was published) and, while its file still holds it, what the CRL says (issuer, extensions,
    revoked entries).

    \b
    Examples:
      unica crl show --ca root
      unica crl show --ca root --number 7 --entries all
      unica crl show --ca root --delta --json
    """
    from unica.ca.crls import find_crl
    from unica.cli.show import describe_crl, parse_entries, print_fields
    from unica.errors import InputError

    if number is not None and delta:
        raise InputError("give --number N or --delta, not both")
    limit = parse_entries(entries)
    r = find_crl(_store(db), ca_name, number, delta=delta, shard=shard)
    content = None
    if r.der is not None:
        from cryptography import x509

        try:
            content = describe_crl(x509.load_der_x509_crl(r.der), limit)
        except ValueError:  # the recorded hash matched: cannot happen unless the CRL was written wrong
            content = None
    if as_json:
        d = r.to_dict()
        if content is not None:
            d["crl"] = content
        emit_json(d)
        return
    fields = {"ca": r.ca, "number": r.number, "kind": _crl_kind(r), "shard": r.shard,
              "this_update": r.this_update.replace(microsecond=0).isoformat(),
              "next_update": r.next_update.isoformat(), "overdue": r.overdue(), "superseded": r.superseded,
              "entries": r.entries, "sha256": r.sha256,
              "file": f"{r.path} ({_FILE_STATES[r.file_state]})" if r.path else _FILE_STATES["unpublished"],
              "url": r.url}
    if content is not None:  # what the CRL itself says, less what the record said already
        fields.update({k: v for k, v in content.items() if k not in fields and k not in (
            "kind", "crl_number", "crl_kind")})
    print_fields({k: v for k, v in fields.items() if v is not None})
    if content is None and r.file_state == "current":
        click.echo("(the CRL file holds this CRL but is larger than 256 MiB: its content is not shown)")
    elif content is None:
        click.echo("(the CRL itself is not shown: its file no longer holds it; the database keeps its record, "
                   "not its bytes)")


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
@as_option
@db_option
@json_option
def recover_cmd(older_than, db, as_json) -> None:
    """Roll back what killed processes left: pending issuance intents, temporary CRL files.

    \b
    Examples:
      unica recover
      unica recover --older-than 1h --json --as 'pkcs11:token=card-wang;object=operator'
    """
    from unica.ca.recovery import recover

    age = _duration(older_than) if older_than not in ("0", "0s") else dt.timedelta(0)
    report = recover(_store(db), older_than=age, auth=operator_auth())
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(f"{len(report.abandoned)} abandoned issuance intent(s) rolled back"
               + (": " + ", ".join(report.abandoned) if report.abandoned else ""))
    for f in report.removed_files:
        click.echo(f"removed {f}")
    for lease in report.released_leases:
        click.echo(f"released the OCSP pre-signing lease of a stopped process: {lease}")


COMMANDS = [crl_group, recover_cmd]

# revoke, hold and release are 'unica cert' commands ('unica revoke' and 'unica release' are aliases:
# unica.cli.main.ALIASES)
for _command in (revoke_cmd, hold_cmd, release_cmd):
    cert_group.add_command(_command)
