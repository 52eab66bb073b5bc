"""Reading the certificate store: list with filters, show one, export one."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from unica.errors import CertificateNotFound, InputError

STATUSES = ("pending", "valid", "revoked", "hold", "failed", "expired")


@dataclass(frozen=True)
class CertFilter:
    ca: str | None = None
    profile: str | None = None
    status: str | None = None
    expiring_within: dt.timedelta | None = None
    requester: str | None = None
    limit: int | None = None
    #: text the subject DN contains (case-insensitive)
    subject: str | None = None
    #: a Unified Social Credit Code carried in the subject's organizationIdentifier (bare or NTRCN-)
    uscc: str | None = None
    #: valid, not yet expired, and expiring before this (aware) time
    expires_before: dt.datetime | None = None


def _info(row, ca_name: str, now: dt.datetime) -> dict:
    status = row.status
    if status == "valid" and row.not_after <= now:
        status = "expired"
    return {
        "serial": row.serial, "ca": ca_name, "status": status, "subject": row.subject_text,
        "sans": list(row.sans or []), "profile": row.profile, "is_ca": row.is_ca,
        "not_before": row.not_before.isoformat(), "not_after": row.not_after.isoformat(),
        "fingerprint_sha256": row.fingerprint_sha256, "spki_sha256": row.spki_sha256,
        "requester": row.requester, "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "revocation_reason": row.revocation_reason, "created_at": row.created_at.isoformat(),
    }


def get_ca_row(session, name: str):
    """The CA row named ``name`` (imported on use: 'cert show' without --ca does not need the CA services)."""
    from unica.ca.records import get_ca_row as _get

    return _get(session, name)


def pem(der: bytes) -> str:
    """A stored certificate's DER as PEM (as cryptography writes it; without loading cryptography,
    so 'unica cert show' starts fast)."""
    import base64

    b64 = base64.b64encode(der).decode("ascii")
    return ("-----BEGIN CERTIFICATE-----\n" + "".join(b64[i:i + 64] + "\n" for i in range(0, len(b64), 64))
            + "-----END CERTIFICATE-----\n")


def list_certs(store, f: CertFilter = CertFilter()) -> list[dict]:
    from sqlalchemy import select

    from unica.store import models as m

    if f.status and f.status not in STATUSES:
        raise InputError(f"--status {f.status!r}: one of {', '.join(STATUSES)}")
    now = dt.datetime.now(dt.timezone.utc)
    with store.read() as s:
        q = select(m.Certificate, m.CA.name).join(m.CA, m.Certificate.ca_id == m.CA.id)
        if f.ca:
            q = q.where(m.Certificate.ca_id == get_ca_row(s, f.ca).id)
        if f.profile:
            q = q.where(m.Certificate.profile == f.profile)
        if f.status == "expired":
            q = q.where(m.Certificate.status == "valid", m.Certificate.not_after <= now)
        elif f.status == "valid":
            q = q.where(m.Certificate.status == "valid", m.Certificate.not_after > now)
        elif f.status:
            q = q.where(m.Certificate.status == f.status)
        if f.expiring_within is not None:
            q = q.where(m.Certificate.status == "valid", m.Certificate.not_after > now,
                        m.Certificate.not_after <= now + f.expiring_within)
        if f.expires_before is not None:
            q = q.where(m.Certificate.status == "valid", m.Certificate.not_after > now,
                        m.Certificate.not_after <= f.expires_before)
        if f.requester:
            q = q.where(m.Certificate.requester == f.requester)
        if f.subject:
            q = q.where(m.Certificate.subject_text.icontains(f.subject, autoescape=True))
        if f.uscc:
            q = q.where(_uscc_clause(m.Certificate.subject_text, f.uscc))
        q = q.order_by(m.Certificate.id)
        if f.limit:
            q = q.limit(f.limit)
        return [_info(row, name, now) for row, name in s.execute(q).all()]


def _uscc_clause(column, uscc: str):
    """The subject (RFC 4514 text, as stored) has an organizationIdentifier that is this code,
    bare or with the ETSI ``NTRCN-`` prefix: a whole attribute value, not a substring."""
    from sqlalchemy import func, or_

    from unica.policies.uscc import USCCError, validate_uscc

    try:
        code = validate_uscc(uscc.strip().upper())
    except USCCError as e:
        raise InputError(f"--uscc: {e}") from None
    text = func.upper(column)
    clauses = []
    for value in (code, "NTRCN-" + code):
        attr = f"ORGANIZATIONIDENTIFIER={value}"
        clauses += [text == attr, text.startswith(attr + ","), text.endswith("," + attr),
                    text.contains("," + attr + ",")]
    return or_(*clauses)


def _find(s, serial: str, ca: str | None):
    from sqlalchemy import select

    from unica.store import models as m

    try:
        sh = m.serial_hex(m.serial_int(serial))
    except ValueError:
        raise InputError(f"bad serial number {serial!r} (hex expected)") from None
    q = select(m.Certificate, m.CA.name).join(m.CA, m.Certificate.ca_id == m.CA.id).where(m.Certificate.serial == sh)
    if ca:
        q = q.where(m.Certificate.ca_id == get_ca_row(s, ca).id)
    rows = s.execute(q).all()
    if not rows:
        raise CertificateNotFound(f"no certificate with serial {sh}" + (f" from CA {ca!r}" if ca else ""))
    if len(rows) > 1:
        raise InputError(f"serial {sh} exists under several CAs ({', '.join(n for _, n in rows)}); give --ca")
    return rows[0]


def show_cert(store, serial: str, ca: str | None = None) -> dict:
    with store.read() as s:
        row, name = _find(s, serial, ca)
        info = _info(row, name, dt.datetime.now(dt.timezone.utc))
        info["pem"] = pem(row.der) if row.der else None
        return info


def export_cert(store, serial: str, ca: str | None = None, *, chain: bool = False) -> str:
    from unica.ca.authority import export_ca

    with store.read() as s:
        row, name = _find(s, serial, ca)
        if row.der is None:
            raise CertificateNotFound(f"certificate {row.serial} was never signed (status {row.status})")
        out = pem(row.der)
    if chain:
        out += export_ca(store, name, chain=True)
    return out
