"""``unica token``: the tokens (smart cards, USB keys, HSM partitions) a PKCS#11 module shows.

Life cycle (init, change-pin, unblock, info, objects) and enrollment from the token
(keygen, csr, import-cert, renew, enroll).
"""

from __future__ import annotations

from pathlib import Path

import click

from unica.cli.acting import as_option
from unica.cli.common import (emit_json, json_option, module_option, pin_file_option, secret, secret_file_option,
                              show_fields, so_pin, table, user_pin)
from unica.cli.completion import complete_ca, complete_profile
from unica.errors import OutputError
from unica.hsm.keytypes import KeyType

NEW_PIN_ENV = "UNICA_NEW_PIN"
#: the same choices as every --key-type (a token refuses ed25519 with a clear error)
KEY_TYPES = [k.value for k in KeyType]

_module_option = module_option


def _token_option(f):
    return click.option("--token", "token", required=True, metavar="LABEL", help="Token label.")(f)


def _key_type_option(f):
    return click.option("--key-type", "--type", "key_type", type=click.Choice(KEY_TYPES), required=True,
                        help="Key type and size (--type is the older name).")(f)


_so_pin_file_option = secret_file_option("--so-pin-file", "token SO PIN", "UNICA_SO_PIN")
_new_pin_file_option = secret_file_option("--new-pin-file", "new token user PIN", NEW_PIN_ENV)


def _new_pin(new_pin_file, token: str | None = None) -> str:
    return secret(NEW_PIN_ENV, new_pin_file, "new token user PIN", confirm=True,
                  prompt=f"New user PIN for token {token!r}" if token else None)


def _subject_name(subject: str | None, uscc: str | None):
    """The one DN parser (unica.policies.dn: RFC 4514 or /A=v/..., encoded C, ST, L, O, OU, CN...),
    plus the checked USCC in organizationIdentifier."""
    from unica.ca.names import parse_dn
    from unica.errors import InputError
    from unica.policies.uscc import USCCError, validate_uscc

    name = parse_dn(subject) if subject is not None else None
    if uscc is None:
        return name, None
    try:
        code = validate_uscc(uscc.strip().upper())
    except USCCError as e:
        raise InputError(f"bad --uscc {uscc!r}: {e}") from None
    if name is not None:
        from unica.hsm.enroll import with_org_identifier
        from unica.policies.dn import ordered

        name = ordered(with_org_identifier(name, code))  # the one DN order (unica.policies.dn)
    return name, code


def _token_pin(token: str, module_path, pin_file) -> str:
    """The user PIN, asked only once the token is there: a missing token is said first."""
    from unica.hsm.tokens import require_token

    require_token(token, module_path)
    return user_pin(pin_file, token)


def _check_subject(name, profile_name: str | None) -> None:
    """The subject the CA would refuse, refused here (PolicyViolation, exit 3) before the token
    is touched: the X.520 bounds and string rules always, the profile's subject rules with
    ``profile_name`` (profiles are local files -- built-in or $UNICA_HOME/profiles -- so the
    check needs no CA database; what only the CA knows, e.g. its allowed profiles or name
    constraints, is still checked by the CA)."""
    from unica.ca.names import apply_subject_rules
    from unica.policies import SubjectRules, get_profile
    from unica.policies.model import SUBJECT_ATTRIBUTES, Profile

    if name is None:
        return
    if profile_name is None:
        import datetime as dt

        prof = Profile(name="(any)", source="", kind="end-entity", validity=dt.timedelta(days=1),
                       subject=SubjectRules(allowed=tuple(SUBJECT_ATTRIBUTES)))
        apply_subject_rules(prof, name, "subject")
        return
    apply_subject_rules(get_profile(profile_name), name, f"subject under profile {profile_name!r}")


def _check_key_type(profile_name: str | None, key_type: str) -> None:
    from unica.errors import PolicyViolation
    from unica.policies import get_profile

    if profile_name is None:
        return
    prof = get_profile(profile_name)
    if prof.key_types and key_type not in prof.key_types:
        raise PolicyViolation(f"key type {key_type} is not allowed by profile {profile_name!r} "
                              f"(allowed: {', '.join(prof.key_types)})")


def _write_out(data: bytes, out: str | None, what: str = "--out") -> None:
    """Standard output (None or ``-``) or an atomically written file (checked before any work)."""
    from unica.cli.output import write_atomic

    write_atomic(out, data, what=what)


