"""``unica backup`` and ``unica restore``: the database and the home's configuration, for the
disaster-recovery plan (thin commands over :mod:`unica.ca.backup`)."""

from __future__ import annotations

import sys

import click

from unica.cli.acting import as_option, operator_auth

from unica.cli.ca import db_option
from unica.cli.common import emit_json, json_option, show_fields


def _say():
    """Step lines on a terminal (the work is one step each: copying, checking, restoring)."""
    if sys.stderr is not None and sys.stderr.isatty():
        return lambda msg: click.echo(f"unica: {msg}", err=True)
    return None


def _warn(message: str) -> None:
    click.echo(f"unica: warning: {' '.join(message.split())}", err=True)


@click.command("backup")
@click.option("--out", "out", required=True, metavar="DIR",
              help="A new or empty directory for the backup (created if missing, mode 0700).")
@as_option
@db_option
@json_option
def backup_cmd(out, db, as_json) -> None:
    """Back up the database and the home's configuration into DIR.

    SQLite: a consistent copy made with SQLite's online backup API (unica.db, mode 0600),
    while other processes keep working. PostgreSQL: pg_dump --format=custom (unica.pgdump),
    the password passed in PGPASSWORD. Also config.toml and profiles/*.toml, and
    manifest.json: the SHA-256 of each file, the schema revision, each CA's CRL number and the
    audit chain head. CA keys are not in it: back them up with 'unica key backup'.

    \b
    Examples:
      unica backup --out /srv/backup/unica-2026-11-29
      unica backup --out /srv/backup/unica-2026-11-29 --as 'pkcs11:token=card-alice;object=operator'
      unica backup --out /srv/backup/nightly --db postgresql://unica@db.example.cn/unica
    """
    from unica.ca.backup import backup_home
    from unica.cli.ca import _store
    from unica.config import load_config

    cfg = load_config()
    store = _store(db)
    try:
        r = backup_home(store, out, home=cfg.home, profiles_dir=cfg.profiles_dir, progress=_say(),
                        auth=operator_auth())
    finally:
        store.dispose()
    if as_json:
        emit_json(r.to_dict())
        return
    show_fields({"directory": str(r.directory.resolve()), "database": r.kind, "schema revision": r.schema_revision,
                 "files": ", ".join(sorted(r.files)),
                 "crl numbers": ", ".join(f"{c['name']} {c['crl_number']}" for c in r.cas) or "-",
                 "audit head": f"{r.audit_head['id']} {r.audit_head['hash'][:16]}",
                 "manifest sha256": r.manifest_sha256})


@click.command("restore")
@click.option("--from", "source", required=True, metavar="DIR", help="The backup directory (with manifest.json).")
@click.option("--crl-number-gap", "gap", type=click.IntRange(0, 2**40), default=1000, show_default=True,
              metavar="N",
              help="Raise every CA's CRL number by N: CRLs published after the backup have numbers the backup "
                   "never saw (a gap is allowed, a repeat is not).")
@click.option("--published-crl", "published", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="A CRL published since the backup (repeatable): its CA's numbers continue above it, and "
                   "certificates it lists that the backup holds as valid are named.")
@db_option
@json_option
def restore_cmd(source, gap, published, db, as_json) -> None:
    """Restore a backup onto a fresh home and database.

    The files are checked against the manifest first (a changed file: nothing is restored).
    The target database must hold no CA: a new UNICA_HOME, or an empty PostgreSQL database
    (one 'unica init' made is accepted). After the restore, every CA's CRL number is raised
    by --crl-number-gap (and above every --published-crl), and 'home.restored' is recorded
    in the audit log, which continues the backed-up chain. CA keys are restored with
    'unica key restore' and 'unica ca set NAME --key URI'.

    \b
    Examples:
      unica restore --from /srv/backup/unica-2026-11-29
      unica restore --from /srv/backup/nightly --published-crl /srv/www/crl/issuing.crl
    """
    from unica.ca.backup import restore_home
    from unica.config import db_url, load_config

    cfg = load_config()
    r = restore_home(source, url=db_url(db), home=cfg.home, profiles_dir=cfg.profiles_dir, crl_gap=gap,
                     published_crls=published, progress=_say())
    for name in r.set_aside:
        _warn(f"the backup's config.toml was written as {name} (this home has its own, or it names another "
              "database): compare them")
    if r.unknown_revocations:
        shown = ", ".join(f"{u['ca']}:{u['serial']}" for u in r.unknown_revocations[:10])
        more = len(r.unknown_revocations) - 10
        _warn(f"{len(r.unknown_revocations)} certificate(s) listed as revoked in a published CRL are not revoked in "
              f"the restored database (revoked after the backup): revoke them again: {shown}"
              + (f" and {more} more (see --json)" if more > 0 else ""))
    if as_json:
        emit_json(r.to_dict())
        return
    show_fields({"database": r.database, "backup made": r.backup_created_at,
                 "schema": r.schema_from if r.schema_from == r.schema_to else f"{r.schema_from} -> {r.schema_to}",
                 "crl numbers": ", ".join(f"{n} {v['backup']} -> {v['restored']}" for n, v in r.crl_numbers.items())
                 or "-",
                 "audit entry": r.audit_entry, "home files": ", ".join(r.written) or "-"})


COMMANDS = [backup_cmd, restore_cmd]
