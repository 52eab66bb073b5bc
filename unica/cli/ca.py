"""``unica init``, ``unica ca``, ``unica issue``, ``unica cert``, ``unica profile``: thin
commands over :mod:`unica.ca` and :mod:`unica.policies` (no crypto here)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from unica.cli.acting import as_option, operator_auth
from unica.cli.common import (LIMIT, emit_json, json_option, key_secrets, passphrase_file_option, pin_file_option,
                               secret_file_option, show_fields, table)
from unica.cli.completion import complete_ca, complete_choices, complete_profile
from unica.cli.output import check_output_dir, check_output_path, write_atomic

#: the values of unica.hsm.keytypes.KeyType, written out: importing it would load cryptography
#: when the CLI only completes or prints help (tests/cli/test_completion.py; tests/cli/test_consistency.py
#: checks the two lists agree)
KEY_TYPES = ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519", "sm2"]


def db_option(f):
    return click.option("--db", default=None, metavar="URL",
                        help="Database URL (else UNICA_DB, else config.toml, else SQLite in UNICA_HOME).")(f)


def _store(db: str | None, create: bool = False):
    from unica.config import db_url
    from unica.store import open_store

    return open_store(db_url(db), create=create)


def _settings_options(f):
    f = click.option("--crl-url", default=None, help="CRL distribution point URL ({shard} with --crl-shards > 1).")(f)
    f = click.option("--delta-crl-url", default=None,
                     help="Where delta CRLs are published: base CRLs name it as their Freshest CRL "
                          "({shard} with --crl-shards > 1).")(f)
    f = click.option("--ocsp-url", default=None, help="OCSP responder URL for AIA.")(f)
    f = click.option("--ca-issuers-url", default=None, help="URL of this CA's certificate for AIA caIssuers.")(f)
    f = click.option("--crl-shards", type=int, default=None, help="Number of CRL partitions (default 1).")(f)
    f = click.option("--profiles", "profile_set", default=None, metavar="P1,P2",
                     help="Profiles this CA may issue under (comma-separated; empty = any).")(f)
    return f


def _settings(crl_url, ocsp_url, ca_issuers_url, crl_shards, profile_set, delta_crl_url=None):
    from unica.ca.authority import CASettings

    profiles = None
    if profile_set is not None:
        profiles = tuple(p.strip() for p in profile_set.split(",") if p.strip())
    return CASettings(crl_url=crl_url, ocsp_url=ocsp_url, ca_issuers_url=ca_issuers_url, crl_shards=crl_shards,
                      profiles=profiles, delta_crl_url=delta_crl_url)


def _warn(message: str) -> None:
    click.echo(f"unica: warning: {' '.join(message.split())}", err=True)


#: a root valid longer than this is warned about (CA/B Forum and ETSI practice: 20-25 years)
LONG_ROOT_YEARS = 30


def _key_spec(name, key_uri, key_type, token, pin_file, passphrase_file, backup_allowed=False):
    from unica.ca.authority import KeySpec

    spec = KeySpec(uri=key_uri, key_type=key_type, token=token, backup_allowed=backup_allowed)
    uri = spec.target_uri(name)
    return KeySpec(uri=key_uri, key_type=key_type, token=token, backup_allowed=backup_allowed,
                   **key_secrets(uri, pin_file, passphrase_file, new=key_uri is None))


def _show_ca(info: dict, as_json: bool) -> None:
    if as_json:
        emit_json(info)
        return
    # no profiles listed: the CA issues with any profile (not "-", which reads as "none")
    show_fields({**info, "profiles": info["profiles"] or "(any)"} if "profiles" in info else info)


# --- unica init ----------------------------------------------------------------------


@click.command("init")
@db_option
@click.option("--new-audit-chain", is_flag=True,
              help="Initialise over an existing empty (0-byte) SQLite file: a new database and audit chain "
                   "(recorded in the audit log). Without it, init refuses such a file.")
@as_option
def init_cmd(db, new_audit_chain) -> None:
    """Create UNICA_HOME (config.toml, profiles/, keys/) and the database, or migrate it.

    An existing database that is not unica's (other tables, not SQLite) is refused, and so is
    an empty (0-byte) SQLite file unless --new-audit-chain is given: a unica database that was
    truncated or replaced looks like that, and its CAs' keys remain in keys/ and on tokens.

    \b
    Examples:
      unica init
      unica init --db postgresql://unica@db.example.cn/unica
      unica init --as 'pkcs11:token=card-alice;object=operator'    # migrate a home with operators
    """
    from unica.config import db_url, home, write_default_config
    from unica.errors import StoreError
    from unica.store.db import INIT_EMPTY_FILE, default_db_url, init_check

    h = home()
    url = db_url(db) or default_db_url()
    found = init_check(url)  # before anything is written
    if found == INIT_EMPTY_FILE and not new_audit_chain:
        raise StoreError(f"the database {url} exists and is empty (0 bytes): if it was a unica database, "
                         f"its CAs' records and audit chain are lost while their keys remain -- restore it from a "
                         f"backup; to start a new database and audit chain in it: unica init --new-audit-chain")
    from unica.ca.home import init_authorized

    with init_authorized(url, operator_auth()):  # over a database with operators: an admin's (home.init)
        cfg = write_default_config(h)
        store = _store(db, create=True)
        shown = store.engine.url.render_as_string(hide_password=True)  # the URL, never a password
        details = {"home": str(h.resolve()), "db": shown}
        if found == INIT_EMPTY_FILE:
            details["new_audit_chain"] = "over an existing empty (0-byte) database file (--new-audit-chain)"
        with store.write() as s:
            store.audit(s, "home.initialised", details=details)
    click.echo(f"unica home {h.resolve()}: config {cfg.name}, profiles/, keys/; database {shown} ready")


# --- unica ca ------------------------------------------------------------------------


@click.group("ca")
def ca_group() -> None:
    """Certification authorities: create roots and subordinates, list, show, export, configure."""


def _key_options(f):
    f = click.option("--key", "key_uri", default=None, metavar="URI", help="Use this existing key (pkcs11:... or file:...).")(f)
    f = click.option("--key-type", type=click.Choice(KEY_TYPES), default=None, help="Generate a new key of this type.")(f)
    f = click.option("--token", default=None, metavar="LABEL",
                     help="With --key-type: generate on this PKCS#11 token (else an encrypted file in UNICA_HOME/keys).")(f)
    f = click.option("--backup-allowed", is_flag=True,
                     help="With --key-type and --token: the key is sensitive but wrappable, so 'unica key backup' "
                          "can back it up to custodians (never readable in plaintext). Without it the key can "
                          "never leave the token.")(f)
    return f


@ca_group.command("create-root")
@click.argument("name")
@click.option("--subject", required=True, metavar="DN", help="Subject DN, e.g. 'C=CN,O=示例,CN=Root CA'.")
@_key_options
@click.option("--validity", default=None, metavar="DURATION", help="e.g. 20y (default: the profile's).")
@click.option("--profile", shell_complete=complete_profile, default="root-ca", show_default=True, metavar="NAME",
              help="Certificate profile of the CA certificate (see 'unica profile list').")
@_settings_options
@as_option
@pin_file_option
@passphrase_file_option
@db_option
@json_option
def ca_create_root(name, subject, key_uri, key_type, token, backup_allowed, validity, profile, crl_url, delta_crl_url,
                   ocsp_url, ca_issuers_url, crl_shards, profile_set, pin_file, passphrase_file, db, as_json) -> None:
    """Create a self-signed root CA NAME.

    \b
    Examples:
      unica ca create-root root --subject 'C=CN,O=示例认证中心,CN=Example Root CA' \\
          --key 'pkcs11:token=unica-ca;object=root-ca' --validity 20y \\
          --crl-url http://crl.example.cn/root.crl
      unica ca create-root test-root --subject 'C=CN,O=Example,CN=Test Root' --key-type ec-p256
      unica ca create-root port-root --subject 'C=CN,O=示例口岸,CN=Port Root CA' --key-type ec-p384 \\
          --token unica-ca --backup-allowed
    """
    import datetime as dt

    from unica.ca.authority import create_root

    store = _store(db)
    info = create_root(store, name, subject,
                       _key_spec(name, key_uri, key_type, token, pin_file, passphrase_file, backup_allowed),
                       validity=validity, profile=profile,
                       settings=_settings(crl_url, ocsp_url, ca_issuers_url, crl_shards, profile_set, delta_crl_url),
                       auth=operator_auth())
    life = dt.datetime.fromisoformat(info["not_after"]) - dt.datetime.fromisoformat(info["not_before"])
    if life > dt.timedelta(days=365 * LONG_ROOT_YEARS):
        _warn(f"root CA {name!r} is valid for {life.days // 365} years (until {info['not_after'][:10]}), more than "
              f"{LONG_ROOT_YEARS}: its key must stay safe for that long; 20-25 years is usual")
    _show_ca(info, as_json)


@ca_group.command("create-sub")
@click.argument("name")
@click.option("--parent", shell_complete=complete_ca, default=None, metavar="NAME", help="The issuing CA in this store.")
@click.option("--csr-out", metavar="FILE", default=None,
              help="External parent: write the CSR here; then 'unica ca import-cert NAME FILE'.")
@click.option("--subject", required=True, metavar="DN")
@_key_options
@click.option("--validity", default=None, metavar="DURATION")
@click.option("--profile", shell_complete=complete_profile, default="sub-ca", show_default=True, metavar="NAME",
              help="Certificate profile of the CA certificate (see 'unica profile list').")
@_settings_options
@secret_file_option("--parent-pin-file", "parent CA's token PIN (when it differs from the --pin-file one)",
                    "UNICA_PIN")
@as_option
@pin_file_option
@passphrase_file_option
@db_option
@json_option
def ca_create_sub(name, parent, csr_out, subject, key_uri, key_type, token, backup_allowed, validity, profile, crl_url,
                  delta_crl_url, ocsp_url, ca_issuers_url, crl_shards, profile_set, parent_pin_file, pin_file,
                  passphrase_file, db, as_json) -> None:
    """Create a subordinate CA NAME, signed by --parent (or by an external CA via --csr-out).

    \b
    Examples:
      unica ca create-sub issuing --parent root --subject 'C=CN,O=示例认证中心,CN=Issuing CA' \\
          --key-type ec-p256 --crl-url http://crl.example.cn/issuing.crl \\
          --ocsp-url http://ocsp.example.cn/
      unica ca create-sub agency --subject 'C=CN,O=示例认证中心,CN=Agency CA' --token unica-ca \\
          --key-type ec-p384 --csr-out agency.csr
    """
    from unica.ca.authority import create_external_sub, create_sub, ca_info
    from unica.errors import InputError

    if (parent is None) == (csr_out is None):
        raise InputError("give exactly one of --parent NAME or --csr-out FILE")
    check_output_path(csr_out, "--csr-out", allow_stdout=False)  # before a key is made
    store = _store(db)
    settings = _settings(crl_url, ocsp_url, ca_issuers_url, crl_shards, profile_set, delta_crl_url)
    if csr_out:
        info = create_external_sub(store, name, subject,
                                   _key_spec(name, key_uri, key_type, token, pin_file, passphrase_file,
                                             backup_allowed),
                                   Path(csr_out), settings=settings,
                                   write_csr=lambda data: write_atomic(csr_out, data, what="--csr-out"),
                                   auth=operator_auth())
        _show_ca(info, as_json)
        if not as_json:
            click.echo(f"CSR written to {csr_out}; after the parent signs it: unica ca import-cert {name} CERT")
        return
    from unica.hsm import load_key

    pinfo = ca_info(store, parent)
    parent_uri = pinfo["key_uri"]
    parent_key = load_key(parent_uri, **key_secrets(parent_uri, parent_pin_file or pin_file, passphrase_file))
    info = create_sub(store, name, parent, subject,
                      _key_spec(name, key_uri, key_type, token, pin_file, passphrase_file, backup_allowed),
                      parent_key=parent_key, validity=validity, profile=profile, settings=settings,
                      auth=operator_auth())
    if not pinfo["crl_url"] and not pinfo["ocsp_url"]:
        _warn(f"parent CA {parent!r} publishes no revocation (no CRL URL, no OCSP URL): the certificate of {name!r} "
              f"names no CRL or OCSP responder, so relying parties that require revocation checking (unica "
              f"verify's default hard-fail) cannot accept what {name!r} issues; give the parent one before creating "
              f"subordinates: unica ca set {parent} --crl-url URL")
    if not validity and pinfo["not_after"] and info["not_after"] == pinfo["not_after"]:
        _warn(f"the certificate of {name!r} ends with its parent {parent!r} ({pinfo['not_after'][:10]}), "
              f"before the validity of profile {profile!r} runs out")
    _show_ca(info, as_json)


@ca_group.command("import-cert")
@click.argument("name", shell_complete=complete_ca)
@click.argument("cert_file", type=click.Path(exists=True, dir_okay=False))
@as_option
@db_option
@json_option
def ca_import_cert(name, cert_file, db, as_json) -> None:
    """Install the certificate an external parent issued for pending CA NAME (PEM may include the chain).

    \b
    Examples:
      unica ca import-cert agency agency-from-parent.pem
    """
    from unica.boundedio import MAX_CERTIFICATE, read_limited
    from unica.ca.authority import import_cert

    data = read_limited(cert_file, MAX_CERTIFICATE, "certificate file")  # before touching the database
    _show_ca(import_cert(_store(db), name, data, cert_file, auth=operator_auth()), as_json)


@ca_group.command("set")
@click.argument("name", shell_complete=complete_ca)
@_settings_options
@click.option("--key", "key_uri", default=None, metavar="URI",
              help="Point the CA at this key (a restored one: 'unica key restore'); it must match the CA "
                   "certificate's public key.")
@as_option
@pin_file_option
@passphrase_file_option
@db_option
@json_option
def ca_set(name, crl_url, delta_crl_url, ocsp_url, ca_issuers_url, crl_shards, profile_set, key_uri, pin_file,
           passphrase_file, db, as_json) -> None:
    """Change CA NAME's settings (an empty string clears a URL), or its key (--key).

    \b
    Examples:
      unica ca set issuing --ocsp-url http://ocsp.example.cn/ \\
          --delta-crl-url http://crl.example.cn/issuing-delta.crl
      unica ca set issuing --ca-issuers-url ''  # clears it
      unica ca set port-root --key 'pkcs11:token=unica-ca-new;object=ca-port-root'
    """
    from unica.ca.authority import set_ca

    store = _store(db)
    settings = _settings(crl_url, ocsp_url, ca_issuers_url, crl_shards, profile_set, delta_crl_url)
    secrets = {}
    if key_uri is not None:
        settings.check()  # bad settings are said before the key is asked for its PIN
        secrets = key_secrets(key_uri, pin_file, passphrase_file)
    # one operation (ca.set): the settings and the key together, under one card signature
    _show_ca(set_ca(store, name, settings, key_uri=key_uri, auth=operator_auth(), **secrets), as_json)


#: the reasons a CA certificate is revoked for (RFC 5280 5.3.1; a CA is not put on hold)
CA_REASONS = ["unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
              "cessationOfOperation", "privilegeWithdrawn", "aACompromise"]


@ca_group.command("revoke")
@click.argument("name", shell_complete=complete_ca)
@click.option("--reason", shell_complete=complete_choices(CA_REASONS), default="unspecified", show_default=True,
              metavar="REASON", help="RFC 5280 reason: " + ", ".join(CA_REASONS) + ".")
@as_option
@db_option
@json_option
def ca_revoke(name, reason, db, as_json) -> None:
    """Revoke subordinate CA NAME: its certificate is revoked at its parent (the parent's next CRL
    lists it) and NAME issues nothing more.

    A root has no parent to revoke it; a CA certified by an external CA is revoked by that CA.

    \b
    Examples:
      unica ca revoke issuing --reason cessationOfOperation --as 'pkcs11:token=alice;object=operator'
      unica ca revoke agency --reason keyCompromise
    """
    from unica.ca.authority import revoke_ca

    info = revoke_ca(_store(db), name, reason, auth=operator_auth())
    if as_json:
        emit_json(info)
        return
    r = info["revocation"]
    click.echo(f"CA {name} revoked: certificate {r['serial']} of CA {r['ca']} revoked ({r['reason']}) at "
               f"{r['revoked_at']}; CA {r['ca']}'s next CRL lists it")


@ca_group.command("list")
@db_option
@json_option
def ca_list(db, as_json) -> None:
    """List the CAs.

    \b
    Examples:
      unica ca list
      unica ca list --json
    """
    from unica.store.cas import list_cas  # not unica.ca.authority: listing needs no certificate code

    cas = list_cas(_store(db))
    if as_json:
        emit_json(cas)
        return
    table([[c["name"], c["status"] + (" (expired)" if c["expired"] else ""), c["parent"] or "-",
            (c["not_after"] or "")[:10], c["subject"]] for c in cas],
          ["NAME", "STATUS", "PARENT", "NOT-AFTER", "SUBJECT"])


@ca_group.command("show")
@click.argument("name", shell_complete=complete_ca)
@db_option
@json_option
def ca_show(name, db, as_json) -> None:
    """Show CA NAME: subject, key, validity, URLs, profile set.

    \b
    Examples:
      unica ca show issuing
      unica ca show root --json
    """
    from unica.ca.authority import ca_info

    _show_ca(ca_info(_store(db), name), as_json)


@ca_group.command("export")
@click.argument("name", shell_complete=complete_ca)
@click.option("--chain", is_flag=True, help="Append the parents up to the root.")
@click.option("--out", metavar="FILE", default=None, help="Write here instead of stdout.")
@db_option
def ca_export(name, chain, out, db) -> None:
    """Print CA NAME's certificate (PEM).

    \b
    Examples:
      unica ca export root --out root.pem
      unica ca export issuing --chain --out chain.pem
    """
    from unica.ca.authority import export_ca

    check_output_path(out)
    write_atomic(out, export_ca(_store(db), name, chain=chain))


def _not_written(issued: list, ca_name: str, chain: bool, err: Exception) -> str:
    """The error for certificates issued and stored but not delivered: their serials and how to export them."""
    serials = ", ".join(i.serial_hex for i in issued)
    what = f"certificate serial {serials} was" if len(issued) == 1 else f"{len(issued)} certificates (serials {serials}) were"
    return (f"{what} issued by CA {ca_name} and stored, but {_one_line(str(err))}; export again with: "
            f"unica cert export {issued[0].serial_hex if len(issued) == 1 else 'SERIAL'} --ca {ca_name}"
            f"{' --chain' if chain else ''} --out FILE")


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- unica issue ---------------------------------------------------------------------


@click.command("issue")
@click.option("--ca", "ca_name", shell_complete=complete_ca, required=True, metavar="NAME", help="The issuing CA.")
@click.option("--profile", shell_complete=complete_profile, required=True, metavar="NAME", help="Certificate profile (see 'unica profile list').")
@click.option("--csr", "csr_file", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="PKCS#10 request, PEM or DER ('-' for stdin).")
@click.option("--out", metavar="FILE", default=None, help="Write the certificate here (PEM).")
@click.option("--chain", is_flag=True, help="Append the CA chain to the output.")
@click.option("--requester", default=None, metavar="ID", help="Who asked (recorded with the certificate).")
@click.option("--no-lint", is_flag=True,
              help="Skip pkilint before signing (bulk re-issuance only; recorded in the audit log).")
@as_option
@pin_file_option
@passphrase_file_option
@db_option
@json_option
def issue_cmd(ca_name, profile, csr_file, out, chain, requester, no_lint, pin_file, passphrase_file, db,
              as_json) -> None:
    """Issue a certificate from a CSR: check it against the profile, lint, record, sign, store.

    \b
    Examples:
      unica cert issue --ca issuing --profile enterprise-sign --csr zhangsan.csr \\
          --out zhangsan.pem
      unica cert issue --ca issuing --profile tls-server --csr www.csr --out www.pem --chain \\
          --requester ticket-4711
    """
    from unica.boundedio import MAX_CSR, read_limited
    from unica.ca.issuance import IssuingCA
    from unica.errors import OutputError, UnicaError
    from unica.hsm import load_key

    out = None if out == "-" else out
    check_output_path(out)  # before anything is read, signed or stored
    data = read_limited(csr_file, MAX_CSR, "--csr", stdin=True)
    store = _store(db)
    ca = IssuingCA(store, ca_name)
    ca.set_key_loader(lambda: load_key(ca.key_uri, **key_secrets(ca.key_uri, pin_file, passphrase_file)))
    issued = ca.issue(data, profile, requester=requester, lint=not no_lint, source=f"CSR {csr_file}",
                      auth=operator_auth())
    # committed: from here on, a failure must name the serial, never claim that nothing happened
    try:
        from unica.ca.records import pem

        text = pem(issued.der)
        if chain:
            from unica.ca.authority import export_ca

            text += export_ca(store, ca_name, chain=True)
        if out:
            write_atomic(out, text)
        if as_json:
            emit_json({"serial": issued.serial_hex, "ca": issued.ca, "profile": issued.profile,
                       "fingerprint_sha256": issued.fingerprint_sha256, "linted": issued.linted,
                       "out": out, "pem": None if out else text})
        elif out:
            click.echo(f"issued serial {issued.serial_hex} by CA {issued.ca} under profile {issued.profile} "
                       f"-> {out}" + ("" if issued.linted else " (NOT linted: --no-lint)"))
        else:
            click.echo(text, nl=False)
        sys.stdout.flush()
    except (OSError, UnicaError) as e:  # an OSError here is standard output's (the file's is an OutputError)
        if isinstance(e, OSError):
            e = OutputError(f"cannot write to standard output: {e.strerror or e}")
        raise OutputError(_not_written([issued], issued.ca, chain, e)) from None


@click.command("issue-batch")
@click.option("--ca", "ca_name", shell_complete=complete_ca, required=True, metavar="NAME", help="The issuing CA.")
@click.option("--profile", shell_complete=complete_profile, required=True, metavar="NAME", help="Certificate profile.")
@click.option("--out-dir", required=True, metavar="DIR", help="Write NAME.pem here per CSR (an existing directory).")
@click.option("--requester", default=None, metavar="ID", help="Who asked (recorded with the certificates).")
@click.option("--no-lint", is_flag=True,
              help="Skip pkilint before signing (bulk re-issuance only; recorded in the audit log).")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=500, show_default=True, metavar="N",
              help="Requests per batch: each batch is two transactions.")
@click.argument("csr_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@as_option
@pin_file_option
@passphrase_file_option
@db_option
@json_option
def issue_batch_cmd(ca_name, profile, out_dir, requester, no_lint, batch_size, csr_files, pin_file, passphrase_file,
                    db, as_json) -> None:
    """Issue one certificate per CSR file, in batches: each batch's intents are recorded in one
    transaction before any signature, its certificates stored in a second (bulk re-issuance).
    Progress goes to stderr. Refused requests are listed; the command fails if any was refused.

    \b
    Examples:
      unica cert issue-batch --ca issuing --profile enterprise-auth \\
          --out-dir issued/ requests/*.csr
    """
    from unica.boundedio import MAX_CSR, read_limited
    from unica.ca.issuance import IssuingCA
    from unica.ca.records import pem
    from unica.errors import InputError, OutputError, PolicyViolation
    from unica.hsm import load_key

    check_output_dir(out_dir)  # before anything is read, signed or stored
    stems: dict[str, str] = {}
    for f in csr_files:
        other = stems.setdefault(Path(f).stem, f)
        if other != f:
            raise InputError(f"{other} and {f} would both be written to {Path(out_dir) / (Path(f).stem + '.pem')}")
    store = _store(db)
    ca = IssuingCA(store, ca_name)
    ca.set_key_loader(lambda: load_key(ca.key_uri, **key_secrets(ca.key_uri, pin_file, passphrase_file)))
    from unica.cli.progress import Progress

    results: list = []
    total = len(csr_files)
    with Progress("unica issue-batch", total if total > batch_size else 0, unit="requests done") as bar:
        for k in range(0, total, batch_size):
            part = csr_files[k:k + batch_size]
            results += ca.issue_many([read_limited(f, MAX_CSR, "CSR") for f in part], profile, requester=requester,
                                     lint=not no_lint, sources=[f"CSR {f}" for f in part], auth=operator_auth())
            bar.update(len(results), note=f"{sum(isinstance(r, Exception) for r in results)} refused")
    d = Path(out_dir)
    report, refused, unwritten, last_error = [], 0, [], None
    for f, r in zip(csr_files, results):
        if isinstance(r, Exception):
            refused += 1
            report.append({"csr": f, "refused": " ".join(str(r).split())})
            continue
        out = d / (Path(f).stem + ".pem")
        try:
            write_atomic(out, pem(r.der), what="--out-dir file")
        except OutputError as e:  # issued and stored: listed with its serial, not lost
            unwritten.append(r)
            last_error = e
            report.append({"csr": f, "serial": r.serial_hex, "out": None, "linted": r.linted,
                           "not_written": _one_line(str(e))})
            continue
        report.append({"csr": f, "serial": r.serial_hex, "out": str(out), "linted": r.linted})
    if as_json:
        emit_json(report)
    else:
        for r in report:
            click.echo(f"refused {r['csr']}: {r['refused']}" if "refused" in r else
                       f"issued serial {r['serial']} NOT written: {r['not_written']}" if r["out"] is None else
                       f"issued serial {r['serial']} -> {r['out']}" + ("" if r["linted"] else " (NOT linted)"))
    if unwritten:
        raise OutputError(_not_written(unwritten, ca_name, False, last_error)
                          + (f"; {refused} of {len(csr_files)} requests refused" if refused else ""))
    if refused:
        raise PolicyViolation(f"{refused} of {len(csr_files)} requests refused (see above)")


# --- unica cert ----------------------------------------------------------------------


class _CertGroup(click.Group):
    """``unica cert``: issue, list, show, export here; revoke, hold and release are defined in
    :mod:`unica.cli.revoke`, imported (and registered here) when one of them is used or listed."""

    ELSEWHERE = ("revoke", "hold", "release")

    def get_command(self, ctx, cmd_name):
        if cmd_name in self.ELSEWHERE:
            import unica.cli.revoke  # noqa: F401
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx):
        import unica.cli.revoke  # noqa: F401

        return super().list_commands(ctx)


@click.group("cert", cls=_CertGroup)
def cert_group() -> None:
    """Certificates: issue, issue-batch, revoke, hold, release, list, show, export."""


cert_group.add_command(issue_cmd)
cert_group.add_command(issue_batch_cmd)


@cert_group.command("list")
@click.option("--ca", "ca_name", shell_complete=complete_ca, default=None, metavar="NAME", help="Only this CA's certificates.")
@click.option("--issued-by", "issued_by", shell_complete=complete_ca, default=None, metavar="NAME", help="Same as --ca.")
@click.option("--profile", shell_complete=complete_profile, default=None, metavar="NAME",
              help="Only certificates issued under this profile.")
@click.option("--status", default=None, metavar="STATUS", help="pending, valid, revoked, hold, failed, expired.")
@click.option("--expiring", default=None, metavar="DURATION", help="Valid ones expiring within, e.g. 30d.")
@click.option("--expires-within", "expires_within", type=click.IntRange(1, 36500), default=None, metavar="DAYS",
              help="Valid ones expiring within DAYS days (as --expiring DAYSd).")
@click.option("--expires-before", "expires_before", default=None, metavar="WHEN",
              help="Valid ones expiring before WHEN: a date (2027-01-01) or an ISO 8601 time; no zone means UTC.")
@click.option("--subject", "subject_text", default=None, metavar="TEXT",
              help="Subject DN contains TEXT (case-insensitive), e.g. 'O=示例' or 'example.cn'.")
@click.option("--uscc", default=None, metavar="CODE",
              help="Subject organizationIdentifier is this Unified Social Credit Code (bare or NTRCN-).")
@click.option("--requester", default=None, metavar="ID", help="Only certificates this requester asked for.")
@click.option("--limit", type=LIMIT, default=None, metavar="N", help="At most N certificates.")
@db_option
@json_option
def cert_list(ca_name, issued_by, profile, status, expiring, expires_within, expires_before, subject_text, uscc,
              requester, limit, db, as_json) -> None:
    """List certificates; the filters are combined (all must match).

    \b
    Examples:
      unica cert list --status valid --expires-within 30
      unica cert list --subject 'O=示例' --profile enterprise-sign
      unica cert list --uscc 91350100M000100Y43 --json
    """
    import datetime as dt

    from unica.ca.certs import CertFilter, list_certs
    from unica.errors import InputError
    from unica.policies import parse_duration

    if ca_name and issued_by and ca_name != issued_by:
        raise InputError("--ca and --issued-by name different CAs")
    within = None
    if expiring:
        try:
            within = parse_duration(expiring)
        except ValueError as e:
            raise InputError(f"--expiring: {e}") from None
    if expires_within is not None:
        days = dt.timedelta(days=expires_within)
        within = days if within is None else min(within, days)
    before = None
    if expires_before is not None:
        from unica.cli.when import parse_when

        before = parse_when(expires_before, "--expires-before")
    rows = list_certs(_store(db), CertFilter(ca=ca_name or issued_by, profile=profile, status=status,
                                             expiring_within=within, requester=requester, limit=limit,
                                             subject=subject_text, uscc=uscc, expires_before=before))
    if as_json:
        emit_json(rows)
        return
    table([[r["serial"], r["ca"], r["status"], r["profile"], r["not_after"][:10], r["subject"]] for r in rows],
          ["SERIAL", "CA", "STATUS", "PROFILE", "NOT-AFTER", "SUBJECT"])


@cert_group.command("show")
@click.argument("serial")
@click.option("--ca", "ca_name", shell_complete=complete_ca, default=None, metavar="NAME")
@db_option
@json_option
def cert_show(serial, ca_name, db, as_json) -> None:
    """Show the certificate with SERIAL (hex).

    \b
    Examples:
      unica cert show 5F3A9C01D27E
      unica cert show 5F3A9C01D27E --ca issuing --json
    """
    from unica.ca.certs import show_cert

    info = show_cert(_store(db), serial, ca_name)
    if as_json:
        emit_json(info)
        return
    pem_text = info.pop("pem")
    show_fields(info)
    if pem_text:
        click.echo(pem_text, nl=False)


@cert_group.command("export")
@click.argument("serial")
@click.option("--ca", "ca_name", shell_complete=complete_ca, default=None, metavar="NAME")
@click.option("--chain", is_flag=True, help="Append the CA chain.")
@click.option("--out", metavar="FILE", default=None, help="Write here instead of stdout.")
@db_option
def cert_export(serial, ca_name, chain, out, db) -> None:
    """Print the certificate with SERIAL (PEM).

    \b
    Examples:
      unica cert export 5F3A9C01D27E --ca issuing --out zhangsan.pem
      unica cert export 5F3A9C01D27E --ca issuing --chain
    """
    from unica.ca.certs import export_cert

    check_output_path(out)
    write_atomic(out, export_cert(_store(db), serial, ca_name, chain=chain))


# --- unica profile -------------------------------------------------------------------


@click.group("profile")
def profile_group() -> None:
    """Certificate profiles: built-in and operator (UNICA_HOME/profiles/NAME.toml)."""


@profile_group.command("list")
@json_option
def profile_list(as_json) -> None:
    """List the profiles.

    \b
    Examples:
      unica profile list
      unica profile list --json
    """
    from unica.policies import list_profiles

    profiles = list_profiles()
    if as_json:
        emit_json([p.to_dict() for p in profiles])
        return
    from unica.policies import BUILTIN_DIR

    table([[p.name, p.kind, "built-in" if Path(p.source).parent == BUILTIN_DIR else "operator",
            p.to_dict()["validity"], p.description] for p in profiles],
          ["NAME", "KIND", "ORIGIN", "VALIDITY", "DESCRIPTION"])


@profile_group.command("show")
@click.argument("name", shell_complete=complete_profile)
@json_option
def profile_show(name, as_json) -> None:
    """Show profile NAME in full, as the TOML of a profile file: every setting with its effective
    value, ready to copy as a template (save as UNICA_HOME/profiles/NEW.toml, edit, then
    'unica profile check FILE').

    \b
    Examples:
      unica profile show enterprise-sign
      unica profile show enterprise-sign > unica-data/profiles/customs-sign.toml
    """
    from unica.policies import BUILTIN_DIR, get_profile

    p = get_profile(name)
    if as_json:
        emit_json(p.to_dict())
        return
    origin = "built-in" if Path(p.source).parent == BUILTIN_DIR else f"from {p.source}"
    click.echo(f"# profile {p.name} ({origin}), with every setting at its effective value.\n"
               f"# A template: save as $UNICA_HOME/profiles/NEW-NAME.toml, edit, check with 'unica profile check FILE'.\n"
               + _profile_toml(p.to_dict()), nl=False)


@profile_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
def profile_check(file, as_json) -> None:
    """Check a profile FILE strictly (unknown keys, types, impossible combinations).

    \b
    Examples:
      unica profile check unica-data/profiles/customs-sign.toml
    """
    from unica.policies import load_profile_file

    p = load_profile_file(file)
    if as_json:
        emit_json(p.to_dict())
    else:
        click.echo(f"profile {file}: OK ({p.name}, {p.kind})")


@profile_group.command("add")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--replace", is_flag=True, help="Replace the operator profile of that name (else refused if it exists).")
@as_option
@db_option
@json_option
def profile_add(file, replace, db, as_json) -> None:
    """Install profile FILE as operator profile NAME (the file's name without .toml), after
    checking it strictly; audited. Under dual control the request carries the file's text: what
    is installed is exactly the approved text.

    \b
    Examples:
      unica profile add customs-sign.toml --as 'pkcs11:token=alice;object=operator'
      unica profile add customs-sign.toml --replace
    """
    from unica.boundedio import MAX_TEXT, read_limited
    from unica.ca.profiles import add_profile
    from unica.errors import ProfileError

    raw = read_limited(file, MAX_TEXT, "profile", unreadable=ProfileError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError(f"profile {file}: not UTF-8 text") from None
    stem = Path(file).name
    name = stem[:-5] if stem.endswith(".toml") else stem
    info = add_profile(_store(db), name, text, replace=replace, auth=operator_auth())
    if as_json:
        emit_json(info)
    else:
        click.echo(f"profile {info['profile']} ({info['kind']}) {info['action']}: {info['path']}")


@profile_group.command("remove")
@click.argument("name", shell_complete=complete_profile)
@as_option
@db_option
@json_option
def profile_remove(name, db, as_json) -> None:
    """Remove operator profile NAME (refused while a CA lists it or an RA office uses it); audited.

    \b
    Examples:
      unica profile remove customs-sign-2019 --as 'pkcs11:token=alice;object=operator'
    """
    from unica.ca.profiles import remove_profile

    info = remove_profile(_store(db), name, auth=operator_auth())
    if as_json:
        emit_json(info)
    else:
        click.echo(f"profile {info['profile']} removed: {info['path']}")


def _toml_value(v) -> str:
    """A TOML value: strings as basic strings (JSON's escapes are TOML's; DEL escaped too), lists inline."""
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v), ensure_ascii=False).replace("\x7f", "\\u007f")


def _profile_toml(d: dict) -> str:
    """The TOML profile file for ``Profile.to_dict()`` ``d``: loaded back (tomllib, then
    'unica profile check' / UNICA_HOME/profiles) it is the same profile. What the file format
    does not hold is left out: name and source (the file's name and place), basic_constraints.ca
    (the kind says it), an absent path length, name constraints or policy, and the criticality of
    an empty extended key usage."""
    lines = [f"{k} = {_toml_value(d[k])}" for k in ("description", "kind", "validity", "ocsp_nocheck")]
    tables = {
        "key_usage": d["key_usage"],
        "extended_key_usage": {"usages": d["extended_key_usage"]["usages"],
                               **({"critical": d["extended_key_usage"]["critical"]}
                                  if d["extended_key_usage"]["usages"] else {})},
        "basic_constraints": {k: v for k, v in d["basic_constraints"].items() if k != "ca" and v is not None},
        "keys": d["keys"],
        "subject": d["subject"],
        "subject_alt_name": d["subject_alt_name"],
        "name_constraints": {k: v for k, v in (d.get("name_constraints") or {}).items() if v},
        "revocation_info": d["revocation_info"],
        "csr": d["csr"],
    }
    for name, table in tables.items():
        if table:
            lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    for policy in d["certificate_policies"]:
        lines += ["", "[[certificate_policies]]"] + [f"{k} = {_toml_value(v)}" for k, v in policy.items()
                                                     if v is not None]
    return "\n".join(lines) + "\n"


COMMANDS = [init_cmd, ca_group, cert_group, profile_group]
