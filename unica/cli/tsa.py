"""``unica tsa``: RFC 3161 time-stamping -- units, the server, the archive."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from unica.cli.acting import as_option, operator_auth
from unica.cli.ca import KEY_TYPES, _store, db_option
from unica.cli.common import access_logger, emit_json, json_option, key_secrets, passphrase_file_option, \
    pin_file_option, show_fields, table
from unica.cli.completion import complete_ca



@click.group("tsa")
def tsa_group() -> None:
    """RFC 3161 time-stamping authority: units, the server, the token archive."""


@tsa_group.group("unit")
def unit_group() -> None:
    """TSA units: a key and its timestamping certificate, a default policy, accuracy."""


def _utc(t) -> str:
    return "-" if t is None else t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ca_key(store, ca_name, pin_file, passphrase_file):
    from unica.hsm import load_key
    from unica.store.cas import get_ca_row

    with store.read() as s:
        uri = get_ca_row(s, ca_name).key_uri
    return load_key(uri, **key_secrets(uri, pin_file, passphrase_file))


@unit_group.command("add")
@click.argument("name")
@click.option("--ca", "ca_name", shell_complete=complete_ca, required=True, metavar="NAME",
              help="The CA that certifies the unit (timestamping profile).")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="ec-p256", show_default=True,
              help="Type of the unit's new key (the timestamping profile allows EC and RSA, not ed25519).")
@click.option("--token", default=None, metavar="LABEL",
              help="Generate the key on this token (else an encrypted file in UNICA_HOME/keys, "
                   "passphrase from UNICA_PASSPHRASE).")
@click.option("--key", "key_uri", default=None, metavar="URI", help="Use this existing key instead of a new one.")
@click.option("--subject", default=None, metavar="DN",
              help="The unit certificate's subject (default: the CA's C and O, CN=TSA NAME).")
@click.option("--policy", required=True, metavar="OID", help="The default TSA policy (mandatory).")
@click.option("--accept-policy", "accept_policies", multiple=True, metavar="OID",
              help="Another policy a request may ask for (repeatable).")
@click.option("--accuracy", default="1s", show_default=True, metavar="DURATION",
              help="Declared accuracy of genTime: 1s or better (e.g. 500ms).")
@as_option
@db_option
@pin_file_option
@passphrase_file_option
@json_option
def unit_add(name, ca_name, key_type, token, key_uri, subject, policy, accept_policies, accuracy, db, pin_file,
             passphrase_file, as_json) -> None:
    """Make a TSA unit: a key, a certificate from --ca under the timestamping profile.

    \b
    Examples:
      unica tsa unit add tsa1 --ca issuing --token unica-tsa --key-type ec-p256 --policy 1.2.156.112559.1.1.1
      unica tsa unit add tsa2 --ca issuing --policy 1.2.156.112559.1.1.1 --accept-policy 1.2.156.112559.1.1.2 \\
          --accuracy 500ms
    """
    import functools

    from unica.tsa.units import add_unit, check_policy_oid, parse_accuracy

    accuracy_ms = parse_accuracy(accuracy)
    check_policy_oid(policy)
    for p in accept_policies:
        check_policy_oid(p, "--accept-policy")
    name_obj = None
    if subject is not None:
        from unica.policies.dn import parse_dn

        name_obj = parse_dn(subject)
    store = _store(db)
    secrets = functools.cache(lambda: key_secrets(key_uri or (f"pkcs11:token={token}" if token else "file:x"),
                                                  pin_file, passphrase_file))
    info = add_unit(store, name, ca_name, policy=policy, accept_policies=accept_policies, accuracy_ms=accuracy_ms,
                    key_type=key_type, token=token, key_uri=key_uri, subject=name_obj,
                    pin=lambda: secrets().get("pin"), passphrase=lambda: secrets().get("passphrase"),
                    ca_key=lambda: _ca_key(store, ca_name, pin_file, passphrase_file), auth=operator_auth())
    if as_json:
        emit_json(info.to_dict())
        return
    click.echo(f"TSA unit {info.name}: certificate {info.cert_serial} from CA {info.ca} valid until "
               f"{_utc(info.cert.not_valid_after_utc)}, key {info.key_uri}, policy {info.policy}")


@unit_group.command("list")
@db_option
@json_option
def unit_list(db, as_json) -> None:
    """List the TSA units.

    \b
    Examples:
      unica tsa unit list
      unica tsa unit list --json
    """
    from unica.tsa.units import format_accuracy, list_units

    units = list_units(_store(db))
    if as_json:
        emit_json([u.to_dict() for u in units])
        return
    table([[u.name, u.status, u.ca, u.policy, format_accuracy(u.accuracy_ms), u.cert_serial, u.key_uri]
           for u in units], ["NAME", "STATUS", "CA", "POLICY", "ACCURACY", "CERTIFICATE", "KEY"])


@unit_group.command("show")
@click.argument("name")
@click.option("--cert-out", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Also write the unit's certificate (PEM) to FILE.")
@db_option
@json_option
def unit_show(name, cert_out, db, as_json) -> None:
    """Show a TSA unit (and write its certificate with --cert-out).

    \b
    Examples:
      unica tsa unit show tsa1
      unica tsa unit show tsa1 --cert-out tsa1.pem
    """
    from cryptography.hazmat.primitives.serialization import Encoding

    from unica.cli.output import check_output_path, write_atomic
    from unica.tsa.units import get_unit

    if cert_out is not None:
        check_output_path(cert_out, "--cert-out", allow_stdout=False)
    u = get_unit(_store(db), name)
    if cert_out is not None:
        write_atomic(cert_out, u.cert.public_bytes(Encoding.PEM), what="--cert-out")
    d = u.to_dict()
    if as_json:
        emit_json(d)
        return
    show_fields({"name": d["name"], "status": d["status"], "ca": d["ca"], "certificate": d["certificate_serial"],
                 "subject": d["subject"], "not_after": d["not_after"], "key": d["key_uri"], "policy": d["policy"],
                 "accept_policies": d["accept_policies"], "accuracy": d["accuracy"], "created_at": d["created_at"],
                 "disabled_at": d["disabled_at"]})


@unit_group.command("disable")
@click.argument("name")
@click.option("--note", default=None, metavar="TEXT", help="Why it is disabled (recorded in the audit log).")
@as_option
@db_option
@json_option
def unit_disable(name, note, db, as_json) -> None:
    """Disable a TSA unit: running servers stop issuing within a second, and none starts on it.

    \b
    Examples:
      unica tsa unit disable tsa1 --note "key retired"
    """
    from unica.tsa.units import disable_unit

    u = disable_unit(_store(db), name, reason=note, auth=operator_auth())
    if as_json:
        emit_json(u.to_dict())
        return
    click.echo(f"TSA unit {u.name}: disabled at {_utc(u.disabled_at)}")


@tsa_group.command("show")
@click.argument("serial")
@db_option
@json_option
def tsa_show(serial, db, as_json) -> None:
    """Look up an issued time-stamp token in the archive by its serial number (hex).

    \b
    Examples:
      unica tsa show 5f3a9c0e1b2d4e6f8a0b1c2d3e4f5a6b
    """
    from unica.tsa.archive import TokenNotArchived, find_token

    rows = find_token(_store(db), serial)
    if not rows:
        raise TokenNotArchived(f"no time-stamp token with serial {serial} in the archive (tokens reach it within "
                           f"a fraction of a second of being issued)")
    out = [{"serial": r.serial, "unit": r.unit, "gen_time": r.gen_time.isoformat(), "imprint_alg": r.imprint_alg,
            "imprint": r.imprint_hex, "policy": r.policy, "nonce": r.nonce} for r in rows]
    if as_json:
        emit_json(out[0] if len(out) == 1 else out)
        return
    for i, d in enumerate(out):
        if i:
            click.echo("")
        show_fields({**d, "gen_time": _utc(rows[i].gen_time)})


@tsa_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=3161, show_default=True, help="0: any free port.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes sharing the port.")
@click.option("--unit", "unit_name", default=None, metavar="NAME",
              help="The TSA unit to serve (default: the only active one).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Serve HTTPS with this certificate (PEM; the chain may follow it).")
@click.option("--tls-key", metavar="FILE", help="The TLS key (PEM; if encrypted, passphrase from UNICA_PASSPHRASE).")
@click.option("--clock-status", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Time source check: a file whose first word is 'synced' or 'unsynced' (optionally "
                   "'offset=SECONDS'); missing or unreadable counts as unsynced.")
@click.option("--clock-check", default=None, metavar="CMD",
              help="Time source check: a command printing chrony's tracking report (e.g. 'chronyc tracking').")
@click.option("--clock-interval", type=click.FloatRange(0.05, 3600), default=1.0, show_default=True,
              metavar="SECONDS", help="Seconds between time source checks.")
@click.option("--max-body", type=click.IntRange(256, 65536), default=8192, show_default=True, metavar="BYTES",
              help="Largest request body (413 above it).")
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              help="One line per request on stderr.")
@db_option
@pin_file_option
@passphrase_file_option
def tsa_serve(host, port, workers, unit_name, tls_cert, tls_key, clock_status, clock_check, clock_interval, max_body,
              access_log, db, pin_file, passphrase_file) -> None:
    """Serve RFC 3161 time-stamps over HTTP(S) until stopped: POST application/timestamp-query to /,
    GET /healthz for load balancers.

    \b
    Examples:
      unica tsa serve --port 3161 --workers 4 --clock-check 'chronyc tracking'
      unica tsa serve --unit tsa1 --tls-cert tsa-web.pem --tls-key tsa-web.key --clock-status /run/unica/clock
    """
    from unica.config import db_url
    from unica.errors import ConfigurationError
    from unica.ocsp.server import bind
    from unica.tsa.clock import ClockMonitor, ClockState, CommandCheck, StatusFileCheck
    from unica.tsa.http import TSAApp
    from unica.tsa.responder import Responder
    from unica.tsa.server import clock_auditor, run
    from unica.tsa.units import list_units

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if clock_status is not None and clock_check is not None:
        raise click.UsageError("give --clock-status or --clock-check, not both")
    if tls_cert is not None and workers > 1:
        raise click.UsageError("TLS is served by one worker (--workers 1); for more, terminate TLS in a proxy")
    url = db_url(db)
    store = _store(db)
    if unit_name is None:
        active = [u.name for u in list_units(store) if u.status == "active"]
        if len(active) != 1:
            raise ConfigurationError("no active TSA unit (add one with 'unica tsa unit add')" if not active else
                                     f"several active TSA units ({', '.join(active)}): choose one with --unit")
        unit_name = active[0]
    from unica.tsa.units import get_unit

    unit = get_unit(store, unit_name)
    secrets = key_secrets(unit.key_uri, pin_file, passphrase_file)
    # everything checked before the socket opens: the unit (active), its key (loads, matches)
    Responder(store, unit_name, archive=False, **secrets).close()
    context = None
    if tls_cert is not None:
        from unica.service.server import tls_context

        context = tls_context(tls_cert, tls_key, None)
    store.dispose()
    clock = None
    monitor = None
    if clock_status is not None or clock_check is not None:
        accuracy_s = unit.accuracy_ms / 1000
        check = StatusFileCheck(clock_status, accuracy_s) if clock_status is not None else \
            CommandCheck(clock_check, accuracy_s)
        clock = ClockState()
        monitor = ClockMonitor(check, clock, interval=clock_interval,
                               on_change=clock_auditor(url, unit_name, unit.accuracy_ms))
        monitor.poll()

    def make_responder():
        from unica.store import open_store

        return Responder(open_store(url), unit_name, clock=clock, **secrets)

    logger = access_logger("tsa") if access_log else None
    app = TSAApp(make_responder, max_body=max_body, access_log=logger)
    sock = bind(host, port, reuse_port=workers > 1)
    scheme = "https" if context is not None else "http"
    shown = f"[{host}]" if ":" in host else host
    sync = "" if monitor is None else f"; clock {'synced' if clock.synced else 'NOT SYNCED: ' + monitor.last.detail}"
    click.echo(f"unica tsa on {scheme}://{shown}:{sock.getsockname()[1]}/ (unit {unit_name}, policy {unit.policy}, "
               f"{workers} worker{'s' if workers > 1 else ''}{sync})", err=True)
    if monitor is not None:
        monitor.start()
    run(app, sock, workers=workers, ssl_context=context)


COMMANDS = [tsa_group]
