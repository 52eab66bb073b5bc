"""``unica verify``: check certificates, CMS/CAdES signatures and signed PDFs.

Exit status: 0 TOTAL-PASSED, 10 TOTAL-FAILED, 20 INDETERMINATE; input that cannot be read
at all is an error (one line on stderr, exit 2).

Policy inputs (RFC 5280 6.1.1): --policy OID (repeatable: the user-initial-policy-set, default
anyPolicy), --require-explicit-policy, --inhibit-policy-mapping, --inhibit-any-policy; --strict
also applies the RFC 5280 section 4 profile rules to the CA certificates. Revocation is
hard-fail unless --revocation soft-fail (an explicit opt-in) or off is given.

Every input file is read with a size limit (unica.boundedio): a certificate file, CRL, OCSP
response, signature or PDF larger than its limit, /dev/zero or an endless pipe is refused
after at most limit + 1 bytes. FILE (and --data) may be ``-`` for standard input.
"""

from __future__ import annotations

import re

import click

from unica.cli.common import emit_json, json_option

EXIT_PASSED = 0
EXIT_TOTAL_FAILED = 10
EXIT_INDETERMINATE = 20


@click.group("verify")
def verify_group() -> None:
    """Verify certificates and signatures (exit 0 TOTAL-PASSED, 10 TOTAL-FAILED, 20 INDETERMINATE)."""


def _common(f):
    opts = [
        click.option("--trust", "trust", multiple=True, type=click.Path(dir_okay=False, exists=False),
                     help="Trust anchor certificate file (PEM may hold several). Repeatable. Required."),
        click.option("--untrusted", "untrusted", multiple=True, type=click.Path(dir_okay=False),
                     help="Extra intermediate CA certificates for path building. Repeatable."),
        click.option("--at", "at", default=None, metavar="WHEN",
                     help="Validation time (point-in-time validation): a date or an ISO 8601 time; no zone "
                          "means UTC."),
        click.option("--usage", default="document-signing", show_default=True,
                     help="document-signing, client-auth, server-auth, timestamping, any, or "
                          "'ku:digitalSignature,nonRepudiation;eku:clientAuth'."),
        click.option("--offline", is_flag=True, help="Fetch nothing over the network."),
        click.option("--revocation", type=click.Choice(["hard-fail", "soft-fail", "off"]), default="hard-fail",
                     show_default=True,
                     help="hard-fail: every certificate below the trust anchor needs a current CRL or OCSP "
                          "response, else INDETERMINATE/TRY_LATER. soft-fail: an explicit opt-in to accept a "
                          "certificate for which no revocation data can be had (the report says soft-fail was "
                          "used; a revocation found still fails). off: no revocation check."),
        click.option("--crl", "crls", multiple=True, type=click.Path(dir_okay=False),
                     help="A CRL (PEM or DER) to use. Repeatable."),
        click.option("--ocsp-response", "ocsp_responses", multiple=True, type=click.Path(dir_okay=False),
                     help="A DER OCSP response to use. Repeatable."),
        click.option("--policy", "policies", multiple=True, metavar="OID",
                     help="An acceptable certificate policy, dotted OID (RFC 5280 user-initial-policy-set). "
                          "Repeatable; default anyPolicy."),
        click.option("--require-explicit-policy", is_flag=True,
                     help="The path must be valid for at least one policy of the set (initial-explicit-policy)."),
        click.option("--inhibit-policy-mapping", is_flag=True,
                     help="Do not follow policy mappings (initial-policy-mapping-inhibit)."),
        click.option("--inhibit-any-policy", is_flag=True,
                     help="anyPolicy in a CA certificate matches nothing (initial-any-policy-inhibit)."),
        click.option("--strict", is_flag=True,
                     help="Also apply the RFC 5280 section 4 profile rules to the CA certificates (critical "
                          "basicConstraints, key identifiers, ...); default: path validation (section 6) only."),
        json_option,
    ]
    for o in reversed(opts):
        f = o(f)
    return f


