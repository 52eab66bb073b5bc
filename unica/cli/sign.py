"""``unica sign``: CMS/CAdES and PDF/PAdES signatures with a key on a token (or in a file)."""

from __future__ import annotations

from pathlib import Path

import click

from unica.cli.common import passphrase_file_option, pin_file_option
from unica.cli.output import atomic_output, check_output_path, write_atomic


def _identity(key_uri, cert_file, chain_file, pin_file, passphrase_file, pss=False):
    from unica.boundedio import MAX_CERTIFICATE, read_limited
    from unica.cli.common import key_secrets
    from unica.hsm.objects import load_certificate_bytes
    from unica.sign import load_signer

    cert = chain = None
    if cert_file:
        cert = load_certificate_bytes(read_limited(cert_file, MAX_CERTIFICATE, "certificate file"),
                                      f"certificate file {cert_file}")[0]
    if chain_file:
        chain = load_certificate_bytes(read_limited(chain_file, MAX_CERTIFICATE, "chain file"),
                                       f"chain file {chain_file}")
    return load_signer(key_uri, cert=cert, chain=chain, pss=pss,
                       **key_secrets(key_uri, pin_file, passphrase_file))


def _trust(files):
    from unica.boundedio import MAX_CERTIFICATE, read_limited
    from unica.hsm.objects import load_certificate_bytes

    out = []
    for f in files:
        out += load_certificate_bytes(read_limited(f, MAX_CERTIFICATE, "trust file"), f"trust file {f}")
    return out


def _level_option(choices):
    # one --level everywhere (B-B..B-LTA); a level a format lacks (CAdES B-LTA) is refused by
    # unica.sign.ltv.resolve_level, exit 2
    return click.option("--level", type=click.Choice(["B-B", "B-T", "B-LT", "B-LTA"]), default=None,
                        help="Baseline level: " + ", ".join(choices) + " (default: B-T with --tsa, else B-B). "
                             "B-T and above ask the TSA (--tsa, else UNICA_TSA_URL).")