def _check_out(out: str | None, what: str = "--out") -> None:
    from unica.cli.output import check_output_path

    check_output_path(out, what)


def _ca_secret_options(f):
    from unica.cli.ca import db_option

    f = db_option(f)
    f = secret_file_option("--ca-passphrase-file", "passphrase of the CA's key file", "UNICA_PASSPHRASE")(f)
    f = secret_file_option("--ca-pin-file", "PIN of the CA's token", "UNICA_PIN")(f)
    return f


@click.group("token")
def token_group() -> None:
    """PKCS#11 tokens: list, initialise, PINs, objects, and enrollment (keygen, csr, import-cert)."""


@token_group.command("list")
@_module_option
@json_option
def token_list(module_path, as_json: bool) -> None:
    """List slots with a token: label, serial, model, flags.

    \b
    Examples:
      unica token list
      unica token list --module /usr/lib/softhsm/libsofthsm2.so
    """
    from unica.hsm.tokens import list_tokens

    tokens = list_tokens(module_path)
    if as_json:
        emit_json([t.to_dict() for t in tokens])
        return
    table([[str(t.slot_id), t.label, t.serial, t.manufacturer, t.model, ",".join(t.flags)] for t in tokens],
          ["SLOT", "LABEL", "SERIAL", "MANUFACTURER", "MODEL", "FLAGS"])


@token_group.command("info")
@_token_option
@_module_option
@json_option
def token_info_cmd(token: str, module_path, as_json: bool) -> None:
    """Slot, serial, model, flags and PIN state (as far as the token reports counters).

    \b
    Examples:
      unica token info --token zhangsan
      unica token info --token zhangsan --json
    """
    from unica.hsm.tokens import token_info

    info = token_info(token, module_path)
    if as_json:
        emit_json(info.to_dict())
        return
    show_fields({"label": info.label, "slot": f"{info.slot_id} ({info.slot_description})", "serial": info.serial,
                 "manufacturer": info.manufacturer, "model": info.model, "hardware_version": info.hardware_version,
                 "firmware_version": info.firmware_version, "flags": ",".join(info.flags),
                 "user_pin": info.user_pin_status, "so_pin": info.so_pin_status})


@token_group.command("init")
@click.option("--slot", "slot_id", type=int, default=None, help="Slot id of the token to initialise.")
@click.option("--free", is_flag=True, help="Use the first slot with an uninitialised token.")
@click.option("--label", required=True, metavar="LABEL", help="New token label (at most 32 bytes of UTF-8).")
@click.option("--force", is_flag=True,
              help="Re-initialise a token that is initialised (ERASES all its objects): asks for its current SO PIN, "
                   "which stays its SO PIN.")
@_so_pin_file_option
@pin_file_option
@_module_option
@json_option
def token_init(slot_id, free, label, force, so_pin_file, pin_file, module_path, as_json) -> None:
    """Initialise a token: label, SO PIN, and the user PIN.

    \b
    Examples:
      unica token init --free --label zhangsan
      unica token init --slot 1 --label unica-ca --force
    """
    from unica.hsm.tokens import init_token

    current = _initialised_token(slot_id, module_path) if force and slot_id is not None else None
    if current is not None:  # C_InitToken over an initialised token takes its current SO PIN (and keeps it)
        so = secret("UNICA_SO_PIN", so_pin_file, "current token SO PIN",
                    prompt=f"Current SO PIN of token {current.label!r} in slot {slot_id} (--force erases the token)")
    else:
        so = secret("UNICA_SO_PIN", so_pin_file, "new token SO PIN", confirm=True,
                    prompt=f"New SO PIN for token {label!r}")
    pin = secret("UNICA_PIN", pin_file, "new token user PIN", confirm=True, prompt=f"New user PIN for token {label!r}")
    info = init_token(label=label, so_pin=so, user_pin=pin, slot_id=slot_id, free=free, force=force,
                      path=module_path)
    if as_json:
        emit_json(info.to_dict())
        return
    click.echo(f"initialised token {info.label!r} in slot {info.slot_id} (serial {info.serial})")


def _initialised_token(slot_id: int, module_path):
    """The initialised token in slot ``slot_id`` (None if there is none: init_token says why)."""
    from unica.errors import UnicaError
    from unica.hsm.tokens import list_tokens

    try:
        return next((t for t in list_tokens(module_path) if t.slot_id == slot_id and t.initialized), None)
    except UnicaError:
        return None