_OID = re.compile(r"(0|1|2)\.(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def _policy_oids(policies) -> list[str]:
    """--policy values, checked: dotted OIDs (first arc 0-2; second arc at most 39 under 0 and 1)."""
    from cryptography import x509

    from unica.errors import InputError

    out = []
    for text in policies:
        oid = text.strip()
        m = _OID.fullmatch(oid)
        if not m or (m.group(1) != "2" and int(m.group(2)) > 39) or len(oid) > 256:
            raise InputError(f"--policy {text!r}: not a dotted OID (e.g. 2.16.156.112554.1.1; anyPolicy is 2.5.29.32.0)")
        try:
            x509.ObjectIdentifier(oid)
        except ValueError as e:
            raise InputError(f"--policy {text!r}: not a valid OID: {e}") from None
        if oid not in out:
            out.append(oid)
    return out


def _path_policy(opts: dict) -> dict:
    """The library's policy keywords, only those set (the defaults are the library's own)."""
    kw: dict = {}
    if opts["policies"]:
        kw["policies"] = _policy_oids(opts["policies"])
    for flag in ("require_explicit_policy", "inhibit_policy_mapping", "inhibit_any_policy", "strict"):
        if opts[flag]:
            kw[flag] = True
    return kw


def _verifier(opts: dict):
    import dataclasses

    from unica.errors import InputError
    from unica.verify import Verifier
    from unica.verify.revocation import policy_named
    from unica.verify._util import read_bytes

    if not opts["trust"]:
        raise InputError("--trust is required (a trust anchor certificate file)")
    path_kw = _path_policy(opts)  # bad OIDs refused before any file is read
    pol = policy_named(opts["revocation"])
    if opts["offline"]:
        pol = dataclasses.replace(pol, fetch=False)
    try:
        return Verifier(list(opts["trust"]), intermediates=list(opts["untrusted"]), revocation=pol,
                        crls=[read_bytes(c, "CRL")[0] for c in opts["crls"]],
                        ocsp_responses=[read_bytes(o, "OCSP response")[0] for o in opts["ocsp_responses"]],
                        usage=opts["usage"], **path_kw)
    except ValueError as e:
        raise InputError(f"bad verification option: {e}") from None


def _input(src: str, what: str):
    """``src`` for the library: the path itself, or the bytes of standard input for ``-``."""
    if src != "-":
        return src
    from unica.boundedio import limit_for, read_limited
    from unica.errors import VerificationError

    return read_limited(src, limit_for(what), what, stdin=True, unreadable=VerificationError)


def _exit(ctx: click.Context, indication) -> None:
    code = {"TOTAL-PASSED": EXIT_PASSED, "TOTAL-FAILED": EXIT_TOTAL_FAILED}.get(indication.value, EXIT_INDETERMINATE)
    ctx.exit(code)


def _at(text):
    """--at, read by the one parser of command-line times (unica.cli.when): no zone means UTC."""
    from unica.cli.when import parse_when

    return parse_when(text, "--at") if text else None


def _t(t) -> str:
    return f"{t:%Y-%m-%dT%H:%M:%SZ}"


def _reason(reason) -> str:
    """A revocation reason by its RFC 5280 name (the report carries those; codes and
    cryptography names are mapped too)."""
    if reason is None:
        return "unspecified (no reason code)"
    try:
        from unica.verify.report import rfc5280_reason_name

        return rfc5280_reason_name(reason) or str(reason)
    except (ImportError, TypeError, ValueError):
        return str(reason)


def _show_cert_report(rep, indent="") -> None:
    sub = f" / {rep.sub_indication.value}" if rep.sub_indication else ""
    click.echo(f"{indent}Certificate: {rep.indication.value}{sub}")
    s = rep.signer
    click.echo(f"{indent}  subject:      {s.subject}")
    if s.organization:
        click.echo(f"{indent}  organisation: {s.organization}")
    org_id = getattr(s, "organization_identifier", None)
    if org_id:
        uscc = f"  (USCC {s.uscc})" if s.uscc and s.uscc_source == "organizationIdentifier" else ""
        click.echo(f"{indent}  organizationIdentifier: {org_id}{uscc}")
    if s.uscc and not (org_id and s.uscc_source == "organizationIdentifier"):
        click.echo(f"{indent}  USCC:         {s.uscc} (from {s.uscc_source})")
    click.echo(f"{indent}  usage:        {rep.usage}")
    click.echo(f"{indent}  validated at: {_t(rep.validation_time)}")
    if rep.path:
        click.echo(f"{indent}  path:")
        for c in rep.path:
            algs = f", {c.public_key} key, {c.signature_algorithm}" if c.signature_algorithm else ""
            click.echo(f"{indent}    - {c.subject}  (serial {c.serial}, {c.not_before:%Y-%m-%d}..{c.not_after:%Y-%m-%d}"
                       f"{algs})")
    policy = getattr(rep, "revocation_policy", None)
    if policy == "soft-fail":
        click.echo(f"{indent}  revocation policy: soft-fail (explicit opt-in: a certificate without revocation "
                   "data is accepted)")
    elif policy:
        click.echo(f"{indent}  revocation policy: {policy}")
    for e in rep.revocation:
        if e.status == "revoked":
            when = _t(e.revocation_time) if e.revocation_time else "unknown time"
            origin = f", {e.origin}" if e.origin and e.origin != "-" else ""
            click.echo(f"{indent}  REVOKED:      {e.certificate} on {when}, reason {_reason(e.revocation_reason)}"
                       f" (from {e.source}{origin})")
            continue
        times = " ".join(f"{k}={_t(getattr(e, k))}" for k in ("this_update", "next_update") if getattr(e, k) is not None)
        click.echo(f"{indent}  revocation:   {e.source} {e.status} [{e.origin}] {times}"
                   + (f" ({e.message})" if e.message else ""))
    valid = getattr(rep, "valid_policies", ()) or ()
    if valid:
        click.echo(f"{indent}  policies:")
        for vp in valid:
            mapped = getattr(vp, "issuer_domain_policy", None)
            via = f"  (mapped from {mapped})" if mapped and mapped != vp.policy else ""
            click.echo(f"{indent}    - {vp.policy}{via}")
            for q in getattr(vp, "qualifiers", ()) or ():
                if getattr(q, "cps_uri", None):
                    click.echo(f"{indent}        CPS: {q.cps_uri}")
                if getattr(q, "kind", None) == "user-notice" or getattr(q, "notice_text", None):
                    ref = ""
                    if getattr(q, "organization", None):
                        nums = ", ".join(map(str, getattr(q, "notice_numbers", ()) or ()))
                        ref = f" [{q.organization}{' ' + nums if nums else ''}]"
                    text = getattr(q, "notice_text", None)
                    click.echo(f"{indent}        user notice: {text if text is not None else '(no text)'}{ref}")
    for m in rep.messages:
        click.echo(f"{indent}  ! {m}")


def _show_sig_report(rep, indent="") -> None:
    sub = f" / {rep.sub_indication.value}" if rep.sub_indication else ""
    title = f"Signature {rep.field_name!r}" if rep.field_name else "Signature"
    click.echo(f"{indent}{title}: {rep.indication.value}{sub}  ({rep.format})")
    if rep.signing_time:
        click.echo(f"{indent}  {'signing time:':22}{rep.signing_time:%Y-%m-%dT%H:%M:%SZ} ({rep.signing_time_source})")
    for k, v in rep.checks.items():
        click.echo(f"{indent}  {k + ':':22}{v}")
    if rep.coverage:
        click.echo(f"{indent}  {'coverage:':22}{rep.coverage}; modifications: {rep.modification_level}")
    for m in rep.messages:
        click.echo(f"{indent}  ! {m}")
    if rep.certificate is not None:
        _show_cert_report(rep.certificate, indent + "  ")
    if rep.timestamp is not None:
        click.echo(f"{indent}  Time-stamp token:")
        _show_sig_report(rep.timestamp, indent + "    ")
    if not rep.field_name:  # CMS; a PDF lists its time-stamps once, after its signatures
        _show_timestamps(getattr(rep, "timestamps", ()), indent + "  ")


def _show_timestamps(entries, indent="") -> None:
    """Each time-stamp and the proof of existence it gave to what."""
    if entries:
        click.echo(f"{indent}Time-stamps (proofs of existence):")
    for t in entries:
        sub = f" / {t.sub_indication.value}" if t.sub_indication else ""
        where = f" {t.field_name!r}" if t.field_name else ""
        click.echo(f"{indent}  - {t.kind}{where}: genTime {_t(t.gen_time) if t.gen_time else '?'}, "
                   f"TSA {t.tsa or '?'}: {t.indication.value}{sub}"
                   + (f" (TSA certificate validated at {_t(t.validated_at)})" if t.validated_at else ""))
        if t.proof_of_existence is not None:
            what = ", ".join(t.proof_of_existence_for) or "nothing it covers was validated with it"
            click.echo(f"{indent}      proof of existence at {_t(t.proof_of_existence)} for: {what}")
        else:
            click.echo(f"{indent}      no proof of existence")


@verify_group.command("cert")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--server-name", default=None, help="TLS profile: the host name / IP the certificate must match.")
@_common
@click.pass_context
def verify_cert(ctx, file, server_name, as_json, **opts):
    """Validate a certificate: path to a trust anchor, validity, usage, policies, revocation.

    \b
    Examples:
      unica verify cert zhangsan.pem --trust root.pem --untrusted issuing.pem
      unica verify cert www.pem --trust root.pem --usage server-auth --server-name www.example.cn
      unica verify cert zhangsan.pem --trust root.pem --crl root.crl --crl issuing.crl --offline
    """
    from unica.verify._util import load_certificates

    v = _verifier(opts)
    certs = load_certificates(_input(file, "certificate"),
                              "certificate from standard input" if file == "-" else "certificate")
    rep = v.validate_certificate(certs[0], intermediates=certs[1:], at=_at(opts["at"]), server_name=server_name)
    if as_json:
        emit_json(rep.to_dict())
    else:
        _show_cert_report(rep)
    _exit(ctx, rep.indication)


@verify_group.command("cms")
@click.argument("sig", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--data", "data", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="The signed content of a detached signature ('-' for standard input).")
@click.option("--max-data-size", default=None, metavar="SIZE",
              help="Refuse --data larger than this (e.g. 64K, 256M, 2G; default UNICA_MAX_DATA_SIZE, else 256M).")
@_common
@click.pass_context
def verify_cms_cmd(ctx, sig, data, max_data_size, as_json, **opts):
    """Verify a CMS / CAdES signature (attached, or detached with --data).

    \b
    Examples:
      unica verify cms declaration.txt.p7s --data declaration.txt --trust root.pem
      unica verify cms signed.p7s --trust root.pem --crl root.crl --crl issuing.crl \\
          --offline --json
    """
    from unica.boundedio import data_limit, read_limited
    from unica.errors import InputError, VerificationError

    if sig == "-" and data == "-":
        raise InputError("only one of SIG and --data can be '-' (standard input)")
    limit = data_limit(max_data_size)
    v = _verifier(opts)
    content = read_limited(data, limit, "data file", stdin=True, unreadable=VerificationError) if data else None
    rep = v.verify_cms(_input(sig, "signature"), content, at=_at(opts["at"]))
    if as_json:
        emit_json(rep.to_dict())
    else:
        _show_sig_report(rep)
    _exit(ctx, rep.indication)


@verify_group.command("pdf")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@_common
@click.pass_context
def verify_pdf_cmd(ctx, file, as_json, **opts):
    """Verify every signature of a PDF (PAdES).

    \b
    Examples:
      unica verify pdf declaration-signed.pdf --trust root.pem
      unica verify pdf declaration-signed.pdf --trust root.pem --at 2026-11-20T08:00:00Z \\
          --revocation soft-fail
    """
    v = _verifier(opts)
    rep = v.verify_pdf(_input(file, "PDF"), at=_at(opts["at"]))
    if as_json:
        emit_json(rep.to_dict())
    else:
        sub = f" / {rep.sub_indication.value}" if rep.sub_indication else ""
        click.echo(f"Document: {rep.indication.value}{sub}  ({len(rep.signatures)} signature(s))")
        for m in rep.messages:
            click.echo(f"  ! {m}")
        for s in rep.signatures:
            _show_sig_report(s, "  ")
        _show_timestamps(rep.timestamps, "  ")
    _exit(ctx, rep.indication)


COMMANDS = [verify_group]