def _key_options(f):
    f = passphrase_file_option(f)
    f = pin_file_option(f)
    f = click.option("--trust", "trust_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
                     metavar="FILE", help="A root (PEM) up to which B-LT material is collected (default: the root "
                                          "of the signer's chain; add the TSA's root if it differs). Repeatable.")(f)
    f = click.option("--tsa", "tsa_url", default=None, metavar="URL",
                     help="RFC 3161 time-stamping service URL (default for B-T and above: UNICA_TSA_URL, unica's "
                          "own TSA).")(f)
    f = click.option("--chain", "chain_file", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="PEM CA certificates to embed (default: the CA certificates on the token).")(f)
    f = click.option("--cert", "cert_file", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Signer certificate (default: the key's certificate on the token).")(f)
    f = click.option("--key", "key_uri", required=True, metavar="URI",
                     help="Key URI (pkcs11:token=...;object=... or file:PATH).")(f)
    return f


@click.group("sign")
def sign_group() -> None:
    """Sign files: CMS / CAdES (.p7s) and PDF / PAdES."""


@sign_group.command("cms")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@_key_options
@click.option("--detached/--attached", default=True, help="Detached signature (default) or content inside.")
@click.option("--pss", is_flag=True, help="RSA-PSS instead of PKCS#1 v1.5 for RSA keys.")
@click.option("--cms-oids", type=click.Choice(["pkcs7", "gmt0010"]), default="pkcs7", show_default=True,
              help="Content-type OIDs of an SM2 signature: PKCS#7 (RFC 5652) or GM/T 0010 "
                   "(1.2.156.10197.6.1.4.2.x); gmt0010 is for SM2 keys only.")
@click.option("--out", default=None, metavar="FILE", help="Output file (default: FILE.p7s; only with one FILE).")
@click.option("--pem", "as_pem", is_flag=True, help="Write PEM (-----BEGIN CMS-----) instead of DER.")
@_level_option(["B-B", "B-T", "B-LT"])
@click.option("--max-data-size", default=None, metavar="SIZE",
              help="Refuse a FILE larger than this (e.g. 64K, 256M, 2G; default UNICA_MAX_DATA_SIZE, else 256M).")
def sign_cms_cmd(files, key_uri, cert_file, chain_file, tsa_url, trust_files, pin_file, passphrase_file, detached,
                 pss, cms_oids, out, as_pem, level, max_data_size) -> None:
    """CMS / CAdES signature of each FILE: B-B, B-T (signature time-stamp) or B-LT (plus the
    certificates and OCSP responses / CRLs in the SignedData), certificate chain embedded.

    Several files are signed with one login, each into FILE.p7s.

    \b
    Examples:
      unica sign cms declaration.txt --key 'pkcs11:token=zhangsan;object=sign'
      unica sign cms a.xml b.xml --key file:zhangsan.p8 --cert zhangsan.pem \\
          --chain issuing.pem --detached
      unica sign cms declaration.txt --key 'pkcs11:token=zhangsan;object=sign' \\
          --level B-LT --tsa http://tsa.example.cn/
    """
    from unica.boundedio import LimitedReader, data_limit
    from unica.errors import InputError
    from unica.sign import CMSSigner
    from unica.sign.ltv import resolve_level

    lvl = resolve_level(level, tsa_url, allowed=("B-B", "B-T", "B-LT"))  # before any work
    trust = _trust(trust_files)
    if out and len(files) > 1:
        raise InputError("--out takes one FILE; with several, each signature goes to FILE.p7s")
    for file in files:  # every output before the key is touched
        check_output_path(out or f"{file}.p7s", "--out" if out else "signature file")
    limit = data_limit(max_data_size)
    signer = CMSSigner(_identity(key_uri, cert_file, chain_file, pin_file, passphrase_file, pss), cms_oids=cms_oids)
    for file in files:
        try:
            f = open(file, "rb")
        except OSError as e:
            raise InputError(f"file to sign {file}: cannot read: {e.strerror or e}") from None
        with f:
            # streamed (hashed chunk by chunk), but never more than the limit: /dev/zero ends here
            der = signer.sign(LimitedReader(f, limit, "file to sign", file), detached=detached,
                              tsa_url=lvl.tsa_url, level=lvl.name, trust=trust)
        if as_pem:
            import base64
            import textwrap

            der = (b"-----BEGIN CMS-----\n" + "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64)).encode()
                   + b"\n-----END CMS-----\n")
        target = out or f"{file}.p7s"
        write_atomic(target, der, what="--out" if out else "signature file")
        if target != "-":
            click.echo(f"wrote {target}")


@sign_group.command("pdf")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.argument("dst")
@_key_options
@click.option("--field", default="Signature1", show_default=True, help="Signature field (created if missing).")
@click.option("--reason", default=None, metavar="TEXT", help="Reason recorded in the signature (free text).")
@click.option("--location", default=None, help="Location recorded in the signature.")
@_level_option(["B-B", "B-T", "B-LT", "B-LTA"])
def sign_pdf_cmd(src, dst, key_uri, cert_file, chain_file, tsa_url, trust_files, pin_file, passphrase_file, field,
                 reason, location, level) -> None:
    """PAdES baseline signature of the PDF SRC, written to DST: B-B, B-T (signature time-stamp),
    B-LT (plus validation material in the DSS) or B-LTA (plus a document time-stamp).

    \b
    Examples:
      unica sign pdf declaration.pdf declaration-signed.pdf \\
          --key 'pkcs11:token=zhangsan;object=sign'
      unica sign pdf in.pdf out.pdf --key file:zhangsan.p8 --cert zhangsan.pem \\
          --chain issuing.pem --reason '申报'
      unica sign pdf in.pdf out.pdf --key 'pkcs11:token=zhangsan;object=sign' \\
          --level B-LTA --tsa http://127.0.0.1:3180/
    """
    from unica.errors import InputError
    from unica.sign import sign_pdf
    from unica.sign.ltv import resolve_level

    lvl = resolve_level(level, tsa_url)  # before any work
    trust = _trust(trust_files)
    if Path(src).resolve() == Path(dst).resolve():
        raise InputError("SRC and DST must be different files")
    check_output_path(dst, "DST")  # before the key is touched
    ident = _identity(key_uri, cert_file, chain_file, pin_file, passphrase_file)
    with atomic_output(dst, what="DST") as f:  # a failed signature leaves DST as it was
        sign_pdf(src, f, ident, field=field, reason=reason, location=location, tsa_url=lvl.tsa_url,
                 level=lvl.name, trust=trust)
    if dst != "-":
        click.echo(f"wrote {dst}")


COMMANDS = [sign_group]
