"""The database schema: CAs, certificates, CRLs, pre-signed OCSP responses, the audit log.

All datetimes are timezone-aware UTC (:class:`UTCDateTime` stores them naive-UTC in SQLite
and as ``timestamptz`` in PostgreSQL, and always returns aware values). Serial numbers are
stored as lowercase hex strings: 128-bit serials do not fit an SQL BIGINT.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def serial_hex(serial: int) -> str:
    """The stored form of a serial number: lowercase hex, no leading zeros."""
    if serial <= 0:
        raise ValueError("serial numbers are positive")
    return format(serial, "x")


def serial_int(text: str) -> int:
    """A serial number from hex (``0x`` prefix, colons and case tolerated)."""
    t = text.strip().lower().replace(":", "")
    if t.startswith("0x"):
        t = t[2:]
    return int(t, 16)


class UTCDateTime(TypeDecorator):
    """A timezone-aware datetime column; naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use timezone-aware UTC")
        value = value.astimezone(dt.timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UTCDateTime}


class CA(Base):
    __tablename__ = "cas"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("cas.id"), nullable=True)
    key_uri: Mapped[str] = mapped_column(Text, nullable=False)
    subject_der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    subject_text: Mapped[str] = mapped_column(Text, nullable=False)
    cert_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    #: active | pending (awaiting its certificate from an external parent) | revoked | retired
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    not_before: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    not_after: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    ski: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    #: SHA-1 of the CA's subjectPublicKey bits (OCSP issuerKeyHash of what it issues)
    key_hash: Mapped[bytes | None] = mapped_column(LargeBinary(20), nullable=True, index=True)
    #: SHA-1 of the CA's subject name DER (OCSP issuerNameHash)
    name_hash: Mapped[bytes | None] = mapped_column(LargeBinary(20), nullable=True)
    crl_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    delta_crl_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    crl_shards: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    ocsp_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    ca_issuers_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: presigned | live
    ocsp_mode: Mapped[str] = mapped_column(String(16), nullable=False, default="presigned")
    ocsp_signer_key_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    ocsp_signer_cert_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificates.id", use_alter=True, name="fk_cas_ocsp_signer_cert"), nullable=True)
    #: the last CRL number issued (bumped under a row lock)
    crl_number: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    profiles: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    settings: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)

    parent: Mapped["CA | None"] = relationship(remote_side=[id])


