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
from typing import Any, Iterator


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


class SigningTimeSource(str, enum.Enum):
    """Where :attr:`SignatureReport.signing_time` comes from.

    Only the first three are proofs of existence (POE): the signature was validated at
    that time. The claimed ones are what the signer says; they decide only between
    TOTAL-FAILED/REVOKED and INDETERMINATE/REVOKED_NO_POE (revoked after the claimed time).
    """

    #: genTime of the signature's own validated RFC 3161 signature-time-stamp (a POE)
    TIMESTAMP = "timestamp"
    #: genTime of a later validated PDF document time-stamp covering the signature (a POE)
    DOCUMENT_TIMESTAMP = "document time-stamp"
    #: ``at=`` given by the caller, taken as proven (a POE)
    VALIDATION_TIME_GIVEN = "validation time given"
    #: the CMS signing-time signed attribute (claimed by the signer)
    SIGNING_TIME_ATTRIBUTE = "signing-time attribute (claimed)"
    #: a PDF signature dictionary's /M entry (claimed by the signer)
    PDF_M = "/M (claimed)"
    #: no time at all: the signature was validated now
    NONE = "none"

    @property
    def is_proof(self) -> bool:
        """True for a proof of existence (time-stamp, document time-stamp, given time)."""
        return self in (SigningTimeSource.TIMESTAMP, SigningTimeSource.DOCUMENT_TIMESTAMP,
                        SigningTimeSource.VALIDATION_TIME_GIVEN)

    def __str__(self) -> str:
        return self.value


#: RFC 5280 5.3.1 CRLReason names by code (7 is unused)
RFC5280_REASONS: dict[int, str] = {
    0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged", 4: "superseded",
    5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL", 9: "privilegeWithdrawn",
    10: "aACompromise",
}
_REASON_KEYS = {name.lower(): name for name in RFC5280_REASONS.values()}


def rfc5280_reason_name(reason: Any) -> str | None:
    """The RFC 5280 name of a revocation reason (``keyCompromise``, ``cACompromise``, ...).

    Accepts cryptography's :class:`~cryptography.x509.ReasonFlags` (or its ``.name`` such as
    ``key_compromise``), asn1crypto's native names (``key_compromise``, ``ca_compromise``,
    ``aa_compromise``, ...), the RFC names themselves in any case or with ``-``/``_``, and the
    CRLReason code (an int). ``None`` gives ``None``; an unknown code gives
    ``"unknown (N)"``; an unknown name raises ValueError, another type TypeError.
    """
    if reason is None:
        return None
    if isinstance(reason, enum.Enum):  # cryptography's ReasonFlags: value is the RFC name
        reason = reason.value
    if isinstance(reason, bool):
        raise TypeError(f"revocation reason must be a name, a ReasonFlags or a code, not {reason!r}")
    if isinstance(reason, int):
        return RFC5280_REASONS.get(reason, f"unknown ({reason})")
    if not isinstance(reason, str):
        raise TypeError(f"revocation reason must be a name, a ReasonFlags or a code, not {type(reason).__name__}")
    name = _REASON_KEYS.get(reason.strip().replace("-", "").replace("_", "").lower())
    if name is None:
        raise ValueError(f"unknown revocation reason {reason!r}")
    return name


@dataclasses.dataclass(frozen=True)
class CertInfo:
    """One certificate of a path, as shown in a report."""

    subject: str
    issuer: str
    serial: str  # hex
    sha256: str  # hex fingerprint of the DER
    not_before: _dt.datetime
    not_after: _dt.datetime
    #: how the certificate is signed: ``ecdsa-with-sha256``, ``sha256-with-rsa``, ``rsassa-pss``,
    #: ``ed25519``, ``sm2-with-sm3`` (GM/T 0006), else the dotted OID
    signature_algorithm: str | None = None
    #: the certified key: ``ec-p256``, ``rsa-3072``, ``ed25519``, ``sm2``..., else the algorithm's OID
    public_key: str | None = None


@dataclasses.dataclass(frozen=True)
class SignerIdentity:
    """Who the certificate names: subject DN, organisation and USCC when present."""

    subject: str
    common_name: str | None = None
    organization: str | None = None
    #: the organizationIdentifier (2.5.4.97) value as written, e.g. ``NTRCN-91110000600037341L``
    organization_identifier: str | None = None
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
    #: RFC 5280 name (``keyCompromise``, ...): see :func:`rfc5280_reason_name`
    revocation_reason: str | None = None
    issuer: str | None = None  # CRL issuer / OCSP responder name
    message: str | None = None


@dataclasses.dataclass(frozen=True)
class PolicyQualifier:
    """A policy qualifier of a valid policy (RFC 5280 4.2.1.4): a CPS pointer or a user notice."""

    kind: str  # "cps" or "user-notice" (or the qualifier's OID when unknown)
    cps_uri: str | None = None
    notice_text: str | None = None  # explicitText
    organization: str | None = None  # noticeRef organization
    notice_numbers: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class ValidPolicy:
    """A policy of the valid policy set (RFC 5280 6.1.5 (g)): the user-domain policy, the
    issuer-domain policy it was mapped from (the same when not mapped), and its qualifiers."""

    policy: str
    issuer_domain_policy: str
    qualifiers: tuple[PolicyQualifier, ...] = ()


