"""unica.verify: certificate validation and signature verification for relying parties.

Independent of the CA's database: imports neither ``unica.store`` nor ``unica.ca``.

    from unica.verify import Verifier, validate_certificate, verify_cms, verify_pdf
"""

from .report import (
    CertInfo,
    Indication,
    PdfReport,
    RevocationEvidence,
    SignatureChecks,
    SignatureReport,
    SignerIdentity,
    SigningTimeSource,
    SubIndication,
    TimestampReport,
    ValidationReport,
    rfc5280_reason_name,
)
from .revocation import HARD_FAIL, OFF, OFFLINE_HARD_FAIL, SOFT_FAIL, RevocationPolicy, RevocationSource
from .usage import PRESETS as USAGE_PRESETS, Usage, resolve_usage
from .verifier import Verifier, validate_certificate
from .cms import verify_cms
from .pdf import verify_pdf

__all__ = [
    "CertInfo", "Indication", "PdfReport", "RevocationEvidence", "SignatureChecks", "SignatureReport",
    "SignerIdentity", "SigningTimeSource", "SubIndication", "TimestampReport", "ValidationReport",
    "rfc5280_reason_name",
    "HARD_FAIL", "OFF", "OFFLINE_HARD_FAIL", "SOFT_FAIL",
    "RevocationPolicy", "RevocationSource", "USAGE_PRESETS", "Usage", "resolve_usage", "Verifier",
    "validate_certificate", "verify_cms", "verify_pdf",
]
