"""``unica ocsp``: delegated signers, modes, pre-signing, and the responder service."""

from __future__ import annotations

import contextlib
import datetime as dt

import click

from unica.cli.acting import as_option, operator_auth
from unica.cli.ca import KEY_TYPES, _store, db_option
from unica.cli.common import access_logger, emit_json, json_option, key_secrets, passphrase_file_option, \
    pin_file_option
from unica.cli.completion import complete_ca


@click.group("ocsp")
def ocsp_group() -> None:
    """OCSP (RFC 6960 / RFC 5019): signers, pre-signed responses, the responder."""


def _ca_key(store, ca_name, pin_file, passphrase_file):
    from unica.ca.records import get_ca_row
    from unica.hsm import load_key

    with store.read() as s:
        uri = get_ca_row(s, ca_name).key_uri
    return load_key(uri, **key_secrets(uri, pin_file, passphrase_file))


def _signer_secrets(store, names, pin_file, passphrase_file) -> dict:
    """PIN / passphrase for the OCSP signer keys of these CAs (asked once per kind)."""
    from sqlalchemy import select

    from unica.cli.common import passphrase, user_pin
    from unica.store import models as m
    from unica.store.cas import get_ca_row

    with store.read() as s:
        rows = [get_ca_row(s, n) for n in names] if names else s.scalars(select(m.CA)).all()
        uris = [r.ocsp_signer_key_uri for r in rows if r.ocsp_signer_key_uri]
    from unica.hsm.uri import FileURI, parse_key_uri

    parsed = [parse_key_uri(u) for u in uris]
    tokens = sorted({u.token for u in parsed if not isinstance(u, FileURI)})
    files = sorted({str(u.path) for u in parsed if isinstance(u, FileURI)})
    out = {}
    if tokens:  # the prompt names the token(s) it is for
        out["pin"] = user_pin(pin_file, tokens[0] if len(tokens) == 1 else None)
    if files:
        out["passphrase"] = passphrase(passphrase_file, path=", ".join(files))
    return out


@ocsp_group.command("signer")
@click.option("--ca", "ca_name", shell_complete=complete_ca, required=True, metavar="NAME",
              help="The CA whose responses the signer signs.")
@click.option("--key", "key_uri", default=None, metavar="URI", help="Use this existing key (else a new one is generated).")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="ec-p256", show_default=True,
              help="Type of a new signer key.")
@click.option("--token", default=None, metavar="LABEL",
              help="Generate the new signer key on this token (else a file in UNICA_HOME/keys).")
@click.option("--renew-if-due", is_flag=True, help="Only act if there is no signer or less than 1/3 of its life is left.")
@as_option
@db_option
@pin_file_option
@passphrase_file_option
@json_option
def ocsp_signer(ca_name, key_uri, key_type, token, renew_if_due, db, pin_file, passphrase_file, as_json) -> None:
    """Issue (or renew) the CA's delegated OCSP signer certificate (ocsp-signer profile).

    \b
    Examples:
      unica ocsp signer --ca issuing
      unica ocsp signer --ca issuing --token unica-ca --key-type ec-p256 --renew-if-due \\
          --as 'pkcs11:token=card-wang;object=operator'
    """
    import functools

    from unica.ca.ocspsigner import ensure_ocsp_signer, issue_ocsp_signer

    store = _store(db)
    # the PIN and passphrase are asked for once the operator is authorized (a refusal asks for none)
    secrets = functools.cache(lambda: key_secrets(key_uri or (f"pkcs11:token={token}" if token else "file:x"),
                                                  pin_file, passphrase_file))
    kwargs = dict(key_uri=key_uri, key_type=key_type, token=token, auth=operator_auth(),
                  ca_key=lambda: _ca_key(store, ca_name, pin_file, passphrase_file),
                  pin=lambda: secrets().get("pin"), passphrase=lambda: secrets().get("passphrase"))
    info = ensure_ocsp_signer(store, ca_name, **kwargs) if renew_if_due else issue_ocsp_signer(store, ca_name, **kwargs)
    if as_json:
        # not due: a result that says so, never null
        emit_json({**info.to_dict(), "issued": True} if info else
                  {"ca": ca_name, "issued": False, "reason": "the OCSP signer is not due for renewal"})
    elif info is None:
        click.echo(f"CA {ca_name}: the OCSP signer is not due for renewal")
    else:
        click.echo(f"CA {ca_name}: OCSP signer {info.serial} valid until {info.not_after:%Y-%m-%dT%H:%M:%SZ}, "
                   f"key {info.key_uri}")


@ocsp_group.command("configure")
@click.option("--ca", "ca_name", shell_complete=complete_ca, required=True, metavar="NAME", help="The CA to configure.")
@click.option("--mode", type=click.Choice(["presigned", "live"]), default=None,
              help="presigned: responses signed ahead and looked up; live: signed per request.")