def _change_pin(token, pin_file, new_pin_file, module_path) -> None:
    from unica.hsm.tokens import change_pin, require_token

    require_token(token, module_path)  # a missing token is said before a PIN is asked
    old = user_pin(pin_file, token)
    change_pin(token, old, _new_pin(new_pin_file, token), module_path)
    click.echo(f"changed the user PIN of token {token!r}")


@token_group.command("change-pin")
@_token_option
@pin_file_option
@_new_pin_file_option
@_module_option
def token_change_pin(token, pin_file, new_pin_file, module_path) -> None:
    """The user changes their PIN: the current one (UNICA_PIN/--pin-file), and the new one.

    \b
    Examples:
      unica token change-pin --token zhangsan
      unica token change-pin --token zhangsan --pin-file old-pin --new-pin-file new-pin
    """
    _change_pin(token, pin_file, new_pin_file, module_path)


token_group.add_command(token_change_pin, name="set-pin")  # the same command under the issue's name


@token_group.command("unblock")
@_token_option
@_so_pin_file_option
@_new_pin_file_option
@_module_option
def token_unblock(token, so_pin_file, new_pin_file, module_path) -> None:
    """The security officer sets a new user PIN (unblocks a locked one).

    \b
    Examples:
      unica token unblock --token zhangsan
      unica token unblock --token zhangsan --so-pin-file so-pin --new-pin-file new-pin
    """
    from unica.hsm.tokens import unblock_pin

    from unica.hsm.tokens import require_token

    require_token(token, module_path)  # a missing token is said before a PIN is asked
    unblock_pin(token, so_pin(so_pin_file, token), _new_pin(new_pin_file, token), module_path)
    click.echo(f"set a new user PIN on token {token!r}")


@token_group.command("objects")
@_token_option
@click.option("--public-only", is_flag=True, help="Do not log in: list only public objects.")
@pin_file_option
@_module_option
@json_option
def token_objects(token, public_only, pin_file, module_path, as_json) -> None:
    """Keys and certificates on a token: labels, ids, types, sensitivity, certificate subjects.

    \b
    Examples:
      unica token objects --token zhangsan
      unica token objects --token zhangsan --public-only --json
    """
    from unica.hsm.objects import list_objects

    objs = list_objects(token, None if public_only else _token_pin(token, module_path, pin_file), module_path)
    if as_json:
        emit_json([o.to_dict() for o in objs])
        return
    rows = []
    for o in objs:
        if o.kind == "certificate":
            detail = f"subject={o.subject} not-after={o.not_after}"
        elif o.kind in ("private-key", "secret-key"):
            detail = (f"sensitive={_yn(o.sensitive)} extractable={_yn(o.extractable)} "
                      f"never-extractable={_yn(o.never_extractable)} local={_yn(o.local)}")
        else:
            detail = f"local={_yn(o.local)}"
        rows.append([o.kind, o.label or "", o.id.hex() if o.id else "", o.key_type or "", detail])
    table(rows, ["CLASS", "LABEL", "ID", "TYPE", "DETAILS"])


def _yn(v) -> str:
    return "?" if v is None else ("yes" if v else "no")


@token_group.command("keygen")
@_token_option
@click.option("--label", required=True, metavar="LABEL", help="Label of the new key pair.")
@_key_type_option
@click.option("--id", "key_id", default=None, metavar="HEX",
              help="CKA_ID in hex (default: the key identifier, SHA-1 of the key).")
@pin_file_option
@_module_option
@json_option
def token_keygen(token, label, key_type, key_id, pin_file, module_path, as_json) -> None:
    """Generate a key pair on the token (sensitive, never extractable, with a CKA_ID).

    \b
    Examples:
      unica token keygen --token zhangsan --label sign --key-type ec-p256
    """
    from unica.errors import InputError
    from unica.hsm import key_info
    from unica.hsm.enroll import keygen

    kid = None
    if key_id:
        try:
            kid = bytes.fromhex(key_id)
        except ValueError:
            raise InputError(f"--id {key_id!r} is not hex") from None
    key = keygen(token, label, key_type, _token_pin(token, module_path, pin_file), key_id=kid,
                 module_path=module_path)
    info = key_info(key)
    if as_json:
        emit_json(info.to_dict())
        return
    show_fields({"uri": info.uri, "type": info.key_type, "id": info.id.hex() if info.id else None,
                 "spki_sha256": info.spki_sha256})