class Certificate(Base):
    __tablename__ = "certificates"
    __table_args__ = (
        UniqueConstraint("ca_id", "serial", name="uq_certificates_ca_serial"),
        Index("ix_certificates_ca_status", "ca_id", "status"),
        Index("ix_certificates_not_after", "not_after"),
        Index("ix_certificates_updated_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ca_id: Mapped[int] = mapped_column(ForeignKey("cas.id"), nullable=False)
    serial: Mapped[str] = mapped_column(String(42), nullable=False)
    #: pending (intent recorded, not signed) | valid | revoked | hold | failed (intent abandoned)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    subject_text: Mapped[str] = mapped_column(Text, nullable=False, default="")
    subject_der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, default=b"")
    sans: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    not_before: Mapped[dt.datetime] = mapped_column(nullable=False)
    not_after: Mapped[dt.datetime] = mapped_column(nullable=False)
    profile: Mapped[str] = mapped_column(String(64), nullable=False)
    is_ca: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    tbs_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    #: unique without an index: the DER holds (issuer, serial), which is unique (migration 0005)
    fingerprint_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    spki_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    requester: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: the RA office that issued it (None: issued by an admin or before offices existed)
    office: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: the registered enterprise it was issued to by enrollment (migration 0007)
    enterprise_id: Mapped[int | None] = mapped_column(
        ForeignKey("enterprises.id", name="fk_certificates_enterprise"), nullable=True,
        index=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    invalidity_date: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    #: when a hold was last released (a delta CRL lists it as removeFromCRL)
    released_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow, onupdate=utcnow)

    ca: Mapped[CA] = relationship(foreign_keys=[ca_id])

    @property
    def serial_number(self) -> int:
        return int(self.serial, 16)


class CRL(Base):
    __tablename__ = "crls"
    __table_args__ = (UniqueConstraint("ca_id", "number", "shard", name="uq_crls_ca_number_shard"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ca_id: Mapped[int] = mapped_column(ForeignKey("cas.id"), nullable=False, index=True)
    number: Mapped[int] = mapped_column(BigInteger, nullable=False)
    is_delta: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    base_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    shard: Mapped[int | None] = mapped_column(Integer, nullable=True)
    this_update: Mapped[dt.datetime] = mapped_column(nullable=False)  # snapshot time (µs); the CRL says whole seconds
    next_update: Mapped[dt.datetime] = mapped_column(nullable=False)
    entries: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    path: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)


class OCSPResponse(Base):
    __tablename__ = "ocsp_responses"

    cert_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"), primary_key=True)
    der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    this_update: Mapped[dt.datetime] = mapped_column(nullable=False)
    next_update: Mapped[dt.datetime] = mapped_column(nullable=False, index=True)
    produced_at: Mapped[dt.datetime] = mapped_column(nullable=False, index=True)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(nullable=False, index=True)
    event: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    ca_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    target: Mapped[str | None] = mapped_column(Text, nullable=True)
    details: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class AuditHead(Base):
    """One row: the last audit entry's id and hash. Appends lock it, so the chain never forks."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    last_hash: Mapped[str] = mapped_column(String(64), nullable=False)


class AuditSeal(Base):
    """A signature over the audit chain up to an entry (made by an audit key)."""

    __tablename__ = "audit_seals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    upto_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    upto_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    at: Mapped[dt.datetime] = mapped_column(nullable=False)
    key_uri: Mapped[str] = mapped_column(Text, nullable=False)
    public_key_der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    signature: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


# --- joint operation: operators, offices, dual control (migration 0006) ---------------------------


class Operator(Base):
    """A person who runs the CA: a certificate unica issued under the ``operator`` profile, whose
    key is on that person's card. Identified by the card key (``spki_sha256``)."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    cert_der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    serial: Mapped[str] = mapped_column(String(42), nullable=False)
    issuer_ca_id: Mapped[int | None] = mapped_column(ForeignKey("cas.id"), nullable=True)
    subject_text: Mapped[str] = mapped_column(Text, nullable=False)
    spki_sha256: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    #: admin | ra-officer | auditor | custodian (a list)
    roles: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    office: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: active | disabled
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    created_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class Office(Base):
    """An RA office: the CAs and profiles its officers may use."""

    __tablename__ = "offices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    cas: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    profiles: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)


class ApprovalRule(Base):
    """An operation that waits for ``approvals`` distinct operators (of ``role``, if set)."""

    __tablename__ = "approval_rules"

    operation: Mapped[str] = mapped_column(String(96), primary_key=True)
    approvals: Mapped[int] = mapped_column(Integer, nullable=False)
    role: Mapped[str | None] = mapped_column(String(32), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)


class ApprovalRequest(Base):
    """An operation waiting for its quorum: exactly what was asked (``params``) and its digest."""

    __tablename__ = "approval_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    operation: Mapped[str] = mapped_column(String(64), nullable=False)
    #: the rule that applied (``cert.issue:agency-sign`` or the operation's name)
    rule: Mapped[str] = mapped_column(String(96), nullable=False)
    ca_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    params: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    digest: Mapped[str] = mapped_column(String(64), nullable=False)
    approvals_needed: Mapped[int] = mapped_column(Integer, nullable=False)
    role: Mapped[str | None] = mapped_column(String(32), nullable=True)
    requester_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), nullable=False)
    #: pending | executing | executed | failed | rejected | expired
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(nullable=False)
    decided_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    result: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)