@click.option("--live-nonce/--no-live-nonce", default=None,
              help="In pre-signed mode, answer requests carrying a nonce live (needs the signer key).")
@click.option("--validity", default=None, metavar="DURATION", help="Validity of pre-signed responses (e.g. 4d).")
@click.option("--live-validity", default=None, metavar="DURATION",
              help="Validity of live answers, nextUpdate - thisUpdate (default 5m; 1m to 7d, e.g. 15m, 1h).")
@as_option
@db_option
@json_option
def ocsp_configure(ca_name, mode, live_nonce, validity, live_validity, db, as_json) -> None:
    """Choose the CA's OCSP mode and response validity.

    \b
    Examples:
      unica ocsp configure --ca issuing --mode presigned --validity 4d
      unica ocsp configure --ca issuing --mode live --as 'pkcs11:token=card-wang;object=operator'
    """
    from unica.errors import InputError
    from unica.ocsp.service import configure_ocsp
    from unica.policies.duration import parse_duration

    spans = {}
    for option, text in (("--validity", validity), ("--live-validity", live_validity)):
        try:
            spans[option] = parse_duration(text) if text is not None else None
        except ValueError as e:
            raise InputError(f"{option}: {e}") from None
    result = configure_ocsp(_store(db), ca_name, mode=mode, live_nonce=live_nonce, validity=spans["--validity"],
                            live_validity=spans["--live-validity"], auth=operator_auth())
    if as_json:
        emit_json(result)
    else:
        click.echo(f"CA {result['ca']}: {_settings_line(result)}")


