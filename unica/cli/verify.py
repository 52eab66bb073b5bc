"""``unica verify``: check certificates, CMS/CAdES signatures and signed PDFs.

Exit status: 0 TOTAL-PASSED, 10 TOTAL-FAILED, 20 INDETERMINATE; input that cannot be read
at all is an error (one line on stderr, exit 2).

Every input file is read with a size limit (unica.boundedio): a certificate file, CRL, OCSP
response, signature or PDF larger than its limit, /dev/zero or an endless pipe is refused
after at most limit + 1 bytes. FILE (and --data) may be ``-`` for standard input.
"""

from __future__ import annotations

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
        click.option("--at", "at", default=None,
                     help="Validation time (ISO 8601, UTC if no zone): point-in-time validation."),
        click.option("--usage", default="document-signing", show_default=True,
                     help="document-signing, client-auth, server-auth, timestamping, any, or "
                          "'ku:digitalSignature,nonRepudiation;eku:clientAuth'."),
        click.option("--offline", is_flag=True, help="Fetch nothing over the network."),
        click.option("--revocation", type=click.Choice(["soft-fail", "hard-fail", "off"]), default="soft-fail",
                     show_default=True, help="Revocation policy."),
        click.option("--crl", "crls", multiple=True, type=click.Path(dir_okay=False),
                     help="A CRL (PEM or DER) to use. Repeatable."),
        click.option("--ocsp-response", "ocsp_responses", multiple=True, type=click.Path(dir_okay=False),
                     help="A DER OCSP response to use. Repeatable."),
        json_option,
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _verifier(trust, untrusted, offline, revocation, crls, ocsp_responses, usage):
    import dataclasses

    from unica.errors import InputError
    from unica.verify import Verifier
    from unica.verify.revocation import policy_named
    from unica.verify._util import read_bytes

    if not trust:
        raise InputError("--trust is required (a trust anchor certificate file)")
    pol = policy_named(revocation)
    if offline:
        pol = dataclasses.replace(pol, fetch=False)
    try:
        return Verifier(list(trust), intermediates=list(untrusted), revocation=pol,
                        crls=[read_bytes(c, "CRL")[0] for c in crls],
                        ocsp_responses=[read_bytes(o, "OCSP response")[0] for o in ocsp_responses],
                        usage=usage)
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
    from unica.verify._util import parse_time

    return parse_time(text) if text else None


def _show_cert_report(rep, indent="") -> None:
    sub = f" / {rep.sub_indication.value}" if rep.sub_indication else ""
    click.echo(f"{indent}Certificate: {rep.indication.value}{sub}")
    s = rep.signer
    click.echo(f"{indent}  subject:      {s.subject}")
    if s.organization:
        click.echo(f"{indent}  organisation: {s.organization}")
    if s.uscc:
        click.echo(f"{indent}  USCC:         {s.uscc} (from {s.uscc_source})")
    click.echo(f"{indent}  usage:        {rep.usage}")
    click.echo(f"{indent}  validated at: {rep.validation_time:%Y-%m-%dT%H:%M:%SZ}")
    if rep.path:
        click.echo(f"{indent}  path:")
        for c in rep.path:
            click.echo(f"{indent}    - {c.subject}  (serial {c.serial}, {c.not_before:%Y-%m-%d}..{c.not_after:%Y-%m-%d})")
    for e in rep.revocation:
        times = " ".join(f"{k}={getattr(e, k):%Y-%m-%dT%H:%M:%SZ}" for k in ("this_update", "next_update", "revocation_time")
                         if getattr(e, k) is not None)
        click.echo(f"{indent}  revocation:   {e.source} {e.status} [{e.origin}] {times}"
                   + (f" ({e.message})" if e.message else ""))
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


@verify_group.command("cert")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--server-name", default=None, help="TLS profile: the host name / IP the certificate must match.")
@_common
@click.pass_context
def verify_cert(ctx, file, server_name, trust, untrusted, at, usage, offline, revocation, crls, ocsp_responses, as_json):
    """Validate a certificate: path to a trust anchor, validity, usage, revocation."""
    from unica.verify._util import load_certificates

    v = _verifier(trust, untrusted, offline, revocation, crls, ocsp_responses, usage)
    certs = load_certificates(_input(file, "certificate"),
                              "certificate from standard input" if file == "-" else "certificate")
    rep = v.validate_certificate(certs[0], intermediates=certs[1:], at=_at(at), server_name=server_name)
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
def verify_cms_cmd(ctx, sig, data, max_data_size, trust, untrusted, at, usage, offline, revocation, crls,
                   ocsp_responses, as_json):
    """Verify a CMS / CAdES signature (attached, or detached with --data)."""
    from unica.boundedio import data_limit, read_limited
    from unica.errors import InputError, VerificationError

    if sig == "-" and data == "-":
        raise InputError("only one of SIG and --data can be '-' (standard input)")
    limit = data_limit(max_data_size)
    v = _verifier(trust, untrusted, offline, revocation, crls, ocsp_responses, usage)
    content = read_limited(data, limit, "data file", stdin=True, unreadable=VerificationError) if data else None
    rep = v.verify_cms(_input(sig, "signature"), content, at=_at(at))
    if as_json:
        emit_json(rep.to_dict())
    else:
        _show_sig_report(rep)
    _exit(ctx, rep.indication)


@verify_group.command("pdf")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@_common
@click.pass_context
def verify_pdf_cmd(ctx, file, trust, untrusted, at, usage, offline, revocation, crls, ocsp_responses, as_json):
    """Verify every signature of a PDF (PAdES)."""
    v = _verifier(trust, untrusted, offline, revocation, crls, ocsp_responses, usage)
    rep = v.verify_pdf(_input(file, "PDF"), at=_at(at))
    if as_json:
        emit_json(rep.to_dict())
    else:
        sub = f" / {rep.sub_indication.value}" if rep.sub_indication else ""
        click.echo(f"Document: {rep.indication.value}{sub}  ({len(rep.signatures)} signature(s))")
        for m in rep.messages:
            click.echo(f"  ! {m}")
        for s in rep.signatures:
            _show_sig_report(s, "  ")
    _exit(ctx, rep.indication)


COMMANDS = [verify_group]