@token_group.command("csr")
@click.option("--key", "key_uri", required=True, metavar="URI", help="Key URI (pkcs11:token=...;object=...).")
@click.option("--subject", required=True, metavar="DN",
              help="Subject DN, RFC 4514 (CN=...,O=...,C=CN) or /C=CN/O=.../CN=...")
@click.option("--uscc", default=None, metavar="CODE",
              help="Unified Social Credit Code, put in organizationIdentifier (2.5.4.97).")
@click.option("--out", default=None, metavar="FILE", help="Write the PEM request here (default: stdout).")
@click.option("--profile", shell_complete=complete_profile, default=None, metavar="NAME",
              help="Check the subject and key type against this certificate profile first (the one the CA "
                   "will issue under; built-in or $UNICA_HOME/profiles).")
@pin_file_option
def token_csr(key_uri, subject, uscc, out, profile, pin_file) -> None:
    """A PKCS#10 request signed with the key on the token (proof of possession).

    The subject is checked first as a CA checks it: X.520 bounds and string rules always,
    and the rules of --profile when given (exit 3 when refused).

    \b
    Examples:
      unica token csr --key 'pkcs11:token=zhangsan;object=sign' \\
          --subject 'C=CN,O=示例科技有限公司,CN=张三' --uscc 91350100M000100Y43 --profile enterprise-sign \\
          --out zhangsan.csr
    """
    from unica.cli.common import key_secrets
    from unica.hsm import load_key
    from unica.hsm.enroll import csr_pem, make_csr

    name, _ = _subject_name(subject, uscc)
    _check_subject(name, profile)
    _check_out(out)  # before the PIN is used
    key = load_key(key_uri, **key_secrets(key_uri, pin_file, None))
    from unica.hsm.keytypes import key_type_of

    _check_key_type(profile, key_type_of(key.public_key()))
    _write_out(csr_pem(make_csr(key, name)), out)


@token_group.command("import-cert")
@_token_option
@click.argument("cert_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--chain", "chain_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM file of CA certificates to write onto the token too.")
@click.option("--remove-old", is_flag=True, help="Remove other certificates with the same subject (after renewal).")
@pin_file_option
@_module_option
@json_option
def token_import_cert(token, cert_file, chain_file, remove_old, pin_file, module_path, as_json) -> None:
    """Write a certificate onto the token, with the CKA_ID and label of its key.

    \b
    Examples:
      unica token import-cert --token zhangsan zhangsan.pem --chain issuing.pem
    """
    from unica.boundedio import MAX_CERTIFICATE, read_limited
    from unica.hsm.objects import import_certificate, load_certificate_bytes

    certs = load_certificate_bytes(read_limited(cert_file, MAX_CERTIFICATE, "certificate file"),
                                   f"certificate file {cert_file}")
    chain = load_certificate_bytes(read_limited(chain_file, MAX_CERTIFICATE, "chain file"),
                                   f"chain file {chain_file}") if chain_file else []
    res = import_certificate(token, certs, _token_pin(token, module_path, pin_file), chain=chain,
                             remove_old=remove_old,
                             path=module_path)
    if as_json:
        emit_json(res.to_dict())
        return
    key = f"key {res.label!r} (id {res.id.hex()})" if res.label else f"key id {res.id.hex()}"
    click.echo(f"wrote certificate {res.subject!r} for {key} "
               f"and {res.chain_written} CA certificate(s); removed {res.removed} old certificate(s)")


@token_group.command("renew")
@click.option("--key", "key_uri", required=True, metavar="URI", help="URI of the key whose certificate is renewed.")
@click.option("--rekey", is_flag=True, help="Generate a new key on the token (re-key) instead of reusing it.")
@click.option("--new-label", default=None, metavar="LABEL",
              help="Label of the new key with --rekey (default: LABEL-<utc time>).")
@click.option("--subject", default=None, metavar="DN", help="Subject DN (default: the current certificate's subject).")
@click.option("--uscc", default=None, metavar="CODE", help="Unified Social Credit Code (organizationIdentifier).")
@click.option("--out", default=None, metavar="FILE", help="Write the PEM request here (default: stdout).")
@click.option("--ca", "ca_name", shell_complete=complete_ca, default=None, metavar="NAME",
              help="Issue the request with this local CA and import the result.")
