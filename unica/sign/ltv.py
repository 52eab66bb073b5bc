"""Long-term signature levels (ETSI baseline B-B, B-T, B-LT, B-LTA) and the validation material
they embed.

- **B-B**: the signature alone (certificates embedded).
- **B-T**: plus a signature time-stamp from an RFC 3161 TSA (a proof that the signature existed
  at the token's genTime).
- **B-LT**: plus the validation material of the signer's and the TSA's certificates: the CA
  certificates and, for each certificate below its trust anchor, an OCSP response or a CRL,
  fetched from the URLs in the certificates (authorityInfoAccess OCSP, CRL distribution points)
  through unica's bounded HTTP client (:mod:`unica.verify.fetch`: size, time and count limits).
- **B-LTA** (PDF): plus a document time-stamp over all of it (the archive time-stamp), renewed
  later with ``unica timestamp refresh``.

The TSA is unica's own by default: ``UNICA_TSA_URL``; a caller may name any other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from unica.errors import FetchError, InputError, UnicaError

LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
TSA_ENV = "UNICA_TSA_URL"


@dataclass(frozen=True)
class Level:
    """A resolved signature level and the TSA URL it uses (None for B-B)."""

    name: str
    tsa_url: str | None

    @property
    def rank(self) -> int:
        return LEVELS.index(self.name)

    @property
    def timestamped(self) -> bool:
        return self.rank >= 1

    @property
    def long_term(self) -> bool:
        return self.rank >= 2

    @property
    def archival(self) -> bool:
        return self.rank >= 3


def resolve_level(level: str | None, tsa_url: str | None, *, allowed: tuple[str, ...] = LEVELS) -> Level:
    """The level to sign at and the TSA to ask.

    No ``level``: B-T when a TSA URL is given, else B-B (what ``unica sign`` always did).
    B-T and above without ``tsa_url`` use ``UNICA_TSA_URL`` (unica's own TSA); neither is an
    :class:`InputError` saying how to set it. A TSA URL with B-B is refused (contradictory).
    """
    if level is None:
        level = "B-T" if tsa_url else "B-B"
    level = level.upper()
    if level not in allowed:
        raise InputError(f"level {level!r} is not one of {', '.join(allowed)}")
    if level == "B-B":
        if tsa_url:
            raise InputError("--tsa asks for a time-stamp: B-B has none (use --level B-T or higher)")
        return Level(level, None)
    url = tsa_url or os.environ.get(TSA_ENV, "").strip() or None
    if not url:
        raise InputError(f"level {level} needs a time-stamping service: set {TSA_ENV} to unica's TSA "
                         "(the URL 'unica tsa serve' prints) or give --tsa URL")
    if not url.startswith(("http://", "https://")):
        raise InputError(f"TSA URL {url!r} must be http:// or https://")
    return Level(level, url)


def asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def x509_of(cert: asn1_x509.Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(cert.dump())


def _self_signed(c: x509.Certificate) -> bool:
    if c.subject != c.issuer:
        return False
    try:
        c.verify_directly_issued_by(c)
        return True
    except (ValueError, TypeError, Exception):  # noqa: BLE001 -- any failure: not self-signed
        return False


def validation_context(chain: list[x509.Certificate] | tuple[x509.Certificate, ...],
                       trust: list[x509.Certificate] | tuple[x509.Certificate, ...] = (), *,
                       fetch: bool = True, timeout: float = 10, fetchers=None):
    """A pyhanko-certvalidator ``ValidationContext`` for collecting validation material.

    Trust anchors: the self-signed certificates of ``chain`` and ``trust`` (what the material
    is gathered up to: a relying party judges with its own anchors at verification). Fetching
    goes through unica's bounded client; revocation is hard-fail, so a certificate whose
    revocation material cannot be had stops the signature instead of producing a B-LT
    signature without it.
    """
    from pyhanko_certvalidator import ValidationContext

    from unica.verify.fetch import FetchLimits, make_fetchers

    anchors = [c for c in (*chain, *trust) if _self_signed(c)]
    if not anchors:
        raise InputError("B-LT and B-LTA need the CA chain up to the root (give --chain with the root, "
                         "or --trust ROOT.pem)")
    seen: set[bytes] = set()
    roots, others = [], []
    for c in (*chain, *trust):
        der = c.public_bytes(serialization.Encoding.DER)
        if der in seen:
            continue
        seen.add(der)
        (roots if c in anchors else others).append(asn1_cert(c))
    kw = {}
    if fetch:
        kw["fetchers"] = fetchers if fetchers is not None else make_fetchers(FetchLimits(timeout=timeout))
    return ValidationContext(trust_roots=roots, other_certs=others, allow_fetching=fetch,
                             revocation_mode="hard-fail", **kw)


def collection_error(e: Exception, what: str) -> UnicaError:
    """A unica error for a failure to collect validation material."""
    from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError

    msg = str(e).replace("\n", " ")
    if isinstance(e, PathBuildingError):
        return InputError(f"{what}: no path to a trusted root ({msg}); give the CA chain (--chain / --trust)")
    if isinstance(e, PathValidationError):
        return FetchError(f"{what}: the validation material cannot be collected: {msg}")
    return FetchError(f"{what}: {type(e).__name__}: {msg}")


async def collect(cert: x509.Certificate, vc) -> list:
    """Validate ``cert`` in ``vc`` (fetching what it needs); -> the validation path."""
    from pyhanko_certvalidator import CertificateValidator

    validator = CertificateValidator(asn1_cert(cert), validation_context=vc)
    return await validator.async_validate_path()
