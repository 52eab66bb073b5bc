"""``unica audit``: read, verify and seal the tamper-evident audit log."""

from __future__ import annotations

import datetime as dt

import click

from unica.cli.acting import as_option, operator_auth
from unica.cli.ca import _store, db_option
from unica.cli.common import (LIMIT, emit_json, json_option, key_secrets, passphrase_file_option, pin_file_option,
                               table)
from unica.cli.completion import complete_ca

#: exit status of ``audit verify`` when the log was tampered with
EXIT_TAMPERED = 4


@click.group("audit")
def audit_group() -> None:
    """The audit log: every security-relevant event, hash-chained and sealed."""


def _since(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    from unica.cli.when import FORMS, parse_when
    from unica.errors import InputError
    from unica.policies.duration import parse_duration

    try:
        return dt.datetime.now(dt.timezone.utc) - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_when(text, "--since")
    except InputError:
        raise InputError(f"bad --since {text!r}: expected a duration such as 7d or 12h, or {FORMS}") from None


def _value(v) -> str:
    """A detail value as an operator reads it: yes/no, not True/False; lists and mappings compact."""
    import json

    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return str(v)


def _entry_dict(e) -> dict:
    """An entry for --json: keys without a value are left out (no nulls); so are the details of an
    entry shown without them (unica.ca.auditlog.EntryView)."""
    from unica.ca.auditlog import EntryView

    d = {"id": e.id, "at": e.at.isoformat(), "event": e.event, "actor": e.actor, "ca": e.ca_name,
         "target": e.target,
         "details": None if isinstance(e, EntryView) else {k: v for k, v in (e.details or {}).items()
                                                           if v is not None},
         "hash": e.hash, "prev_hash": e.prev_hash}
    return {k: v for k, v in d.items() if v is not None}


@audit_group.command("show")
@click.option("--since", default=None, metavar="WHEN",
              help="Only entries at or after WHEN: a duration back from now (7d, 12h), a date (2026-11-20) or "
                   "an ISO 8601 time; no zone means UTC.")
@click.option("--event", default=None, metavar="EVENT",
              help="Only this event (e.g. certificate.revoked; * matches any text: 'crl.*').")
@click.option("--ca", "ca_name", shell_complete=complete_ca, default=None, metavar="NAME", help="Only entries about this CA.")
@click.option("--actor", default=None, metavar="WHO",
              help="Only entries by this actor: user@host:pid as shown, or just the user or user@host "
                   "(* matches any text).")
@click.option("--tail", type=LIMIT, default=None, metavar="N", help="Only the N newest entries (after the filters).")
@click.option("--limit", type=LIMIT, default=None, metavar="N", help="At most N entries, in the order shown.")
@click.option("--oldest-first", is_flag=True, help="In chain order, oldest first (default: newest first).")
@as_option
@db_option
@json_option
def audit_show(since, event, ca_name, actor, tail, limit, oldest_first, db, as_json) -> None:
    """List audit entries, newest first; the filters are combined (all must match).

    Showing does not check the chain: 'unica audit verify' does. Once operators exist, the
    entries' details are shown to auditors and admins only (--as their card).

    \b
    Examples:
      unica audit show --tail 20
      unica audit show --ca root --event 'crl.*' --since 2026-11-01
      unica audit show --actor alice --since 12h --json --as 'pkcs11:token=card-zhao;object=operator'
    """
    from unica.ca.auditlog import entries as audit_entries

    store = _store(db)
    entries, full = audit_entries(store, auth=operator_auth(), since=_since(since), event=event, ca=ca_name,
                                  actor=actor, limit=limit, tail=tail, newest_first=not oldest_first)
    if not full:
        click.echo("unica: note: the entries' details are for auditors and admins: shown without them (give --as "
                   "KEY_URI of an auditor's or admin's card)", err=True)
    if as_json:
        emit_json([_entry_dict(e) for e in entries])
        return
    if not entries:
        click.echo("no audit entries match", err=True)
        return
    table([[str(e.id), f"{e.at:%Y-%m-%dT%H:%M:%SZ}", e.event, e.ca_name, e.target, e.actor,
            " ".join(f"{k}={_value(v)}" for k, v in (e.details or {}).items() if v is not None)]
           for e in entries],
          ["ID", "TIME", "EVENT", "CA", "TARGET", "ACTOR", "DETAILS"])


@audit_group.command("verify")
@click.option("--public-key", "public_key_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="PEM public key the seals must be made with (pins the audit key).")
@db_option
@json_option
def audit_verify(public_key_file, db, as_json) -> None:
    """Check the hash chain and the seals; name every changed, inserted, deleted or reordered entry.

    Exit status 0 when the log is intact, 4 when it was tampered with.

    \b
    Examples:
      unica audit verify
      unica audit verify --public-key audit.pub.pem --json
    """
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from unica.boundedio import MAX_PUBLIC_KEY, read_limited
    from unica.errors import InputError
    from unica.store.audit import verify_audit

    pub = None
    if public_key_file:
        data = read_limited(public_key_file, MAX_PUBLIC_KEY, "public key file")
        try:
            pub = load_pem_public_key(data)
        except ValueError:
            raise InputError(f"{public_key_file} is not a PEM public key") from None
    report = verify_audit(_store(db), public_key=pub)
    if as_json:
        emit_json(report.to_dict())
    else:
        for p in report.problems:
            click.echo(f"TAMPERED entry {p.entry_id if p.entry_id is not None else '-'}: {p.kind}: {p.message}")
        state = "intact" if report.ok else f"{len(report.problems)} problem(s)"
        sealed = f", sealed up to entry {report.last_sealed_id}" if report.last_sealed_id else ", not sealed yet"
        click.echo(f"audit log {state}: {report.entries} entries, {report.seals} seals{sealed}")
    if not report.ok:
        raise click.exceptions.Exit(EXIT_TAMPERED)


@audit_group.command("seal")
@click.option("--key", "key_uri", required=True, metavar="URI", help="The audit key (pkcs11:... or file:...).")
@as_option
@db_option
@pin_file_option
@passphrase_file_option
@json_option
def audit_seal(key_uri, db, pin_file, passphrase_file, as_json) -> None:
    """Sign the chain up to its newest entry with the audit key (run it periodically, e.g. from cron).

    \b
    Examples:
      unica audit seal --key 'pkcs11:token=unica-ca;object=audit'
      unica audit seal --key file:keys/audit.p8 --passphrase-file /run/secrets/audit \\
          --as 'pkcs11:token=card-zhao;object=operator'
    """
    from unica.ca.auditlog import seal as seal_audit
    from unica.hsm import load_key, sign_raw

    key = load_key(key_uri, **key_secrets(key_uri, pin_file, passphrase_file))
    seal = seal_audit(_store(db), lambda msg: sign_raw(key, msg), key.public_key(), key_uri, auth=operator_auth())
    if as_json:
        emit_json({"sealed": False, "reason": "nothing new to seal"} if seal is None else
                  {"sealed": True, "seal": seal.id, "upto": seal.upto_id, "hash": seal.upto_hash})
    elif seal is None:
        click.echo("nothing new to seal")
    else:
        click.echo(f"sealed the audit log up to entry {seal.upto_id} (seal {seal.id})")


COMMANDS = [audit_group]
