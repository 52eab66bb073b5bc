"""``unica timestamp``: keep long-term signatures verifiable (archive time-stamps)."""

from __future__ import annotations

import click

from unica.cli.common import emit_json, json_option
from unica.cli.output import atomic_output, check_output_path


@click.group("timestamp")
def timestamp_group() -> None:
    """Archive time-stamps for long-term (PAdES B-LTA) documents."""


@timestamp_group.command("refresh")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--tsa", "tsa_url", default=None, metavar="URL",
              help="RFC 3161 time-stamping service URL (default: UNICA_TSA_URL, unica's own TSA).")
@click.option("--out", default=None, metavar="FILE", help="Write the result here (default: replace FILE atomically).")
@click.option("--trust", "trust_files", multiple=True, type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="A root (PEM) up to which the previous time-stamp's material is collected (default: the "
                   "self-signed certificates in the document). Repeatable.")
@click.option("--md", "md_algorithm", type=click.Choice(["sha256", "sha384", "sha512"]), default="sha256",
              show_default=True, help="Digest of the new time-stamp's message imprint.")
@json_option
def refresh_cmd(file, tsa_url, out, trust_files, md_algorithm, as_json) -> None:
    """Add an archive time-stamp to the signed PDF FILE.

    The validation material of the newest document time-stamp (its TSA's certificates and
    OCSP responses / CRLs) goes into the document security store, then a new document
    time-stamp covers everything, then the new time-stamp's own material goes into the
    document security store after it (so the document verifies offline while that material is
    current). Run it before the newest time-stamp's TSA certificate
    expires or its algorithms weaken (see docs/long-term-signatures.md). FILE is replaced
    atomically unless --out is given.

    \b
    Examples:
      unica timestamp refresh declaration-signed.pdf
      unica timestamp refresh declaration-signed.pdf --tsa http://tsa.example.cn/ \\
          --out declaration-2031.pdf
    """
    from unica.cli.sign import _trust
    from unica.sign.ltv import resolve_level
    from unica.sign.pdf import refresh_timestamp

    lvl = resolve_level("B-LTA", tsa_url)  # before any work: a missing TSA URL is a usage error
    target = out or file
    check_output_path(target, "--out" if out else "FILE")
    trust = _trust(trust_files)
    with atomic_output(target, what="--out" if out else "FILE") as f:  # a failure leaves the file as it was
        n = refresh_timestamp(file, f, tsa_url=lvl.tsa_url, trust=trust, md_algorithm=md_algorithm)
    if as_json:
        emit_json({"file": target, "document_timestamps": n, "tsa": lvl.tsa_url})
    elif target != "-":
        click.echo(f"wrote {target} ({n} document time-stamp{'s' if n != 1 else ''})")


COMMANDS = [timestamp_group]
