"""Validation reports in the style of ETSI EN 319 102-1 (and EU DSS).

Every report carries an :class:`Indication` (TOTAL-PASSED, INDETERMINATE, TOTAL-FAILED)
and, unless it passed, a :class:`SubIndication` saying why. Reports are frozen values and
serialise to plain dicts / JSON (``to_dict()``, ``to_json()``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
from typing import Any


class Indication(str, enum.Enum):
    TOTAL_PASSED = "TOTAL-PASSED"
    INDETERMINATE = "INDETERMINATE"
    TOTAL_FAILED = "TOTAL-FAILED"

    def __str__(self) -> str:
        return self.value


class SubIndication(str, enum.Enum):
    """Sub-indications of EN 319 102-1 table 5 (only those unica produces)."""

    # with TOTAL-FAILED
    FORMAT_FAILURE = "FORMAT_FAILURE"
    HASH_FAILURE = "HASH_FAILURE"
    SIG_CRYPTO_FAILURE = "SIG_CRYPTO_FAILURE"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    # with INDETERMINATE
    SIG_CONSTRAINTS_FAILURE = "SIG_CONSTRAINTS_FAILURE"
    CHAIN_CONSTRAINTS_FAILURE = "CHAIN_CONSTRAINTS_FAILURE"
    CERTIFICATE_CHAIN_GENERAL_FAILURE = "CERTIFICATE_CHAIN_GENERAL_FAILURE"
    CRYPTO_CONSTRAINTS_FAILURE = "CRYPTO_CONSTRAINTS_FAILURE"
    POLICY_PROCESSING_ERROR = "POLICY_PROCESSING_ERROR"
    NO_SIGNING_CERTIFICATE_FOUND = "NO_SIGNING_CERTIFICATE_FOUND"
    NO_CERTIFICATE_CHAIN_FOUND = "NO_CERTIFICATE_CHAIN_FOUND"
    REVOKED_NO_POE = "REVOKED_NO_POE"
    REVOKED_CA_NO_POE = "REVOKED_CA_NO_POE"
    OUT_OF_BOUNDS_NO_POE = "OUT_OF_BOUNDS_NO_POE"
    OUT_OF_BOUNDS_NOT_REVOKED = "OUT_OF_BOUNDS_NOT_REVOKED"
    REVOCATION_OUT_OF_BOUNDS_NO_POE = "REVOCATION_OUT_OF_BOUNDS_NO_POE"
    TRY_LATER = "TRY_LATER"
    SIGNED_DATA_NOT_FOUND = "SIGNED_DATA_NOT_FOUND"
    GENERIC = "GENERIC"

    def __str__(self) -> str:
        return self.value


#: sub-indications that belong with TOTAL-FAILED; all others go with INDETERMINATE
FAILED_SUBINDICATIONS = frozenset(
    {
        SubIndication.FORMAT_FAILURE,
        SubIndication.HASH_FAILURE,
        SubIndication.SIG_CRYPTO_FAILURE,
        SubIndication.REVOKED,
        SubIndication.EXPIRED,
        SubIndication.NOT_YET_VALID,
    }
)


def indication_for(sub: SubIndication | None) -> Indication:
    if sub is None:
        return Indication.TOTAL_PASSED
    return Indication.TOTAL_FAILED if sub in FAILED_SUBINDICATIONS else Indication.INDETERMINATE


@dataclasses.dataclass(frozen=True)
class CertInfo:
    """One certificate of a path, as shown in a report."""

    subject: str
    issuer: str
    serial: str  # hex
    sha256: str  # hex fingerprint of the DER
    not_before: _dt.datetime
    not_after: _dt.datetime


@dataclasses.dataclass(frozen=True)
class SignerIdentity:
    """Who the certificate names: subject DN, organisation and USCC when present."""

    subject: str
    common_name: str | None = None
    organization: str | None = None
    #: Unified Social Credit Code, from organizationIdentifier (2.5.4.97, prefix such as
    #: ``NTRCN-`` removed) or, failing that, from serialNumber (2.5.4.5)
    uscc: str | None = None
    uscc_source: str | None = None


@dataclasses.dataclass(frozen=True)
class RevocationEvidence:
    """One piece of revocation data used (or tried) for one certificate of the path."""

    certificate: str  # subject of the certificate checked
    source: str  # "OCSP" or "CRL" (or "delta-CRL")
    origin: str  # "offline", "cache", "fetched: <url>", "embedded"
    status: str  # "good", "revoked", "unknown", "unavailable", "invalid"
    produced_at: _dt.datetime | None = None  # OCSP producedAt
    this_update: _dt.datetime | None = None
    next_update: _dt.datetime | None = None
    revocation_time: _dt.datetime | None = None
    revocation_reason: str | None = None
    issuer: str | None = None  # CRL issuer / OCSP responder name
    message: str | None = None


class _Report:
    """What every report offers: ``passed``, ``to_dict()`` and ``to_json()``."""

    indication: "Indication"

    @property
    def passed(self) -> bool:
        return self.indication is Indication.TOTAL_PASSED

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)


@dataclasses.dataclass(frozen=True)
class ValidationReport(_Report):
    """Result of validating one certificate (X.509 validation building block)."""

    indication: Indication
    sub_indication: SubIndication | None
    validation_time: _dt.datetime
    #: the chosen certification path, end-entity first, trust anchor last
    path: tuple[CertInfo, ...]
    signer: SignerIdentity
    usage: str
    revocation: tuple[RevocationEvidence, ...] = ()
    messages: tuple[str, ...] = ()
    #: "validated" or "cache" (a path validated before, within its time bucket)
    source: str = "validated"


@dataclasses.dataclass(frozen=True)
class SignatureReport(_Report):
    """Result of verifying one signature (CMS / CAdES / PAdES)."""

    indication: Indication
    sub_indication: SubIndication | None
    format: str  # "CAdES-B-B", "CAdES-B-T", "PAdES-B-B", ...
    signer: SignerIdentity | None
    signing_time: _dt.datetime | None
    #: where signing_time comes from: "timestamp" (a validated RFC 3161 token: a POE),
    #: "signing-time attribute" (claimed by the signer), or "validation time"
    signing_time_source: str
    checks: dict[str, str]  # e.g. {"message-digest": "ok", "signature": "ok", ...}
    certificate: ValidationReport | None
    timestamp: SignatureReport | None = None
    messages: tuple[str, ...] = ()
    #: PDF only: field name, coverage and modification level
    field_name: str | None = None
    coverage: str | None = None
    modification_level: str | None = None


@dataclasses.dataclass(frozen=True)
class PdfReport(_Report):
    """One report per signature in a PDF; the document's indication is the worst one."""

    signatures: tuple[SignatureReport, ...]
    messages: tuple[str, ...] = ()

    @property
    def indication(self) -> Indication:
        if not self.signatures:
            return Indication.INDETERMINATE
        order = [Indication.TOTAL_FAILED, Indication.INDETERMINATE, Indication.TOTAL_PASSED]
        return min((s.indication for s in self.signatures), key=order.index)

    @property
    def sub_indication(self) -> SubIndication | None:
        if not self.signatures:
            return SubIndication.SIGNED_DATA_NOT_FOUND
        for s in self.signatures:
            if s.indication is self.indication:
                return s.sub_indication
        return None

    def to_dict(self) -> dict[str, Any]:
        d = _to_plain(self)
        d["indication"] = self.indication.value
        d["sub_indication"] = self.sub_indication.value if self.sub_indication else None
        return d


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, _dt.datetime):
        return value.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    return value