@click.option("--profile", shell_complete=complete_profile, default=None, metavar="NAME", help="Certificate profile for --ca.")
@click.option("--remove-old", is_flag=True, help="With --ca: remove the old certificate after importing the new one.")
@pin_file_option
@_ca_secret_options
@as_option
@json_option
def token_renew(key_uri, rekey, new_label, subject, uscc, out, ca_name, profile, remove_old, pin_file,
                ca_pin_file, ca_passphrase_file, db, as_json) -> None:
    """A new request with the same key (renewal) or a new key (--rekey); optionally issue and import it.

    \b
    Examples:
      unica token renew --key 'pkcs11:token=zhangsan;object=sign' --out renewal.csr
      unica token renew --key 'pkcs11:token=zhangsan;object=sign' --rekey --ca issuing \\
          --profile enterprise-sign --remove-old
    """
    from unica.cli.common import key_secrets
    from unica.errors import InputError
    from unica.hsm.enroll import csr_pem, renew

    if remove_old and not ca_name:
        raise InputError("--remove-old needs --ca; without it, pass --remove-old to 'unica token import-cert'")
    if bool(ca_name) != bool(profile):
        raise InputError("--ca and --profile go together")
    name, code = _subject_name(subject, uscc)
    _check_out(out)  # before a key is made
    pin = key_secrets(key_uri, pin_file, None)["pin"]
    r = renew(key_uri, pin, rekey=rekey, new_label=new_label, subject=name, org_identifier=code)
    pem = csr_pem(r.csr)
    if (ca_name is None and not as_json) or out:  # with --json and no --out, the request is in the JSON
        try:
            _write_out(pem, out)
        except OutputError as e:
            if not r.rekeyed:
                raise
            raise OutputError(f"new key {r.key_uri} was generated on the token, but {' '.join(str(e).split())}; "
                              f"make its request again with: unica token csr --key '{r.key_uri}' --subject DN "
                              "--out FILE") from None
    if ca_name is None:
        if as_json:
            emit_json({"key_uri": str(r.key_uri), "rekeyed": r.rekeyed,
                       **({"out": out} if out else {"csr": pem.decode("ascii") if isinstance(pem, bytes) else pem})})
        elif r.rekeyed:
            click.echo(f"new key: {r.key_uri}", err=True)
        return
    res, leaf = _issue_and_import(r.key.uri.token, pem, ca_name, profile, pin, remove_old, r.key.uri.module_path,
                                  ca_pin_file, ca_passphrase_file, db)
    old_key = ""
    if remove_old and r.rekeyed:
        from unica.hsm.objects import delete_objects
        from unica.hsm.uri import parse_key_uri

        old_id = parse_key_uri(r.old_key_uri).id
        if old_id:  # the old pair (and any certificate still carrying its id): the new one is in place
            gone = delete_objects(r.key.uri.token, pin, key_id=old_id, what="both", path=r.key.uri.module_path)
            old_key = f" and the old key (id {old_id.hex()}: {len(gone)} object(s))"
            old_key_objects = len(gone)
    if as_json:
        emit_json({"key_uri": str(r.key_uri), "rekeyed": r.rekeyed, **_issued(leaf, ca_name), **res.to_dict(),
                   **({"old_key_removed": old_key_objects} if old_key else {})})
        return
    issued = _issued(leaf, ca_name)
    click.echo(f"renewed: {res.subject!r} on key {r.key_uri}: serial {issued['serial']} by CA {ca_name}, valid "
               f"until {issued['not_after']} (removed {res.removed} old certificate(s){old_key})")


@token_group.command("enroll")
@_token_option
@click.option("--label", required=True, metavar="LABEL", help="Label of the new key pair.")
@_key_type_option
@click.option("--subject", required=True, metavar="DN",
              help="Subject DN, RFC 4514 (CN=...,O=...,C=CN) or /C=CN/O=.../CN=...")
@click.option("--uscc", default=None, metavar="CODE",
              help="Unified Social Credit Code, put in organizationIdentifier (2.5.4.97).")
@click.option("--ca", "ca_name", shell_complete=complete_ca, required=True, metavar="NAME",
              help="Local CA that issues the certificate.")
@click.option("--profile", shell_complete=complete_profile, required=True, metavar="NAME",
              help="Certificate profile (see 'unica profile list').")
