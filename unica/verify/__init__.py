"""unica.verify: certificate validation and signature verification for relying parties.

Independent of the CA's database: imports neither ``unica.store`` nor ``unica.ca``.

    from unica.verify import Verifier, validate_certificate, verify_cms, verify_pdf
"""

from .report import (
    CertInfo,
    Indication,
    PdfReport,
    RevocationEvidence,
    SignatureReport,
    SignerIdentity,
    SubIndication,
    ValidationReport,
)
from .revocation import HARD_FAIL, OFF, OFFLINE_HARD_FAIL, SOFT_FAIL, RevocationPolicy, RevocationSource
from .usage import PRESETS as USAGE_PRESETS, Usage, resolve_usage
from .verifier import Verifier, validate_certificate


def verify_cms(signature, data=None, *, trust, **kw):
    """Verify a CMS / CAdES signature; see :func:`unica.verify.cms.verify_cms_with`."""
    from .cms import verify_cms as _v

    return _v(signature, data, trust=trust, **kw)


def verify_pdf(pdf, *, trust, **kw):
    """Verify every signature in a PDF; see :func:`unica.verify.pdf.verify_pdf_with`."""
    from .pdf import verify_pdf as _v

    return _v(pdf, trust=trust, **kw)


__all__ = [
    "CertInfo", "Indication", "PdfReport", "RevocationEvidence", "SignatureReport", "SignerIdentity",
    "SubIndication", "ValidationReport", "HARD_FAIL", "OFF", "OFFLINE_HARD_FAIL", "SOFT_FAIL",
    "RevocationPolicy", "RevocationSource", "USAGE_PRESETS", "Usage", "resolve_usage", "Verifier",
    "validate_certificate", "verify_cms", "verify_pdf",
]