class Approval(Base):
    """One operator's signed decision on a request (the requester's own signature included)."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("request_id", "operator_id", name="uq_approvals_request_operator"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("approval_requests.id"), nullable=False, index=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), nullable=False)
    #: request | approve | reject
    decision: Mapped[str] = mapped_column(String(16), nullable=False)
    nonce: Mapped[str] = mapped_column(String(64), nullable=False)
    signed_at: Mapped[dt.datetime] = mapped_column(nullable=False)
    signature: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class OperatorNonce(Base):
    """Nonces of operator signatures already used: a signed request runs once."""

    __tablename__ = "operator_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), nullable=False)
    at: Mapped[dt.datetime] = mapped_column(nullable=False)


# --- the CA as a service: the registry (migration 0007) -------------------------------------------


class Enterprise(Base):
    """A registered enterprise: its USCC (unique), name and the RA office that serves it."""

    __tablename__ = "enterprises"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uscc: Mapped[str] = mapped_column(String(18), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    legal_rep: Mapped[str | None] = mapped_column(String(200), nullable=True)
    office: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    #: active | pending (self-service, not verified yet) | withdrawn (that application rejected) | disabled
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    created_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)


class Application(Base):
    """An enterprise's application for a certificate (a profile, a holder) and its one-time
    enrollment code -- stored only as a salted hash (``code_hash``, with its parameters)."""

    __tablename__ = "applications"

    #: "a" + 12 hex digits
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), nullable=False, index=True)
    ca_name: Mapped[str] = mapped_column(String(64), nullable=False)
    profile: Mapped[str] = mapped_column(String(64), nullable=False)
    #: the subject's CN
    holder: Mapped[str] = mapped_column(String(128), nullable=False)
    #: officer | self-service
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    #: submitted | approved | rejected | enrolled | expired
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="submitted", index=True)
    csr_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    contact: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    code_salt: Mapped[str] = mapped_column(String(64), nullable=False)
    code_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    code_expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    code_failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    code_released: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    status_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    certificate_id: Mapped[int | None] = mapped_column(ForeignKey("certificates.id"), nullable=True)
    #: when an enrollment claimed the code (status "enrolled", no certificate yet): a claim whose
    #: process died before issuing is released after the recovery grace time
    claimed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)
    decided_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class ApplicationApproval(Base):
    """One officer's decision on an application (the creating officer's included)."""

    __tablename__ = "application_approvals"
    __table_args__ = (
        UniqueConstraint("application_id", "operator_id", name="uq_application_approvals_app_operator"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), nullable=False, index=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), nullable=False)
    #: approve | reject
    decision: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)


class RevocationRequest(Base):
    """An enterprise's request to revoke one of its certificates."""

    __tablename__ = "revocation_requests"

    #: "v" + 12 hex digits
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"), nullable=False, index=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), nullable=False, index=True)
    #: an RFC 5280 reason name (keyCompromise, superseded, ...)
    reason: Mapped[str] = mapped_column(String(32), nullable=False)
    #: pending | done | rejected
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)
    decided_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    #: who asked (the client's identity as the service saw it)
    client: Mapped[str | None] = mapped_column(Text, nullable=True)