@click.option("--csr-out", default=None, metavar="FILE", help="Also keep the request here.")
@pin_file_option
@_ca_secret_options
@as_option
@_module_option
@json_option
def token_enroll(token, label, key_type, subject, uscc, ca_name, profile, csr_out, pin_file, ca_pin_file,
                 ca_passphrase_file, db, module_path, as_json) -> None:
    """In one step: keygen on the token -> CSR signed on it -> 'unica issue' by a local CA -> import-cert.

    \b
    Examples:
      unica token enroll --token zhangsan --label sign --key-type ec-p256 \\
          --subject 'C=CN,O=示例科技有限公司,CN=张三' --uscc 91350100M000100Y43 --ca issuing \\
          --profile enterprise-sign
    """
    from unica.hsm.enroll import csr_pem, keygen, make_csr

    name, _ = _subject_name(subject, uscc)  # before touching the token: bad input changes nothing
    _check_key_type(profile, key_type)  # and what the profile refuses: refused before a key is made
    _check_subject(name, profile)
    _check_out(csr_out, "--csr-out")
    pin = _token_pin(token, module_path, pin_file)
    from unica.policies import get_profile

    # a profile with keyAgreement (an operator's card: a custodian opens key-backup shares with it)
    # gets a card key that also does ECDH on the card
    agree = "keyAgreement" in get_profile(profile).key_usage
    key = keygen(token, label, key_type, pin, module_path=module_path, key_agreement=agree)
    pem = _remove_key_on_failure(lambda: csr_pem(make_csr(key, name)), token, key, pin, module_path)
    res, leaf = _remove_key_on_failure(
        lambda: _issue_and_import(token, pem, ca_name, profile, pin, False, module_path, ca_pin_file,
                                  ca_passphrase_file, db), token, key, pin, module_path)
    if csr_out:  # a copy, written once the enrollment is complete
        try:
            _write_out(pem, csr_out, "--csr-out")
        except OutputError as e:
            raise OutputError(f"enrolled {res.subject!r} (key {key.uri} with its certificate on token {token!r}), "
                              f"but the request copy was not kept: {' '.join(str(e).split())}") from None
    issued = _issued(leaf, ca_name)
    if as_json:
        emit_json({"key_uri": str(key.uri), **issued, **res.to_dict()})
        return
    click.echo(f"enrolled {res.subject!r}: serial {issued['serial']} by CA {ca_name}, valid until "
               f"{issued['not_after']}; key {key.uri} with its certificate and "
               f"{res.chain_written} CA certificate(s) on token {token!r}")