class _Report:
    """What every report offers: ``passed``, ``to_dict()`` and ``to_json()``."""

    indication: "Indication"

    @property
    def passed(self) -> bool:
        return self.indication is Indication.TOTAL_PASSED

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_json(self, **kw: Any) -> str:
        """JSON text as ``unica ... --json`` prints it: UTF-8 characters as such (a Chinese
        subject stays readable, ``ensure_ascii=False``), indented by 2. ``kw`` go to
        :func:`json.dumps` and override those defaults. Encode the result as UTF-8 to write it."""
        kw.setdefault("ensure_ascii", False)
        kw.setdefault("indent", 2)
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
    #: the valid policy set with qualifiers (empty when no policy is valid for the path)
    valid_policies: tuple[ValidPolicy, ...] = ()
    #: the revocation policy applied: "hard-fail", "soft-fail" or "off"
    revocation_policy: str = "hard-fail"
    #: who decided the path: "pyhanko-certvalidator" (the authority), "fast path" or "trust anchor"
    engine: str = "pyhanko-certvalidator"


@dataclasses.dataclass(frozen=True)
class SignatureChecks:
    """The individual checks of one signature; each is a status text (``"ok"``, ``"ok (v2)"``,
    ``"mismatch"``, ``"invalid"``, ``"absent"``, ...) or None when the check was not reached
    or does not apply."""

    #: the signer's certificate was found in the CMS ("not found" when it was not)
    signer_certificate: str | None = None
    #: signed attributes present ("absent": the signature is over the content itself)
    signed_attributes: str | None = None
    message_digest: str | None = None
    content_type: str | None = None
    #: ESS signing-certificate(-v2) attribute: "ok (v2)", "ok (v1)", "absent", "mismatch"
    signing_certificate: str | None = None
    #: the signature value under the signer's public key
    signature: str | None = None
    #: the RFC 3161 signature-time-stamp unsigned attribute
    signature_timestamp: str | None = None
    #: PDF: a later document time-stamp covering this signature ("ok (field DocTs1)")
    document_timestamp: str | None = None
    #: revocation data carried by the signature / the PDF's DSS ("2 CRL(s), 0 OCSP response(s)")
    embedded_revocation_data: str | None = None
    #: time-stamp tokens: the message imprint against what the token time-stamps
    message_imprint: str | None = None

    def items(self) -> Iterator[tuple[str, str]]:
        """(label, status) of the checks made, in order, for display: labels are the field
        names with ``-`` (``message-digest``)."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None:
                yield f.name.replace("_", "-"), v

    def to_dict(self) -> dict[str, str]:
        """The checks made (None dropped), keyed by field name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in dataclasses.fields(self))


@dataclasses.dataclass(frozen=True)
class TimestampReport:
    """One time-stamp as a proof of existence (EN 319 102-1): what it is, who issued it, whether
    it validated, and the proof of existence it gave to what.

    A time-stamp that validated proves that what it covers existed at its genTime
    (``proof_of_existence``); one that did not proves nothing (``proof_of_existence`` None,
    ``proof_of_existence_for`` empty). The full validation of the token is in the signature's
    ``timestamp`` report (signature time-stamp) or in the document time-stamp's own signature
    report (PDF).
    """

    #: "signature time-stamp" or "document time-stamp"
    kind: str
    #: the TSTInfo genTime (None when the token cannot be read)
    gen_time: _dt.datetime | None
    #: the TSA: the subject of the certificate that signed the token
    tsa: str | None
    indication: Indication
    sub_indication: SubIndication | None
    #: when the TSA's certificate was validated (the time-stamp's own proof of existence: a later
    #: document time-stamp covering it, ``at``, else the validation run's now)
    validated_at: _dt.datetime | None
    #: the genTime, when the time-stamp validated: the proof of existence it gives
    proof_of_existence: _dt.datetime | None
    #: what it gives that proof to: "signature 'F'", "signature time-stamp of 'F'",
    #: "document time-stamp 'F'" (PDF) or "signature" (CMS)
    proof_of_existence_for: tuple[str, ...] = ()
    #: PDF: the document time-stamp's field, or the field of the signature a signature time-stamp is in
    field_name: str | None = None


@dataclasses.dataclass(frozen=True)
class SignatureReport(_Report):
    """Result of verifying one signature (CMS / CAdES / PAdES)."""

    indication: Indication
    sub_indication: SubIndication | None
    format: str  # "CAdES-B-B", "CAdES-B-T", "PAdES-B-B", ...
    signer: SignerIdentity | None
    #: the proof of existence used as validation time if any, else the claimed signing time
    signing_time: _dt.datetime | None
    #: where signing_time comes from (see :class:`SigningTimeSource`)
    signing_time_source: SigningTimeSource
    checks: SignatureChecks
    certificate: ValidationReport | None
    timestamp: SignatureReport | None = None
    messages: tuple[str, ...] = ()
    #: PDF only: field name, coverage and modification level
    field_name: str | None = None
    coverage: str | None = None
    modification_level: str | None = None
    #: the signature's time-stamps as proofs of existence (its signature time-stamp)
    timestamps: tuple[TimestampReport, ...] = ()


@dataclasses.dataclass(frozen=True)
class PdfReport(_Report):
    """One report per signature in a PDF; the document's indication is the worst one."""

    signatures: tuple[SignatureReport, ...]
    messages: tuple[str, ...] = ()
    #: every time-stamp of the document (signature time-stamps and document time-stamps), oldest
    #: genTime first, with the proof of existence each gave to what
    timestamps: tuple[TimestampReport, ...] = ()

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
    if isinstance(value, SignatureChecks):
        return value.to_dict()
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