class IdempotencyKey(Base):
    """A POST's Idempotency-Key and the first response to it (replayed to a retry)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("client", "key", name="uq_idempotency_keys_client_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client: Mapped[str] = mapped_column(Text, nullable=False)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    method: Mapped[str] = mapped_column(String(16), nullable=False)
    path: Mapped[str] = mapped_column(Text, nullable=False)
    request_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    #: None while the first request is still running
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow, index=True)


# --- the time-stamping authority (migration 0008) ---------------------------------------------


class TSAUnit(Base):
    """A TSA unit: a key (token or encrypted file) and its timestamping certificate."""

    __tablename__ = "tsa_units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    #: the CA that issued the unit's certificate
    ca_name: Mapped[str] = mapped_column(String(64), nullable=False)
    key_uri: Mapped[str] = mapped_column(Text, nullable=False)
    cert_der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    cert_serial: Mapped[str] = mapped_column(String(64), nullable=False)
    #: the default TSA policy OID (mandatory): used when a request names none
    policy: Mapped[str] = mapped_column(String(128), nullable=False)
    #: other policy OIDs a request may ask for (list of dotted strings)
    accept_policies: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    #: the declared accuracy of genTime, in milliseconds
    accuracy_ms: Mapped[int] = mapped_column(Integer, nullable=False, default=1000)
    #: active | disabled
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    created_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class TSAToken(Base):
    """The archive record of one time-stamp token issued (written in batches)."""

    __tablename__ = "tsa_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: the token's serialNumber, lowercase hex
    serial: Mapped[str] = mapped_column(String(48), nullable=False, index=True)
    unit: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    gen_time: Mapped[dt.datetime] = mapped_column(nullable=False)
    #: sha256 | sha384 | sha512
    imprint_alg: Mapped[str] = mapped_column(String(16), nullable=False)
    imprint_hex: Mapped[str] = mapped_column(String(128), nullable=False)
    policy: Mapped[str] = mapped_column(String(128), nullable=False)
    #: whether the request carried a nonce (echoed in the token)
    nonce: Mapped[bool] = mapped_column(Boolean, nullable=False)


# --- card login and single sign-on (migration 0009) -------------------------------------------


class LoginChallenge(Base):
    """A one-time card-login challenge the portal handed out: only its nonce's SHA-256 is kept;
    ``used_at`` set when a login consumed it (a second use is a replay)."""

    __tablename__ = "login_challenges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    nonce_sha256: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    #: the portal origin the challenge names (scheme://host[:port])
    origin: Mapped[str] = mapped_column(String(255), nullable=False)
    #: who asked for it (the client's address), for the audit log
    source: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(nullable=False, index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class SSOClient(Base):
    """An agency system registered as an OpenID Connect client (``unica sso client add``)."""

    __tablename__ = "sso_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    client_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    #: the client secret's salted hash (None: a public client, PKCE only)
    secret_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: the exact redirect URIs allowed (list of strings; compared character for character)
    redirect_uris: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    #: active | disabled
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    created_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class SSOKey(Base):
    """An ID-token signing key of the OpenID Connect provider (token or encrypted file)."""

    __tablename__ = "sso_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    key_uri: Mapped[str] = mapped_column(Text, nullable=False)
    #: the JWS algorithm (ES256, ES384, RS256, PS256 ...)
    alg: Mapped[str] = mapped_column(String(16), nullable=False)
    #: the public key as a JWK (what the JWKS endpoint publishes)
    public_jwk: Mapped[dict] = mapped_column(JSON, nullable=False)
    #: active (signs) | retired (still published until its tokens expire)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    created_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)
    retired_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class PortalSession(Base):
    """A portal session a card login opened (migration 0010). The browser holds a 256-bit random
    token; only its SHA-256 is kept. Ended by logout, the idle or absolute timeout, or the
    certificate's revocation (checked at every request)."""

    __tablename__ = "portal_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    #: the synchronizer token every state-changing form of this session carries
    csrf_token: Mapped[str] = mapped_column(String(64), nullable=False)
    #: the LoginFacts of the login (JSON)
    facts: Mapped[dict] = mapped_column(JSON, nullable=False)
    #: the card's certificate, checked again at every request
    cert_der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    cert_serial: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    source: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)
    #: the absolute end, whatever the activity
    expires_at: Mapped[dt.datetime] = mapped_column(nullable=False, index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    #: logout | idle | expired | certificate-refused
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class SSOCode(Base):
    """An OpenID Connect authorization code (migration 0011): one use, short-lived, bound to the
    client, the exact redirect URI and the PKCE challenge; only its SHA-256 is kept. Once
    exchanged (``used_at``) the row also holds the SHA-256 of the access token it gave; a second
    use of the code revokes that token (``revoked_at``, RFC 6749 10.5)."""

    __tablename__ = "sso_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_sha256: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    client_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    redirect_uri: Mapped[str] = mapped_column(Text, nullable=False)
    scope: Mapped[str] = mapped_column(String(255), nullable=False)
    nonce: Mapped[str | None] = mapped_column(String(255), nullable=True)
    code_challenge: Mapped[str] = mapped_column(String(128), nullable=False)
    #: always S256 (plain is refused)
    code_challenge_method: Mapped[str] = mapped_column(String(8), nullable=False)
    #: the portal session (portal_sessions.id) the code was made in
    session_id: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    auth_time: Mapped[dt.datetime] = mapped_column(nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(nullable=False, index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    access_token_sha256: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    access_expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