def _issued(cert, ca_name: str) -> dict:
    """What a script needs of the certificate an enroll / renew had issued: serial, CA, validity."""
    import datetime as dt

    return {"serial": f"{cert.serial_number:x}", "ca": ca_name,
            "not_before": cert.not_valid_before_utc.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "not_after": cert.not_valid_after_utc.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _remove_key_on_failure(step, token, key, pin, module_path):
    """``step()``; when it fails, the key pair this enrollment generated (its CKA_ID, nothing
    else) is removed from the token, so that the same command can simply be run again."""
    from unica.errors import ApprovalPending, UnicaError
    from unica.hsm.objects import delete_objects

    try:
        return step()
    except ApprovalPending as e:  # the issuance waits for approvers: the key stays for the certificate to come
        click.echo(f"unica: note: the new key {key.uri} stays on token {token!r}; once request {e.request_id} is "
                   f"approved: unica cert export SERIAL --chain --out FILE, then unica token import-cert --token "
                   f"{token} FILE", err=True)
        raise
    except Exception as e:
        kid = key.uri.id
        try:
            delete_objects(token, pin, key_id=kid, what="both", path=module_path)
            note = f"; the new key {key.uri.object!r} (id {kid.hex()}) was removed from token {token!r}"
        except UnicaError as cleanup:
            note = (f"; removing the new key failed too ({' '.join(str(cleanup).split())}): remove it with "
                    f"'unica token delete --token {token} --id {kid.hex()} --yes'")
        if isinstance(e, UnicaError):
            e.args = (" ".join(str(e).split()) + note,)
        raise


def _issue_and_import(token, csr_pem_bytes, ca_name, profile, pin, remove_old, module_path,
                      ca_pin_file=None, ca_passphrase_file=None, db=None):
    """Issue ``csr_pem_bytes`` with the local CA, as 'unica cert issue' does (as the operator of
    ``--as`` / UNICA_OPERATOR, see unica.auth), and write the result onto the token: the import's
    result and the certificate issued.

    A refusal is said as the CA's ("CA 'x' did not issue the certificate: ..."), with the exit
    status of its kind (3 refused, 2 bad input, 1 otherwise). Under an approval rule for
    ``cert.issue:PROFILE`` the request waits (ApprovalPending): nothing is imported."""
    from unica.ca.authority import export_ca
    from unica.ca.issuance import IssuingCA
    from unica.cli.acting import operator_auth
    from unica.cli.ca import _store
    from unica.cli.common import key_secrets
    from unica.errors import ApprovalPending, InputError, PolicyViolation, UnicaError
    from unica.hsm import load_key
    from unica.hsm.objects import import_certificate, load_certificate_bytes

    store = _store(db)
    try:
        ca = IssuingCA(store, ca_name)
        ca.set_key_loader(lambda: load_key(ca.key_uri, **key_secrets(ca.key_uri, ca_pin_file, ca_passphrase_file)))
        issued = ca.issue(csr_pem_bytes, profile, source="the request", auth=operator_auth())
    except ApprovalPending:
        raise
    except UnicaError as e:
        kind = next((k for k in (PolicyViolation, InputError) if isinstance(e, k)), UnicaError)
        raise kind(f"CA {ca_name!r} did not issue the certificate: {' '.join(str(e).split())}") from None
    from unica.ca.records import pem

    certs = load_certificate_bytes((pem(issued.der) + export_ca(store, ca_name, chain=True)).encode("ascii"),
                                   "issued certificate")
    # the certificate issued (first; the chain follows) with the import's result
    return import_certificate(token, certs, pin, remove_old=remove_old, path=module_path), certs[0]


@token_group.command("delete")
@_token_option
@click.option("--label", default=None, metavar="LABEL",
              help="CKA_LABEL of the objects (and the objects sharing their CKA_ID).")
@click.option("--id", "key_id", default=None, metavar="HEX", help="CKA_ID of the objects, in hex.")
@click.option("--what", type=click.Choice(["key", "cert", "both"]), default="both", show_default=True,
              help="The key pair (private and public key), the certificate(s), or both.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@pin_file_option
@_module_option
@json_option
def token_delete(token, label, key_id, what, yes, pin_file, module_path, as_json) -> None:
    """Delete a key pair and/or its certificates from the token, by label or id.

    Lists what will be deleted and asks for confirmation (or --yes). Deleting a private key
    cannot be undone: certificates issued for it become unusable for signing.

    \b
    Examples:
      unica token delete --token zhangsan --label sign-old
      unica token delete --token zhangsan --id 01 --what cert --yes
    """
    from unica.cli.common import _can_prompt
    from unica.errors import InputError, KeyNotFound, UnicaError
    from unica.hsm.objects import delete_objects, objects_to_delete

    if (label is None) == (key_id is None):
        raise InputError("name the objects to delete by --label or by --id (one of them)")
    kid = None
    if key_id is not None:
        try:
            kid = bytes.fromhex(key_id)
        except ValueError:
            raise InputError(f"--id {key_id!r} is not hex") from None
        if not kid:
            raise InputError("--id is empty")
    if not yes and not _can_prompt():
        raise InputError("deleting objects from a token needs confirmation: run it on a terminal, or pass --yes")
    pin = _token_pin(token, module_path, pin_file)
    sel = dict(label=label, key_id=kid, what=what, path=module_path)
    plan = objects_to_delete(token, pin, **sel)
    if not plan:
        what_text = {"key": "key", "cert": "certificate", "both": "key or certificate"}[what]
        named = f"labelled {label!r}" if label is not None else f"with id {key_id}"
        raise KeyNotFound(f"no {what_text} {named} on token {token!r}")
    if not yes:
        click.echo(f"to be deleted from token {token!r}:", err=True)
        for o in plan:
            click.echo(f"  {_object_line(o)}", err=True)
        if not click.confirm(f"delete these {len(plan)} object(s)?", default=False, err=True):
            raise UnicaError("not confirmed: nothing was deleted")
    gone = delete_objects(token, pin, **sel)
    if as_json:
        emit_json([o.to_dict() for o in gone])
        return
    for o in gone:
        click.echo(f"deleted {_object_line(o)}")


def _object_line(o) -> str:
    extra = f" subject={o.subject}" if o.subject else (f" type={o.key_type}" if o.key_type else "")
    return f"{o.kind} label={o.label or ''!r} id={o.id.hex() if o.id else ''}{extra}"


COMMANDS = [token_group]