def _span(hours: float) -> str:
    """96.0 -> 4d, 36.0 -> 36h, 0.1666 -> 10m."""
    minutes = round(hours * 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def _settings_line(eff: dict) -> str:
    """The effective OCSP settings on one line; those left at their default say so."""
    defaults = eff.get("defaults", [])

    def mark(key, text):
        return f"{text} (default)" if key in defaults else text

    return (f"mode={eff['mode']} " + mark("live_nonce", f"live_nonce={'yes' if eff['live_nonce'] else 'no'}") + " "
            + mark("validity_hours", f"validity={_span(eff['validity_hours'])}") + " "
            + mark("live_validity_minutes", f"live_validity={_span(eff['live_validity_minutes'] / 60)}"))


def _utc(t) -> str:
    return "-" if t is None else t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _jsonable(v):
    if isinstance(v, dt.datetime):
        return _utc(v)
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


@ocsp_group.command("status")
@click.option("--ca", "ca_names", shell_complete=complete_ca, multiple=True, metavar="NAME",
              help="Only these CAs (repeatable; default: every CA with a certificate).")
@db_option
@json_option
def ocsp_status_cmd(ca_names, db, as_json) -> None:
    """Each CA's OCSP state: mode, signer, validity, pre-signed coverage, next refresh (no key is opened).

    \b
    Examples:
      unica ocsp status
      unica ocsp status --ca issuing --json
    """
    from unica.ocsp.service import ocsp_status

    states = ocsp_status(_store(db), list(ca_names) or None)
    if as_json:
        emit_json(_jsonable(states))
        return
    if not states:
        click.echo("no CA with a certificate")
    for st in states:
        sg = st["signer"]
        if sg is None:
            signer = f"none (run 'unica ocsp signer --ca {st['ca']}')"
        else:
            state = "valid" if sg["valid"] else f"NOT VALID ({sg['status']})" if sg["status"] != "valid" else \
                "NOT VALID (outside its validity)"
            signer = (f"{sg['serial']}, {state}, {_utc(sg['not_before'])} .. {_utc(sg['not_after'])}, "
                      f"key {sg['key_uri']}")
        click.echo(f"CA {st['ca']}")
        click.echo(f"  settings:     {_settings_line(st)}")
        click.echo(f"  signer:       {signer}")
        if st["mode"] == "presigned":
            p = st["presigned"]
            click.echo(f"  pre-signed:   {p['stored']}/{p['certificates']} certificates have a response "
                       f"({p['fresh']} fresh, {p['missing']} missing, {p['expired']} expired; "
                       f"oldest produced {_utc(p['oldest_produced_at'])}, first expiry {_utc(p['first_next_update'])})")
            nr = st["next_refresh"]
            due = "never: no signer to pre-sign with" if sg is None else \
                "due now" if nr is not None and nr <= dt.datetime.now(dt.timezone.utc) else _utc(nr)
            lease = st["refresh_lease"]
            click.echo(f"  next refresh: {due}" + (f" (lease held by {lease.get('holder')} until {lease.get('until')})"
                                                     if lease else ""))
        else:
            click.echo("  pre-signed:   not used (live mode: every answer is signed when asked)")


@ocsp_group.command("presign")
@click.option("--ca", "ca_names", shell_complete=complete_ca, multiple=True, metavar="NAME",
              help="Only these CAs (repeatable; default: every pre-signed CA).")
@click.option("--all", "everything", is_flag=True, help="Re-sign every response, not just those due.")
@as_option
@db_option
@pin_file_option
@passphrase_file_option
@json_option
def ocsp_presign(ca_names, everything, db, pin_file, passphrase_file, as_json) -> None:
    """Sign the OCSP responses that are due (missing, or past half their validity).

    \b
    Examples:
      unica ocsp presign
      unica ocsp presign --ca issuing --all --as 'pkcs11:token=card-wang;object=operator'
    """
    from unica.ocsp.service import presign, served_cas

    store = _store(db)
    names = list(ca_names) or None
    cas = served_cas(store, names, require_signers=bool(names),
                     **_signer_secrets(store, names, pin_file, passphrase_file))
    cas = [c for c in cas if c.mode == "presigned" and (names or c.signer is not None)]

    from unica.cli.progress import Progress

    bars: list = []  # one per CA, made at its first batch (when its count of due responses is known)
    with contextlib.ExitStack() as stack:
        def progress(ca, done, total):
            if not bars or bars[-1].label != f"CA {ca}":
                if bars:
                    bars[-1].close()
                bars.append(stack.enter_context(Progress(f"CA {ca}", total, unit="responses signed")))
            bars[-1].update(done)

        results = presign(store, cas, everything=everything, progress=progress, auth=operator_auth())
    if as_json:
        emit_json([r.to_dict() for r in results])
        return
    for r in results:
        click.echo(f"{r.ca}: " + ("another refresher is at work; skipped" if r.skipped else f"{r.signed} responses signed"))


def _url_prefix(value: str) -> str:
    if not (value.startswith("/") and value.endswith("/")):
        raise click.BadParameter(f"{value!r} must start and end with '/' (e.g. /ocsp/)")
    return value


@ocsp_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0: any free port.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes sharing the socket.")
@click.option("--ca", "ca_names", shell_complete=complete_ca, multiple=True, metavar="NAME",
              help="Only these CAs (repeatable; default: every CA).")
@click.option("--prefix", default="/", show_default=True, callback=lambda ctx, param, v: _url_prefix(v),
              help="URL path the responder is published at (starts and ends with '/').")
@click.option("--poll-interval", type=click.FloatRange(min=0, min_open=True), default=0.25, show_default=True,
              help="Seconds between checks for status changes (revocations reach every node within it).")
@click.option("--refresh-interval", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds between pre-sign refreshes (0: none; needs the signer keys).")
@click.option("--no-signer-keys", is_flag=True,
              help="Open no signing key, whatever PIN or passphrase the environment holds: a pure lookup node "
                   "for pre-signed CAs (what it has no stored response for gets 'unauthorized').")
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="One line per request on stderr: method, path, CA, serial, HTTP and OCSP status, "
                   "cache hit or miss, live signing, time taken.")
@db_option
@pin_file_option
@passphrase_file_option
def ocsp_serve(host, port, workers, ca_names, prefix, poll_interval, refresh_interval, no_signer_keys, access_log,
               db, pin_file, passphrase_file) -> None:
    """Run the OCSP responder (GET and POST, /healthz for load balancers) until stopped.

    \b
    Examples:
      unica ocsp serve --host 0.0.0.0 --port 8080 --workers 4
      unica ocsp serve --ca issuing --prefix /ocsp/ --no-signer-keys
    """
    from unica.config import db_url
    from unica.ocsp.server import bind, serve
    from unica.ocsp.service import DBResponderApp

    names = list(ca_names) or None
    secrets = {} if no_signer_keys else _signer_secrets(_store(db), names, pin_file, passphrase_file)
    app = DBResponderApp(db_url(db), names, load_signers=not no_signer_keys, poll_interval=poll_interval,
                         refresh_interval=0 if no_signer_keys else refresh_interval, prefix=prefix,
                         access_log=access_logger("ocsp") if access_log else None, **secrets)
    app.build()  # a bad configuration fails here, before the socket opens
    for ca in app.cas:
        if ca.signer is not None:
            click.echo(f"CA {ca.name}: {ca.mode}, signer {ca.signer.signer_cert.serial_number:x} valid until "
                       f"{_utc(ca.signer.not_after)}", err=True)
        else:
            click.echo(f"CA {ca.name}: {ca.mode}, no signer: pre-signed responses only", err=True)
    if workers > 1:
        app.reset()
    sock = bind(host, port, reuse_port=workers > 1)
    click.echo(f"unica OCSP responder on http://{host}:{sock.getsockname()[1]}{prefix} "
               f"({workers} worker{'s' if workers > 1 else ''}); health: /healthz", err=True)
    serve(app, workers=workers, sock=sock)


COMMANDS = [ocsp_group]
